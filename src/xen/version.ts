// xen_version, answered as Xen answers an unprivileged HVM domU: the sub-ops
// every guest may use return data, the privileged ones (commandline,
// build_id) are denied the way Xen's default policy denies them.
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import {
  XEN_CAPABILITIES_INFO_LEN, XEN_CHANGESET_INFO_LEN, XEN_EXTRAVERSION_LEN, XENFEAT, XENVER, xenCompileInfo, xenFeatureInfo,
  xenPlatformParameters,
} from './abi/version.js';
import type { XenConfig } from './config.js';
import { XenError } from './errors.js';
import { readArg, type HypercallContext } from './hypercall.js';
import { firstArgLow32, served, subOpRoute, type OpHandler, type ServedOps } from './routes.js';

const PAGE_SIZE = 4096;
/** What Xen copies out for a sub-op the caller may not see. */
const DENIED = '<denied>';
/** HYPERVISOR_VIRT_START of the x86-64 ABI: what a 64-bit caller gets as virt_start. */
const HYPERVISOR_VIRT_START = 0xffff800000000000n;

const text = new TextEncoder();
/** A C string NUL-padded to the full size of its array. */
function padded(s: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(text.encode(s).subarray(0, size - 1));
  return out;
}

/** The feature bits of submap 0 for a translated (not direct-mapped) HVM guest with a callback vector and a safe pvclock. */
export const HVM_FEATURES =
  (1 << XENFEAT.writable_page_tables) |
  (1 << XENFEAT.auto_translated_physmap) |
  (1 << XENFEAT.hvm_callback_vector) |
  (1 << XENFEAT.hvm_safe_pvclock) |
  (1 << XENFEAT.memory_op_vnode_supported) |
  (1 << XENFEAT.not_direct_mapped);

const versionAtLeast = (c: XenConfig, major: number, minor: number) => c.version.major > major || (c.version.major === major && c.version.minor >= minor);

const XENVER_NAMES = {
  version: 'vcpu', extraversion: 'vcpu', compile_info: 'vcpu', capabilities: 'vcpu', changeset: 'vcpu', platform_parameters: 'vcpu',
  get_features: 'vcpu', pagesize: 'vcpu', guest_handle: 'vcpu', commandline: 'vcpu', build_id: 'vcpu',
} as const;
export const XEN_VERSION_ROUTE = subOpRoute(HYPERCALL.xen_version, firstArgLow32, 'XENVER_', XENVER, XENVER_NAMES);

export function versionOps(config: XenConfig): ServedOps {
  const op = (answer: (ctx: HypercallContext, arg: bigint) => number): OpHandler => (ctx, [, arg]) => answer(ctx, arg);
  return served(XEN_VERSION_ROUTE, {
    version: () => ((config.version.major << 16) | config.version.minor) >>> 0,
    extraversion: op((ctx, arg) => {
      ctx.guest.write(arg, padded('.0', XEN_EXTRAVERSION_LEN));
      return 0;
    }),
    compile_info: op((ctx, arg) => {
      ctx.guest.write(
        arg,
        xenCompileInfo[ctx.abi].encode({
          compiler: padded('gcc', 64),
          compile_by: padded('xen', 16),
          compile_domain: padded('', 32),
          compile_date: padded('Tue Oct 17 00:00:00 UTC 2023', 32),
        }),
      );
      return 0;
    }),
    capabilities: op((ctx, arg) => {
      ctx.guest.write(arg, padded('hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64', XEN_CAPABILITIES_INFO_LEN));
      return 0;
    }),
    changeset: op((ctx, arg) => {
      ctx.guest.write(arg, padded('unavailable', XEN_CHANGESET_INFO_LEN));
      return 0;
    }),
    // An HVM guest has no hypervisor hole: a 32-bit caller gets 0, and so does a 64-bit one from Xen 4.18 on.
    platform_parameters: op((ctx, arg) => {
      ctx.guest.write(
        arg,
        ctx.abi === 'native'
          ? xenPlatformParameters.native.encode({ virt_start: versionAtLeast(config, 4, 18) ? 0n : HYPERVISOR_VIRT_START })
          : xenPlatformParameters.compat.encode({ virt_start: 0 }),
      );
      return 0;
    }),
    get_features: op((ctx, arg) => {
      const def = xenFeatureInfo[ctx.abi];
      const fi = readArg(ctx, def, arg);
      if (fi.submap_idx !== 0) throw new XenError(XEN_ERRNO.EINVAL);
      ctx.guest.write(arg, def.encode({ submap_idx: 0, submap: HVM_FEATURES >>> 0 }));
      return 0;
    }),
    pagesize: op((_ctx, arg) => {
      if (arg !== 0n) throw new XenError(XEN_ERRNO.EINVAL);
      return PAGE_SIZE;
    }),
    guest_handle: op((ctx, arg) => {
      ctx.guest.write(arg, config.handle);
      return 0;
    }),
    // Denied to a domU: Xen copies just the denial string and its NUL.
    commandline: op((ctx, arg) => {
      ctx.guest.write(arg, text.encode(`${DENIED}\0`));
      return 0;
    }),
    build_id: () => {
      throw new XenError(XEN_ERRNO.EPERM);
    },
  });
}

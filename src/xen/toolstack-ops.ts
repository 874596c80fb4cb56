// The toolstack's hypercalls (sysctl, domctl, platform_op, dm_op and the
// like), which an unprivileged domain may not make: each is refused with the
// errno Xen 4.17 gives a domU under its default security policy, after the
// same checks in the same order (a bad pointer is -EFAULT, a struct of another
// interface version -EACCES, a domain that does not exist -ESRCH, and only then
// -EPERM), rather than -ENOSYS, which would say the hypercall is missing.
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import {
  DM_OP_MAX_BUFS, TOOLSTACK_INTERFACE_VERSION_OFFSET, XEN_DOMCTL, XEN_DOMCTL_DOMAIN_OFFSET, XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMCTL_SIZE,
  XEN_PLATFORM_OP_SIZE, XEN_SYSCTL_INTERFACE_VERSION, XEN_SYSCTL_SIZE, XENPF_INTERFACE_VERSION, xenDmOpBuf,
} from './abi/toolstack.js';
import { DOMID } from './abi/xen.js';
import { XenError } from './errors.js';
import type { HypercallContext } from './hypercall.js';
import { servedWhole, wholeRoute, type ServedOps } from './routes.js';

export interface ToolstackOpsDomain {
  /** The caller's own domain id. */
  domid: number;
}

const refuse = (errno: number, reason: string): never => {
  throw new XenError(errno, reason);
};

/** Copies in the call's struct, as Xen does first (-EFAULT). */
function copyIn(ctx: HypercallContext, arg: bigint, size: number): DataView {
  const bytes = ctx.guest.read(arg, size);
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Copies in the call's struct, then checks its interface version (-EACCES). */
function copyVersioned(ctx: HypercallContext, arg: bigint, size: number, version: number, name: string): DataView {
  const view = copyIn(ctx, arg, size);
  if (view.getUint32(TOOLSTACK_INTERFACE_VERSION_OFFSET, true) !== version) refuse(XEN_ERRNO.EACCES, `${name} of another interface version`);
  return view;
}

const SYSCTL_ROUTE = wholeRoute(HYPERCALL.sysctl, 'vcpu');
const PLATFORM_OP_ROUTE = wholeRoute(HYPERCALL.platform_op, 'vcpu');
const DOMCTL_ROUTE = wholeRoute(HYPERCALL.domctl, 'vcpu');
const PAGING_DOMCTL_CONT_ROUTE = wholeRoute(HYPERCALL.arch_1, 'vcpu');
const DM_OP_ROUTE = wholeRoute(HYPERCALL.dm_op, 'vcpu');
const HYPFS_OP_ROUTE = wholeRoute(HYPERCALL.hypfs_op, 'vcpu');
const XENPMU_OP_ROUTE = wholeRoute(HYPERCALL.xenpmu_op, 'vcpu');
export const TOOLSTACK_ROUTES = [SYSCTL_ROUTE, PLATFORM_OP_ROUTE, DOMCTL_ROUTE, PAGING_DOMCTL_CONT_ROUTE, DM_OP_ROUTE, HYPFS_OP_ROUTE, XENPMU_OP_ROUTE];

export function toolstackOps(d: ToolstackOpsDomain): ServedOps[] {
  /** Domains a domU can name that exist: domain 0 and itself. */
  const exists = (domid: number) => domid === 0 || domid === d.domid;
  const privileged = (name: string) => refuse(XEN_ERRNO.EPERM, `${name} is for the toolstack`);

  return [
    servedWhole(SYSCTL_ROUTE, (ctx, [arg]) => {
      copyVersioned(ctx, arg, XEN_SYSCTL_SIZE[ctx.abi], XEN_SYSCTL_INTERFACE_VERSION, 'sysctl');
      return privileged('sysctl');
    }),
    servedWhole(PLATFORM_OP_ROUTE, (ctx, [arg]) => {
      copyVersioned(ctx, arg, XEN_PLATFORM_OP_SIZE[ctx.abi], XENPF_INTERFACE_VERSION, 'platform_op');
      return privileged('platform_op');
    }),
    servedWhole(DOMCTL_ROUTE, (ctx, [arg]) => {
      const op = copyVersioned(ctx, arg, XEN_DOMCTL_SIZE[ctx.abi], XEN_DOMCTL_INTERFACE_VERSION, 'domctl');
      const cmd = op.getUint32(0, true);
      const domain = op.getUint16(XEN_DOMCTL_DOMAIN_OFFSET, true);
      // Xen looks the domain up (DOMID_SELF is not resolved there) but for these commands and ids.
      const looksUp = cmd !== XEN_DOMCTL.createdomain && cmd !== XEN_DOMCTL.getdomaininfo && domain !== DOMID.INVALID && domain !== DOMID.IO;
      if (looksUp && !exists(domain)) refuse(XEN_ERRNO.ESRCH, `domctl on domain ${domain}`);
      return privileged('domctl');
    }),
    // The continuation of a shadow-paging domctl: only that command, at the current version, gets as far as the permission check.
    servedWhole(PAGING_DOMCTL_CONT_ROUTE, (ctx, [arg]) => {
      const op = copyIn(ctx, arg, XEN_DOMCTL_SIZE[ctx.abi]);
      if (op.getUint32(TOOLSTACK_INTERFACE_VERSION_OFFSET, true) !== XEN_DOMCTL_INTERFACE_VERSION || op.getUint32(0, true) !== XEN_DOMCTL.shadow_op) {
        refuse(XEN_ERRNO.EOPNOTSUPP, 'paging_domctl_cont is only a shadow_op continuation');
      }
      if (!exists(op.getUint16(XEN_DOMCTL_DOMAIN_OFFSET, true))) refuse(XEN_ERRNO.ESRCH, 'paging_domctl_cont on a domain that does not exist');
      return privileged('paging_domctl_cont');
    }),
    servedWhole(DM_OP_ROUTE, (ctx, [wideDomid, wideCount, bufs]) => {
      const domid = Number(wideDomid & 0xffffn); // a domid_t
      const count = Number(wideCount & 0xffffffffn);
      if (count > DM_OP_MAX_BUFS) refuse(XEN_ERRNO.E2BIG, `dm_op with ${count} buffers`);
      if (count > 0) ctx.guest.read(bufs, count * xenDmOpBuf[ctx.abi].size);
      // A device model serves another domain: its own is refused, and domain 0 here is a PV one.
      if (domid === d.domid) refuse(XEN_ERRNO.EPERM, 'dm_op on the domain itself');
      if (domid === 0) refuse(XEN_ERRNO.EINVAL, 'dm_op on domain 0, which is not an HVM domain');
      return refuse(XEN_ERRNO.ESRCH, `dm_op on domain ${domid}`);
    }),
    // Nothing of its argument is read before the permission check.
    servedWhole(HYPFS_OP_ROUTE, () => privileged('hypfs_op')),
    // The vPMU is off, and a domain with a virtual LAPIC never has one.
    servedWhole(XENPMU_OP_ROUTE, () => refuse(XEN_ERRNO.EOPNOTSUPP, 'there is no virtual PMU')),
  ];
}

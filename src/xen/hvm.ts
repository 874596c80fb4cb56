// hvm_op: HVM parameters as Xen lets a domain read and set its own, the
// per-vCPU upcall vector, get_time and pagetable_dying.
import { XEN_ERRNO } from './abi/errno.js';
import {
  HVM_NR_PARAMS, HVM_PARAM, HVMOP, xenHvmEvtchnUpcallVector, xenHvmGetTime, xenHvmPagetableDying, xenHvmParam,
} from './abi/hvm.js';
import { HYPERCALL } from './abi/hypercalls.js';
import type { DomainState } from './domain-state.js';
import { XenError } from './errors.js';
import { readArg, type HypercallContext } from './hypercall.js';
import { served, subOpRoute, type ServedOps } from './routes.js';
import { checkSelf, latchSharedInfoAbi, type MemoryOpDomain } from './memory.js';

/** Parameters a domain may set on itself. */
const GUEST_SETTABLE = new Set<number>([
  HVM_PARAM.CALLBACK_IRQ, HVM_PARAM.VM86_TSS, HVM_PARAM.VM86_TSS_SIZED, HVM_PARAM.ACPI_IOPORTS_LOCATION,
  HVM_PARAM.VM_GENERATION_ID_ADDR, HVM_PARAM.STORE_EVTCHN, HVM_PARAM.CONSOLE_EVTCHN, HVM_PARAM.X87_FIP_WIDTH,
]);
/** Parameters a domain may set once: a later different non-zero value is refused. */
const SET_ONCE = new Set<number>([
  HVM_PARAM.VIRIDIAN, HVM_PARAM.IOREQ_SERVER_PFN, HVM_PARAM.NR_IOREQ_SERVER_PAGES, HVM_PARAM.ALTP2M, HVM_PARAM.MCA_CAP,
]);
/** Parameters a domain may read about itself. */
const GUEST_READABLE = new Set<number>([
  HVM_PARAM.CALLBACK_IRQ, HVM_PARAM.VM86_TSS, HVM_PARAM.VM86_TSS_SIZED, HVM_PARAM.ACPI_IOPORTS_LOCATION,
  HVM_PARAM.VM_GENERATION_ID_ADDR, HVM_PARAM.STORE_PFN, HVM_PARAM.STORE_EVTCHN, HVM_PARAM.CONSOLE_PFN,
  HVM_PARAM.CONSOLE_EVTCHN, HVM_PARAM.ALTP2M, HVM_PARAM.X87_FIP_WIDTH,
]);

/** The lowest vector an upcall may use: below it are the exception vectors. */
const MIN_UPCALL_VECTOR = 0x10;

export interface HvmOpDomain extends MemoryOpDomain {
  state: DomainState;
  /** Current system time in ns (HVMOP_get_time). */
  systemTime(): bigint;
  /** The upcall route of a vCPU changed: an upcall already pending goes out the new way, as Xen does. */
  upcallRouteChanged(vcpu: number): void;
  /** HVM_PARAM_CALLBACK_IRQ is about to change: a line the old callback holds is lowered. */
  callbackChanging(): void;
}

function readParam(ctx: HypercallContext, arg: bigint) {
  const def = xenHvmParam[ctx.abi];
  return readArg(ctx, def, arg);
}

function setParam(ctx: HypercallContext, domain: HvmOpDomain, arg: bigint): number {
  const a = readParam(ctx, arg);
  checkSelf(a.domid, domain.domid);
  if (a.index >= HVM_NR_PARAMS) throw new XenError(XEN_ERRNO.EINVAL);
  if (SET_ONCE.has(a.index)) {
    const old = domain.state.param(a.index);
    if (old !== 0n && old !== BigInt.asIntN(64, a.value)) throw new XenError(XEN_ERRNO.EEXIST);
  } else if (!GUEST_SETTABLE.has(a.index)) {
    throw new XenError(XEN_ERRNO.EPERM);
  }
  // Xen lowers the old callback's line before the new callback takes over.
  if (a.index === HVM_PARAM.CALLBACK_IRQ) domain.callbackChanging();
  domain.state.setParam(a.index, a.value);
  if (a.index === HVM_PARAM.CALLBACK_IRQ) {
    // Setting the callback is one of the first things PV drivers do: Xen latches the shared_info layout here too.
    latchSharedInfoAbi(domain, ctx.abi);
    for (let v = 0; v < domain.state.vcpuCount; v++) domain.upcallRouteChanged(v);
  }
  return 0;
}

function getParam(ctx: HypercallContext, domain: HvmOpDomain, arg: bigint): number {
  const a = readParam(ctx, arg);
  checkSelf(a.domid, domain.domid);
  if (a.index >= HVM_NR_PARAMS) throw new XenError(XEN_ERRNO.EINVAL);
  if (!GUEST_READABLE.has(a.index)) throw new XenError(XEN_ERRNO.EPERM);
  ctx.guest.write(arg, xenHvmParam[ctx.abi].encode({ ...a, value: BigInt.asUintN(64, domain.state.param(a.index)) }));
  return 0;
}

function setUpcallVector(ctx: HypercallContext, domain: HvmOpDomain, arg: bigint): number {
  const def = xenHvmEvtchnUpcallVector[ctx.abi];
  const op = readArg(ctx, def, arg);
  if (op.vector < MIN_UPCALL_VECTOR) throw new XenError(XEN_ERRNO.EINVAL);
  if (op.vcpu >= domain.state.vcpuCount) throw new XenError(XEN_ERRNO.ENOENT);
  domain.state.setUpcallVector(op.vcpu, op.vector);
  domain.upcallRouteChanged(op.vcpu);
  return 0;
}

/** Only meaningful with shadow paging; with hardware-assisted paging Xen refuses it. */
function pagetableDying(ctx: HypercallContext, domain: HvmOpDomain, arg: bigint): number {
  const def = xenHvmPagetableDying[ctx.abi];
  const a = readArg(ctx, def, arg);
  checkSelf(a.domid, domain.domid);
  throw new XenError(XEN_ERRNO.EINVAL);
}

/** An unsigned long in Xen, switched on whole: high bits make the op unknown. */
const wholeOp = (args: readonly bigint[]) => (args[0] > 0xffffffffn ? undefined : Number(args[0]));

export const HVM_OP_ROUTE = subOpRoute(HYPERCALL.hvm_op, wholeOp, 'HVMOP_', HVMOP, {
  set_param: 'main', get_param: 'main', set_evtchn_upcall_vector: 'main', pagetable_dying: 'main', get_time: 'main',
});

/** hvm_op on the main thread. */
export function hvmOps(domain: HvmOpDomain): ServedOps {
  return served(HVM_OP_ROUTE, {
    set_param: (ctx, [, arg]) => setParam(ctx, domain, arg),
    get_param: (ctx, [, arg]) => getParam(ctx, domain, arg),
    set_evtchn_upcall_vector: (ctx, [, arg]) => setUpcallVector(ctx, domain, arg),
    pagetable_dying: (ctx, [, arg]) => pagetableDying(ctx, domain, arg),
    get_time: (ctx, [, arg]) => {
      ctx.guest.write(arg, xenHvmGetTime[ctx.abi].encode({ now: domain.systemTime() }));
      return 0;
    },
  });
}

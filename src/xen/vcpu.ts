// vcpu_op and vm_assist, served on the calling vCPU's thread: registering a
// vCPU's vcpu_info, runstate area and secondary time area (for itself or
// another vCPU of the domain), reading runstates, is_up, and the vCPU's timers.
import type { GuestMemory } from '../memory/guest-memory.js';
import { GuestArea } from '../memory/guest-area.js';
import { GuestFaultError } from '../memory/guest-virtual.js';
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { sharedInfoLayout, vcpuInfo, vcpuTimeInfo } from './abi/shared-info.js';
import { VCPU_SSHOTTMR_future, VCPUOP, vcpuRegisterRunstateMemoryArea, vcpuSetPeriodicTimer, vcpuSetSingleshotTimer, vcpuRegisterTimeMemoryArea, vcpuRegisterVcpuInfo, vcpuRunstateInfo } from './abi/vcpu.js';
import { VMASST_CMD, VMASST_TYPE, XEN_LEGACY_MAX_VCPUS } from './abi/xen.js';
import type { XenConfig } from './config.js';
import type { TimerState } from './timers.js';
import { AreaKind, type DomainState } from './domain-state.js';
import { XenError } from './errors.js';
import { readArg, type HypercallContext } from './hypercall.js';
import { firstArgLow32, served, servedWhole, subOpRoute, wholeRoute, type OpHandler, type ServedOps } from './routes.js';
import { encodeRunstate, recordFromWords, type RunstateAccount, writeRunstateArea } from './runstate.js';
import { bytesArea, SHARED_INFO_PAGE, VCPU_INFO_TIME_OFFSET, writeVcpuTime } from './shared-info.js';
import type { VcpuClock } from './time.js';

const PAGE_SIZE = 4096;
/**
 * Xen refuses periodic timers faster than 1 ms, and periods beyond its STIME_DELTA_MAX (2^62 - 1 ns):
 * a longer period added to the time now could wrap the deadline negative, firing at once for ever.
 */
const MIN_PERIOD_NS = 1_000_000n;
const STIME_DELTA_MAX = (1n << 62n) - 1n;
const VCPU_INFO_SIZE = vcpuInfo.native.size;
/** VM assists an HVM guest may turn on. */
const HVM_VM_ASSISTS = 1 << VMASST_TYPE.runstate_update_flag;

export interface VcpuOpDomain {
  config: XenConfig;
  state: DomainState;
  memory: GuestMemory;
  /** The calling thread's own vCPU and its runstate account. */
  self: { vcpu: number; runstate: RunstateAccount };
  /** Current system time in ns, on the host's clock: never ahead of what a guest reads from its pvclock. */
  systemTime: () => bigint;
  /** The calling vCPU's clock: system time exactly as its guest reads it, and its records' TSC-stable flag. */
  clock: VcpuClock;
  /** Sets evtchn_upcall_pending and injects the upcall if it was clear (Xen's vcpu_mark_events_pending). */
  markEventsPending: (vcpu: number) => void;
  /**
   * Where KVM writes the time records (config.kvmTime): a vCPU's vcpu_info or time area moved, and its
   * thread tells KVM before its guest runs on (another vCPU's thread is kicked to).
   */
  timeRecordsMoved: (vcpu: number) => void;
  timers: TimerState;
}

/** An area given by guest-virtual address in a registration struct (a 32-bit guest's address is the low half). */
function areaAddress(ctx: HypercallContext, raw: bigint): bigint {
  return ctx.abi === 'compat' ? raw & 0xffffffffn : raw;
}

/** The guest-physical pieces of an area, or undefined when it does not translate (Xen accepts it and its updates are lost). */
function translateArea(ctx: HypercallContext, gva: bigint, length: number) {
  try {
    return ctx.guest.physical(gva, length, true);
  } catch (e) {
    if (e instanceof GuestFaultError) return undefined;
    throw e;
  }
}

function registerVcpuInfo(ctx: HypercallContext, d: VcpuOpDomain, target: number, arg: bigint): number {
  const def = vcpuRegisterVcpuInfo[ctx.abi];
  const r = readArg(ctx, def, arg);
  if (r.offset > PAGE_SIZE - VCPU_INFO_SIZE) throw new XenError(XEN_ERRNO.EINVAL);
  // Xen lets a vcpu_info be placed once; moving it is refused, and so is placing another running vCPU's.
  if (d.state.vcpuInfoAddress(target) !== undefined) throw new XenError(XEN_ERRNO.EINVAL);
  if (target !== d.self.vcpu && d.state.isUp(target)) throw new XenError(XEN_ERRNO.EINVAL);
  if (r.mfn >= 1n << 40n) throw new XenError(XEN_ERRNO.EINVAL);
  const gpa = Number(r.mfn) * PAGE_SIZE + r.offset;
  if (!d.memory.isRam(gpa, VCPU_INFO_SIZE)) throw new XenError(XEN_ERRNO.EINVAL);
  const abi = d.state.sharedInfoAbi;
  const content = new Uint8Array(VCPU_INFO_SIZE);
  if (target < XEN_LEGACY_MAX_VCPUS) {
    const from = sharedInfoLayout[abi].vcpuInfo(target);
    content.set(d.memory.overlayPage(SHARED_INFO_PAGE).subarray(from, from + VCPU_INFO_SIZE));
  }
  // The content moves with it; then every event is marked possibly pending, as Xen does, so none delivered meanwhile is lost.
  const view = new DataView(content.buffer);
  const o = vcpuInfo[abi].offsets;
  if (abi === 'native') view.setBigUint64(o.evtchn_pending_sel, 0xffffffffffffffffn, true);
  else view.setUint32(o.evtchn_pending_sel, 0xffffffff, true);
  d.memory.write(gpa, content);
  d.state.setVcpuInfoAddress(target, gpa);
  if (d.config.kvmTime) d.timeRecordsMoved(target);
  else writeVcpuTime(new GuestArea(d.memory, [{ gpa, length: VCPU_INFO_SIZE }]), VCPU_INFO_TIME_OFFSET, d.config.pvclock, d.clock.tscStable);
  d.markEventsPending(target);
  return 0;
}

/**
 * Writes every time record of `vcpu` again (in its vcpu_info, registered or in shared_info, and
 * in its secondary time area), with the calling vCPU's clock's latest TSC-stable flag.
 */
export function rewriteVcpuTime(d: Pick<VcpuOpDomain, 'config' | 'state' | 'memory' | 'clock'>, vcpu: number): void {
  const { pvclock } = d.config;
  const stable = d.clock.tscStable;
  const gpa = d.state.vcpuInfoAddress(vcpu);
  if (gpa !== undefined) writeVcpuTime(new GuestArea(d.memory, [{ gpa, length: VCPU_INFO_SIZE }]), VCPU_INFO_TIME_OFFSET, pvclock, stable);
  else if (vcpu < XEN_LEGACY_MAX_VCPUS) {
    const at = sharedInfoLayout[d.state.sharedInfoAbi].vcpuInfo(vcpu) + VCPU_INFO_TIME_OFFSET;
    writeVcpuTime(bytesArea(d.memory.overlayPage(SHARED_INFO_PAGE)), at, pvclock, stable);
  }
  const area = d.state.area(vcpu, AreaKind.Time);
  if (area) writeVcpuTime(new GuestArea(d.memory, area.pieces), 0, pvclock, stable);
}

/** Records an area registered for `target` as its guest-physical pieces; address 0 unregisters it (undefined). */
function registerArea(ctx: HypercallContext, d: VcpuOpDomain, target: number, kind: AreaKind, addr: bigint, size: number) {
  const gva = areaAddress(ctx, addr);
  const pieces = gva === 0n ? undefined : translateArea(ctx, gva, size);
  d.state.setArea(target, kind, pieces && { abi: ctx.abi, pieces });
  return pieces;
}

function registerRunstateArea(ctx: HypercallContext, d: VcpuOpDomain, target: number, arg: bigint): number {
  const addr = readArg(ctx, vcpuRegisterRunstateMemoryArea[ctx.abi], arg).addr;
  registerArea(ctx, d, target, AreaKind.Runstate, addr, vcpuRunstateInfo[ctx.abi].size);
  // Xen fills the area at once: the caller's own record is brought up to now first.
  if (target === d.self.vcpu) d.self.runstate.refresh();
  else writeRunstateArea(d.memory, d.state, target, recordFromWords(d.state.runstate(target)));
  return 0;
}

function registerTimeArea(ctx: HypercallContext, d: VcpuOpDomain, target: number, arg: bigint): number {
  const addr = readArg(ctx, vcpuRegisterTimeMemoryArea[ctx.abi], arg).addr;
  const size = vcpuTimeInfo[ctx.abi].size;
  if (d.config.kvmTime) {
    // KVM keeps a time area by guest-physical address within one page (as Xen 4.19's
    // register_vcpu_time_phys_area does); Xen 4.17 writes one across a boundary too.
    if (Number(areaAddress(ctx, addr) % BigInt(PAGE_SIZE)) + size > PAGE_SIZE) {
      throw new XenError(XEN_ERRNO.EINVAL, 'a time area across a page boundary, which KVM cannot keep (--kvm-fast-paths without time lets xenkvm keep it)');
    }
    registerArea(ctx, d, target, AreaKind.Time, addr, size);
    d.timeRecordsMoved(target);
    return 0;
  }
  const pieces = registerArea(ctx, d, target, AreaKind.Time, addr, size);
  if (pieces) writeVcpuTime(new GuestArea(d.memory, pieces), 0, d.config.pvclock, d.clock.tscStable);
  return 0;
}

/** A vCPU's runstate up to now: the caller's own is refreshed; another's current state is extended to now, as Xen's vcpu_runstate_get does. */
function getRunstateInfo(ctx: HypercallContext, d: VcpuOpDomain, target: number, arg: bigint): number {
  if (target === d.self.vcpu) d.self.runstate.refresh();
  const r = recordFromWords(d.state.runstate(target));
  const now = d.systemTime();
  if (target !== d.self.vcpu && now > r.stateEntryTime) {
    r.time[r.state] += now - r.stateEntryTime;
    r.stateEntryTime = now;
  }
  ctx.guest.write(arg, encodeRunstate(ctx.abi, r));
  return 0;
}

export const VCPU_OP_ROUTE = subOpRoute(HYPERCALL.vcpu_op, firstArgLow32, 'VCPUOP_', VCPUOP, {
  // Bringing a vCPU up or down kicks its thread, from the main thread.
  initialise: 'main', up: 'main', down: 'main', is_up: 'vcpu',
  register_vcpu_info: 'vcpu', register_runstate_memory_area: 'vcpu', register_vcpu_time_memory_area: 'vcpu', get_runstate_info: 'vcpu',
  set_singleshot_timer: 'vcpu', stop_singleshot_timer: 'vcpu', set_periodic_timer: 'vcpu', stop_periodic_timer: 'vcpu',
});
export const SET_TIMER_OP_ROUTE = wholeRoute(HYPERCALL.set_timer_op, 'vcpu');
export const VM_ASSIST_ROUTE = wholeRoute(HYPERCALL.vm_assist, 'vcpu');

/** The vCPU a vcpu_op names. */
export const vcpuOpTarget = (args: readonly bigint[]) => Number(args[1] & 0xffffffffn);

/** Xen looks the vCPU up before the sub-op: -ENOENT for one the domain does not have, whatever the op. */
export function checkVcpuOpTarget(state: DomainState): ServedOps['check'] {
  return (_ctx, args) => {
    if (vcpuOpTarget(args) >= state.vcpuCount) throw new XenError(XEN_ERRNO.ENOENT);
  };
}

/** vcpu_op, set_timer_op and vm_assist on the calling vCPU's thread. */
export function vcpuOps(d: VcpuOpDomain): ServedOps[] {
  /** A sub-op given its target vCPU and its argument. */
  const op = (serve: (ctx: HypercallContext, target: number, arg: bigint) => number): OpHandler => (ctx, args) => serve(ctx, vcpuOpTarget(args), args[2]);
  /** Timer sub-ops act on the caller only, as in Xen. */
  const own = (target: number) => {
    if (target !== d.self.vcpu) throw new XenError(XEN_ERRNO.EINVAL);
  };
  const vcpuOp = served(VCPU_OP_ROUTE, {
    register_vcpu_info: op((ctx, target, arg) => registerVcpuInfo(ctx, d, target, arg)),
    register_runstate_memory_area: op((ctx, target, arg) => registerRunstateArea(ctx, d, target, arg)),
    register_vcpu_time_memory_area: op((ctx, target, arg) => registerTimeArea(ctx, d, target, arg)),
    get_runstate_info: op((ctx, target, arg) => getRunstateInfo(ctx, d, target, arg)),
    is_up: op((_ctx, target) => (d.state.isUp(target) ? 1 : 0)),
    set_singleshot_timer: op((ctx, target, arg) => {
      own(target);
      const set = readArg(ctx, vcpuSetSingleshotTimer[ctx.abi], arg);
      // Past by the guest's own clock, which may run ahead of the host's (docs/xen.md), not the VMM's;
      // compared unsigned, as Xen does: from 2^63 up a deadline is not past, but as a system time it is
      // negative, and fires at once.
      if (set.flags & VCPU_SSHOTTMR_future && set.timeout_abs_ns < d.clock.guestNow()) throw new XenError(XEN_ERRNO.ETIME);
      const deadline = BigInt.asIntN(64, set.timeout_abs_ns);
      d.timers.setSingleshot(target, deadline > 0n ? deadline : 1n);
      return 0;
    }),
    stop_singleshot_timer: op((_ctx, target) => {
      own(target);
      d.timers.stopSingleshot(target);
      return 0;
    }),
    set_periodic_timer: op((ctx, target, arg) => {
      const period = readArg(ctx, vcpuSetPeriodicTimer[ctx.abi], arg).period_ns;
      if (period < MIN_PERIOD_NS || period > STIME_DELTA_MAX) throw new XenError(XEN_ERRNO.EINVAL);
      d.timers.setPeriodic(target, period, d.systemTime());
      return 0;
    }),
    stop_periodic_timer: op((_ctx, target) => {
      d.timers.stopPeriodic(target);
      return 0;
    }),
  }, checkVcpuOpTarget(d.state));
  // set_timer_op: the singleshot timer by absolute deadline; a 32-bit guest passes it as two halves.
  const setTimerOp = servedWhole(SET_TIMER_OP_ROUTE, (ctx, [lo, hi]) => {
    const timeout = BigInt.asIntN(64, ctx.abi === 'native' ? lo : (hi << 32n) | lo);
    if (timeout === 0n) d.timers.stopSingleshot(d.self.vcpu);
    else {
      const now = d.systemTime();
      // Xen's guard against wrapped or absurdly far deadlines: a timer event in 100 ms instead.
      const absurd = timeout < 0n || timeout - now >= 1n << 50n;
      d.timers.setSingleshot(d.self.vcpu, absurd ? now + 100_000_000n : timeout);
    }
    return 0;
  });
  const vmAssist = servedWhole(VM_ASSIST_ROUTE, (_ctx, [wideCmd, wideType]) => {
    // Both unsigned ints in Xen's prototype: the high halves are dropped.
    const cmd = Number(wideCmd & 0xffffffffn);
    const type = wideType & 0xffffffffn;
    if (type >= 64n || ((BigInt(HVM_VM_ASSISTS) >> type) & 1n) === 0n) throw new XenError(XEN_ERRNO.EINVAL);
    if (cmd === VMASST_CMD.enable) d.state.setVmAssist(Number(type), true);
    else if (cmd === VMASST_CMD.disable) d.state.setVmAssist(Number(type), false);
    else throw new XenError(XEN_ERRNO.ENOSYS, 'no such vm_assist command');
    return 0;
  });
  return [vcpuOp, setTimerOp, vmAssist];
}

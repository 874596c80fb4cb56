// Xen system time: nanoseconds since the VM started, derived from the guest
// TSC through one scale (tsc_to_system_mul, tsc_shift) and one reference
// point, the line KVM keeps every vCPU's TSC on (see docs/xen.md). Whether
// readings are also monotonic across vCPUs (XEN_PVCLOCK_TSC_STABLE_BIT) is
// KVM's to say, and is asked again while the VM runs. The wallclock is host
// real time at system time zero.

/** The parameters of a vcpu_time_info record. */
export interface PvclockParams {
  tscTimestamp: bigint;
  systemTime: bigint;
  mul: number;
  shift: number;
}

const NS_PER_SEC = 1_000_000_000n;

/**
 * The scale that turns TSC ticks into nanoseconds as ((ticks << shift) * mul) >> 32
 * (a negative shift shifts right), with mul as large as fits in 32 bits for precision.
 */
export function tscScale(tscHz: number): { mul: number; shift: number } {
  if (!Number.isFinite(tscHz) || tscHz <= 0) throw new RangeError(`TSC frequency ${tscHz} Hz`);
  let hz = BigInt(Math.round(tscHz));
  let shift = 0;
  while (hz > 2n * NS_PER_SEC) {
    hz >>= 1n;
    shift--;
  }
  while (hz <= NS_PER_SEC) {
    hz <<= 1n;
    shift++;
  }
  return { mul: Number((NS_PER_SEC << 32n) / hz), shift };
}

/** System time at `tsc` as a guest computes it from a vcpu_time_info record. */
export function pvclockRead(p: PvclockParams, tsc: bigint): bigint {
  let delta = tsc - p.tscTimestamp;
  delta = p.shift >= 0 ? delta << BigInt(p.shift) : delta >> BigInt(-p.shift);
  return p.systemTime + ((delta * BigInt(p.mul)) >> 32n);
}

/** Host real time split into seconds and nanoseconds, at a given system time. */
export function wallclockAtSystemTime(wallNowNs: bigint, systemNowNs: bigint): { sec: bigint; nsec: number } {
  const boot = wallNowNs - systemNowNs;
  return { sec: boot / NS_PER_SEC, nsec: Number(boot % NS_PER_SEC) };
}

/** Nanoseconds on the host clock system time is kept on, and of host real time. */
export { monotonicRawNs as monotonicNs, realtimeNs } from '../common/clock.js';
import { monotonicRawNs } from '../common/clock.js';

/** The VMM's clock of Xen system time: host monotonic nanoseconds since the VM's boot reading. */
export const systemTimeClock = (bootMonotonicNs: bigint) => (): bigint => monotonicRawNs() - bootMonotonicNs;

/** What a vCPU's thread learns from KVM about its own clock. */
export interface VcpuClockSource {
  /** The vCPU's TSC now: read on its own thread, never below a value its guest has read. */
  tsc(): bigint;
  /** Whether KVM keeps every vCPU's TSC in step now (KVM_CLOCK_TSC_STABLE). */
  tscStable(): boolean;
  /**
   * Where KVM writes the vCPU's time records (the `time` fast path): the record it last wrote, or
   * undefined before it wrote one. KVM then also sets their flags itself.
   */
  kvmRecord?(): PvclockParams | undefined;
}

/** How often a vCPU thread asks KVM again whether the TSCs are in step: Xen recalibrates time once a second. */
export const TSC_STABILITY_RECHECK_MS = 1000;

/**
 * One vCPU's clock, on its own thread: system time exactly as its guest computes
 * it, and whether its time records may promise readings monotonic across vCPUs.
 */
export class VcpuClock {
  private stable: boolean;
  private checkedAt: number;

  constructor(
    readonly pvclock: PvclockParams,
    /** KVM's answer when the domain was built. */
    tscStable: boolean,
    private readonly source: VcpuClockSource,
    // hrtime rather than performance.now(), which costs ten times as much here: this is read on every hypercall.
    private readonly nowMs: () => number = () => Number(process.hrtime.bigint()) / 1e6,
  ) {
    this.stable = tscStable;
    this.checkedAt = nowMs();
  }

  /**
   * System time as this vCPU's guest reads it at this moment: its pvclock at its
   * TSC. Never less than a reading the guest took before it trapped here, so a
   * deadline the guest found past is past here too. One KVM_GET_MSRS.
   */
  guestNow(): bigint {
    return pvclockRead(this.source.kvmRecord?.() ?? this.pvclock, this.source.tsc());
  }

  /** Whether this vCPU's time records carry XEN_PVCLOCK_TSC_STABLE_BIT. */
  get tscStable(): boolean {
    return this.stable;
  }

  /**
   * Asks KVM again whether the TSCs are in step, at most once per TSC_STABILITY_RECHECK_MS;
   * true when it did, and the vCPU's time records are to be written again with the answer, as
   * Xen writes them at each calibration (this also reaches a vcpu_info the vCPU fell back to).
   */
  recheck(): boolean {
    if (this.source.kvmRecord) return false;
    const now = this.nowMs();
    if (now - this.checkedAt < TSC_STABILITY_RECHECK_MS) return false;
    this.checkedAt = now;
    this.stable = this.source.tscStable();
    return true;
  }
}

// Xen system time: nanoseconds since the VM started, derived from the guest
// TSC through one scale (tsc_to_system_mul, tsc_shift) and one reference
// point shared by every vCPU, so readings are monotonic across vCPUs (KVM
// keeps the vCPUs' TSCs in step). The wallclock is host real time at system
// time zero.

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

/** Nanoseconds on the host clock system time is kept on. */
export { monotonicRawNs as monotonicNs } from '../common/clock.js';
import { monotonicRawNs } from '../common/clock.js';

/** The VMM's clock of Xen system time: host monotonic nanoseconds since the VM's boot reading. */
export const systemTimeClock = (bootMonotonicNs: bigint) => (): bigint => monotonicRawNs() - bootMonotonicNs;
/** Nanoseconds of host real time. */
export const realtimeNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

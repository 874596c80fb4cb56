// The host clocks Xen time is kept on: CLOCK_MONOTONIC_RAW for system time,
// which, unlike Node's hrtime (CLOCK_MONOTONIC), is never slewed by NTP and so
// keeps pace with the TSC the guest's pvclock is computed from; and
// CLOCK_REALTIME to the nanosecond (Date.now() has milliseconds) for the
// wallclock and for pinning kvmclock.
import koffi from 'koffi';

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC_RAW = 4;
let clockGettime: ((clock: number, ts: BigInt64Array) => number) | undefined;
/** struct timespec (tv_sec, tv_nsec), written in place by the call: no result object to convert. */
const timespec = new BigInt64Array(2);

function clockNs(clock: number): bigint {
  clockGettime ??= koffi.load('libc.so.6').func('clock_gettime', 'int', ['int', 'void *']);
  clockGettime(clock, timespec);
  return timespec[0] * 1_000_000_000n + timespec[1];
}

export const monotonicRawNs = (): bigint => clockNs(CLOCK_MONOTONIC_RAW);
export const realtimeNs = (): bigint => clockNs(CLOCK_REALTIME);

// The host clock Xen system time is kept on: CLOCK_MONOTONIC_RAW, which,
// unlike Node's hrtime (CLOCK_MONOTONIC), is never slewed by NTP and so keeps
// pace with the TSC the guest's pvclock is computed from.
import koffi from 'koffi';

const CLOCK_MONOTONIC_RAW = 4;
let clockGettime: ((clock: number, ts: BigInt64Array) => number) | undefined;
/** struct timespec (tv_sec, tv_nsec), written in place by the call: no result object to convert. */
const timespec = new BigInt64Array(2);

export function monotonicRawNs(): bigint {
  clockGettime ??= koffi.load('libc.so.6').func('clock_gettime', 'int', ['int', 'void *']);
  clockGettime(CLOCK_MONOTONIC_RAW, timespec);
  return timespec[0] * 1_000_000_000n + timespec[1];
}

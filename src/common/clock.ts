// The host clock Xen system time is kept on: CLOCK_MONOTONIC_RAW, which,
// unlike Node's hrtime (CLOCK_MONOTONIC), is never slewed by NTP and so keeps
// pace with the TSC the guest's pvclock is computed from.
import koffi from 'koffi';

const CLOCK_MONOTONIC_RAW = 4;
const timespec = koffi.struct('xenkvm_timespec', { tv_sec: 'int64_t', tv_nsec: 'int64_t' });
let clockGettime: ((clock: number, ts: unknown) => number) | undefined;

export function monotonicRawNs(): bigint {
  clockGettime ??= koffi.load('libc.so.6').func('int clock_gettime(int clock, _Out_ xenkvm_timespec *ts)');
  const ts = { tv_sec: 0n, tv_nsec: 0n } as { tv_sec: bigint | number; tv_nsec: bigint | number };
  clockGettime(CLOCK_MONOTONIC_RAW, ts);
  return BigInt(ts.tv_sec) * 1_000_000_000n + BigInt(ts.tv_nsec);
}

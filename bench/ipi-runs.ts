// One run of the IPI guest (guests/tests/bench-ipi.c) under the C floor or
// under xenkvm: its median round trip and its total for the back-to-back
// events, in TSC ticks by vCPU 0's own count.
import { root, runFloor, runXenkvm } from './common.js';

const guest = `${root}guests/build/bench-ipi.elf`;

export interface IpiSample { latency: number; total: number }

function parse(out: string, prefix: string, who: string, events: number): IpiSample & { khz?: number } {
  const m = new RegExp(`${prefix}ipi median-tsc=(\\d+) rounds=(\\d+) events-tsc=(\\d+)(?: tsc_khz=(\\d+))?`).exec(out);
  if (!m || Number(m[2]) !== events || Number(m[3]) === 0) throw new Error(`${who} printed no result: ${out}`);
  return { latency: Number(m[1]), total: Number(m[3]), khz: m[4] === undefined ? undefined : Number(m[4]) };
}

/** The C floor: `ipi` answers an I/O exit with a bare MSI; `ipi-hypercall` serves the guest's EVTCHNOP_send the same way. */
export function floorIpi(mode: 'ipi' | 'ipi-hypercall', events: number): IpiSample & { khz: number } {
  const s = parse(runFloor(['-m', mode, '-n', String(events), guest]), 'floor: ', 'floor', events);
  return { ...s, khz: s.khz! };
}

/** xenkvm on 2 vCPUs, with `args` added to `xenkvm run`. */
export function xenkvmIpi(events: number, args: string[] = []): IpiSample {
  return parse(runXenkvm(['--kernel', guest, '--vcpus', '2', '--cmdline', `n=${events} mode=xen`, ...args]), 'KIT-BENCH ', 'xenkvm', events);
}

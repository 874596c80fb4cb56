// One run of the exit-loop guest (guests/tests/bench-exits.c) under the C floor
// or under xenkvm: TSC ticks per iteration, by the guest's own count.
import { root, runFloor, runXenkvm } from './common.js';

export type ExitMode = 'io' | 'hypercall';
const guest = `${root}guests/build/bench-exits.elf`;
const label: Record<ExitMode, string> = { io: 'exits', hypercall: 'hypercalls' };

/** The C floor (bench/floor.c) around the loop: ticks per iteration, and the TSC's kHz. */
export function floorExits(mode: ExitMode, iterations: number): { ticks: number; khz: number } {
  const out = runFloor(['-n', String(iterations), '-m', mode, guest]);
  const m = /floor: exits=(\d+) tsc=(\d+) tsc_khz=(\d+)/.exec(out);
  if (!m || Number(m[1]) !== iterations) throw new Error(`floor printed no result: ${out}`);
  return { ticks: Number(m[2]) / iterations, khz: Number(m[3]) };
}

/** xenkvm around the loop, with `args` added to `xenkvm run`: ticks per iteration. */
export function xenkvmExits(mode: ExitMode, iterations: number, args: string[] = []): number {
  const out = runXenkvm(['--kernel', guest, '--cmdline', `n=${iterations} mode=${mode}`, ...args]);
  const m = new RegExp(`KIT-BENCH ${label[mode]}=(\\d+) tsc=(\\d+)`).exec(out);
  if (!m || Number(m[1]) !== iterations || Number(m[2]) === 0) throw new Error(`xenkvm printed no result: ${out}`);
  return Number(m[2]) / iterations;
}

// What the benchmarks share: where things are, how a floor and xenkvm are
// run, and the medians over alternating rounds.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** Runs the C floor (bench/floor.c) and returns what it printed. */
export const runFloor = (args: string[]) => execFileSync(`${root}bench/build/floor`, args, { encoding: 'utf8' });

/** Runs `xenkvm run` as users do, through the launcher, and returns what the guest printed. */
export const runXenkvm = (args: string[]) => execFileSync(`${root}bin/xenkvm`, ['run', ...args], { encoding: 'utf8' });

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The median of each series of samples. */
export const medians = <K extends string>(samples: Record<K, number[]>) =>
  Object.fromEntries(Object.entries<number[]>(samples).map(([k, v]) => [k, median(v)])) as Record<K, number>;

/** TSC ticks as microseconds, at the floor's reported TSC frequency. */
export const micros = (khz: number) => (ticks: number) => `${((ticks / khz) * 1000).toFixed(2)} µs`;

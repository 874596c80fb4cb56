// What the benchmarks share: where things are, how a floor and xenkvm are
// run, and the medians over alternating rounds.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** What `file` printed; when it fails, the benchmark stops with one line saying why. */
function output(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const why = (err.stderr ?? '').trim().split('\n').pop() || err.message;
    process.stderr.write(`bench: ${file} ${args.join(' ')} failed: ${why}\n`);
    process.exit(1);
  }
}

/** Runs the C floor (bench/floor.c) and returns what it printed. */
export const runFloor = (args: string[]) => output(`${root}bench/build/floor`, args);

/** Runs `xenkvm run` as users do, through the launcher, and returns what the guest printed. */
export const runXenkvm = (args: string[]) => output(`${root}bin/xenkvm`, ['run', ...args]);

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The median of each series of samples. */
export const medians = <K extends string>(samples: Record<K, number[]>) =>
  Object.fromEntries(Object.entries<number[]>(samples).map(([k, v]) => [k, median(v)])) as Record<K, number>;

/** TSC ticks as microseconds, at the floor's reported TSC frequency. */
export const micros = (khz: number) => (ticks: number) => `${((ticks / khz) * 1000).toFixed(2)} µs`;

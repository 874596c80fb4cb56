// What the benchmarks share: where things are, how a floor and xenkvm are
// run, and the medians over alternating rounds.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hostKvmInterceptsXenHypercalls } from '../src/kvm/system.js';

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

const insideNestedVm = () => existsSync('/proc/cmdline') && readFileSync('/proc/cmdline', 'utf8').includes('xenkvm.agent=');

/**
 * Runs `measure` where KVM has Xen support (CONFIG_KVM_XEN): on this host's KVM if it has it, else
 * this benchmark's script (dist/bench/`name`.js) again inside the nested VM whose KVM has it, after
 * `prepare` (what the VM, which has no network, cannot fetch). Sets the exit status either way.
 */
export async function whereKvmHasXen(name: string, measure: () => Promise<void> | void, prepare?: () => void): Promise<void> {
  if (existsSync('/dev/kvm') && hostKvmInterceptsXenHypercalls()) return measure();
  if (insideNestedVm()) {
    process.stderr.write(`bench: this nested VM's KVM has no Xen support (CONFIG_KVM_XEN); run bench/${name} from the host, which starts the VM that has it\n`);
    process.exitCode = 1;
    return;
  }
  console.log(`${name}: this host's KVM has no Xen support (CONFIG_KVM_XEN): measured in the nested VM whose KVM has it`);
  prepare?.();
  process.exitCode = spawnSync(`${root}scripts/kvm-vm`, ['--kvm-xen', '--', 'node', `${root}dist/bench/${name}.js`], { stdio: 'inherit' }).status ?? 1;
}

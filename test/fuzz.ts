// npm run fuzz [-- --runs N --calls N --first-seed S]: long runs of the guest-side
// hypercall fuzzer (guests/tests/xen-fuzz.c), one xenkvm per seed, and their figures:
// calls made, VMM crashes (xenkvm failing), hangs (no end in time), events lost,
// accesses outside guest memory (the guest's guard area changed; the VMM itself
// cannot reach outside guest memory but through a crash), log lines and bytes,
// and the VMM's peak memory. Exit status 1 when any run failed.
// On PVM, whose guests cannot come back from ring 3, the ring 3 calls are left out.
import { Command, InvalidArgumentError } from 'commander';
import { hostKvmIsPvm } from '../src/kvm/system.js';
import { runFuzz, type FuzzRun } from './fuzz-run.js';

function count(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('a whole number from 1');
  return n;
}

const opts = new Command('fuzz')
  .description("runs the guest-side hypercall fuzzer under xenkvm, one seed per run, and reports what the VMM did")
  .option('--runs <n>', 'runs, each with its own seed', count, 10)
  .option('--calls <n>', 'hypercalls per run', count, 100_000)
  .option('--first-seed <n>', 'seed of the first run; the next ones follow', count, 1)
  .parse()
  .opts<{ runs: number; calls: number; firstSeed: number }>();

const ring3 = !hostKvmIsPvm();
if (!ring3) console.log('fuzz: this host\'s KVM is PVM, whose guests cannot come back from ring 3: the ring 3 calls are left out');
const runs: FuzzRun[] = [];
for (let i = 0; i < opts.runs; i++) {
  // About 6 ms a call on PVM with the event traffic; a run that takes 5 times that is hung.
  const r = await runFuzz({ seed: opts.firstSeed + i, calls: opts.calls, ring3, timeoutMs: 120_000 + opts.calls * 30 });
  runs.push(r);
  const f = r.figures;
  console.log(
    `seed ${r.seed}: ${r.passed ? 'ok' : `FAILED (${r.failure})`}; ${r.calls} calls (${f.ring3 ?? 0} from ring 3) in ${r.seconds.toFixed(0)} s; ` +
      `${f.sends ?? 0} events sent, ${f.lost ? 'one lost' : 'none lost'}; log ${r.logLines} lines, ${r.logBytes} bytes, ${r.logErrors} errors; ` +
      `peak RSS ${(r.peakRssKiB / 1024).toFixed(1)} MiB`,
  );
}
const total = (pick: (r: FuzzRun) => number) => runs.reduce((n, r) => n + pick(r), 0);
const crashes = runs.filter((r) => r.status !== null && r.status !== 0).length;
const hangs = runs.filter((r) => r.status === null).length;
const lost = runs.filter((r) => r.figures.lost).length;
const guard = runs.filter((r) => r.failure?.includes('guard')).length;
console.log(
  `fuzz: ${total((r) => r.calls)} calls in ${runs.length} runs, ${total((r) => r.seconds).toFixed(0)} s: ${crashes} VMM crashes, ${hangs} hangs, ` +
    `${lost} runs losing an event, ${guard} runs with guest memory changed outside what the calls were handed; ` +
    `log at most ${Math.max(...runs.map((r) => r.logLines))} lines (${Math.max(...runs.map((r) => r.logBytes))} bytes) a run, ${total((r) => r.logErrors)} errors; ` +
    `peak RSS at most ${(Math.max(...runs.map((r) => r.peakRssKiB)) / 1024).toFixed(1)} MiB`,
);
process.exitCode = runs.every((r) => r.passed) ? 0 : 1;

// One run of the guest-side hypercall fuzzer (guests/tests/xen-fuzz.c) under xenkvm:
// what the guest reported and what the VMM did meanwhile (its exit, its log, its
// memory), FIFO event channels offered so that its init_control calls reach them on every
// host. Used by the suite's short run (test/integration/fuzz.test.ts) and by
// `npm run fuzz` (test/fuzz.ts).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { guest, kitReport, launcher } from './guest-runner.js';

export interface FuzzRun {
  seed: number;
  calls: number;
  /** xenkvm's exit status; null when it had to be killed (a hang). */
  status: number | null;
  /** The guest's one case passed: no event lost, ring 3 refused, the VMM still answers, the guard intact. */
  passed: boolean;
  /** Why not, as the guest or the run says. */
  failure?: string;
  /** The KIT-FUZZ line's counts (ring3, sends, acks, lost, zero, positive, e<errno>). */
  figures: Record<string, number>;
  /** Lines and bytes xenkvm wrote to stderr (its log), and how many were errors. */
  logLines: number;
  logBytes: number;
  logErrors: number;
  /** The VMM's peak resident memory, from /proc while it ran. */
  peakRssKiB: number;
  seconds: number;
}

/** The counts of a KIT-FUZZ line: `key=number` pairs. */
export function fuzzFigures(stdout: string): Record<string, number> {
  const line = /KIT-FUZZ (.*)$/m.exec(stdout)?.[1] ?? '';
  return Object.fromEntries([...line.matchAll(/(\w+)=(-?\d+)/g)].map((m) => [m[1], Number(m[2])]));
}

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Runs the fuzzer for `calls` calls from `seed`; `ring3: false` leaves its ring 3 calls out (PVM). */
export function runFuzz(opts: { seed: number; calls: number; ring3: boolean; timeoutMs: number }): Promise<FuzzRun> {
  const cmdline = `calls=${opts.calls} seed=${opts.seed}${opts.ring3 ? '' : ' ring3=0'}`;
  const start = Date.now();
  const child = spawn(launcher, ['run', '--kernel', guest('xen-fuzz'), '--vcpus', '2', '--evtchn-fifo', 'on', '--cmdline', cmdline], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let peak = 0;
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const sample = setInterval(() => (peak = Math.max(peak, rssKiB(child.pid!))), 250);
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => {
      clearInterval(sample);
      clearTimeout(timer);
      const report = kitReport(stdout);
      const verdict = report.cases.get('fuzz');
      const lines = stderr.split('\n').filter((l) => l.length > 0);
      const passed = !hung && status === 0 && verdict === 'ok';
      // The sender reports a lost event at once, so that a run left hanging by it still says why.
      const lostLine = /^KIT-FUZZ-LOST (.*)$/m.exec(stdout)?.[1];
      const why = (failure: string) => (lostLine ? `${failure}; ${lostLine}` : failure);
      resolve({
        seed: opts.seed,
        calls: opts.calls,
        status: hung ? null : status,
        passed,
        failure: passed ? undefined : why(hung ? `no end after ${opts.timeoutMs / 1000} s` : verdict && verdict !== 'ok' ? verdict : (lines.at(-1) ?? `exit status ${status}`)),
        figures: fuzzFigures(stdout),
        logLines: lines.length,
        logBytes: Buffer.byteLength(stderr),
        logErrors: lines.filter((l) => l.includes('"level":50')).length,
        peakRssKiB: peak,
        seconds: (Date.now() - start) / 1000,
      });
    });
  });
}

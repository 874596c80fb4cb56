// Runs xenkvm on kit guests for the integration tests and reads the kit's
// machine-readable lines (KIT-CASE, KIT-SUMMARY, KIT-EXCEPTION).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const cli = `${root}dist/src/cli/main.js`;
/** How users run xenkvm: the launcher gives node its flags. */
export const launcher = `${root}bin/xenkvm`;
export const guest = (name: string) => `${root}guests/build/${name}.elf`;

/**
 * KVM tests never skip: where /dev/kvm is missing they fail, saying how to run them
 * (`npm test` runs them in the nested VM).
 */
export function requireKvm(): void {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (e) {
    throw new Error(`these tests need KVM, and /dev/kvm is not usable here (${(e as Error).message}): run them with npm test, or this file alone with scripts/kvm-vm node --test FILE`);
  }
}

/** One guest run: seconds in the nested VM, more on a loaded machine. */
const RUN_TIMEOUT_MS = 180_000;

/** A run through test/console-pty.py: its two waits on the terminal end at the command's exit, or after 300 s each. */
export const PTY_TIMEOUT_MS = 660_000;

/** Where a run that overstays its time writes node's diagnostic report (asked for with REPORT_SIGNAL before it is killed). */
let reportDir: string | undefined;
const REPORT_SIGNAL = 'SIGUSR2';
/** How long a stuck run gets to write its report. */
const REPORT_WAIT_MS = 5_000;

/** Node's options for a run: on REPORT_SIGNAL it writes a report of what it waits for into reportDir. */
function reportingEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  reportDir ??= mkdtempSync(join(tmpdir(), 'xenkvm-test-reports-'));
  const options = `--report-on-signal --report-signal=${REPORT_SIGNAL} --report-directory=${reportDir}`;
  return { ...env, NODE_OPTIONS: [env.NODE_OPTIONS, options].filter(Boolean).join(' ') };
}

/** What the report process `pid` wrote says it was doing: its JavaScript stack and the event-loop handles that kept it alive. */
function reportSummary(pid: number | undefined): string {
  // Node names it report.<date>.<time>.<pid>.<thread>.<sequence>.json.
  const file = reportDir && readdirSync(reportDir).find((f) => f.split('.')[3] === String(pid));
  if (!file) return 'it wrote no diagnostic report';
  let report: {
    javascriptStack?: { stack?: string[] };
    libuv?: { type: string; is_active: boolean; is_referenced?: boolean; [detail: string]: unknown }[];
    workers?: unknown[];
  };
  try {
    report = JSON.parse(readFileSync(join(reportDir!, file), 'utf8'));
  } catch (e) {
    return `its diagnostic report ${join(reportDir!, file)} is unreadable (${(e as Error).message})`;
  }
  const handles = (report.libuv ?? []).filter((h) => h.is_active && h.is_referenced !== false).map(({ type, is_active, is_referenced, address, ...detail }) => `${type} ${JSON.stringify(detail)}`);
  return [
    `its report (${join(reportDir!, file)}):`,
    `  JavaScript stack: ${(report.javascriptStack?.stack ?? []).slice(0, 8).join(' | ') || 'none'}`,
    `  handles keeping it alive: ${handles.join('; ') || 'none'}`,
    `  worker threads: ${report.workers?.length ?? 0}`,
  ].join('\n');
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function xenkvm(
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; signalAfter?: { text: string; signal: NodeJS.Signals }; input?: Uint8Array; onStdout?: (stdout: string) => void } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(launcher, args, { env: reportingEnv(options.env ?? process.env), stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    // Written and left open: the guest's console input, as a terminal would type it.
    if (options.input) child.stdin!.write(options.input);
    let stdout = '';
    let stderr = '';
    let signalled = false;
    const timeoutMs = options.timeoutMs ?? RUN_TIMEOUT_MS;
    // Past its time the run is asked what it waits for, then killed.
    let reportWait: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      child.kill(REPORT_SIGNAL);
      reportWait = setTimeout(giveUp, REPORT_WAIT_MS);
    }, timeoutMs);
    const giveUp = () => {
      child.kill('SIGKILL');
      // A process stuck in the kernel outlives SIGKILL: let go of it, or this test file's process would wait for it for ever.
      child.stdin?.destroy();
      child.stdout!.destroy();
      child.stderr!.destroy();
      child.unref();
      reject(new Error(`xenkvm ${args.join(' ')} did not finish in ${timeoutMs} ms; ${reportSummary(child.pid)}\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    };
    child.stdout!.on('data', (d) => {
      stdout += d;
      options.onStdout?.(stdout);
      if (options.signalAfter && !signalled && stdout.includes(options.signalAfter.text)) {
        signalled = true;
        child.kill(options.signalAfter.signal);
      }
    });
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      clearTimeout(reportWait);
      resolve({ status, stdout, stderr });
    });
  });
}

export function runGuest(
  name: string,
  opts: { vcpus?: number; cmdline?: string; memory?: number; xenVersion?: string; args?: string[]; input?: Uint8Array; timeoutMs?: number } = {},
): Promise<RunResult> {
  const args = ['run', '--kernel', guest(name), '--vcpus', String(opts.vcpus ?? 1)];
  if (opts.xenVersion !== undefined) args.push('--xen-version', opts.xenVersion);
  if (opts.cmdline !== undefined) args.push('--cmdline', opts.cmdline);
  if (opts.memory !== undefined) args.push('--memory', String(opts.memory));
  args.push(...(opts.args ?? []));
  return xenkvm(args, { timeoutMs: opts.timeoutMs, input: opts.input });
}

export interface KitReport {
  cases: Map<string, string>;
  summary?: { passed: number; failed: number };
  exception?: Record<string, string>;
}

export function kitReport(stdout: string): KitReport {
  const cases = new Map<string, string>();
  let summary: KitReport['summary'];
  let exception: KitReport['exception'];
  for (const line of stdout.split('\n')) {
    const c = /^KIT-CASE (\S+) (ok|FAIL.*)$/.exec(line);
    if (c) cases.set(c[1], c[2]);
    const s = /^KIT-SUMMARY passed=(\d+) failed=(\d+)$/.exec(line);
    if (s) summary = { passed: Number(s[1]), failed: Number(s[2]) };
    if (line.startsWith('KIT-EXCEPTION ')) exception = Object.fromEntries(line.slice(14).split(' ').map((kv) => kv.split('=') as [string, string]));
  }
  return { cases, summary, exception };
}

/** Asserts-friendly description of a run for failure messages. */
export function describe(r: RunResult): string {
  return `status ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/**
 * The 'vCPU exits' line a run logs at level info for vCPU `vcpu`: exits that reached xenkvm by reason,
 * the hypercalls it served by name, and KVM's count of all.
 */
export function vcpuExits(r: RunResult, vcpu = 0): { toXenkvm: Record<string, number>; hypercalls: Record<string, number>; kvm: { exits: number } } {
  for (const l of r.stderr.split('\n')) {
    if (!l.startsWith('{')) continue;
    const entry = JSON.parse(l) as { msg?: string; vcpu?: number };
    if (entry.msg === 'vCPU exits' && entry.vcpu === vcpu) return entry as unknown as ReturnType<typeof vcpuExits>;
  }
  assert.fail(`no 'vCPU exits' line logged for vCPU ${vcpu}\n${describe(r)}`);
}

/**
 * The kit guest powered off with every expected case ok, no case failed, a
 * summary that agrees, and at least `minCases` cases run.
 */
export function assertKitPassed(r: RunResult, expectedCases: readonly string[] = [], minCases = 0): void {
  const report = kitReport(r.stdout);
  assert.equal(r.status, 0, describe(r));
  for (const c of expectedCases) assert.equal(report.cases.get(c), 'ok', `case ${c}\n${describe(r)}`);
  for (const [c, result] of report.cases) assert.equal(result, 'ok', `case ${c}\n${describe(r)}`);
  assert.ok(report.cases.size >= minCases, describe(r));
  assert.deepEqual(report.summary, { passed: report.cases.size, failed: 0 }, describe(r));
}

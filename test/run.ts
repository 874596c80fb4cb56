// The test suite's driver (`npm test`): every compiled test file, one at a time, with
// node's own test runner. Where /dev/kvm works, all of them run here. Where it does
// not, or is PVM (which cannot run every guest the tests boot: see src/kvm/system.ts),
// the unit tests run here while a nested VM with /dev/kvm boots (src/nested/),
// and the tests that need KVM (test/integration/) run inside it, in one VM boot;
// then the Xen guest tests run again in a VM whose KVM has Xen support built in
// (CONFIG_KVM_XEN, which Debian's kernel leaves out), so both ways a guest's
// hypercalls reach xenkvm are tested. The tests that need that support (Linux
// boots) run only there, or here where the host's own KVM has it.
// The totals of both runs are added up; a skipped test fails the suite as a failed one
// does, since a skip here would hide untested code.
//   node dist/test/run.js [FILE.test.js ...]    (default: every test file under dist/)
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { hostKvmInterceptsXenHypercalls, hostKvmIsPvm, KVM_DEVICE, PVM_LIMITS } from '../src/kvm/system.js';
import { BOOT_TIMEOUT_REPORT_PREFIX, NestedVm, shellStatus } from '../src/nested/vm.js';
import type { TestCounts } from './count-reporter.js';
import { grubPvh } from './grub-guest.js';
import { linuxGuest } from './linux-guest.js';

const root = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
const dist = join(root, 'dist');
const reporter = join(dist, 'test', 'count-reporter.js');
/** A test that runs this long is stuck: it fails instead of holding up the suite (and CI) for ever. */
const TEST_TIMEOUT_MS = 15 * 60_000;
/** The whole KVM part in the nested VM (about 25 minutes on the development machine). */
const NESTED_TIMEOUT_MS = 75 * 60_000;
/**
 * No test in the VM goes this long without a line of output (each guest run there has a 180 s limit):
 * a silence this long means the VM stopped making progress, and what it is doing is reported.
 */
const NESTED_SILENCE_MS = 8 * 60_000;

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : testFiles(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}

/** Tests that boot guests or open /dev/kvm live under test/integration/. */
const needsKvm = (file: string) => relative(dist, file).startsWith(join('test', 'integration'));
/** The Xen guest tests (the interface, and the PV devices), run on both kernels in the nested VM. */
const XEN_TESTS = ['xen.test.js', 'block.test.js', 'net.test.js'].map((f) => join('test', 'integration', f));
const isXenTest = (file: string) => XEN_TESTS.includes(relative(dist, file));
/** Tests that need KVM's Xen support: Linux makes its hypercalls with VMCALL/VMMCALL. */
const needsKvmXen = (file: string) => relative(dist, file) === join('test', 'integration', 'linux.test.js');

/** Why the tests that need KVM cannot all run here, or null when they can. */
function whyNotHere(): string | null {
  try {
    accessSync(KVM_DEVICE, constants.R_OK | constants.W_OK);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? `${KVM_DEVICE} is missing here` : `${KVM_DEVICE} is not usable here (${(e as Error).message})`;
  }
  return hostKvmIsPvm() ? PVM_LIMITS : null;
}

function nodeTestArgs(files: string[], countsFile: string): string[] {
  return [
    '--test', '--test-concurrency=1', `--test-timeout=${TEST_TIMEOUT_MS}`,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    `--test-reporter=${reporter}`, `--test-reporter-destination=${countsFile}`,
    ...files,
  ];
}

/** The totals a run wrote; a run that wrote none (stopped, crashed) counts as one failure. */
function readCounts(file: string, where: string): TestCounts {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as TestCounts;
  } catch {
    process.stderr.write(`test: the test run ${where} reported no totals (it was stopped or crashed)\n`);
    return { tests: 1, pass: 0, fail: 1, cancelled: 0, skipped: 0, todo: 0 };
  }
}

function runHere(files: string[], countsFile: string): Promise<number> {
  return new Promise((done) => {
    const child = spawn(process.execPath, nodeTestArgs(files, countsFile), { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('close', (code, signal) => done(shellStatus({ code, signal })));
  });
}

/** Reports what the VM is doing to stderr. */
async function reportVmState(vm: NestedVm, why: string): Promise<void> {
  process.stderr.write(`test: ${why}; what the nested VM is doing:\n${await vm.diagnose()}\n`);
}

async function runNested(vmStart: Promise<NestedVm>, files: string[], countsFile: string): Promise<void> {
  const vm = await vmStart;
  let lastOutput = Date.now();
  let silenceReported = false;
  const relay = (into: Writable) => {
    const through = new PassThrough();
    through.on('data', () => {
      lastOutput = Date.now();
      silenceReported = false;
    });
    through.pipe(into, { end: false });
    return through;
  };
  const silenceCheck = setInterval(() => {
    if (silenceReported || Date.now() - lastOutput < NESTED_SILENCE_MS) return;
    silenceReported = true;
    void reportVmState(vm, `no output from the tests in the nested VM for ${NESTED_SILENCE_MS / 60_000} minutes`);
  }, 30_000);
  const timer = setTimeout(() => void reportVmState(vm, `the tests in the nested VM ran past ${NESTED_TIMEOUT_MS / 60_000} minutes`).finally(() => vm.kill()), NESTED_TIMEOUT_MS);
  try {
    await vm.exec([process.execPath, ...nodeTestArgs(files, countsFile)], { cwd: root, env: process.env, stdout: relay(process.stdout), stderr: relay(process.stderr) }).exit;
  } finally {
    clearTimeout(timer);
    clearInterval(silenceCheck);
    await vm.shutdown();
  }
}

/** Reports of nested VMs (this run's or its tests') that did not come up, written since `since`: CI shows only this output. */
function showBootTimeoutReports(since: number): void {
  const dir = join(root, 'build', 'nested');
  for (const name of readdirSync(dir).filter((f) => f.startsWith(BOOT_TIMEOUT_REPORT_PREFIX)).sort()) {
    const file = join(dir, name);
    if (statSync(file).mtimeMs >= since) process.stderr.write(`test: ${file}:\n${readFileSync(file, 'utf8')}\n`);
  }
}

function add(a: TestCounts, b: TestCounts): TestCounts {
  return { tests: a.tests + b.tests, pass: a.pass + b.pass, fail: a.fail + b.fail, cancelled: a.cancelled + b.cancelled, skipped: a.skipped + b.skipped, todo: a.todo + b.todo };
}

function line(where: string, c: TestCounts): string {
  return `${where}: ${c.pass} passed, ${c.fail + c.cancelled} failed, ${c.skipped + c.todo} skipped`;
}

async function main(args: string[]): Promise<number> {
  const start = Date.now();
  const files = args.length ? args.map((f) => resolve(f)) : testFiles(dist).sort();
  const countsDir = join(root, 'build', 'test-counts');
  rmSync(countsDir, { recursive: true, force: true });
  mkdirSync(countsDir, { recursive: true });
  const runs: [where: string, counts: TestCounts][] = [];
  // Built here: the nested VM has no network to fetch Debian's packages. Where this fails, so do the tests, saying why.
  if (files.some(needsKvmXen)) {
    try {
      linuxGuest(root);
    } catch (e) {
      process.stderr.write(`test: cannot build the Linux test guest: ${(e as Error).message}\n`);
    }
  }
  if (files.some((f) => relative(dist, f) === join('test', 'integration', 'block.test.js'))) {
    try {
      grubPvh(root);
    } catch (e) {
      process.stderr.write(`test: cannot fetch Debian's PVH GRUB: ${(e as Error).message}\n`);
    }
  }
  const notHere = files.some(needsKvm) ? whyNotHere() : null;
  /** The files a nested VM whose KVM has Xen support runs: the Xen guest tests again, and those that need it. */
  let kvmXenFiles: string[];
  if (notHere === null) {
    // Asked only when a test needs it: a run of unit tests alone may have no /dev/kvm to ask.
    const hasXen = files.some(needsKvmXen) && hostKvmInterceptsXenHypercalls();
    const hereFiles = hasXen ? files : files.filter((f) => !needsKvmXen(f));
    const file = join(countsDir, 'here.json');
    await runHere(hereFiles, file);
    runs.push(['here', readCounts(file, 'here')]);
    kvmXenFiles = hasXen ? [] : files.filter(needsKvmXen);
  } else {
    const kvmFiles = files.filter(needsKvm);
    process.stderr.write(`test: ${notHere}: the ${kvmFiles.length} test files that need KVM run in a nested VM (QEMU TCG), the rest here\n`);
    const vmFiles = kvmFiles.filter((f) => !needsKvmXen(f));
    const vmStart = vmFiles.length ? NestedVm.start({ root }) : undefined;
    vmStart?.catch(() => {}); // reported when awaited, after the host's tests
    const hostFile = join(countsDir, 'host.json');
    const unitFiles = files.filter((f) => !needsKvm(f));
    if (unitFiles.length) {
      await runHere(unitFiles, hostFile);
      runs.push(['host', readCounts(hostFile, 'on the host')]);
    }
    if (vmStart) {
      const vmFile = join(countsDir, 'nested-vm.json');
      try {
        await runNested(vmStart, vmFiles, vmFile);
        runs.push(['nested VM', readCounts(vmFile, 'in the nested VM')]);
      } catch (e) {
        process.stderr.write(`test: the tests that need KVM did not run: ${(e as Error).message}\n`);
        runs.push(['nested VM', { tests: 1, pass: 0, fail: 1, cancelled: 0, skipped: 0, todo: 0 }]);
      }
    }
    kvmXenFiles = kvmFiles.filter((f) => isXenTest(f) || needsKvmXen(f));
  }
  if (kvmXenFiles.length) {
    const xenFile = join(countsDir, 'nested-vm-kvm-xen.json');
    const where = 'nested VM, KVM with Xen support';
    try {
      process.stderr.write(`test: ${kvmXenFiles.map((f) => relative(dist, f)).join(' and ')} in a nested VM whose KVM has Xen support (CONFIG_KVM_XEN)\n`);
      await runNested(NestedVm.start({ root, kernel: 'kvm-xen' }), kvmXenFiles, xenFile);
      runs.push([where, readCounts(xenFile, `in the ${where}`)]);
    } catch (e) {
      process.stderr.write(`test: the tests for KVM with Xen support did not run: ${(e as Error).message}\n`);
      runs.push([where, { tests: 1, pass: 0, fail: 1, cancelled: 0, skipped: 0, todo: 0 }]);
    }
  }
  if (notHere !== null || kvmXenFiles.length) showBootTimeoutReports(start);
  const total = runs.reduce((a, [, c]) => add(a, c), { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 });
  process.stdout.write('\n');
  if (runs.length > 1) for (const [where, c] of runs) process.stdout.write(`${line(where, c)}\n`);
  if (total.skipped + total.todo > 0) process.stdout.write('test: skipped tests fail the suite: every test must run (see docs/testing.md)\n');
  process.stdout.write(`${line('total', total)}\n`);
  return total.fail + total.cancelled + total.skipped + total.todo === 0 && total.pass > 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));

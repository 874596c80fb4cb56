// Guests written only from Xen's public headers (guests/tests/xen-*.c, built
// against /usr/include/xen) exercise the Xen interface under KVM, 64-bit and
// 32-bit (compat), on one and two vCPUs.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { xenHvmConfig } from '../../src/kvm/abi.js';
import { hostKvmInterceptsXenHypercalls, hostKvmXenSupport } from '../../src/kvm/system.js';
import { assertKitPassed, describe, kitReport, requireKvm, runGuest, vcpuExits } from '../guest-runner.js';

requireKvm();

// Linux since its XSA-466 fixes issues VMCALL/VMMCALL itself: those reach xenkvm only where KVM has Xen support.
const kvmHasXen = hostKvmInterceptsXenHypercalls();
/** KVM since Linux 6.7 ignores VCPU_SSHOTTMR_future, as Xen does since 4.18; before, it refuses a past deadline as Xen 4.17.0. */
const kvmIgnoresFutureFlag = (() => {
  const [major, minor] = release().split('.').map(Number);
  return major > 6 || (major === 6 && minor >= 7);
})();

/** xen-kvm-evtchn's cases, whichever delivers its events. */
const KVM_EVTCHN_CASES = ['setup', 'ipi', 'poll', 'timer-poll'];
const FIFO_CASES = ['setup', 'switch', 'ipi', 'priorities', 'masked', 'storm', 'timer', 'errors', 'reset'];

const programs: { name: string; vcpus: number[]; cases: string[]; cmdline?: string; xenVersion?: string; args?: string[]; log?: (stderr: string) => void; stdout?: (stdout: string) => void }[] = [
  {
    name: 'xen-detect',
    vcpus: [2],
    cases: ['signature', 'version-leaf', 'hypercall-leaf', 'hypercall-page', 'hvm-leaf', 'unimplemented', 'toolstack-refused', 'user-mode', 'args-preserved'],
    // an unimplemented hypercall is -ENOSYS to the guest (case unimplemented) and one line in the log
    log: (stderr) => assert.equal(stderr.split('\n').filter((l) => l.includes('hypercall 37 (kexec_op)')).length, 1, stderr),
  },
  {
    name: 'xen-version',
    vcpus: [1],
    cases: ['version', 'extraversion', 'compile-info', 'capabilities', 'changeset', 'platform-parameters', 'get-features', 'pagesize', 'guest-handle', 'commandline', 'build-id', 'unknown-subop', 'bad-pointer'],
  },
  {
    name: 'xen-shinfo',
    vcpus: [1, 2],
    cases: ['map-shared-info', 'wallclock', 'vcpu-time', 'move-shared-info', 'move-above-ram', 'bad-space', 'bad-idx', 'bad-arg', 'batch', 'memory-map', 'memory-map-pvh', 'memory-map-short', 'reservation'],
  },
  {
    name: 'xen-balloon',
    vcpus: [1, 2],
    cases: ['reservation', 'decrease', 'populate', 'extents', 'refused', 'shared-info', 'outside-ram', 'increase'],
    log: (stderr) => assert.deepEqual(stderr.split('\n').filter((l) => l.trim() !== '').map((l) => /outside the RAM/.test(l)), [true], stderr),
  },
  {
    name: 'xen-hvmop',
    vcpus: [1],
    cases: ['callback-vector', 'callback-gsi', 'callback-pci-intx', 'callback-off', 'store-console-params', 'forbidden-params', 'bad-index', 'domid', 'upcall-vector', 'pagetable-dying', 'unknown-op'],
  },
  {
    name: 'xen-vcpuinfo',
    vcpus: [2],
    cases: ['map-shared-info', 'run-all-vcpus', 'bad-arg', 'offset-crosses-page', 'not-ram-gfn', 'register-copies', 'register-time', 'register-again'],
  },
  {
    name: 'xen-runstate',
    vcpus: [2],
    cases: ['vm-assist', 'runstate-info-self', 'other-vcpu-offline', 'bad-vcpu', 'runstate-crossing', 'runstate-crossing-update-flag', 'canary-pages', 'other-vcpu-up', 'ap-runstate-area', 'cross-register'],
    // vCPU 1 publishing while vCPU 0 moves its area (case cross-register) never reads a half-changed registration
    log: (stderr) => assert.doesNotMatch(stderr, /inside xenkvm/),
  },
  {
    name: 'xen-time',
    vcpus: [2],
    cases: ['wallclock', 'start-vcpus', 'pvclock', 'pvclock-cross-vcpu', 'time-area', 'time-area-bad-arg'],
  },
  {
    name: 'xen-vcpu-up',
    vcpus: [2],
    cases: ['before', 'initialise', 'up', 'down-self', 'up-again'],
  },
  {
    name: 'xen-gnttab',
    vcpus: [1, 2],
    args: ['--secondary-consoles', '1'],
    cases: ['query-size', 'setup-table', 'reserved-entries', 'physmap-grow', 'copy-gmfn', 'copy-gref', 'version', 'swap', 'map-refused', 'hvm-filtered', 'secondary-console', 'secondary-console-v2'],
    // the map of a grant of its own, which xenkvm refuses (case map-refused), is one line in the log, and nothing else is
    log: (stderr) => assert.deepEqual(stderr.split('\n').filter((l) => l.trim() !== '').map((l) => l.includes('map_grant_ref for a grant of its own')), [true], stderr),
    // what the guest wrote into the secondary console's ring, whose page it granted to domain 0, comes out with the primary's output
    stdout: (stdout) => {
      assert.match(stdout, /^KIT-XEN secondary-console says hello$/m);
      assert.match(stdout, /^KIT-XEN secondary-console says hello again, granted in v2$/m);
    },
  },
  {
    name: 'xen32-detect',
    vcpus: [1],
    cases: ['signature', 'version-leaf', 'hypercall-leaf', 'hvm-leaf', 'hypercall-page', 'version', 'get-features', 'strings', 'platform-parameters-compat', 'unimplemented', 'toolstack-refused', 'args-preserved'],
  },
  {
    name: 'xen32-shinfo',
    vcpus: [1],
    cases: ['map-shared-info', 'wallclock-compat', 'vcpu-time', 'move-shared-info', 'bad-space-idx', 'batch', 'memory-map', 'reservation'],
  },
  {
    name: 'xen32-vcpu',
    vcpus: [1],
    cases: ['map-shared-info', 'vcpu-info-compat', 'runstate-crossing', 'runstate-crossing-update-flag', 'runstate-info-compat', 'time-area-compat'],
  },
  {
    name: 'xen32-hvmop',
    vcpus: [1],
    cases: ['callback-irq', 'store-console-params', 'refused', 'upcall-vector', 'unknown-op'],
  },
  {
    name: 'xen-evtchn',
    vcpus: [2],
    cases: ['map-shared-info', 'start-vcpus', 'alloc-unbound', 'callback-vector', 'upcall-vector', 'loopback', 'bind-ipi', 'masked', 'bind-vcpu', 'bind-virq', 'close', 'errors', 'storm', 'reset'],
  },
  { name: 'xen-evtchn-gsi', vcpus: [1], cases: ['setup', 'events', 'unscanned'] },
  { name: 'xen-evtchn-gsi', vcpus: [1], cmdline: 'intx=1', cases: ['setup', 'events', 'unscanned'] },
  { name: 'xen-upcall-early', vcpus: [1], cases: ['before-lapic', 'after'] },
  { name: 'xen-evtchn-moves', vcpus: [2], cases: ['setup', 'storm', 'after-moves'] },
  // Without the fast path every send goes through the main thread: same events, same order.
  { name: 'xen-evtchn-moves', vcpus: [2], args: ['--no-evtchn-fast-path'], cases: ['setup', 'storm', 'after-moves'] },
  { name: 'xen-fifo', vcpus: [2], args: ['--evtchn-fifo', 'on'], cases: FIFO_CASES },
  { name: 'xen-fifo', vcpus: [2], args: ['--evtchn-fifo', 'on', '--no-evtchn-fast-path'], cases: FIFO_CASES },
  { name: 'xen-fifo', vcpus: [2], cmdline: 'fifo=0', args: ['--evtchn-fifo', 'off'], cases: ['setup', 'refused'] },
  // By default FIFO is offered unless KVM raises events itself, which it can only under the 2-level ABI.
  { name: 'xen-fifo', vcpus: [2], cmdline: kvmHasXen ? 'fifo=0' : undefined, cases: kvmHasXen ? ['setup', 'refused'] : FIFO_CASES },
  // Where KVM has Xen support it keeps the singleshot timer (the timer fast path); xenkvm's own timer too.
  {
    name: 'xen-timer',
    vcpus: [2],
    cmdline: kvmHasXen ? `kvm-timer=${kvmIgnoresFutureFlag ? 2 : 1}` : undefined,
    cases: ['setup', 'singleshot', 'future-flag', 'stop', 'periodic', 'ap-timer', 'block', 'poll'],
  },
  ...(kvmHasXen ? [{ name: 'xen-timer', vcpus: [2], args: ['--kvm-fast-paths', 'time'], cases: ['setup', 'singleshot', 'future-flag', 'stop', 'periodic', 'ap-timer', 'block', 'poll'] }] : []),
  // Where KVM has Xen support it raises the events (the evtchn fast path) and serves polls by the instruction; with
  // the timer in KVM, and without it (xenkvm's timer thread hands its events to KVM, which wakes the poller).
  { name: 'xen-kvm-evtchn', vcpus: [2], cmdline: kvmHasXen ? 'kvm=1' : undefined, cases: KVM_EVTCHN_CASES },
  ...(kvmHasXen ? [{ name: 'xen-kvm-evtchn', vcpus: [2], cmdline: 'kvm=1', args: ['--kvm-fast-paths', 'evtchn'], cases: KVM_EVTCHN_CASES }] : []),
  { name: 'xen32-gnttab', vcpus: [1], cases: ['query-size', 'setup-table-compat', 'reserved-entries', 'copy-compat'] },
  {
    name: 'xen32-evtchn',
    vcpus: [1],
    cases: ['map-shared-info', 'alloc-unbound', 'loopback-compat', 'status', 'masked-compat', 'close', 'errors'],
  },
  // The compat ABI through interrupts, from a 32-bit PAE kernel: both upcall styles.
  {
    name: 'xen32-upcall',
    vcpus: [2],
    cases: ['pae-walk', 'exceptions', 'map-shared-info', 'start-vcpus', 'callback-vector', 'upcall-vector', 'loopback', 'bind-ipi', 'masked', 'storm'],
  },
  { name: 'xen-version', vcpus: [1], xenVersion: '4.19', cmdline: 'expect-version=4.19', cases: ['version', 'platform-parameters', 'get-features'] },
  { name: 'xen32-detect', vcpus: [1], xenVersion: '4.19', cmdline: 'expect-version=4.19', cases: ['version-leaf', 'version'] },
];

for (const p of programs) {
  for (const vcpus of p.vcpus) {
    const what = `${p.name} on ${vcpus} vCPU${vcpus > 1 ? 's' : ''}${p.xenVersion ? ` as Xen ${p.xenVersion}` : ''}${p.args ? ` with ${p.args.join(' ')}` : ''}${p.cmdline && !p.xenVersion ? ` (${p.cmdline})` : ''}`;
    test(what, async () => {
      const r = await runGuest(p.name, { vcpus, cmdline: p.cmdline, xenVersion: p.xenVersion, args: p.args });
      assertKitPassed(r, p.cases);
      p.log?.(r.stderr);
      p.stdout?.(r.stdout);
    });
  }
}

test(`hypercalls by VMCALL/VMMCALL directly ${kvmHasXen ? 'reach xenkvm (KVM with Xen support)' : 'get KVM\'s own answer (KVM without Xen support)'}, and the hypercall page's stubs match`, async () => {
  const r = await runGuest('xen-vmcall', { cmdline: `expect=${kvmHasXen ? 'xen' : 'kvm'}` });
  assertKitPassed(r, ['vendor', 'page-entry', 'direct', 'poll']);
  assert.match(r.stdout, kvmHasXen ? /^KIT-XEN page-entry=vmm?call$/m : /^KIT-XEN page-entry=other$/m);
  // The unknown hypercall made directly is answered, and reported once, by xenkvm only where it reached it.
  assert.equal(r.stderr.split('\n').filter((l) => l.includes('hypercall 63')).length, kvmHasXen ? 1 : 0, describe(r));
});

test(`xen_version(XENVER_version) is answered by ${kvmHasXen ? 'KVM itself with the version fast path, by xenkvm with --kvm-fast-paths none' : 'xenkvm (KVM has no Xen support here)'}`, async () => {
  const calls = 2000;
  const run = async (paths: string) => {
    const r = await runGuest('bench-exits', { cmdline: `n=${calls} mode=hypercall`, args: ['--kvm-fast-paths', paths, '--log-level', 'info'] });
    assert.equal(r.status, 0, describe(r));
    assert.match(r.stdout, new RegExp(`^KIT-BENCH hypercalls=${calls} tsc=[1-9]`, 'm'), describe(r));
    // A fast path asked for by name that KVM cannot serve is named, once.
    const unavailable = r.stderr.split('\n').filter((l) => l.includes('cannot serve the fast paths version itself (it has no Xen support'));
    assert.equal(unavailable.length, !kvmHasXen && paths === 'version' ? 1 : 0, describe(r));
    return vcpuExits(r);
  };
  const inKernel = await run('version');
  const forwarded = await run('none');
  if (kvmHasXen) {
    // Every call still leaves the guest, for KVM; the guest's other hypercalls and its console still reach xenkvm, the loop's do not.
    assert.ok(inKernel.kvm.exits >= calls, JSON.stringify(inKernel));
    assert.ok((inKernel.toXenkvm.XEN ?? 0) < calls / 10, JSON.stringify(inKernel));
    assert.ok(forwarded.toXenkvm.XEN >= calls, JSON.stringify(forwarded));
  } else {
    for (const exits of [inKernel, forwarded]) assert.ok(exits.toXenkvm.IO >= calls, JSON.stringify(exits));
  }
});

test(`VCPUOP_set_singleshot_timer is kept by ${kvmHasXen ? 'KVM with the timer fast path, which fires VIRQ_TIMER itself, and by xenkvm with --kvm-fast-paths time' : 'xenkvm (KVM has no Xen support here)'}`, async () => {
  const calls = 1000;
  const run = async (paths: string) => {
    const r = await runGuest('bench-timer', { cmdline: `n=${calls}`, args: ['--kvm-fast-paths', paths, '--log-level', 'info'] });
    assert.equal(r.status, 0, describe(r));
    // The last timer, 1 ms ahead, fires and its event reaches the guest's upcall handler whoever keeps it.
    assert.match(r.stdout, new RegExp(`^KIT-BENCH timers=${calls} tsc=[1-9]\\d* fired=1 late-ns=\\d+$`, 'm'), describe(r));
    return vcpuExits(r).hypercalls.vcpu_op ?? 0;
  };
  const inKernel = await run('timer');
  const served = await run('time');
  if (kvmHasXen) assert.ok(inKernel < 10, `${inKernel} vcpu_op calls reached xenkvm`);
  else assert.ok(inKernel > calls, `${inKernel} vcpu_op calls reached xenkvm`);
  assert.ok(served > calls, `${served} vcpu_op calls reached xenkvm`);
});

test(`EVTCHNOP_send on an IPI port is served by ${kvmHasXen ? 'KVM with the evtchn fast path, by xenkvm with --kvm-fast-paths time' : 'xenkvm (KVM has no Xen support here)'}`, async () => {
  const ipis = 1000;
  const sends = async (paths: string) => {
    // The guest's polls by the instruction must sleep (kvm=1) as KVM's do once it raises the events, and else return at once.
    const kvm = kvmHasXen ? ` kvm=${paths === 'evtchn' ? '1' : 'yield'}` : '';
    const r = await runGuest('xen-kvm-evtchn', { vcpus: 2, cmdline: `n=${ipis}${kvm}`, args: ['--kvm-fast-paths', paths, '--log-level', 'info'] });
    assertKitPassed(r, KVM_EVTCHN_CASES);
    return vcpuExits(r).hypercalls.event_channel_op ?? 0;
  };
  const inKernel = await sends('evtchn');
  const served = await sends('time');
  // KVM takes the events once each vCPU's LAPIC has taken its vector from xenkvm: the first sends still reach it.
  if (kvmHasXen) assert.ok(inKernel < ipis / 10, `${inKernel} event_channel_op calls reached xenkvm`);
  else assert.ok(inKernel > ipis, `${inKernel} event_channel_op calls reached xenkvm`);
  assert.ok(served > ipis, `${served} event_channel_op calls reached xenkvm`);
});

test(`shared_info moved again and again: ${kvmHasXen ? "KVM's timer event lands in the page where it is, KVM holding it by host address where it can (the shinfo-hva fast path) and by frame without" : 'the timer event lands in the page where it is (KVM has no Xen support here)'}`, async () => {
  const moves = 200;
  const byAddress = kvmHasXen && (hostKvmXenSupport() & xenHvmConfig.SHARED_INFO_HVA) !== 0;
  for (const paths of ['timer,shinfo-hva', 'timer']) {
    const r = await runGuest('bench-shinfo', { cmdline: `n=${moves}`, args: ['--kvm-fast-paths', paths, '--log-level', 'info'] });
    assert.equal(r.status, 0, describe(r));
    assert.match(r.stdout, new RegExp(`^KIT-BENCH moves=${moves} tsc=[1-9]\\d* fired=1$`, 'm'), describe(r));
    const on = /"on":\[([^\]]*)\]/.exec(r.stderr.split('\n').find((l) => l.includes('KVM fast paths')) ?? '')?.[1] ?? '';
    assert.equal(on.includes('"shinfo-hva"'), byAddress && paths.includes('shinfo-hva'), describe(r));
    assert.equal(on.includes('"timer"'), kvmHasXen, describe(r));
  }
});

test(`the time records are ${kvmHasXen ? "written by KVM with the time fast path, by xenkvm with --kvm-fast-paths none" : "written by xenkvm (KVM has no Xen support here)"}, and the guest's clock holds either way`, async () => {
  const cases = ['wallclock', 'start-vcpus', 'pvclock', 'pvclock-cross-vcpu', 'time-area', 'time-area-bad-arg'];
  /** Each vCPU's vcpu_info record as the guest read it: xenkvm's all share one time base, system time 0 at the TSC of the VM's start. */
  const records = async (paths: string) => {
    const r = await runGuest('xen-time', { vcpus: 2, args: ['--kvm-fast-paths', paths] });
    assertKitPassed(r, cases);
    const found = [...r.stdout.matchAll(/^KIT-XEN cpu=(\d) time version=\d+ tsc=(0x[0-9a-f]+) system=(\d+) /gm)].map((m) => ({ tsc: BigInt(m[2]), system: BigInt(m[3]) }));
    assert.equal(found.length, 2, describe(r));
    return found;
  };
  const kvm = await records('time');
  const own = await records('none');
  for (const run of kvmHasXen ? [own] : [own, kvm]) {
    assert.deepEqual(run.map((r) => r.system), [0n, 0n], "xenkvm's time base");
    assert.equal(run[0].tsc, run[1].tsc, "xenkvm's time base");
  }
  // KVM writes its kvmclock as each vCPU enters: a reading taken while the guest ran.
  if (kvmHasXen) for (const record of kvm) assert.ok(record.system > 0n, "KVM's record");
});

const shutdowns: [action: string, status: number, stderr?: RegExp][] = [
  ['poweroff', 0],
  ['reboot', 2, /reason 1: reboot/],
  ['crash', 6, /reason 3: crash/],
  ['watchdog', 6, /reason 4: crash/],
  ['suspend', 7, /reason 2: suspend/],
  ['unknown', 6, /reason 99: crash/],
  ['code', 6, /reason 3: crash/],
];
for (const [action, status, stderr] of shutdowns) {
  test(`SCHEDOP_shutdown ${action} ends the run with exit status ${status}`, async () => {
    const r = await runGuest('xen-sched', { cmdline: `action=${action}` });
    assert.equal(r.status, status, describe(r));
    assert.match(r.stdout, /^KIT-SCHED shutdown reason=\d+$/m);
    if (stderr) assert.match(r.stderr, stderr);
    else assert.equal(r.stderr, '');
  });
}

test('the PV console ring and console_io reach stdout and the console log, and stdin reaches the guest', async () => {
  const input = new Uint8Array([...new Uint8Array(1024).fill(0x69), ...new TextEncoder().encode('CONSOLEIO!')]);
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-console-'));
  const logFile = join(dir, 'console.log');
  const r = await runGuest('xen-console', { input, args: ['--console-log', logFile] });
  const logged = readFileSync(logFile, 'utf8');
  rmSync(dir, { recursive: true, force: true });
  assert.equal(logged, r.stdout, 'the log holds exactly what the guest printed');
  assertKitPassed(r, ['setup', 'output', 'console-io', 'input']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('KIT-CONSOLE ring line'));
  assert.deepEqual(lines, Array.from({ length: 120 }, (_, i) => `KIT-CONSOLE ring line ${i + 1} of 120`), 'every line, in order');
  assert.match(r.stdout, /^KIT-CONSOLE console_io line$/m);
  assert.equal(r.stderr, '', 'nothing logged');
});

test('an expired SCHEDOP_watchdog crashes the domain (exit status 6)', async () => {
  const r = await runGuest('xen-sched', { cmdline: 'action=watchdog-timer' });
  assert.equal(r.status, 6, describe(r));
  assert.match(r.stdout, /^KIT-CASE watchdog-timer ok$/m);
  assert.match(r.stderr, /watchdog 1 expired/);
});

test('SCHEDOP yield returns to the guest as Xen answers it', async () => {
  const r = await runGuest('xen-sched', { cmdline: 'action=yield' });
  assert.equal(r.status, 0, describe(r));
  assert.deepEqual(kitReport(r.stdout).summary, { passed: 1, failed: 0 }, describe(r));
});

const softResetCases = ['setup', 'soft-reset', 'ports-closed', 'virq-rebind', 'runstate-stopped', 'old-frame-is-ram', 'map-again', 'events-to-shared-info', 'vcpu-info-again', 'toolstack-again'];
for (const vcpus of [1, 2]) {
  test(`SCHEDOP_shutdown soft_reset on ${vcpus} vCPU${vcpus > 1 ? 's' : ''}: the domain is soft-reset and the guest runs on`, async () => {
    const r = await runGuest('xen-sched', { vcpus, cmdline: 'action=soft-reset' });
    // With two vCPUs the second is up, serving calls, across the reset.
    assertKitPassed(r, vcpus > 1 ? [...softResetCases, 'other-vcpu'] : softResetCases);
    assert.equal(r.stderr, '', describe(r));
  });
}

test('the IPI benchmark guest: every EVTCHNOP_send reaches vCPU 1 once', async () => {
  const r = await runGuest('bench-ipi', { vcpus: 2, cmdline: 'n=40 warmup=20 mode=xen' });
  assert.equal(r.status, 0, describe(r));
  // warm-up, timed rounds and the back-to-back run: 20 + 40 + 40 events
  assert.match(r.stdout, /^KIT-BENCH ipi-detail mode=xen .* acks=100 spurious=0$/m, describe(r));
  assert.match(r.stdout, /^KIT-BENCH ipi median-tsc=\d+ rounds=40 events-tsc=\d+$/m, describe(r));
});

// The nested-VM runner, booted for real (QEMU TCG; it needs no KVM on the host):
// scripts/kvm-vm passes exit status, stdout, stderr and stdin through and says in
// one line why it cannot start; one VM serves several commands and sockets at once.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { NestedUnavailableError, NestedVm } from './vm.js';

const root = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
const kvmVm = `${root}/scripts/kvm-vm`;

function runKvmVm(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(kvmVm, args, { cwd: root, env: opts.env ?? process.env, timeout: 300_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
    child.stdin!.end(opts.input ?? '');
  });
}

test('scripts/kvm-vm passes the exit status, stdout and stderr apart, and stdin, and output files come back', async () => {
  const marker = `${root}/build/kvm-vm-test-output`;
  rmSync(marker, { force: true });
  const r = await runKvmVm(['--', 'sh', '-c', `cat > ${marker}; test -w /dev/kvm && echo "kvm ok"; echo "to stderr" >&2; echo out; exit 7`], { input: 'typed input\n' });
  assert.equal(r.status, 7, r.stderr);
  assert.equal(r.stdout, 'kvm ok\nout\n');
  assert.equal(r.stderr, 'to stderr\n');
  assert.equal(readFileSync(marker, 'utf8'), 'typed input\n');
  rmSync(marker);
});

test('a share below /tmp is the host directory, on top of the VM\'s own /tmp', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-share-'));
  try {
    writeFileSync(join(dir, 'from-host'), 'host\n');
    const r = await runKvmVm(['--share', dir, '--', 'sh', '-c', `cat ${dir}/from-host && echo vm > ${dir}/from-vm`]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'host\n');
    assert.equal(readFileSync(join(dir, 'from-vm'), 'utf8'), 'vm\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('scripts/kvm-vm says in one line, with status 125, when QEMU cannot be had', async () => {
  const r = await runKvmVm(['true'], { env: { ...process.env, XENKVM_QEMU: '/nonexistent/qemu-system-x86_64' } });
  assert.equal(r.status, 125);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^kvm-vm: cannot start the nested VM: cannot run \/nonexistent\/qemu-system-x86_64: .*ENOENT.*apt-get install qemu-system-x86.*\n$/);
});

test('scripts/kvm-vm stops a command at its time limit with status 124, saying what the VM was doing', async () => {
  const r = await runKvmVm(['--timeout', '5', '--', 'sleep', '600']);
  assert.equal(r.status, 124, r.stderr);
  assert.match(r.stderr, /^kvm-vm: what the nested VM was doing at the time limit:\nQEMU's vCPUs:\n[^]*NMI backtrace[^]*\nkvm-vm: sleep 600 did not finish in 5 s; the nested VM was stopped\n$/);
});

test('scripts/kvm-vm refuses bad options in one line without booting', async () => {
  const r = await runKvmVm(['--timeout', 'soon', 'true']);
  assert.equal(r.status, 125);
  assert.match(r.stderr, /time limit must be a positive whole number, not "soon"/);
});

test('a VM whose agent does not come up in time is asked what it is doing, and the error says where that went', async () => {
  const failure = await NestedVm.start({ root, bootTimeoutMs: 3000 }).then(
    (started) => {
      void started.shutdown();
      assert.fail('the VM started within 3 s');
    },
    (e: Error) => e,
  );
  assert.ok(failure instanceof NestedUnavailableError);
  const report = /^the nested VM did not start its agent in 3 s.*; what it was doing is in (\S+\/build\/nested\/boot-timeout-\S+\.txt)$/.exec(failure.message);
  assert.ok(report, failure.message);
  const text = readFileSync(report[1], 'utf8');
  rmSync(report[1]);
  assert.match(text, /^the nested VM did not start its agent in 3 s[^]*\nQEMU's vCPUs:\n[^]*CPU#0\nRAX=[^]*\nThe console:\n/);
});

/** Whether process `pid` has ended (a zombie nobody reaped yet counts as ended). */
function ended(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
  } catch {
    return true;
  }
}

test('the VM does not outlive its runner: killed outright while the VM boots, the runner takes QEMU with it', async () => {
  const runner = spawn(process.execPath, [`${root}/dist/src/nested/cli.js`, '--', 'true'], { cwd: root, stdio: 'ignore' });
  let qemu: number | undefined;
  for (let waited = 0; qemu === undefined && waited < 30_000; waited += 50) {
    await new Promise((r) => setTimeout(r, 50));
    const children = readFileSync(`/proc/${runner.pid}/task/${runner.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    qemu = children.find((pid) => !ended(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('-accel\0tcg'));
  }
  assert.ok(qemu, 'the runner started no QEMU');
  // Past QEMU's start-up (it has connected its control port) but before the VM's agent is up to notice the runner go.
  await new Promise((r) => setTimeout(r, 3000));
  runner.kill('SIGKILL');
  for (let waited = 0; !ended(qemu) && waited < 30_000; waited += 200) await new Promise((r) => setTimeout(r, 200));
  assert.ok(ended(qemu), `QEMU (pid ${qemu}) still runs 30 s after its runner was killed`);
});

let vm: NestedVm;
before(async () => {
  vm = await NestedVm.start({ root });
});
after(() => vm.shutdown());

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

test('one VM runs several commands at once, each with its own output and status', async () => {
  const runs = [0, 1, 2, 3].map((i) => {
    const out = collect();
    const err = collect();
    const cmd = vm.exec(['sh', '-c', `for n in 1 2 3 4 5 6 7 8; do echo "cmd${i} line $n"; echo "cmd${i} err $n" >&2; done; exit ${i + 3}`], { cwd: root, env: process.env, stdout: out.stream, stderr: err.stream });
    return { i, cmd, out, err };
  });
  for (const { i, cmd, out, err } of runs) {
    assert.deepEqual(await cmd.exit, { code: i + 3, signal: null });
    assert.equal(out.text(), [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `cmd${i} line ${n}\n`).join(''));
    assert.equal(err.text(), [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `cmd${i} err ${n}\n`).join(''));
  }
});

test('a signal reaches the command, a command that cannot run is an error, large output arrives whole', async () => {
  const sleeper = vm.exec(['sleep', '600'], { cwd: root, env: process.env, stdout: collect().stream, stderr: collect().stream });
  setTimeout(() => sleeper.signal('SIGTERM'), 500);
  assert.deepEqual(await sleeper.exit, { code: null, signal: 'SIGTERM' });
  await assert.rejects(vm.exec(['/nonexistent/program'], { cwd: root, env: process.env, stdout: collect().stream, stderr: collect().stream }).exit, /cannot run \/nonexistent\/program: spawn \/nonexistent\/program ENOENT/);
  const out = collect();
  const big = vm.exec(['head', '-c', String(3 * 1024 * 1024), '/dev/zero'], { cwd: root, env: process.env, stdout: out.stream, stderr: collect().stream });
  assert.deepEqual(await big.exit, { code: 0, signal: null });
  assert.equal(out.text().length, 3 * 1024 * 1024);
});

test('a host socket is forwarded to a Unix socket in the VM, waiting for its server to listen', async () => {
  const path = '/run/kvm-vm-test.sock';
  const server = vm.exec([process.execPath, '-e', `require('net').createServer((s) => s.on('data', (d) => s.end('echo:' + d))).listen('${path}'); setTimeout(() => process.exit(0), 60000)`], { cwd: root, env: process.env, stdout: collect().stream, stderr: collect().stream });
  // A socket pair stands in for a host client's connection.
  const { createServer } = await import('node:net');
  const hostPath = `${root}/build/kvm-vm-test-forward.sock`;
  rmSync(hostPath, { force: true });
  const host = createServer((local) => vm.forward(local, path, 30_000, (e) => assert.fail(e)));
  await new Promise<void>((resolve) => host.listen(hostPath, resolve));
  const reply = await new Promise<string>((resolve, reject) => {
    const client = connect(hostPath);
    let text = '';
    client.on('connect', () => client.write('hello'));
    client.on('data', (d) => (text += d));
    client.on('end', () => resolve(text));
    client.on('error', reject);
  });
  assert.equal(reply, 'echo:hello');
  host.close();
  assert.ok(!existsSync(hostPath));
  server.signal('SIGKILL');
  await server.exit;
});

test("the VM's agent holds an idle KVM VM with a vCPU, so the tests' VMs coming and going flip none of KVM's static keys", async () => {
  const out = collect();
  const ls = vm.exec(['sh', '-c', 'ls -l /proc/$PPID/fd'], { cwd: root, env: process.env, stdout: out.stream, stderr: collect().stream });
  assert.deepEqual(await ls.exit, { code: 0, signal: null });
  assert.match(out.text(), /anon_inode:kvm-vm\n/);
  assert.match(out.text(), /anon_inode:kvm-vcpu:0\n/);
});

test('the VM has one CPU: its one TCG thread gains nothing from more, and switching between them re-delivers injected interrupts', async () => {
  const out = collect();
  const cpus = vm.exec(['cat', '/sys/devices/system/cpu/possible', '/sys/devices/system/cpu/online'], { cwd: root, env: process.env, stdout: out.stream, stderr: collect().stream });
  assert.deepEqual(await cpus.exit, { code: 0, signal: null });
  assert.deepEqual(out.text().trim().split('\n'), ['0', '0']);
});

test('the host nudges the VM with an interrupt every second, so one QEMU lost never leaves the VM asleep', async () => {
  // The control port's virtio device takes the nudges; the command itself sends nothing while it sleeps.
  const script = 'dev=$(basename "$(readlink -f /sys/class/virtio-ports/*/device)"); count() { awk -v q="$dev-virtqueues" \'$NF == q { print $2 }\' /proc/interrupts; }; a=$(count); sleep 4; b=$(count); echo $((b - a))';
  const out = collect();
  const idle = vm.exec(['sh', '-c', script], { cwd: root, env: process.env, stdout: out.stream, stderr: collect().stream });
  assert.deepEqual(await idle.exit, { code: 0, signal: null });
  const interrupts = Number(out.text().trim());
  assert.ok(interrupts >= 3 && interrupts <= 6, `${out.text().trim()} interrupts from the control port in 4 idle seconds`);
});

test("a VM that stops making progress can be asked what it is doing: QEMU's vCPU registers and the kernel's backtraces", async () => {
  const busy = vm.exec(['sh', '-c', 'while :; do :; done'], { cwd: root, env: process.env, stdout: collect().stream, stderr: collect().stream });
  const report = await vm.diagnose();
  busy.signal('SIGKILL');
  await busy.exit;
  assert.match(report, /^QEMU's vCPUs:\n/);
  assert.match(report, /CPU#0\nRAX=[0-9a-f]{16}[^]*?RIP=[0-9a-f]{16}/);
  assert.doesNotMatch(report, /^YMM/m);
  assert.match(report, /dumping local APIC state for CPU 0[^]*\nIRR\t/);
  assert.match(report, /The kernel's console after SysRq l and w:\n[^]*NMI backtrace for cpu \d[^]*Show Blocked State/);
});

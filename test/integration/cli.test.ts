// What a person sees when xenkvm cannot run: one line and a non-zero status.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { Kvm, KvmUnavailableError } from '../../src/kvm/system.js';
import { cli, describe, guest, launcher, PTY_TIMEOUT_MS, requireKvm, root, type RunResult, xenkvm } from '../guest-runner.js';

requireKvm();

function assertOneLineError(r: RunResult, pattern: RegExp): void {
  assert.equal(r.status, 1, describe(r));
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr\n${describe(r)}`);
  assert.match(lines[0], pattern, describe(r));
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('--version and --help', async () => {
  const version = await xenkvm(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/);
  const help = await xenkvm(['run', '--help']);
  assert.equal(help.status, 0);
  for (const option of ['--kernel', '--cmdline', '--memory', '--vcpus']) assert.match(help.stdout, new RegExp(option));
  assert.match(help.stdout, /Exit status: 0 guest powered off/);
});

test('an unreadable kernel file', async () => {
  assertOneLineError(await xenkvm(['run', '--kernel', '/nonexistent/vmlinux']), /^xenkvm: cannot read kernel \/nonexistent\/vmlinux: no such file$/);
  assertOneLineError(await xenkvm(['run', '--kernel', tmpdir()]), /cannot read kernel .*: it is a directory$/);
});

test('a kernel that is not ELF', async () => {
  assertOneLineError(await xenkvm(['run', '--kernel', join(root, 'package.json')]), /^xenkvm: kernel is not an ELF file/);
});

test('an ELF kernel without a PVH entry point', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'nopvh.S'), '.globl _start\n_start: hlt\n');
  execFileSync('gcc', ['-nostdlib', '-static', '-Wl,-Ttext=0x100000', '-o', join(dir, 'nopvh'), join(dir, 'nopvh.S')]);
  assertOneLineError(await xenkvm(['run', '--kernel', join(dir, 'nopvh')]), /^xenkvm: kernel has no PVH entry point/);
});

test('memory, vCPU counts, the highest event-channel port and the grant-table size out of range', async () => {
  const kernel = guest('hello32');
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--memory', '8']), /memory must be a whole number of MiB from 16 to 65536, not 8/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--memory', '70000']), /memory must be .* not 70000/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--vcpus', '0']), /vCPU count must be a whole number from 1 to 64, not 0/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--vcpus', '65']), /not 65/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--max-evtchn-port', '0']), /highest event-channel port must be a whole number from 1 to 131071, not 0/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--max-evtchn-port', '131072']), /not 131072/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--max-grant-frames', '0']), /the most grant-table frames must be a whole number from 1 to 1024, not 0/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--max-grant-frames', '1025']), /not 1025/);
  const notNumber = await xenkvm(['run', '--kernel', kernel, '--vcpus', 'two']);
  assert.equal(notNumber.status, 1);
  assert.match(notNumber.stderr, /vCPU count must be a whole number, not "two"/);
});

test('disks that cannot be used are one clear error each', async () => {
  const kernel = guest('hello32');
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--disk', 'vdev=xvda,target=/nonexistent/disk.img']), /^xenkvm: cannot open disk image \/nonexistent\/disk.img: ENOENT$/m);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--disk', '/dev/null,,vda']), /"vda" is not a virtual device name/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--disk', 'target=/dev/null']), /has no vdev/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--disk', `format=qcow2,vdev=xvda,target=${kernel}`]), /^xenkvm: disk xvda: cannot open \S+hello32.elf as qcow2: Image is not in qcow2 format$/m);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--disk', 'vdev=xvda,target=/dev/null']), /neither a regular file nor a block device/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--disk', 'vdev=xvda,target=/dev/null', '--disk', 'vdev=xvda,target=/dev/zero']), /two disks are xvda/);
});

test('network interfaces that cannot be had are one clear error each', async () => {
  const kernel = guest('hello32');
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--vif', 'colour=blue']), /^xenkvm: unknown key "colour" in vif "colour=blue"$/m);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--vif', 'type=ioemu']), /type ioemu is an emulated card/);
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--vif', 'net=user,hostfwd=tcp::99999-:22']), /hostfwd must be tcp:/);
  // As root the TAP device is made and the bridge is missing (or bridges are, where the module is not
  // loaded, as in the nested VM); without CAP_NET_ADMIN the device cannot be made.
  assertOneLineError(await xenkvm(['run', '--kernel', kernel, '--vif', 'net=tap,bridge=xkvmnobr0']), /bridge xkvmnobr0 does not exist|no bridges loaded, so there is no bridge xkvmnobr0|needs CAP_NET_ADMIN/);
});

test('/dev/kvm not permitted for the user', async (t) => {
  const message = /^xenkvm: \/dev\/kvm is not accessible to this user: add yourself to the kvm group or run as root$/;
  if (process.getuid?.() === 0) {
    // Root opens anything: run the CLI as a user without access instead.
    const out = await new Promise<RunResult>((resolve) =>
      execFile('runuser', ['-u', 'nobody', '--', process.execPath, cli, 'run', '--kernel', guest('hello32')], (err, stdout, stderr) =>
        resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    assertOneLineError(out, message);
    return;
  }
  // A user who may open /dev/kvm cannot become one who may not: the same refusal, from a device node this user cannot open.
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const device = join(dir, 'kvm');
  writeFileSync(device, '');
  chmodSync(device, 0);
  assert.throws(() => Kvm.open(device), (e: Error) => e instanceof KvmUnavailableError && message.test(`xenkvm: ${e.message.replace(device, '/dev/kvm')}`));
});

test('at a terminal, keys go to the guest raw (Ctrl-C does not stop it) and Ctrl-] stops it with status 5', async () => {
  const { stdout } = await promisify(execFile)('python3', [`${root}test/console-pty.py`, 'keys', 'KIT-POWER action=halt', launcher, 'run', '--kernel', guest('power'), '--cmdline', 'action=halt'], { timeout: PTY_TIMEOUT_MS });
  assert.match(stdout, /xenkvm: the terminal is the guest console; Ctrl-\] stops the guest/);
  assert.match(stdout, /xenkvm: stopped from the console \(Ctrl-\]\) \(exit status 5\)/);
  assert.match(stdout, /\nEXIT 5\n$/);
});

test('run as a background job on a terminal, xenkvm leaves the terminal alone instead of being stopped by it', async () => {
  const { stdout } = await promisify(execFile)('python3', [`${root}test/console-pty.py`, 'background', launcher, 'run', '--kernel', guest('demo'), '--vcpus', '2'], { timeout: PTY_TIMEOUT_MS });
  // Through the terminal, lines end in CR LF.
  assert.match(stdout, /^KIT-SUMMARY passed=1 failed=0\r$/m);
  assert.doesNotMatch(stdout, /the terminal is the guest console/);
  assert.match(stdout, /\nEXIT 0\r?\n$/);
});

// `xenkvm run` inside the nested VM, as on a host without /dev/kvm (--accel nested
// forces it where /dev/kvm exists): one line says so, the exit status comes
// through, the terminal stays the guest's console, and the XenStore socket is
// reachable from the host. These run on the host; they boot QEMU themselves.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { assertKitPassed, describe, guest, launcher, PTY_TIMEOUT_MS, root, xenkvm } from '../guest-runner.js';

const NESTED_LINE = /^xenkvm: --accel nested: running inside a nested VM \(QEMU[^\n]*\(--accel kvm insists on it\)\n/;
const timeoutMs = 300_000;

test('in the nested VM the demo guest boots and powers off, with one line on stderr saying where it runs', async () => {
  const r = await xenkvm(['run', '--accel', 'nested', '--kernel', guest('demo'), '--vcpus', '2', '--cmdline', 'console=hvc0 demo=1'], { timeoutMs });
  assertKitPassed(r, ['all-cpus-online']);
  assert.match(r.stderr, NESTED_LINE);
  assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, describe(r));
});

test("the guest's exit status comes back from the nested VM (reset: 2)", async () => {
  const r = await xenkvm(['run', '--accel', 'nested', '--kernel', guest('power'), '--cmdline', 'action=reset'], { timeoutMs });
  assert.equal(r.status, 2, describe(r));
  assert.match(r.stdout, /^KIT-POWER action=reset$/m);
});

test('at a terminal, keys reach the guest in the nested VM raw and Ctrl-] stops it with status 5', async () => {
  const { stdout } = await promisify(execFile)('python3', [`${root}test/console-pty.py`, 'keys', 'KIT-POWER action=halt', launcher, 'run', '--accel', 'nested', '--kernel', guest('power'), '--cmdline', 'action=halt'], { timeout: PTY_TIMEOUT_MS });
  assert.match(stdout, /xenkvm: the terminal is the guest console; Ctrl-\] stops the guest/);
  assert.match(stdout, /xenkvm: stopped from the console \(Ctrl-\]\) \(exit status 5\)/);
  assert.match(stdout, /\nEXIT 5\n$/);
});

test("the store's socket is forwarded to the host: a host write reaches a guest watch in the nested VM", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-nested-xs-'));
  try {
    const path = join(dir, 'xs.sock');
    let wrote: Promise<unknown> | undefined;
    const r = await xenkvm(['run', '--accel', 'nested', '--kernel', guest('xen-xenstore'), '--cmdline', 'host-watch=1', '--xenstore-socket', path], {
      timeoutMs,
      onStdout: (out) => {
        if (!wrote && out.includes('KIT-XEN waiting for the host')) {
          wrote = promisify(execFile)('xenstore-write', ['/local/domain/1/data/from-host', 'hello from the host'], { env: { ...process.env, XENSTORED_PATH: path }, timeout: 60_000 });
        }
      },
    });
    await wrote;
    assertKitPassed(r, ['host-watch']);
    assert.equal(existsSync(path), false, 'the forwarded socket is removed at exit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('when the nested VM cannot start, xenkvm says so in one line with status 1', async () => {
  const r = await xenkvm(['run', '--accel', 'nested', '--kernel', guest('demo')], { env: { ...process.env, XENKVM_QEMU: '/nonexistent/qemu' }, timeoutMs });
  assert.equal(r.status, 1, describe(r));
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 2, describe(r));
  assert.match(lines[1], /^xenkvm: the nested VM cannot start: cannot run \/nonexistent\/qemu: .*ENOENT/);
});

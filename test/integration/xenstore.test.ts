// XenStore end to end: a guest over its ring, and Debian's xenstore tools
// (xenstore-utils, and test-xenstore from xen-utils-4.17, which
// scripts/setup puts in build/) over the socket of a running xenkvm.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { answers } from '../../src/common/unix-socket.js';
import { assertKitPassed, guest, launcher, requireKvm, root, runGuest, xenkvm } from '../guest-runner.js';

requireKvm();

const run = promisify(execFile);
const testXenstore = `${root}build/xen-utils/usr/lib/xen-4.17/bin/test-xenstore`;
const CASES = ['setup', 'toolstack-nodes', 'permissions', 'read-write', 'watch', 'transaction', 'errors', 'reconnect', 'rebind'];

/** xenkvm running an idle guest, with its store's socket at `path`. */
async function idleVm(t: { after(fn: () => Promise<void> | void): void }, path: string, extra: string[] = [], env = process.env): Promise<ChildProcess> {
  const child = spawn(launcher, ['run', '--kernel', guest('power'), '--cmdline', 'action=halt', '--xenstore-socket', path, ...extra], { env, stdio: 'ignore' });
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  // Generous: node's start-up alone takes seconds in the nested VM, more under load.
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && child.exitCode === null && !(await answers(path))) await new Promise((r) => setTimeout(r, 100));
  assert.ok(await answers(path), `nothing answers at ${path}`);
  return child;
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-xs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const tool = (path: string) => async (name: string, ...args: string[]) =>
  (await run(name, args, { env: { ...process.env, XENSTORED_PATH: path }, timeout: 10000 })).stdout;

test('a guest reads, writes, watches and runs transactions over its XenStore ring', async () => {
  assertKitPassed(await runGuest('xen-xenstore'), CASES);
});

test("Debian's xenstore tools read, write, list, remove and watch through the socket", async (t) => {
  const path = join(tempDir(t), 'xs.sock');
  await idleVm(t, path, ['--name', 'tools-guest']);
  const xs = tool(path);
  assert.equal(await xs('xenstore-read', '/local/domain/1/name'), 'tools-guest\n');
  assert.equal(await xs('xenstore-read', '/local/domain/1/domid'), '1\n');
  await xs('xenstore-write', '/local/domain/1/data/a', 'one', '/local/domain/1/data/b', 'two');
  assert.equal(await xs('xenstore-list', '/local/domain/1/data'), 'a\nb\n');
  assert.match(await xs('xenstore-ls', '/local/domain/1/data'), /^a = "one"\nb = "two"\n$/);
  await xs('xenstore-exists', '/local/domain/1/data/a');
  await xs('xenstore-rm', '/local/domain/1/data/a');
  await assert.rejects(xs('xenstore-exists', '/local/domain/1/data/a'), 'removed');
  await xs('xenstore-chmod', '/local/domain/1/data/b', 'n1', 'r0');
  assert.match(await xs('xenstore-ls', '-p', '/local/domain/1/data'), /^b = "two"[ .]+\(n1,r0\)$/m);
  // xenstore-watch prints the registration event, then each change, and stops after -n events.
  const watching = xs('xenstore-watch', '-n', '2', '/local/domain/1/data/w');
  await new Promise((r) => setTimeout(r, 300));
  await xs('xenstore-write', '/local/domain/1/data/w/x', '1');
  assert.deepEqual((await watching).trim().split('\n'), ['/local/domain/1/data/w', '/local/domain/1/data/w/x']);
});

test("Debian's test-xenstore passes against the socket", async (t) => {
  const path = join(tempDir(t), 'xs.sock');
  await idleVm(t, path);
  // Every test prints its timing; a failing one prints why and makes test-xenstore exit non-zero.
  const { stdout } = await run(testXenstore, ['-i', '3'], { env: { ...process.env, XENSTORED_PATH: path }, timeout: 60000 });
  const tests = stdout.trim().split('\n');
  assert.equal(tests.length, 12, stdout);
  for (const line of tests) assert.match(line, /^[a-z0-9 ]+: avg: \d+ ns \(\d+ ns \.\. \d+ ns\)$/, line);
  await run(testXenstore, ['-r', '3'], { env: { ...process.env, XENSTORED_PATH: path }, timeout: 60000 });
});

test('a write through the socket reaches a guest watching over its ring', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-xs-'));
  try {
    const path = join(dir, 'xs.sock');
    let wrote: Promise<unknown> | undefined;
    const r = await xenkvm(['run', '--kernel', guest('xen-xenstore'), '--cmdline', 'host-watch=1', '--xenstore-socket', path], {
      onStdout: (out) => {
        if (!wrote && out.includes('KIT-XEN waiting for the host')) wrote = tool(path)('xenstore-write', '/local/domain/1/data/from-host', 'hello from the host');
      },
    });
    await wrote;
    assertKitPassed(r, [...CASES, 'host-watch']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a socket client that breaks the framing is disconnected and the store serves on', async (t) => {
  const path = join(tempDir(t), 'xs.sock');
  await idleVm(t, path);
  const closed = await new Promise<boolean>((resolve) => {
    const s = connect(path, () => {
      const header = Buffer.alloc(16);
      header.writeUInt32LE(2, 0); // XS_READ
      header.writeUInt32LE(5000, 12); // over the 4096-byte limit
      s.write(header);
    });
    s.on('close', () => resolve(true));
    s.on('error', () => resolve(true));
    setTimeout(() => resolve(false), 5000);
  });
  assert.ok(closed, 'the connection was closed');
  assert.equal(await tool(path)('xenstore-read', '/local/domain/1/domid'), '1\n');
});

test('without --xenstore-socket the socket is per process under XDG_RUNTIME_DIR, and removed at exit', async (t) => {
  const dir = tempDir(t);
  const env = { ...process.env, XDG_RUNTIME_DIR: dir };
  const child = spawn(launcher, ['run', '--kernel', guest('power'), '--cmdline', 'action=halt'], { env, stdio: 'ignore' });
  const path = join(dir, `xenkvm-${child.pid}`, 'xenstored.sock');
  for (const deadline = Date.now() + 90_000; Date.now() < deadline && !existsSync(path); ) await new Promise((r) => setTimeout(r, 100));
  assert.ok(existsSync(path), `no socket at ${path}`);
  assert.equal(await tool(path)('xenstore-read', '/local/domain/1/domid'), '1\n');
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  assert.equal(existsSync(join(dir, `xenkvm-${child.pid}`)), false, 'socket and its directory removed');
});

test('--xenstore-socket on a path that is not a socket is one clear error', async (t) => {
  const file = join(tempDir(t), 'not-a-socket');
  writeFileSync(file, 'x');
  const r = await xenkvm(['run', '--kernel', guest('power'), '--cmdline', 'action=halt', '--xenstore-socket', file]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `xenkvm: ${file} exists and is not a socket; choose another --xenstore-socket\n`);
});

test('secondary consoles are xenbus devices waiting for their frontend; one whose ring reference grants nothing is told why it cannot connect', async (t) => {
  const path = join(tempDir(t), 'xs.sock');
  await idleVm(t, path, ['--secondary-consoles', '2']);
  const xs = tool(path);
  for (const devid of [1, 2]) {
    assert.equal(await xs('xenstore-read', `/local/domain/1/device/console/${devid}/backend`), `/local/domain/0/backend/console/1/${devid}\n`);
    assert.equal(await xs('xenstore-read', `/local/domain/0/backend/console/1/${devid}/state`), '2\n', 'InitWait');
  }
  // Domain 0 through the socket plays the frontend: a ring reference and a port, then Initialised.
  await xs('xenstore-write', '/local/domain/1/device/console/1/ring-ref', '8', '/local/domain/1/device/console/1/port', '5');
  await xs('xenstore-write', '/local/domain/1/device/console/1/state', '3');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await xs('xenstore-read', '/local/domain/0/backend/console/1/1/state'), '5\n', 'Closing');
  assert.match(await xs('xenstore-read', '/local/domain/0/error/backend/console/1/1/error'), /grant reference 8 cannot be mapped \(GNTST_general_error\)/);
});

test('a second xenkvm cannot take over a socket in use; a stale one is replaced', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'xs.sock');
  await idleVm(t, path);
  const r = await xenkvm(['run', '--kernel', guest('power'), '--cmdline', 'action=halt', '--xenstore-socket', path]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `xenkvm: ${path} is in use by another XenStore server; choose another --xenstore-socket\n`);
  assert.equal(await tool(path)('xenstore-read', '/local/domain/1/domid'), '1\n', 'the first one still serves');
  // A socket nobody listens on, as a killed run leaves it: bound, and the process gone.
  const stale = join(dir, 'stale.sock');
  await run('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
  assert.ok(existsSync(stale));
  await idleVm(t, stale);
  assert.equal(await tool(stale)('xenstore-read', '/local/domain/1/domid'), '1\n');
});

// The PV network device end to end over a TAP device (which needs root, as
// the nested VM's tests run): the guest kit's frontend (guests/tests/
// xen-netfront.c) echoes what the host sends it through the TAP device, UDP
// datagrams of several sizes (one of more than a page: more than one slot each
// way) and ICMP echo requests. Run on both kernels in the nested VM, on 1 and
// 2 vCPUs (the TAP device then has 2 queues, of which the kit uses one); with
// both queues and the control ring (the kit asks for the Toeplitz hash and a
// mapping that sends everything to queue 1, and checks both on what it
// receives); and over user-mode networking (libslirp), through a port forward.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { assertKitPassed, describe, requireKvm, runGuest, type RunResult } from '../guest-runner.js';

requireKvm();

const HOST = '10.0.3.1';
const GUEST = '10.0.3.2';
const MAC = '00:16:3e:00:00:02';
const CASES = ['probe', 'connect', 'echo', 'close'];

/**
 * A vif hotplug script, as a Xen host's vif-bridge or vif-route is one: run `online` and `offline`
 * with the interface in $vif and its backend directory in $XENBUS_PATH, it logs both and what the
 * store says of the device (through xenstore-read on XENSTORED_PATH), and gives the host its address
 * and the guest's neighbour entry (so the host need not wait for ARP).
 */
function hotplugScript(dir: string): { path: string; log: string } {
  const path = join(dir, 'vif-test');
  const log = join(dir, 'vif-test.log');
  writeFileSync(path, [
    '#!/bin/sh',
    `echo "$1 $vif $(xenstore-read "$XENBUS_PATH/mac") $(xenstore-read "$XENBUS_PATH/feature-rx-copy")" >> ${log}`,
    '[ "$1" = online ] || exit 0',
    `ip addr add ${HOST}/24 dev "$vif"`,
    `ip neigh replace ${GUEST} lladdr ${MAC} dev "$vif" nud permanent`,
    '',
  ].join('\n'), { mode: 0o755 });
  return { path, log };
}

/** Waits until the hotplug script has given the interface the host's address. */
async function hostAddressOn(name: string): Promise<void> {
  const has = () => existsSync(`/sys/class/net/${name}`) && execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', name], { encoding: 'utf8' }).includes(` ${HOST}/`);
  for (let i = 0; i < 600 && !has(); i++) await sleep(100);
  assert.ok(has(), `${name} never got ${HOST}`);
}

/** Sends each payload to the guest's UDP echo and waits for it back (sent again each second until it is: the guest may not be listening yet); then KIT-END if `end`. */
async function udpEchoes(payloads: Buffer[], end: boolean, to = { address: GUEST, port: 7, from: HOST }): Promise<void> {
  const socket = createSocket('udp4');
  const inbox: Buffer[] = [];
  socket.on('message', (m) => inbox.push(m));
  await new Promise<void>((resolve) => socket.bind(0, to.from, resolve));
  try {
    for (const payload of payloads) {
      let answered = false;
      for (let tries = 0; !answered && tries < 60; tries++) {
        socket.send(payload, to.port, to.address);
        for (let waited = 0; !answered && waited < 1000; waited += 20) {
          await sleep(20);
          answered = inbox.some((m) => m.equals(payload));
        }
      }
      assert.ok(answered, `no echo of a ${payload.length}-byte datagram`);
    }
    if (end) socket.send(Buffer.from('KIT-END'), to.port, to.address);
  } finally {
    await sleep(100);
    socket.close();
  }
}

/** Runs `exchange` with the guest; if it fails, waits for the guest to end and fails with what it printed. */
async function withGuest(run: Promise<RunResult>, exchange: () => Promise<void>): Promise<void> {
  try {
    await exchange();
  } catch (e) {
    const r = await run.catch((err: Error) => err);
    throw new Error(`${(e as Error).message}\n${r instanceof Error ? r.message : describe(r)}`);
  }
}

for (const vcpus of [1, 2]) {
  test(`a PV network interface on a TAP device, ${vcpus} vCPU${vcpus > 1 ? 's' : ''}, set up by its hotplug script: the kit's frontend echoes UDP datagrams of 64 to 8000 bytes and ICMP echo requests from the host`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'xenkvm-net-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const script = hotplugScript(dir);
    const name = `xkvmnet${vcpus}`;
    const run = runGuest('xen-netfront', { vcpus, cmdline: 'echoes=5', args: ['--vif', `mac=${MAC},vifname=${name},mtu=9000,script=${script.path}`] });
    const payloads = [64, 1400, 8000].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff)));
    await withGuest(run, async () => {
      await hostAddressOn(name);
      await udpEchoes(payloads.slice(0, 1), false);
      execFileSync('busybox', ['ping', '-c', '2', '-W', '5', GUEST], { stdio: 'pipe' });
      await udpEchoes(payloads, true);
    });
    const r = await run;
    assertKitPassed(r, CASES);
    assert.match(r.stdout, /KIT-NET echoed=\d+ largest=8042/, describe(r));
    assert.ok(!existsSync(`/sys/class/net/${name}`), 'the interface is gone with xenkvm');
    assert.equal(readFileSync(script.log, 'utf8'), `online ${name} ${MAC} 1\noffline ${name} ${MAC} 1\n`);
  });
}

test('a PV network interface on a TAP device of 2 queues with the control ring: the kit\'s frontend sets the Toeplitz hash, its key and a mapping to queue 1, is refused what is malformed, and gets every datagram on queue 1 with the hash it computes itself', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-net-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = hotplugScript(dir);
  const name = 'xkvmnetc';
  const run = runGuest('xen-netfront', { vcpus: 2, cmdline: 'echoes=3 ctrl=1', args: ['--log-level', 'info', '--vif', `mac=${MAC},vifname=${name},mtu=9000,script=${script.path}`] });
  const payloads = [64, 1400, 8000].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 11 + n) & 0xff)));
  await withGuest(run, async () => {
    await hostAddressOn(name);
    await udpEchoes(payloads, true);
  });
  const r = await run;
  assertKitPassed(r, ['probe', 'connect', 'ctrl', 'echo', 'close']);
  const m = /KIT-NET ctrl hashed=(\d+) all-on-queue=1/.exec(r.stdout);
  assert.ok(m && Number(m[1]) >= payloads.length, describe(r));
  const stopped = r.stderr.split('\n').filter((l) => l.includes('"vif queue stopped"')).map((l) => JSON.parse(l) as { queue: number; rxPackets: number; steeredAway: number });
  assert.equal(stopped.length, 2, describe(r));
  // The guest sends on queue 0, so the TAP device's flow steering brings the host's datagrams of that flow in on its queue 0: handed to queue 1 here.
  const q0 = stopped.find((s) => s.queue === 0)!;
  const q1 = stopped.find((s) => s.queue === 1)!;
  assert.ok(q1.rxPackets >= payloads.length + 1, `queue 1 received ${q1.rxPackets}`);
  assert.ok(q0.steeredAway >= 1, `nothing was handed from queue 0 to queue 1\n${describe(r)}`);
});

test("a PV network interface on user-mode networking (libslirp): a UDP port forward from the host's loopback reaches the kit's frontend, which echoes datagrams back through it", async () => {
  const port = 20000 + (process.pid % 20000);
  const run = runGuest('xen-netfront', { cmdline: 'echoes=2', args: ['--vif', `mac=${MAC},net=user,hostfwd=udp:127.0.0.1:${port}-:7`] });
  const payloads = [64, 1400].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 5 + n) & 0xff)));
  await withGuest(run, () => udpEchoes(payloads, true, { address: '127.0.0.1', port, from: '127.0.0.1' }));
  const r = await run;
  assertKitPassed(r, CASES);
});

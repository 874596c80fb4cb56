import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { EVTCHNOP, EVTCHNSTAT } from '../abi/event-channel.js';
import { XEN_ERRNO } from '../abi/errno.js';
import { DOMID } from '../abi/xen.js';
import { FakeGuest } from '../fake-guest.js';
import { BACKEND_DOMID, backendNotifier } from './backend.js';
import { evtchnTestDomain } from './fake-domain.js';
import { evtchnVcpuOps } from './ops.js';
import { PortFlag, PortState, PortTable } from './ports.js';

/** alloc_unbound {dom, remote_dom}: the guest offers a port to domain 0. */
const FOR_DOM0 = DOMID.SELF | (BACKEND_DOMID << 16);

/** EVTCHNOP_send as the accelerator serves it on a vCPU thread: undefined means "forward to the VMM". */
function fastSend(s: ReturnType<typeof evtchnTestDomain>, port: number): number | bigint | undefined {
  const guest = new FakeGuest(0x2000n, 4);
  guest.view().setUint32(0, port, true);
  return evtchnVcpuOps(s.d).handlers.get(EVTCHNOP.send)!({ vcpu: 0, abi: 'native', guest: guest as never }, [BigInt(EVTCHNOP.send), 0x2000n]);
}

test('a backend binds the port the guest offered to domain 0; sends wake its notifier, through the VMM until it registers the fast path', (t) => {
  const s = evtchnTestDomain(t);
  const port = s.op(EVTCHNOP.alloc_unbound, FOR_DOM0).word(1);
  const channel = s.d.backends.bind(port);
  assert.equal(channel.connected, true);
  const st = s.op(EVTCHNOP.status, DOMID.SELF, port);
  assert.deepEqual([st.word(2), st.word(4) & 0xffff, st.word(5)], [EVTCHNSTAT.interdomain, BACKEND_DOMID, channel.backendPort]);
  const bound = channel.notifier.count;
  assert.equal(bound, 1, 'binding notifies the binding side once, as Xen does');
  assert.equal(fastSend(s, port), undefined, 'not registered: the vCPU thread hands the send to the VMM');
  assert.equal(s.op(EVTCHNOP.send, port).rc, 0);
  assert.equal(channel.notifier.count, bound + 1);
  channel.setFastPath(true);
  assert.equal(fastSend(s, port), 0, 'registered: served on the vCPU thread');
  assert.equal(channel.notifier.count, bound + 2);
  channel.setFastPath(false);
  assert.equal(fastSend(s, port), undefined, 'unregistered again');
  assert.equal(s.op(EVTCHNOP.bind_vcpu, port, 1).rc, 0);
  s.clearUpcall(1);
  channel.notifyGuest();
  assert.equal(s.pending(port), 1);
  assert.equal(s.upcallPending(1), 1, 'the backend raises the guest port on its vCPU');
});

test('the guest binds a port a backend offered; closing either end leaves the other unbound', (t) => {
  const s = evtchnTestDomain(t);
  const offered = s.d.backends.offer();
  assert.equal(s.op(EVTCHNOP.bind_interdomain, BACKEND_DOMID, offered + 1).rc, -XEN_ERRNO.EINVAL, 'not offered');
  assert.equal(s.op(EVTCHNOP.bind_interdomain, 5, offered).rc, -XEN_ERRNO.ESRCH, 'no domain 5');
  const bind = s.op(EVTCHNOP.bind_interdomain, BACKEND_DOMID, offered);
  assert.equal(bind.rc, 0);
  const local = bind.word(2);
  assert.equal(s.pending(local), 1, 'the new port starts pending');
  assert.equal(s.op(EVTCHNOP.bind_interdomain, BACKEND_DOMID, offered).rc, -XEN_ERRNO.EINVAL, 'already bound');
  const channel = s.d.backends.channel(offered)!;
  assert.equal(channel.guestPort, local);
  const before = channel.notifier.count;
  assert.equal(s.op(EVTCHNOP.close, local).rc, 0);
  assert.equal(channel.connected, false);
  assert.equal(channel.notifier.count, before + 1, 'the backend is woken to see the close');
  assert.equal(s.d.backends.channel(offered), undefined);
  const again = s.op(EVTCHNOP.bind_interdomain, BACKEND_DOMID, offered);
  assert.equal(again.rc, 0, 'offered again after the guest closed it');
  s.d.backends.close(offered);
  const st = s.op(EVTCHNOP.status, DOMID.SELF, again.word(2));
  assert.deepEqual([st.word(2), st.word(4) & 0xffff], [EVTCHNSTAT.unbound, BACKEND_DOMID], 'waits for domain 0 again');
  assert.equal(s.op(EVTCHNOP.send, again.word(2)).rc, 0, 'a send on it is dropped');
});

test('a channel set up by the toolstack: the guest port exists bound, and is not registered until the backend asks', (t) => {
  const s = evtchnTestDomain(t);
  const channel = s.d.backends.create();
  assert.equal(s.d.ports.state(channel.guestPort), PortState.Interdomain);
  assert.equal(s.d.ports.hasFlag(channel.guestPort, PortFlag.FastPath), false);
  s.clearUpcall(0);
  channel.notifyGuest();
  assert.equal(s.pending(channel.guestPort), 1);
  assert.equal(s.upcallPending(0), 1);
  assert.equal(s.op(EVTCHNOP.reset, DOMID.SELF).rc, 0);
  assert.equal(channel.connected, false, 'EVTCHNOP_reset closes the guest end');
});

test('with the fast path off the VMM registers no port, IPIs included', (t) => {
  const s = evtchnTestDomain(t, 'native', { fastPath: false });
  const ipi = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.equal(fastSend(s, ipi), undefined);
  assert.equal(s.op(EVTCHNOP.send, ipi).rc, 0);
  assert.equal(s.pending(ipi), 1);
});

test('a backend thread waiting on its notifier wakes when another thread notifies', async () => {
  const ports = PortTable.create();
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const words = new Int32Array(workerData.buffer);
    parentPort.postMessage('waiting');
    const result = Atomics.wait(words, workerData.index, 0, 10000);
    parentPort.postMessage(result);`;
  const { words, index } = ports.notifyWords();
  const worker = new Worker(code, { eval: true, workerData: { buffer: ports.buffer, index: index(5) } });
  const messages: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    worker.on('message', (m: string) => {
      messages.push(m);
      if (m === 'waiting') setTimeout(() => backendNotifier(ports, 5).notify(), 50);
      else resolve();
    });
    worker.on('error', reject);
  });
  await done;
  await worker.terminate();
  assert.deepEqual(messages, ['waiting', 'ok'], 'woken by the notify, not by the 10 s timeout');
  assert.equal(Atomics.load(words, index(5)), 1);
});

test('EventNotifier.next resolves on the main thread once the count moves', async () => {
  const ports = PortTable.create();
  const notifier = backendNotifier(ports, 3);
  const seen = notifier.count;
  const next = notifier.next(seen);
  setTimeout(() => notifier.notify(), 10);
  assert.equal(await next, seen + 1);
});

test('a notifier bumped without pause still lets the main thread\'s other work run', async () => {
  const ports = PortTable.create();
  const notifier = backendNotifier(ports, 4);
  let timerFired = false;
  setTimeout(() => (timerFired = true), 5);
  let laps = 0;
  // Bounded, so that without the yield the test fails instead of spinning forever.
  while (!timerFired && laps < 200_000) {
    const seen = notifier.count;
    notifier.notify(); // as a guest hammering the port from a vCPU thread would
    await notifier.next(seen);
    laps++;
  }
  assert.ok(timerFired, `no timer ran during ${laps} laps of a serving loop`);
});

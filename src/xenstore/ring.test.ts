import assert from 'node:assert/strict';
import { seededRandom } from '../common/seeded-random.js';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import { RateLimitedLog } from '../common/log.js';
import { XENSTORE_CONNECTION, XENSTORE_ERROR, XENSTORE_PAYLOAD_MAX, XENSTORE_SERVER_FEATURE, XS, xenstoreDomainInterface } from '../xen/abi/xenstore.js';
import { evtchnTestDomain } from '../xen/evtchn/fake-domain.js';
import { OUTSTANDING_MAX, QUEUED_BYTES_MAX, XenStoreRing, type StoreService } from './ring.js';
import { encodeMessage, HEADER_BYTES, MessageFramer, stringsPayload, type XsMessage } from './wire.js';
import { XenStore } from './store.js';

const L = xenstoreDomainInterface.native;
type Index = 'req_cons' | 'req_prod' | 'rsp_cons' | 'rsp_prod' | 'server_features' | 'connection' | 'error';

/** A store that answers every request with its own payload, and can push watch events. */
class EchoStore implements StoreService<number> {
  sends = new Map<number, (m: XsMessage) => void>();
  handled: XsMessage[] = [];
  disconnected: number[] = [];
  private next = 1;
  connect(_domid: number, send: (m: XsMessage) => void): number {
    const id = this.next++;
    this.sends.set(id, send);
    return id;
  }
  disconnect(conn: number): void {
    this.disconnected.push(conn);
    this.sends.delete(conn);
  }
  handle(conn: number, m: XsMessage): void {
    this.handled.push(m);
    this.sends.get(conn)!(m);
  }
  event(path: string): void {
    for (const send of this.sends.values()) send({ type: XS.WATCH_EVENT, reqId: 0, txId: 0, payload: stringsPayload(path, 'tok') });
  }
}

function setup(t: { after(fn: () => void): void }) {
  const s = evtchnTestDomain(t);
  const channel = s.d.backends.create();
  const page = new Uint8Array(4096);
  const view = new DataView(page.buffer);
  const store = new EchoStore();
  const log = capturedLogger();
  const ring = new XenStoreRing(page, channel, store, 1, new RateLimitedLog(log.logger));
  const idx = (n: Index) => view.getUint32(L.offsets[n], true);
  const setIdx = (n: Index, v: number) => view.setUint32(L.offsets[n], v >>> 0, true);
  const framer = new MessageFramer();
  /** The guest: puts bytes in the request ring as room allows; returns how many went in. */
  const send = (bytes: Uint8Array) => {
    let prod = idx('req_prod');
    const room = 1024 - (prod - idx('req_cons'));
    const n = Math.min(room, bytes.length);
    for (let i = 0; i < n; i++) page[L.offsets.req + (prod++ % 1024)] = bytes[i];
    setIdx('req_prod', prod);
    return n;
  };
  /** The guest: takes everything in the response ring. */
  const receive = () => {
    const bytes: number[] = [];
    let cons = idx('rsp_cons');
    while (cons !== idx('rsp_prod')) bytes.push(page[L.offsets.rsp + (cons++ % 1024)]);
    setIdx('rsp_cons', cons);
    return framer.push(Uint8Array.from(bytes));
  };
  return { s, channel, page, store, log, ring, idx, setIdx, send, receive };
}

const request = (i: number, size = 10) => ({ type: XS.WRITE, reqId: i, txId: 0, payload: new Uint8Array(size).fill(0x41 + (i % 26)) });

test('the server offers reconnection and error reporting, and starts connected', (t) => {
  const r = setup(t);
  assert.equal(r.idx('server_features'), XENSTORE_SERVER_FEATURE.RECONNECTION | XENSTORE_SERVER_FEATURE.ERROR);
  assert.equal(r.idx('connection'), XENSTORE_CONNECTION.CONNECTED);
});

test('requests and replies cross the rings whole, in order, through many wraps, with the guest told', (t) => {
  const r = setup(t);
  const sent = Array.from({ length: 200 }, (_, i) => request(i, 1 + ((i * 37) % 900)));
  const got: XsMessage[] = [];
  let pending = Uint8Array.from(sent.flatMap((m) => [...encodeMessage(m)]));
  while (pending.length > 0 || got.length < sent.length) {
    pending = pending.subarray(r.send(pending));
    r.ring.service();
    got.push(...r.receive());
  }
  assert.deepEqual(r.store.handled, sent);
  assert.deepEqual(got, sent);
  assert.equal(r.s.pending(r.channel.guestPort), 1);
});

test('a guest that does not read its replies: serving stops at the outstanding limit and resumes; watch events wait and none is lost', (t) => {
  const r = setup(t);
  // Replies of 116 bytes: eight fill the response ring.
  let pending = Uint8Array.from(Array.from({ length: 60 }, (_, i) => [...encodeMessage(request(i, 100))]).flat());
  for (let i = 0; i < 20; i++) {
    pending = pending.subarray(r.send(pending));
    r.ring.service();
  }
  assert.equal(r.store.handled.length, 8 + OUTSTANDING_MAX, 'eight replies in the ring, twenty queued, no more served');
  // Events from elsewhere do not count against the guest's requests, and wait for it.
  for (let i = 0; i < OUTSTANDING_MAX + 5; i++) r.store.event(`/e${i}`);
  assert.equal(r.log.warns().length, 0);
  const got: XsMessage[] = [];
  while (got.filter((m) => m.type !== XS.WATCH_EVENT).length < 60) {
    pending = pending.subarray(r.send(pending));
    r.ring.service();
    got.push(...r.receive());
  }
  assert.deepEqual(got.filter((m) => m.type !== XS.WATCH_EVENT).map((m) => m.reqId), Array.from({ length: 60 }, (_, i) => i), 'every reply, in order');
  assert.deepEqual(got.filter((m) => m.type === XS.WATCH_EVENT).map((m) => eventPath(m)), Array.from({ length: OUTSTANDING_MAX + 5 }, (_, i) => `/e${i}`), 'every event, in order');
});

const eventPath = (m: XsMessage) => new TextDecoder().decode(m.payload).split('\0')[0];

/** Domain 1's ring on a real store. */
function ringOnRealStore(t: { after(fn: () => void): void }, now?: () => number) {
  const s = evtchnTestDomain(t);
  const channel = s.d.backends.create();
  const page = new Uint8Array(4096);
  const view = new DataView(page.buffer);
  const store = new XenStore();
  store.introduce(1);
  const log = capturedLogger();
  const ring = new XenStoreRing(page, channel, store, 1, new RateLimitedLog(log.logger), now);
  return { s, channel, page, view, store, log, ring };
}

/** A guest on the real store with its data directory: `send` queues requests, `pump` feeds the ring, serves it and (unless told not to) reads what came back into `got`. */
function realStore(t: { after(fn: () => void): void }, now?: () => number) {
  const { page, view, store, log, ring } = ringOnRealStore(t, now);
  // The guest's own data directory, as the toolstack makes it, and the right to hear releases.
  store.mkdir('/local/domain/1/data');
  store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'n' }]);
  store.setPerms('@releaseDomain', [{ domid: 0, access: 'n' }, { domid: 1, access: 'r' }]);
  const framer = new MessageFramer();
  const got: XsMessage[] = [];
  let pending = new Uint8Array(0);
  const pump = (read = true) => {
    let prod = view.getUint32(L.offsets.req_prod, true);
    const n = Math.min(1024 - (prod - view.getUint32(L.offsets.req_cons, true)), pending.length);
    for (let i = 0; i < n; i++) page[L.offsets.req + (prod++ % 1024)] = pending[i];
    view.setUint32(L.offsets.req_prod, prod, true);
    pending = pending.subarray(n);
    ring.service();
    if (!read) return;
    const bytes: number[] = [];
    let cons = view.getUint32(L.offsets.rsp_cons, true);
    while (cons !== view.getUint32(L.offsets.rsp_prod, true)) bytes.push(page[L.offsets.rsp + (cons++ % 1024)]);
    view.setUint32(L.offsets.rsp_cons, cons, true);
    got.push(...framer.push(Uint8Array.from(bytes)));
  };
  const sendBytes = (bytes: Uint8Array) => {
    pending = Uint8Array.from([...pending, ...bytes]);
  };
  const send = (...messages: XsMessage[]) => messages.forEach((m) => sendBytes(encodeMessage(m)));
  const error = () => view.getUint32(L.offsets.error, true);
  return { store, log, got, pump, send, sendBytes, error };
}

const xs = (type: number, reqId: number, ...strings: string[]): XsMessage => ({ type, reqId, txId: 0, payload: stringsPayload(...strings) });

test('requests taken with a header that breaks the protocol are served first; then the ring stops with XENSTORE_ERROR_PROTO', (t) => {
  const g = realStore(t);
  const oversized = encodeMessage(xs(XS.WRITE, 3, ''));
  new DataView(oversized.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
  g.send(xs(XS.WRITE, 1, 'data/a', 'first'), xs(XS.WRITE, 2, 'data/b', 'second'));
  g.sendBytes(oversized.subarray(0, HEADER_BYTES));
  g.pump();
  assert.equal(g.store.read('/local/domain/1/data/a'), 'first\0');
  assert.equal(g.store.read('/local/domain/1/data/b'), 'second\0');
  assert.equal(g.error(), XENSTORE_ERROR.PROTO);
  assert.match(g.log.warns()[0].msg, /broke its XenStore ring/);
});

test('30 watches and one RM that fires them all: a guest that keeps reading gets all 30 events', (t) => {
  const g = realStore(t);
  g.send(xs(XS.WRITE, 1, 'data/a/b', 'v'));
  for (let i = 0; i < 30; i++) g.send(xs(XS.WATCH, 100 + i, 'data/a', `tok${i}`));
  for (let i = 0; i < 50; i++) g.pump();
  assert.equal(g.got.filter((m) => m.type === XS.WATCH_EVENT).length, 30, 'each watch fires when registered');
  g.send(xs(XS.RM, 2, 'data/a'));
  for (let i = 0; i < 50; i++) g.pump();
  const fired = g.got.filter((m) => m.type === XS.WATCH_EVENT);
  assert.equal(fired.length, 60, `${fired.length} events`);
  for (let i = 0; i < 30; i++) assert.equal(fired.filter((m) => new TextDecoder().decode(m.payload) === `data/a\0tok${i}\0`).length, 2, `tok${i}`);
  assert.equal(g.got.filter((m) => m.type !== XS.WATCH_EVENT).length, 32, 'every reply');
});

test('an event identical to one still waiting is not queued again, but "@" events always are; an unread event goes after 20 s', (t) => {
  let now = 0;
  const g = realStore(t, () => now);
  g.send(xs(XS.WATCH, 1, 'data/x', 't'), xs(XS.WATCH, 2, '@releaseDomain', 'r'));
  g.pump();
  assert.equal(g.got.filter((m) => m.type === XS.WATCH_EVENT).length, 2, 'the registrations');
  // The guest stops reading: three writes to data/x give one waiting event; three releases give three.
  for (let i = 0; i < 3; i++) g.store.write('/local/domain/1/data/x', `v${i}`);
  for (let i = 0; i < 3; i++) g.store.introduce(7 + i), g.store.release(7 + i);
  g.pump(false);
  now += 19_999;
  g.pump();
  const fired = g.got.filter((m) => m.type === XS.WATCH_EVENT).slice(2).map(eventPath);
  assert.deepEqual(fired, ['data/x', '@releaseDomain', '@releaseDomain', '@releaseDomain']);
  // Unread for 20 s: dropped.
  g.store.write('/local/domain/1/data/x', 'late');
  now += 20_001;
  g.pump();
  assert.equal(g.got.filter((m) => m.type === XS.WATCH_EVENT).length, 6, 'the stale event never arrives');
  // A fresh one does.
  g.store.write('/local/domain/1/data/x', 'fresh');
  g.pump();
  assert.equal(g.got.filter((m) => m.type === XS.WATCH_EVENT).length, 7);
});

test('events for a guest that never reads stop at the queue memory quota, with a bounded number of log lines', (t) => {
  const g = realStore(t);
  g.send(xs(XS.WATCH, 1, 'data', 't'));
  g.pump();
  // Distinct nodes, so no event folds into another: each is about 34 bytes with its header, 100,000 well past the quota.
  for (let i = 0; i < 100_000; i++) g.store.write(`/local/domain/1/data/d${i % 100}/n${i}`, '');
  g.pump(false);
  assert.ok(g.log.warns().length >= 1 && g.log.warns().length <= 10, `${g.log.warns().length} lines`);
  g.pump();
  const bytes = g.got.filter((m) => m.type === XS.WATCH_EVENT).reduce((n, m) => n + 16 + m.payload.length, 0);
  assert.ok(bytes <= QUEUED_BYTES_MAX + 1024, `${bytes} bytes of events were queued`);
});

test('a reconnection drops the old session and starts the rings afresh', (t) => {
  const r = setup(t);
  r.send(encodeMessage(request(1)).subarray(0, 20)); // half a message
  r.ring.service();
  r.setIdx('connection', XENSTORE_CONNECTION.RECONNECT);
  r.ring.service();
  assert.deepEqual(r.store.disconnected, [1]);
  assert.deepEqual(['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod', 'connection'].map((n) => r.idx(n as Index)), [0, 0, 0, 0, XENSTORE_CONNECTION.CONNECTED]);
  r.send(encodeMessage(request(2)));
  r.ring.service();
  assert.deepEqual(r.receive().map((m) => m.reqId), [2], 'the half message is forgotten');
});

test('a broken ring is marked and left alone until the guest reconnects', (t) => {
  for (const breakIt of [
    (r: ReturnType<typeof setup>) => r.setIdx('req_prod', 5000),
    (r: ReturnType<typeof setup>) => {
      const big = encodeMessage(request(1, 0));
      new DataView(big.buffer).setUint32(12, 5000, true);
      r.send(big);
    },
  ]) {
    const r = setup(t);
    breakIt(r);
    r.ring.service();
    assert.notEqual(r.idx('error'), XENSTORE_ERROR.NONE);
    r.setIdx('req_prod', r.idx('req_cons'));
    r.send(encodeMessage(request(3)));
    r.ring.service();
    assert.deepEqual(r.store.handled.map((m) => m.reqId).filter((id) => id === 3), [], 'nothing served while broken');
    r.setIdx('connection', XENSTORE_CONNECTION.RECONNECT);
    r.ring.service();
    assert.equal(r.idx('error'), XENSTORE_ERROR.NONE);
    r.send(encodeMessage(request(4)));
    r.ring.service();
    assert.deepEqual(r.receive().map((m) => m.reqId), [4]);
  }
});

test('a watch event from elsewhere wakes the serving loop and reaches the guest', async (t) => {
  const r = setup(t);
  const running = r.ring.run();
  r.store.event('/x');
  await new Promise((res) => setTimeout(res, 10));
  assert.deepEqual(r.receive().map((m) => m.type), [XS.WATCH_EVENT]);
  r.ring.stop();
  await running;
});

test('rebind: a new channel and a new session, and the serving loop follows the new channel', async (t) => {
  const r = setup(t);
  const running = r.ring.run();
  r.send(encodeMessage(request(1)));
  r.channel.notifier.notify();
  await new Promise((res) => setTimeout(res, 10));
  assert.deepEqual(r.receive().map((m) => m.reqId), [1]);
  const fresh = r.s.d.backends.create();
  r.ring.rebind(fresh);
  assert.deepEqual(r.store.disconnected, [1], 'the old session is gone');
  assert.equal(r.idx('req_prod'), 0);
  r.send(encodeMessage(request(2)));
  fresh.notifier.notify();
  await new Promise((res) => setTimeout(res, 10));
  assert.deepEqual(r.receive().map((m) => m.reqId), [2], 'served on a notification of the new channel');
  assert.equal(r.s.pending(fresh.guestPort), 1, 'and the guest is told on the new port');
  r.ring.stop();
  await running;
});

test('fuzz: a guest scribbling over its XenStore page never breaks the real store, and a reconnection always recovers', (t) => {
  const { page, view, log, ring } = ringOnRealStore(t);
  const rand = seededRandom(7);
  const fields = ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod', 'connection', 'error'] as const;
  for (let step = 0; step < 3000; step++) {
    switch (rand(4)) {
      case 0: // random bytes, or a well-formed request with a random type and payload, into the request ring
        for (const b of rand(2) ? encodeMessage({ type: rand(30), reqId: step, txId: rand(3), payload: new Uint8Array(rand(64)).map(() => rand(256)) }) : new Uint8Array(rand(40)).map(() => rand(256))) {
          const prod = view.getUint32(L.offsets.req_prod, true);
          page[L.offsets.req + (prod % 1024)] = b;
          view.setUint32(L.offsets.req_prod, prod + 1, true);
        }
        break;
      case 1:
        view.setUint32(L.offsets[fields[rand(fields.length)]], rand(3) ? rand(4096) : rand(0x100000000), true);
        break;
      case 2:
        view.setUint32(L.offsets.rsp_cons, view.getUint32(L.offsets.rsp_prod, true), true);
        break;
    }
    ring.service();
  }
  assert.deepEqual(log.errors(), []);
  view.setUint32(L.offsets.connection, XENSTORE_CONNECTION.RECONNECT, true);
  ring.service();
  const request = encodeMessage({ type: XS.GET_DOMAIN_PATH, reqId: 99, txId: 0, payload: stringsPayload('1') });
  page.set(request, L.offsets.req);
  view.setUint32(L.offsets.req_prod, request.length, true);
  ring.service();
  const reply = new MessageFramer().push(page.slice(L.offsets.rsp, L.offsets.rsp + view.getUint32(L.offsets.rsp_prod, true)));
  assert.deepEqual(reply.map((m) => [m.reqId, new TextDecoder().decode(m.payload)]), [[99, '/local/domain/1\0']]);
});

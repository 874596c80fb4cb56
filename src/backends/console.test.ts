import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import { RateLimitedLog } from '../common/log.js';
import { seededRandom } from '../common/seeded-random.js';
import { xenconsInterface } from '../xen/abi/console.js';
import { evtchnTestDomain } from '../xen/evtchn/fake-domain.js';
import { ConsoleInput, ConsoleRing } from './console.js';

const L = xenconsInterface.native;

function setup(t: { after(fn: () => void): void }) {
  const s = evtchnTestDomain(t);
  const channel = s.d.backends.create();
  const page = new Uint8Array(4096);
  const view = new DataView(page.buffer);
  const out: number[] = [];
  const input = new ConsoleInput();
  const log = capturedLogger();
  const ring = new ConsoleRing(page, channel, (b) => out.push(...b), input, new RateLimitedLog(log.logger));
  /** The guest writing its output ring. */
  const guestWrite = (bytes: number[]) => {
    let prod = view.getUint32(L.offsets.out_prod, true);
    for (const b of bytes) page[L.offsets.out + (prod++ % 2048)] = b;
    view.setUint32(L.offsets.out_prod, prod >>> 0, true);
  };
  const idx = (name: 'in_cons' | 'in_prod' | 'out_cons' | 'out_prod') => view.getUint32(L.offsets[name], true);
  const setIdx = (name: 'in_cons' | 'out_prod', v: number) => view.setUint32(L.offsets[name], v >>> 0, true);
  return { s, channel, page, view, out, input, log, ring, guestWrite, idx, setIdx };
}

test('console output: every byte in order across the ring\'s wrap, out_cons kept by the backend, the guest notified', (t) => {
  const c = setup(t);
  c.setIdx('out_prod', 0xfffffff0);
  // Free-running indexes start near the 32-bit wrap: the ring position is the index modulo its size.
  new DataView(c.page.buffer).setUint32(L.offsets.out_cons, 0xfffffff0, true);
  const fresh = new ConsoleRing(c.page, c.channel, (b) => c.out.push(...b), c.input, new RateLimitedLog(c.log.logger));
  const sent: number[] = [];
  for (let round = 0; round < 5; round++) {
    const bytes = Array.from({ length: 1500 }, (_, i) => (round * 7 + i) & 0xff);
    c.guestWrite(bytes);
    sent.push(...bytes);
    c.s.d.events.clearPending(c.channel.guestPort);
    fresh.service();
    assert.equal(c.idx('out_cons'), c.idx('out_prod'));
    assert.equal(c.s.pending(c.channel.guestPort), 1, 'the guest is told');
  }
  assert.deepEqual(c.out, sent);
});

test('console output: a producer index more than a ring ahead is resynchronised, not read', (t) => {
  const c = setup(t);
  c.setIdx('out_prod', 5000);
  c.ring.service();
  assert.deepEqual(c.out, []);
  assert.equal(c.idx('out_cons'), 5000);
  assert.equal(c.log.warns().length, 1);
  c.guestWrite([0x41, 0x42]);
  c.ring.service();
  assert.deepEqual(c.out, [0x41, 0x42], 'the ring works on after the resync');
});

test('console input: fills the ring to its size, keeps the rest queued, and waits while in_cons is bogus', (t) => {
  const c = setup(t);
  c.input.push(new Uint8Array(1100).fill(7));
  c.ring.service();
  assert.equal(c.idx('in_prod'), 1024);
  assert.equal(c.input.length, 76);
  c.setIdx('in_cons', 1000);
  c.ring.service();
  assert.equal(c.idx('in_prod'), 1100);
  assert.equal(c.input.length, 0);
  c.setIdx('in_cons', 5000);
  c.input.push(new Uint8Array([1]));
  c.ring.service();
  assert.equal(c.idx('in_prod'), 1100, 'nothing given while in_cons claims more than was produced');
  assert.equal(c.log.warns().length, 1);
});

test('the ring is served when the guest notifies and when input arrives, until stopped', async (t) => {
  const c = setup(t);
  const running = c.ring.run();
  c.guestWrite([0x68, 0x69]);
  c.channel.notifier.notify();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(c.out, [0x68, 0x69]);
  c.input.push(new Uint8Array([0x0a]));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(c.idx('in_prod'), 1);
  c.ring.stop();
  await running;
});

test('fuzz: a guest scribbling over its console page never makes the backend write outside its part, lose input or emit more than a ring', (t) => {
  const c = setup(t);
  const rand = seededRandom(5);
  const IN_SIZE = L.offsets.out - L.offsets.in;
  const OUT_SIZE = L.offsets.in_cons - L.offsets.out;
  const backendOwned = (i: number) =>
    (i >= L.offsets.in && i < L.offsets.in + IN_SIZE) || (i >= L.offsets.in_prod && i < L.offsets.in_prod + 4) || (i >= L.offsets.out_cons && i < L.offsets.out_cons + 4);
  const typed: number[] = [];
  const given: number[] = [];
  let inProd = c.idx('in_prod'); // the backend's own copy, whatever the guest writes over the page's
  for (let step = 0; step < 5000; step++) {
    switch (rand(5)) {
      case 0: { // any index, the backend's too, to a value near the others or to anything
        const name = (['in_cons', 'in_prod', 'out_cons', 'out_prod'] as const)[rand(4)];
        c.view.setUint32(L.offsets[name], rand(3) ? c.idx(rand(2) ? 'in_prod' : 'out_cons') + rand(5000) - 200 : rand(0x100000000), true);
        break;
      }
      case 1: // random bytes anywhere on the page
        for (let i = rand(64); i > 0; i--) c.page[rand(4096)] = rand(256);
        break;
      case 2: // the guest reads its input: in_cons catches up with in_prod
        c.setIdx('in_cons', c.idx('in_prod'));
        break;
      default: { // someone types
        const bytes = Array.from({ length: rand(300) }, () => rand(256));
        typed.push(...bytes);
        c.input.push(Uint8Array.from(bytes));
      }
    }
    const before = c.page.slice();
    const outBefore = c.out.length;
    const queuedBefore = c.input.length;
    c.ring.service();
    for (let i = 0; i < 4096; i++) if (!backendOwned(i)) assert.equal(c.page[i], before[i], `step ${step}: byte ${i} of the guest's part changed`);
    assert.ok(c.out.length - outBefore <= OUT_SIZE, `step ${step}: more than a ring of output`);
    // What the backend took off the queue went into the ring from where it left off, in order.
    for (let n = queuedBefore - c.input.length; n > 0; n--, inProd = (inProd + 1) >>> 0) given.push(c.page[L.offsets.in + (inProd % IN_SIZE)]);
  }
  assert.deepEqual(given, typed.slice(0, given.length));
  assert.equal(given.length + c.input.length, typed.length, 'every typed byte is given or still queued');
  assert.ok(given.length > 100_000, `${given.length} bytes given`);
  assert.deepEqual(c.log.errors(), []);
  assert.ok(c.log.warns().length <= 20, `${c.log.warns().length} warnings (10 per key per 10 s)`);
});

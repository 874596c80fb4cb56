import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import { RateLimitedLog } from '../common/log.js';
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
  return { s, channel, page, out, input, log, ring, guestWrite, idx, setIdx };
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

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BLKIF_RING_ENTRY_SIZE, SRING_INDEX, SRING_RING_OFFSET } from '../xen/abi/blkif.js';
import { BackRing, ringSize, RingOverflowError } from './ring.js';

/** A frontend's end of the same pages, as ring.h's macros keep it. */
function frontend(pages: Uint8Array[], entrySize: number) {
  const header = new DataView(pages[0].buffer, pages[0].byteOffset, SRING_RING_OFFSET);
  const size = ringSize(pages.length, entrySize);
  const flat = () => {
    const all = new Uint8Array(pages.length * 4096);
    pages.forEach((p, i) => all.set(p, i * 4096));
    return all;
  };
  const writeSlot = (index: number, bytes: Uint8Array) => {
    let offset = SRING_RING_OFFSET + (index & (size - 1)) * entrySize;
    for (const b of bytes) {
      pages[Math.floor(offset / 4096)][offset % 4096] = b;
      offset++;
    }
  };
  let reqProd = 0;
  return {
    size,
    push(bytes: Uint8Array) {
      writeSlot(reqProd++, bytes);
      header.setUint32(SRING_INDEX.req_prod, reqProd >>> 0, true);
    },
    setIndex: (name: keyof typeof SRING_INDEX, v: number) => header.setUint32(SRING_INDEX[name], v >>> 0, true),
    index: (name: keyof typeof SRING_INDEX) => header.getUint32(SRING_INDEX[name], true),
    response(index: number) {
      const at = SRING_RING_OFFSET + (index & (size - 1)) * entrySize;
      return flat().slice(at, at + 4);
    },
  };
}

const pagesOf = (n: number) => Array.from({ length: n }, () => new Uint8Array(4096));

test('ring sizes are ring.h\'s: a power of two of the slots that fit after the header', () => {
  assert.equal(ringSize(1, BLKIF_RING_ENTRY_SIZE.native), 32);
  assert.equal(ringSize(1, BLKIF_RING_ENTRY_SIZE.compat), 32);
  assert.equal(ringSize(4, BLKIF_RING_ENTRY_SIZE.native), 128);
  assert.equal(ringSize(1, 16), 128);
});

test('requests in order, each copied out; responses published with the notify rsp_event asks for', () => {
  const pages = pagesOf(1);
  const f = frontend(pages, 112);
  const ring = new BackRing(pages, 112);
  assert.equal(ring.unconsumed(), 0);
  for (let i = 0; i < 3; i++) f.push(Uint8Array.of(i + 1, 0xaa));
  assert.equal(ring.unconsumed(), 3);
  const first = ring.takeRequest();
  assert.deepEqual([...first.subarray(0, 2)], [1, 0xaa]);
  pages[0][SRING_RING_OFFSET] = 0x55;
  assert.equal(first[0], 1, 'the backend works on its copy');
  ring.takeRequest();
  ring.takeRequest();
  assert.equal(ring.inFlight, 3);
  f.setIndex('rsp_event', 1);
  ring.putResponse(Uint8Array.of(9, 9, 9, 9));
  assert.equal(f.index('rsp_prod'), 0, 'not visible before the push');
  assert.equal(ring.pushResponses(), true, 'rsp_event 1 is among the new responses');
  assert.equal(f.index('rsp_prod'), 1);
  ring.putResponse(Uint8Array.of(8, 8, 8, 8));
  assert.equal(ring.pushResponses(), false, 'the frontend asked for rsp 1 only');
  f.setIndex('rsp_event', 3);
  ring.putResponse(Uint8Array.of(7, 7, 7, 7));
  assert.equal(ring.pushResponses(), true);
  assert.deepEqual([...f.response(2)], [7, 7, 7, 7]);
  assert.throws(() => ring.putResponse(Uint8Array.of(1)), RangeError, 'nothing left to answer');
});

test('final check: asks to be notified of the next request, and sees one produced meanwhile', () => {
  const pages = pagesOf(1);
  const f = frontend(pages, 112);
  const ring = new BackRing(pages, 112);
  assert.equal(ring.finalCheckForRequests(), false);
  assert.equal(f.index('req_event'), 1);
  f.push(Uint8Array.of(1));
  assert.equal(ring.finalCheckForRequests(), true);
  ring.takeRequest();
  assert.equal(ring.finalCheckForRequests(), false);
  assert.equal(f.index('req_event'), 2);
});

test('slots of a multi-page ring straddling pages, and indexes wrapping past 2^32', () => {
  const pages = pagesOf(4);
  const f = frontend(pages, 112);
  const ring = new BackRing(pages, 112);
  for (let i = 0; i < 300; i++) {
    f.push(Uint8Array.from({ length: 112 }, (_, j) => (i + j) & 0xff));
    const r = ring.takeRequest();
    assert.deepEqual(r, Uint8Array.from({ length: 112 }, (_, j) => (i + j) & 0xff), `request ${i}`);
    ring.putResponse(Uint8Array.of(i & 0xff, 1, 2, 3));
    ring.pushResponses();
  }
  // A frontend whose indexes start near 2^32 (they are free-running).
  const p2 = pagesOf(1);
  const near = 0xffff_fffe;
  new DataView(p2[0].buffer).setUint32(SRING_INDEX.rsp_prod, near, true);
  new DataView(p2[0].buffer).setUint32(SRING_INDEX.req_prod, (near + 4) >>> 0, true);
  const r2 = new BackRing(p2, 112);
  assert.equal(r2.unconsumed(), 4);
});

test('a req_prod more than a ring ahead stops the ring; responses owed bound what may be taken', () => {
  const pages = pagesOf(1);
  const f = frontend(pages, 112);
  const ring = new BackRing(pages, 112);
  f.setIndex('req_prod', 33);
  assert.throws(() => ring.unconsumed(), RingOverflowError);
  f.setIndex('req_prod', 0xffff_ffff);
  assert.throws(() => ring.unconsumed(), RingOverflowError, 'behind is as bad as too far ahead');
  f.setIndex('req_prod', 32);
  assert.equal(ring.unconsumed(), 32);
  for (let i = 0; i < 32; i++) ring.takeRequest();
  f.setIndex('req_prod', 40);
  assert.equal(ring.unconsumed(), 0, 'every slot holds a request not yet answered');
  ring.putResponse(Uint8Array.of(1));
  assert.equal(ring.unconsumed(), 1);
});

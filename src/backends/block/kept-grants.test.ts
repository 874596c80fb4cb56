import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeptGrants } from './kept-grants.js';

/** A mapping of one grant whose page is `page`, counting its unmaps. */
const mapping = (page: Uint8Array) => {
  const m = { unmaps: 0, page: () => page, unmap: () => void m.unmaps++ };
  return m;
};

test('kept grants: found by ref as mapped (writable serves both ways, read-only only writes), their pages the ones kept, past the arrays\' first size', () => {
  const memory = new ArrayBuffer(8 * 4096);
  const other = new ArrayBuffer(4096);
  const kept = new KeptGrants(10);
  const pages = [new Uint8Array(memory, 4096, 4096), new Uint8Array(memory, 3 * 4096, 4096), new Uint8Array(other, 0, 4096)];
  assert.equal(kept.keep(7, mapping(pages[0]), pages[0], true), true);
  assert.equal(kept.keep(5000, mapping(pages[1]), pages[1], false), true);
  assert.equal(kept.keep(3, mapping(pages[2]), pages[2], true), true);
  assert.equal(kept.size, 3);
  assert.deepEqual([kept.serves(7, true), kept.serves(7, false)], [true, true]);
  assert.deepEqual([kept.serves(5000, true), kept.serves(5000, false)], [false, true]);
  assert.deepEqual([kept.serves(8, false), kept.serves(2 ** 32 - 1, false)], [false, false]);
  pages[1][10] = 0xab;
  const page = kept.page(5000);
  assert.equal(page.buffer, memory);
  assert.equal(page.byteOffset, 3 * 4096);
  assert.equal(page[10], 0xab);
  assert.equal(kept.page(3).buffer, other);
  assert.equal(kept.page(7).byteOffset, 4096, 'kept across the arrays growing');
});

test('kept grants: no more than the limit, a ref kept once, and all let go at release', () => {
  const memory = new ArrayBuffer(4 * 4096);
  const kept = new KeptGrants(2);
  const maps = [0, 1, 2].map((i) => mapping(new Uint8Array(memory, i * 4096, 4096)));
  assert.equal(kept.keep(1, maps[0], maps[0].page(), true), true);
  assert.equal(kept.keep(1, maps[1], maps[1].page(), true), false, 'kept already');
  assert.equal(kept.keep(2, maps[1], maps[1].page(), false), true);
  assert.equal(kept.keep(3, maps[2], maps[2].page(), true), false, 'full');
  assert.equal(kept.serves(3, false), false);
  kept.release();
  assert.deepEqual(maps.map((m) => m.unmaps), [1, 1, 0]);
  assert.deepEqual([kept.size, kept.serves(1, false), kept.serves(2, false)], [0, false, false]);
  assert.equal(kept.keep(3, maps[2], maps[2].page(), true), true, 'room again');
});

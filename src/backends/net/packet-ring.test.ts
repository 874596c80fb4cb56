import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PacketRing } from './packet-ring.js';

test('records come out whole and in order, across the wrap, and a full ring refuses one (randomized against a plain queue)', () => {
  const ring = PacketRing.create(1024);
  const other = PacketRing.attach(ring.buffer);
  const expected: Uint8Array[] = [];
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  let refused = 0;
  for (let step = 0; step < 20000; step++) {
    if (random(2) === 0) {
      const length = random(300);
      const bytes = Uint8Array.from({ length }, (_, i) => (step + i) & 0xff);
      const split = random(length + 1);
      if (ring.put([bytes.subarray(0, split), bytes.subarray(split)])) {
        expected.push(bytes);
      } else {
        refused++;
        const used = expected.reduce((n, b) => n + 4 + ((b.length + 3) & ~3), 0);
        assert.ok(used + 4 + ((length + 3) & ~3) > 1024 - 300 - 4, `refused ${length} bytes with ${used} of 1024 used`);
      }
    } else {
      const r = other.peek();
      if (expected.length === 0) {
        assert.equal(r, undefined);
        continue;
      }
      assert.deepEqual(r, expected.shift());
      other.release(r!);
    }
  }
  assert.ok(refused > 0, 'the ring filled up at times');
  assert.equal(ring.dropped, refused);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Packet } from './packet.js';
import { STEERED_MAX, Steering } from './steering.js';

/** A queue whose guest has posted `buffers` receive buffers (one packet each). */
const sink = (buffers: number) => ({
  buffers,
  got: [] as number[],
  receive(p: Packet) {
    if (this.buffers === 0) return false;
    this.buffers--;
    this.got.push(p.frame[0]);
    return true;
  },
});

/** A host ring holding packets numbered `ids` (their first byte), and how many were taken. */
const hostRing = (ids: number[]) => {
  const left = [...ids];
  return { left, next: (): Packet | undefined => (left.length ? { frame: Uint8Array.of(left.shift()!) } : undefined) };
};

test('steering: with no settings a packet stays on the queue it came in on, and waits there for buffers, the host ring untouched behind it', () => {
  const q = [sink(2), sink(8)];
  const s = new Steering(q, () => undefined);
  const host = hostRing([1, 2, 3, 4]);
  s.deliver(0, host.next);
  assert.deepEqual(q[0].got, [1, 2]);
  assert.deepEqual(host.left, [4], 'packet 3 waits; 4 stays in the host ring');
  q[0].buffers = 5;
  s.deliver(0, host.next);
  assert.deepEqual(q[0].got, [1, 2, 3, 4]);
  assert.deepEqual(q[1].got, []);
  assert.deepEqual([s.steeredAway, s.steeredDropped], [[0, 0], [0, 0]]);
});

test('steering: a packet sent to another queue is on that queue\'s ring at once, or waits there, ahead of what its own host ring brings later', () => {
  const q = [sink(8), sink(1)];
  const s = new Steering(q, () => 1);
  s.deliver(0, hostRing([1, 2, 3]).next);
  assert.deepEqual(q[1].got, [1], 'no pass of queue 1 needed');
  assert.deepEqual(q[0].got, []);
  assert.deepEqual(s.steeredAway, [3, 0]);
  q[1].buffers = 8;
  s.deliver(1, hostRing([4]).next);
  assert.deepEqual(q[1].got, [1, 2, 3, 4]);
});

test(`steering: at most ${STEERED_MAX} packets from other queues wait for a queue; the rest are dropped and counted`, () => {
  const q = [sink(0), sink(0)];
  const s = new Steering(q, () => 1);
  s.deliver(0, hostRing(Array.from({ length: STEERED_MAX + 3 }, (_, i) => i & 0xff)).next);
  assert.deepEqual(s.steeredDropped, [0, 3]);
  assert.deepEqual(s.steeredAway, [STEERED_MAX + 3, 0]);
  q[1].buffers = 1000;
  s.deliver(1, hostRing([]).next);
  assert.equal(q[1].got.length, STEERED_MAX);
});

test('steering: when the settings change, what still waits goes where they now send it (back to the queue it came in on with none), and nothing by the old ones', () => {
  const q = [sink(0), sink(0), sink(0)];
  let to: number | undefined = 1;
  const s = new Steering(q, () => to);
  s.deliver(0, hostRing([1, 2]).next);
  s.deliver(2, hostRing([3]).next);
  to = 0;
  q[0].buffers = 1;
  s.resteer();
  assert.deepEqual(q[0].got, [1], 'on queue 0\'s ring at once');
  to = undefined;
  q[2].buffers = 8;
  s.resteer();
  assert.deepEqual(q[2].got, [3], 'packet 3 back on the queue it came in on');
  q[1].buffers = 8;
  s.deliver(1, hostRing([]).next);
  assert.deepEqual(q[1].got, [], 'nothing left by the old settings');
  q[0].buffers = 8;
  s.deliver(0, hostRing([]).next);
  assert.deepEqual(q[0].got, [1, 2]);
});

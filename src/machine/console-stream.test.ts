// The console ring with real threads: bytes come out in the order they were written, whichever thread
// wrote them, through a ring much smaller than what goes through it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { ConsoleStream } from './console-stream.js';

const moduleUrl = new URL('./console-stream.js', import.meta.url).href;

/**
 * Two writer threads take turns through `turn` (thread i writes while turn is i, then hands over), so the
 * order the guest would see is known: a0 b0 a1 b1 ... Each piece is written in two writes, as a UART
 * line is when its first burst and its rest come from different CPUs.
 */
function writer(buffer: SharedArrayBuffer, turn: SharedArrayBuffer, me: number, rounds: number): Promise<void> {
  const code = `
    const { workerData } = require('node:worker_threads');
    import(workerData.moduleUrl).then(({ ConsoleStream }) => {
      const stream = new ConsoleStream(workerData.buffer);
      const turn = new Int32Array(workerData.turn);
      const text = (s) => new TextEncoder().encode(s);
      for (let r = 0; r < workerData.rounds; r++) {
        while (Atomics.load(turn, 0) !== workerData.me) Atomics.wait(turn, 0, 1 - workerData.me, 1000);
        const piece = (workerData.me ? 'b' : 'a') + r + ';';
        stream.write(text(piece.slice(0, 1)));
        stream.write(text(piece.slice(1)));
        Atomics.store(turn, 0, 1 - workerData.me);
        Atomics.notify(turn, 0);
      }
    });`;
  const w = new Worker(code, { eval: true, workerData: { buffer, turn, me, rounds, moduleUrl } });
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.once('exit', () => resolve());
  });
}

test('bytes from two threads come out in the order written, through a 64-byte ring that fills again and again', async () => {
  const stream = ConsoleStream.create(64);
  const turn = new SharedArrayBuffer(4);
  const rounds = 500;
  let out = '';
  let writing = true;
  const reader = (async () => {
    while (writing) {
      await stream.written();
      out += new TextDecoder().decode(stream.drain());
    }
  })();
  await Promise.all([writer(stream.buffer, turn, 0, rounds), writer(stream.buffer, turn, 1, rounds)]);
  writing = false;
  stream.interrupt();
  await reader;
  out += new TextDecoder().decode(stream.drain());
  const expected = Array.from({ length: rounds }, (_, r) => `a${r};b${r};`).join('');
  assert.equal(out.length, expected.length);
  assert.equal(out, expected);
});

test('a write longer than the ring goes through in pieces; drain gives nothing twice', async () => {
  const stream = ConsoleStream.create(16);
  const big = new Uint8Array(100).map((_, i) => i);
  const w = new Worker(`
    const { workerData } = require('node:worker_threads');
    import(workerData.moduleUrl).then(({ ConsoleStream }) => new ConsoleStream(workerData.buffer).write(workerData.big));`,
  { eval: true, workerData: { buffer: stream.buffer, big, moduleUrl } });
  const got: number[] = [];
  const done = new Promise((resolve) => w.once('exit', resolve));
  while (got.length < big.length) {
    await stream.written();
    got.push(...stream.drain());
  }
  await done;
  assert.deepEqual(got, [...big]);
  assert.equal(stream.drain().length, 0);
  assert.throws(() => new ConsoleStream(new SharedArrayBuffer(16 + 10)), /power of two/);
});

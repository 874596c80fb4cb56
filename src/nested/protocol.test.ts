import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../common/seeded-random.js';
import { dataFrames, encodeFrame, Frame, FrameReader, jsonFrame, MAX_PAYLOAD, type DecodedFrame } from './protocol.js';

test('frames come out whole and in order however the byte stream is cut', () => {
  const below = seededRandom(9);
  const sent = [jsonFrame(Frame.Exec, 1, { argv: ['true'] }), encodeFrame(Frame.End, 1), ...dataFrames(Frame.Stdout, 7, Buffer.alloc(3 * MAX_PAYLOAD + 5, 0xab)), encodeFrame(Frame.Data, 2, Buffer.from('x'))];
  const bytes = Buffer.concat(sent);
  for (let round = 0; round < 50; round++) {
    const got: DecodedFrame[] = [];
    const reader = new FrameReader((f) => got.push({ ...f, payload: Buffer.from(f.payload) }));
    for (let at = 0; at < bytes.length; ) {
      const n = 1 + below(round % 2 ? 20 : 100_000);
      reader.push(bytes.subarray(at, at + n));
      at += n;
    }
    assert.equal(got.length, sent.length);
    assert.deepEqual(got.map((f) => [f.kind, f.stream]), [[Frame.Exec, 1], [Frame.End, 1], [Frame.Stdout, 7], [Frame.Stdout, 7], [Frame.Stdout, 7], [Frame.Stdout, 7], [Frame.Data, 2]]);
    assert.equal(Buffer.concat(got.filter((f) => f.stream === 7).map((f) => f.payload)).length, 3 * MAX_PAYLOAD + 5);
  }
});

test('a frame claiming more than the largest payload is a corrupt stream, not an allocation', () => {
  const bad = encodeFrame(Frame.Data, 1, Buffer.alloc(4));
  bad.writeUInt32LE(MAX_PAYLOAD + 1, 5);
  assert.throws(() => new FrameReader(() => {}).push(bad), /exceeds/);
  assert.throws(() => encodeFrame(Frame.Data, 1, Buffer.alloc(MAX_PAYLOAD + 1)), RangeError);
});

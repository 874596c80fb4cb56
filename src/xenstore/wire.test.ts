import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XENSTORE_PAYLOAD_MAX, XS } from '../xen/abi/xenstore.js';
import { seededRandom } from '../common/seeded-random.js';
import { encodeMessage, HEADER_BYTES, MessageFramer, payloadStrings, stringsPayload } from './wire.js';

test('a message round-trips through the framer, however the stream is cut', () => {
  const a = { type: XS.WRITE, reqId: 7, txId: 3, payload: stringsPayload('/a/b', 'value') };
  const b = { type: XS.READ, reqId: 0xffffffff, txId: 0, payload: new Uint8Array(0) };
  const bytes = new Uint8Array([...encodeMessage(a), ...encodeMessage(b)]);
  assert.equal(bytes.length, 2 * HEADER_BYTES + a.payload.length);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const f = new MessageFramer();
    const got = [...f.push(bytes.subarray(0, cut)), ...f.push(bytes.subarray(cut))];
    assert.deepEqual(got, [a, b], `cut at ${cut}`);
    assert.equal(f.buffered, 0);
  }
});

test('a payload over 4096 bytes breaks the stream there, after the messages before it; exactly 4096 does not', () => {
  const ok = encodeMessage({ type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(XENSTORE_PAYLOAD_MAX) });
  const f = new MessageFramer();
  assert.equal(f.push(ok).length, 1);
  assert.equal(f.broken, null);
  const header = encodeMessage({ type: XS.WRITE, reqId: 2, txId: 0, payload: new Uint8Array(0) });
  new DataView(header.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
  assert.deepEqual(f.push(new Uint8Array([...ok, ...header, ...ok])).map((m) => m.reqId), [1]);
  assert.equal(f.broken, `payload of ${XENSTORE_PAYLOAD_MAX + 1} bytes (at most ${XENSTORE_PAYLOAD_MAX})`);
  assert.deepEqual(f.push(ok), []);
  assert.equal(f.buffered, 0);
});

test('payload strings: NUL-terminated parts, the last one possibly unterminated', () => {
  assert.deepEqual(payloadStrings(stringsPayload('a', '', 'b')), ['a', '', 'b']);
  assert.deepEqual(payloadStrings(new TextEncoder().encode('/x\0val')), ['/x', 'val']);
  assert.deepEqual(payloadStrings(new Uint8Array(0)), []);
});

test('fuzz: random streams in random cuts: the framer hands out exactly the bytes it was given, up to an oversized length', () => {
  const rand = seededRandom(11);
  for (let round = 0; round < 300; round++) {
    // Mostly well-formed messages with random fields, some raw bytes, now and then a huge length.
    const parts: Uint8Array[] = [];
    for (let i = rand(12); i > 0; i--) {
      if (rand(5) === 0) parts.push(new Uint8Array(rand(40)).map(() => rand(256)));
      else parts.push(encodeMessage({ type: rand(40), reqId: rand(0x100000000), txId: rand(4), payload: new Uint8Array(rand(3) ? rand(80) : rand(XENSTORE_PAYLOAD_MAX + 1)).map(() => rand(256)) }));
    }
    const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (stream.set(p, at), at + p.length), 0);
    const framer = new MessageFramer();
    const framed: number[] = [];
    for (let pushed = 0; pushed < stream.length; ) {
      const chunk = stream.subarray(pushed, pushed + 1 + rand(300));
      for (const m of framer.push(chunk)) {
        assert.ok(m.payload.length <= XENSTORE_PAYLOAD_MAX);
        framed.push(...encodeMessage(m));
      }
      pushed += chunk.length;
    }
    if (framer.broken !== null) {
      // Everything before the bad header was framed; the header itself says more than 4096.
      const header = new DataView(stream.buffer, framed.length, HEADER_BYTES);
      assert.ok(header.getUint32(12, true) > XENSTORE_PAYLOAD_MAX, `round ${round}`);
    } else {
      // Framed messages, then a partial one held back: together, the stream byte for byte.
      assert.equal(framed.length + framer.buffered, stream.length, `round ${round}`);
      assert.deepEqual(new Uint8Array(framed), stream.subarray(0, framed.length), `round ${round}`);
      assert.ok(framer.buffered < HEADER_BYTES || framer.buffered < HEADER_BYTES + new DataView(stream.buffer, framed.length).getUint32(12, true));
    }
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XENSTORE_PAYLOAD_MAX, XS } from '../xen/abi/xenstore.js';
import { encodeMessage, HEADER_BYTES, MessageFramer, payloadStrings, stringsPayload, XsProtocolError } from './wire.js';

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

test('a payload over 4096 bytes is a protocol error; exactly 4096 is not', () => {
  const ok = encodeMessage({ type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(XENSTORE_PAYLOAD_MAX) });
  assert.equal(new MessageFramer().push(ok).length, 1);
  const header = encodeMessage({ type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(0) });
  new DataView(header.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
  assert.throws(() => new MessageFramer().push(header), XsProtocolError);
});

test('payload strings: NUL-terminated parts, the last one possibly unterminated', () => {
  assert.deepEqual(payloadStrings(stringsPayload('a', '', 'b')), ['a', '', 'b']);
  assert.deepEqual(payloadStrings(new TextEncoder().encode('/x\0val')), ['/x', 'val']);
  assert.deepEqual(payloadStrings(new Uint8Array(0)), []);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { atoiUnsigned, countStrings, latin1, latin1Bytes, nulTerminated, oneArg, strtol, strtoull, terminatedStrings } from './payload.js';

const b = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

test('latin1 keeps every byte: 0..255 round-trip, chars above U+00FF do not encode', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(latin1Bytes(latin1(all)), all);
  assert.deepEqual(latin1Bytes('\u00e9'), Uint8Array.of(0xe9));
  assert.equal(latin1Bytes('\u20ac'), undefined);
  const long = new Uint8Array(20000).fill(0x41);
  assert.equal(latin1(long).length, 20000);
});

test('payload strings as xenstored splits them', () => {
  assert.deepEqual(terminatedStrings(b('a\0\0bc\0tail')), ['a', '', 'bc'], 'bytes after the last NUL are not a string');
  assert.deepEqual(terminatedStrings(b('')), []);
  assert.equal(countStrings(b('a\0b\0c')), 2);
  assert.equal(oneArg(b('/x\0')), '/x');
  assert.equal(oneArg(b('/x')), undefined, 'no NUL');
  assert.equal(oneArg(b('/x\0y')), undefined, 'data after the NUL');
  assert.equal(oneArg(b('/x\0\0')), undefined, 'two strings');
  assert.equal(oneArg(b('')), undefined);
  assert.equal(oneArg(b('\0')), '');
  assert.deepEqual(nulTerminated(['ab', '']), b('ab\0\0'));
});

test('strtol and atoi follow C on a 64-bit host', () => {
  assert.deepEqual(strtol('  -12x', 10), { value: -12n, end: 5 });
  assert.deepEqual(strtol('0x1f', 0), { value: 31n, end: 4 });
  assert.deepEqual(strtol('010', 0), { value: 8n, end: 3 });
  assert.deepEqual(strtol('0x', 0), { value: 0n, end: 1 }, '"0" parsed, the x left over');
  assert.deepEqual(strtol('x', 0), { value: 0n, end: 0 });
  assert.equal(strtol('99999999999999999999999', 10).value, (1n << 63n) - 1n, 'clamped to LONG_MAX');
  assert.equal(strtol('-99999999999999999999999', 10).value, -(1n << 63n));
  assert.equal(atoiUnsigned('7'), 7);
  assert.equal(atoiUnsigned('-1'), 0xffffffff);
  assert.equal(atoiUnsigned('12abc'), 12);
  assert.equal(atoiUnsigned('abc'), 0);
  assert.equal(atoiUnsigned('4294967297'), 1, 'int truncation of a long');
  assert.equal(strtoull('18446744073709551615'), (1n << 64n) - 1n);
  assert.equal(strtoull('99999999999999999999999'), (1n << 64n) - 1n);
  assert.equal(strtoull('-1'), (1n << 64n) - 1n);
  assert.equal(strtoull(' 42x'), 42n);
  assert.equal(strtoull('x'), 0n);
});

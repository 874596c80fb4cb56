// The CMOS RTC against a clock the test sets: what a kernel reads, in each format, and writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CmosRtc } from './cmos-rtc.js';

/** 2026-12-05 21:07:09 UTC, a Saturday. */
const T0 = Date.UTC(2026, 11, 5, 21, 7, 9) / 1000;

function setup() {
  let now = T0;
  const state = CmosRtc.createState();
  const rtcs = [new CmosRtc(state, () => now), new CmosRtc(state, () => now)];
  const get = (reg: number, i = 0) => {
    rtcs[i].write(0, 1, reg);
    return rtcs[i].read(1);
  };
  const set = (reg: number, v: number, i = 0) => {
    rtcs[i].write(0, 1, reg);
    rtcs[i].write(1, 1, v);
  };
  return { get, set, advance: (s: number) => (now += s), rtcs };
}

test('the time in BCD, 24-hour, as firmware leaves register B; A, C and D as a kernel expects', () => {
  const { get, advance } = setup();
  assert.deepEqual([0, 2, 4, 6, 7, 8, 9].map((r) => get(r)), [0x09, 0x07, 0x21, 0x07, 0x05, 0x12, 0x26]);
  assert.equal(get(0x0a) & 0x80, 0, 'never an update in progress');
  assert.equal(get(0x0b), 0x02);
  assert.equal(get(0x0c), 0, 'no interrupt flags');
  assert.equal(get(0x0d), 0x80, 'valid RAM and time');
  advance(61);
  assert.deepEqual([get(0), get(2)], [0x10, 0x08], 'it runs with the host clock');
});

test('binary and 12-hour formats, as register B asks', () => {
  const { get, set } = setup();
  set(0x0b, 0x04 | 0x02);
  assert.deepEqual([get(0), get(4), get(9)], [9, 21, 26]);
  set(0x0b, 0x00);
  assert.equal(get(4), 0x80 | 0x09, '9 PM in BCD, 12-hour');
});

test('writing the time moves the clock for every vCPU; the rest is RAM; C and D are read-only; the index keeps its NMI bit', () => {
  const { get, set, advance, rtcs } = setup();
  set(9, 0x30); // year 2030
  set(4, 0x08); // 08 h
  assert.deepEqual([get(9, 1), get(4, 1), get(2, 1)], [0x30, 0x08, 0x07], 'seen through the other vCPU');
  advance(3600);
  assert.equal(get(4), 0x09, 'and it keeps running from there');
  set(8, 0x13); // month 13: no such date
  assert.equal(get(8), 0x12, 'an impossible date leaves the clock alone');
  set(0x20, 0xab);
  assert.equal(get(0x20, 1), 0xab);
  set(0x0c, 0xff);
  set(0x0d, 0x00);
  assert.deepEqual([get(0x0c), get(0x0d)], [0, 0x80]);
  rtcs[0].write(0, 1, 0x8d);
  assert.equal(rtcs[0].read(0), 0x8d);
  assert.equal(rtcs[0].read(1), 0x80, 'bit 7 of the index is the NMI mask, not part of the register');
});

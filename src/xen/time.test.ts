// Xen system time from the TSC: the scale, the guest's pvclock formula
// (xen.h vcpu_time_info), and the wallclock split.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monotonicNs, pvclockRead, realtimeNs, TSC_STABILITY_RECHECK_MS, tscScale, VcpuClock, wallclockAtSystemTime, type PvclockParams } from './time.js';

const FREQUENCIES = [1e9, 2.5961e9, 100e6, 4e9, 3_000_000_001, 1_999_999_999, 2_000_000_001, 32_768, 10e9];

test('tscScale: one second of ticks reads as 1e9 ns within 1 ppm', () => {
  for (const hz of FREQUENCIES) {
    const { mul, shift } = tscScale(hz);
    const p: PvclockParams = { tscTimestamp: 0n, systemTime: 0n, mul, shift };
    const ns = pvclockRead(p, BigInt(Math.round(hz)));
    const error = Math.abs(Number(ns - 1_000_000_000n));
    assert.ok(error <= 1000, `${hz} Hz: 1 s read as ${ns} ns`);
    // Ten minutes too (shifts of large deltas are where precision goes).
    const ns600 = pvclockRead(p, BigInt(Math.round(hz)) * 600n);
    assert.ok(Math.abs(Number(ns600 - 600_000_000_000n)) <= 600_000, `${hz} Hz: 600 s read as ${ns600} ns`);
  }
});

test('tscScale: mul fits in 32 bits, as large as it can be; shift fits in an int8', () => {
  for (const hz of FREQUENCIES) {
    const { mul, shift } = tscScale(hz);
    assert.ok(Number.isInteger(mul) && mul >= 2 ** 31 && mul < 2 ** 32, `${hz} Hz: mul ${mul}`);
    assert.ok(Number.isInteger(shift) && shift >= -128 && shift <= 127, `${hz} Hz: shift ${shift}`);
  }
});

test('tscScale: the known values', () => {
  assert.deepEqual(tscScale(1e9), { mul: 2 ** 31, shift: 1 });
  assert.deepEqual(tscScale(4e9), { mul: 2 ** 31, shift: -1 });
  assert.deepEqual(tscScale(2e9), { mul: 2 ** 31, shift: 0 });
  assert.deepEqual(tscScale(100e6), { mul: Math.floor((1e9 * 2 ** 32) / 1.6e9), shift: 4 });
  const s = tscScale(2.5961e9);
  assert.equal(s.shift, -1);
  assert.equal(s.mul, Number((1_000_000_000n << 32n) / 1_298_050_000n));
});

test("tscScale: the header's frequency formula ((10^9 << 32) / mul) >> shift gives the frequency back within 1 ppm", () => {
  for (const hz of FREQUENCIES) {
    const { mul, shift } = tscScale(hz);
    const scaled = Number((1_000_000_000n << 32n) / BigInt(mul));
    const back = shift >= 0 ? scaled / 2 ** shift : scaled * 2 ** -shift;
    assert.ok(Math.abs(back - hz) / hz <= 1e-6, `${hz} Hz came back as ${back}`);
  }
});

test('tscScale: refuses frequencies that are no frequencies', () => {
  for (const hz of [0, -1, NaN, Infinity, -Infinity]) assert.throws(() => tscScale(hz), RangeError, String(hz));
});

test('pvclockRead: the xen.h formula, system_time + (((tsc - tsc_timestamp) << shift) * mul) >> 32', () => {
  const p: PvclockParams = { tscTimestamp: 1_000_000n, systemTime: 5_000n, mul: 0x8000_0000, shift: 1 };
  assert.equal(pvclockRead(p, 1_000_000n), 5_000n);
  assert.equal(pvclockRead(p, 1_000_001n), 5_001n);
  assert.equal(pvclockRead(p, 1_001_000n), 6_000n);
  const q: PvclockParams = { tscTimestamp: 10n, systemTime: 0n, mul: 0xc000_0000, shift: -2 };
  // ((1000 >> 2) * 0xc0000000) >> 32 = 250 * 0.75
  assert.equal(pvclockRead(q, 1010n), 187n);
  // A 64-bit delta times a 32-bit mul needs 96 bits: nothing may be lost.
  const r: PvclockParams = { tscTimestamp: 0n, systemTime: 0n, mul: 0xffff_ffff, shift: 0 };
  assert.equal(pvclockRead(r, 1n << 62n), ((1n << 62n) * 0xffff_ffffn) >> 32n);
});

test('pvclockRead: monotonic in the TSC', () => {
  let seed = 0x2545f491;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  for (const hz of FREQUENCIES) {
    const { mul, shift } = tscScale(hz);
    const p: PvclockParams = { tscTimestamp: 123_456_789n, systemTime: 42n, mul, shift };
    let tsc = p.tscTimestamp;
    let last = pvclockRead(p, tsc);
    assert.equal(last, 42n);
    for (let i = 0; i < 2000; i++) {
      tsc += BigInt(rnd() % 5) + (i % 100 === 0 ? BigInt(rnd()) << 16n : 0n);
      const now = pvclockRead(p, tsc);
      assert.ok(now >= last, `${hz} Hz: ${now} after ${last} at tsc ${tsc}`);
      last = now;
    }
  }
});

test('wallclockAtSystemTime: host real time at system time 0, split into seconds and nanoseconds', () => {
  assert.deepEqual(wallclockAtSystemTime(1_700_000_000_123_456_789n, 5_000_000_000n), { sec: 1_699_999_995n, nsec: 123_456_789 });
  assert.deepEqual(wallclockAtSystemTime(1_700_000_000_000_000_000n, 0n), { sec: 1_700_000_000n, nsec: 0 });
  assert.deepEqual(wallclockAtSystemTime(1_700_000_000_000_000_000n, 1n), { sec: 1_699_999_999n, nsec: 999_999_999 });
  // Past 2106: seconds need more than 32 bits.
  const sec = (1n << 32n) + 7n;
  assert.deepEqual(wallclockAtSystemTime(sec * 1_000_000_000n + 12n, 2n), { sec, nsec: 10 });
});

test('host clocks: nanoseconds, monotonic and near Date.now()', () => {
  const a = monotonicNs();
  const b = monotonicNs();
  assert.ok(b >= a);
  const readings = Array.from({ length: 50 }, () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const rt = realtimeNs();
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    assert.ok(before <= rt && rt < after, 'real time read between two readings of Date.now() (whole milliseconds)');
    return rt;
  });
  assert.ok(readings.some((rt) => rt % 1_000_000n !== 0n), 'real time to the nanosecond, not the millisecond');
});

test("VcpuClock.guestNow: the vCPU's pvclock at the TSC read now, as its guest computes it", () => {
  const p: PvclockParams = { tscTimestamp: 0n, systemTime: 0n, ...tscScale(2.5e9) };
  let tsc = 0n;
  const clock = new VcpuClock(p, true, { tsc: () => tsc, tscStable: () => true });
  for (const t of [0n, 1n, 2_500_000_000n, 7_777_777_777_777n]) {
    tsc = t;
    assert.equal(clock.guestNow(), pvclockRead(p, t));
  }
  const exact = 3_111_111_111_111n; // 7_777_777_777_777 ticks at 2.5 GHz
  const off = clock.guestNow() - exact;
  assert.ok((off < 0n ? -off : off) <= exact / 1_000_000n, `${clock.guestNow()} within the scale's 1 ppm of ${exact}`);
});

test('VcpuClock.recheck: asks KVM at most once per interval, taking its answer each time', () => {
  const p: PvclockParams = { tscTimestamp: 0n, systemTime: 0n, ...tscScale(1e9) };
  let ms = 5_000;
  let stable = true;
  let asked = 0;
  const clock = new VcpuClock(p, true, { tsc: () => 0n, tscStable: () => (asked++, stable) }, () => ms);
  assert.equal(clock.tscStable, true, 'the answer when the domain was built');
  ms += TSC_STABILITY_RECHECK_MS - 1;
  stable = false;
  assert.equal(clock.recheck(), false);
  assert.equal(asked, 0, 'not asked within the interval');
  assert.equal(clock.tscStable, true);
  ms += 1;
  assert.equal(clock.recheck(), true);
  assert.equal(clock.tscStable, false);
  assert.equal(asked, 1);
  assert.equal(clock.recheck(), false, 'the interval starts again');
  ms += TSC_STABILITY_RECHECK_MS;
  assert.equal(clock.recheck(), true, 'asked again, the same answer');
  assert.equal(clock.tscStable, false);
  assert.equal(asked, 2);
  stable = true;
  ms += 10 * TSC_STABILITY_RECHECK_MS;
  assert.equal(clock.recheck(), true, 'and back');
  assert.equal(clock.tscStable, true);
  // A domain built without it starts without it.
  assert.equal(new VcpuClock(p, false, { tsc: () => 0n, tscStable: () => true }).tscStable, false);
});

// vcpu_time_info and wallclock writes: Xen's version protocol (odd while the
// record changes, even and two higher after) and the offsets of each ABI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedInfoLayout, vcpuInfo, vcpuTimeInfo, XEN_PVCLOCK_TSC_STABLE_BIT } from './abi/shared-info.js';
import { bytesArea, SHARED_INFO_PAGE, VCPU_INFO_TIME_OFFSET, writeVcpuTime, writeWallclock, type ByteArea } from './shared-info.js';
import type { PvclockParams } from './time.js';

const P: PvclockParams = { tscTimestamp: 0x0123_4567_89ab_cdefn, systemTime: 0x0fed_cba9_8765_4321n, mul: 0xdead_beef, shift: -3 };

/** A byte area that records every write: the offset, the bytes, and a snapshot of the whole buffer after it. */
function recording(bytes: Uint8Array) {
  const inner = bytesArea(bytes);
  const log: { offset: number; data: number[]; after: Uint8Array }[] = [];
  const area: ByteArea = {
    read: (o, l) => inner.read(o, l),
    write: (o, d) => {
      inner.write(o, d);
      log.push({ offset: o, data: [...d], after: bytes.slice() });
    },
  };
  return { area, log };
}

const u32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint32(o, true);
const u64 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getBigUint64(o, true);

test('constants: shared_info is overlay page 0; vcpu_info.time at 32 in both ABIs', () => {
  assert.equal(SHARED_INFO_PAGE, 0);
  assert.equal(VCPU_INFO_TIME_OFFSET, 32);
  assert.equal(vcpuInfo.compat.offsets.time, 32);
});

test('bytesArea: reads copy, writes land at the offset', () => {
  const b = new Uint8Array(8);
  const a = bytesArea(b);
  a.write(2, Uint8Array.of(1, 2, 3));
  assert.deepEqual([...b], [0, 0, 1, 2, 3, 0, 0, 0]);
  const r = a.read(2, 3)!;
  r[0] = 9;
  assert.equal(b[2], 1, 'a read is a copy');
});

test('writeVcpuTime: every field at its vcpu_time_info offset', () => {
  const bytes = new Uint8Array(64).fill(0x5a);
  new DataView(bytes.buffer).setUint32(0, 10, true);
  writeVcpuTime(bytesArea(bytes), 0, P, true);
  // xen.h: version 0, pad0 4, tsc_timestamp 8, system_time 16, tsc_to_system_mul 24, tsc_shift 28, flags 29, pad1 30.
  assert.deepEqual(vcpuTimeInfo.native.offsets, { version: 0, pad0: 4, tsc_timestamp: 8, system_time: 16, tsc_to_system_mul: 24, tsc_shift: 28, flags: 29, pad1: 30 });
  assert.equal(u32(bytes, 0), 12);
  assert.equal(u32(bytes, 4), 0x5a5a_5a5a, 'pad0 untouched');
  assert.equal(u64(bytes, 8), P.tscTimestamp);
  assert.equal(u64(bytes, 16), P.systemTime);
  assert.equal(u32(bytes, 24), 0xdead_beef);
  assert.equal(new DataView(bytes.buffer).getInt8(28), -3);
  assert.equal(bytes[29], XEN_PVCLOCK_TSC_STABLE_BIT);
  assert.ok(bytes.subarray(32).every((b) => b === 0x5a), 'nothing past the record');
});

test('writeVcpuTime: XEN_PVCLOCK_TSC_STABLE_BIT only when the TSCs are in step; the rest of the record is the same', () => {
  const stable = new Uint8Array(32);
  const unstable = new Uint8Array(32);
  writeVcpuTime(bytesArea(stable), 0, P, true);
  writeVcpuTime(bytesArea(unstable), 0, P, false);
  assert.equal(stable[29], XEN_PVCLOCK_TSC_STABLE_BIT);
  assert.equal(unstable[29], 0);
  unstable[29] = stable[29];
  assert.deepEqual(unstable, stable);
});

test('writeVcpuTime: the version goes odd first, then even two higher; the body is written while it is odd', () => {
  for (const start of [0, 2, 10, 0xffff_fffe]) {
    const bytes = new Uint8Array(32);
    new DataView(bytes.buffer).setUint32(0, start, true);
    const { area, log } = recording(bytes);
    writeVcpuTime(area, 0, P, true);
    const versions = log.map((w) => u32(w.after, 0));
    // Every intermediate state a guest could see has an odd version; only the last is even.
    for (let i = 0; i < log.length - 1; i++) assert.equal(versions[i] % 2, 1, `write ${i} left version ${versions[i]}`);
    assert.equal(versions.at(-1), (start + 2) >>> 0, `from ${start}`);
    assert.equal(log[0].offset, 0, 'the version is the first thing written');
    assert.equal(log.at(-1)!.offset, 0, 'and the last');
    assert.ok(log.length >= 3);
  }
});

test('writeVcpuTime: an odd starting version ends even', () => {
  for (const start of [1, 7, 0xffff_ffff]) {
    const bytes = new Uint8Array(32);
    new DataView(bytes.buffer).setUint32(0, start, true);
    const { area, log } = recording(bytes);
    writeVcpuTime(area, 0, P, true);
    const final = u32(bytes, 0);
    assert.equal(final % 2, 0, `from ${start}: ${final}`);
    assert.notEqual(final, start);
    for (let i = 0; i < log.length - 1; i++) assert.equal(u32(log[i].after, 0) % 2, 1);
  }
});

test('writeVcpuTime: at an offset (a vcpu_info in shared_info), nothing else changes', () => {
  const page = new Uint8Array(4096).fill(0x11);
  const at = sharedInfoLayout.native.vcpuInfo(3) + VCPU_INFO_TIME_OFFSET;
  new DataView(page.buffer).setUint32(at, 4, true);
  writeVcpuTime(bytesArea(page), at, P, true);
  assert.equal(u32(page, at), 6);
  assert.equal(u64(page, at + 8), P.tscTimestamp);
  const changed = [...page.keys()].filter((i) => page[i] !== 0x11);
  assert.ok(changed.every((i) => i >= at && i < at + 32), 'only the record changed');
});

test('writeVcpuTime: negative times and shifts are stored as their two\'s complement', () => {
  const bytes = new Uint8Array(32);
  writeVcpuTime(bytesArea(bytes), 0, { tscTimestamp: -1n, systemTime: -2n, mul: -1, shift: 4 }, true);
  assert.equal(u64(bytes, 8), 0xffff_ffff_ffff_ffffn);
  assert.equal(u64(bytes, 16), 0xffff_ffff_ffff_fffen);
  assert.equal(u32(bytes, 24), 0xffff_ffff);
  assert.equal(bytes[28], 4);
});

test('writeVcpuTime: an area that can no longer be read is left alone', () => {
  let writes = 0;
  writeVcpuTime({ read: () => undefined, write: () => void writes++ }, 0, P, true);
  assert.equal(writes, 0);
});

const WALL = 1_700_000_123_456_789_012n; // 2023-11-14, sec 1700000123, nsec 456789012

test('writeWallclock: native offsets', () => {
  const l = sharedInfoLayout.native;
  assert.deepEqual([l.wcVersion, l.wcSec, l.wcNsec, l.wcSecHi], [3072, 3076, 3080, 3084]);
  const page = new Uint8Array(4096).fill(0x33);
  new DataView(page.buffer).setUint32(l.wcVersion, 8, true);
  writeWallclock(page, 'native', WALL);
  assert.equal(u32(page, l.wcVersion), 10);
  assert.equal(u32(page, l.wcSec), 1_700_000_123);
  assert.equal(u32(page, l.wcNsec), 456_789_012);
  assert.equal(u32(page, l.wcSecHi), 0);
  const changed = [...page.keys()].filter((i) => page[i] !== 0x33);
  assert.ok(changed.every((i) => i >= l.wcVersion && i < l.wcSecHi + 4), `only the wallclock changed: ${changed}`);
});

test('writeWallclock: compat offsets, wc_sec_hi in arch_shared_info', () => {
  const l = sharedInfoLayout.compat;
  assert.deepEqual([l.wcVersion, l.wcSec, l.wcNsec, l.wcSecHi], [2304, 2308, 2312, 2340]);
  const page = new Uint8Array(4096).fill(0x33);
  new DataView(page.buffer).setUint32(l.wcVersion, 0, true);
  writeWallclock(page, 'compat', WALL);
  assert.equal(u32(page, l.wcVersion), 2);
  assert.equal(u32(page, l.wcSec), 1_700_000_123);
  assert.equal(u32(page, l.wcNsec), 456_789_012);
  assert.equal(u32(page, l.wcSecHi), 0);
  const changed = new Set([...page.keys()].filter((i) => page[i] !== 0x33));
  for (const i of changed) {
    assert.ok((i >= l.wcVersion && i < l.wcNsec + 4) || (i >= l.wcSecHi && i < l.wcSecHi + 4), `byte ${i} changed`);
  }
  // The native wallclock is not written.
  assert.ok(page.subarray(3072, 3088).every((b) => b === 0x33));
});

test('writeWallclock: wc_sec_hi holds the seconds above 32 bits (times past 2106)', () => {
  const sec = (1n << 32n) + 5n; // Feb 2106 + 5 s
  for (const abi of ['native', 'compat'] as const) {
    const l = sharedInfoLayout[abi];
    const page = new Uint8Array(4096);
    writeWallclock(page, abi, sec * 1_000_000_000n + 7n);
    assert.equal(u32(page, l.wcSec), 5);
    assert.equal(u32(page, l.wcSecHi), 1);
    assert.equal(u32(page, l.wcNsec), 7);
    const far = 0x1234_5678_9an;
    writeWallclock(page, abi, far * 1_000_000_000n);
    assert.equal(u32(page, l.wcSec), 0x3456_789a);
    assert.equal(u32(page, l.wcSecHi), 0x12);
    assert.equal(u32(page, l.wcVersion), 4);
  }
});

test('writeWallclock: an odd version ends even; works on a view into a larger buffer', () => {
  const backing = new Uint8Array(3 * 4096);
  const page = backing.subarray(4096, 8192);
  const l = sharedInfoLayout.native;
  new DataView(page.buffer, page.byteOffset).setUint32(l.wcVersion, 5, true);
  writeWallclock(page, 'native', WALL);
  assert.equal(u32(page, l.wcVersion) % 2, 0);
  assert.ok(u32(page, l.wcVersion) > 5);
  assert.equal(u32(page, l.wcSec), 1_700_000_123);
  assert.ok(backing.subarray(0, 4096).every((b) => b === 0) && backing.subarray(8192).every((b) => b === 0));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, GuestMemoryError, OverlayPlacement, PAGE_SIZE } from './guest-memory.js';
import { MemoryMap, type MemslotSink } from './memory-map.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const LOW_END = MiB;
const HIGH = 4 * GiB;
const HIGH_END = HIGH + 64 * KiB;

function create(t: { after(fn: () => void): void }): GuestMemory {
  const mem = GuestMemory.create([{ gpa: 0, size: MiB }, { gpa: HIGH, size: 64 * KiB }], 4);
  t.after(() => mem.dispose());
  return mem;
}

const pattern = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

test('create lays the regions out back to back in the RAM memfd', (t) => {
  const mem = create(t);
  assert.deepEqual(mem.regions, [
    { gpa: 0, size: MiB, offset: 0 },
    { gpa: HIGH, size: 64 * KiB, offset: MiB },
  ]);
  assert.equal(mem.ram.handle.size, MiB + 64 * KiB);
  assert.equal(mem.overlays.handle.size, 4 * PAGE_SIZE);
  assert.equal(mem.overlayPageCount, 4);
  assert.deepEqual([...mem.placement.frames], [-1, -1, -1, -1]);
});

test('create refuses ranges that are not page-aligned or empty', () => {
  assert.throws(() => GuestMemory.create([{ gpa: 0x800, size: PAGE_SIZE }], 1), /not page-aligned/);
  assert.throws(() => GuestMemory.create([{ gpa: 0, size: 100 }], 1), /not page-aligned/);
  assert.throws(() => GuestMemory.create([{ gpa: 0, size: 0 }], 1), /not page-aligned/);
});

test('new memory reads as zero', (t) => {
  const mem = create(t);
  assert.equal(mem.readU64(0), 0n);
  assert.equal(mem.readU64(HIGH_END - 8), 0n);
  assert.deepEqual(mem.read(LOW_END - 16, 16), new Uint8Array(16));
});

test('typed reads and writes round trip, little-endian', (t) => {
  const mem = create(t);
  mem.writeU8(0x100, 0xab);
  mem.writeU16(0x200, 0xbeef);
  mem.writeU32(0x300, 0xdeadbeef);
  mem.writeU64(0x400, 0x0102030405060708n);
  mem.writeU64(HIGH + 0x10, 0xffff_ffff_ffff_fffen);
  assert.equal(mem.readU8(0x100), 0xab);
  assert.equal(mem.readU16(0x200), 0xbeef);
  assert.equal(mem.readU32(0x300), 0xdeadbeef);
  assert.equal(mem.readU64(0x400), 0x0102030405060708n);
  assert.equal(mem.readU64(HIGH + 0x10), 0xffff_ffff_ffff_fffen);
  assert.deepEqual([...mem.read(0x200, 2)], [0xef, 0xbe]);
  assert.deepEqual([...mem.read(0x400, 8)], [8, 7, 6, 5, 4, 3, 2, 1]);
  // Masking on narrow writes.
  mem.writeU8(0x101, 0x1ff);
  assert.equal(mem.readU8(0x101), 0xff);
  assert.equal(mem.readU8(0x102), 0);
});

test('read, write and fill of byte ranges', (t) => {
  const mem = create(t);
  const p = pattern(100);
  mem.write(0x5000, p);
  assert.deepEqual(mem.read(0x5000, 100), p);
  mem.fill(0x5010, 10, 0xcc);
  const q = mem.read(0x5000, 100);
  assert.deepEqual(q.subarray(0, 16), p.subarray(0, 16));
  assert.deepEqual([...q.subarray(16, 26)], new Array(10).fill(0xcc));
  assert.deepEqual(q.subarray(26), p.subarray(26));
  mem.fill(0x5000, 4);
  assert.equal(mem.readU32(0x5000), 0);
  // A read returns a copy.
  const r = mem.read(0x5000, 4);
  r[0] = 1;
  assert.equal(mem.readU8(0x5000), 0);
  // Zero length is fine anywhere.
  assert.equal(mem.read(2 * GiB, 0).length, 0);
  mem.write(2 * GiB, new Uint8Array(0));
});

test('typed access crossing a page boundary', (t) => {
  const mem = create(t);
  mem.writeU32(0xffe, 0x44332211);
  assert.deepEqual([...mem.read(0xffc, 8)], [0, 0, 0x11, 0x22, 0x33, 0x44, 0, 0]);
  assert.equal(mem.readU32(0xffe), 0x44332211);
  mem.writeU64(0x1ffd, 0x8877665544332211n);
  assert.equal(mem.readU64(0x1ffd), 0x8877665544332211n);
  assert.equal(mem.readU16(0x1fff), 0x4433);
  mem.writeU16(HIGH + 0xfff, 0xabcd);
  assert.equal(mem.readU16(HIGH + 0xfff), 0xabcd);
});

test('byte ranges crossing several pages', (t) => {
  const mem = create(t);
  const p = pattern(3 * PAGE_SIZE + 10, 3);
  mem.write(0x2ffb, p);
  assert.deepEqual(mem.read(0x2ffb, p.length), p);
  assert.deepEqual(mem.read(0x3000, 5), p.subarray(5, 10));
});

test('access across the RAM hole throws GuestMemoryError and writes nothing', (t) => {
  const mem = create(t);
  const before = pattern(16, 9);
  mem.write(LOW_END - 16, before);

  const err = (gpa: number, length: number) => (e: unknown) => {
    assert.ok(e instanceof GuestMemoryError, String(e));
    assert.equal(e.name, 'GuestMemoryError');
    assert.equal(e.gpa, gpa);
    assert.equal(e.length, length);
    assert.match(e.message, new RegExp(`0x${gpa.toString(16)}\\+${length}`));
    return true;
  };
  assert.throws(() => mem.write(LOW_END - 8, pattern(16)), err(LOW_END - 8, 16));
  assert.throws(() => mem.writeU32(LOW_END - 2, 0xffffffff), GuestMemoryError);
  assert.throws(() => mem.writeU64(LOW_END - 4, 0xffff_ffff_ffff_ffffn), GuestMemoryError);
  assert.throws(() => mem.writeU16(LOW_END - 1, 0xffff), GuestMemoryError);
  assert.throws(() => mem.fill(LOW_END - 4, 8, 0xff), GuestMemoryError);
  assert.deepEqual(mem.read(LOW_END - 16, 16), before);

  assert.throws(() => mem.read(LOW_END - 4, 8), err(LOW_END - 4, 8));
  assert.throws(() => mem.readU32(LOW_END - 2), GuestMemoryError);
  assert.throws(() => mem.readU8(LOW_END), GuestMemoryError);
  assert.throws(() => mem.readU64(2 * GiB), GuestMemoryError);
  assert.throws(() => mem.writeU8(3 * GiB, 1), GuestMemoryError);
  assert.throws(() => mem.readU8(HIGH - 1), GuestMemoryError);
});

test('a long write that would span into the hole writes none of its earlier pages', (t) => {
  const mem = create(t);
  assert.throws(() => mem.write(LOW_END - 3 * PAGE_SIZE, new Uint8Array(3 * PAGE_SIZE + 1).fill(0x77)), GuestMemoryError);
  assert.deepEqual(mem.read(LOW_END - 3 * PAGE_SIZE, 3 * PAGE_SIZE), new Uint8Array(3 * PAGE_SIZE));
});

test('access past the end of RAM throws and writes nothing', (t) => {
  const mem = create(t);
  mem.writeU32(HIGH_END - 4, 0x01020304);
  assert.throws(() => mem.writeU64(HIGH_END - 4, 0xffff_ffff_ffff_ffffn), GuestMemoryError);
  assert.throws(() => mem.write(HIGH_END - 4, pattern(5)), GuestMemoryError);
  assert.throws(() => mem.fill(HIGH_END - 2, 4, 0xee), GuestMemoryError);
  assert.equal(mem.readU32(HIGH_END - 4), 0x01020304);
  assert.throws(() => mem.readU64(HIGH_END - 4), GuestMemoryError);
  assert.throws(() => mem.read(HIGH_END, 1), GuestMemoryError);
  assert.throws(() => mem.readU8(Number.MAX_SAFE_INTEGER), GuestMemoryError);
});

test('bad addresses and lengths throw GuestMemoryError', (t) => {
  const mem = create(t);
  assert.throws(() => mem.readU8(-1), GuestMemoryError);
  assert.throws(() => mem.read(-4, 8), GuestMemoryError);
  assert.throws(() => mem.readU32(0.5), GuestMemoryError);
  assert.throws(() => mem.fill(0, -1), GuestMemoryError);
  assert.throws(() => mem.fill(0, Number.NaN), GuestMemoryError);
  assert.equal(mem.isBacked(0, -1), false);
});

test('read with a bad length throws GuestMemoryError', (t) => {
  const mem = create(t);
  assert.throws(() => mem.read(0, -1), GuestMemoryError);
  assert.throws(() => mem.read(0, 1.5), GuestMemoryError);
});

test('isBacked', (t) => {
  const mem = create(t);
  assert.equal(mem.isBacked(0), true);
  assert.equal(mem.isBacked(0, MiB), true);
  assert.equal(mem.isBacked(0, MiB + 1), false);
  assert.equal(mem.isBacked(LOW_END), false);
  assert.equal(mem.isBacked(HIGH, 64 * KiB), true);
  assert.equal(mem.isBacked(HIGH_END - 1, 2), false);
  assert.equal(mem.isBacked(-1), false);
  mem.placement.place(0, LOW_END / PAGE_SIZE);
  assert.equal(mem.isBacked(0, MiB + PAGE_SIZE), true);
  assert.equal(mem.isBacked(0, MiB + PAGE_SIZE + 1), false);
});

test('an overlay page shadows RAM at its frame and overlayPage(i) sees the same bytes', (t) => {
  const mem = create(t);
  mem.writeU32(0x7000, 0x11111111);
  mem.writeU32(0x7ffc, 0x22222222);
  mem.placement.place(2, 7);
  assert.equal(mem.readU32(0x7000), 0, 'overlay content, not RAM');
  mem.writeU32(0x7000, 0xcafef00d);
  mem.write(0x7ff0, pattern(16));
  const page = mem.overlayPage(2);
  assert.equal(page.length, PAGE_SIZE);
  assert.deepEqual([...page.subarray(0, 4)], [0x0d, 0xf0, 0xfe, 0xca]);
  assert.deepEqual(page.subarray(0xff0), pattern(16));
  page[0x100] = 0x5a;
  assert.equal(mem.readU8(0x7100), 0x5a);
  // The other overlay pages are untouched.
  assert.deepEqual(mem.overlayPage(1), new Uint8Array(PAGE_SIZE));
  assert.deepEqual(mem.overlayPage(3), new Uint8Array(PAGE_SIZE));
  // Removing it shows RAM again, unchanged.
  mem.placement.remove(2);
  assert.equal(mem.readU32(0x7000), 0x11111111);
  assert.equal(mem.readU32(0x7ffc), 0x22222222);
  assert.equal(mem.overlayPage(2)[0x100], 0x5a, 'the overlay keeps its content while unmapped');
});

test('an overlay page outside RAM makes that frame backed', (t) => {
  const mem = create(t);
  const gfn = (2 * GiB) / PAGE_SIZE;
  assert.equal(mem.isBacked(2 * GiB), false);
  mem.placement.place(3, gfn);
  mem.writeU64(2 * GiB + 8, 42n);
  assert.equal(mem.readU64(2 * GiB + 8), 42n);
  assert.equal(new DataView(mem.overlayPage(3).buffer, mem.overlayPage(3).byteOffset).getBigUint64(8, true), 42n);
  assert.throws(() => mem.readU8(2 * GiB + PAGE_SIZE), GuestMemoryError);
  assert.throws(() => mem.readU8(2 * GiB - 1), GuestMemoryError);
});

test('byte ranges crossing from RAM into an overlay page use both', (t) => {
  const mem = create(t);
  mem.placement.place(0, 9);
  mem.write(0x8ffe, Uint8Array.of(1, 2, 3, 4));
  assert.deepEqual([...mem.read(0x8ffc, 8)], [0, 0, 1, 2, 3, 4, 0, 0]);
  assert.deepEqual([...mem.overlayPage(0).subarray(0, 2)], [3, 4]);
  mem.placement.remove(0);
  assert.deepEqual([...mem.read(0x8ffe, 4)], [1, 2, 0, 0], 'RAM behind the overlay was not written');
});

test('typed access crossing from RAM into an overlay page uses the overlay', (t) => {
  const mem = create(t);
  mem.placement.place(0, 9);
  mem.writeU32(0x8ffe, 0x04030201);
  assert.deepEqual([...mem.overlayPage(0).subarray(0, 2)], [3, 4]);
  assert.equal(mem.readU32(0x8ffe), 0x04030201);
  mem.placement.remove(0);
  assert.deepEqual([...mem.read(0x8ffe, 4)], [1, 2, 0, 0], 'RAM behind the overlay was not written');
});

test('typed access crossing out of an overlay page uses the next frame', (t) => {
  const mem = create(t);
  mem.placement.place(0, 9);
  mem.writeU32(0x9ffe, 0x04030201);
  assert.deepEqual([...mem.overlayPage(0).subarray(0xffe)], [1, 2]);
  assert.deepEqual([...mem.overlayPage(1).subarray(0, 2)], [0, 0], 'the next overlay page in the pool was not touched');
  assert.deepEqual([...mem.read(0xa000, 2)], [3, 4], 'RAM at the next frame');
  assert.equal(mem.readU32(0x9ffe), 0x04030201);
});

test('typed access crossing out of the last overlay page into a hole throws GuestMemoryError', (t) => {
  const mem = create(t);
  mem.placement.place(3, (2 * GiB) / PAGE_SIZE);
  assert.throws(() => mem.readU32(2 * GiB + PAGE_SIZE - 2), GuestMemoryError);
  assert.throws(() => mem.writeU32(2 * GiB + PAGE_SIZE - 2, 1), GuestMemoryError);
});

test('an overlay page placed through MemoryMap shadows RAM', (t) => {
  const mem = create(t);
  const sink: MemslotSink = { setUserMemoryRegion: () => {} };
  const map = new MemoryMap(sink, mem, 32);
  mem.writeU16(0x3000, 0x1234);
  map.mapOverlay(1, 3);
  mem.writeU16(0x3000, 0x5678);
  assert.equal(mem.overlayPage(1)[0], 0x78);
  map.mapOverlay(1, HIGH / PAGE_SIZE + 2);
  assert.equal(mem.readU16(0x3000), 0x1234);
  assert.equal(mem.readU16(HIGH + 2 * PAGE_SIZE), 0x5678);
  map.unmapOverlay(1);
  assert.equal(mem.readU16(HIGH + 2 * PAGE_SIZE), 0);
});

test('OverlayPlacement: place, move, displace and remove, seen from another thread\'s view of the same buffers', () => {
  const p = OverlayPlacement.create(3);
  assert.equal(p.pageAt(5), -1);
  p.place(1, 5);
  assert.equal(p.pageAt(5), 1);
  const q = new OverlayPlacement(p.handle);
  assert.equal(q.pageAt(5), 1, 'the same shared buffers');
  p.place(1, 6);
  assert.deepEqual([q.pageAt(5), q.pageAt(6), q.frameOf(1)], [-1, 1, 6], 'moved');
  p.place(2, 6);
  assert.deepEqual([q.pageAt(6), q.frameOf(1), q.frameOf(2)], [2, undefined, 6], 'a page placed on another takes its frame');
  p.remove(2);
  assert.deepEqual([q.pageAt(6), q.frameOf(2)], [-1, undefined]);
  for (const bad of [-1, 0.5, 2 ** 31, Number.NaN]) assert.equal(p.pageAt(bad), -1);
  assert.throws(() => p.place(0, -1), RangeError);
});

test('OverlayPlacement: random placements over colliding frames agree with a plain map at every step', () => {
  const pages = 40;
  const p = OverlayPlacement.create(pages);
  const model = new Map<number, number>(); // gfn -> page
  let seed = 12345;
  const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  // Runs of consecutive frames and multiples of the table size, as grant tables and hash collisions give.
  const frames = [...Array.from({ length: 48 }, (_, i) => 0xf0000 + i), ...Array.from({ length: 24 }, (_, i) => i * 128)];
  for (let step = 0; step < 20000; step++) {
    const page = rand(pages);
    if (rand(4) === 0) {
      for (const [g, pg] of model) if (pg === page) model.delete(g);
      p.remove(page);
    } else {
      const gfn = frames[rand(frames.length)];
      for (const [g, pg] of model) if (pg === page) model.delete(g);
      model.set(gfn, page);
      p.place(page, gfn);
    }
    if (step % 97 === 0 || step > 19900) {
      for (const gfn of frames) assert.equal(p.pageAt(gfn), model.get(gfn) ?? -1, `frame ${gfn} at step ${step}`);
      for (let pg = 0; pg < pages; pg++) {
        const gfn = p.frameOf(pg);
        assert.equal(gfn === undefined ? undefined : model.get(gfn), gfn === undefined ? undefined : pg);
      }
    }
  }
});

test('walkerView: aligned backed words, undefined for unbacked or unaligned', (t) => {
  const mem = create(t);
  const w = mem.walkerView;
  mem.writeU64(0x1000, 0x1122334455667788n);
  assert.equal(w.readU32(0x1000), 0x55667788);
  assert.equal(w.readU32(0x1004), 0x11223344);
  assert.equal(w.readU32(0x1002), undefined, 'unaligned');
  assert.equal(w.readU32(LOW_END), undefined);
  assert.equal(w.readU32(2 * GiB), undefined);
  assert.equal(w.readU32(HIGH_END - 4), 0);
  assert.equal(w.readU32(HIGH_END), undefined);
  assert.equal(w.readU32(-4), undefined);
  assert.equal(w.readU32(2 ** 53), undefined, 'beyond a safe integer');
});

test('walkerView: writes only when backed and aligned', (t) => {
  const mem = create(t);
  const w = mem.walkerView;
  mem.writeU64(0x2000, 0xffn);
  assert.equal(w.writeU32!(0x2008, 0x12345678), true);
  assert.equal(mem.readU32(0x2008), 0x12345678);
  assert.equal(w.writeU32!(HIGH + 0x10, 0xfedcba98), true, 'RAM above 4 GiB');
  assert.equal(mem.readU32(HIGH + 0x10), 0xfedcba98);
  assert.equal(w.writeU32!(3 * GiB, 1), false);
  assert.equal(w.writeU32!(0x2001, 1), false);
  assert.equal(mem.readU64(0x2000), 0xffn, 'unaligned writes changed nothing');
});

test('walkerView sees overlay pages', (t) => {
  const mem = create(t);
  const w = mem.walkerView;
  mem.placement.place(0, (2 * GiB) / PAGE_SIZE);
  assert.equal(w.writeU32!(2 * GiB + 0x18, 7), true);
  assert.equal(w.readU32(2 * GiB + 0x18), 7);
  assert.equal(mem.overlayPage(0)[0x18], 7);
});

test('attach maps the same memory in this thread', (t) => {
  const mem = create(t);
  const other = GuestMemory.attach(mem.handle);
  t.after(() => other.dispose());
  assert.deepEqual(other.regions, mem.regions);
  assert.notEqual(other.ram.hostAddress, mem.ram.hostAddress, 'a second mapping');
  mem.writeU32(0x4000, 0xa1b2c3d4);
  assert.equal(other.readU32(0x4000), 0xa1b2c3d4);
  other.writeU64(HIGH + 0x20, 99n);
  assert.equal(mem.readU64(HIGH + 0x20), 99n);
  // Overlay pages and their placement are shared too.
  mem.placement.place(1, 0x50);
  other.writeU32(0x50000, 0x600d);
  assert.equal(mem.overlayPage(1)[0], 0x0d);
  assert.equal(other.placement.pageAt(0x50), 1);
});

test('handle is a copy that attach accepts', (t) => {
  const mem = create(t);
  const h = mem.handle;
  assert.deepEqual(h.regions, mem.regions);
  assert.notEqual(h.regions, mem.regions);
  assert.equal(h.placement, mem.placement.handle);
  assert.equal(h.ram.size, MiB + 64 * KiB);
});

test('dispose is idempotent', () => {
  const mem = GuestMemory.create([{ gpa: 0, size: 64 * KiB }], 1);
  const other = GuestMemory.attach(mem.handle);
  other.dispose();
  other.dispose();
  mem.dispose();
  mem.dispose();
});

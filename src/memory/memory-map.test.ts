import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, PAGE_SIZE, type RamRegion } from './guest-memory.js';
import { FakeKvm } from './fake-kvm.js';
import { MAX_OVERLAY_GFN, MemoryMap, OverlayPlacementError, planSlots, type SlotSpec } from './memory-map.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const REGIONS: RamRegion[] = [
  { gpa: 0, size: 1 * MiB, offset: 0 },
  { gpa: 4 * GiB, size: 64 * KiB, offset: 1 * MiB },
];

/** Checks a plan: sorted, page-granular, no overlaps, exactly RAM minus overlay frames plus the overlay pages. */
function checkPlan(regions: readonly RamRegion[], overlays: ReadonlyMap<number, number>, slots: SlotSpec[]): void {
  for (let i = 1; i < slots.length; i++) {
    assert.ok(slots[i - 1].gpa + slots[i - 1].size <= slots[i].gpa, `slots ${i - 1} and ${i} overlap or are unsorted`);
  }
  let ramBytes = 0;
  const seenOverlays = new Set<number>();
  for (const s of slots) {
    assert.ok(s.size > 0, 'empty slot');
    assert.equal(s.gpa % PAGE_SIZE, 0);
    assert.equal(s.size % PAGE_SIZE, 0);
    if (s.backing.kind === 'overlay') {
      assert.equal(s.size, PAGE_SIZE);
      assert.equal(overlays.get(s.gpa / PAGE_SIZE), s.backing.page);
      seenOverlays.add(s.gpa / PAGE_SIZE);
    } else {
      const r = regions.find((r) => s.gpa >= r.gpa && s.gpa + s.size <= r.gpa + r.size);
      assert.ok(r, `RAM slot 0x${s.gpa.toString(16)}+0x${s.size.toString(16)} is outside every region`);
      assert.equal(s.backing.offset, r.offset + s.gpa - r.gpa, 'memfd offset');
      for (const gfn of overlays.keys()) {
        const gpa = gfn * PAGE_SIZE;
        assert.ok(gpa < s.gpa || gpa >= s.gpa + s.size, `RAM slot covers overlay frame 0x${gfn.toString(16)}`);
      }
      ramBytes += s.size;
    }
  }
  assert.equal(seenOverlays.size, overlays.size, 'every overlay has a slot');
  const shadowed = [...overlays.keys()].filter((gfn) => regions.some((r) => gfn * PAGE_SIZE >= r.gpa && gfn * PAGE_SIZE < r.gpa + r.size)).length;
  assert.equal(ramBytes, regions.reduce((n, r) => n + r.size, 0) - shadowed * PAGE_SIZE, 'RAM covered exactly');
}

const ram = (gpa: number, size: number, offset: number): SlotSpec => ({ gpa, size, backing: { kind: 'ram', offset } });
const ovl = (gfn: number, page: number): SlotSpec => ({ gpa: gfn * PAGE_SIZE, size: PAGE_SIZE, backing: { kind: 'overlay', page } });

test('planSlots: no overlays gives one slot per region', () => {
  const slots = planSlots(REGIONS, new Map());
  assert.deepEqual(slots, [ram(0, MiB, 0), ram(4 * GiB, 64 * KiB, MiB)]);
  checkPlan(REGIONS, new Map(), slots);
});

test('planSlots: an overlay in the middle of a region splits it', () => {
  const overlays = new Map([[0x80, 2]]);
  const slots = planSlots(REGIONS, overlays);
  assert.deepEqual(slots, [
    ram(0, 0x80000, 0),
    ovl(0x80, 2),
    ram(0x81000, MiB - 0x81000, 0x81000),
    ram(4 * GiB, 64 * KiB, MiB),
  ]);
  checkPlan(REGIONS, overlays, slots);
});

test('planSlots: overlays at the first and last page of a region', () => {
  const overlays = new Map([[0, 0], [0xff, 1]]);
  const slots = planSlots(REGIONS, overlays);
  assert.deepEqual(slots, [ovl(0, 0), ram(0x1000, MiB - 0x2000, 0x1000), ovl(0xff, 1), ram(4 * GiB, 64 * KiB, MiB)]);
  checkPlan(REGIONS, overlays, slots);
});

test('planSlots: two adjacent overlays leave no empty RAM slot between them', () => {
  const overlays = new Map([[0x11, 1], [0x10, 0]]);
  const slots = planSlots(REGIONS, overlays);
  assert.deepEqual(slots, [ram(0, 0x10000, 0), ovl(0x10, 0), ovl(0x11, 1), ram(0x12000, MiB - 0x12000, 0x12000), ram(4 * GiB, 64 * KiB, MiB)]);
  checkPlan(REGIONS, overlays, slots);
});

test('planSlots: an overlay outside any RAM region adds a slot and leaves RAM whole', () => {
  const gfn = 0xfeff0; // just below the IOAPIC, in the MMIO hole
  const overlays = new Map([[gfn, 3]]);
  const slots = planSlots(REGIONS, overlays);
  assert.deepEqual(slots, [ram(0, MiB, 0), ovl(gfn, 3), ram(4 * GiB, 64 * KiB, MiB)]);
  checkPlan(REGIONS, overlays, slots);
});

test('planSlots: overlays in a region above 4 GiB use that region\'s memfd offset', () => {
  const first = (4 * GiB) / PAGE_SIZE;
  const overlays = new Map([[first + 3, 0], [first + 15, 1], [0x40, 2]]);
  const slots = planSlots(REGIONS, overlays);
  assert.deepEqual(slots, [
    ram(0, 0x40000, 0),
    ovl(0x40, 2),
    ram(0x41000, MiB - 0x41000, 0x41000),
    ram(4 * GiB, 3 * PAGE_SIZE, MiB),
    ovl(first + 3, 0),
    ram(4 * GiB + 4 * PAGE_SIZE, 11 * PAGE_SIZE, MiB + 4 * PAGE_SIZE),
    ovl(first + 15, 1),
  ]);
  checkPlan(REGIONS, overlays, slots);
});

test('planSlots: a region wholly covered by overlays has no RAM slot', () => {
  const regions: RamRegion[] = [{ gpa: 0x10000, size: 2 * PAGE_SIZE, offset: 0 }];
  const overlays = new Map([[0x10, 0], [0x11, 1]]);
  const slots = planSlots(regions, overlays);
  assert.deepEqual(slots, [ovl(0x10, 0), ovl(0x11, 1)]);
  checkPlan(regions, overlays, slots);
});

test('planSlots: many overlays scattered over several regions', () => {
  const regions: RamRegion[] = [
    { gpa: 0, size: 0xa0000, offset: 0 },
    { gpa: 0x100000, size: 0x300000, offset: 0xa0000 },
    { gpa: 4 * GiB, size: 0x200000, offset: 0x3a0000 },
  ];
  const overlays = new Map<number, number>();
  const frames = [0, 1, 0x9f, 0xa0, 0xc0, 0x100, 0x150, 0x151, 0x3ff, 0x400, 0x100000, 0x1001ff, 0x100200, 0x200000];
  frames.forEach((f, i) => overlays.set(f, i));
  checkPlan(regions, overlays, planSlots(regions, overlays));
});

// ---- MemoryMap -----------------------------------------------------------

function setup(t: { after(fn: () => void): void }, maxSlots = 32) {
  const mem = GuestMemory.create([{ gpa: 0, size: MiB }, { gpa: 4 * GiB, size: 64 * KiB }], 4);
  t.after(() => mem.dispose());
  const kvm = new FakeKvm();
  const map = new MemoryMap(kvm, mem, maxSlots);
  return { mem, kvm, map };
}

/** Overlay pages mapped by live slots, by page index. */
function overlayMappings(mem: GuestMemory, kvm: FakeKvm): Map<number, number[]> {
  const out = new Map<number, number[]>();
  const base = mem.overlays.hostAddress;
  for (const s of kvm.live.values()) {
    if (s.host >= base && s.host < base + BigInt(mem.overlayPageCount * PAGE_SIZE)) {
      assert.equal(s.size, PAGE_SIZE);
      const page = Number(s.host - base) / PAGE_SIZE;
      out.set(page, [...(out.get(page) ?? []), s.gpa / PAGE_SIZE]);
    }
  }
  return out;
}

/** The live slots are exactly RAM minus overlay frames plus the overlays, each at the right host address. */
function checkLive(mem: GuestMemory, kvm: FakeKvm, map: MemoryMap, expected: Map<number, number>): void {
  const overlays = new Map<number, number>(); // gfn -> page
  for (const [page, gfn] of expected) overlays.set(gfn, page);
  const slots: SlotSpec[] = [...kvm.live.values()]
    .sort((a, b) => a.gpa - b.gpa)
    .map((s): SlotSpec => {
      const ovBase = mem.overlays.hostAddress;
      if (s.host >= ovBase && s.host < ovBase + BigInt(mem.overlayPageCount * PAGE_SIZE)) {
        return { gpa: s.gpa, size: s.size, backing: { kind: 'overlay', page: Number(s.host - ovBase) / PAGE_SIZE } };
      }
      const off = s.host - mem.ram.hostAddress;
      assert.ok(off >= 0n && off + BigInt(s.size) <= BigInt(mem.ram.handle.size), 'RAM slot host address outside the RAM mapping');
      return { gpa: s.gpa, size: s.size, backing: { kind: 'ram', offset: Number(off) } };
    });
  checkPlan(mem.regions, overlays, slots);
  const mappings = overlayMappings(mem, kvm);
  for (const [page, gfn] of expected) assert.deepEqual(mappings.get(page), [gfn], `overlay page ${page}`);
  assert.equal(mappings.size, expected.size);
  // The map's own view agrees with KVM's.
  assert.deepEqual(map.layout, [...kvm.live].map(([slot, s]) => ({ slot, ...s })).sort((a, b) => a.gpa - b.gpa));
}

test('MemoryMap: initial slots are the RAM regions', (t) => {
  const { mem, kvm, map } = setup(t);
  assert.equal(kvm.calls.length, 2);
  checkLive(mem, kvm, map, new Map());
  assert.deepEqual(
    map.layout.map((s) => ({ gpa: s.gpa, size: s.size, host: s.host })),
    [
      { gpa: 0, size: MiB, host: mem.ram.hostAddress },
      { gpa: 4 * GiB, size: 64 * KiB, host: mem.ram.hostAddress + BigInt(MiB) },
    ],
  );
});

test('MemoryMap: map, move, move again, unmap', (t) => {
  const { mem, kvm, map } = setup(t);
  const initial = map.layout;
  // At every step inside an update, no overlay is mapped twice.
  kvm.onCall = () => {
    for (const [page, gfns] of overlayMappings(mem, kvm)) assert.ok(gfns.length <= 1, `overlay page ${page} mapped at ${gfns}`);
  };

  map.mapOverlay(1, 0x80);
  assert.equal(map.overlayFrame(1), 0x80);
  assert.equal(mem.placement.frames[1], 0x80);
  checkLive(mem, kvm, map, new Map([[1, 0x80]]));

  // Move within the same region.
  map.mapOverlay(1, 0x90);
  assert.equal(map.overlayFrame(1), 0x90);
  checkLive(mem, kvm, map, new Map([[1, 0x90]]));

  // Move to the region above 4 GiB: low RAM is whole again.
  const high = (4 * GiB) / PAGE_SIZE + 5;
  map.mapOverlay(1, high);
  checkLive(mem, kvm, map, new Map([[1, high]]));
  assert.deepEqual(map.layout.find((s) => s.gpa === 0), initial.find((s) => s.gpa === 0));

  // A second overlay, outside RAM.
  map.mapOverlay(3, 0xfeff0);
  checkLive(mem, kvm, map, new Map([[1, high], [3, 0xfeff0]]));

  map.unmapOverlay(1);
  assert.equal(map.overlayFrame(1), undefined);
  checkLive(mem, kvm, map, new Map([[3, 0xfeff0]]));
  map.unmapOverlay(3);
  checkLive(mem, kvm, map, new Map());
  assert.deepEqual(map.layout.map(({ gpa, size, host }) => ({ gpa, size, host })), initial.map(({ gpa, size, host }) => ({ gpa, size, host })));
});

test('MemoryMap: mapping an overlay where it already is changes nothing', (t) => {
  const { kvm, map } = setup(t);
  map.mapOverlay(0, 0x20);
  const n = kvm.calls.length;
  map.mapOverlay(0, 0x20);
  assert.equal(kvm.calls.length, n);
});

test('MemoryMap: unmapping an unmapped overlay changes nothing', (t) => {
  const { kvm, map } = setup(t);
  const n = kvm.calls.length;
  map.unmapOverlay(2);
  assert.equal(kvm.calls.length, n);
});

test('MemoryMap: untouched slots stay, only the affected region changes', (t) => {
  const { kvm, map } = setup(t);
  const highSlot = map.layout.find((s) => s.gpa === 4 * GiB)!;
  const n = kvm.calls.length;
  map.mapOverlay(0, 0x10);
  // Delete the low RAM slot, add two RAM pieces and the overlay.
  assert.equal(kvm.calls.length - n, 4);
  assert.ok(kvm.calls.slice(n).every((c) => c.slot !== highSlot.slot));
  assert.equal(kvm.calls[n].size, 0);
});

test('MemoryMap: adjacent overlays and moving one next to the other', (t) => {
  const { mem, kvm, map } = setup(t);
  map.mapOverlay(0, 0x10);
  map.mapOverlay(1, 0x11);
  checkLive(mem, kvm, map, new Map([[0, 0x10], [1, 0x11]]));
  map.mapOverlay(0, 0x12);
  checkLive(mem, kvm, map, new Map([[0, 0x12], [1, 0x11]]));
  map.mapOverlay(2, 0x10);
  map.mapOverlay(3, 0);
  checkLive(mem, kvm, map, new Map([[0, 0x12], [1, 0x11], [2, 0x10], [3, 0]]));
  map.mapOverlay(3, 0xff);
  checkLive(mem, kvm, map, new Map([[0, 0x12], [1, 0x11], [2, 0x10], [3, 0xff]]));
});

test('MemoryMap: RAM content shows again where an overlay was removed', (t) => {
  const { mem, map } = setup(t);
  mem.writeU32(0x80000, 0x11111111);
  map.mapOverlay(0, 0x80);
  mem.writeU32(0x80000, 0x22222222);
  assert.equal(mem.readU32(0x80000), 0x22222222);
  map.mapOverlay(0, 0x81);
  assert.equal(mem.readU32(0x80000), 0x11111111);
  assert.equal(mem.readU32(0x81000), 0x22222222);
  map.unmapOverlay(0);
  assert.equal(mem.readU32(0x81000), 0);
});

test('MemoryMap: an overlay mapped at a frame holding another takes it: the other leaves the guest view', (t) => {
  const { mem, kvm, map } = setup(t);
  map.mapOverlay(0, 0x40);
  map.mapOverlay(1, 0x41);
  map.mapOverlay(1, 0x40);
  assert.equal(map.overlayFrame(0), undefined, 'displaced');
  assert.equal(map.overlayFrame(1), 0x40);
  checkLive(mem, kvm, map, new Map([[1, 0x40]]));
  // The frame it left shows RAM again, and the displaced page can be placed anew.
  map.mapOverlay(0, 0x41);
  checkLive(mem, kvm, map, new Map([[1, 0x40], [0, 0x41]]));
});

test('MemoryMap: frames KVM keeps for itself are refused before any slot changes', (t) => {
  const mem = GuestMemory.create([{ gpa: 0, size: MiB }], 4);
  t.after(() => mem.dispose());
  const kvm = new FakeKvm();
  const map = new MemoryMap(kvm, mem, 32, new Set([0xfee00, 0x50]));
  map.mapOverlay(0, 0x40);
  const n = kvm.calls.length;
  for (const gfn of [0xfee00, 0x50]) {
    assert.throws(() => map.mapOverlay(0, gfn), (e: unknown) => e instanceof OverlayPlacementError && e.reason === 'reserved');
  }
  assert.equal(kvm.calls.length, n, 'no slot touched');
  assert.equal(map.overlayFrame(0), 0x40, 'the page stays where it was');
});

test('MemoryMap: bad frames and pages are refused', (t) => {
  const { kvm, map } = setup(t);
  const n = kvm.calls.length;
  const outOfRange = (e: unknown) => e instanceof OverlayPlacementError && e.reason === 'out-of-range';
  assert.throws(() => map.mapOverlay(0, -1), outOfRange);
  assert.throws(() => map.mapOverlay(0, MAX_OVERLAY_GFN + 1), outOfRange);
  assert.throws(() => map.mapOverlay(0, 1.5), outOfRange);
  assert.throws(() => map.mapOverlay(0, Number.NaN), outOfRange);
  assert.throws(() => map.mapOverlay(-1, 0x10), RangeError);
  assert.throws(() => map.mapOverlay(4, 0x10), RangeError);
  assert.throws(() => map.mapOverlay(0.5, 0x10), RangeError);
  assert.equal(kvm.calls.length, n);
  for (let p = 0; p < 4; p++) assert.equal(map.overlayFrame(p), undefined);
  // The highest frame allowed is accepted.
  map.mapOverlay(0, MAX_OVERLAY_GFN);
  assert.equal(map.overlayFrame(0), MAX_OVERLAY_GFN);
});

test('MemoryMap: running out of slots throws', (t) => {
  const mem = GuestMemory.create([{ gpa: 0, size: MiB }], 4);
  t.after(() => mem.dispose());
  assert.throws(() => new MemoryMap(new FakeKvm(), mem, 0), /out of KVM memory slots/);
  const kvm = new FakeKvm();
  const map = new MemoryMap(kvm, mem, 2);
  const n = kvm.calls.length;
  // Splitting the region takes three slots: refused before any slot changes, the page unplaced.
  assert.throws(() => map.mapOverlay(0, 0x10), (e: unknown) => e instanceof OverlayPlacementError && e.reason === 'no-slots');
  assert.equal(kvm.calls.length, n);
  assert.equal(map.overlayFrame(0), undefined);
  // At the region's end it takes two: fine.
  map.mapOverlay(0, 0xff);
  assert.equal(map.overlayFrame(0), 0xff);
});

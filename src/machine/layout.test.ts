import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MEMMAP_TYPE_RAM, MEMMAP_TYPE_RESERVED } from '../boot/start-info.js';
import { irqchips } from '../kvm/abi.js';
import {
  ACPI_BASE,
  ACPI_SIZE,
  GiB,
  guestMemmap,
  XENSTORE_GFN,
  CONSOLE_GFN,
  HIGH_RAM_START,
  IOAPIC_ADDRESS,
  KVM_IDENTITY_MAP_ADDRESS,
  KVM_TSS_ADDRESS,
  LAPIC_ADDRESS,
  LOW_MEMORY_END,
  LOW_RAM_END,
  MiB,
  gsiOfIoapicPin,
  pcGsiRoutes,
  PCI_ECAM_BASE,
  PCI_MEMORY_WINDOWS,
  pciFunctions,
  pciIntxGsi,
  placeAfterKernel,
  ramRanges,
} from './layout.js';

const SIZES = [16 * MiB, 3 * GiB, 3 * GiB + MiB, 8 * GiB];
const HOLE = 0x100000 - 0xa0000;

type Range = { start: number; end: number };
const overlaps = (a: Range, b: Range) => a.start < b.end && b.start < a.end;

function sortedDisjoint(ranges: Range[], what: string): void {
  for (let i = 1; i < ranges.length; i++) {
    assert.ok(ranges[i - 1].end <= ranges[i].start, `${what}: entries ${i - 1} and ${i} overlap or are unsorted`);
  }
}

const kvmPrivate: Range[] = [
  { start: IOAPIC_ADDRESS, end: IOAPIC_ADDRESS + 0x1000 },
  { start: LAPIC_ADDRESS, end: LAPIC_ADDRESS + 0x1000 },
  { start: KVM_TSS_ADDRESS, end: KVM_TSS_ADDRESS + 3 * 0x1000 },
  { start: KVM_IDENTITY_MAP_ADDRESS, end: KVM_IDENTITY_MAP_ADDRESS + 0x1000 },
];

for (const bytes of SIZES) {
  const label = `${bytes / MiB} MiB`;

  test(`ramRanges(${label}): sorted, disjoint, page-aligned, totalling the RAM asked for`, () => {
    const ranges = ramRanges(bytes);
    const rs = ranges.map((r) => ({ start: r.gpa, end: r.gpa + r.size }));
    sortedDisjoint(rs, 'ramRanges');
    assert.equal(ranges.reduce((n, r) => n + r.size, 0), bytes);
    for (const r of ranges) {
      assert.ok(r.size > 0);
      assert.equal(r.gpa % 0x1000, 0);
      assert.equal(r.size % 0x1000, 0);
      assert.ok(r.gpa + r.size <= LOW_RAM_END || r.gpa >= HIGH_RAM_START, 'nothing in the 3–4 GiB hole');
    }
    for (const p of kvmPrivate) for (const r of rs) assert.ok(!overlaps(p, r), `RAM over 0x${p.start.toString(16)}`);
    assert.equal(ranges[0].gpa, 0);
  });

  test(`guestMemmap(${label}): sorted, disjoint, RAM = asked for minus the legacy hole`, () => {
    const map = guestMemmap(bytes);
    const rs = map.map((e) => ({ start: e.addr, end: e.addr + e.size }));
    sortedDisjoint(rs, 'guestMemmap');
    for (const e of map) {
      assert.ok(e.size > 0);
      assert.ok(e.type === MEMMAP_TYPE_RAM || e.type === MEMMAP_TYPE_RESERVED);
    }
    const ram = map.filter((e) => e.type === MEMMAP_TYPE_RAM);
    assert.equal(ram.reduce((n, e) => n + e.size, 0), bytes - HOLE);
    const hole = { start: LOW_MEMORY_END, end: 0x100000 };
    for (const e of ram) {
      const r = { start: e.addr, end: e.addr + e.size };
      assert.ok(!overlaps(r, hole), 'no RAM in 0xA0000–0x100000');
      for (const p of kvmPrivate) assert.ok(!overlaps(p, r), `RAM over 0x${p.start.toString(16)}`);
      // Every RAM entry is backed by one of the RAM ranges.
      assert.ok(ramRanges(bytes).some((g) => e.addr >= g.gpa && e.addr + e.size <= g.gpa + g.size), `RAM entry 0x${e.addr.toString(16)} is backed`);
    }
    // The IOAPIC and LAPIC pages, Xen's special pages, PCI's ECAM window and the ACPI tables are reported reserved.
    for (const addr of [IOAPIC_ADDRESS, LAPIC_ADDRESS, XENSTORE_GFN * 0x1000, CONSOLE_GFN * 0x1000, PCI_ECAM_BASE]) {
      assert.ok(map.some((e) => e.type === MEMMAP_TYPE_RESERVED && e.addr <= addr && addr + 0x1000 <= e.addr + e.size));
    }
    assert.ok(map.some((e) => e.type === MEMMAP_TYPE_RESERVED && e.addr <= ACPI_BASE && ACPI_BASE + ACPI_SIZE <= e.addr + e.size));
  });
}

test('exact layouts', () => {
  assert.deepEqual(ramRanges(16 * MiB), [{ gpa: 0, size: 16 * MiB }]);
  assert.deepEqual(ramRanges(3 * GiB), [{ gpa: 0, size: 3 * GiB }]);
  assert.deepEqual(ramRanges(3 * GiB + MiB), [{ gpa: 0, size: 3 * GiB }, { gpa: 4 * GiB, size: MiB }]);
  assert.deepEqual(ramRanges(8 * GiB), [{ gpa: 0, size: 3 * GiB }, { gpa: 4 * GiB, size: 5 * GiB }]);
  assert.deepEqual(guestMemmap(16 * MiB), [
    { addr: 0, size: 0xa0000, type: MEMMAP_TYPE_RAM },
    { addr: 0xe0000, size: 0x20000, type: MEMMAP_TYPE_RESERVED },
    { addr: 0x100000, size: 15 * MiB, type: MEMMAP_TYPE_RAM },
    { addr: 0xe0000000, size: MiB, type: MEMMAP_TYPE_RESERVED },
    { addr: 0xfec00000, size: 0x1000, type: MEMMAP_TYPE_RESERVED },
    { addr: 0xfee00000, size: 0x1000, type: MEMMAP_TYPE_RESERVED },
    { addr: 0xfeff8000, size: 0x8000, type: MEMMAP_TYPE_RESERVED },
  ]);
  assert.deepEqual(guestMemmap(8 * GiB).at(-1), { addr: 4 * GiB, size: 5 * GiB, type: MEMMAP_TYPE_RAM });
  assert.equal(guestMemmap(3 * GiB).length, 7, 'no high entry when all RAM fits below 3 GiB');
});

test('placeAfterKernel: page-aligned blocks one after another from the first page past the image, in the first range with room', () => {
  const ram = [{ start: 0, end: 0xa0000 }, { start: 0x100000, end: 0x1000000 }];
  assert.deepEqual(placeAfterKernel(0x123456, ram, [0x2000]), [0x124000]);
  assert.deepEqual(placeAfterKernel(0x124000, ram, [300_001, 0x2000]), [0x124000, 0x16e000]);
  // A kernel low in memory: the blocks follow it there while they fit, else go to the next range.
  assert.deepEqual(placeAfterKernel(0x800, ram, [0x2000]), [0x1000]);
  assert.deepEqual(placeAfterKernel(0x800, ram, [0x200000, 0x2000]), [0x100000, 0x300000]);
  // The last block may end exactly at the range's end; one byte more does not fit anywhere.
  assert.deepEqual(placeAfterKernel(0xffe000, ram, [0x2000]), [0xffe000]);
  assert.equal(placeAfterKernel(0xffe000, ram, [0x2001]), undefined);
  assert.equal(placeAfterKernel(0x200000, ram, [0x1000000]), undefined);
});

test('GSI routing: a PC\'s; IRQ 0 (the PIT\'s) reaches IOAPIC pin 2, the only GSI that does, and never pin 0', () => {
  const routes = pcGsiRoutes();
  const of = (gsi: number) => routes.filter((r) => r.gsi === gsi).map((r) => [r.irqchip, r.pin]);
  assert.deepEqual(of(0), [[irqchips.PIC_MASTER, 0], [irqchips.IOAPIC, 2]]);
  assert.deepEqual(of(2), []);
  assert.deepEqual(of(4), [[irqchips.PIC_MASTER, 4], [irqchips.IOAPIC, 4]]);
  assert.deepEqual(of(9), [[irqchips.PIC_SLAVE, 1], [irqchips.IOAPIC, 9]]);
  assert.deepEqual(of(20), [[irqchips.IOAPIC, 20]]);
  assert.deepEqual(of(24), []);
  assert.equal(routes.filter((r) => r.irqchip === irqchips.IOAPIC && r.pin === 0).length, 0);
  assert.equal(routes.length, 15 * 2 + 8);
  // Every IOAPIC pin but 0 is driven by exactly the GSI gsiOfIoapicPin names.
  for (let pin = 1; pin < 24; pin++) {
    const gsis = routes.filter((r) => r.irqchip === irqchips.IOAPIC && r.pin === pin).map((r) => r.gsi);
    assert.deepEqual(gsis, [gsiOfIoapicPin(pin)], `pin ${pin}`);
  }
});

test('PCI: the ECAM window and the BARs lie in no RAM and in nothing else reserved; BARs inside a host bridge window; INTx on GSIs 16–23', () => {
  const map = guestMemmap(3 * GiB);
  const inWindow = (start: number, end: number) => PCI_MEMORY_WINDOWS.some((w) => start >= w.start && end - 1 <= w.end);
  for (const w of PCI_MEMORY_WINDOWS) {
    for (const e of map) assert.ok(!overlaps({ start: w.start, end: w.end + 1 }, { start: e.addr, end: e.addr + e.size }), `window 0x${w.start.toString(16)} over 0x${e.addr.toString(16)}`);
  }
  assert.ok(!inWindow(PCI_ECAM_BASE, PCI_ECAM_BASE + MiB), 'the ECAM window is no BAR space');
  for (const f of pciFunctions()) {
    for (const bar of f.bars ?? []) if (bar?.kind === 'mem32') assert.ok(inWindow(bar.address, bar.address + bar.size), `slot ${f.slot} BAR at 0x${bar.address.toString(16)}`);
  }
  for (let slot = 0; slot < 32; slot++) for (let pin = 0; pin < 4; pin++) assert.ok(pciIntxGsi(slot, pin) >= 16 && pciIntxGsi(slot, pin) <= 23);
  assert.equal(pciIntxGsi(2, 0), 18, 'the Xen platform device\'s INTA');
});

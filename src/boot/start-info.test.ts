import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BootError } from './elf.js';
import {
  HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, XEN_HVM_MEMMAP_TYPE_ACPI, XEN_HVM_MEMMAP_TYPE_DISABLED,
  XEN_HVM_MEMMAP_TYPE_NVS, XEN_HVM_MEMMAP_TYPE_PMEM, XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED,
  XEN_HVM_MEMMAP_TYPE_UNUSABLE, XEN_HVM_START_MAGIC_VALUE, encodeBootInfo,
} from './start-info.js';

test('hvm_start_info layout (version 1)', () => {
  assert.equal(HvmStartInfo.size, 56);
  assert.deepEqual({ ...HvmStartInfo.offsets }, {
    magic: 0, version: 4, flags: 8, nr_modules: 12, modlist_paddr: 16, cmdline_paddr: 24,
    rsdp_paddr: 32, memmap_paddr: 40, memmap_entries: 48, reserved: 52,
  });
});

test('hvm_memmap_table_entry and hvm_modlist_entry layouts', () => {
  assert.equal(HvmMemmapTableEntry.size, 24);
  assert.deepEqual({ ...HvmMemmapTableEntry.offsets }, { addr: 0, size: 8, type: 16, reserved: 20 });
  assert.equal(HvmModlistEntry.size, 32);
  assert.deepEqual({ ...HvmModlistEntry.offsets }, { paddr: 0, size: 8, cmdline_paddr: 16, reserved: 24 });
});

test('constants', () => {
  assert.equal(XEN_HVM_START_MAGIC_VALUE, 0x336ec578);
  assert.deepEqual(
    [XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, XEN_HVM_MEMMAP_TYPE_ACPI, XEN_HVM_MEMMAP_TYPE_NVS,
      XEN_HVM_MEMMAP_TYPE_UNUSABLE, XEN_HVM_MEMMAP_TYPE_DISABLED, XEN_HVM_MEMMAP_TYPE_PMEM],
    [1, 2, 3, 4, 5, 6, 7],
  );
});

const memmap = [
  { addr: 0, size: 0xa0000, type: XEN_HVM_MEMMAP_TYPE_RAM },
  { addr: 0xe0000, size: 0x20000, type: XEN_HVM_MEMMAP_TYPE_ACPI },
  { addr: 0x100000, size: 0x7f00000, type: XEN_HVM_MEMMAP_TYPE_RAM },
  { addr: 0xfee00000, size: 0x1000, type: XEN_HVM_MEMMAP_TYPE_RESERVED },
];

test('encoded blob decodes back', () => {
  const base = 0x6000;
  const cmdline = 'console=hvc0 root=/dev/xvda1 quiet';
  const { bytes, startInfoPaddr, memmapPaddr, cmdlinePaddr } = encodeBootInfo({
    base, cmdline, rsdpPaddr: 0xe0000, memmap, maxBytes: 4096,
  });
  assert.equal(startInfoPaddr, base);
  const si = HvmStartInfo.decode(bytes);
  assert.equal(si.magic, XEN_HVM_START_MAGIC_VALUE);
  assert.equal(si.version, 1);
  assert.equal(si.flags, 0);
  assert.equal(si.nr_modules, 0);
  assert.equal(si.modlist_paddr, 0n);
  assert.equal(si.rsdp_paddr, 0xe0000n);
  assert.equal(si.memmap_entries, memmap.length);
  assert.equal(si.reserved, 0);
  assert.equal(Number(si.memmap_paddr), memmapPaddr);
  assert.equal(memmapPaddr % 8, 0);
  const entries = memmap.map((_, i) =>
    HvmMemmapTableEntry.decode(bytes.subarray(memmapPaddr - base + i * HvmMemmapTableEntry.size)));
  assert.deepEqual(entries.map((e) => ({ addr: Number(e.addr), size: Number(e.size), type: e.type })), memmap);
  assert.ok(entries.every((e) => e.reserved === 0));
  assert.equal(Number(si.cmdline_paddr), cmdlinePaddr);
  const off = cmdlinePaddr - base;
  const end = bytes.indexOf(0, off);
  assert.equal(end, bytes.length - 1);
  assert.equal(new TextDecoder().decode(bytes.subarray(off, end)), cmdline);
});

test('empty command line is a single NUL, still pointed to', () => {
  const { bytes, cmdlinePaddr } = encodeBootInfo({ base: 0x6000, cmdline: '', rsdpPaddr: 0, memmap: [], maxBytes: 4096 });
  const si = HvmStartInfo.decode(bytes);
  assert.equal(Number(si.cmdline_paddr), cmdlinePaddr);
  assert.notEqual(cmdlinePaddr, 0);
  assert.equal(bytes[cmdlinePaddr - 0x6000], 0);
  assert.equal(bytes.length, cmdlinePaddr - 0x6000 + 1);
  assert.equal(si.memmap_entries, 0);
  assert.equal(si.memmap_paddr, 0n);
});

test('modules are listed with their command lines', () => {
  const base = 0x8000;
  const { bytes } = encodeBootInfo({
    base, cmdline: 'x', rsdpPaddr: 0, memmap: memmap.slice(0, 1), maxBytes: 4096,
    modules: [{ paddr: 0x2000000, size: 12345, cmdline: 'initrd' }, { paddr: 0x3000000, size: 1 }],
  });
  const si = HvmStartInfo.decode(bytes);
  assert.equal(si.nr_modules, 2);
  const at = Number(si.modlist_paddr) - base;
  assert.equal(at % 8, 0);
  const m0 = HvmModlistEntry.decode(bytes.subarray(at));
  const m1 = HvmModlistEntry.decode(bytes.subarray(at + HvmModlistEntry.size));
  assert.equal(m0.paddr, 0x2000000n);
  assert.equal(m0.size, 12345n);
  const cl = Number(m0.cmdline_paddr) - base;
  assert.equal(new TextDecoder().decode(bytes.subarray(cl, bytes.indexOf(0, cl))), 'initrd');
  assert.equal(m1.cmdline_paddr, 0n);
});

test('command line too long is a BootError', () => {
  const fixed = 56 + memmap.length * 24;
  const max = fixed + 11;
  assert.doesNotThrow(() => encodeBootInfo({ base: 0x6000, cmdline: 'a'.repeat(10), rsdpPaddr: 0, memmap, maxBytes: max }));
  assert.throws(
    () => encodeBootInfo({ base: 0x6000, cmdline: 'a'.repeat(11), rsdpPaddr: 0, memmap, maxBytes: max }),
    (e: unknown) => e instanceof BootError && e.message === 'command line too long: 11 bytes (at most 10)',
  );
  assert.throws(() => encodeBootInfo({ base: 0x6000, cmdline: 'a\0b', rsdpPaddr: 0, memmap, maxBytes: 4096 }),
    (e: unknown) => e instanceof BootError && /NUL/.test(e.message));
});

test('unsorted or overlapping memmap is a programming error', () => {
  const opts = { base: 0x6000, cmdline: '', rsdpPaddr: 0, maxBytes: 4096 };
  const isPlainError = (e: unknown) => e instanceof Error && !(e instanceof BootError);
  assert.throws(() => encodeBootInfo({ ...opts, memmap: [memmap[2], memmap[0]] }), isPlainError);
  assert.throws(() => encodeBootInfo({
    ...opts,
    memmap: [{ addr: 0, size: 0x2000, type: 1 }, { addr: 0x1000, size: 0x1000, type: 2 }],
  }), isPlainError);
  assert.throws(() => encodeBootInfo({ ...opts, base: 0x6004, memmap }), isPlainError);
});

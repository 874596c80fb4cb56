// The PVH start-of-day block (Xen's public arch-x86/hvm/start_info.h, version 1):
// hvm_start_info, then the memory map, module list and command lines, built as
// one blob the VMM writes at a guest-physical base and passes in %ebx.

import { struct } from '../common/struct.js';
import { BootError } from './elf.js';

export const XEN_HVM_START_MAGIC_VALUE = 0x336ec578;
export const HVM_START_INFO_VERSION = 1;

export const XEN_HVM_MEMMAP_TYPE_RAM = 1;
export const XEN_HVM_MEMMAP_TYPE_RESERVED = 2;
export const XEN_HVM_MEMMAP_TYPE_ACPI = 3;
export const XEN_HVM_MEMMAP_TYPE_NVS = 4;
export const XEN_HVM_MEMMAP_TYPE_UNUSABLE = 5;
export const XEN_HVM_MEMMAP_TYPE_DISABLED = 6;
export const XEN_HVM_MEMMAP_TYPE_PMEM = 7;
// Short names for the same values.
export const MEMMAP_TYPE_RAM = XEN_HVM_MEMMAP_TYPE_RAM;
export const MEMMAP_TYPE_RESERVED = XEN_HVM_MEMMAP_TYPE_RESERVED;
export const MEMMAP_TYPE_ACPI = XEN_HVM_MEMMAP_TYPE_ACPI;
export const MEMMAP_TYPE_NVS = XEN_HVM_MEMMAP_TYPE_NVS;
export const MEMMAP_TYPE_UNUSABLE = XEN_HVM_MEMMAP_TYPE_UNUSABLE;
export const MEMMAP_TYPE_DISABLED = XEN_HVM_MEMMAP_TYPE_DISABLED;
export const MEMMAP_TYPE_PMEM = XEN_HVM_MEMMAP_TYPE_PMEM;

export const HvmStartInfo = struct('hvm_start_info', {
  magic: 'u32',
  version: 'u32',
  flags: 'u32',
  nr_modules: 'u32',
  modlist_paddr: 'u64',
  cmdline_paddr: 'u64',
  rsdp_paddr: 'u64',
  // version 1 and newer
  memmap_paddr: 'u64',
  memmap_entries: 'u32',
  reserved: 'u32',
});

export const HvmModlistEntry = struct('hvm_modlist_entry', {
  paddr: 'u64',
  size: 'u64',
  cmdline_paddr: 'u64',
  reserved: 'u64',
});

export const HvmMemmapTableEntry = struct('hvm_memmap_table_entry', {
  addr: 'u64',
  size: 'u64',
  type: 'u32',
  reserved: 'u32',
});

export interface MemmapEntry { addr: number; size: number; type: number }
export interface BootModule { paddr: number; size: number; cmdline?: string }

export interface BootInfoOptions {
  /** Guest-physical address the blob is written at (8-byte aligned, not 0). */
  base: number;
  cmdline: string;
  rsdpPaddr: number;
  /** Sorted by address, non-overlapping. */
  memmap: MemmapEntry[];
  /** Room available at base. */
  maxBytes: number;
  /** Modules (e.g. an initrd), already placed in guest memory by the caller. */
  modules?: BootModule[];
  /** SIF_xxx flags; 0 for an unprivileged guest. */
  flags?: number;
}

export interface BootInfo {
  bytes: Uint8Array;
  startInfoPaddr: number;
  /** 0 when the memory map is empty. */
  memmapPaddr: number;
  cmdlinePaddr: number;
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

function cString(s: string, what: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  if (bytes.includes(0)) throw new BootError(`${what} contains a NUL character`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

export function encodeBootInfo(opts: BootInfoOptions): BootInfo {
  const { base, memmap, maxBytes } = opts;
  const modules = opts.modules ?? [];
  // Address 0 means "absent" in start_info, so nothing may live there.
  if (!Number.isSafeInteger(base) || base <= 0 || base % 8 !== 0) {
    throw new Error(`boot info base ${base} must be a non-zero multiple of 8`);
  }
  for (let i = 0; i < memmap.length; i++) {
    const e = memmap[i];
    if (!Number.isSafeInteger(e.addr) || !Number.isSafeInteger(e.size) || e.addr < 0 || e.size <= 0) {
      throw new Error(`memmap entry ${i} has a bad address or size (${e.addr}, ${e.size})`);
    }
    if (i > 0 && e.addr < memmap[i - 1].addr + memmap[i - 1].size) {
      throw new Error(`memmap entry ${i} at 0x${e.addr.toString(16)} is out of order or overlaps entry ${i - 1}`);
    }
  }

  const memmapOff = align8(HvmStartInfo.size);
  const modlistOff = align8(memmapOff + memmap.length * HvmMemmapTableEntry.size);
  let cursor = modlistOff + modules.length * HvmModlistEntry.size;
  const moduleCmdlines = modules.map((m, i) => {
    if (m.cmdline === undefined) return undefined;
    const bytes = cString(m.cmdline, `module ${i} command line`);
    const off = cursor;
    cursor += bytes.length;
    return { off, bytes };
  });
  const cmdlineOff = cursor;
  const cmdline = cString(opts.cmdline, 'command line');
  const total = cmdlineOff + cmdline.length;
  if (total > maxBytes) {
    const room = Math.max(0, maxBytes - cmdlineOff - 1);
    throw new BootError(`command line too long: ${cmdline.length - 1} bytes (at most ${room})`);
  }

  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  HvmStartInfo.write(view, 0, {
    magic: XEN_HVM_START_MAGIC_VALUE,
    version: HVM_START_INFO_VERSION,
    flags: opts.flags ?? 0,
    nr_modules: modules.length,
    modlist_paddr: modules.length ? BigInt(base + modlistOff) : 0n,
    cmdline_paddr: BigInt(base + cmdlineOff),
    rsdp_paddr: BigInt(opts.rsdpPaddr),
    memmap_paddr: memmap.length ? BigInt(base + memmapOff) : 0n,
    memmap_entries: memmap.length,
    reserved: 0,
  });
  memmap.forEach((e, i) => {
    HvmMemmapTableEntry.write(view, memmapOff + i * HvmMemmapTableEntry.size, {
      addr: BigInt(e.addr),
      size: BigInt(e.size),
      type: e.type,
      reserved: 0,
    });
  });
  modules.forEach((m, i) => {
    const cl = moduleCmdlines[i];
    HvmModlistEntry.write(view, modlistOff + i * HvmModlistEntry.size, {
      paddr: BigInt(m.paddr),
      size: BigInt(m.size),
      cmdline_paddr: cl ? BigInt(base + cl.off) : 0n,
      reserved: 0n,
    });
    if (cl) bytes.set(cl.bytes, cl.off);
  });
  bytes.set(cmdline, cmdlineOff);

  return { bytes, startInfoPaddr: base, memmapPaddr: memmap.length ? base + memmapOff : 0, cmdlinePaddr: base + cmdlineOff };
}

// Guest page-table walker (Intel SDM vol. 3, ch. 4): translates guest-virtual
// addresses (hypercall arguments) to guest-physical ones. Tables live in
// untrusted guest memory, so every malformed case yields a fault value.
// Where AMD's processors walk differently, the state's `vendor` says whose
// rules apply: so far only in PAE PDPTEs (see walk64).
// Not modelled: SMEP/SMAP, protection keys, PCID, TLBs (nor Intel's PDPTE
// registers: PDPTEs are read from memory on every walk), 1 GiB-page CPUID check.
import type { CpuVendor } from '../kvm/system.js';

export interface PagingState {
  cr0: bigint | number;
  cr3: bigint | number;
  cr4: bigint | number;
  efer: bigint | number;
  /** CPUID MAXPHYADDR; clamped to 32..52, default 52. */
  maxPhysAddrBits?: number;
  /** Whose paging rules apply where AMD's and Intel's differ; default Intel's. */
  vendor?: CpuVendor;
}

export interface PhysicalMemory {
  /** An aligned 32-bit word (64-bit entries are read as two); undefined = not backed by RAM. */
  readU32(gpa: number): number | undefined;
  /** Optional; used only to set Accessed/Dirty bits. */
  writeU32?(gpa: number, v: number): boolean;
  writeU64?(gpa: number, v: bigint): boolean;
}

export interface Access {
  write?: boolean;
  user?: boolean;
  fetch?: boolean;
}

export type PageFault = {
  ok: false;
  fault: 'page-fault';
  /** x86 #PF error code (PFEC_* bits). */
  errorCode: number;
  /** Faulting linear address (32-bit modes: truncated to 32 bits). */
  gva: bigint;
  /** Address was non-canonical; hardware would raise #GP, not #PF. */
  nonCanonical?: true;
};
export type BadTable = { ok: false; fault: 'bad-table'; gpa: number };
export type Fault = PageFault | BadTable;

export type Translation =
  | { ok: true; gpa: number; pageSize: number; level: number }
  | Fault;

export type RangeTranslation =
  | { ok: true; pieces: { gpa: number; length: number }[] }
  | Fault;

export type PagingMode = 'none' | '32bit' | 'pae' | '4level' | '5level';

export const PFEC_PRESENT = 1 << 0;
export const PFEC_WRITE = 1 << 1;
export const PFEC_USER = 1 << 2;
export const PFEC_RSVD = 1 << 3;
export const PFEC_INSN = 1 << 4;

// Control-register bits (all in the low 32 bits) and entry bits, as numbers: the walk runs on
// 32-bit halves of every 64-bit quantity, since BigInt arithmetic costs microseconds per walk here.
const CR0_WP = 1 << 16;
const CR0_PG = 1 << 31;
const CR4_PSE = 1 << 4;
const CR4_PAE = 1 << 5;
const CR4_LA57 = 1 << 12;
const EFER_LMA = 1 << 10;
const EFER_NXE = 1 << 11;

const PTE_P = 1 << 0;
const PTE_RW = 1 << 1;
const PTE_US = 1 << 2;
const PTE_A = 1 << 5;
const PTE_D = 1 << 6;
const PTE_PS = 1 << 7;
/** NX is bit 63: bit 31 of an entry's high half. */
const PTE_NX_HI = 1 << 31;

const MASK32 = 0xffff_ffffn;
const MASK64 = (1n << 64n) - 1n;
const TWO32 = 2 ** 32;
/** Physical addresses are at most 52 bits: exact as numbers. */
const PHYS_MASK = (1n << 52n) - 1n;

/** Bits lo..hi inclusive of a 32-bit half (0 when the range is empty). */
function bits32(lo: number, hi: number): number {
  if (hi < lo) return 0;
  const width = hi - lo + 1;
  return (width >= 32 ? 0xffff_ffff : ((1 << width) - 1) << lo) >>> 0;
}

/**
 * Low bits reserved in a PAE PDPTE. Intel: 2:1 and 8:5; it loads PDPTEs into registers at MOV to CR3 (#GP if one
 * is set) and never sets A in them. AMD with nested paging reads a guest's PDPTEs from memory during each walk, and
 * the walk sets A (bit 5) in them (seen under QEMU's SVM: PDPTE 0x00107001 read back as 0x00107021), so bit 5 is not
 * reserved there; 2:1 and 8:6 stay reserved. This walker never sets A in a PDPTE, on either vendor.
 */
const PDPTE_RSVD_LO_INTEL = bits32(1, 2) | bits32(5, 8);
const PDPTE_RSVD_LO_AMD = bits32(1, 2) | bits32(6, 8);

function toU64(v: bigint | number): bigint {
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (!Number.isInteger(v)) throw new RangeError(`not an integer: ${v}`);
  // Negative numbers wrap, so sign-extended kernel addresses work as numbers too.
  return BigInt.asUintN(64, BigInt(v));
}

/** The low 32 bits of a register, where every control bit the walk tests lives. */
function low32(v: bigint | number): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v < TWO32) return v;
  return Number(toU64(v) & MASK32);
}

function physBits(s: PagingState): number {
  const m = s.maxPhysAddrBits;
  if (m === undefined || !Number.isFinite(m)) return 52;
  return Math.min(52, Math.max(32, Math.trunc(m)));
}

interface Regs {
  cr0: number;
  /** CR3 up to bit 51, exact as a number. */
  cr3: number;
  cr4: number;
  efer: number;
  m: number;
  amd: boolean;
}

function regs(s: PagingState): Regs {
  const cr3 = typeof s.cr3 === 'number' && Number.isSafeInteger(s.cr3) && s.cr3 >= 0 ? s.cr3 % 2 ** 52 : Number(toU64(s.cr3) & PHYS_MASK);
  return { cr0: low32(s.cr0), cr3, cr4: low32(s.cr4), efer: low32(s.efer), m: physBits(s), amd: s.vendor === 'amd' };
}

function modeOf(r: Regs): PagingMode {
  if (!(r.cr0 & CR0_PG)) return 'none';
  if (!(r.cr4 & CR4_PAE)) return '32bit';
  if (!(r.efer & EFER_LMA)) return 'pae';
  return r.cr4 & CR4_LA57 ? '5level' : '4level';
}

export function pagingMode(s: PagingState): PagingMode {
  return modeOf(regs(s));
}

/** A linear address as two 32-bit halves. */
interface Va {
  lo: number;
  hi: number;
}

/** The 9-bit (or, with 32-bit paging, 10-bit) table index at bit `shift` of the address. */
function index(va: Va, shift: number, width = 9): number {
  const mask = (1 << width) - 1;
  if (shift >= 32) return (va.hi >>> (shift - 32)) & mask;
  if (shift + width <= 32) return (va.lo >>> shift) & mask;
  return ((va.lo >>> shift) | (va.hi << (32 - shift))) & mask;
}

/** An entry consulted during the walk, remembered for A/D updates. */
interface Step {
  addr: number;
  lo: number;
  hi: number;
  wide: boolean; // 64-bit entry
  hasA: boolean; // the walk never sets A/D in a PAE PDPTE
}

interface Leaf {
  /** Physical base of the page. */
  base: number;
  pageSize: number;
  level: number;
  rw: boolean; // AND over all levels
  us: boolean; // AND over all levels
  nx: boolean; // OR over all levels
}

type WalkOutcome = { ok: true; leaf: Leaf } | { ok: false; kind: 'not-present' | 'rsvd' } | BadTable;

function walk32(mem: PhysicalMemory, r: Regs, va: Va, steps: Step[]): WalkOutcome {
  const pdeAddr = (((r.cr3 % TWO32) & 0xffff_f000) >>> 0) + index(va, 22, 10) * 4;
  const pde = mem.readU32(pdeAddr);
  if (pde === undefined) return { ok: false, fault: 'bad-table', gpa: pdeAddr };
  steps.push({ addr: pdeAddr, lo: pde, hi: 0, wide: false, hasA: true });
  if (!(pde & PTE_P)) return { ok: false, kind: 'not-present' };
  if (pde & PTE_PS && r.cr4 & CR4_PSE) {
    // PSE-36: PDE bits 20:13 hold physical bits 39:32; those beyond MAXPHYADDR, and bit 21, are reserved.
    const m = Math.min(r.m, 40);
    if (pde & ((1 << 21) | bits32(13 + (m - 32), 20))) return { ok: false, kind: 'rsvd' };
    const base = ((pde >>> 13) & 0xff) * TWO32 + ((pde & 0xffc0_0000) >>> 0);
    return { ok: true, leaf: { base, pageSize: 4 << 20, level: 2, rw: !!(pde & PTE_RW), us: !!(pde & PTE_US), nx: false } };
  }
  const pteAddr = ((pde & 0xffff_f000) >>> 0) + index(va, 12, 10) * 4;
  const pte = mem.readU32(pteAddr);
  if (pte === undefined) return { ok: false, fault: 'bad-table', gpa: pteAddr };
  steps.push({ addr: pteAddr, lo: pte, hi: 0, wide: false, hasA: true });
  if (!(pte & PTE_P)) return { ok: false, kind: 'not-present' };
  return {
    ok: true,
    leaf: {
      base: (pte & 0xffff_f000) >>> 0,
      pageSize: 4096,
      level: 1,
      rw: !!(pde & PTE_RW) && !!(pte & PTE_RW),
      us: !!(pde & PTE_US) && !!(pte & PTE_US),
      nx: false,
    },
  };
}

/** Reads a 64-bit entry as its two halves; undefined where memory is not backed. */
function readEntry(mem: PhysicalMemory, addr: number): Va | undefined {
  const lo = mem.readU32(addr);
  const hi = lo === undefined ? undefined : mem.readU32(addr + 4);
  return hi === undefined ? undefined : { lo: lo!, hi };
}

/** The frame an entry points to: bits 12 up to MAXPHYADDR − 1 (`addrHi`: those of the high half), less `pageMask`. */
function frame(e: Va, addrHi: number, pageMask: number): number {
  return (e.hi & addrHi) * TWO32 + (((e.lo & 0xffff_f000) & ~pageMask) >>> 0);
}

/** PAE, 4-level and 5-level paging (64-bit entries). */
function walk64(mem: PhysicalMemory, r: Regs, mode: PagingMode, va: Va, steps: Step[]): WalkOutcome {
  // An entry's frame: bits 12 up to MAXPHYADDR − 1, i.e. bits 12–31 of the low half and 0..m−33 of the high.
  const addrHi = bits32(0, r.m - 33);
  // PAE reserves bits 62:M; long-mode paging leaves 62:52 to software.
  const rsvdHi = (mode === 'pae' ? bits32(r.m - 32, 30) : bits32(r.m - 32, 19)) | (r.efer & EFER_NXE ? 0 : PTE_NX_HI);

  let table: number;
  if (mode === 'pae') {
    // The PDPTE is a register-like entry: no R/W, U/S or NX bits, and A only as AMD's walk sets it.
    const addr = (((r.cr3 % TWO32) & 0xffff_ffe0) >>> 0) + index(va, 30, 2) * 8;
    const e = readEntry(mem, addr);
    if (e === undefined) return { ok: false, fault: 'bad-table', gpa: addr };
    steps.push({ addr, lo: e.lo, hi: e.hi, wide: true, hasA: false });
    if (!(e.lo & PTE_P)) return { ok: false, kind: 'not-present' };
    if (e.lo & (r.amd ? PDPTE_RSVD_LO_AMD : PDPTE_RSVD_LO_INTEL) || e.hi & bits32(r.m - 32, 31)) return { ok: false, kind: 'rsvd' };
    table = frame(e, addrHi, 0);
  } else {
    table = (Math.floor(r.cr3 / TWO32) & addrHi) * TWO32 + (((r.cr3 % TWO32) & 0xffff_f000) >>> 0);
  }
  const top = mode === 'pae' ? 2 : mode === '5level' ? 5 : 4;

  let rw = true;
  let us = true;
  let nx = false;
  for (let level = top; level >= 1; level--) {
    const shift = 12 + 9 * (level - 1);
    const addr = table + index(va, shift) * 8;
    const e = readEntry(mem, addr);
    if (e === undefined) return { ok: false, fault: 'bad-table', gpa: addr };
    steps.push({ addr, lo: e.lo, hi: e.hi, wide: true, hasA: true });
    if (!(e.lo & PTE_P)) return { ok: false, kind: 'not-present' };
    const ps = level > 1 && !!(e.lo & PTE_PS); // bit 7 of a PTE is PAT
    let rsvdLo = 0;
    if (level >= 4) rsvdLo |= PTE_PS;
    else if (ps) rsvdLo |= bits32(13, shift - 1); // large-page frame must be size-aligned (bit 12 is PAT)
    if (e.lo & rsvdLo || e.hi & rsvdHi) return { ok: false, kind: 'rsvd' };
    rw &&= !!(e.lo & PTE_RW);
    us &&= !!(e.lo & PTE_US);
    nx ||= (e.hi & PTE_NX_HI) !== 0;
    if (level === 1 || ps) {
      const size = 2 ** shift;
      return { ok: true, leaf: { base: frame(e, addrHi, size - 1), pageSize: size, level, rw, us, nx } };
    }
    table = frame(e, addrHi, 0);
  }
  throw new Error('unreachable: level 1 is always a leaf');
}

function canonical(mode: PagingMode, va: Va): boolean {
  if (mode === '4level') {
    const top = va.hi >>> 15; // bits 63:47
    return top === 0 || top === 0x1_ffff;
  }
  if (mode === '5level') {
    const top = va.hi >>> 24; // bits 63:56
    return top === 0 || top === 0xff;
  }
  return true;
}

function setAccessedDirty(mem: PhysicalMemory, steps: Step[], dirty: boolean): void {
  if (!mem.writeU32 && !mem.writeU64) return;
  // Like Xen's guest walk but without cmpxchg: a racing guest update to the
  // same entry could be overwritten. Only entries needing a change are written.
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i];
    if (!s.hasA) continue;
    const lo = (s.lo | PTE_A | (dirty && i === steps.length - 1 ? PTE_D : 0)) >>> 0;
    if (lo === s.lo) continue;
    if (s.wide && mem.writeU64) mem.writeU64(s.addr, (BigInt(s.hi >>> 0) << 32n) | BigInt(lo));
    else mem.writeU32?.(s.addr, lo); // A/D live in the low dword
  }
}

function pageFault(errorCode: number, gva: bigint): PageFault {
  return { ok: false, fault: 'page-fault', errorCode, gva };
}

function translateNormalised(mem: PhysicalMemory, r: Regs, mode: PagingMode, gva: bigint, access: Access): Translation {
  const va: Va = { lo: Number(gva & MASK32), hi: Number(gva >> 32n) };
  if (mode === 'none') return { ok: true, gpa: va.lo, pageSize: 4096, level: 0 };
  // Hardware raises #GP for non-canonical addresses; Xen's copy helpers
  // return -EFAULT either way, so report a page fault flagged nonCanonical.
  if (!canonical(mode, va)) return { ok: false, fault: 'page-fault', errorCode: 0, gva, nonCanonical: true };

  const nxe = mode !== '32bit' && !!(r.efer & EFER_NXE);
  const code = (access.write ? PFEC_WRITE : 0) | (access.user ? PFEC_USER : 0) | (access.fetch && nxe ? PFEC_INSN : 0);
  const steps: Step[] = [];
  const w = mode === '32bit' ? walk32(mem, r, va, steps) : walk64(mem, r, mode, va, steps);
  if (!w.ok) {
    if ('fault' in w) return w;
    return pageFault(code | (w.kind === 'rsvd' ? PFEC_PRESENT | PFEC_RSVD : 0), gva);
  }
  const { leaf } = w;
  if (access.user && !leaf.us) return pageFault(code | PFEC_PRESENT, gva);
  if (access.write && !leaf.rw && (access.user || r.cr0 & CR0_WP)) return pageFault(code | PFEC_PRESENT, gva);
  if (access.fetch && nxe && leaf.nx) return pageFault(code | PFEC_PRESENT, gva);

  setAccessedDirty(mem, steps, !!access.write);
  // Pages are at most 1 GiB: the offset lies in the low half of the address.
  return { ok: true, gpa: leaf.base + (va.lo & (leaf.pageSize - 1)), pageSize: leaf.pageSize, level: leaf.level };
}

/** Linear addresses outside long mode are 32 bits wide. */
function linear(mode: PagingMode, gva: bigint | number): bigint {
  const va = toU64(gva);
  return mode === '4level' || mode === '5level' ? va : va & MASK32;
}

export function translate(mem: PhysicalMemory, s: PagingState, gva: bigint | number, access: Access = {}): Translation {
  const r = regs(s);
  const mode = modeOf(r);
  return translateNormalised(mem, r, mode, linear(mode, gva), access);
}

/**
 * Translates [gva, gva+length) into physically contiguous pieces, one per
 * guest page. A/D bits of pages before a faulting one stay set, as on hardware.
 * `length` is caller-validated: a non-negative safe integer.
 */
export function translateRange(
  mem: PhysicalMemory,
  s: PagingState,
  gva: bigint | number,
  length: number,
  access: Access = {},
): RangeTranslation {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad length: ${length}`);
  const r = regs(s);
  const mode = modeOf(r);
  const wrap = mode === '4level' || mode === '5level' ? MASK64 : MASK32;
  let va = linear(mode, gva);
  let left = length;
  const pieces: { gpa: number; length: number }[] = [];
  while (left > 0) {
    const t = translateNormalised(mem, r, mode, va, access);
    if (!t.ok) return t;
    // The page's base is aligned to its size, so the offset in the page is the gpa's.
    const n = Math.min(left, t.pageSize - (t.gpa % t.pageSize));
    pieces.push({ gpa: t.gpa, length: n });
    left -= n;
    if (left > 0) va = (va + BigInt(n)) & wrap;
  }
  return { ok: true, pieces };
}

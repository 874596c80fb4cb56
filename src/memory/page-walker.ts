// Guest page-table walker (Intel SDM vol. 3, ch. 4): translates guest-virtual
// addresses (hypercall arguments) to guest-physical ones. Tables live in
// untrusted guest memory, so every malformed case yields a fault value.
// Not modelled: SMEP/SMAP, protection keys, PCID, TLBs, 1 GiB-page CPUID check.

export interface PagingState {
  cr0: bigint | number;
  cr3: bigint | number;
  cr4: bigint | number;
  efer: bigint | number;
  /** CPUID MAXPHYADDR; clamped to 32..52, default 52. */
  maxPhysAddrBits?: number;
}

export interface PhysicalMemory {
  /** undefined = not backed by RAM */
  readU32(gpa: number): number | undefined;
  readU64(gpa: number): bigint | undefined;
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

const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const EFER_LMA = 1n << 10n;
const EFER_NXE = 1n << 11n;

const PTE_P = 1n << 0n;
const PTE_RW = 1n << 1n;
const PTE_US = 1n << 2n;
const PTE_A = 1n << 5n;
const PTE_D = 1n << 6n;
const PTE_PS = 1n << 7n;
const PTE_NX = 1n << 63n;

const MASK32 = 0xffff_ffffn;
const MASK64 = (1n << 64n) - 1n;

/** Bits lo..hi inclusive (0n when the range is empty). */
function bits(lo: number, hi: number): bigint {
  if (hi < lo) return 0n;
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

function toU64(v: bigint | number): bigint {
  if (typeof v === 'bigint') return BigInt.asUintN(64, v);
  if (!Number.isInteger(v)) throw new RangeError(`not an integer: ${v}`);
  // Negative numbers wrap, so sign-extended kernel addresses work as numbers too.
  return BigInt.asUintN(64, BigInt(v));
}

function physBits(s: PagingState): number {
  const m = s.maxPhysAddrBits;
  if (m === undefined || !Number.isFinite(m)) return 52;
  return Math.min(52, Math.max(32, Math.trunc(m)));
}

interface Regs {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
  m: number;
}

function regs(s: PagingState): Regs {
  return { cr0: toU64(s.cr0), cr3: toU64(s.cr3), cr4: toU64(s.cr4), efer: toU64(s.efer), m: physBits(s) };
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

/** An entry consulted during the walk, remembered for A/D updates. */
interface Step {
  addr: number;
  entry: bigint;
  wide: boolean; // 64-bit entry
  hasA: boolean; // PAE PDPTEs have no Accessed bit
}

interface Leaf {
  base: bigint;
  pageSize: number;
  level: number;
  rw: boolean; // AND over all levels
  us: boolean; // AND over all levels
  nx: boolean; // OR over all levels
}

type WalkOutcome = { ok: true; leaf: Leaf } | { ok: false; kind: 'not-present' | 'rsvd' } | BadTable;

function walk32(mem: PhysicalMemory, r: Regs, va: bigint, steps: Step[]): WalkOutcome {
  const read = (addr: bigint): bigint | undefined => {
    const v = mem.readU32(Number(addr));
    return v === undefined ? undefined : BigInt(v >>> 0);
  };
  const pdeAddr = (r.cr3 & 0xffff_f000n) + ((va >> 22n) & 0x3ffn) * 4n;
  const pde = read(pdeAddr);
  if (pde === undefined) return { ok: false, fault: 'bad-table', gpa: Number(pdeAddr) };
  steps.push({ addr: Number(pdeAddr), entry: pde, wide: false, hasA: true });
  if (!(pde & PTE_P)) return { ok: false, kind: 'not-present' };
  if (pde & PTE_PS && r.cr4 & CR4_PSE) {
    // PSE-36: PDE bits 20:13 hold physical bits 39:32; those beyond MAXPHYADDR, and bit 21, are reserved.
    const m = Math.min(r.m, 40);
    if (pde & ((1n << 21n) | bits(13 + (m - 32), 20))) return { ok: false, kind: 'rsvd' };
    const base = (pde & 0xffc0_0000n) | (((pde >> 13n) & 0xffn) << 32n);
    return { ok: true, leaf: { base, pageSize: 4 << 20, level: 2, rw: !!(pde & PTE_RW), us: !!(pde & PTE_US), nx: false } };
  }
  const pteAddr = (pde & 0xffff_f000n) + ((va >> 12n) & 0x3ffn) * 4n;
  const pte = read(pteAddr);
  if (pte === undefined) return { ok: false, fault: 'bad-table', gpa: Number(pteAddr) };
  steps.push({ addr: Number(pteAddr), entry: pte, wide: false, hasA: true });
  if (!(pte & PTE_P)) return { ok: false, kind: 'not-present' };
  return {
    ok: true,
    leaf: {
      base: pte & 0xffff_f000n,
      pageSize: 4096,
      level: 1,
      rw: !!(pde & PTE_RW) && !!(pte & PTE_RW),
      us: !!(pde & PTE_US) && !!(pte & PTE_US),
      nx: false,
    },
  };
}

/** PAE, 4-level and 5-level paging (64-bit entries). */
function walk64(mem: PhysicalMemory, r: Regs, mode: PagingMode, va: bigint, steps: Step[]): WalkOutcome {
  const addrMask = bits(12, r.m - 1);
  // PAE reserves bits 62:M; long-mode paging leaves 62:52 to software.
  const highRsvd = mode === 'pae' ? bits(r.m, 62) : bits(r.m, 51);
  const nxRsvd = r.efer & EFER_NXE ? 0n : PTE_NX;
  const read = (addr: bigint): bigint | undefined => {
    const v = mem.readU64(Number(addr));
    return v === undefined ? undefined : BigInt.asUintN(64, v);
  };

  let table: bigint;
  let top: number;
  if (mode === 'pae') {
    // The PDPTE is a register-like entry: no R/W, U/S, NX or Accessed bits.
    const addr = (r.cr3 & 0xffff_ffe0n) + ((va >> 30n) & 3n) * 8n;
    const e = read(addr);
    if (e === undefined) return { ok: false, fault: 'bad-table', gpa: Number(addr) };
    steps.push({ addr: Number(addr), entry: e, wide: true, hasA: false });
    if (!(e & PTE_P)) return { ok: false, kind: 'not-present' };
    if (e & (bits(1, 2) | bits(5, 8) | bits(r.m, 63))) return { ok: false, kind: 'rsvd' };
    table = e & addrMask;
    top = 2;
  } else {
    table = r.cr3 & addrMask;
    top = mode === '5level' ? 5 : 4;
  }

  let rw = true;
  let us = true;
  let nx = false;
  for (let level = top; level >= 1; level--) {
    const shift = 12 + 9 * (level - 1);
    const addr = table + ((va >> BigInt(shift)) & 0x1ffn) * 8n;
    const e = read(addr);
    if (e === undefined) return { ok: false, fault: 'bad-table', gpa: Number(addr) };
    steps.push({ addr: Number(addr), entry: e, wide: true, hasA: true });
    if (!(e & PTE_P)) return { ok: false, kind: 'not-present' };
    const ps = level > 1 && !!(e & PTE_PS); // bit 7 of a PTE is PAT
    let rsvd = highRsvd | nxRsvd;
    if (level >= 4) rsvd |= PTE_PS;
    else if (ps) rsvd |= bits(13, shift - 1); // large-page frame must be size-aligned (bit 12 is PAT)
    if (e & rsvd) return { ok: false, kind: 'rsvd' };
    rw &&= !!(e & PTE_RW);
    us &&= !!(e & PTE_US);
    nx ||= !!(e & PTE_NX);
    if (level === 1 || ps) {
      const size = 1n << BigInt(shift);
      return { ok: true, leaf: { base: e & addrMask & ~(size - 1n), pageSize: Number(size), level, rw, us, nx } };
    }
    table = e & addrMask;
  }
  throw new Error('unreachable: level 1 is always a leaf');
}

function canonical(mode: PagingMode, va: bigint): boolean {
  if (mode === '4level') {
    const hi = va >> 47n;
    return hi === 0n || hi === (1n << 17n) - 1n;
  }
  if (mode === '5level') {
    const hi = va >> 56n;
    return hi === 0n || hi === 0xffn;
  }
  return true;
}

function setAccessedDirty(mem: PhysicalMemory, steps: Step[], dirty: boolean): void {
  if (!mem.writeU32 && !mem.writeU64) return;
  // Like Xen's guest walk but without cmpxchg: a racing guest update to the
  // same entry could be overwritten. Only entries needing a change are written.
  steps.forEach((s, i) => {
    if (!s.hasA) return;
    const v = s.entry | PTE_A | (dirty && i === steps.length - 1 ? PTE_D : 0n);
    if (v === s.entry) return;
    if (!s.wide) mem.writeU32?.(s.addr, Number(v & MASK32));
    else if (mem.writeU64) mem.writeU64(s.addr, v);
    else mem.writeU32?.(s.addr, Number(v & MASK32)); // A/D live in the low dword
  });
}

function translateNormalised(mem: PhysicalMemory, r: Regs, mode: PagingMode, va: bigint, access: Access): Translation {
  if (mode === 'none') return { ok: true, gpa: Number(va), pageSize: 4096, level: 0 };
  // Hardware raises #GP for non-canonical addresses; Xen's copy helpers
  // return -EFAULT either way, so report a page fault flagged nonCanonical.
  if (!canonical(mode, va)) return { ok: false, fault: 'page-fault', errorCode: 0, gva: va, nonCanonical: true };

  const nxe = mode !== '32bit' && !!(r.efer & EFER_NXE);
  const code = (access.write ? PFEC_WRITE : 0) | (access.user ? PFEC_USER : 0) | (access.fetch && nxe ? PFEC_INSN : 0);
  const pf = (extra: number): PageFault => ({ ok: false, fault: 'page-fault', errorCode: code | extra, gva: va });

  const steps: Step[] = [];
  const w = mode === '32bit' ? walk32(mem, r, va, steps) : walk64(mem, r, mode, va, steps);
  if (!w.ok) {
    if ('fault' in w) return w;
    return pf(w.kind === 'rsvd' ? PFEC_PRESENT | PFEC_RSVD : 0);
  }
  const { leaf } = w;
  if (access.user && !leaf.us) return pf(PFEC_PRESENT);
  if (access.write && !leaf.rw && (access.user || r.cr0 & CR0_WP)) return pf(PFEC_PRESENT);
  if (access.fetch && nxe && leaf.nx) return pf(PFEC_PRESENT);

  setAccessedDirty(mem, steps, !!access.write);
  const offset = va & BigInt(leaf.pageSize - 1);
  return { ok: true, gpa: Number(leaf.base | offset), pageSize: leaf.pageSize, level: leaf.level };
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
    const inPage = t.pageSize - Number(va & BigInt(t.pageSize - 1));
    const n = Math.min(left, inPage);
    pieces.push({ gpa: t.gpa, length: n });
    left -= n;
    va = (va + BigInt(n)) & wrap;
  }
  return { ok: true, pieces };
}

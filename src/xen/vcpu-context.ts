// VCPUOP_initialise for an HVM vCPU: the vcpu_hvm_context a guest passes,
// checked the way Xen checks it and turned into the register state the vCPU
// starts with (32-bit mode with explicit segments, or 64-bit mode with flat
// ones).
import type { Abi } from './abi/layout.js';
import { VCPU_HVM_MODE, vcpuHvmContext, vcpuHvmX86_32, vcpuHvmX86_64 } from './abi/vcpu.js';
import { XEN_ERRNO } from './abi/errno.js';
import { XenError } from './errors.js';
import type { CpuidEntry } from '../kvm/system.js';

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
  padding: number;
}

export interface StartState {
  regs: Record<'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rsp' | 'rbp' | 'rip' | 'rflags', bigint>;
  sregs: { cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; cr0: bigint; cr3: bigint; cr4: bigint; efer: bigint };
}

const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/**
 * LMA follows LME once paging is on, as KVM requires of a register state. (Xen sets it with LME
 * alone, which for a 32-bit context without paging is a state KVM refuses.)
 */
const longModeActive = (efer: bigint, cr0: bigint) => ((efer & EFER_LME) !== 0n && (cr0 & CR0_PG) !== 0n ? efer | EFER_LMA : efer & ~EFER_LMA);

/** What of the guest's CPUID Xen's checks of a context depend on: the CR4 and EFER bits its features allow. */
export interface GuestCpuPolicy {
  cr4Valid: bigint;
  eferValid: bigint;
}

/**
 * The CR4 and EFER bits a guest with this CPUID may set, as Xen derives them from its CPU policy
 * (hvm_cr4_guest_valid_bits, hvm_efer_valid): EFER's known bits are SCE, LME, LMA, NXE, SVME and
 * FFXSR; nested virtualization is off, so never VMXE or SVME.
 */
export function guestCpuPolicy(cpuid: readonly CpuidEntry[]): GuestCpuPolicy {
  const leaf = (fn: number, index = 0) => cpuid.find((e) => e.function === fn && (!e.indexed || e.index === index));
  const has = (reg: number | undefined, bit: number) => reg !== undefined && ((reg >>> bit) & 1) === 1;
  const l1 = leaf(1);
  const l7 = leaf(7, 0);
  const ext = leaf(0x8000_0001);
  const cr4: [boolean, bigint][] = [
    [has(l1?.edx, 1), 0x3n], // VME: VME and PVI
    [has(l1?.edx, 4), 0x4n], // TSC: TSD
    [has(l1?.edx, 2), 0x8n], // DE
    [has(l1?.edx, 3), 0x10n], // PSE
    [has(l1?.edx, 6), 0x20n], // PAE
    [has(l1?.edx, 7) || has(l1?.edx, 14), 0x40n], // MCE or MCA: MCE
    [has(l1?.edx, 13), 0x80n], // PGE
    [true, 0x100n], // PCE
    [has(l1?.edx, 24), 0x200n], // FXSR: OSFXSR
    [has(l1?.edx, 25), 0x400n], // SSE: OSXMMEXCPT
    [has(l7?.ecx, 2), 0x800n], // UMIP
    [has(l7?.ebx, 0), 0x1_0000n], // FSGSBASE
    [has(l1?.ecx, 17), 0x2_0000n], // PCID: PCIDE
    [has(l1?.ecx, 26), 0x4_0000n], // XSAVE: OSXSAVE
    [has(l7?.ebx, 7), 0x10_0000n], // SMEP
    [has(l7?.ebx, 20), 0x20_0000n], // SMAP
    [has(l7?.ecx, 3), 0x40_0000n], // PKU: PKE
    [has(l7?.ecx, 7) || has(l7?.edx, 20), 0x80_0000n], // CET shadow stacks or IBT: CET
  ];
  const efer: [boolean, bigint][] = [
    [has(ext?.edx, 11), 1n << 0n], // SYSCALL: SCE
    [has(ext?.edx, 29), EFER_LME | EFER_LMA], // LM
    [has(ext?.edx, 20), 1n << 11n], // NX: NXE
    [has(ext?.edx, 25), 1n << 14n], // FFXSR
  ];
  const bits = (list: [boolean, bigint][]) => list.reduce((all, [on, b]) => (on ? all | b : all), 0n);
  return { cr4Valid: bits(cr4), eferValid: bits(efer) };
}

/** A segment from Xen's access-rights encoding (descriptor bits 40–47 in 7:0, 52–55 in 11:8; 15:12 must be zero). */
function segment(base: number | bigint, limit: number, ar: number): Segment {
  if (ar & 0xf000) throw new XenError(XEN_ERRNO.EINVAL);
  return {
    base: BigInt(base), limit: limit >>> 0, selector: 0, type: ar & 0xf, s: (ar >> 4) & 1, dpl: (ar >> 5) & 3, present: (ar >> 7) & 1,
    avl: (ar >> 8) & 1, l: (ar >> 9) & 1, db: (ar >> 10) & 1, g: (ar >> 11) & 1, unusable: (ar >> 7) & 1 ? 0 : 1, padding: 0,
  };
}

type SegmentRole = 'cs' | 'ds' | 'es' | 'ss' | 'tr';

/**
 * A 32-bit context's segment, checked as Xen's check_segment does: attributes 0 (null) only for DS
 * and ES; TR a busy 32-bit TSS; the rest code or data, present, CS code, SS writable data, DS and ES
 * readable. A present segment gets its accessed bit (TR: busy), as Xen sets it.
 */
function checkedSegment(role: SegmentRole, base: number, limit: number, ar: number): Segment {
  const seg = segment(base, limit, ar);
  const refuse = () => {
    throw new XenError(XEN_ERRNO.EINVAL);
  };
  if (ar === 0) {
    if (role !== 'ds' && role !== 'es') refuse();
    return seg;
  }
  if (seg.present) seg.type |= role === 'tr' ? 2 : 1;
  if (role === 'tr') {
    if (seg.s || seg.type !== TSS_BUSY_32) refuse();
  } else if (!seg.s) refuse();
  if (!seg.present) refuse();
  const code = (seg.type & 8) !== 0;
  const writableOrReadable = (seg.type & 2) !== 0;
  if (role === 'cs' && !code) refuse();
  if (role === 'ss' && (code || !writableOrReadable)) refuse();
  if ((role === 'ds' || role === 'es') && code && !writableOrReadable) refuse();
  return seg;
}

const FLAT_CODE_64 = 0xa9b;
const FLAT_DATA = 0xc93;
const TSS_BUSY_64 = 0x8b;
/** System segment type of a busy 32-bit TSS (the type a 64-bit TSS shares). */
const TSS_BUSY_32 = 0xb;

/** Whether a 64-bit address is canonical (48 bits, sign-extended). */
const canonical = (va: bigint) => BigInt.asIntN(64, va) >> 47n === BigInt.asIntN(64, va) >> 63n;

/** Checks and converts a vcpu_hvm_context; XenError(EINVAL) where Xen's arch_set_info_hvm_guest refuses it. */
export function hvmContextToStart(abi: Abi, bytes: Uint8Array, policy: GuestCpuPolicy): StartState {
  const ctx = vcpuHvmContext[abi].decode(bytes);
  const refuse = () => {
    throw new XenError(XEN_ERRNO.EINVAL);
  };
  if (ctx.pad !== 0) refuse();
  let start: StartState;
  if (ctx.mode === VCPU_HVM_MODE['32B']) {
    const r = vcpuHvmX86_32[abi].decode(ctx.cpu_regs);
    if (r.pad1 !== 0 || r.pad2.some((p) => p !== 0)) refuse();
    const cs = checkedSegment('cs', r.cs_base, r.cs_limit, r.cs_ar);
    const ds = checkedSegment('ds', r.ds_base, r.ds_limit, r.ds_ar);
    const ss = checkedSegment('ss', r.ss_base, r.ss_limit, r.ss_ar);
    const es = checkedSegment('es', r.es_base, r.es_limit, r.es_ar);
    const tr = checkedSegment('tr', r.tr_base, r.tr_limit, r.tr_ar);
    const limit = cs.g ? ((cs.limit << 12) | 0xfff) >>> 0 : cs.limit;
    if (r.eip > limit || ss.dpl !== cs.dpl) refuse();
    if ((ds.present && ds.dpl > cs.dpl) || (es.present && es.dpl > cs.dpl)) refuse();
    if ((r.efer & EFER_LMA) !== 0n && (r.efer & EFER_LME) === 0n) refuse();
    start = {
      regs: {
        rax: BigInt(r.eax), rbx: BigInt(r.ebx), rcx: BigInt(r.ecx), rdx: BigInt(r.edx), rsi: BigInt(r.esi), rdi: BigInt(r.edi),
        rsp: BigInt(r.esp), rbp: BigInt(r.ebp), rip: BigInt(r.eip), rflags: BigInt(r.eflags) | 2n,
      },
      sregs: { cs, ds, es, fs: ds, gs: ds, ss, tr, cr0: BigInt(r.cr0), cr3: BigInt(r.cr3), cr4: BigInt(r.cr4), efer: longModeActive(r.efer, BigInt(r.cr0)) },
    };
  } else if (ctx.mode === VCPU_HVM_MODE['64B']) {
    const r = vcpuHvmX86_64[abi].decode(ctx.cpu_regs);
    // Long mode needs paging, PAE and LME together, and a canonical RIP.
    if (!canonical(r.rip) || !(r.cr0 & CR0_PG) || !(r.cr4 & CR4_PAE) || !(r.efer & EFER_LME)) refuse();
    const data = segment(0, 0xffffffff, FLAT_DATA);
    start = {
      regs: { rax: r.rax, rbx: r.rbx, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, rsp: r.rsp, rbp: r.rbp, rip: r.rip, rflags: r.rflags | 2n },
      sregs: {
        cs: segment(0, 0xffffffff, FLAT_CODE_64), ds: data, es: data, fs: data, gs: data, ss: data, tr: segment(0, 0x67, TSS_BUSY_64),
        cr0: r.cr0, cr3: r.cr3, cr4: r.cr4, efer: r.efer | EFER_LMA,
      },
    };
  } else return refuse();
  // CR4 and EFER may hold only what the guest's CPU features allow.
  if (start.sregs.cr4 & ~policy.cr4Valid || start.sregs.efer & ~policy.eferValid) refuse();
  return start;
}

// VCPUOP_initialise for an HVM vCPU: the vcpu_hvm_context a guest passes,
// checked the way Xen checks it and turned into the register state the vCPU
// starts with (32-bit mode with explicit segments, or 64-bit mode with flat
// ones).
import type { Abi } from './abi/layout.js';
import { VCPU_HVM_MODE, vcpuHvmContext, vcpuHvmX86_32, vcpuHvmX86_64 } from './abi/vcpu.js';
import { XEN_ERRNO } from './abi/errno.js';
import { XenError } from './errors.js';

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

const CR0_PE = 1n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/** LMA follows LME once paging is on (compatibility mode). */
const longModeActive = (efer: bigint, cr0: bigint) => ((efer & EFER_LME) !== 0n && (cr0 & CR0_PG) !== 0n ? efer | EFER_LMA : efer & ~EFER_LMA);

/** A segment from Xen's access-rights encoding (descriptor bits 40–47 in 7:0, 52–55 in 11:8). */
function segment(base: number | bigint, limit: number, ar: number): Segment {
  if (ar & 0xf000) throw new XenError(XEN_ERRNO.EINVAL);
  return {
    base: BigInt(base), limit: limit >>> 0, selector: 0, type: ar & 0xf, s: (ar >> 4) & 1, dpl: (ar >> 5) & 3, present: (ar >> 7) & 1,
    avl: (ar >> 8) & 1, l: (ar >> 9) & 1, db: (ar >> 10) & 1, g: (ar >> 11) & 1, unusable: (ar >> 7) & 1 ? 0 : 1, padding: 0,
  };
}

const FLAT_CODE_64 = 0xa9b;
const FLAT_DATA = 0xc93;
const TSS_BUSY_64 = 0x8b;

/** Checks and converts a vcpu_hvm_context; XenError(EINVAL) when Xen would refuse it. */
export function hvmContextToStart(abi: Abi, bytes: Uint8Array): StartState {
  const ctx = vcpuHvmContext[abi].decode(bytes);
  if (ctx.mode === VCPU_HVM_MODE['32B']) {
    const r = vcpuHvmX86_32[abi].decode(ctx.cpu_regs);
    const cs = segment(r.cs_base, r.cs_limit, r.cs_ar);
    if (!cs.present || !cs.s || !(cs.type & 8) || !(BigInt(r.cr0) & CR0_PE)) throw new XenError(XEN_ERRNO.EINVAL);
    const ds = segment(r.ds_base, r.ds_limit, r.ds_ar);
    return {
      regs: {
        rax: BigInt(r.eax), rbx: BigInt(r.ebx), rcx: BigInt(r.ecx), rdx: BigInt(r.edx), rsi: BigInt(r.esi), rdi: BigInt(r.edi),
        rsp: BigInt(r.esp), rbp: BigInt(r.ebp), rip: BigInt(r.eip), rflags: BigInt(r.eflags) | 2n,
      },
      sregs: {
        cs, ds, es: segment(r.es_base, r.es_limit, r.es_ar), fs: ds, gs: ds, ss: segment(r.ss_base, r.ss_limit, r.ss_ar),
        tr: segment(r.tr_base, r.tr_limit, r.tr_ar || TSS_BUSY_64),
        cr0: BigInt(r.cr0), cr3: BigInt(r.cr3), cr4: BigInt(r.cr4), efer: longModeActive(r.efer, BigInt(r.cr0)),
      },
    };
  }
  if (ctx.mode === VCPU_HVM_MODE['64B']) {
    const r = vcpuHvmX86_64[abi].decode(ctx.cpu_regs);
    // Long mode needs paging, PAE and LME together.
    if ((r.cr0 & (CR0_PG | CR0_PE)) !== (CR0_PG | CR0_PE) || !(r.cr4 & CR4_PAE) || !(r.efer & EFER_LME)) throw new XenError(XEN_ERRNO.EINVAL);
    const data = segment(0, 0xffffffff, FLAT_DATA);
    return {
      regs: { rax: r.rax, rbx: r.rbx, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, rsp: r.rsp, rbp: r.rbp, rip: r.rip, rflags: r.rflags | 2n },
      sregs: {
        cs: segment(0, 0xffffffff, FLAT_CODE_64), ds: data, es: data, fs: data, gs: data, ss: data, tr: segment(0, 0x67, TSS_BUSY_64),
        cr0: r.cr0, cr3: r.cr3, cr4: r.cr4, efer: r.efer | EFER_LMA,
      },
    };
  }
  throw new XenError(XEN_ERRNO.EINVAL);
}

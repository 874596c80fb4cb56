// VCPUOP_initialise's context checks, one rule of Xen's arch_set_info_hvm_guest
// at a time: a context that breaks it is -EINVAL, the same context without the
// break is accepted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CpuidEntry } from '../kvm/system.js';
import { XEN_ERRNO } from './abi/errno.js';
import { VCPU_HVM_MODE, vcpuHvmContext, vcpuHvmX86_32, vcpuHvmX86_64 } from './abi/vcpu.js';
import { XenError } from './errors.js';
import { guestCpuPolicy, hvmContextToStart, type GuestCpuPolicy } from './vcpu-context.js';

const CR4_PAE = 0x20n;
const CR4_OSXSAVE = 0x4_0000n;
const CR4_VMXE = 0x2000n;
const CR4_LA57 = 0x1000n;
const EFER_SCE = 1n;
const EFER_LME = 0x100n;
const EFER_LMA = 0x400n;
const EFER_NXE = 0x800n;
const EFER_SVME = 0x1000n;

/** A guest with PAE, PGE, FXSR, SSE, SYSCALL, NX and long mode, but no XSAVE. */
const CPUID: CpuidEntry[] = [
  { function: 1, index: 0, indexed: false, eax: 0, ebx: 0, ecx: 0, edx: (1 << 6) | (1 << 13) | (1 << 24) | (1 << 25) },
  { function: 0x8000_0001, index: 0, indexed: false, eax: 0, ebx: 0, ecx: 0, edx: (1 << 11) | (1 << 20) | (1 << 29) },
];
const POLICY: GuestCpuPolicy = guestCpuPolicy(CPUID);

const ctx64 = (over: Partial<Record<'rip' | 'cr0' | 'cr4' | 'efer', bigint>> = {}, pad = 0) => {
  const regs = { rax: 0n, rcx: 0n, rdx: 0n, rbx: 0n, rsp: 0x9000n, rbp: 0n, rsi: 0n, rdi: 0n, rip: 0x10_0000n, rflags: 2n, cr0: 0x8000_0011n, cr3: 0x1000n, cr4: CR4_PAE, efer: EFER_LME, ...over };
  return vcpuHvmContext.native.encode({ mode: VCPU_HVM_MODE['64B'], pad, cpu_regs: vcpuHvmX86_64.native.encode(regs) });
};

const CODE32 = 0xc9b; // present, DPL 0, code, readable, accessed, 32-bit, 4K granularity
const DATA32 = 0xc93;
const TSS32 = 0x8b;
type Regs32 = Parameters<(typeof vcpuHvmX86_32)['native']['encode']>[0];
const ctx32 = (over: Partial<Regs32> = {}) => {
  const regs: Regs32 = {
    eax: 0, ecx: 0, edx: 0, ebx: 0, esp: 0x9000, ebp: 0, esi: 0, edi: 0, eip: 0x10_0000, eflags: 2, cr0: 0x11, cr3: 0, cr4: 0, pad1: 0, efer: 0n,
    cs_base: 0, ds_base: 0, ss_base: 0, es_base: 0, tr_base: 0, cs_limit: 0xfffff, ds_limit: 0xfffff, ss_limit: 0xfffff, es_limit: 0xfffff, tr_limit: 0x67,
    cs_ar: CODE32, ds_ar: DATA32, ss_ar: DATA32, es_ar: DATA32, tr_ar: TSS32, pad2: [0, 0, 0], ...over,
  };
  return vcpuHvmContext.native.encode({ mode: VCPU_HVM_MODE['32B'], pad: 0, cpu_regs: vcpuHvmX86_32.native.encode(regs) });
};

const refused = (bytes: Uint8Array, why: string) =>
  assert.throws(() => hvmContextToStart('native', bytes, POLICY), (e: unknown) => e instanceof XenError && e.errno === XEN_ERRNO.EINVAL, why);

test('the CPU policy: CR4 and EFER bits only for the features the guest has; PCE always; never VMXE or SVME', () => {
  assert.equal(POLICY.cr4Valid, 0x20n | 0x80n | 0x100n | 0x200n | 0x400n);
  assert.equal(POLICY.eferValid, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE);
  const all = guestCpuPolicy([
    { function: 1, index: 0, indexed: false, eax: 0, ebx: 0, ecx: -1, edx: -1 },
    { function: 7, index: 0, indexed: true, eax: 0, ebx: -1, ecx: -1, edx: -1 },
    { function: 0x8000_0001, index: 0, indexed: false, eax: 0, ebx: 0, ecx: -1, edx: -1 },
  ]);
  assert.equal(all.cr4Valid & (CR4_VMXE | CR4_LA57), 0n);
  assert.equal(all.eferValid & EFER_SVME, 0n);
});

test('a 64-bit context: accepted with flat segments and LMA; refused with a non-canonical RIP, without PG, PAE or LME, or with pad set', () => {
  const start = hvmContextToStart('native', ctx64(), POLICY);
  assert.equal(start.sregs.efer, EFER_LME | EFER_LMA);
  assert.equal(start.sregs.cs.l, 1);
  assert.equal(hvmContextToStart('native', ctx64({ rip: 0xffff_8000_0000_0000n }), POLICY).regs.rip, 0xffff_8000_0000_0000n);
  refused(ctx64({ rip: 0x0000_8000_0000_0000n }), 'non-canonical RIP');
  refused(ctx64({ rip: 0xffff_7fff_ffff_f000n }), 'non-canonical RIP, high half');
  refused(ctx64({ cr0: 0x11n }), 'no paging');
  refused(ctx64({ cr4: 0n }), 'no PAE');
  refused(ctx64({ efer: 0n }), 'no LME');
  refused(ctx64({}, 1), 'pad');
});

test('CR4 and EFER: a bit the guest has no feature for, a reserved one, VMXE or SVME is -EINVAL', () => {
  assert.doesNotThrow(() => hvmContextToStart('native', ctx64({ cr4: CR4_PAE | 0x80n, efer: EFER_LME | EFER_NXE | EFER_SCE }), POLICY));
  for (const cr4 of [CR4_OSXSAVE, CR4_VMXE, CR4_LA57, 1n << 24n, 1n << 40n]) refused(ctx64({ cr4: CR4_PAE | cr4 }), `CR4 bit 0x${cr4.toString(16)}`);
  for (const efer of [EFER_SVME, 1n << 14n, 1n << 9n, 1n << 20n, 1n << 63n]) refused(ctx64({ efer: EFER_LME | efer }), `EFER bit 0x${efer.toString(16)}`);
});

test('a 32-bit context: accepted as given; accessed and busy bits set on present segments', () => {
  const start = hvmContextToStart('native', ctx32({ cs_ar: 0xc9a, ss_ar: 0xc92, tr_ar: 0x89 }), POLICY);
  assert.equal(start.sregs.cs.type, 0xb);
  assert.equal(start.sregs.ss.type, 0x3);
  assert.equal(start.sregs.tr.type, 0xb, 'an available TSS becomes busy');
  // Null DS and ES are fine; a real-mode start (PE clear) too, as Xen does not look at CR0 here.
  assert.doesNotThrow(() => hvmContextToStart('native', ctx32({ ds_ar: 0, es_ar: 0, cr0: 0 }), POLICY));
  // LME with paging off: not long mode.
  assert.equal(hvmContextToStart('native', ctx32({ efer: EFER_LME }), POLICY).sregs.efer, EFER_LME);
});

test('a 32-bit context: each of check_segment rules, the DPLs, the CS limit, padding and LMA without LME', () => {
  refused(ctx32({ cs_ar: 0 }), 'null CS');
  refused(ctx32({ ss_ar: 0 }), 'null SS');
  refused(ctx32({ tr_ar: 0 }), 'null TR');
  refused(ctx32({ cs_ar: 0xf000 | CODE32 }), 'attribute bits 12-15');
  refused(ctx32({ ds_ar: 0x1000 | DATA32 }), 'attribute bits 12-15 of DS');
  refused(ctx32({ tr_ar: DATA32 }), 'a data segment for TR');
  refused(ctx32({ tr_ar: 0x82 }), 'an LDT for TR');
  refused(ctx32({ cs_ar: 0x8b }), 'a system segment for CS');
  refused(ctx32({ cs_ar: CODE32 & ~0x80 }), 'CS not present');
  refused(ctx32({ cs_ar: DATA32 }), 'data for CS');
  refused(ctx32({ ss_ar: CODE32 }), 'code for SS');
  refused(ctx32({ ss_ar: 0xc91 }), 'read-only SS');
  refused(ctx32({ ds_ar: 0xc99 }), 'execute-only code for DS');
  assert.doesNotThrow(() => hvmContextToStart('native', ctx32({ ds_ar: CODE32 }), POLICY), 'readable code for DS is fine');
  refused(ctx32({ cs_limit: 0xff, cs_ar: 0x49b, eip: 0x100 }), 'EIP beyond a byte-granular CS limit');
  assert.doesNotThrow(() => hvmContextToStart('native', ctx32({ cs_limit: 0xff, cs_ar: 0x49b, eip: 0xff }), POLICY));
  refused(ctx32({ cs_limit: 0, eip: 0x1000 }), 'EIP beyond a page-granular CS limit');
  refused(ctx32({ ss_ar: DATA32 | 0x60 }), 'SS.DPL 3, CS.DPL 0');
  refused(ctx32({ ds_ar: DATA32 | 0x20 }), 'DS.DPL above CS.DPL');
  refused(ctx32({ es_ar: DATA32 | 0x40 }), 'ES.DPL above CS.DPL');
  assert.doesNotThrow(() => hvmContextToStart('native', ctx32({ cs_ar: CODE32 | 0x60, ss_ar: DATA32 | 0x60, ds_ar: DATA32 | 0x20 }), POLICY), 'DPL 3 CS and SS, DPL 1 DS');
  refused(ctx32({ pad1: 1 }), 'pad1');
  refused(ctx32({ pad2: [0, 1, 0] }), 'pad2');
  refused(ctx32({ efer: EFER_LMA }), 'LMA without LME');
  refused(ctx32({ cr4: Number(CR4_OSXSAVE) }), 'CR4 beyond the features');
});

test('an unknown mode is -EINVAL', () => {
  refused(vcpuHvmContext.native.encode({ mode: 7, pad: 0, cpu_regs: new Uint8Array(vcpuHvmContext.native.fields.cpu_regs.bytes) }), 'mode 7');
});

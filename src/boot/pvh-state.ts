// The boot vCPU's register state at the PVH entry point (Xen's PVH ABI,
// docs/misc/pvh.pandoc): 32-bit flat protected mode, paging off, interrupts
// off, %ebx = guest-physical address of hvm_start_info. A bzImage's 32-bit
// entry (the Linux boot protocol) is the same state with %esi = boot_params:
// the protocol's __BOOT_CS and __BOOT_DS are the selectors used here.
import type { kvmRegs, kvmSegment, kvmSregs } from '../kvm/abi.js';

type Segment = ReturnType<typeof kvmSegment.read>;
type Regs = ReturnType<typeof kvmRegs.read>;
type Sregs = ReturnType<typeof kvmSregs.read>;

const CR0_PE = 1n;
const CR0_ET = 1n << 4n;
const RFLAGS_RESERVED = 2n;

// Selectors are unspecified by the PVH ABI; these match a GDT with code at 0x10 and data at 0x18, as Linux's boot protocol wants.
const flat = (selector: number, type: number): Segment => ({
  base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, padding: 0,
});
const CODE_EXECUTE_READ_ACCESSED = 0xb;
const DATA_READ_WRITE_ACCESSED = 0x3;
const TSS_32_BUSY = 0xb;

export type BootState = { regs: Partial<Regs>; sregs: Partial<Sregs> };

export function pvhBootState(entry: number, startInfoPaddr: number): BootState {
  return flatBootState(entry, { rbx: BigInt(startInfoPaddr) });
}

/** A bzImage's 32-bit entry at code32_start with boot_params at `bootParamsPaddr`. */
export function bzImageBootState(entry: number, bootParamsPaddr: number): BootState {
  return flatBootState(entry, { rsi: BigInt(bootParamsPaddr) });
}

function flatBootState(entry: number, pointer: { rbx: bigint } | { rsi: bigint }): BootState {
  const data = flat(0x18, DATA_READ_WRITE_ACCESSED);
  return {
    regs: {
      rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n, ...pointer,
      r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
      rip: BigInt(entry),
      rflags: RFLAGS_RESERVED,
    },
    sregs: {
      cs: flat(0x10, CODE_EXECUTE_READ_ACCESSED),
      ds: data, es: data, fs: data, gs: data, ss: data,
      tr: { base: 0n, limit: 0x67, selector: 0x20, type: TSS_32_BUSY, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0, padding: 0 },
      cr0: CR0_PE | CR0_ET,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}

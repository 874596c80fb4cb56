// The hypercall page: one 32-byte stub per hypercall number, written into a
// guest page when the guest writes the Xen MSR. A stub loads the number into
// EAX and leaves the guest without touching any argument register; the result
// comes back in RAX. The same bytes run in 32- and 64-bit mode. Where KVM
// intercepts Xen hypercalls (CONFIG_KVM_XEN), the stub is Xen's own: VMCALL or
// VMMCALL, as the CPU's vendor has it, which KVM hands to the VMM as a Xen
// hypercall exit with the caller's CPL; all but sched_op's, because KVM keeps
// SCHEDOP_poll and SCHEDOP_yield from CPL 0 for itself, and without its own
// event channels in use its poll is a yield that returns at once (Linux 6.1,
// arch/x86/kvm/xen.c). Elsewhere KVM would answer those
// instructions itself, so the stub leaves with an `out` to the hypercall port;
// called from CPL > 0 it returns -EPERM itself, as Xen would, because `out`
// would fault there before the VMM ever saw it (the VMM still checks the CPL
// of every call).
import { HYPERCALL, HYPERCALL_ENTRY_SIZE, HYPERCALL_PAGE_ENTRIES } from './abi/hypercalls.js';

export const HYPERCALL_PORT = 0xe2;
/** The MSR whose write installs the page (CPUID leaf 0x40000002 EBX). */
export const HYPERCALL_MSR = 0x40000000;
const PAGE_SIZE = 4096;
const INT3 = 0xcc;

/** How the page's stubs leave the guest. */
export type HypercallEntry = 'out' | 'vmcall' | 'vmmcall';

const VMCALL = [0x0f, 0x01, 0xc1];
const VMMCALL = [0x0f, 0x01, 0xd9];

export function hypercallStub(nr: number, entry: HypercallEntry = 'out'): Uint8Array {
  const stub = new Uint8Array(HYPERCALL_ENTRY_SIZE).fill(INT3);
  if (entry !== 'out') {
    stub.set([
      0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, // mov $nr, %eax
      ...(entry === 'vmcall' ? VMCALL : VMMCALL),
      0xc3, //                   ret
    ]);
    return stub;
  }
  stub.set([
    0x8c, 0xc8, //             mov %cs, %eax
    0xa8, 0x03, //             test $3, %al          (CPL from the CS selector's RPL)
    0x75, 0x08, //             jnz 1f
    0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, // mov $nr, %eax
    0xe7, HYPERCALL_PORT, //   out %eax, $HYPERCALL_PORT
    0xc3, //                   ret
    0x48, 0x83, 0xc8, 0xff, // 1: or $-1, %rax (in 32-bit mode: dec %eax; or $-1, %eax): -EPERM
    0xc3, //                   ret
  ]);
  return stub;
}

export function hypercallPage(entry: HypercallEntry = 'out'): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  for (let nr = 0; nr < HYPERCALL_PAGE_ENTRIES; nr++) page.set(hypercallStub(nr, nr === HYPERCALL.sched_op ? 'out' : entry), nr * HYPERCALL_ENTRY_SIZE);
  return page;
}

/**
 * Where a write of `value` to the hypercall MSR asks for the page: the frame
 * in bits 63:12, the page index in 11:0. Xen offers one page, so any other
 * index is refused (#GP).
 */
export function hypercallPageTarget(value: bigint): number | undefined {
  if ((value & 0xfffn) !== 0n) return undefined;
  const gpa = value & ~0xfffn;
  return gpa < 1n << 52n ? Number(gpa) : undefined;
}

// Hypercall numbers (xen.h __HYPERVISOR_*). The guest passes one in eax/rax
// after calling into its hypercall page, whose entry for hypercall n lives at
// n * HYPERCALL_ENTRY_SIZE.
import { nameOf } from './layout.js';

export const HYPERCALL = {
  set_trap_table: 0,
  mmu_update: 1,
  set_gdt: 2,
  stack_switch: 3,
  set_callbacks: 4,
  fpu_taskswitch: 5,
  sched_op_compat: 6,
  platform_op: 7,
  set_debugreg: 8,
  get_debugreg: 9,
  update_descriptor: 10,
  memory_op: 12,
  multicall: 13,
  update_va_mapping: 14,
  set_timer_op: 15,
  event_channel_op_compat: 16,
  xen_version: 17,
  console_io: 18,
  physdev_op_compat: 19,
  grant_table_op: 20,
  vm_assist: 21,
  update_va_mapping_otherdomain: 22,
  iret: 23,
  vcpu_op: 24,
  set_segment_base: 25,
  mmuext_op: 26,
  xsm_op: 27,
  nmi_op: 28,
  sched_op: 29,
  callback_op: 30,
  xenoprof_op: 31,
  event_channel_op: 32,
  physdev_op: 33,
  hvm_op: 34,
  sysctl: 35,
  domctl: 36,
  kexec_op: 37,
  tmem_op: 38,
  argo_op: 39,
  xenpmu_op: 40,
  dm_op: 41,
  hypfs_op: 42,
  arch_0: 48,
  arch_1: 49,
  arch_2: 50,
  arch_3: 51,
  arch_4: 52,
  arch_5: 53,
  arch_6: 54,
  arch_7: 55,
  /** x86: arch_0 is the machine-check hypercall (arch-x86/xen-mca.h). */
  mca: 48,
} as const;

export type HypercallName = keyof typeof HYPERCALL;

/** Bytes per hypercall-page entry; one 4 KiB page holds 128 entries (Xen's convention, not in the public headers). */
export const HYPERCALL_ENTRY_SIZE = 32;
export const HYPERCALL_PAGE_ENTRIES = 4096 / HYPERCALL_ENTRY_SIZE;

/** For logs: "memory_op", or "hypercall#44" for a number Xen does not define. */
export function hypercallName(nr: number): string {
  return nameOf(HYPERCALL, nr) ?? `hypercall#${nr}`;
}

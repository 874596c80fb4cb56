// What a Xen domain is told about the hypervisor and itself.
import type { GrantTableHandle } from './gnttab/table.js';
import type { PvclockParams } from './time.js';
import type { HypercallEntry } from './hypercall-page.js';
import type { GuestCpuPolicy } from './vcpu-context.js';

export interface XenConfig {
  /** The Xen version the guest sees (CPUID and XENVER_version). */
  version: { major: number; minor: number };
  /** This domain's id (never 0: a guest of xenkvm is always a domU). */
  domid: number;
  /** The domain handle (XENVER_guest_handle), a UUID. */
  handle: Uint8Array;
  /** TSC frequency of the guest, for the time leaf and pvclock. */
  tscKhz: number;
  /** The one time base of every vcpu_time_info, the line KVM keeps the vCPUs' TSCs on: system time 0 is when the VM was built. */
  pvclock: PvclockParams;
  /** Whether KVM kept every vCPU's TSC in step when the domain was built (KVM_CLOCK_TSC_STABLE): XEN_PVCLOCK_TSC_STABLE_BIT. */
  tscStable: boolean;
  /** Host real time at system time 0, for the wallclock. */
  bootWallNs: bigint;
  /** Host monotonic time (CLOCK_MONOTONIC_RAW) at system time 0. */
  bootMonotonicNs: bigint;
  /**
   * Whether KVM writes every vcpu_time_info the guest reads, from its kvmclock (the `time` fast path),
   * set to system time at start; xenkvm then writes none.
   */
  kvmTime: boolean;
  /** Whether the VMM registers IPI and loopback ports with the accelerator, so their sends skip the main thread. */
  evtchnFastPath: boolean;
  /** Whether the guest may switch to the FIFO event-channel ABI; without it, as Xen built without CONFIG_EVTCHN_FIFO. */
  evtchnFifo: boolean;
  /** The grant table: its state, its overlay pages (from firstPage) and the most shared frames it may grow to (xl's max_grant_frames). */
  grantTable: GrantTableHandle;
  /** The CR4 and EFER bits the guest's CPUID allows, for the checks of VCPUOP_initialise. */
  cpuPolicy: GuestCpuPolicy;
  /** How the hypercall page's stubs reach the VMM: VMCALL/VMMCALL where KVM intercepts Xen hypercalls, else `out`. */
  hypercallEntry: HypercallEntry;
}

export const DEFAULT_XEN_VERSION = { major: 4, minor: 17 };
export const DOMU_ID = 1;

/** "4.17" → {4, 17}; undefined when malformed or out of range. */
export function parseXenVersion(text: string): { major: number; minor: number } | undefined {
  const m = /^(\d{1,4})\.(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major <= 0xffff && minor <= 0xffff ? { major, minor } : undefined;
}

// The parts of Xen that KVM's own Xen support (CONFIG_KVM_XEN) can serve in the
// kernel, with no exit to xenkvm: each behind a switch (--kvm-fast-paths), so
// that each can be measured against xenkvm's own path and turned off to debug.
// KVM serves them only where its Xen support intercepts the guest's hypercalls.
import { xenHvmConfig } from '../kvm/abi.js';

/** Each fast path, with the KVM_CAP_XEN_HVM flag the host's KVM must report for it. */
export const KVM_FAST_PATHS = {
  /** xen_version(XENVER_version), the null hypercall, answered by KVM from kernel mode (KVM_XEN_ATTR_TYPE_XEN_VERSION). */
  version: xenHvmConfig.EVTCHN_SEND,
  /**
   * Every vcpu_time_info the guest reads (in its vcpu_info, registered or in shared_info, and in its
   * secondary time area) written by KVM from its kvmclock as the vCPU enters, rather than by xenkvm
   * (KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO and VCPU_TIME_INFO). KVM's other Xen fast paths need this:
   * KVM writes the time into any vcpu_info it holds.
   */
  time: xenHvmConfig.SHARED_INFO,
  /**
   * Each vCPU's singleshot timer (VCPUOP_set_singleshot_timer, stop_singleshot_timer, set_timer_op)
   * kept and fired by KVM, which raises VIRQ_TIMER itself (KVM_XEN_VCPU_ATTR_TYPE_TIMER), while the
   * guest uses the 2-level event ABI (the only one KVM delivers) and a per-vCPU upcall vector (which
   * KVM injects). Needs `time`, which it brings along.
   */
  timer: xenHvmConfig.EVTCHN_SEND,
  /**
   * Event channels delivered by KVM while the guest uses the 2-level ABI and KVM holds shared_info, for
   * each vCPU whose upcall is a per-vCPU vector its LAPIC has taken: the guest's EVTCHNOP_send on an IPI
   * or loopback port bound to one and its SCHEDOP_poll are served in the kernel (KVM_XEN_HVM_CONFIG_EVTCHN_SEND,
   * KVM_XEN_ATTR_TYPE_EVTCHN), and xenkvm's own events for those vCPUs go through KVM
   * (KVM_XEN_HVM_EVTCHN_SEND), which wakes the vCPUs polling for them. Needs `time`, which it brings along.
   */
  evtchn: xenHvmConfig.EVTCHN_SEND,
  /**
   * shared_info, and each vcpu_info in its slot there, given to KVM by host address
   * (KVM_XEN_ATTR_TYPE_SHARED_INFO_HVA, KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA) rather than by guest frame:
   * the page is an overlay at a fixed host address, so moving it in the guest's physical space tells KVM
   * nothing, and KVM keeps its mapping of it. Needs `time`, which it brings along.
   */
  'shinfo-hva': xenHvmConfig.SHARED_INFO_HVA,
} as const;

export type KvmFastPath = keyof typeof KVM_FAST_PATHS;
export const ALL_KVM_FAST_PATHS = Object.keys(KVM_FAST_PATHS) as KvmFastPath[];

/** Whether KVM raises the domain's events itself with these fast paths on (its timer's, or every one it can). */
export function kvmRaisesEvents(on: readonly KvmFastPath[]): boolean {
  return on.includes('timer') || on.includes('evtchn');
}

/** What a fast path needs KVM to do as well: KVM writes its time into any vcpu_info it holds. */
const NEEDS: Partial<Record<KvmFastPath, KvmFastPath>> = { timer: 'time', evtchn: 'time', 'shinfo-hva': 'time' };

/** `all`, `none`, or a comma-separated list of fast paths (with those they need); undefined when a name is unknown. */
export function parseKvmFastPaths(value: string): KvmFastPath[] | undefined {
  if (value === 'all') return [...ALL_KVM_FAST_PATHS];
  if (value === 'none') return [];
  const names = value.split(',').map((n) => n.trim());
  if (!names.every((n): n is KvmFastPath => Object.hasOwn(KVM_FAST_PATHS, n))) return undefined;
  return [...new Set(names.flatMap((n) => [n, NEEDS[n] ?? n]))];
}

/** Which of `wanted` the host's KVM (its KVM_CAP_XEN_HVM flags) can serve, and which it cannot. */
export function kvmFastPathsOn(wanted: readonly KvmFastPath[], hostFlags: number): { on: KvmFastPath[]; unavailable: KvmFastPath[] } {
  const has = (p: KvmFastPath) => (hostFlags & KVM_FAST_PATHS[p]) !== 0 && (hostFlags & xenHvmConfig.INTERCEPT_HCALL) !== 0;
  const on = wanted.filter((p) => has(p) && (NEEDS[p] === undefined || has(NEEDS[p])));
  return { on, unavailable: wanted.filter((p) => !on.includes(p)) };
}

// The CPUID leaves Xen shows an HVM guest, at 0x40000000 (no Viridian, so the
// first 0x100-aligned base is Xen's).
import type { CpuidEntry } from '../kvm/system.js';
import { XEN_CPUID_FIRST_LEAF, XEN_CPUID_LEAF, XEN_CPUID_MAX_NUM_LEAVES, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX, XEN_CPUID_TIME_FLAG, XEN_CPUID_TSC_MODE, XEN_HVM_CPUID } from './abi/cpuid.js';
import type { XenConfig } from './config.js';
import { HYPERCALL_MSR } from './hypercall-page.js';
import { tscScale } from './time.js';

export function xenCpuidLeaves(config: XenConfig, vcpu: number): CpuidEntry[] {
  const leaf = (i: number, index: number, eax: number, ebx = 0, ecx = 0, edx = 0, indexed = false): CpuidEntry => ({
    function: XEN_CPUID_FIRST_LEAF + i, index, indexed, eax: eax >>> 0, ebx: ebx >>> 0, ecx: ecx >>> 0, edx: edx >>> 0,
  });
  const scale = tscScale(config.tscKhz * 1000);
  return [
    leaf(XEN_CPUID_LEAF.signature, 0, XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX),
    leaf(XEN_CPUID_LEAF.version, 0, (config.version.major << 16) | config.version.minor),
    leaf(XEN_CPUID_LEAF.hypercall, 0, 1, HYPERCALL_MSR),
    // The TSC is never emulated; it is reliable (Xen: host_tsc_is_safe) where KVM keeps the vCPUs' TSCs in step.
    leaf(XEN_CPUID_LEAF.time, 0, config.tscStable ? XEN_CPUID_TIME_FLAG.tsc_reliable : 0, XEN_CPUID_TSC_MODE.default, config.tscKhz, 0, true),
    leaf(XEN_CPUID_LEAF.time, 1, 0, 0, scale.mul, scale.shift & 0xff, true),
    leaf(XEN_CPUID_LEAF.time, 2, config.tscKhz, 0, 0, 0, true),
    leaf(XEN_CPUID_LEAF.hvm, 0, XEN_HVM_CPUID.VCPU_ID_PRESENT | XEN_HVM_CPUID.DOMID_PRESENT | XEN_HVM_CPUID.UPCALL_VECTOR, vcpu, config.domid, 0, true),
    // Leaf 5 holds PV-only parameters: empty for an HVM guest.
    leaf(XEN_CPUID_MAX_NUM_LEAVES, 0, 0, 0, 0, 0, true),
  ];
}

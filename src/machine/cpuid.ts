// The CPUID a vCPU sees: what KVM supports, with the vCPU's own APIC id, and
// the hypervisor range (0x40000000–0x4fffffff) replaced by the VMM's leaves,
// so the guest never sees KVM's signature.
import type { CpuidEntry } from '../kvm/system.js';

export const HYPERVISOR_LEAF_FIRST = 0x40000000;
export const HYPERVISOR_LEAF_LAST = 0x4fffffff;

export function vcpuCpuid(supported: readonly CpuidEntry[], apicId: number, hypervisorLeaves: readonly CpuidEntry[]): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  for (const e of supported) {
    if (e.function >= HYPERVISOR_LEAF_FIRST && e.function <= HYPERVISOR_LEAF_LAST) continue;
    const entry = { ...e };
    if (e.function === 1) entry.ebx = ((e.ebx & 0x00ffffff) | (apicId << 24)) >>> 0;
    // Extended topology leaves report the x2APIC id in EDX.
    if (e.function === 0xb || e.function === 0x1f) entry.edx = apicId;
    out.push(entry);
  }
  return out.concat(hypervisorLeaves);
}

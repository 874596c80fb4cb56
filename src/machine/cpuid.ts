// The CPUID a vCPU sees: what KVM supports, fixed up for a guest the way QEMU and
// Firecracker fix it, with the hypervisor range (0x40000000–0x4fffffff) replaced by
// the VMM's leaves, so the guest never sees KVM's signature.
//
// KVM_GET_SUPPORTED_CPUID describes the host, not a guest: it never sets the
// hypervisor bit (leaf 1 ECX[31]; only the newest kernels report it), and it gives no
// guest topology (upstream KVM zeroes leaves 0xB, 0x1F and 0x8000001E; leaf 1 EBX and
// the core counts of leaves 4 and 0x80000008 are the host's). Every field that states
// an APIC id or a processor count is therefore set here, for one package of `vcpus`
// single-threaded cores in which vCPU i has APIC id i, as the MADT says. Only leaves
// KVM reports are changed; none is added. Bits KVM computes itself at run time (OSXSAVE
// and the APIC bit in leaf 1, the XSAVE sizes in leaf 0xD) are left to it.
import { cpuVendor, type CpuidEntry } from '../kvm/system.js';

export const HYPERVISOR_LEAF_FIRST = 0x40000000;
export const HYPERVISOR_LEAF_LAST = 0x4fffffff;

/** Leaf 1 ECX: a hypervisor is present (the guest looks at 0x40000000 only when it is set). */
export const CPUID_1_ECX_HYPERVISOR = 1 << 31;
/** Leaf 1 EDX: EBX[23:16] (logical processors per package) is valid. */
export const CPUID_1_EDX_HTT = 1 << 28;

/** Bits needed to number `n` ids (the shift past them in an APIC id). */
function idBits(n: number): number {
  return n <= 1 ? 0 : 32 - Math.clz32(n - 1);
}

export function vcpuCpuid(supported: readonly CpuidEntry[], apicId: number, vcpus: number, hypervisorLeaves: readonly CpuidEntry[]): CpuidEntry[] {
  const amd = cpuVendor(supported) === 'amd';
  const out: CpuidEntry[] = [];
  for (const e of supported) {
    if (e.function >= HYPERVISOR_LEAF_FIRST && e.function <= HYPERVISOR_LEAF_LAST) continue;
    const entry = { ...e };
    switch (e.function) {
      case 1:
        // EBX: APIC id in [31:24], logical processors per package in [23:16], CLFLUSH size kept.
        entry.ebx = ((e.ebx & 0xffff) | (Math.min(vcpus, 0xff) << 16) | ((apicId & 0xff) << 24)) >>> 0;
        entry.ecx = (e.ecx | CPUID_1_ECX_HYPERVISOR) >>> 0;
        entry.edx = (vcpus > 1 ? e.edx | CPUID_1_EDX_HTT : e.edx & ~CPUID_1_EDX_HTT) >>> 0;
        break;
      case 4:
        // Deterministic cache parameters (Intel): EAX[31:26] is cores per package − 1, in every valid subleaf.
        if (e.eax & 0x1f) entry.eax = ((e.eax & 0x03ff_ffff) | (Math.min(vcpus - 1, 0x3f) << 26)) >>> 0;
        break;
      case 0xb:
      case 0x1f: {
        // Extended topology: the x2APIC id in EDX of every subleaf. A level KVM reports (old KVMs pass the
        // host's) is restated for our topology: one thread per core, every other level the whole package.
        const type = (e.ecx >>> 8) & 0xff;
        if (type === 1) [entry.eax, entry.ebx] = [0, 1];
        else if (type !== 0) [entry.eax, entry.ebx] = [idBits(vcpus), vcpus];
        entry.edx = apicId >>> 0;
        break;
      }
      case 0x80000008:
        // AMD: ECX[15:12] APIC id bits for the core, [7:0] cores per package − 1.
        if (amd) entry.ecx = ((e.ecx & ~0xf0ff) | (idBits(vcpus) << 12) | (vcpus - 1)) >>> 0;
        break;
      case 0x8000001e:
        // AMD extended APIC id: EAX the APIC id, EBX the core id (one thread per core), ECX node 0 of 1.
        if (amd) [entry.eax, entry.ebx, entry.ecx, entry.edx] = [apicId >>> 0, apicId & 0xff, 0, 0];
        break;
    }
    out.push(entry);
  }
  return out.concat(hypervisorLeaves);
}

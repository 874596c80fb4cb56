// Xen's CPUID leaves (arch-x86/cpuid.h). They start at XEN_CPUID_FIRST_LEAF
// (or 0x100 higher when Viridian leaves are offered first); the header counts
// them from 1, this file by their offset from the base leaf.

export const XEN_CPUID_FIRST_LEAF = 0x40000000;
/** Leaf base+0 ebx/ecx/edx: "XenVMMXenVMM". eax is the highest Xen leaf. */
export const XEN_CPUID_SIGNATURE_EBX = 0x566e6558; // "XenV"
export const XEN_CPUID_SIGNATURE_ECX = 0x65584d4d; // "MMXe"
export const XEN_CPUID_SIGNATURE_EDX = 0x4d4d566e; // "nVMM"
export const XEN_CPUID_SIGNATURE = 'XenVMMXenVMM';
/** Leaves base+0 ... base+XEN_CPUID_MAX_NUM_LEAVES exist. */
export const XEN_CPUID_MAX_NUM_LEAVES = 5;

/** Offset of each leaf from the base. */
export const XEN_CPUID_LEAF = {
  /** eax: highest leaf; ebx..edx: signature. */
  signature: 0,
  /** eax: major << 16 | minor. */
  version: 1,
  /** eax: number of hypercall pages (1); ebx: the hypercall MSR; ecx: FEAT1 flags; edx: features 2. */
  hypercall: 2,
  /** Subleaf 0: eax TSC flags, ebx tsc_mode, ecx guest TSC kHz, edx incarnation;
   *  subleaf 1: eax/ebx TSC offset lo/hi, ecx mul, edx shift; subleaf 2: eax host TSC kHz. */
  time: 3,
  /** Subleaf 0: eax XEN_HVM_CPUID_* flags, ebx vcpu id, ecx domid. */
  hvm: 4,
  /** Subleaf 0: eax max subleaf, ebx[7:0] machine address width (PV). */
  pv: 5,
} as const;

/** Leaf base+2 ecx. */
export const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD = 1 << 0;

/** Leaf base+3 subleaf 0 eax bits and ebx tsc_mode values (documented in the header's comments only). */
export const XEN_CPUID_TIME_FLAG = { emulated_tsc: 1 << 0, tsc_reliable: 1 << 1, rdtscp: 1 << 2 } as const;
export const XEN_CPUID_TSC_MODE = { default: 0, always_emulate: 1, never_emulate: 2, pvrdtscp: 3 } as const;

/** Leaf base+4 subleaf 0 eax. */
export const XEN_HVM_CPUID = {
  APIC_ACCESS_VIRT: 1 << 0,
  X2APIC_VIRT: 1 << 1,
  IOMMU_MAPPINGS: 1 << 2,
  VCPU_ID_PRESENT: 1 << 3,
  DOMID_PRESENT: 1 << 4,
  EXT_DEST_ID: 1 << 5,
  UPCALL_VECTOR: 1 << 6,
} as const;

/** Leaf base+5 subleaf 0 ebx. */
export const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK = 0xff;

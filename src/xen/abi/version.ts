// xen_version (hypercall 17): sub-ops, their buffers, and the feature bits
// XENVER_get_features reports (version.h, features.h).
import { both, xstruct, ulong, type Abi } from './layout.js';

export const XENVER = {
  version: 0,
  extraversion: 1,
  compile_info: 2,
  capabilities: 3,
  changeset: 4,
  platform_parameters: 5,
  get_features: 6,
  pagesize: 7,
  guest_handle: 8,
  commandline: 9,
  build_id: 10,
} as const;

/** Sizes of the char-array results. */
export const XEN_EXTRAVERSION_LEN = 16;
export const XEN_CAPABILITIES_INFO_LEN = 1024;
export const XEN_CHANGESET_INFO_LEN = 64;
export const XEN_COMMANDLINE_LEN = 1024;
/** xen_domain_handle_t for XENVER_guest_handle. */
export const XEN_GUEST_HANDLE_LEN = 16;

export const xenCompileInfo = both((abi) =>
  xstruct('xen_compile_info', abi, {
    compiler: { bytes: 64 },
    compile_by: { bytes: 16 },
    compile_domain: { bytes: 32 },
    compile_date: { bytes: 32 },
  }),
);

const defPlatformParameters = <A extends Abi>(abi: A) => xstruct('xen_platform_parameters', abi, { virt_start: ulong(abi) });
export const xenPlatformParameters = { native: defPlatformParameters('native'), compat: defPlatformParameters('compat') } as const;

export const xenFeatureInfo = both((abi) => xstruct('xen_feature_info', abi, { submap_idx: 'u32', submap: 'u32' }));

/** XENVER_build_id: the guest says how big buf is; the id bytes follow len. */
export const xenBuildId = both((abi) => xstruct('xen_build_id', abi, { len: 'u32' }));

/** Bit numbers in the feature submaps (32 bits per submap). */
export const XENFEAT = {
  writable_page_tables: 0,
  writable_descriptor_tables: 1,
  auto_translated_physmap: 2,
  supervisor_mode_kernel: 3,
  pae_pgdir_above_4gb: 4,
  mmu_pt_update_preserve_ad: 5,
  highmem_assist: 6,
  gnttab_map_avail_bits: 7,
  hvm_callback_vector: 8,
  hvm_safe_pvclock: 9,
  hvm_pirqs: 10,
  dom0: 11,
  memory_op_vnode_supported: 13,
  ARM_SMCCC_supported: 14,
  linux_rsdp_unrestricted: 15,
  not_direct_mapped: 16,
  direct_mapped: 17,
} as const;

export const XENFEAT_NR_SUBMAPS = 1;

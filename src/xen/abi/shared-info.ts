// shared_info, vcpu_info and vcpu_time_info (xen.h, arch-x86/xen*.h): the
// pages Xen and the guest share for event delivery and time.
import { both, ulong, xstruct, ULONG_BYTES, type Abi, type PerAbi } from './layout.js';
import { XEN_LEGACY_MAX_VCPUS } from './xen.js';

/** 32 bytes in both ABIs. Readers retry while `version` is odd or changed. */
export const vcpuTimeInfo = both((abi) =>
  xstruct('vcpu_time_info', abi, {
    version: 'u32',
    pad0: 'u32',
    tsc_timestamp: 'u64',
    system_time: 'u64',
    tsc_to_system_mul: 'u32',
    tsc_shift: 'i8',
    flags: 'u8',
    pad1: { array: 'u8', count: 2 },
  }),
);

/** vcpu_time_info.flags. */
export const XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0;
export const XEN_PVCLOCK_GUEST_STOPPED = 1 << 1;

/** native: cr2 and one pad word (16 bytes); compat: cr2 and five pad words (24 bytes). */
const defArchVcpuInfo = <A extends Abi>(abi: A) =>
  xstruct('arch_vcpu_info', abi, { cr2: ulong(abi), pad: { array: ulong(abi), count: abi === 'native' ? 1 : 5 } });
export const archVcpuInfo = { native: defArchVcpuInfo('native'), compat: defArchVcpuInfo('compat') } as const;

/** 64 bytes in both ABIs; pending_sel and arch differ, time is at 32 in both. */
const defVcpuInfo = <A extends Abi>(abi: A) =>
  xstruct('vcpu_info', abi, {
    evtchn_upcall_pending: 'u8',
    evtchn_upcall_mask: 'u8',
    /** One bit per word of evtchn_pending that may have a pending port. */
    evtchn_pending_sel: ulong(abi),
    arch: { struct: defArchVcpuInfo(abi) },
    time: { struct: vcpuTimeInfo[abi] },
  });
export const vcpuInfo = { native: defVcpuInfo('native'), compat: defVcpuInfo('compat') } as const;

const archSharedCommon = <A extends Abi>(abi: A) => ({
  max_pfn: ulong(abi),
  pfn_to_mfn_frame_list_list: ulong(abi),
  nmi_reason: ulong(abi),
  p2m_cr3: ulong(abi),
  p2m_vaddr: ulong(abi),
  p2m_generation: ulong(abi),
});
/** compat appends wc_sec_hi here, since its shared_info has no room for it. */
export const archSharedInfo = {
  native: xstruct('arch_shared_info', 'native', archSharedCommon('native')),
  compat: xstruct('arch_shared_info', 'compat', { ...archSharedCommon('compat'), wc_sec_hi: 'u32' }),
} as const;

/** 2-level event channels: one xen_ulong_t of pending (and mask) bits per selector bit. */
export const EVTCHN_2L_WORDS: PerAbi<number> = { native: 64, compat: 32 };

const sharedHead = <A extends Abi>(abi: A) => ({
  vcpu_info: { bytes: XEN_LEGACY_MAX_VCPUS * vcpuInfo[abi].size, align: vcpuInfo[abi].align },
  evtchn_pending: { array: ulong(abi), count: EVTCHN_2L_WORDS[abi] },
  evtchn_mask: { array: ulong(abi), count: EVTCHN_2L_WORDS[abi] },
  wc_version: 'u32',
  wc_sec: 'u32',
  wc_nsec: 'u32',
} as const);

/** native 3136 bytes, compat 2344; both fit in the one shared_info page. */
export const sharedInfo = {
  native: xstruct('shared_info', 'native', {
    ...sharedHead('native'),
    wc_sec_hi: 'u32',
    arch: { struct: archSharedInfo.native },
  }),
  compat: xstruct('shared_info', 'compat', {
    ...sharedHead('compat'),
    arch: { struct: archSharedInfo.compat },
  }),
} as const;

/** Byte offsets in the shared_info page of what the VMM writes. */
export interface SharedInfoLayout {
  /** vcpu_info of vCPU i (i < XEN_LEGACY_MAX_VCPUS). */
  vcpuInfo(i: number): number;
  evtchnPending: number;
  evtchnMask: number;
  /** Bits in one evtchn_pending/evtchn_mask/selector word. */
  wordBits: number;
  wcVersion: number;
  wcSec: number;
  wcNsec: number;
  /** native: in shared_info; compat: in arch_shared_info. */
  wcSecHi: number;
}

function layout(abi: Abi): SharedInfoLayout {
  const si = sharedInfo[abi];
  const o = si.offsets;
  const base = o.vcpu_info;
  const step = vcpuInfo[abi].size;
  return {
    vcpuInfo(i: number) {
      if (!Number.isInteger(i) || i < 0 || i >= XEN_LEGACY_MAX_VCPUS) throw new RangeError(`no vcpu_info for vCPU ${i} in shared_info`);
      return base + i * step;
    },
    evtchnPending: o.evtchn_pending,
    evtchnMask: o.evtchn_mask,
    wordBits: ULONG_BYTES[abi] * 8,
    wcVersion: o.wc_version,
    wcSec: o.wc_sec,
    wcNsec: o.wc_nsec,
    wcSecHi: abi === 'native' ? sharedInfo.native.offsets.wc_sec_hi : o.arch + archSharedInfo.compat.offsets.wc_sec_hi,
  };
}

export const sharedInfoLayout: PerAbi<SharedInfoLayout> = { native: layout('native'), compat: layout('compat') };

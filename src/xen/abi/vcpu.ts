// vcpu_op (hypercall 24): sub-ops, argument structs, the runstate area
// (vcpu.h) and the HVM context VCPUOP_initialise takes (hvm/hvm_vcpu.h).
import { both, xstruct, type Abi } from './layout.js';

export const VCPUOP = {
  initialise: 0,
  up: 1,
  down: 2,
  is_up: 3,
  get_runstate_info: 4,
  register_runstate_memory_area: 5,
  set_periodic_timer: 6,
  stop_periodic_timer: 7,
  set_singleshot_timer: 8,
  stop_singleshot_timer: 9,
  register_vcpu_info: 10,
  send_nmi: 11,
  get_physid: 12,
  register_vcpu_time_memory_area: 13,
} as const;

export const RUNSTATE = { running: 0, runnable: 1, blocked: 2, offline: 3 } as const;

/** Set in state_entry_time while Xen rewrites the area (VMASST_TYPE_runstate_update_flag). */
export const XEN_RUNSTATE_UPDATE = 1n << 63n;

/** native 48 bytes; compat 44, everything after `state` moved up by 4. */
export const vcpuRunstateInfo = both((abi) =>
  xstruct('vcpu_runstate_info', abi, {
    state: 'i32',
    state_entry_time: 'u64',
    /** Nanoseconds spent in each RUNSTATE_*. */
    time: { array: 'u64', count: 4 },
  }),
);

/**
 * A union of a handle, a pointer and a u64, so 8 bytes in both ABIs; a 32-bit
 * guest's address is in the low 4 bytes.
 */
export const vcpuRegisterRunstateMemoryArea = both((abi) =>
  xstruct('vcpu_register_runstate_memory_area', abi, { addr: 'u64' }),
);

export const vcpuSetPeriodicTimer = both((abi) => xstruct('vcpu_set_periodic_timer', abi, { period_ns: 'u64' }));

/** native 16 bytes, compat 12 (no tail padding). */
export const vcpuSetSingleshotTimer = both((abi) =>
  xstruct('vcpu_set_singleshot_timer', abi, { timeout_abs_ns: 'u64', flags: 'u32' }),
);

/** vcpu_set_singleshot_timer.flags: fail with -ETIME if the timeout is already in the past. */
export const VCPU_SSHOTTMR_future = 1 << 0;

/** The vcpu_info goes at guest frame `mfn`, byte `offset`. */
export const vcpuRegisterVcpuInfo = both((abi) =>
  xstruct('vcpu_register_vcpu_info', abi, { mfn: 'u64', offset: 'u32', rsvd: 'u32' }),
);

/** phys_id: x86 APIC id in bits 31:0, ACPI id in bits 63:32. */
export const vcpuGetPhysid = both((abi) => xstruct('vcpu_get_physid', abi, { phys_id: 'u64' }));

/** Like the runstate area: a union with a u64, 8 bytes in both ABIs. */
export const vcpuRegisterTimeMemoryArea = both((abi) =>
  xstruct('vcpu_register_time_memory_area', abi, { addr: 'u64' }),
);

/** VCPUOP_initialise for an HVM guest: vcpu_hvm_context.mode. */
export const VCPU_HVM_MODE = { '32B': 0, '64B': 1 } as const;

export const vcpuHvmX86_32 = both((abi) =>
  xstruct('vcpu_hvm_x86_32', abi, {
    eax: 'u32', ecx: 'u32', edx: 'u32', ebx: 'u32', esp: 'u32', ebp: 'u32', esi: 'u32', edi: 'u32',
    eip: 'u32', eflags: 'u32', cr0: 'u32', cr3: 'u32', cr4: 'u32', pad1: 'u32',
    efer: 'u64',
    cs_base: 'u32', ds_base: 'u32', ss_base: 'u32', es_base: 'u32', tr_base: 'u32',
    cs_limit: 'u32', ds_limit: 'u32', ss_limit: 'u32', es_limit: 'u32', tr_limit: 'u32',
    /** Access rights: descriptor bits 40-47 in 7:0, bits 52-55 in 11:8. */
    cs_ar: 'u16', ds_ar: 'u16', ss_ar: 'u16', es_ar: 'u16', tr_ar: 'u16',
    pad2: { array: 'u16', count: 3 },
  }),
);

/** Starts the vCPU in 64-bit mode with flat segments. */
export const vcpuHvmX86_64 = both((abi) =>
  xstruct('vcpu_hvm_x86_64', abi, {
    rax: 'u64', rcx: 'u64', rdx: 'u64', rbx: 'u64', rsp: 'u64', rbp: 'u64', rsi: 'u64', rdi: 'u64',
    rip: 'u64', rflags: 'u64', cr0: 'u64', cr3: 'u64', cr4: 'u64', efer: 'u64',
  }),
);

const defVcpuHvmContext = (abi: Abi) =>
  xstruct('vcpu_hvm_context', abi, {
    mode: 'u32',
    pad: 'u32',
    /** Union of vcpuHvmX86_32 and vcpuHvmX86_64, chosen by mode. */
    cpu_regs: { bytes: Math.max(vcpuHvmX86_32[abi].size, vcpuHvmX86_64[abi].size), align: 8 },
  });
export const vcpuHvmContext = both(defVcpuHvmContext);

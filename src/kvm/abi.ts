// The KVM uAPI for x86-64 (linux/kvm.h): ioctl numbers, capabilities, exit
// reasons and struct layouts. kvm-abi.test.ts checks every value here against
// the system's own <linux/kvm.h>.
import { struct } from '../common/struct.js';

const KVMIO = 0xae;
const IOC_WRITE = 1;
const IOC_READ = 2;
function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number) => ioc(0, nr, 0);
const iow = (nr: number, size: number) => ioc(IOC_WRITE, nr, size);
const ior = (nr: number, size: number) => ioc(IOC_READ, nr, size);
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, nr, size);

export const KVM_API_VERSION = 12;

export const ioctls = {
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, 8),
  KVM_CREATE_VCPU: io(0x41),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, 32),
  KVM_SET_TSS_ADDR: io(0x47),
  KVM_SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  KVM_CREATE_IRQCHIP: io(0x60),
  KVM_IRQ_LINE: iow(0x61, 8),
  KVM_SET_GSI_ROUTING: iow(0x6a, 8),
  KVM_CREATE_PIT2: iow(0x77, 64),
  KVM_IRQFD: iow(0x76, 32),
  KVM_SIGNAL_MSI: iow(0xa5, 32),
  KVM_ENABLE_CAP: iow(0xa3, 104),
  KVM_X86_SET_MSR_FILTER: iow(0xc6, 392),
  KVM_SET_CLOCK: iow(0x7b, 48),
  KVM_GET_CLOCK: ior(0x7c, 48),
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, 144),
  KVM_SET_REGS: iow(0x82, 144),
  KVM_GET_SREGS: ior(0x83, 312),
  KVM_SET_SREGS: iow(0x84, 312),
  KVM_GET_MSRS: iowr(0x88, 8),
  KVM_SET_MSRS: iow(0x89, 8),
  KVM_SET_SIGNAL_MASK: iow(0x8b, 4),
  KVM_SET_CPUID2: iow(0x90, 8),
  KVM_GET_MP_STATE: ior(0x98, 4),
  KVM_SET_MP_STATE: iow(0x99, 4),
  KVM_GET_TSC_KHZ: io(0xa3),
  KVM_GET_VCPU_EVENTS: ior(0x9f, 64),
  KVM_SET_VCPU_EVENTS: iow(0xa0, 64),
  KVM_GET_STATS_FD: io(0xce),
  KVM_XEN_HVM_CONFIG: iow(0x7a, 56),
  KVM_XEN_HVM_SET_ATTR: iow(0xc9, 72),
  KVM_XEN_VCPU_GET_ATTR: iowr(0xca, 72),
  KVM_XEN_VCPU_SET_ATTR: iow(0xcb, 72),
  KVM_XEN_HVM_EVTCHN_SEND: iow(0xd0, 12),
} as const;

export const caps = {
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_SET_TSS_ADDR: 4,
  KVM_CAP_EXT_CPUID: 7,
  KVM_CAP_NR_VCPUS: 9,
  KVM_CAP_NR_MEMSLOTS: 10,
  KVM_CAP_MP_STATE: 14,
  KVM_CAP_IRQ_ROUTING: 25,
  KVM_CAP_PIT2: 33,
  KVM_CAP_XEN_HVM: 38,
  KVM_CAP_ADJUST_CLOCK: 39,
  KVM_CAP_VCPU_EVENTS: 41,
  KVM_CAP_GET_TSC_KHZ: 61,
  KVM_CAP_MAX_VCPUS: 66,
  KVM_CAP_SYNC_REGS: 74,
  KVM_CAP_SIGNAL_MSI: 77,
  KVM_CAP_IRQFD_RESAMPLE: 82,
  KVM_CAP_HYPERV_SYNIC: 123,
  KVM_CAP_MAX_VCPU_ID: 128,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_X86_USER_SPACE_MSR: 188,
  KVM_CAP_X86_MSR_FILTER: 189,
  KVM_CAP_ENFORCE_PV_FEATURE_CPUID: 190,
  KVM_CAP_EXIT_ON_EMULATION_FAILURE: 204,
} as const;

export const exitReasons = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  IOAPIC_EOI: 26,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
  X86_BUS_LOCK: 33,
  XEN: 34,
  NOTIFY: 37,
  MEMORY_FAULT: 39,
} as const;

/** Names for reporting exits, including ones xenkvm never expects. */
export const exitReasonNames: Record<number, string> = {
  ...Object.fromEntries(Object.entries(exitReasons).map(([k, v]) => [v, k])),
  13: 'S390_SIEIC', 14: 'S390_RESET', 15: 'DCR', 18: 'OSI', 19: 'PAPR_HCALL', 20: 'S390_UCONTROL',
  21: 'WATCHDOG', 22: 'S390_TSCH', 23: 'EPR', 25: 'S390_STSI', 27: 'HYPERV', 28: 'ARM_NISV',
  31: 'DIRTY_RING_FULL', 32: 'AP_RESET_HOLD', 35: 'RISCV_SBI', 36: 'RISCV_CSR', 38: 'LOONGARCH_IOCSR',
};

export const internalErrors = {
  EMULATION: 1,
  SIMUL_EX: 2,
  DELIVERY_EV: 3,
  UNEXPECTED_EXIT_REASON: 4,
  EMULATION_FLAG_INSTRUCTION_BYTES: 1,
} as const;

export const systemEvents = { SHUTDOWN: 1, RESET: 2, CRASH: 3, WAKEUP: 4, SUSPEND: 5, SEV_TERM: 6 } as const;

export const msrExit = { INVAL: 1, UNKNOWN: 2, FILTER: 4 } as const;
export const msrFilter = {
  DEFAULT_ALLOW: 0,
  DEFAULT_DENY: 1,
  READ: 1,
  WRITE: 2,
  MAX_RANGES: 16,
  MAX_BITMAP_BYTES: 0x600,
} as const;

/** KVM_CAP_XEN_HVM's answer and kvm_xen_hvm_config.flags: which of KVM's Xen support the host kernel has (CONFIG_KVM_XEN). */
export const xenHvmConfig = {
  HYPERCALL_MSR: 1 << 0,
  INTERCEPT_HCALL: 1 << 1,
  SHARED_INFO: 1 << 2,
  RUNSTATE: 1 << 3,
  EVTCHN_2LEVEL: 1 << 4,
  EVTCHN_SEND: 1 << 5,
  SHARED_INFO_HVA: 1 << 8,
} as const;
/** kvm_xen_hvm_attr.type: the VM-wide Xen state KVM keeps (KVM_XEN_HVM_SET_ATTR). XEN_VERSION needs EVTCHN_SEND, SHARED_INFO_HVA its flag. */
export const xenHvmAttrTypes = { LONG_MODE: 0, SHARED_INFO: 1, UPCALL_VECTOR: 2, EVTCHN: 3, XEN_VERSION: 4, SHARED_INFO_HVA: 6 } as const;
/**
 * kvm_xen_vcpu_attr.type: one vCPU's Xen state KVM keeps (KVM_XEN_VCPU_SET_ATTR). The first six need
 * SHARED_INFO, VCPU_INFO_HVA SHARED_INFO_HVA, the rest EVTCHN_SEND.
 */
export const xenVcpuAttrTypes = {
  VCPU_INFO: 0, VCPU_TIME_INFO: 1, RUNSTATE_ADDR: 2, RUNSTATE_CURRENT: 3, RUNSTATE_DATA: 4, RUNSTATE_ADJUST: 5, VCPU_ID: 6, TIMER: 7, UPCALL_VECTOR: 8,
  VCPU_INFO_HVA: 9,
} as const;
/** A guest-physical address or frame in a Xen attribute that makes KVM forget the area (the kernel's GPA_INVALID, all ones). */
export const KVM_XEN_NO_GPA = 0xffff_ffff_ffff_ffffn;
/** An event channel's priority under the 2-level ABI, the only one KVM delivers (kvm_xen_vcpu_attr.u.timer.priority). */
export const KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL = 0xffff_ffff;

/** kvm_run.xen.type of a hypercall the guest made with VMCALL/VMMCALL. */
export const KVM_EXIT_XEN_HCALL = 1;

export const syncRegs = { REGS: 1, SREGS: 2, EVENTS: 4 } as const;
export const mpStates = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;

export const kvmRegs = struct('kvm_regs', {
  rax: 'u64', rbx: 'u64', rcx: 'u64', rdx: 'u64', rsi: 'u64', rdi: 'u64', rsp: 'u64', rbp: 'u64',
  r8: 'u64', r9: 'u64', r10: 'u64', r11: 'u64', r12: 'u64', r13: 'u64', r14: 'u64', r15: 'u64',
  rip: 'u64', rflags: 'u64',
});

export const kvmSegment = struct('kvm_segment', {
  base: 'u64', limit: 'u32', selector: 'u16', type: 'u8', present: 'u8', dpl: 'u8', db: 'u8', s: 'u8',
  l: 'u8', g: 'u8', avl: 'u8', unusable: 'u8', padding: 'u8',
});

export const kvmDtable = struct('kvm_dtable', { base: 'u64', limit: 'u16', padding: { array: 'u16', count: 3 } });

export const kvmSregs = struct('kvm_sregs', {
  cs: { struct: kvmSegment }, ds: { struct: kvmSegment }, es: { struct: kvmSegment }, fs: { struct: kvmSegment },
  gs: { struct: kvmSegment }, ss: { struct: kvmSegment }, tr: { struct: kvmSegment }, ldt: { struct: kvmSegment },
  gdt: { struct: kvmDtable }, idt: { struct: kvmDtable },
  cr0: 'u64', cr2: 'u64', cr3: 'u64', cr4: 'u64', cr8: 'u64', efer: 'u64', apic_base: 'u64',
  interrupt_bitmap: { array: 'u64', count: 4 },
});

export const kvmCpuidEntry2 = struct('kvm_cpuid_entry2', {
  function: 'u32', index: 'u32', flags: 'u32', eax: 'u32', ebx: 'u32', ecx: 'u32', edx: 'u32',
  padding: { array: 'u32', count: 3 },
});
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

export const kvmCpuid2Header = struct('kvm_cpuid2', { nent: 'u32', padding: 'u32' });

export const kvmUserspaceMemoryRegion = struct('kvm_userspace_memory_region', {
  slot: 'u32', flags: 'u32', guest_phys_addr: 'u64', memory_size: 'u64', userspace_addr: 'u64',
});

export const kvmMsi = struct('kvm_msi', {
  address_lo: 'u32', address_hi: 'u32', data: 'u32', flags: 'u32', devid: 'u32', pad: { bytes: 12 },
});

export const kvmEnableCap = struct('kvm_enable_cap', {
  cap: 'u32', flags: 'u32', args: { array: 'u64', count: 4 }, pad: { bytes: 64 },
});

export const kvmIrqLevel = struct('kvm_irq_level', { irq: 'u32', level: 'u32' });

/** KVM_CREATE_PIT2's argument. */
export const kvmPitConfig = struct('kvm_pit_config', { flags: 'u32', pad: { array: 'u32', count: 15 } });
/** kvm_pit_config.flags: KVM answers port 0x61 too (channel 2's gate and OUT2; the speaker itself is silent). */
export const KVM_PIT_SPEAKER_DUMMY = 1;

/** KVM_SET_GSI_ROUTING: this header, then `nr` entries. */
export const kvmIrqRouting = struct('kvm_irq_routing', { nr: 'u32', flags: 'u32' });
/** One route of a GSI; for an irqchip route, `u` holds kvmIrqRoutingIrqchip. */
export const kvmIrqRoutingEntry = struct('kvm_irq_routing_entry', { gsi: 'u32', type: 'u32', flags: 'u32', pad: 'u32', u: { bytes: 32, align: 4 } });
export const kvmIrqRoutingIrqchip = struct('kvm_irq_routing_irqchip', { irqchip: 'u32', pin: 'u32' });
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
/** KVM's in-kernel interrupt controllers, as routes name them. */
export const irqchips = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;
/** Pins of KVM's in-kernel IOAPIC: GSIs 0–23. */
export const KVM_IOAPIC_NUM_PINS = 24;

export const kvmMsrFilterRange = struct('kvm_msr_filter_range', {
  flags: 'u32', nmsrs: 'u32', base: 'u32', bitmap: 'u64',
});
export const kvmMsrFilter = struct('kvm_msr_filter', {
  flags: 'u32',
  ranges: { bytes: kvmMsrFilterRange.size * msrFilter.MAX_RANGES, align: 8 },
});

export const kvmMsrsHeader = struct('kvm_msrs', { nmsrs: 'u32', pad: 'u32' });
export const kvmMsrEntry = struct('kvm_msr_entry', { index: 'u32', reserved: 'u32', data: 'u64' });

export const kvmVcpuEvents = struct('kvm_vcpu_events', {
  exception_injected: 'u8', exception_nr: 'u8', exception_has_error_code: 'u8', exception_pending: 'u8',
  exception_error_code: 'u32',
  interrupt_injected: 'u8', interrupt_nr: 'u8', interrupt_soft: 'u8', interrupt_shadow: 'u8',
  nmi_injected: 'u8', nmi_pending: 'u8', nmi_masked: 'u8', nmi_pad: 'u8',
  sipi_vector: 'u32', flags: 'u32',
  smi: { bytes: 4 },
  triple_fault_pending: 'u8', reserved: { bytes: 26 },
  exception_has_payload: 'u8', exception_payload: 'u64',
});

export const kvmXenHvmConfig = struct('kvm_xen_hvm_config', {
  flags: 'u32', msr: 'u32', blob_addr_32: 'u64', blob_addr_64: 'u64', blob_size_32: 'u8', blob_size_64: 'u8', pad2: { bytes: 30 },
});

/** KVM_IRQFD: an eventfd that raises `gsi` when written; with RESAMPLE, KVM holds the line until the guest EOIs it, then signals resamplefd. */
export const kvmIrqfd = struct('kvm_irqfd', { fd: 'u32', gsi: 'u32', flags: 'u32', resamplefd: 'u32', pad: { bytes: 16 } });
export const irqfdFlags = { DEASSIGN: 1 << 0, RESAMPLE: 1 << 1 } as const;

/**
 * kvm_xen_hvm_attr with its union read as one little-endian u64 (`value`): every scalar member
 * (long_mode, vector, shared_info.gfn, xen_version) starts at the union's first byte.
 */
export const kvmXenHvmAttr = struct('kvm_xen_hvm_attr', {
  type: 'u16', pad: { array: 'u16', count: 3 }, value: 'u64', rest: { bytes: 56 },
});

/**
 * kvm_xen_hvm_attr of type EVTCHN: a port the guest sends on (EVTCHNOP_send) that KVM serves itself,
 * raising `deliver_port` (an IPI's own port, or the local end of a loopback interdomain channel) on
 * `deliver_vcpu`; `evtchn_type` is Xen's EVTCHNSTAT_ipi or EVTCHNSTAT_interdomain.
 */
export const kvmXenHvmAttrEvtchn = struct('kvm_xen_hvm_attr', {
  type: 'u16', pad: { array: 'u16', count: 3 }, send_port: 'u32', evtchn_type: 'u32', flags: 'u32',
  deliver_port: 'u32', deliver_vcpu: 'u32', deliver_priority: 'u32', rest: { bytes: 40 },
});
/** kvm_xen_hvm_attr.u.evtchn.flags: none assigns a port; DEASSIGN forgets one, UPDATE retargets one, RESET forgets them all. */
export const xenEvtchnFlags = { DEASSIGN: 1 << 0, UPDATE: 1 << 1, RESET: 1 << 2 } as const;

/** KVM_XEN_HVM_EVTCHN_SEND's argument: an event KVM raises as the guest's own send would (2-level priority only). */
export const kvmIrqRoutingXenEvtchn = struct('kvm_irq_routing_xen_evtchn', { port: 'u32', vcpu: 'u32', priority: 'u32' });

/**
 * kvm_xen_vcpu_attr with its union read as little-endian u64s: `value` holds gpa, vector, or the
 * timer's port (low half) and priority (high half); `value2` the timer's expires_ns.
 */
export const kvmXenVcpuAttr = struct('kvm_xen_vcpu_attr', {
  type: 'u16', pad: { array: 'u16', count: 3 }, value: 'u64', value2: 'u64', rest: { bytes: 48 },
});

/** KVM_GET_CLOCK: kvmclock now, and whether KVM keeps the vCPUs' TSCs in step (flags). */
export const kvmClockData = struct('kvm_clock_data', {
  clock: 'u64', flags: 'u32', pad0: 'u32', realtime: 'u64', host_tsc: 'u64', pad: { array: 'u32', count: 4 },
});
/** kvm_clock_data.flags: TSC_STABLE, KVM's master clock is in use (a host TSC clocksource and every vCPU's TSC matched). */
export const kvmClockFlags = { TSC_STABLE: 2, REALTIME: 1 << 2, HOST_TSC: 1 << 3 } as const;

export const kvmStatsHeader = struct('kvm_stats_header', {
  flags: 'u32', name_size: 'u32', num_desc: 'u32', id_offset: 'u32', desc_offset: 'u32', data_offset: 'u32',
});
/** Followed by name_size bytes of NUL-terminated name. */
export const kvmStatsDesc = struct('kvm_stats_desc', { flags: 'u32', exponent: 'i16', size: 'u16', offset: 'u32', bucket_size: 'u32' });

/** Offsets into the shared kvm_run page (x86-64). */
export const kvmRun = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  exit: 32, // the per-exit union
  io: { direction: 32, size: 33, port: 34, count: 36, data_offset: 40 },
  mmio: { phys_addr: 32, data: 40, len: 48, is_write: 52 },
  hw: { hardware_exit_reason: 32 },
  fail_entry: { hardware_entry_failure_reason: 32, cpu: 40 },
  ex: { exception: 32, error_code: 36 },
  internal: { suberror: 32, ndata: 36, data: 40 },
  emulation_failure: { suberror: 32, ndata: 36, flags: 40, insn_size: 48, insn_bytes: 49 },
  system_event: { type: 32, ndata: 36, data: 40 },
  msr: { error: 32, reason: 40, index: 44, data: 48 },
  xen: { type: 32, longmode: 40, cpl: 44, input: 48, result: 56, params: 64 },
  kvm_valid_regs: 288,
  kvm_dirty_regs: 296,
  sync_regs: 304,
  size: 2352,
} as const;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

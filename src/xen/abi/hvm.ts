// hvm_op (hypercall 34): sub-ops, argument structs and HVM parameters
// (hvm/hvm_op.h, hvm/params.h).
import { both, xstruct } from './layout.js';

export const HVMOP = {
  set_param: 0,
  get_param: 1,
  flush_tlbs: 5,
  pagetable_dying: 9,
  get_time: 10,
  xentrace: 11,
  set_mem_access: 12,
  get_mem_access: 13,
  get_mem_type: 15,
  set_evtchn_upcall_vector: 23,
  guest_request_vm_event: 24,
  altp2m: 25,
} as const;

/** Same layout in both ABIs: value is 8-aligned by position. */
export const xenHvmParam = both((abi) =>
  xstruct('xen_hvm_param', abi, { domid: 'u16', pad: 'u16', index: 'u32', value: 'u64' }),
);

export const xenHvmPagetableDying = both((abi) =>
  xstruct('xen_hvm_pagetable_dying', abi, { domid: 'u16', pad: { array: 'u16', count: 3 }, gpa: 'u64' }),
);

export const xenHvmGetTime = both((abi) => xstruct('xen_hvm_get_time', abi, { now: 'u64' }));

export const xenHvmGetMemType = both((abi) =>
  xstruct('xen_hvm_get_mem_type', abi, { domid: 'u16', mem_type: 'u16', pad: { array: 'u16', count: 2 }, pfn: 'u64' }),
);

/** HVMOP_set_evtchn_upcall_vector: per-vCPU LAPIC vector for event upcalls. */
export const xenHvmEvtchnUpcallVector = both((abi) =>
  xstruct('xen_hvm_evtchn_upcall_vector', abi, { vcpu: 'u32', vector: 'u8' }),
);

/** hvmmem_type_t, returned by HVMOP_get_mem_type. */
export const HVMMEM = { ram_rw: 0, ram_ro: 1, mmio_dm: 2, unused: 3, ioreq_server: 4 } as const;

/** HVM parameter indices. */
export const HVM_PARAM = {
  CALLBACK_IRQ: 0,
  STORE_PFN: 1,
  STORE_EVTCHN: 2,
  PAE_ENABLED: 4,
  IOREQ_PFN: 5,
  BUFIOREQ_PFN: 6,
  VIRIDIAN: 9,
  TIMER_MODE: 10,
  HPET_ENABLED: 11,
  IDENT_PT: 12,
  DM_DOMAIN: 13,
  ACPI_S_STATE: 14,
  VM86_TSS: 15,
  VPT_ALIGN: 16,
  CONSOLE_PFN: 17,
  CONSOLE_EVTCHN: 18,
  ACPI_IOPORTS_LOCATION: 19,
  MEMORY_EVENT_CR0: 20,
  MEMORY_EVENT_CR3: 21,
  MEMORY_EVENT_CR4: 22,
  MEMORY_EVENT_INT3: 23,
  NESTEDHVM: 24,
  MEMORY_EVENT_SINGLE_STEP: 25,
  BUFIOREQ_EVTCHN: 26,
  PAGING_RING_PFN: 27,
  MONITOR_RING_PFN: 28,
  SHARING_RING_PFN: 29,
  MEMORY_EVENT_MSR: 30,
  TRIPLE_FAULT_REASON: 31,
  IOREQ_SERVER_PFN: 32,
  NR_IOREQ_SERVER_PAGES: 33,
  VM_GENERATION_ID_ADDR: 34,
  ALTP2M: 35,
  X87_FIP_WIDTH: 36,
  VM86_TSS_SIZED: 37,
  MCA_CAP: 38,
} as const;

export const HVM_NR_PARAMS = 39;

/** HVM_PARAM_TIMER_MODE values. */
export const HVMPTM = {
  delay_for_missed_ticks: 0,
  no_delay_for_missed_ticks: 1,
  no_missed_ticks_pending: 2,
  one_missed_tick_pending: 3,
} as const;

/**
 * HVM_PARAM_CALLBACK_IRQ: 0 disables the callback; otherwise bits 63:56 are
 * the type and the rest depends on it:
 *   GSI       bits 55:0 the GSI (never 0)
 *   PCI_INTX  bits 47:32 PCI domain, 31:16 bus, 15:8 devfn, 1:0 INTx pin
 *   VECTOR    bits 7:0 the vector, injected directly (XENFEAT_hvm_callback_vector)
 */
export const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK = 0xff00_0000_0000_0000n;
export const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT = 56n;
export const HVM_PARAM_CALLBACK_TYPE = { GSI: 0, PCI_INTX: 1, VECTOR: 2 } as const;

export type CallbackIrq =
  | { type: 'none' }
  | { type: 'gsi'; gsi: number }
  | { type: 'pci_intx'; domain: number; bus: number; devfn: number; intx: number }
  | { type: 'vector'; vector: number }
  | { type: 'unknown'; typeCode: number; value: bigint };

export function decodeCallbackIrq(value: bigint): CallbackIrq {
  const v = BigInt.asUintN(64, value);
  if (v === 0n) return { type: 'none' };
  const typeCode = Number(v >> HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT);
  const low = Number(v & 0xffff_ffffn);
  switch (typeCode) {
    case HVM_PARAM_CALLBACK_TYPE.GSI:
      return { type: 'gsi', gsi: Number(v & 0x00ff_ffff_ffff_ffffn) };
    case HVM_PARAM_CALLBACK_TYPE.PCI_INTX:
      return { type: 'pci_intx', domain: Number((v >> 32n) & 0xffffn), bus: low >>> 16, devfn: (low >>> 8) & 0xff, intx: low & 3 };
    case HVM_PARAM_CALLBACK_TYPE.VECTOR:
      return { type: 'vector', vector: low & 0xff };
    default:
      return { type: 'unknown', typeCode, value: v };
  }
}

export function encodeCallbackIrq(cb: CallbackIrq): bigint {
  const typed = (t: number, rest: bigint) => (BigInt(t) << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) | rest;
  switch (cb.type) {
    case 'none': return 0n;
    case 'gsi': return typed(HVM_PARAM_CALLBACK_TYPE.GSI, BigInt(cb.gsi));
    case 'pci_intx':
      return typed(HVM_PARAM_CALLBACK_TYPE.PCI_INTX,
        (BigInt(cb.domain & 0xffff) << 32n) | BigInt(((cb.bus & 0xffff) << 16 | (cb.devfn & 0xff) << 8 | (cb.intx & 3)) >>> 0));
    case 'vector': return typed(HVM_PARAM_CALLBACK_TYPE.VECTOR, BigInt(cb.vector & 0xff));
    case 'unknown': return cb.value;
  }
}

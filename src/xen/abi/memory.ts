// memory_op (hypercall 12): sub-ops, map spaces and argument structs
// (memory.h), and the e820 entries XENMEM_memory_map hands out.
import { struct } from '../../common/struct.js';
import { both, handle, pfn, ulong, xstruct, type Abi } from './layout.js';

export const XENMEM = {
  increase_reservation: 0,
  decrease_reservation: 1,
  maximum_ram_page: 2,
  current_reservation: 3,
  maximum_reservation: 4,
  machphys_mfn_list: 5,
  populate_physmap: 6,
  add_to_physmap: 7,
  memory_map: 9,
  machine_memory_map: 10,
  exchange: 11,
  machphys_mapping: 12,
  set_memory_map: 13,
  maximum_gpfn: 14,
  remove_from_physmap: 15,
  set_pod_target: 16,
  get_pod_target: 17,
  get_sharing_freed_pages: 18,
  get_sharing_shared_pages: 19,
  paging_op: 20,
  access_op: 21,
  sharing_op: 22,
  add_to_physmap_batch: 23,
  claim_pages: 24,
  machphys_compat_mfn_list: 25,
  get_vnumainfo: 26,
  reserved_device_memory_map: 27,
  acquire_resource: 28,
} as const;

/** xen_memory_reservation.mem_flags; bits 7:0 are address bits, 15:8 a NUMA node + 1. */
/** memory_op's cmd: the sub-op in the low bits, a continuation's start extent above MEMOP_EXTENT_SHIFT. */
export const MEMOP_EXTENT_SHIFT = 6;
export const MEMOP_CMD_MASK = (1n << BigInt(MEMOP_EXTENT_SHIFT)) - 1n;

export const XENMEMF = {
  populate_on_demand: 1 << 16,
  exact_node_request: 1 << 17,
  vnode: 1 << 18,
} as const;

/** Address bits the extents must fit below (0: no limit). */
export function xenmemfGetAddressBits(memFlags: number): number {
  return memFlags & 0xff;
}
/** The requested NUMA node; 0xff when none was given. */
export function xenmemfGetNode(memFlags: number): number {
  return ((memFlags >>> 8) - 1) & 0xff;
}

/** xen_add_to_physmap.space. */
export const XENMAPSPACE = {
  shared_info: 0,
  grant_table: 1,
  gmfn: 2,
  gmfn_range: 3,
  gmfn_foreign: 4,
  dev_mmio: 5,
} as const;

/** Set in xen_add_to_physmap.idx (space grant_table) to map a v2 status frame. */
export const XENMAPIDX_grant_table_status = 0x80000000;

/** XENMEM_acquire_resource types and ids. */
export const XENMEM_resource = { ioreq_server: 0, grant_table: 1, vmtrace_buf: 2 } as const;
export const XENMEM_resource_grant_table_id = { shared: 0, status: 1 } as const;

const defMemoryReservation = <A extends Abi>(abi: A) =>
  xstruct('xen_memory_reservation', abi, {
    extent_start: handle(abi),
    nr_extents: ulong(abi),
    extent_order: 'u32',
    mem_flags: 'u32',
    domid: 'u16',
  });
export const xenMemoryReservation = { native: defMemoryReservation('native'), compat: defMemoryReservation('compat') } as const;

const defMemoryExchange = <A extends Abi>(abi: A) =>
  xstruct('xen_memory_exchange', abi, {
    in: { struct: defMemoryReservation(abi) },
    out: { struct: defMemoryReservation(abi) },
    nr_exchanged: ulong(abi),
  });
export const xenMemoryExchange = { native: defMemoryExchange('native'), compat: defMemoryExchange('compat') } as const;

/** maximum_ram_page, current/maximum_reservation, maximum_gpfn take a pointer to a domid. */
export const xenMemoryDomain = both((abi) => xstruct('xen_memory_domain', abi, { domid: 'u16' }));

const defAddToPhysmap = <A extends Abi>(abi: A) =>
  xstruct('xen_add_to_physmap', abi, {
    domid: 'u16',
    /** Pages, for gmfn_range. */
    size: 'u16',
    space: 'u32',
    idx: ulong(abi),
    gpfn: pfn(abi),
  });
export const xenAddToPhysmap = { native: defAddToPhysmap('native'), compat: defAddToPhysmap('compat') } as const;

const defAddToPhysmapBatch = <A extends Abi>(abi: A) =>
  xstruct('xen_add_to_physmap_batch', abi, {
    domid: 'u16',
    space: 'u16',
    size: 'u16',
    /** u.foreign_domid for gmfn_foreign; u.res0 (must be 0) otherwise. */
    foreign_domid: 'u16',
    /** xen_ulong_t[size] */
    idxs: handle(abi),
    /** xen_pfn_t[size] */
    gpfns: handle(abi),
    /** int[size], out */
    errs: handle(abi),
  });
export const xenAddToPhysmapBatch = { native: defAddToPhysmapBatch('native'), compat: defAddToPhysmapBatch('compat') } as const;

const defRemoveFromPhysmap = <A extends Abi>(abi: A) =>
  xstruct('xen_remove_from_physmap', abi, { domid: 'u16', gpfn: pfn(abi) });
export const xenRemoveFromPhysmap = { native: defRemoveFromPhysmap('native'), compat: defRemoveFromPhysmap('compat') } as const;

const defMemoryMap = <A extends Abi>(abi: A) =>
  xstruct('xen_memory_map', abi, {
    /** In: entries the buffer holds; out: entries written. */
    nr_entries: 'u32',
    /** e820Entry[nr_entries] */
    buffer: handle(abi),
  });
export const xenMemoryMap = { native: defMemoryMap('native'), compat: defMemoryMap('compat') } as const;

const defForeignMemoryMap = <A extends Abi>(abi: A) =>
  xstruct('xen_foreign_memory_map', abi, { domid: 'u16', map: { struct: defMemoryMap(abi) } });
export const xenForeignMemoryMap = { native: defForeignMemoryMap('native'), compat: defForeignMemoryMap('compat') } as const;

const defAcquireResource = <A extends Abi>(abi: A) =>
  xstruct('xen_mem_acquire_resource', abi, {
    domid: 'u16',
    type: 'u16',
    id: 'u32',
    nr_frames: 'u32',
    pad: 'u32',
    frame: 'u64',
    /** xen_pfn_t[nr_frames] */
    frame_list: handle(abi),
  });
export const xenMemAcquireResource = { native: defAcquireResource('native'), compat: defAcquireResource('compat') } as const;

/** One entry of the BIOS-style memory map: packed, 20 bytes in both ABIs (not a Xen header type). */
const e820 = struct('e820entry', { addr: 'u64', size: 'u64', type: 'u32' }, { packed: true });
export const e820Entry = { native: e820, compat: e820 } as const;
export const E820_TYPE = { ram: 1, reserved: 2, acpi: 3, nvs: 4, unusable: 5 } as const;
/** The most entries XENMEM_set_memory_map takes (Xen's E820MAX). */
export const E820_MAX = 1024;

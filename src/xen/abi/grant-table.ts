// grant_table_op (hypercall 20): sub-ops, grant entries v1/v2, flags, status
// codes and argument structs (grant_table.h).
import { both, handle, pfn, xstruct, type Abi } from './layout.js';

export const GNTTABOP = {
  map_grant_ref: 0,
  unmap_grant_ref: 1,
  setup_table: 2,
  dump_table: 3,
  transfer: 4,
  copy: 5,
  query_size: 6,
  unmap_and_replace: 7,
  set_version: 8,
  get_status_frames: 9,
  get_version: 10,
  swap_grant_ref: 11,
  cache_flush: 12,
} as const;

/** Entries reserved for the toolstack at the start of the table. */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const GNTTAB_RESERVED = { CONSOLE: 0, XENSTORE: 1 } as const;

/** grant entry flags: type in bits 1:0, then flag bits. */
export const GTF = {
  invalid: 0,
  permit_access: 1,
  accept_transfer: 2,
  transitive: 3,
  type_mask: 3,
  readonly: 1 << 2,
  reading: 1 << 3,
  writing: 1 << 4,
  PWT: 1 << 5,
  PCD: 1 << 6,
  PAT: 1 << 7,
  sub_page: 1 << 8,
  /** accept_transfer entries reuse bits 2 and 3. */
  transfer_committed: 1 << 2,
  transfer_completed: 1 << 3,
} as const;

/** gnttab_map_grant_ref.flags. */
export const GNTMAP = {
  device_map: 1 << 0,
  host_map: 1 << 1,
  readonly: 1 << 2,
  application_map: 1 << 3,
  contains_pte: 1 << 4,
  guest_avail_mask: 0xffff0000,
} as const;

/** gnttab_copy.flags. */
export const GNTCOPY = { source_gref: 1 << 0, dest_gref: 1 << 1 } as const;

/** gnttab_cache_flush.op. */
export const GNTTAB_CACHE = { CLEAN: 1 << 0, INVAL: 1 << 1, SOURCE_GREF: 0x80000000 } as const;

/** Per-op status (int16), negative on failure. */
export const GNTST = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
  no_space: -13,
} as const;

/** v1 entry: 8 bytes. */
export const grantEntryV1 = both((abi) => xstruct('grant_entry_v1', abi, { flags: 'u16', domid: 'u16', frame: 'u32' }));

export const grantEntryHeader = both((abi) => xstruct('grant_entry_header', abi, { flags: 'u16', domid: 'u16' }));

/** v2 entries are GRANT_ENTRY_V2_SIZE bytes; these are the union's variants. */
export const GRANT_ENTRY_V2_SIZE = 16;
export const grantEntryV2 = {
  fullPage: both((abi) =>
    xstruct('grant_entry_v2.full_page', abi, { hdr: { struct: grantEntryHeader[abi] }, pad0: 'u32', frame: 'u64' }),
  ),
  subPage: both((abi) =>
    xstruct('grant_entry_v2.sub_page', abi, { hdr: { struct: grantEntryHeader[abi] }, page_off: 'u16', length: 'u16', frame: 'u64' }),
  ),
  transitive: both((abi) =>
    xstruct('grant_entry_v2.transitive', abi, { hdr: { struct: grantEntryHeader[abi] }, trans_domid: 'u16', pad0: 'u16', gref: 'u32' }),
  ),
} as const;
/** v2 status frames hold one grant_status_t (u16) per entry. */
export const GRANT_STATUS_SIZE = 2;

export const gnttabMapGrantRef = both((abi) =>
  xstruct('gnttab_map_grant_ref', abi, {
    host_addr: 'u64',
    flags: 'u32',
    ref: 'u32',
    dom: 'u16',
    status: 'i16',
    handle: 'u32',
    dev_bus_addr: 'u64',
  }),
);

export const gnttabUnmapGrantRef = both((abi) =>
  xstruct('gnttab_unmap_grant_ref', abi, { host_addr: 'u64', dev_bus_addr: 'u64', handle: 'u32', status: 'i16' }),
);

/** native 24 bytes, compat 16. */
const defSetupTable = <A extends Abi>(abi: A) =>
  xstruct('gnttab_setup_table', abi, {
    dom: 'u16',
    nr_frames: 'u32',
    status: 'i16',
    /** xen_pfn_t[nr_frames], out */
    frame_list: handle(abi),
  });
export const gnttabSetupTable = { native: defSetupTable('native'), compat: defSetupTable('compat') } as const;

export const gnttabDumpTable = both((abi) => xstruct('gnttab_dump_table', abi, { dom: 'u16', status: 'i16' }));

const defTransfer = <A extends Abi>(abi: A) =>
  xstruct('gnttab_transfer', abi, { mfn: pfn(abi), domid: 'u16', ref: 'u32', status: 'i16' });
export const gnttabTransfer = { native: defTransfer('native'), compat: defTransfer('compat') } as const;

const defCopyPtr = <A extends Abi>(abi: A) =>
  xstruct('gnttab_copy_ptr', abi, {
    /** Union: a grant ref (u32, low bytes) with GNTCOPY_*_gref, else a frame (xen_pfn_t). */
    u: pfn(abi),
    domid: 'u16',
    offset: 'u16',
  });
export const gnttabCopyPtr = { native: defCopyPtr('native'), compat: defCopyPtr('compat') } as const;

const defCopy = <A extends Abi>(abi: A) =>
  xstruct('gnttab_copy', abi, {
    source: { struct: defCopyPtr(abi) },
    dest: { struct: defCopyPtr(abi) },
    len: 'u16',
    flags: 'u16',
    status: 'i16',
  });
export const gnttabCopy = { native: defCopy('native'), compat: defCopy('compat') } as const;

export const gnttabQuerySize = both((abi) =>
  xstruct('gnttab_query_size', abi, { dom: 'u16', nr_frames: 'u32', max_nr_frames: 'u32', status: 'i16' }),
);

export const gnttabUnmapAndReplace = both((abi) =>
  xstruct('gnttab_unmap_and_replace', abi, { host_addr: 'u64', new_addr: 'u64', handle: 'u32', status: 'i16' }),
);

export const gnttabSetVersion = both((abi) => xstruct('gnttab_set_version', abi, { version: 'u32' }));

const defGetStatusFrames = <A extends Abi>(abi: A) =>
  xstruct('gnttab_get_status_frames', abi, {
    nr_frames: 'u32',
    dom: 'u16',
    status: 'i16',
    /** uint64_t[nr_frames], out */
    frame_list: handle(abi),
  });
export const gnttabGetStatusFrames = { native: defGetStatusFrames('native'), compat: defGetStatusFrames('compat') } as const;

export const gnttabGetVersion = both((abi) => xstruct('gnttab_get_version', abi, { dom: 'u16', pad: 'u16', version: 'u32' }));

export const gnttabSwapGrantRef = both((abi) => xstruct('gnttab_swap_grant_ref', abi, { ref_a: 'u32', ref_b: 'u32', status: 'i16' }));

export const gnttabCacheFlush = both((abi) =>
  xstruct('gnttab_cache_flush', abi, {
    /** Union: dev_bus_addr (u64), or a grant ref (u32) with GNTTAB_CACHE_SOURCE_GREF. */
    a: 'u64',
    offset: 'u16',
    length: 'u16',
    op: 'u32',
  }),
);

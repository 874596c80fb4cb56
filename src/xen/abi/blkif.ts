// The PV block device's shared ring (io/blkif.h, io/ring.h): request and
// response layouts, which differ between a 64-bit frontend (x86_64-abi) and a
// 32-bit one (x86_32-abi, i386 alignment), the ring's header, and the ops
// and statuses.
import { both, xstruct } from './layout.js';

export const BLKIF_OP = {
  READ: 0,
  WRITE: 1,
  WRITE_BARRIER: 2,
  FLUSH_DISKCACHE: 3,
  RESERVED_1: 4,
  DISCARD: 5,
  INDIRECT: 6,
} as const;

export const BLKIF_RSP = { EOPNOTSUPP: -2, ERROR: -1, OKAY: 0 } as const;

/** Segments a direct request carries; an indirect one names up to this many pages of segments. */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
export const BLKIF_DISCARD_SECURE = 1;

/** The backend's `info` node. */
export const VDISK = { CDROM: 1, REMOVABLE: 2, READONLY: 4 } as const;

export const blkifRequestSegment = both((abi) => xstruct('blkif_request_segment', abi, { gref: 'u32', first_sect: 'u8', last_sect: 'u8' }));

export const blkifRequest = both((abi) =>
  xstruct('blkif_request', abi, {
    operation: 'u8',
    nr_segments: 'u8',
    handle: 'u16',
    id: 'u64',
    sector_number: 'u64',
    /** blkif_request_segment[11]: 8 bytes each, 4-byte aligned. */
    seg: { bytes: BLKIF_MAX_SEGMENTS_PER_REQUEST * 8, align: 4 },
  }),
);

export const blkifRequestDiscard = both((abi) =>
  xstruct('blkif_request_discard', abi, { operation: 'u8', flag: 'u8', handle: 'u16', id: 'u64', sector_number: 'u64', nr_sectors: 'u64' }),
);

export const blkifRequestIndirect = {
  native: xstruct('blkif_request_indirect', 'native', {
    operation: 'u8', indirect_op: 'u8', nr_segments: 'u16', id: 'u64', sector_number: 'u64', handle: 'u16',
    indirect_grefs: { array: 'u32', count: BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST },
  }),
  // i386 pads it to 64 bytes, as x86_64's alignment does.
  compat: xstruct('blkif_request_indirect', 'compat', {
    operation: 'u8', indirect_op: 'u8', nr_segments: 'u16', id: 'u64', sector_number: 'u64', handle: 'u16',
    indirect_grefs: { array: 'u32', count: BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST }, pad: 'u64',
  }),
} as const;

export const blkifResponse = both((abi) => xstruct('blkif_response', abi, { id: 'u64', operation: 'u8', status: 'i16' }));

/** A ring slot holds a request or a response (a union): the larger. */
export const BLKIF_RING_ENTRY_SIZE = { native: 112, compat: 108 } as const;

/** Where a shared ring's slots start, after its four indexes and padding (the same for every ring type). */
export const SRING_RING_OFFSET = 64;
/** The four indexes at the start of a shared ring, as byte offsets. */
export const SRING_INDEX = { req_prod: 0, req_event: 4, rsp_prod: 8, rsp_event: 12 } as const;

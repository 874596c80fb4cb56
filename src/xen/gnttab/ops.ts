// grant_table_op as Xen 4.17 answers an HVM or PVH domU, both ABIs: on the
// main thread what changes the table's size, version or frames' places in
// the memory map (setup_table, set_version, and query_size and get_version
// beside them); the batched ops (copy, map, unmap, swap), which change none of
// that, on the calling vCPU's thread, the table's pins being shared by every
// thread: a long batch, which Xen would preempt, holds up only its caller. The ops Xen filters out for HVM guests (transfer,
// unmap_and_replace, get_status_frames, cache_flush, dump_table) are -ENOSYS
// there too, so they are here. Batched ops answer each op in its own status
// and the hypercall 0. The domains a guest of xenkvm can name are itself and
// domain 0, whose backends grant it nothing. What xenkvm does not do: map a
// grant into the guest's own memory map (map_grant_ref from itself), which
// needs a second mapping of one of its RAM pages: refused with
// GNTST_general_error and a log line; so no handle is ever valid for unmap.
import { XEN_ERRNO } from '../abi/errno.js';
import {
  GNTCOPY, GNTMAP, GNTST, GNTTAB_NR_RESERVED_ENTRIES, GNTTABOP, GRANT_ENTRY_V2_SIZE, grantEntryV1, GTF, gnttabCopy, gnttabGetVersion,
  gnttabMapGrantRef, gnttabQuerySize, gnttabSetupTable, gnttabSetVersion, gnttabSwapGrantRef, gnttabUnmapGrantRef,
} from '../abi/grant-table.js';
import { HYPERCALL } from '../abi/hypercalls.js';
import { XENMAPIDX_grant_table_status } from '../abi/memory.js';
import { DOMID } from '../abi/xen.js';
import type { RateLimitedLog } from '../../common/log.js';
import { PAGE_SIZE, type GuestMemory } from '../../memory/guest-memory.js';
import { XenError } from '../errors.js';
import { readArg, type HypercallContext } from '../hypercall.js';
import { firstArgLow32, served, subOpRoute, type ServedOps } from '../routes.js';
import { sharedFramesFor, statusFrames, type GrantTable } from './table.js';

/** What the batched ops need, on any thread. */
export interface GnttabVcpuDomain {
  domid: number;
  memory: GuestMemory;
  grantTable: GrantTable;
  guestLog: RateLimitedLog;
}

export interface GnttabDomain extends GnttabVcpuDomain {
  /** Takes an overlay page out of the guest's memory map (a status frame, when the table goes back to v1). */
  unmapOverlay(page: number): void;
}

/** Domain 0: it exists, but its backends grant the guest nothing. */
const DOM0 = 0;
const INVALID_FRAME = { native: 0xffff_ffff_ffff_ffffn, compat: 0xffff_ffffn } as const;
/** Xen's compat setup_table takes at most (2 pages - the native struct) / 8 frames: 1021. */
const COMPAT_SETUP_TABLE_LIMIT = 1021;

export const GRANT_TABLE_OP_ROUTE = subOpRoute(HYPERCALL.grant_table_op, firstArgLow32, 'GNTTABOP_', GNTTABOP, {
  map_grant_ref: 'vcpu', unmap_grant_ref: 'vcpu', setup_table: 'main', copy: 'vcpu', query_size: 'main', set_version: 'main',
  get_version: 'main', swap_grant_ref: 'vcpu',
  // Filtered out for HVM guests by Xen before it looks further.
  transfer: 'main', unmap_and_replace: 'main', get_status_frames: 'main', cache_flush: 'main', dump_table: 'main',
});

/** A domain lookup "by any id": DOMID_SELF and the caller's own id are the caller. */
function ownTable(d: GnttabVcpuDomain, dom: number): boolean {
  return dom === DOMID.SELF || dom === d.domid;
}

/** The status of a lookup of another domain's table by a plain domU: domain 0 exists and refuses, the rest do not exist. */
const foreignStatus = (dom: number) => (dom === DOM0 ? GNTST.permission_denied : GNTST.bad_domain);

/** The count argument: Xen refuses it only when negative as an int. */
function batchCount(args: readonly bigint[]): number {
  const count = Number(args[2] & 0xffffffffn);
  if (count >= 2 ** 31) throw new XenError(XEN_ERRNO.EINVAL);
  return count;
}

function singleCount(args: readonly bigint[]): void {
  if (batchCount(args) !== 1) throw new XenError(XEN_ERRNO.EINVAL);
}

function writeI16(ctx: HypercallContext, gva: bigint, value: number): void {
  ctx.guest.write(gva, new Uint8Array(new Int16Array([value]).buffer));
}

/** The frame of guest memory gfn names, on the main thread: an overlay page where one is mapped, else RAM the guest holds. */
function framePage(d: GnttabVcpuDomain, gfn: number): Uint8Array | undefined {
  const overlay = d.memory.placement.pageAt(gfn);
  if (overlay >= 0) return d.memory.overlayPage(overlay);
  const ram = d.memory.heldRamPage(gfn);
  return ram === undefined ? undefined : d.memory.ramPage(ram);
}

function setupTable(ctx: HypercallContext, d: GnttabDomain, args: readonly bigint[]): number {
  const def = gnttabSetupTable[ctx.abi];
  const arg = args[1];
  const count = batchCount(args);
  // The compat wrapper passes a count of 0 as nothing to do.
  if (ctx.abi === 'compat' && count === 0) return 0;
  if (count !== 1) throw new XenError(XEN_ERRNO.EINVAL);
  const op = readArg(ctx, def, arg);
  const status = ((): number => {
    if (!ownTable(d, op.dom)) return foreignStatus(op.dom);
    const t = d.grantTable;
    if (op.nr_frames > t.maxFrames) return GNTST.general_error;
    // The compat wrapper's limit: as many 32-bit frames as its translation area holds.
    if (ctx.abi === 'compat' && op.nr_frames > COMPAT_SETUP_TABLE_LIMIT) return GNTST.general_error;
    t.locked(() => t.grow(op.nr_frames));
    let status: number = GNTST.okay;
    // Native xen_pfn_t is 64 bits; the compat wrapper's list holds 32-bit words, each frame truncated.
    const word = ctx.abi === 'native' ? 8 : 4;
    for (let i = 0; i < op.nr_frames; i++) {
      const gfn = d.memory.placement.frameOf(t.sharedPage(i));
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, gfn === undefined ? INVALID_FRAME[ctx.abi] : BigInt(gfn), true);
      try {
        ctx.guest.write(BigInt(op.frame_list) + BigInt(i * word), bytes.subarray(0, word));
      } catch {
        status = GNTST.bad_virt_addr;
      }
    }
    return status;
  })();
  // The compat wrapper copies the list back only on success; a failed write shows as its status all the same.
  writeI16(ctx, arg + BigInt(def.offsets.status), status);
  return 0;
}

function querySize(ctx: HypercallContext, d: GnttabDomain, args: readonly bigint[]): number {
  singleCount(args);
  const def = gnttabQuerySize[ctx.abi];
  const op = readArg(ctx, def, args[1]);
  if (!ownTable(d, op.dom)) op.status = foreignStatus(op.dom);
  else {
    op.nr_frames = d.grantTable.frames;
    op.max_nr_frames = d.grantTable.maxFrames;
    op.status = GNTST.okay;
  }
  ctx.guest.write(args[1], def.encode(op));
  return 0;
}

function getVersion(ctx: HypercallContext, d: GnttabDomain, args: readonly bigint[]): number {
  const def = gnttabGetVersion[ctx.abi];
  const op = readArg(ctx, def, args[1]);
  if (op.dom === DOM0) throw new XenError(XEN_ERRNO.EPERM);
  if (!ownTable(d, op.dom)) throw new XenError(XEN_ERRNO.ESRCH);
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, d.grantTable.version, true);
  ctx.guest.write(args[1] + BigInt(def.offsets.version), bytes);
  return 0;
}

/** The reserved entries in v1 form: flags (with v2's status bits folded in), domid, frame. */
type ReservedEntry = { flags: number; domid: number; frame: number };

function setVersion(ctx: HypercallContext, d: GnttabDomain, args: readonly bigint[]): number {
  const def = gnttabSetVersion[ctx.abi];
  const op = readArg(ctx, def, args[1]);
  const t = d.grantTable;
  const result = t.locked((): number => {
    if (op.version !== 1 && op.version !== 2) return -XEN_ERRNO.EINVAL;
    if (op.version === t.version) return 0;
    for (let ref = GNTTAB_NR_RESERVED_ENTRIES; ref < t.entries; ref++) if (t.pins(ref).readers !== 0) return -XEN_ERRNO.EBUSY;
    const reserved = readReserved(d, t);
    if (reserved === undefined) return -XEN_ERRNO.ERANGE;
    if (op.version === 1) for (let i = 0; i < statusFrames(t.frames); i++) d.unmapOverlay(t.statusPage(i));
    for (let i = 0; i < t.frames; i++) d.memory.overlayPage(t.sharedPage(i)).fill(0);
    for (let i = 0; i < statusFrames(t.maxFrames); i++) d.memory.overlayPage(t.statusPage(i)).fill(0);
    t.setVersion(op.version);
    writeReserved(d, t, reserved);
    return 0;
  });
  op.version = t.version;
  ctx.guest.write(args[1], def.encode(op));
  return result;
}

/** The reserved entries, or undefined when v1 cannot hold one of them (a frame above 32 bits, a transitive grant). */
function readReserved(d: GnttabDomain, t: GrantTable): ReservedEntry[] | undefined {
  const out: ReservedEntry[] = [];
  for (let ref = 0; ref < GNTTAB_NR_RESERVED_ENTRIES; ref++) {
    const e = t.readEntry(ref);
    if (t.version === 1) {
      out.push({ flags: e.flags, domid: e.domid, frame: e.frame });
      continue;
    }
    const type = e.flags & GTF.type_mask;
    if (type === GTF.transitive || (type === GTF.permit_access && e.frame >= 2 ** 32)) return undefined;
    if (type !== GTF.permit_access) {
      out.push({ flags: 0, domid: 0, frame: 0 });
      continue;
    }
    const status = new DataView(d.memory.overlayPage(t.statusPage(0)).buffer, d.memory.overlayPage(t.statusPage(0)).byteOffset).getUint16(ref * 2, true);
    out.push({ flags: e.flags | (status & (GTF.reading | GTF.writing)), domid: e.domid, frame: e.frame });
  }
  return out;
}

function writeReserved(d: GnttabDomain, t: GrantTable, entries: ReservedEntry[]): void {
  const page = d.memory.overlayPage(t.sharedPage(0));
  const view = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  entries.forEach((e, ref) => {
    if (t.version === 1) {
      page.set(grantEntryV1.native.encode(e), ref * grantEntryV1.native.size);
      return;
    }
    const at = ref * GRANT_ENTRY_V2_SIZE;
    view.setUint16(at, e.flags & ~(GTF.reading | GTF.writing), true);
    view.setUint16(at + 2, e.domid, true);
    view.setBigUint64(at + 8, BigInt(e.frame), true);
    const status = d.memory.overlayPage(t.statusPage(0));
    new DataView(status.buffer, status.byteOffset).setUint16(ref * 2, e.flags & (GTF.reading | GTF.writing), true);
  });
}

/** Writes the toolstack's reserved entries (console and XenStore rings, granted to domain 0) as libxl seeds them, in v1. */
export function seedReservedEntries(memory: GuestMemory, table: GrantTable, rings: { ref: number; gfn: number }[]): void {
  const page = memory.overlayPage(table.sharedPage(0));
  for (const r of rings) page.set(grantEntryV1.native.encode({ flags: GTF.permit_access, domid: DOM0, frame: r.gfn }), r.ref * grantEntryV1.native.size);
}

/**
 * A batch: each of the count ops (args[1], args[2]) read in turn and answered by `answer`, which gives
 * its status (written into the op's status field) or undefined when it wrote the op back itself.
 */
function eachOp<D extends { size: number; offsets: { status: number }; decode(bytes: Uint8Array): unknown }>(
  ctx: HypercallContext, args: readonly bigint[], def: D, answer: (op: ReturnType<D['decode']>, at: bigint) => number | undefined,
): number {
  const count = batchCount(args);
  for (let i = 0; i < count; i++) {
    const at = args[1] + BigInt(i * def.size);
    const status = answer(readArg(ctx, def, at), at);
    if (status !== undefined) writeI16(ctx, at + BigInt(def.offsets.status), status);
  }
  return 0;
}

function mapGrantRef(ctx: HypercallContext, d: GnttabVcpuDomain, args: readonly bigint[]): number {
  const def = gnttabMapGrantRef[ctx.abi];
  // The whole struct goes back, as Xen copies it: handle and dev_bus_addr as the guest passed them.
  return eachOp(ctx, args, def, (op, at) => {
    op.status = mapStatus(d, op);
    ctx.guest.write(at, def.encode(op));
    return undefined;
  });
}

function mapStatus(d: GnttabVcpuDomain, op: { flags: number; ref: number; dom: number }): number {
  if (!(op.flags & (GNTMAP.host_map | GNTMAP.device_map))) return GNTST.bad_gntref;
  if (op.flags & (GNTMAP.device_map | GNTMAP.application_map | GNTMAP.contains_pte)) return GNTST.general_error;
  if (op.dom !== d.domid && op.dom !== DOM0) return GNTST.bad_domain;
  if (op.dom === DOM0) return GNTST.general_error; // domain 0 grants the guest nothing
  if (op.ref >= d.grantTable.entries) return GNTST.bad_gntref;
  d.guestLog.warn('gnttab-self-map', { ref: op.ref },
    'guest asked GNTTABOP_map_grant_ref for a grant of its own, which xenkvm cannot map into its memory map (a second mapping of its own page); GNTST_general_error');
  return GNTST.general_error;
}

/** No map_grant_ref ever succeeds (see the top of this file), so no handle is in use. */
function unmapGrantRef(ctx: HypercallContext, args: readonly bigint[]): number {
  return eachOp(ctx, args, gnttabUnmapGrantRef[ctx.abi], () => GNTST.bad_handle);
}

function swapGrantRef(ctx: HypercallContext, d: GnttabVcpuDomain, args: readonly bigint[]): number {
  const t = d.grantTable;
  return eachOp(ctx, args, gnttabSwapGrantRef[ctx.abi], (op) =>
    t.locked(() => {
      if (op.ref_a >= t.entries || op.ref_b >= t.entries) return GNTST.bad_gntref;
      if (op.ref_a === op.ref_b) return GNTST.okay;
      if (t.pins(op.ref_a).readers || t.pins(op.ref_b).readers) return GNTST.eagain;
      t.swapEntries(op.ref_a, op.ref_b);
      return GNTST.okay;
    }),
  );
}

/** One side of a copy, claimed: the bytes it may touch (a pinned grant's window, or a whole frame) and how to let go. */
interface CopySide {
  page: Uint8Array;
  start: number;
  length: number;
  release(): void;
}

function claimSide(d: GnttabVcpuDomain, ptr: { u: number | bigint; domid: number }, isGref: boolean, writable: boolean): CopySide | number {
  if (!isGref) {
    if (ptr.domid !== DOMID.SELF) return GNTST.permission_denied;
    const page = framePage(d, Number(ptr.u));
    return page ? { page, start: 0, length: PAGE_SIZE, release: () => {} } : GNTST.bad_page;
  }
  if (!ownTable(d, ptr.domid)) return ptr.domid === DOM0 ? GNTST.general_error : GNTST.bad_domain;
  const t = d.grantTable;
  const ref = Number(BigInt(ptr.u) & 0xffffffffn);
  const granted = t.locked(() => t.pin(ref, d.domid, writable, 'copy', (gfn) => framePage(d, gfn) !== undefined));
  if (typeof granted === 'number') return granted;
  const page = framePage(d, granted.gfn);
  const release = () => t.locked(() => t.unpin(ref, writable));
  if (!page) {
    release();
    return GNTST.bad_page;
  }
  return { page, start: granted.offset, length: granted.length, release };
}

function copy(ctx: HypercallContext, d: GnttabVcpuDomain, args: readonly bigint[]): number {
  return eachOp(ctx, args, gnttabCopy[ctx.abi], (op) => copyOne(d, op));
}

function copyOne(d: GnttabVcpuDomain, op: { source: { u: number | bigint; domid: number; offset: number }; dest: { u: number | bigint; domid: number; offset: number }; len: number; flags: number }): number {
  // A gmfn side is refused before any domain is looked up, the source's first.
  for (const [ptr, bit] of [[op.source, GNTCOPY.source_gref], [op.dest, GNTCOPY.dest_gref]] as const) {
    if (!(op.flags & bit) && ptr.domid !== DOMID.SELF) return GNTST.permission_denied;
  }
  const source = claimSide(d, op.source, (op.flags & GNTCOPY.source_gref) !== 0, false);
  if (typeof source === 'number') return source;
  try {
    const dest = claimSide(d, op.dest, (op.flags & GNTCOPY.dest_gref) !== 0, true);
    if (typeof dest === 'number') return dest;
    try {
      if (op.source.offset + op.len > PAGE_SIZE || op.dest.offset + op.len > PAGE_SIZE) return GNTST.bad_copy_arg;
      const within = (s: CopySide, offset: number) => offset >= s.start && offset + op.len <= s.start + s.length;
      if (!within(source, op.source.offset) || !within(dest, op.dest.offset)) return GNTST.general_error;
      dest.page.set(source.page.subarray(op.source.offset, op.source.offset + op.len), op.dest.offset);
      return GNTST.okay;
    } finally {
      dest.release();
    }
  } finally {
    source.release();
  }
}

/**
 * XENMEM_add_to_physmap of a grant-table frame: frame idx (or, in v2, status frame idx with
 * XENMAPIDX_grant_table_status set), the table grown to hold it where max_grant_frames allows.
 * The overlay page to map; XenError when there is none.
 */
export function grantFramePage(d: GnttabDomain, idx: bigint): number {
  const t = d.grantTable;
  const i = Number(idx & 0xffffffffn);
  return t.locked(() => {
    if (t.version === 2 && i & XENMAPIDX_grant_table_status) {
      const s = i & ~XENMAPIDX_grant_table_status;
      if (s >= statusFrames(t.frames)) t.grow(sharedFramesFor(s + 1));
      if (s >= statusFrames(t.frames)) throw new XenError(XEN_ERRNO.EINVAL);
      return t.statusPage(s);
    }
    if (i >= t.frames && !t.grow(i + 1)) throw new XenError(XEN_ERRNO.EINVAL);
    return t.sharedPage(i);
  });
}

/** Xen's HVM filter looks at the whole command: high bits make any op unknown. Then a count negative as an int is refused. */
function checkCommand(_ctx: HypercallContext, args: readonly bigint[]): void {
  if ((args[0] & 0xffffffffn) > 0xfffn) throw new XenError(XEN_ERRNO.ENOSYS);
  batchCount(args);
}

/** The grant-table ops served on the vCPU threads: the batched ones. */
export function grantTableVcpuOps(d: GnttabVcpuDomain): ServedOps {
  return served(
    GRANT_TABLE_OP_ROUTE,
    {
      copy: (ctx, args) => copy(ctx, d, args),
      map_grant_ref: (ctx, args) => mapGrantRef(ctx, d, args),
      unmap_grant_ref: (ctx, args) => unmapGrantRef(ctx, args),
      swap_grant_ref: (ctx, args) => swapGrantRef(ctx, d, args),
    },
    checkCommand,
  );
}

export function grantTableOps(d: GnttabDomain): ServedOps {
  const filtered = () => {
    throw new XenError(XEN_ERRNO.ENOSYS, 'not offered to HVM guests');
  };
  return served(
    GRANT_TABLE_OP_ROUTE,
    {
      setup_table: (ctx, args) => setupTable(ctx, d, args),
      query_size: (ctx, args) => querySize(ctx, d, args),
      set_version: (ctx, args) => setVersion(ctx, d, args),
      get_version: (ctx, args) => getVersion(ctx, d, args),
      transfer: filtered,
      unmap_and_replace: filtered,
      get_status_frames: filtered,
      cache_flush: filtered,
      dump_table: filtered,
    },
    checkCommand,
  );
}

// memory_op: placing the shared_info page and the grant table's frames
// (XENMAPSPACE_shared_info and _grant_table, alone or in a batch), the guest's
// memory map, and its reservation, which the balloon driver moves
// (increase/decrease_reservation, populate_physmap). The other spaces and
// sub-ops are -ENOSYS.
import type { RateLimitedLog } from '../common/log.js';
import { GuestMemoryError } from '../memory/guest-memory.js';
import { GuestFaultError } from '../memory/guest-virtual.js';
import { OverlayPlacementError, type MemoryMap } from '../memory/memory-map.js';
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { nameOf, type Abi } from './abi/layout.js';
import { E820_MAX, e820Entry, MEMOP_CMD_MASK, MEMOP_EXTENT_SHIFT, XENMAPSPACE, XENMEM, XENMEMF, xenAddToPhysmap, xenAddToPhysmapBatch, xenmemfGetAddressBits, xenForeignMemoryMap, xenMemoryMap, xenMemoryReservation } from './abi/memory.js';
import { DOMID } from './abi/xen.js';
import type { DomainState } from './domain-state.js';
import { NotImplementedError, XenError } from './errors.js';
import { readArg, writeArgU32, type HypercallContext } from './hypercall.js';
import type { Reservation } from './reservation.js';
import { served, subOpRoute, type ServedOps } from './routes.js';
import { grantFramePage, type GnttabDomain } from './gnttab/ops.js';
import { SHARED_INFO_PAGE, writeWallclock } from './shared-info.js';

/** An e820 entry as the guest gave it: any 64-bit values. */
export interface E820Entry {
  addr: bigint;
  size: bigint;
  type: number;
}

export interface MemoryOpDomain {
  domid: number;
  memoryMap: MemoryMap;
  state: DomainState;
  /** The shared_info page itself. */
  sharedInfo: Uint8Array;
  bootWallNs: bigint;
  /** The guest's e820, as XENMEM_memory_map returns it; XENMEM_set_memory_map replaces it. */
  e820: readonly E820Entry[];
  reservation: Reservation;
  /** For what the guest causes, which it could repeat without end. */
  guestLog: RateLimitedLog;
  /** The grant table, whose frames XENMAPSPACE_grant_table places. */
  gnttab: GnttabDomain;
}

/** A domid that names the caller itself; any other domain does not exist for a domU. */
export function checkSelf(domid: number, own: number): void {
  if (domid !== DOMID.SELF && domid !== own) throw new XenError(XEN_ERRNO.ESRCH);
}

/**
 * Xen latches the shared_info layout from the mode of the vCPU that maps it
 * (or sets the callback): a 32-bit guest gets the compat layout. The
 * wallclock is rewritten in the layout now in force.
 */
export function latchSharedInfoAbi(domain: MemoryOpDomain, abi: Abi): void {
  if (domain.state.sharedInfoAbi === abi) return;
  domain.state.sharedInfoAbi = abi;
  writeWallclock(domain.sharedInfo, abi, domain.bootWallNs);
}

const PLACEMENT_ERRNO: Record<OverlayPlacementError['reason'], number> = {
  'out-of-range': XEN_ERRNO.EINVAL,
  reserved: XEN_ERRNO.EPERM,
  'no-slots': XEN_ERRNO.ENOMEM,
};

/** Places overlay page `page` at gpfn, freeing the RAM page there, as Xen frees the page at a frame it maps one of its own at. */
function mapOverlayAt(domain: MemoryOpDomain, page: number, gpfn: bigint): void {
  if (gpfn > BigInt(Number.MAX_SAFE_INTEGER)) throw new XenError(XEN_ERRNO.EINVAL);
  try {
    domain.memoryMap.mapOverlay(page, Number(gpfn));
  } catch (e) {
    if (!(e instanceof OverlayPlacementError)) throw e;
    // A frame KVM keeps for itself is refused as Xen refuses direct-mapped MMIO.
    throw new XenError(PLACEMENT_ERRNO[e.reason], e.message);
  }
  domain.reservation.overlayMapped(Number(gpfn));
}

function mapSharedInfo(domain: MemoryOpDomain, abi: Abi, idx: bigint, gpfn: bigint): void {
  if (idx !== 0n) throw new XenError(XEN_ERRNO.EINVAL);
  mapOverlayAt(domain, SHARED_INFO_PAGE, gpfn);
  latchSharedInfoAbi(domain, abi);
}

/** One frame of a space add_to_physmap(_batch) maps: shared_info or a grant-table frame. */
function mapFrame(domain: MemoryOpDomain, abi: Abi, space: number, idx: bigint, gpfn: bigint): void {
  if (space === XENMAPSPACE.shared_info) mapSharedInfo(domain, abi, idx, gpfn);
  else mapOverlayAt(domain, grantFramePage(domain.gnttab, idx), gpfn);
}

function addToPhysmap(ctx: HypercallContext, domain: MemoryOpDomain, arg: bigint): number {
  const def = xenAddToPhysmap[ctx.abi];
  const a = readArg(ctx, def, arg);
  checkSelf(a.domid, domain.domid);
  switch (a.space) {
    case XENMAPSPACE.shared_info:
    case XENMAPSPACE.grant_table:
      mapFrame(domain, ctx.abi, a.space, BigInt(a.idx), BigInt(a.gpfn));
      return 0;
    case XENMAPSPACE.gmfn:
    case XENMAPSPACE.gmfn_range:
    case XENMAPSPACE.gmfn_foreign:
    case XENMAPSPACE.dev_mmio:
      throw new NotImplementedError(`XENMEM_add_to_physmap to XENMAPSPACE_${nameOf(XENMAPSPACE, a.space)}`);
    default:
      throw new XenError(XEN_ERRNO.EINVAL);
  }
}

/** Each entry succeeds or fails on its own; its result goes to errs[i]. */
function addToPhysmapBatch(ctx: HypercallContext, domain: MemoryOpDomain, arg: bigint): number {
  const def = xenAddToPhysmapBatch[ctx.abi];
  const b = readArg(ctx, def, arg);
  checkSelf(b.domid, domain.domid);
  if (b.space === XENMAPSPACE.gmfn_range) throw new XenError(XEN_ERRNO.EOPNOTSUPP);
  if (b.foreign_domid !== 0) throw new XenError(XEN_ERRNO.EINVAL);
  if (b.space !== XENMAPSPACE.shared_info && b.space !== XENMAPSPACE.grant_table) throw new XenError(b.space <= XENMAPSPACE.dev_mmio ? XEN_ERRNO.ENOSYS : XEN_ERRNO.EINVAL);
  const word = ctx.abi === 'native' ? 8 : 4;
  const idxs = new DataView(ctx.guest.read(BigInt(b.idxs), b.size * word).buffer);
  const gpfns = new DataView(ctx.guest.read(BigInt(b.gpfns), b.size * word).buffer);
  const errs = new DataView(new ArrayBuffer(b.size * 4));
  const at = (v: DataView, i: number) => (word === 8 ? v.getBigUint64(i * 8, true) : BigInt(v.getUint32(i * 4, true)));
  // Where Xen preempts a long batch and restarts it, the memslots change once for the whole batch:
  // 65,535 entries moving shared_info back and forth hold the vCPUs for one slot update, not 393,000.
  domain.memoryMap.batch(() => {
    for (let i = 0; i < b.size; i++) {
      try {
        mapFrame(domain, ctx.abi, b.space, at(idxs, i), at(gpfns, i));
      } catch (e) {
        if (!(e instanceof XenError)) throw e;
        errs.setInt32(i * 4, -e.errno, true);
      }
    }
  });
  ctx.guest.write(BigInt(b.errs), new Uint8Array(errs.buffer));
  return 0;
}

/** Copies as many e820 entries as the guest's buffer holds and says how many. */
function memoryMap(ctx: HypercallContext, domain: MemoryOpDomain, arg: bigint): number {
  const def = xenMemoryMap[ctx.abi];
  const m = readArg(ctx, def, arg);
  // Xen's answer to a domain whose map was set empty.
  if (domain.e820.length === 0) throw new XenError(XEN_ERRNO.ENOSYS);
  const n = Math.min(m.nr_entries, domain.e820.length);
  const entry = e820Entry.native; // packed, the same in both ABIs
  const out = new Uint8Array(n * entry.size);
  domain.e820.slice(0, n).forEach((e, i) => out.set(entry.encode(e), i * entry.size));
  ctx.guest.write(BigInt(m.buffer), out);
  writeArgU32(ctx, arg + BigInt(def.offsets.nr_entries), n);
  return 0;
}

/**
 * A domain may set its own map (Xen's XSM_TARGET lets the target itself), which XENMEM_memory_map
 * then returns: GRUB marks the pages it used as reserved for the kernel it boots.
 */
function setMemoryMap(ctx: HypercallContext, domain: MemoryOpDomain, arg: bigint): number {
  const f = readArg(ctx, xenForeignMemoryMap[ctx.abi], arg);
  if (f.map.nr_entries > E820_MAX) throw new XenError(XEN_ERRNO.EINVAL);
  checkSelf(f.domid, domain.domid);
  const entry = e820Entry.native;
  const bytes = ctx.guest.read(BigInt(f.map.buffer), f.map.nr_entries * entry.size);
  domain.e820 = Array.from({ length: f.map.nr_entries }, (_, i) => entry.decode(bytes.subarray(i * entry.size, (i + 1) * entry.size)));
  return 0;
}

/** A reservation sub-op's continuation start (above the sub-op in cmd), which Xen gives back when it does nothing. */
function startExtent(cmd: bigint): bigint {
  return cmd >> BigInt(MEMOP_EXTENT_SHIFT);
}

/** Larger extents are refused from a domU (Xen's CONFIG_DOMU_MAX_ORDER on x86). */
const DOMU_MAX_ORDER = 9;
/** Address bits this low leave no frame to allocate (Xen: ≤ PAGE_SHIFT is refused). */
const PAGE_SHIFT = 12;

type ReservationOp = 'increase_reservation' | 'decrease_reservation' | 'populate_physmap';

/**
 * increase/decrease_reservation and populate_physmap, as Xen answers an HVM domU: the number of
 * extents done, from the continuation's start; anything it cannot start on (an unreadable struct,
 * another domain, too large an order) gives back that start, and the first extent that fails ends
 * the call. An HVM guest's increase_reservation gets pages at no frame, so the extent list is not read.
 */
function reservationOp(ctx: HypercallContext, domain: MemoryOpDomain, op: ReservationOp, cmd: bigint, arg: bigint): bigint {
  const start = startExtent(cmd);
  const r = guestReadable(() => readArg(ctx, xenMemoryReservation[ctx.abi], arg));
  if (!r) return start;
  const nr = BigInt(r.nr_extents);
  if (nr > BigInt(0xffffffff >>> MEMOP_EXTENT_SHIFT) || start >= nr) return start;
  if (r.domid !== DOMID.SELF && r.domid !== domain.domid) return start;
  const bits = xenmemfGetAddressBits(r.mem_flags);
  if (bits !== 0 && bits <= PAGE_SHIFT) return start;
  if (r.extent_order > DOMU_MAX_ORDER) return start;
  // Xen refuses a domain populate-on-demand on itself.
  if (op === 'populate_physmap' && r.mem_flags & XENMEMF.populate_on_demand) return start;
  const word = ctx.abi === 'native' ? 8 : 4;
  const list = BigInt(r.extent_start);
  const n = Number(nr);
  let done = Number(start);
  domain.reservation.change(() => {
    for (; done < n; done++) {
      if (op === 'increase_reservation') {
        if (!domain.reservation.allocate(r.extent_order)) break;
        continue;
      }
      const entry = guestReadable(() => ctx.guest.read(list + BigInt(done * word), word));
      if (!entry) break;
      const view = new DataView(entry.buffer);
      if (!extentDone(domain, op, word === 8 ? view.getBigUint64(0, true) : BigInt(view.getUint32(0, true)), r.extent_order)) break;
    }
  });
  return BigInt(done);
}

/** One extent of decrease_reservation (page by page, stopping at the first frame with nothing) or populate_physmap. */
function extentDone(domain: MemoryOpDomain, op: 'decrease_reservation' | 'populate_physmap', gfn: bigint, order: number): boolean {
  const n = 2 ** order;
  if (gfn + BigInt(n) > BigInt(Number.MAX_SAFE_INTEGER)) return false;
  const first = Number(gfn);
  if (op === 'decrease_reservation') {
    for (let i = 0; i < n; i++) if (!domain.reservation.removePage(first + i)) return false;
    return true;
  }
  const result = domain.reservation.populate(first, order);
  if (result === 'outside-ram') {
    domain.guestLog.warn('populate-outside-ram', { gfn: `0x${first.toString(16)}`, order },
      'guest asked populate_physmap for a frame outside the RAM xenkvm was started with, which has no page to put there; the call stops at that extent');
  }
  return result === 'done';
}

/** What `read` returns, or undefined where the guest's memory is not there to read (Xen's failed copy_from_guest). */
function guestReadable<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (e) {
    if (e instanceof GuestFaultError || e instanceof GuestMemoryError) return undefined;
    throw e;
  }
}

/** current/maximum_reservation and maximum_gpfn: a domid, then a count of pages or a frame. */
function reservationQuery(ctx: HypercallContext, domain: MemoryOpDomain, cmd: bigint, arg: bigint, answer: (r: Reservation) => number): number {
  if (startExtent(cmd) !== 0n) throw new XenError(XEN_ERRNO.EINVAL);
  const domid = new DataView(ctx.guest.read(arg, 2).buffer).getUint16(0, true);
  checkSelf(domid, domain.domid);
  return answer(domain.reservation);
}

export const MEMORY_OP_ROUTE = subOpRoute(HYPERCALL.memory_op, (args) => Number(args[0] & MEMOP_CMD_MASK), 'XENMEM_', XENMEM, {
  add_to_physmap: 'main', add_to_physmap_batch: 'main', memory_map: 'main', set_memory_map: 'main', current_reservation: 'main', maximum_reservation: 'main',
  maximum_gpfn: 'main', maximum_ram_page: 'main', increase_reservation: 'main', decrease_reservation: 'main', populate_physmap: 'main',
});

/** memory_op on the main thread, which holds every vCPU while the memory map changes. */
export function memoryOps(domain: MemoryOpDomain): ServedOps {
  return served(MEMORY_OP_ROUTE, {
    add_to_physmap: (ctx, [, arg]) => addToPhysmap(ctx, domain, arg),
    add_to_physmap_batch: (ctx, [, arg]) => addToPhysmapBatch(ctx, domain, arg),
    memory_map: (ctx, [, arg]) => memoryMap(ctx, domain, arg),
    set_memory_map: (ctx, [, arg]) => setMemoryMap(ctx, domain, arg),
    current_reservation: (ctx, [cmd, arg]) => reservationQuery(ctx, domain, cmd, arg, (r) => r.totPages),
    maximum_reservation: (ctx, [cmd, arg]) => reservationQuery(ctx, domain, cmd, arg, (r) => r.maxPages),
    maximum_gpfn: (ctx, [cmd, arg]) => reservationQuery(ctx, domain, cmd, arg, (r) => r.maximumGpfn),
    maximum_ram_page: (_ctx, [cmd]) => {
      if (startExtent(cmd) !== 0n) throw new XenError(XEN_ERRNO.EINVAL);
      return domain.reservation.ramEndGfn;
    },
    increase_reservation: (ctx, [cmd, arg]) => reservationOp(ctx, domain, 'increase_reservation', cmd, arg),
    decrease_reservation: (ctx, [cmd, arg]) => reservationOp(ctx, domain, 'decrease_reservation', cmd, arg),
    populate_physmap: (ctx, [cmd, arg]) => reservationOp(ctx, domain, 'populate_physmap', cmd, arg),
  });
}

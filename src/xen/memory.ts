// memory_op: placing the shared_info page (XENMAPSPACE_shared_info, alone or
// in a batch), the guest's memory map, and its reservation. The other spaces
// and sub-ops arrive with later subsystems (grant tables) and are -ENOSYS
// until then.
import { OverlayPlacementError, type MemoryMap } from '../memory/memory-map.js';
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { nameOf, type Abi } from './abi/layout.js';
import { e820Entry, MEMOP_CMD_MASK, XENMAPSPACE, XENMEM, xenAddToPhysmap, xenAddToPhysmapBatch, xenMemoryMap } from './abi/memory.js';
import { DOMID } from './abi/xen.js';
import type { DomainState } from './domain-state.js';
import { NotImplementedError, XenError } from './errors.js';
import { readArg, writeArgU32, type HypercallContext } from './hypercall.js';
import { served, subOpRoute, type ServedOps } from './routes.js';
import { SHARED_INFO_PAGE, writeWallclock } from './shared-info.js';

export interface MemoryOpDomain {
  domid: number;
  memoryMap: MemoryMap;
  state: DomainState;
  /** The shared_info page itself. */
  sharedInfo: Uint8Array;
  bootWallNs: bigint;
  /** The guest's e820, as XENMEM_memory_map returns it. */
  e820: readonly { addr: number; size: number; type: number }[];
  /** Pages of RAM the domain has (current and maximum reservation). */
  ramPages: number;
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

function mapSharedInfo(domain: MemoryOpDomain, abi: Abi, idx: bigint, gpfn: bigint): void {
  if (idx !== 0n) throw new XenError(XEN_ERRNO.EINVAL);
  if (gpfn > BigInt(Number.MAX_SAFE_INTEGER)) throw new XenError(XEN_ERRNO.EINVAL);
  try {
    domain.memoryMap.mapOverlay(SHARED_INFO_PAGE, Number(gpfn));
  } catch (e) {
    if (!(e instanceof OverlayPlacementError)) throw e;
    // A frame KVM keeps for itself is refused as Xen refuses direct-mapped MMIO.
    throw new XenError(PLACEMENT_ERRNO[e.reason], e.message);
  }
  latchSharedInfoAbi(domain, abi);
}

function addToPhysmap(ctx: HypercallContext, domain: MemoryOpDomain, arg: bigint): number {
  const def = xenAddToPhysmap[ctx.abi];
  const a = readArg(ctx, def, arg);
  checkSelf(a.domid, domain.domid);
  switch (a.space) {
    case XENMAPSPACE.shared_info:
      mapSharedInfo(domain, ctx.abi, BigInt(a.idx), BigInt(a.gpfn));
      return 0;
    case XENMAPSPACE.grant_table:
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
  if (b.space !== XENMAPSPACE.shared_info) throw new XenError(b.space <= XENMAPSPACE.dev_mmio ? XEN_ERRNO.ENOSYS : XEN_ERRNO.EINVAL);
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
        mapSharedInfo(domain, ctx.abi, at(idxs, i), at(gpfns, i));
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
  const n = Math.min(m.nr_entries, domain.e820.length);
  const entry = e820Entry.native; // packed, the same in both ABIs
  const out = new Uint8Array(n * entry.size);
  domain.e820.slice(0, n).forEach((e, i) => out.set(entry.encode({ addr: BigInt(e.addr), size: BigInt(e.size), type: e.type }), i * entry.size));
  ctx.guest.write(BigInt(m.buffer), out);
  writeArgU32(ctx, arg + BigInt(def.offsets.nr_entries), n);
  return 0;
}

function reservation(ctx: HypercallContext, domain: MemoryOpDomain, arg: bigint): number {
  const domid = new DataView(ctx.guest.read(arg, 2).buffer).getUint16(0, true);
  checkSelf(domid, domain.domid);
  return domain.ramPages;
}

export const MEMORY_OP_ROUTE = subOpRoute(HYPERCALL.memory_op, (args) => Number(args[0] & MEMOP_CMD_MASK), 'XENMEM_', XENMEM, {
  add_to_physmap: 'main', add_to_physmap_batch: 'main', memory_map: 'main', current_reservation: 'main', maximum_reservation: 'main',
});

/** memory_op on the main thread, which holds every vCPU while the memory map changes. */
export function memoryOps(domain: MemoryOpDomain): ServedOps {
  return served(MEMORY_OP_ROUTE, {
    add_to_physmap: (ctx, [, arg]) => addToPhysmap(ctx, domain, arg),
    add_to_physmap_batch: (ctx, [, arg]) => addToPhysmapBatch(ctx, domain, arg),
    memory_map: (ctx, [, arg]) => memoryMap(ctx, domain, arg),
    current_reservation: (ctx, [, arg]) => reservation(ctx, domain, arg),
    maximum_reservation: (ctx, [, arg]) => reservation(ctx, domain, arg),
  });
}

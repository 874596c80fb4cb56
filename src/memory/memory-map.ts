// The guest-physical memory map as KVM sees it: RAM regions split around the
// overlay pages mapped into them, one memslot per piece. Mapping an overlay
// page again moves it, so each overlay has exactly one mapping at a time.
// KVM cannot split a slot in place, so a change deletes and re-adds slots: the
// caller pauses the vCPUs around it.
import { GuestMemory, PAGE_SIZE, type RamRegion } from './guest-memory.js';

export type SlotBacking = { kind: 'ram'; offset: number } | { kind: 'overlay'; page: number };
export interface SlotSpec {
  gpa: number;
  size: number;
  backing: SlotBacking;
}

/** The slots for RAM regions with overlay pages (page index by frame) taking the place of RAM at their frames. */
export function planSlots(regions: readonly RamRegion[], overlays: ReadonlyMap<number, number>): SlotSpec[] {
  const slots: SlotSpec[] = [];
  const frames = [...overlays.keys()].sort((a, b) => a - b);
  for (const r of regions) {
    let cursor = r.gpa;
    const end = r.gpa + r.size;
    for (const gfn of frames) {
      const gpa = gfn * PAGE_SIZE;
      if (gpa < r.gpa || gpa >= end) continue;
      if (gpa > cursor) slots.push({ gpa: cursor, size: gpa - cursor, backing: { kind: 'ram', offset: r.offset + cursor - r.gpa } });
      cursor = gpa + PAGE_SIZE;
    }
    if (end > cursor) slots.push({ gpa: cursor, size: end - cursor, backing: { kind: 'ram', offset: r.offset + cursor - r.gpa } });
  }
  for (const gfn of frames) slots.push({ gpa: gfn * PAGE_SIZE, size: PAGE_SIZE, backing: { kind: 'overlay', page: overlays.get(gfn)! } });
  return slots.sort((a, b) => a.gpa - b.gpa);
}

export interface MemslotSink {
  setUserMemoryRegion(slot: number, gpa: number, size: number, hostAddress: bigint): void;
}

/** Overlays may be placed at guest-physical addresses below 1 TiB, far above any RAM xenkvm gives a guest. */
export const MAX_OVERLAY_GFN = 2 ** 28 - 1;

/** Why an overlay page cannot go where it was asked to; nothing changed. */
export class OverlayPlacementError extends Error {
  override name = 'OverlayPlacementError';
  constructor(
    /** out-of-range: beyond MAX_OVERLAY_GFN; reserved: a frame KVM keeps for itself; no-slots: KVM has too few memslots for the result. */
    readonly reason: 'out-of-range' | 'reserved' | 'no-slots',
    message: string,
  ) {
    super(message);
  }
}

export class MemoryMap {
  private readonly slots = new Map<number, { gpa: number; size: number; host: bigint }>();
  /** Open batch() calls: while any is, placements change and KVM's slots follow once, at the end. */
  private batches = 0;

  constructor(
    private readonly sink: MemslotSink,
    private readonly memory: GuestMemory,
    private readonly maxSlots: number,
    /** Frames KVM keeps for itself (its TSS and identity-map pages, the LAPIC's): no overlay goes there. */
    private readonly reservedFrames: ReadonlySet<number> = new Set(),
  ) {
    this.apply();
  }

  /**
   * Places overlay page `page` at frame `gfn`, moving it if it was mapped elsewhere. Another overlay at
   * that frame leaves the guest's view (as Xen frees whatever page was at a frame it maps shared_info
   * at). Checked before any memslot changes: OverlayPlacementError says why it cannot be.
   */
  mapOverlay(page: number, gfn: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.memory.overlayPageCount) throw new RangeError(`no overlay page ${page}`);
    if (!Number.isInteger(gfn) || gfn < 0 || gfn > MAX_OVERLAY_GFN) throw new OverlayPlacementError('out-of-range', `frame 0x${gfn.toString(16)} is out of range`);
    if (this.reservedFrames.has(gfn)) throw new OverlayPlacementError('reserved', `frame 0x${gfn.toString(16)} is one KVM keeps for itself`);
    const placement = this.memory.placement;
    const occupant = placement.pageAt(gfn);
    const was = placement.frameOf(page);
    placement.place(page, gfn);
    if (this.plan().length > this.maxSlots) {
      if (was === undefined) placement.remove(page);
      else placement.place(page, was);
      if (occupant >= 0 && occupant !== page) placement.place(occupant, gfn);
      throw new OverlayPlacementError('no-slots', `frame 0x${gfn.toString(16)} would need more than KVM's ${this.maxSlots} memory slots`);
    }
    if (this.batches === 0) this.apply();
  }

  /**
   * Runs `changes` (overlay placements) with KVM's slots brought in line once, after all of them: a
   * guest's batch that moves a page back and forth costs one slot update, not one per move.
   */
  batch<T>(changes: () => T): T {
    this.batches++;
    try {
      return changes();
    } finally {
      if (--this.batches === 0) this.apply();
    }
  }

  unmapOverlay(page: number): void {
    if (this.memory.placement.frameOf(page) === undefined) return;
    this.memory.placement.remove(page);
    if (this.batches === 0) this.apply();
  }

  /** The frame overlay page `page` is mapped at, or undefined. */
  overlayFrame(page: number): number | undefined {
    return this.memory.placement.frameOf(page);
  }

  /** Current slots, for tests and diagnostics. */
  get layout(): { slot: number; gpa: number; size: number; host: bigint }[] {
    return [...this.slots].map(([slot, s]) => ({ slot, ...s })).sort((a, b) => a.gpa - b.gpa);
  }

  private hostAddress(b: SlotBacking): bigint {
    return b.kind === 'ram' ? this.memory.ram.hostAddress + BigInt(b.offset) : this.memory.overlays.hostAddress + BigInt(b.page * PAGE_SIZE);
  }

  /** The slots the current placement needs. */
  private plan(): { gpa: number; size: number; host: bigint }[] {
    const overlays = new Map<number, number>();
    this.memory.placement.frames.forEach((gfn, page) => gfn >= 0 && overlays.set(gfn, page));
    return planSlots(this.memory.regions, overlays).map((s) => ({ gpa: s.gpa, size: s.size, host: this.hostAddress(s.backing) }));
  }

  /** Brings KVM's slots in line with the plan: unchanged slots stay, stale ones go first so new ones never overlap them. */
  private apply(): void {
    const key = (s: { gpa: number; size: number; host: bigint }) => `${s.gpa}:${s.size}:${s.host}`;
    const wanted = new Map(this.plan().map((w) => [key(w), w]));
    const kept = new Set<string>();
    for (const [slot, s] of this.slots) {
      const k = key(s);
      if (wanted.has(k)) {
        kept.add(k);
        continue;
      }
      this.sink.setUserMemoryRegion(slot, s.gpa, 0, s.host);
      this.slots.delete(slot);
    }
    let slot = 0;
    for (const [k, w] of wanted) {
      if (kept.has(k)) continue;
      while (this.slots.has(slot)) slot++;
      if (slot >= this.maxSlots) throw new Error(`out of KVM memory slots (${this.maxSlots})`);
      this.sink.setUserMemoryRegion(slot, w.gpa, w.size, w.host);
      this.slots.set(slot, w);
    }
  }
}

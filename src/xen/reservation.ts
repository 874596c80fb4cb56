// The domain's memory as Xen accounts it, the balloon driver's view: pages held
// (tot_pages) against the most it may hold (max_pages), and which frames of RAM
// are populated. A frame the guest gives back has its host memory freed at
// once; populated again it reads as zeros, as Xen scrubs the pages it hands out.
// Main thread only, with the vCPUs held (memory_op and soft reset).
//
// What xenkvm cannot do as Xen does: it has no page to put outside the RAM it
// was started with, so populate_physmap stops at a frame there; and a frame
// given back stays in KVM's memory map, so a guest that touches it again gets
// a zero page (bounded by its RAM, as before it gave the frame back) where Xen
// would show a hole.
import type { GuestMemory } from '../memory/guest-memory.js';
import type { MemoryMap } from '../memory/memory-map.js';

export class Reservation {
  /** tot_pages: the pages the domain holds, including those increase_reservation gave it with no frame. */
  private pages: number;
  readonly maxPages: number;
  /** The highest frame ever mapped (Xen's max_mapped_pfn), for XENMEM_maximum_gpfn. */
  private maxMappedGfn: number;
  /** RAM pages given back since the last flush, as a run [start, start+count) to free in one call. */
  private run = { start: 0, count: 0 };

  constructor(
    private readonly memory: GuestMemory,
    private readonly memoryMap: MemoryMap,
  ) {
    this.pages = memory.ramPageCount;
    this.maxPages = this.pages;
    this.maxMappedGfn = Math.max(...memory.regions.map((r) => (r.gpa + r.size) / 4096 - 1), ...memory.placement.frames);
  }

  get totPages(): number {
    return this.pages;
  }

  /** One past the highest frame of RAM: the "machine" this domain sees (XENMEM_maximum_ram_page). */
  get ramEndGfn(): number {
    return Math.max(...this.memory.regions.map((r) => (r.gpa + r.size) / 4096));
  }

  get maximumGpfn(): number {
    return Math.max(this.maxMappedGfn, ...this.memory.placement.frames);
  }

  /** The guest gives RAM page `ram` back: no longer held, its host memory freed. False if it was already given. */
  private giveBack(ram: number): boolean {
    if (this.memory.isReturned(ram)) return false;
    this.memory.setReturned(ram, true);
    this.pages--;
    this.discard(ram);
    return true;
  }

  /** Frees a RAM page's host memory, joining it to the pending run when it follows on. */
  private discard(ramPage: number): void {
    if (this.run.count > 0 && ramPage === this.run.start + this.run.count) {
      this.run.count++;
      return;
    }
    this.flush();
    this.run = { start: ramPage, count: 1 };
  }

  /** Frees the pending run; every operation ends with it, so no freed page is read before. */
  flush(): void {
    if (this.run.count > 0) this.memory.discardRam(this.run.start, this.run.count);
    this.run = { start: 0, count: 0 };
  }

  /** Runs `change` with the memslot updates it causes made once, and the pages it frees freed, at its end. */
  change<T>(change: () => T): T {
    try {
      return this.memoryMap.batch(change);
    } finally {
      this.flush();
    }
  }

  /**
   * guest_remove_page: whatever is at gfn leaves the guest's map, an overlay page (shared_info, a grant frame) or its
   * page of RAM, whose memory goes back to the host. False when there was nothing there.
   */
  removePage(gfn: number): boolean {
    let removed = false;
    const overlay = this.memory.placement.pageAt(gfn);
    if (overlay >= 0) {
      this.memoryMap.unmapOverlay(overlay);
      removed = true;
    }
    const ram = this.memory.ramPageOf(gfn);
    if (ram !== undefined && this.giveBack(ram)) removed = true;
    return removed;
  }

  /**
   * populate_physmap of one extent: 2^order fresh (zeroed) pages at gfn.. . Refused when they would
   * take the domain past max_pages, or when a frame lies outside RAM. A frame that held a page keeps
   * that page allocated and counted, as Xen leaves it (only unmapped); an overlay there is unmapped.
   */
  populate(gfn: number, order: number): 'done' | 'over-max' | 'outside-ram' {
    const n = 2 ** order;
    const ram: number[] = [];
    for (let i = 0; i < n; i++) {
      const page = this.memory.ramPageOf(gfn + i);
      if (page === undefined) return 'outside-ram';
      ram.push(page);
    }
    if (this.pages + n > this.maxPages) return 'over-max';
    for (let i = 0; i < n; i++) {
      const overlay = this.memory.placement.pageAt(gfn + i);
      if (overlay >= 0) this.memoryMap.unmapOverlay(overlay);
      this.memory.setReturned(ram[i], false);
      this.discard(ram[i]);
    }
    this.pages += n;
    return 'done';
  }

  /** increase_reservation for an HVM guest: 2^order pages the domain holds at no frame. */
  allocate(order: number): boolean {
    const n = 2 ** order;
    if (this.pages + n > this.maxPages) return false;
    this.pages += n;
    return true;
  }

  /** An overlay page went to gfn (shared_info, a grant frame): the RAM page it covers is freed, as Xen frees a page it maps over. */
  overlayMapped(gfn: number): void {
    this.maxMappedGfn = Math.max(this.maxMappedGfn, gfn);
    const ram = this.memory.ramPageOf(gfn);
    if (ram !== undefined && this.giveBack(ram)) this.flush();
  }

  /** A fresh page of RAM at gfn, where soft reset takes shared_info away; nothing outside RAM. */
  refill(gfn: number): void {
    const ram = this.memory.ramPageOf(gfn);
    if (ram === undefined) return;
    if (this.memory.isReturned(ram)) {
      this.memory.setReturned(ram, false);
      this.pages++;
    }
    this.discard(ram);
    this.flush();
  }
}

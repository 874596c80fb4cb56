// Bounds-checked access to guest-physical memory: RAM regions of a memfd, with
// overlay pages taking the place of RAM at the frames they are mapped at.
import type { PhysicalMemory } from './page-walker.js';
import { SharedMemory, type SharedMemoryHandle } from './shared-memory.js';

export const PAGE_SIZE = 4096;

/** A guest-physical range of RAM, backed by the RAM memfd at `offset`. */
export interface RamRegion {
  gpa: number;
  size: number;
  offset: number;
}

/** Access to guest-physical memory that no RAM or overlay backs. */
export class GuestMemoryError extends Error {
  override name = 'GuestMemoryError';
  constructor(
    readonly gpa: number,
    readonly length: number,
  ) {
    super(`guest-physical range 0x${gpa.toString(16)}+${length} is not backed by guest memory`);
  }
}

/** What another thread needs to resolve frames as this one does. */
export interface OverlayPlacementHandle {
  frames: SharedArrayBuffer;
  index: SharedArrayBuffer;
}

/** Slots in the frame index per overlay page: at most half full, so a lookup probes about one slot. */
const INDEX_SLOTS_PER_PAGE = 2;

/**
 * Where each overlay page is mapped (a frame number, or -1), and the reverse: which overlay page is at
 * a frame, found in O(1) through an open-addressing hash of (frame, page) pairs. Both live in
 * SharedArrayBuffers so every thread resolves frames the same way; only the main thread changes them,
 * with the vCPUs paused.
 */
export class OverlayPlacement {
  readonly frames: Float64Array;
  /** Pairs (frame, page); frame -1 marks a free slot. */
  private readonly index: Int32Array;
  private readonly mask: number;
  private readonly shift: number;

  constructor(readonly handle: OverlayPlacementHandle) {
    this.frames = new Float64Array(handle.frames);
    this.index = new Int32Array(handle.index);
    const slots = this.index.length / 2;
    this.mask = slots - 1;
    this.shift = 32 - Math.log2(slots);
  }

  static create(pages: number): OverlayPlacement {
    let slots = 8;
    while (slots < pages * INDEX_SLOTS_PER_PAGE) slots *= 2;
    const p = new OverlayPlacement({ frames: new SharedArrayBuffer(pages * 8), index: new SharedArrayBuffer(slots * 8) });
    p.frames.fill(-1);
    p.index.fill(-1);
    return p;
  }

  /** Fibonacci hashing: consecutive frames (grant tables are mapped in runs) land far apart. */
  private home(gfn: number): number {
    return Math.imul(gfn, 0x9e3779b1) >>> this.shift;
  }

  /** The index slot holding gfn, or -1. */
  private slotOf(gfn: number): number {
    if (!Number.isInteger(gfn) || gfn < 0 || gfn > 0x7fffffff) return -1;
    for (let i = this.home(gfn); ; i = (i + 1) & this.mask) {
      const key = this.index[2 * i];
      if (key === gfn) return i;
      if (key === -1) return -1;
    }
  }

  /** The overlay page mapped at gfn, or -1. */
  pageAt(gfn: number): number {
    const slot = this.slotOf(gfn);
    return slot < 0 ? -1 : this.index[2 * slot + 1];
  }

  /** The frame overlay page `page` is mapped at, or undefined. */
  frameOf(page: number): number | undefined {
    const gfn = this.frames[page];
    return gfn >= 0 ? gfn : undefined;
  }

  /** Maps page at gfn: the page leaves the frame it was at, and whichever page was at gfn leaves it. */
  place(page: number, gfn: number): void {
    if (!Number.isInteger(gfn) || gfn < 0 || gfn > 0x7fffffff) throw new RangeError(`frame ${gfn} cannot hold an overlay page`);
    const occupant = this.pageAt(gfn);
    if (occupant === page) return;
    if (occupant >= 0) this.remove(occupant);
    this.remove(page);
    let i = this.home(gfn);
    while (this.index[2 * i] !== -1) i = (i + 1) & this.mask;
    this.index[2 * i + 1] = page;
    this.index[2 * i] = gfn;
    this.frames[page] = gfn;
  }

  /** Takes page out of the guest's view; nothing if it is not mapped. */
  remove(page: number): void {
    const gfn = this.frames[page];
    if (gfn < 0) return;
    this.frames[page] = -1;
    let hole = this.slotOf(gfn);
    // Backward-shift deletion: later entries of the same probe run move up, so no lookup stops early.
    for (let j = (hole + 1) & this.mask; this.index[2 * j] !== -1; j = (j + 1) & this.mask) {
      const home = this.home(this.index[2 * j]);
      const stays = hole < j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      this.index[2 * hole] = this.index[2 * j];
      this.index[2 * hole + 1] = this.index[2 * j + 1];
      hole = j;
    }
    this.index[2 * hole] = -1;
  }
}

export interface GuestMemoryHandle {
  ram: SharedMemoryHandle;
  regions: RamRegion[];
  overlays: SharedMemoryHandle;
  placement: OverlayPlacementHandle;
  returned: SharedArrayBuffer;
}

export class GuestMemory {
  private constructor(
    readonly ram: SharedMemory,
    readonly regions: readonly RamRegion[],
    readonly overlays: SharedMemory,
    readonly placement: OverlayPlacement,
    /** One bit per page of RAM, set while the guest has given the page back (the balloon, or an overlay mapped over it). */
    private readonly returned: Uint8Array,
  ) {}

  /** Creates guest RAM for the given guest-physical ranges and a pool of overlay pages. */
  static create(ranges: { gpa: number; size: number }[], overlayPages: number): GuestMemory {
    let offset = 0;
    const regions = ranges.map((r) => {
      if (r.gpa % PAGE_SIZE || r.size % PAGE_SIZE || r.size <= 0) throw new Error(`RAM range 0x${r.gpa.toString(16)}+${r.size} is not page-aligned`);
      const region = { gpa: r.gpa, size: r.size, offset };
      offset += r.size;
      return region;
    });
    const ram = SharedMemory.create('xenkvm-ram', offset);
    try {
      const overlays = SharedMemory.create('xenkvm-overlays', overlayPages * PAGE_SIZE);
      return new GuestMemory(ram, regions, overlays, OverlayPlacement.create(overlayPages), new Uint8Array(new SharedArrayBuffer(Math.ceil(offset / PAGE_SIZE / 8))));
    } catch (e) {
      ram.dispose();
      throw e;
    }
  }

  /** Maps the same memory in this thread. */
  static attach(h: GuestMemoryHandle): GuestMemory {
    return new GuestMemory(SharedMemory.attach(h.ram), h.regions, SharedMemory.attach(h.overlays), new OverlayPlacement(h.placement), new Uint8Array(h.returned));
  }

  get handle(): GuestMemoryHandle {
    return { ram: this.ram.handle, regions: [...this.regions], overlays: this.overlays.handle, placement: this.placement.handle, returned: this.returned.buffer as SharedArrayBuffer };
  }

  /** Pages of RAM, all regions together. */
  get ramPageCount(): number {
    return this.ram.handle.size / PAGE_SIZE;
  }

  /** Which page of RAM (counting through the regions in order) backs frame gfn, or undefined outside RAM. */
  ramPageOf(gfn: number): number | undefined {
    const gpa = gfn * PAGE_SIZE;
    for (const r of this.regions) if (gpa >= r.gpa && gpa < r.gpa + r.size) return (r.offset + gpa - r.gpa) / PAGE_SIZE;
    return undefined;
  }

  /** Whether the guest has given RAM page `page` back. */
  isReturned(page: number): boolean {
    return (this.returned[page >> 3] & (1 << (page & 7))) !== 0;
  }

  /** Records RAM page `page` as given back or held again; the main thread's, with the vCPUs held. */
  setReturned(page: number, returned: boolean): void {
    if (returned) this.returned[page >> 3] |= 1 << (page & 7);
    else this.returned[page >> 3] &= ~(1 << (page & 7));
  }

  /**
   * The RAM page at frame gfn when the guest holds it there (what it may grant), else undefined: outside
   * RAM, given back, or under an overlay (whose RAM page was given back when it was mapped). Reads only
   * what is safe from any thread while the vCPUs run.
   */
  heldRamPage(gfn: number): number | undefined {
    if (!Number.isSafeInteger(gfn) || gfn < 0) return undefined;
    const page = this.ramPageOf(gfn);
    return page === undefined || this.isReturned(page) ? undefined : page;
  }

  /** RAM page `page` itself, at its fixed host address. */
  ramPage(page: number): Uint8Array {
    return this.ram.bytes(page * PAGE_SIZE, PAGE_SIZE);
  }

  /** Gives `count` pages of RAM from page `first` back to the host; they read as zeros until written again. */
  discardRam(first: number, count: number): void {
    this.ram.discard(first * PAGE_SIZE, count * PAGE_SIZE);
  }

  get overlayPageCount(): number {
    return this.placement.frames.length;
  }

  /** Overlay page i itself, at its fixed host address, wherever the guest has it mapped. */
  overlayPage(index: number): Uint8Array {
    return this.overlays.bytes(index * PAGE_SIZE, PAGE_SIZE);
  }

  /**
   * Where [gpa, gpa+length) lives when it lies in one page and is backed: an offset into RAM, or
   * into the overlay pool as −offset − 1; else undefined. A number, so page walks locate many words
   * without making an object or a view for each.
   */
  private locate(gpa: number, length: number): number | undefined {
    if (!Number.isSafeInteger(gpa) || gpa < 0) return undefined;
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const inPage = gpa - gfn * PAGE_SIZE;
    if (inPage + length > PAGE_SIZE) return undefined;
    const overlay = this.placement.pageAt(gfn);
    if (overlay >= 0) return -(overlay * PAGE_SIZE + inPage) - 1;
    for (const r of this.regions) if (gpa >= r.gpa && gpa + length <= r.gpa + r.size) return r.offset + gpa - r.gpa;
    return undefined;
  }

  /** The bytes of [gpa, gpa+length) when they lie in one page and are backed, else undefined. */
  private pageBytes(gpa: number, length: number): Uint8Array | undefined {
    const at = this.locate(gpa, length);
    return at === undefined ? undefined : at >= 0 ? this.ram.bytes(at, length) : this.overlays.bytes(-at - 1, length);
  }

  /** Visits [gpa, gpa+length) page by page; throws GuestMemoryError before touching anything if any part is unbacked. */
  private pieces(gpa: number, length: number): Uint8Array[] {
    if (!Number.isSafeInteger(length) || length < 0) throw new GuestMemoryError(gpa, length);
    const out: Uint8Array[] = [];
    let done = 0;
    while (done < length) {
      const at = gpa + done;
      const n = Math.min(length - done, PAGE_SIZE - (at % PAGE_SIZE));
      const bytes = this.pageBytes(at, n);
      if (!bytes) throw new GuestMemoryError(gpa, length);
      out.push(bytes);
      done += n;
    }
    return out;
  }

  /** Whether [gpa, gpa+length) is ordinary RAM: backed, and no overlay page in it. */
  isRam(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length <= 0) return false;
    for (let gfn = Math.floor(gpa / PAGE_SIZE); gfn * PAGE_SIZE < gpa + length; gfn++) if (this.placement.pageAt(gfn) >= 0) return false;
    return this.regions.some((r) => gpa >= r.gpa && gpa + length <= r.gpa + r.size);
  }

  /** Whether every page of [gpa, gpa+length) is backed; the check pieces() makes, without its array or an exception. */
  isBacked(gpa: number, length = 1): boolean {
    if (!Number.isSafeInteger(length) || length < 0) return false;
    for (let done = 0; done < length; ) {
      const at = gpa + done;
      const n = Math.min(length - done, PAGE_SIZE - (at % PAGE_SIZE));
      if (this.locate(at, n) === undefined) return false;
      done += n;
    }
    return true;
  }

  read(gpa: number, length: number): Uint8Array {
    const pieces = this.pieces(gpa, length);
    const out = new Uint8Array(length);
    let off = 0;
    for (const p of pieces) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  write(gpa: number, bytes: Uint8Array): void {
    let off = 0;
    for (const p of this.pieces(gpa, bytes.length)) {
      p.set(bytes.subarray(off, off + p.length));
      off += p.length;
    }
  }

  fill(gpa: number, length: number, value = 0): void {
    for (const p of this.pieces(gpa, length)) p.fill(value);
  }

  private scalar(gpa: number, size: number): DataView {
    const bytes = this.pageBytes(gpa, size);
    if (bytes) return new DataView(bytes.buffer, bytes.byteOffset, size);
    return new DataView(this.read(gpa, size).buffer); // crosses a page: copy (unbacked throws)
  }

  readU8(gpa: number): number { return this.scalar(gpa, 1).getUint8(0); }
  readU16(gpa: number): number { return this.scalar(gpa, 2).getUint16(0, true); }
  readU32(gpa: number): number { return this.scalar(gpa, 4).getUint32(0, true); }
  readU64(gpa: number): bigint { return this.scalar(gpa, 8).getBigUint64(0, true); }

  writeU8(gpa: number, v: number): void { this.writeScalar(gpa, 1, (d) => d.setUint8(0, v)); }
  writeU16(gpa: number, v: number): void { this.writeScalar(gpa, 2, (d) => d.setUint16(0, v, true)); }
  writeU32(gpa: number, v: number): void { this.writeScalar(gpa, 4, (d) => d.setUint32(0, v, true)); }
  writeU64(gpa: number, v: bigint): void { this.writeScalar(gpa, 8, (d) => d.setBigUint64(0, v, true)); }

  private writeScalar(gpa: number, size: number, set: (d: DataView) => void): void {
    const bytes = this.pageBytes(gpa, size);
    if (bytes) return set(new DataView(bytes.buffer, bytes.byteOffset, size));
    const tmp = new Uint8Array(size);
    set(new DataView(tmp.buffer));
    this.write(gpa, tmp);
  }

  /**
   * The aligned 32-bit word at gpa as a one-element Int32Array over guest
   * memory itself, for atomic bit operations the guest sees as atomic (x86
   * keeps locked operations on overlapping words atomic); undefined when
   * unaligned or unbacked.
   */
  int32At(gpa: number): Int32Array | undefined {
    if (gpa % 4 !== 0) return undefined;
    const bytes = this.pageBytes(gpa, 4);
    return bytes && new Int32Array(bytes.buffer, bytes.byteOffset, 1);
  }

  /** The page walker's view: aligned words, unbacked as undefined rather than an exception. */
  readonly walkerView: PhysicalMemory = {
    readU32: (gpa) => {
      const at = gpa % 4 === 0 ? this.locate(gpa, 4) : undefined;
      return at === undefined ? undefined : at >= 0 ? this.ram.u32(at) : this.overlays.u32(-at - 1);
    },
    writeU32: (gpa, v) => {
      const at = gpa % 4 === 0 ? this.locate(gpa, 4) : undefined;
      if (at === undefined) return false;
      if (at >= 0) this.ram.setU32(at, v);
      else this.overlays.setU32(-at - 1, v);
      return true;
    },
  };

  dispose(): void {
    this.ram.dispose();
    this.overlays.dispose();
  }
}

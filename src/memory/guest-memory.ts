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

/**
 * Where overlay page i is mapped (a frame number), or -1. Lives in a
 * SharedArrayBuffer so every thread resolves frames the same way; only the
 * main thread writes it, with the vCPUs paused.
 */
export class OverlayPlacement {
  readonly frames: Float64Array;
  constructor(readonly buffer: SharedArrayBuffer) {
    this.frames = new Float64Array(buffer);
  }
  static create(pages: number): OverlayPlacement {
    const p = new OverlayPlacement(new SharedArrayBuffer(pages * 8));
    p.frames.fill(-1);
    return p;
  }
  /** The overlay page mapped at gfn, or -1. Overlays are few; a scan is cheapest. */
  pageAt(gfn: number): number {
    return this.frames.indexOf(gfn);
  }
  /** The frame overlay page `page` is mapped at, or undefined. */
  frameOf(page: number): number | undefined {
    const gfn = this.frames[page];
    return gfn >= 0 ? gfn : undefined;
  }
}

export interface GuestMemoryHandle {
  ram: SharedMemoryHandle;
  regions: RamRegion[];
  overlays: SharedMemoryHandle;
  placement: SharedArrayBuffer;
}

export class GuestMemory {
  private constructor(
    readonly ram: SharedMemory,
    readonly regions: readonly RamRegion[],
    readonly overlays: SharedMemory,
    readonly placement: OverlayPlacement,
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
      return new GuestMemory(ram, regions, overlays, OverlayPlacement.create(overlayPages));
    } catch (e) {
      ram.dispose();
      throw e;
    }
  }

  /** Maps the same memory in this thread. */
  static attach(h: GuestMemoryHandle): GuestMemory {
    return new GuestMemory(SharedMemory.attach(h.ram), h.regions, SharedMemory.attach(h.overlays), new OverlayPlacement(h.placement));
  }

  get handle(): GuestMemoryHandle {
    return { ram: this.ram.handle, regions: [...this.regions], overlays: this.overlays.handle, placement: this.placement.buffer };
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

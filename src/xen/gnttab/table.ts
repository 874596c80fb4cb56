// A domain's grant table: its shared frames (and, in version 2, status frames)
// are overlay pages the guest maps where it likes, and this is what Xen keeps
// beside them (its "active entries"): the table's version and size, and for
// each entry in use how often it is pinned for reading and for writing, and
// the frame it named when first pinned. That state lives in a
// SharedArrayBuffer under one lock, so the main thread (the guest's own grant
// operations) and backend threads (mapping what the guest granted them) agree
// on it. As in Xen, GTF_reading and GTF_writing say, in the guest's own entry
// (v1) or status frame (v2), whether an entry is pinned; a guest that sees them
// must not end access, and Linux does not.
import { PAGE_SIZE, type GuestMemory } from '../../memory/guest-memory.js';
import { GNTST, GRANT_ENTRY_V2_SIZE, GRANT_STATUS_SIZE, grantEntryV1, GTF } from '../abi/grant-table.js';

const ENTRIES_PER_FRAME = { 1: PAGE_SIZE / grantEntryV1.native.size, 2: PAGE_SIZE / GRANT_ENTRY_V2_SIZE } as const;
const STATUS_PER_FRAME = PAGE_SIZE / GRANT_STATUS_SIZE;

/** Status frames a version 2 table of `frames` shared frames needs. */
export const statusFrames = (frames: number) => Math.ceil((frames * ENTRIES_PER_FRAME[2]) / STATUS_PER_FRAME);

/** Shared frames a version 2 table needs for `status` status frames (Xen grows it that far to map the last of them). */
export const sharedFramesFor = (status: number) => Math.ceil((status * STATUS_PER_FRAME) / ENTRIES_PER_FRAME[2]);

/** Overlay pages a table of at most `maxFrames` shared frames needs: the shared frames, then the status frames. */
export const grantTablePages = (maxFrames: number) => maxFrames + statusFrames(maxFrames);

/** What another thread needs to use the same table. */
export interface GrantTableHandle {
  state: SharedArrayBuffer;
  /** The overlay page of shared frame 0; shared frame i is page firstPage + i, status frame j page firstPage + maxFrames + j. */
  firstPage: number;
  maxFrames: number;
}

// The state words: the lock, the version, the shared frames in use.
const LOCK = 0;
const VERSION = 1;
const FRAMES = 2;
const HEADER_WORDS = 4;
// Per entry: pins for reading (every pin), pins for writing, what it named when first pinned, and the
// domain holding the pins (one at a time, as in Xen).
const READERS = 0;
const WRITERS = 1;
const FRAME = 2;
const SUB_PAGE = 3;
const GRANTEE = 4;
const ENTRY_WORDS = 5;
/** SUB_PAGE of a whole-page grant: offset 0, length PAGE_SIZE. */
const WHOLE_PAGE = PAGE_SIZE << 16;

/** What a pinned entry grants: a frame of the granting domain, or the part of it a v2 sub-page grant names. */
export interface GrantedFrame {
  gfn: number;
  offset: number;
  length: number;
}

/** Where a grant may be used: mapped (whole pages only) or copied (sub-page grants too). */
export type GrantUse = 'map' | 'copy';

export class GrantTable {
  private readonly words: Int32Array;

  private constructor(
    readonly handle: GrantTableHandle,
    private readonly memory: GuestMemory,
  ) {
    this.words = new Int32Array(handle.state);
  }

  /** A new table's state, as Xen makes one: version 1, one shared frame, none of it in use. */
  static createHandle(firstPage: number, maxFrames: number): GrantTableHandle {
    const state = new SharedArrayBuffer((HEADER_WORDS + maxFrames * ENTRIES_PER_FRAME[1] * ENTRY_WORDS) * 4);
    const words = new Int32Array(state);
    words[FRAMES] = 1;
    words[VERSION] = 1;
    return { state, firstPage, maxFrames };
  }

  static create(memory: GuestMemory, firstPage: number, maxFrames: number): GrantTable {
    return GrantTable.attach(GrantTable.createHandle(firstPage, maxFrames), memory);
  }

  /** The table in this thread, over this thread's mapping of guest memory. */
  static attach(handle: GrantTableHandle, memory: GuestMemory): GrantTable {
    if (handle.firstPage + grantTablePages(handle.maxFrames) > memory.overlayPageCount) throw new RangeError(`a grant table of ${handle.maxFrames} frames does not fit the overlay pool`);
    return new GrantTable(handle, memory);
  }

  get maxFrames(): number {
    return this.handle.maxFrames;
  }

  /** 1 or 2: the toolstack's seeding of the reserved entries chose version 1, as libxl's does under Xen. */
  get version(): 1 | 2 {
    return Atomics.load(this.words, VERSION) as 1 | 2;
  }

  /** Shared frames the table has now (Xen's nr_grant_frames). */
  get frames(): number {
    return Atomics.load(this.words, FRAMES);
  }

  /** Entries in the table as it is now. */
  get entries(): number {
    return this.frames * ENTRIES_PER_FRAME[this.version];
  }

  /** The overlay page of shared frame i (below maxFrames). */
  sharedPage(i: number): number {
    return this.handle.firstPage + i;
  }

  /** The overlay page of status frame i. */
  statusPage(i: number): number {
    return this.handle.firstPage + this.handle.maxFrames + i;
  }

  /** Runs `body` holding the table's lock; short, so contenders spin and then sleep briefly. */
  locked<T>(body: () => T): T {
    for (let spins = 0; Atomics.compareExchange(this.words, LOCK, 0, 1) !== 0; spins++) {
      if (spins > 100) Atomics.wait(this.words, LOCK, 1, 1);
    }
    try {
      return body();
    } finally {
      Atomics.store(this.words, LOCK, 0);
      Atomics.notify(this.words, LOCK, 1);
    }
  }

  /** Grows the table to `frames` shared frames (never shrinks); false past maxFrames. Call locked. */
  grow(frames: number): boolean {
    if (frames > this.maxFrames) return false;
    if (frames > this.frames) Atomics.store(this.words, FRAMES, frames);
    return true;
  }

  /** Sets the version, the table already checked idle. Call locked. */
  setVersion(version: 1 | 2): void {
    Atomics.store(this.words, VERSION, version);
  }

  /** Exchanges two entries the guest made (and, in v2, their status words); neither is pinned. Call locked. */
  swapEntries(a: number, b: number): void {
    const size = PAGE_SIZE / ENTRIES_PER_FRAME[this.version];
    const ha = this.header(a);
    const hb = this.header(b);
    for (let w = 0; w < size / 4; w++) {
      const x = ha.words[ha.index + w];
      ha.words[ha.index + w] = hb.words[hb.index + w];
      hb.words[hb.index + w] = x;
    }
    if (this.version !== 2) return;
    const sa = this.status(a);
    const sb = this.status(b);
    const x = sa.halves[sa.index];
    sa.halves[sa.index] = sb.halves[sb.index];
    sb.halves[sb.index] = x;
  }

  private at(ref: number): number {
    return HEADER_WORDS + ref * ENTRY_WORDS;
  }

  /** The (flags, domid) word of an entry's header, in the guest's shared frame, for atomic updates. */
  private header(ref: number): { words: Int32Array; index: number } {
    const perFrame = ENTRIES_PER_FRAME[this.version];
    const page = this.memory.overlayPage(this.sharedPage(Math.floor(ref / perFrame)));
    const entrySize = PAGE_SIZE / perFrame;
    return { words: new Int32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4), index: ((ref % perFrame) * entrySize) / 4 };
  }

  /** A v2 entry's status word, which holds GTF_reading and GTF_writing. */
  private status(ref: number): { halves: Uint16Array; index: number } {
    const page = this.memory.overlayPage(this.statusPage(Math.floor(ref / STATUS_PER_FRAME)));
    return { halves: new Uint16Array(page.buffer, page.byteOffset, STATUS_PER_FRAME), index: ref % STATUS_PER_FRAME };
  }

  /** Entry `ref` as the guest wrote it: flags, the domain it grants to, and what it grants. */
  readEntry(ref: number): { flags: number; domid: number; frame: number; offset: number; length: number } {
    const { words, index } = this.header(ref);
    const word = Atomics.load(words, index);
    const flags = word & 0xffff;
    const domid = word >>> 16;
    if (this.version !== 2) return { flags, domid, frame: words[index + 1] >>> 0, offset: 0, length: PAGE_SIZE };
    // v2: a 64-bit frame at +8 (full and sub-page grants), the sub-page's offset and length at +4.
    const frame = (words[index + 3] >>> 0) * 2 ** 32 + (words[index + 2] >>> 0);
    if (!(flags & GTF.sub_page)) return { flags, domid, frame, offset: 0, length: PAGE_SIZE };
    const sub = words[index + 1] >>> 0;
    return { flags, domid, frame, offset: sub & 0xffff, length: sub >>> 16 };
  }

  /**
   * Pins entry `ref` for `grantee`, for reading or writing, as Xen's map and copy do: the first pin (or
   * the first for writing) checks the guest's entry (a permit_access grant to the grantee, not read-only
   * if writing, whole-page for a map) and sets GTF_reading (and GTF_writing) where the guest sees them;
   * later pins reuse what the first found. `validFrame` says whether the granted frame is a page of the
   * guest's RAM. The grant on success, else a GNTST status. Call locked.
   */
  pin(ref: number, grantee: number, writable: boolean, use: GrantUse, validFrame: (gfn: number) => boolean): GrantedFrame | number {
    if (!Number.isInteger(ref) || ref < 0 || ref >= this.entries) return GNTST.bad_gntref;
    const at = this.at(ref);
    const readers = this.words[at + READERS];
    const writers = this.words[at + WRITERS];
    // Pinned already: by the grantee alone, and a sub-page grant pinned for a copy cannot also be mapped.
    if (readers > 0 && (this.words[at + GRANTEE] !== grantee || (use === 'map' && this.words[at + SUB_PAGE] !== WHOLE_PAGE))) return GNTST.general_error;
    if (readers === 0 || (writable && writers === 0)) {
      const checked = this.markInUse(ref, grantee, writable, use, readers === 0);
      if (typeof checked === 'number') return checked;
      if (readers === 0) {
        if (!validFrame(checked.frame)) {
          this.clearInUse(ref, true, writable);
          return GNTST.bad_page;
        }
        this.words[at + FRAME] = checked.frame;
        this.words[at + SUB_PAGE] = checked.offset | (checked.length << 16);
        this.words[at + GRANTEE] = grantee;
      }
    }
    this.words[at + READERS] = readers + 1;
    if (writable) this.words[at + WRITERS] = writers + 1;
    return this.granted(ref);
  }

  /** What a pinned entry grants, as its first pin found it. */
  private granted(ref: number): GrantedFrame {
    const at = this.at(ref);
    const sub = this.words[at + SUB_PAGE];
    return { gfn: this.words[at + FRAME], offset: sub & 0xffff, length: sub >>> 16 };
  }

  /** Pins of entry ref: for reading (every pin) and for writing. */
  pins(ref: number): { readers: number; writers: number } {
    const at = this.at(ref);
    return { readers: this.words[at + READERS], writers: this.words[at + WRITERS] };
  }

  /** Drops one pin taken by pin(); the last clears GTF_reading, the last for writing GTF_writing. Call locked. */
  unpin(ref: number, writable: boolean): void {
    const at = this.at(ref);
    const readers = --this.words[at + READERS];
    const writers = writable ? --this.words[at + WRITERS] : this.words[at + WRITERS];
    if (readers === 0 || (writable && writers === 0)) this.clearInUse(ref, readers === 0, writers === 0);
  }

  /**
   * Checks the guest's entry and sets its in-use flags, atomically against the guest changing it: v1 by
   * compare-and-exchange on the header, v2 by setting the status bits and reading the header again.
   * An entry the guest keeps changing under us is refused, as Xen refuses an unstable one.
   */
  private markInUse(ref: number, grantee: number, writable: boolean, use: GrantUse, first: boolean): { frame: number; offset: number; length: number } | number {
    const set = (first ? GTF.reading : 0) | (writable ? GTF.writing : 0);
    const { words, index } = this.header(ref);
    for (let attempt = 0; attempt < 4; attempt++) {
      const word = Atomics.load(words, index);
      const refused = this.refusal(word, grantee, writable, use);
      if (refused !== undefined) return refused;
      if (this.version !== 2) {
        if (Atomics.compareExchange(words, index, word, word | set) !== word) continue;
        return this.readEntry(ref);
      }
      const { halves, index: s } = this.status(ref);
      Atomics.or(halves, s, set);
      if (Atomics.load(words, index) === word) return this.readEntry(ref);
      Atomics.and(halves, s, ~set & 0xffff);
    }
    return GNTST.general_error;
  }

  /** Why an entry's header refuses this pin, or undefined. */
  private refusal(word: number, grantee: number, writable: boolean, use: GrantUse): number | undefined {
    const flags = word & 0xffff;
    const mask = GTF.type_mask | (use === 'map' && this.version === 2 ? GTF.sub_page : 0);
    if ((flags & mask) !== GTF.permit_access || word >>> 16 !== grantee) return GNTST.general_error;
    if (writable && flags & GTF.readonly) return GNTST.general_error;
    return undefined;
  }

  private clearInUse(ref: number, reading: boolean, writing: boolean): void {
    const clear = (reading ? GTF.reading : 0) | (writing ? GTF.writing : 0);
    if (this.version === 2) {
      const { halves, index } = this.status(ref);
      Atomics.and(halves, index, ~clear & 0xffff);
      return;
    }
    const { words, index } = this.header(ref);
    Atomics.and(words, index, ~clear);
  }
}

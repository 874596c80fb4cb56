// The grants a block queue keeps mapped between requests (persistent grants),
// by ref, in flat typed arrays rather than an object each: a 1 MiB request
// looks up 256 of them in one loop, and reaching each page through objects
// cost that loop more than the rest of its work.
import type { MappedGrants } from '../xenbus.js';

const PAGE = 4096;
/** A ref's state: not kept, kept mapped read-only, kept mapped writable. */
const KEPT_NONE = 0;
const KEPT_READ_ONLY = 1;
const KEPT_WRITABLE = 2;

export class KeptGrants {
  /** Per ref, KEPT_NONE, KEPT_READ_ONLY or KEPT_WRITABLE; refs past its end are not kept. */
  private states = new Uint8Array(0);
  /** Per kept ref: which of `memories` holds its page, and at what byte. */
  memoryIndex = new Uint16Array(0);
  offsets = new Float64Array(0);
  /** The buffers kept pages lie in: the host's views of guest RAM, a few. */
  readonly memories: ArrayBufferLike[] = [];
  private readonly mappings = new Map<number, MappedGrants>();

  /** `limit`: the most grants kept at once. */
  constructor(private readonly limit: number) {}

  get size(): number {
    return this.mappings.size;
  }

  /** Whether `gref` is kept and serves a request that needs it `writable` (or not). */
  serves(gref: number, writable: boolean): boolean {
    const state = gref < this.states.length ? this.states[gref] : KEPT_NONE;
    return state === KEPT_WRITABLE || (state === KEPT_READ_ONLY && !writable);
  }

  /** The page of kept `gref`. */
  page(gref: number): Uint8Array {
    return new Uint8Array(this.memories[this.memoryIndex[gref]], this.offsets[gref], PAGE);
  }

  /**
   * Keeps `mapped` (the one grant `gref`, whose page is `page`) until release(), unless the set is full or
   * `gref` is kept already; whether it did. Only refs the guest's grant table holds are ever mapped, so
   * the arrays are bounded by the table's size.
   */
  keep(gref: number, mapped: MappedGrants, page: Uint8Array, writable: boolean): boolean {
    if (this.mappings.size >= this.limit || this.mappings.has(gref)) return false;
    let memory = this.memories.indexOf(page.buffer);
    if (memory < 0) {
      if (this.memories.length > 0xffff) return false;
      memory = this.memories.push(page.buffer) - 1;
    }
    if (gref >= this.states.length) this.grow(gref + 1);
    this.states[gref] = writable ? KEPT_WRITABLE : KEPT_READ_ONLY;
    this.memoryIndex[gref] = memory;
    this.offsets[gref] = page.byteOffset;
    this.mappings.set(gref, mapped);
    return true;
  }

  /** Lets go of every grant kept. */
  release(): void {
    for (const m of this.mappings.values()) m.unmap();
    this.mappings.clear();
    this.states.fill(KEPT_NONE);
    this.memories.length = 0;
  }

  private grow(length: number): void {
    const size = Math.max(length, this.states.length * 2, 64);
    const grown = <T extends Uint8Array | Uint16Array | Float64Array>(old: T, make: (n: number) => T): T => {
      const a = make(size);
      a.set(old);
      return a;
    };
    this.states = grown(this.states, (n) => new Uint8Array(n));
    this.memoryIndex = grown(this.memoryIndex, (n) => new Uint16Array(n));
    this.offsets = grown(this.offsets, (n) => new Float64Array(n));
  }
}

// A guest-chosen area the VMM updates on the guest's behalf (vcpu_info,
// runstate, vcpu_time_info). It was named by guest-virtual address and is
// kept as the guest-physical pieces it translated to at registration, split
// where it crosses a page boundary (the pages need not be adjacent). Each
// update resolves the pieces again through GuestMemory, so an area follows
// memslot and overlay changes and a re-registration simply replaces it: no
// host address is ever cached past the write that used it.
import type { GuestMemory } from './guest-memory.js';

export interface AreaPiece {
  gpa: number;
  length: number;
}

export class GuestArea {
  readonly length: number;

  constructor(
    private readonly memory: GuestMemory,
    readonly pieces: readonly AreaPiece[],
  ) {
    this.length = pieces.reduce((n, p) => n + p.length, 0);
  }

  /** The guest-physical parts of [offset, offset+length), with their positions in that range. */
  private parts(offset: number, length: number): { gpa: number; from: number; to: number }[] {
    if (offset < 0 || length < 0 || offset + length > this.length) throw new RangeError(`${length} bytes at ${offset} lie outside a ${this.length}-byte area`);
    const parts: { gpa: number; from: number; to: number }[] = [];
    let areaOffset = 0;
    for (const p of this.pieces) {
      const from = Math.max(offset, areaOffset);
      const to = Math.min(offset + length, areaOffset + p.length);
      if (from < to) parts.push({ gpa: p.gpa + from - areaOffset, from: from - offset, to: to - offset });
      areaOffset += p.length;
    }
    return parts;
  }

  /** Writes bytes at `offset` within the area; false, with nothing written, if any part is no longer backed. */
  write(offset: number, bytes: Uint8Array): boolean {
    const parts = this.parts(offset, bytes.length);
    if (!parts.every((part) => this.memory.isBacked(part.gpa, part.to - part.from))) return false;
    for (const part of parts) this.memory.write(part.gpa, bytes.subarray(part.from, part.to));
    return true;
  }

  /** Reads `length` bytes at `offset`; undefined if any part is no longer backed. */
  read(offset: number, length: number): Uint8Array | undefined {
    const parts = this.parts(offset, length);
    if (!parts.every((part) => this.memory.isBacked(part.gpa, part.to - part.from))) return undefined;
    const out = new Uint8Array(length);
    for (const part of parts) out.set(this.memory.read(part.gpa, part.to - part.from), part.from);
    return out;
  }
}

// Guest-virtual access on behalf of a vCPU, as a hypervisor copies hypercall
// arguments: every page is translated through the guest's own page tables
// (setting accessed/dirty bits as the walk does), and nothing is written
// unless the whole range translates.
import type { GuestMemory } from './guest-memory.js';
import { translateRange, type PagingState } from './page-walker.js';

/** A guest-virtual range that does not translate, or lands outside guest memory. */
export class GuestFaultError extends Error {
  override name = 'GuestFaultError';
  constructor(
    readonly gva: bigint,
    readonly length: number,
  ) {
    super(`guest-virtual range 0x${gva.toString(16)}+${length} is not accessible`);
  }
}

export class GuestVirtual {
  constructor(
    private readonly memory: GuestMemory,
    private readonly paging: PagingState,
    /** Accesses on behalf of code at CPL 3 must pass the user permission checks. */
    private readonly user = false,
  ) {}

  private pieces(gva: bigint, length: number, write: boolean): { gpa: number; length: number }[] {
    if (!Number.isSafeInteger(length) || length < 0 || length > 1 << 24) throw new GuestFaultError(gva, length);
    const t = translateRange(this.memory.walkerView, this.paging, gva, length, { write, user: this.user });
    if (!t.ok || !t.pieces.every((p) => this.memory.isBacked(p.gpa, p.length))) throw new GuestFaultError(gva, length);
    return t.pieces;
  }

  read(gva: bigint, length: number): Uint8Array {
    const pieces = this.pieces(gva, length, false);
    // Within one page (most arguments): guest memory's own copy is the result.
    if (pieces.length === 1) return this.memory.read(pieces[0].gpa, length);
    const out = new Uint8Array(length);
    let off = 0;
    for (const p of pieces) {
      out.set(this.memory.read(p.gpa, p.length), off);
      off += p.length;
    }
    return out;
  }

  /** A little-endian 32-bit value; an aligned word (a port, say) is read in place, without copying it out. */
  readU32(gva: bigint): number {
    const pieces = this.pieces(gva, 4, false);
    if (pieces.length === 1 && pieces[0].gpa % 4 === 0) {
      const word = this.memory.walkerView.readU32(pieces[0].gpa);
      if (word !== undefined) return word;
    }
    const bytes = this.read(gva, 4);
    return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  }

  write(gva: bigint, bytes: Uint8Array): void {
    let off = 0;
    for (const p of this.pieces(gva, bytes.length, true)) {
      this.memory.write(p.gpa, bytes.subarray(off, off + p.length));
      off += p.length;
    }
  }

  /** The guest-physical pieces of a range, for areas registered once and updated later. */
  physical(gva: bigint, length: number, write: boolean): { gpa: number; length: number }[] {
    return this.pieces(gva, length, write);
  }
}

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
    const out = new Uint8Array(length);
    let off = 0;
    for (const p of this.pieces(gva, length, false)) {
      out.set(this.memory.read(p.gpa, p.length), off);
      off += p.length;
    }
    return out;
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

// For the Xen layer's unit tests: a guest-virtual window of plain bytes
// standing in for GuestVirtual, faulting (GuestFaultError) outside it.
import { GuestFaultError } from '../memory/guest-virtual.js';

export class FakeGuest {
  readonly bytes: Uint8Array;

  constructor(
    readonly base: bigint,
    size: number,
    fill = 0,
  ) {
    this.bytes = new Uint8Array(size).fill(fill);
  }

  private at(gva: bigint, length: number): number {
    if (length === 0) return 0;
    if (gva < this.base || gva + BigInt(length) > this.base + BigInt(this.bytes.length)) throw new GuestFaultError(gva, length);
    return Number(gva - this.base);
  }

  read(gva: bigint, length: number): Uint8Array {
    const o = this.at(gva, length);
    return this.bytes.slice(o, o + length);
  }

  readU32(gva: bigint): number {
    const o = this.at(gva, 4);
    return new DataView(this.bytes.buffer, this.bytes.byteOffset + o, 4).getUint32(0, true);
  }

  write(gva: bigint, data: Uint8Array): void {
    this.bytes.set(data, this.at(gva, data.length));
  }

  /** No guest-physical translation: areas given by these tests never translate. */
  physical(gva: bigint, length: number): never {
    throw new GuestFaultError(gva, length);
  }

  /** A DataView of the window from `gva` on. */
  view(gva = this.base): DataView {
    return new DataView(this.bytes.buffer, this.at(gva, 1));
  }
}

// A memfd mapped into this thread. Guest RAM and the overlay page pool are
// both one: created once on the main thread, attached (mapped again) by each
// vCPU thread from the fd number, which every thread of the process shares.
import { check, libc, MFD_CLOEXEC, mmapShared, munmap, punchHole, viewOf, type Pointer } from '../kvm/libc.js';

/** What another thread needs to map the same memory. */
export interface SharedMemoryHandle {
  fd: number;
  size: number;
  name: string;
}

/** V8 limits one ArrayBuffer's length; views are cut into chunks of this size. */
const CHUNK = 1 << 30;

export class SharedMemory {
  private readonly ptr: Pointer;
  private readonly chunks: Uint8Array[] = [];
  /** The same chunks as 32-bit words, for aligned word access without a view per access. */
  private readonly words: Uint32Array[] = [];
  private disposed = false;

  private constructor(
    readonly handle: SharedMemoryHandle,
    private readonly owner: boolean,
  ) {
    this.ptr = mmapShared(handle.fd, handle.size, handle.name);
    for (let off = 0; off < handle.size; off += CHUNK) {
      const buffer = viewOf(this.ptr + BigInt(off), Math.min(CHUNK, handle.size - off));
      this.chunks.push(new Uint8Array(buffer));
      this.words.push(new Uint32Array(buffer, 0, Math.floor(buffer.byteLength / 4)));
    }
  }

  static create(name: string, size: number): SharedMemory {
    const fd = check('memfd_create', libc().memfd_create(name, MFD_CLOEXEC), name);
    try {
      check('ftruncate', libc().ftruncate(fd, size), `${name}, ${size} bytes`);
      return new SharedMemory({ fd, size, name }, true);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
  }

  static attach(handle: SharedMemoryHandle): SharedMemory {
    return new SharedMemory(handle, false);
  }

  get hostAddress(): bigint {
    return this.ptr;
  }

  /** A view of [offset, offset+length) that must not cross a 1 GiB chunk boundary (pages never do). */
  bytes(offset: number, length: number): Uint8Array {
    const chunk = Math.floor(offset / CHUNK);
    const start = offset - chunk * CHUNK;
    if (offset < 0 || length < 0 || offset + length > this.handle.size || start + length > CHUNK) {
      throw new RangeError(`${this.handle.name}: [${offset}, +${length}) outside its ${this.handle.size} bytes`);
    }
    return this.chunks[chunk].subarray(start, start + length);
  }

  /** The little-endian word at a 4-byte-aligned offset (the caller checked both). */
  u32(offset: number): number {
    const chunk = Math.floor(offset / CHUNK);
    return this.words[chunk][(offset - chunk * CHUNK) >>> 2];
  }

  setU32(offset: number, value: number): void {
    const chunk = Math.floor(offset / CHUNK);
    this.words[chunk][(offset - chunk * CHUNK) >>> 2] = value;
  }

  /** Frees the host memory behind [offset, offset+length) (page-aligned); every mapping then reads zeros there. */
  discard(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.handle.size) throw new RangeError(`${this.handle.name}: [${offset}, +${length}) outside its ${this.handle.size} bytes`);
    punchHole(this.handle.fd, offset, length, `${this.handle.name} [${offset}, +${length})`);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.chunks.length = 0;
    this.words.length = 0;
    munmap(this.ptr, this.handle.size);
    if (this.owner) libc().close(this.handle.fd);
  }
}

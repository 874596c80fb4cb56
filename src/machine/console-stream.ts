// What the guest writes to its console ports (the debug port, the UART) from
// any vCPU thread, in the order it wrote it: a byte ring in a SharedArrayBuffer
// that the vCPU threads append to and the main thread drains. One line of
// UART output is often written by two vCPUs (a burst from the writer, the rest
// from the CPU that takes the transmit interrupt); per-thread buffers or
// messages could put the second part before the first.
const RESERVE = 0; // next byte a writer may claim
const COMMIT = 1; // bytes before this are written, in order
const READ = 2; // bytes before this are drained
const HEADER_BYTES = 16;

export class ConsoleStream {
  private readonly header: Int32Array;
  private readonly data: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.header = new Int32Array(buffer, 0, 3);
    this.data = new Uint8Array(buffer, HEADER_BYTES);
    if (this.data.length & (this.data.length - 1)) throw new Error('the console ring is not a power of two');
  }

  /** A ring of `size` bytes (a power of two). */
  static create(size = 1 << 16): ConsoleStream {
    return new ConsoleStream(new SharedArrayBuffer(HEADER_BYTES + size));
  }

  /**
   * Appends `bytes` (a vCPU thread; never the main thread, which drains). Waits while the ring is full:
   * the guest's console is as slow as the host's reader.
   */
  write(bytes: Uint8Array): void {
    const size = this.data.length;
    for (let off = 0; off < bytes.length; ) {
      const len = Math.min(bytes.length - off, size);
      let at: number;
      for (;;) {
        at = Atomics.load(this.header, RESERVE);
        const read = Atomics.load(this.header, READ);
        if (((at + len - read) >>> 0) > size) {
          Atomics.wait(this.header, READ, read, 10);
          continue;
        }
        if (Atomics.compareExchange(this.header, RESERVE, at, (at + len) | 0) === at) break;
      }
      for (let i = 0; i < len; i++) this.data[(at + i) & (size - 1)] = bytes[off + i];
      // Published in the order claimed: a writer that claimed earlier is still copying a few bytes.
      while (Atomics.compareExchange(this.header, COMMIT, at, (at + len) | 0) !== at);
      Atomics.notify(this.header, COMMIT);
      off += len;
    }
  }

  /** Everything written since the last drain, in order (the main thread). */
  drain(): Uint8Array {
    const size = this.data.length;
    const read = Atomics.load(this.header, READ);
    const commit = Atomics.load(this.header, COMMIT);
    const out = new Uint8Array((commit - read) >>> 0);
    for (let i = 0; i < out.length; i++) out[i] = this.data[(read + i) & (size - 1)];
    Atomics.store(this.header, READ, commit);
    Atomics.notify(this.header, READ);
    return out;
  }

  /** Wakes a wait in written(), so the reader can stop. */
  interrupt(): void {
    Atomics.notify(this.header, COMMIT);
  }

  /** Resolves once something was written after the last drain (at once if it already was), or on interrupt(). */
  async written(): Promise<void> {
    const commit = Atomics.load(this.header, COMMIT);
    if (commit !== Atomics.load(this.header, READ)) return;
    const w = Atomics.waitAsync(this.header, COMMIT, commit);
    if (w.async) await w.value;
  }
}

// Packets between two threads of a network device (the thread that reads the
// host's link and the one that serves the guest's rings): a ring of records
// in shared memory, one producer and one consumer, each record a length and
// its bytes. A record that would run past the end starts again at the front,
// behind a wrap mark. A full ring refuses the record (the producer counts a
// drop, as a NIC's full receive queue would). The producer wakes the consumer
// its own way (the device thread waits on its event channel's notifier).

/** Header words: the consumer's and producer's byte counts (free-running), records refused. */
const HEAD = 0;
const TAIL = 1;
const DROPPED = 2;
const HEADER_BYTES = 16;
const WRAP = 0xffffffff;

const align4 = (n: number) => (n + 3) & ~3;

export class PacketRing {
  private readonly words: Int32Array;
  private readonly data: Uint8Array;
  private readonly view: DataView;

  private constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.data = new Uint8Array(buffer, HEADER_BYTES);
    this.view = new DataView(buffer, HEADER_BYTES);
  }

  /** A ring of `capacity` bytes (a multiple of 4), for attach() on the other thread. */
  static create(capacity: number): PacketRing {
    if (capacity % 4 !== 0) throw new RangeError(`a packet ring's capacity must be a multiple of 4, not ${capacity}`);
    return new PacketRing(new SharedArrayBuffer(HEADER_BYTES + capacity));
  }

  static attach(buffer: SharedArrayBuffer): PacketRing {
    return new PacketRing(buffer);
  }

  /** Records refused because the ring was full. */
  get dropped(): number {
    return Atomics.load(this.words, DROPPED);
  }

  private get capacity(): number {
    return this.data.length;
  }

  /** The producer's side: copies the concatenation of `parts` in as one record; false if it does not fit now. */
  put(parts: readonly Uint8Array[]): boolean {
    const length = parts.reduce((n, p) => n + p.length, 0);
    const need = 4 + align4(length);
    const head = Atomics.load(this.words, HEAD) >>> 0;
    const tail = Atomics.load(this.words, TAIL) >>> 0;
    let at = tail % this.capacity;
    // What is left before the end, wasted behind a wrap mark if the record does not fit there.
    const skip = at + need > this.capacity ? this.capacity - at : 0;
    if (need + skip > this.capacity - ((tail - head) >>> 0)) {
      Atomics.add(this.words, DROPPED, 1);
      return false;
    }
    if (skip) {
      this.view.setUint32(at, WRAP, true);
      at = 0;
    }
    this.view.setUint32(at, length, true);
    let offset = at + 4;
    for (const p of parts) {
      this.data.set(p, offset);
      offset += p.length;
    }
    // Published after the bytes: the consumer reads the tail, then the record.
    Atomics.store(this.words, TAIL, (tail + skip + need) | 0);
    return true;
  }

  /** The consumer's side: the next record (a view valid until release()), or undefined if there is none. */
  peek(): Uint8Array | undefined {
    let head = Atomics.load(this.words, HEAD) >>> 0;
    const tail = Atomics.load(this.words, TAIL) >>> 0;
    if (head === tail) return undefined;
    let at = head % this.capacity;
    if (this.view.getUint32(at, true) === WRAP) {
      head = (head + this.capacity - at) >>> 0;
      Atomics.store(this.words, HEAD, head | 0);
      at = 0;
    }
    const length = this.view.getUint32(at, true);
    return this.data.subarray(at + 4, at + 4 + length);
  }

  /** Lets go of the record peek() returned. */
  release(record: Uint8Array): void {
    const head = Atomics.load(this.words, HEAD) >>> 0;
    Atomics.store(this.words, HEAD, (head + 4 + align4(record.length)) | 0);
  }
}

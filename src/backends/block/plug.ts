// A block queue's plug, as blkback plugs the block layer around each pass
// over its ring: the reads and writes a pass starts are held until the pass
// ends, then each run of them that follows on from one another on the disk
// (same direction, each starting at the byte where the one before ends) goes
// to the disk as one vectored call. A frontend keeping a sequential stream
// in flight then costs a trip through the thread pool, and a wake-up of this
// thread, per pass rather than per request. A run is split into as many calls
// as there are CPUs to move its bytes at once (at most the pool's threads), of
// about equal size at request boundaries. A merged call that fails is
// repeated request by request, so that each request gets its own status.
import type { BlockDisk } from './queue.js';

/** The most buffers one merged call takes: Linux's IOV_MAX, what one readv or writev accepts. */
export const MAX_MERGED_BUFFERS = 1024;

interface Held {
  write: boolean;
  offset: number;
  length: number;
  buffers: Uint8Array[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DiskPlug {
  private held: Held[] | undefined;

  /** `ways`: how many calls a run of held requests is split into, to keep that many threads copying. */
  constructor(
    private readonly disk: BlockDisk,
    private readonly ways: number,
  ) {}

  /** Holds the reads and writes started from now until unplug(). */
  plug(): void {
    this.held ??= [];
  }

  readv(buffers: Uint8Array[], offset: number): Promise<void> {
    return this.held ? this.hold(false, buffers, offset) : this.disk.readv(buffers, offset);
  }

  writev(buffers: Uint8Array[], offset: number): Promise<void> {
    return this.held ? this.hold(true, buffers, offset) : this.disk.writev(buffers, offset);
  }

  /** Starts what was held, runs that follow on from one another merged. */
  unplug(): void {
    const held = this.held;
    this.held = undefined;
    if (!held) return;
    for (let first = 0; first < held.length; ) {
      let end = first + 1;
      let bytes = held[first].length;
      let buffers = held[first].buffers.length;
      for (; end < held.length; end++) {
        const next = held[end];
        const last = held[end - 1];
        if (next.write !== last.write || next.offset !== last.offset + last.length || buffers + next.buffers.length > MAX_MERGED_BUFFERS) break;
        bytes += next.length;
        buffers += next.buffers.length;
      }
      this.split(held.slice(first, end), bytes);
      first = end;
    }
  }

  /** A run of `bytes` in `ways` calls of about equal size, each a whole number of requests. */
  private split(run: Held[], bytes: number): void {
    let moved = 0;
    for (let start = 0, part = 1; start < run.length; part++) {
      const upTo = (bytes * part) / this.ways;
      let end = start;
      do moved += run[end++].length;
      while (end < run.length && moved + run[end].length <= upTo);
      this.issue(run.slice(start, end));
      start = end;
    }
  }

  private hold(write: boolean, buffers: Uint8Array[], offset: number): Promise<void> {
    let length = 0;
    for (const b of buffers) length += b.length;
    return new Promise((resolve, reject) => this.held!.push({ write, offset, length, buffers, resolve, reject }));
  }

  private issue(run: Held[]): void {
    const call = (write: boolean, buffers: Uint8Array[], offset: number) => (write ? this.disk.writev(buffers, offset) : this.disk.readv(buffers, offset));
    const one = (h: Held) => call(h.write, h.buffers, h.offset).then(h.resolve, h.reject);
    if (run.length === 1) {
      void one(run[0]);
      return;
    }
    call(run[0].write, run.flatMap((h) => h.buffers), run[0].offset).then(
      () => run.forEach((h) => h.resolve()),
      () => run.forEach((h) => void one(h)),
    );
  }
}

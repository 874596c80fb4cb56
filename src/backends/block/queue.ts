// One queue (ring) of the PV block backend: takes the frontend's requests off
// the ring, checks each (operation, segments within their pages, sectors
// within the disk and aligned to its sector size, writes only to a writable
// disk, grants the frontend really made), maps the granted pages and hands
// them to the disk as one scatter-gather read or write, and answers in ring
// order of completion. Flush and barrier requests wait for every request
// before them and hold back every request after them. A request that fails a
// check gets BLKIF_RSP_ERROR (an operation the disk does not offer
// BLKIF_RSP_EOPNOTSUPP) and a rate-limited line; the backend reads and writes
// nothing but the pages the guest granted it. Sector numbers and segment
// bounds are in 512-byte units, whatever the disk's sector size.
import type { RateLimitedLog } from '../../common/log.js';
import type { Abi } from '../../xen/abi/layout.js';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP, BLKIF_RSP, blkifRequest, blkifRequestDiscard, blkifRequestIndirect, blkifRequestSegment, blkifResponse,
} from '../../xen/abi/blkif.js';
import { type BackRing, RingOverflowError } from '../ring.js';
import type { GrantedPages, MappedGrants } from '../xenbus.js';
import { DeviceError } from '../xenbus.js';

/** What a queue needs of the disk image: I/O in bytes at byte offsets, each a promise. */
export interface BlockDisk {
  /** Size in 512-byte sectors. */
  readonly sectors: number;
  /** The logical sector size the frontend is told (512 or 4096). */
  readonly sectorSize: number;
  readonly readOnly: boolean;
  readonly discard: boolean;
  readv(buffers: Uint8Array[], offset: number): Promise<void>;
  writev(buffers: Uint8Array[], offset: number): Promise<void>;
  flush(): Promise<void>;
  /** Frees [offset, offset + length): it reads as zeros afterwards. */
  discardRange(offset: number, length: number): Promise<void>;
}

export interface QueueOptions {
  abi: Abi;
  frontDomid: number;
  /** Segments an indirect request may carry (feature-max-indirect-segments); 0: no indirect requests. */
  maxIndirectSegments: number;
  /** Whether grants stay mapped between requests (feature-persistent, offered by both ends). */
  persistent: boolean;
  /** The most grants kept mapped when persistent. */
  maxPersistentGrants: number;
}

const SECTOR = 512;
const SECTORS_PER_PAGE = 4096 / SECTOR;
const SEGMENT = blkifRequestSegment.native; // the same in both ABIs
const SEGMENTS_PER_INDIRECT_PAGE = 4096 / SEGMENT.size;

/** A request that is refused: the status it gets, and why (for the log). */
class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Segment {
  gref: number;
  first: number;
  last: number;
}

/**
 * The bytes of a request's segments as few buffers as they make: segments that follow one another in the
 * host's view of guest RAM (whole pages of a buffer the guest allocated in one piece, the usual case)
 * become one buffer, so a 1 MiB request is a handful of iovecs rather than 256.
 */
function contiguousRuns(segments: readonly Segment[], pages: readonly Uint8Array[]): Uint8Array[] {
  const runs: Uint8Array[] = [];
  let memory: ArrayBufferLike | undefined;
  let start = 0;
  let end = 0;
  for (let i = 0; i < segments.length; i++) {
    const page = pages[i];
    const from = page.byteOffset + segments[i].first * SECTOR;
    const to = page.byteOffset + (segments[i].last + 1) * SECTOR;
    if (page.buffer === memory && from === end) {
      end = to;
      continue;
    }
    if (memory) runs.push(new Uint8Array(memory, start, end - start));
    memory = page.buffer;
    start = from;
    end = to;
  }
  if (memory) runs.push(new Uint8Array(memory, start, end - start));
  return runs;
}

export class BlockQueue {
  private readonly request: (typeof blkifRequest)['native'];
  private readonly discardDef: (typeof blkifRequestDiscard)['native'];
  private readonly indirectDef: (typeof blkifRequestIndirect)['native'];
  private readonly response: (typeof blkifResponse)['native'];
  /** Requests started and not yet answered, including one held back by a barrier. */
  private running = new Set<Promise<void>>();
  /** Responses on the ring that the next turn of the event loop publishes (answer()). */
  private publishing: Promise<void> | undefined;
  /** A flush or barrier waiting for what came before it: later requests wait for it. */
  private barrier: Promise<void> | undefined;
  /** Grants kept mapped, by ref, with whether the mapping is writable. */
  private readonly persistent = new Map<number, { mapped: MappedGrants; writable: boolean }>();
  private stopped = false;
  private halted = false;

  constructor(
    private readonly ring: BackRing,
    private readonly grants: GrantedPages,
    private readonly disk: BlockDisk,
    private readonly options: QueueOptions,
    /** Raises the queue's event channel. */
    private readonly notify: () => void,
    private readonly guestLog: RateLimitedLog,
    private readonly name: string,
  ) {
    this.request = blkifRequest[options.abi] as (typeof blkifRequest)['native'];
    this.discardDef = blkifRequestDiscard[options.abi] as (typeof blkifRequestDiscard)['native'];
    this.indirectDef = blkifRequestIndirect[options.abi] as (typeof blkifRequestIndirect)['native'];
    this.response = blkifResponse[options.abi] as (typeof blkifResponse)['native'];
  }

  /** Requests taken and not yet answered. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Takes every request waiting on the ring and starts it; call when notified (and once at connect). */
  service(): void {
    if (this.stopped || this.halted) return;
    try {
      do {
        for (let n = this.ring.unconsumed(); n > 0; n--) this.start(this.ring.takeRequest());
      } while (this.ring.finalCheckForRequests());
    } catch (e) {
      if (!(e instanceof RingOverflowError)) throw e;
      // As Linux's blkback: a frontend that overruns its ring gets no more service on it.
      this.halted = true;
      this.guestLog.warn('blkif-ring', { device: this.name, reason: e.message }, 'block frontend overran its ring; the queue stops');
    }
  }

  /** Waits for every request started to be answered. */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  /** Stops taking requests; after drain(), lets go of every persistent grant. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.drain();
    for (const p of this.persistent.values()) p.mapped.unmap();
    this.persistent.clear();
  }

  private start(bytes: Uint8Array): void {
    const operation = bytes[0];
    // An indirect request is answered as its operation, as blkback answers it and blkfront checks.
    // Read in place: decoding the whole request would build each of its segments.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const answeredAs = operation === BLKIF_OP.INDIRECT ? bytes[this.indirectDef.offsets.indirect_op] : operation;
    const id = view.getBigUint64(this.request.offsets.id, true);
    const ordered = operation === BLKIF_OP.FLUSH_DISKCACHE || operation === BLKIF_OP.WRITE_BARRIER;
    const before = ordered ? Promise.all([...this.running]) : this.barrier;
    const work = (async () => {
      if (before) await before;
      let status: number = BLKIF_RSP.OKAY;
      try {
        await this.perform(bytes, view);
      } catch (e) {
        if (e instanceof Refused) {
          status = e.status;
          this.guestLog.warn('blkif-request', { device: this.name, operation, reason: e.message }, 'block request refused');
        } else {
          status = BLKIF_RSP.ERROR;
          this.guestLog.error('blkif-io', { device: this.name, operation, err: (e as Error)?.message ?? String(e) }, 'block request failed on the host');
        }
      }
      await this.answer(id, answeredAs, status);
    })();
    const tracked = work.finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    if (ordered) this.barrier = tracked;
  }

  /**
   * Puts a response on the ring; resolves once it is published. Responses are published together after
   * the event loop's turn that completed them (setImmediate), so that the requests the disk finished at
   * once cost the guest one notification, not one each.
   */
  private answer(id: bigint, operation: number, status: number): Promise<void> {
    this.ring.putResponse(this.response.encode({ id, operation, status }));
    this.publishing ??= new Promise((resolve) =>
      setImmediate(() => {
        this.publishing = undefined;
        if (this.ring.pushResponses()) this.notify();
        resolve();
      }),
    );
    return this.publishing;
  }

  private async perform(bytes: Uint8Array, view: DataView): Promise<void> {
    const operation = bytes[0];
    switch (operation) {
      case BLKIF_OP.READ:
      case BLKIF_OP.WRITE:
      case BLKIF_OP.FLUSH_DISKCACHE:
      case BLKIF_OP.WRITE_BARRIER: {
        const count = bytes[this.request.offsets.nr_segments];
        const sector = view.getBigUint64(this.request.offsets.sector_number, true);
        if (count > BLKIF_MAX_SEGMENTS_PER_REQUEST) throw new Refused(BLKIF_RSP.ERROR, `${count} segments, more than ${BLKIF_MAX_SEGMENTS_PER_REQUEST}`);
        const segments = Array.from({ length: count }, (_, i) => this.segment(view, this.request.offsets.seg + i * SEGMENT.size));
        if (operation === BLKIF_OP.READ || operation === BLKIF_OP.WRITE) {
          if (segments.length === 0) throw new Refused(BLKIF_RSP.ERROR, 'a read or write with no segments');
          return this.transfer(operation === BLKIF_OP.WRITE, sector, segments);
        }
        // A flush or barrier carrying data writes it between two flushes: the disk holds what came before, then this.
        await this.disk.flush();
        if (segments.length > 0) {
          await this.transfer(true, sector, segments);
          await this.disk.flush();
        }
        return;
      }
      case BLKIF_OP.DISCARD: {
        if (!this.disk.discard) throw new Refused(BLKIF_RSP.EOPNOTSUPP, 'discard is not offered');
        const d = this.discardDef.decode(bytes);
        if (this.disk.readOnly) throw new Refused(BLKIF_RSP.ERROR, 'discard on a read-only disk');
        this.checkRange(d.sector_number, d.nr_sectors);
        if (d.nr_sectors > 0n) await this.disk.discardRange(Number(d.sector_number) * SECTOR, Number(d.nr_sectors) * SECTOR);
        return;
      }
      case BLKIF_OP.INDIRECT: {
        if (this.options.maxIndirectSegments === 0) throw new Refused(BLKIF_RSP.EOPNOTSUPP, 'indirect requests are not offered');
        const r = this.indirectDef.decode(bytes);
        if (r.indirect_op !== BLKIF_OP.READ && r.indirect_op !== BLKIF_OP.WRITE) throw new Refused(BLKIF_RSP.ERROR, `indirect operation ${r.indirect_op}`);
        if (r.nr_segments === 0 || r.nr_segments > this.options.maxIndirectSegments) {
          throw new Refused(BLKIF_RSP.ERROR, `${r.nr_segments} indirect segments, not 1 to ${this.options.maxIndirectSegments}`);
        }
        // The pages of segments, kept mapped like data pages where grants are persistent, and let go once read.
        const list = this.pages(r.indirect_grefs.slice(0, Math.ceil(r.nr_segments / SEGMENTS_PER_INDIRECT_PAGE)), false);
        let segments: Segment[];
        try {
          const views = list.pages.map((p) => new DataView(p.buffer, p.byteOffset, p.length));
          segments = Array.from({ length: r.nr_segments }, (_, i) =>
            this.segment(views[Math.floor(i / SEGMENTS_PER_INDIRECT_PAGE)], (i % SEGMENTS_PER_INDIRECT_PAGE) * SEGMENT.size),
          );
        } finally {
          list.release();
        }
        return this.transfer(r.indirect_op === BLKIF_OP.WRITE, r.sector_number, segments);
      }
      default:
        throw new Refused(BLKIF_RSP.EOPNOTSUPP, `operation ${operation}`);
    }
  }

  /** A segment, copied out of a request or an indirect page, its sector bounds checked. */
  private segment(view: DataView, at: number): Segment {
    // Read in place, not through the struct's decoder: an indirect request has up to 256 of them.
    const gref = view.getUint32(at + SEGMENT.offsets.gref, true);
    const first = view.getUint8(at + SEGMENT.offsets.first_sect);
    const last = view.getUint8(at + SEGMENT.offsets.last_sect);
    if (last >= SECTORS_PER_PAGE || first > last) throw new Refused(BLKIF_RSP.ERROR, `a segment of sectors ${first}–${last} of its page`);
    return { gref, first, last };
  }

  private checkRange(sector: bigint, count: bigint): void {
    const align = BigInt(this.disk.sectorSize / SECTOR);
    if (sector % align !== 0n || count % align !== 0n) throw new Refused(BLKIF_RSP.ERROR, `sectors ${sector}+${count} are not aligned to the disk's ${this.disk.sectorSize}-byte sectors`);
    if (sector + count > BigInt(this.disk.sectors)) throw new Refused(BLKIF_RSP.ERROR, `sectors ${sector}+${count} run past the disk's ${this.disk.sectors}`);
  }

  /** One read or write: grants mapped (writable for a read, into the guest), the disk's bytes moved in one vectored call. */
  private async transfer(write: boolean, sector: bigint, segments: Segment[]): Promise<void> {
    if (write && this.disk.readOnly) throw new Refused(BLKIF_RSP.ERROR, 'a write to a read-only disk');
    const count = segments.reduce((n, s) => n + s.last - s.first + 1, 0);
    this.checkRange(sector, BigInt(count));
    const { pages, release } = this.pages(segments.map((s) => s.gref), !write);
    try {
      const buffers = contiguousRuns(segments, pages);
      const offset = Number(sector) * SECTOR;
      await (write ? this.disk.writev(buffers, offset) : this.disk.readv(buffers, offset));
    } finally {
      release();
    }
  }

  /** Maps grants for one request: through the persistent set where both ends keep grants mapped, else for this request only. */
  private pages(grefs: number[], writable: boolean): { pages: Uint8Array[]; release: () => void } {
    if (!this.options.persistent) {
      const m = this.map(grefs, writable);
      return { pages: grefs.map((_, i) => m.page(i)), release: () => m.unmap() };
    }
    const once: MappedGrants[] = [];
    const pages = grefs.map((gref) => {
      const kept = this.persistent.get(gref);
      if (kept && (kept.writable || !writable)) return kept.mapped.page(0);
      // Mapped writable where the grant allows it, so that one mapping serves reads and writes alike.
      const mapped = this.mapPreferring(gref, writable);
      // One kept read-only stays kept (a request in flight may be using it); this one serves this request.
      if (!kept && this.persistent.size < this.options.maxPersistentGrants) this.persistent.set(gref, mapped);
      else once.push(mapped.mapped);
      return mapped.mapped.page(0);
    });
    return { pages, release: () => once.forEach((m) => m.unmap()) };
  }

  /** One grant mapped writable if it may be, else read-only if that is all `writable` asks. */
  private mapPreferring(gref: number, writable: boolean): { mapped: MappedGrants; writable: boolean } {
    if (writable) return { mapped: this.map([gref], true), writable: true };
    try {
      return { mapped: this.grants.map(this.options.frontDomid, [gref], true), writable: true };
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      return { mapped: this.map([gref], false), writable: false };
    }
  }

  /** Maps grants of the frontend, all or none; a ref it did not grant refuses the request. */
  private map(grefs: number[], writable: boolean): MappedGrants {
    try {
      return this.grants.map(this.options.frontDomid, grefs, writable);
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      throw new Refused(BLKIF_RSP.ERROR, e.message);
    }
  }
}

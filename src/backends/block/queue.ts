// One queue (ring) of the PV block backend: takes the frontend's requests off
// the ring, checks each (operation, segments within their pages, sectors
// within the disk and aligned to its sector size, writes only to a writable
// disk, grants the frontend really made), maps the granted pages and hands
// them to the disk as one scatter-gather read or write (requests taken in one
// pass that follow on from one another on the disk as one: plug.ts), and
// answers in order of completion. Flush and barrier requests wait for every
// request before them and hold back every request after them. A request that fails a
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
import { KeptGrants } from './kept-grants.js';
import { DiskPlug } from './plug.js';

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
  /** How many threads may move one pass's bytes at once: a sequential run is split into as many calls. */
  ioThreads: number;
}

const SECTOR = 512;
const SECTORS_PER_PAGE = 4096 / SECTOR;
// A segment's layout is the same in both ABIs.
const SEGMENT_SIZE = blkifRequestSegment.native.size;
const SEGMENT_GREF = blkifRequestSegment.native.offsets.gref;
const SEGMENT_FIRST = blkifRequestSegment.native.offsets.first_sect;
const SEGMENT_LAST = blkifRequestSegment.native.offsets.last_sect;
const SEGMENTS_PER_INDIRECT_PAGE = 4096 / SEGMENT_SIZE;

/**
 * A request's u64 sector number as a number, without a BigInt per request: exact below 2^53, and any
 * larger one lies past the end of every disk, so rounding it changes no answer.
 */
const u64 = (view: DataView, at: number): number => view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;

/** A request that is refused: the status it gets, and why (for the log). */
class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A granted page as a request uses it: where it is in the host's view of guest RAM, at hand. */
interface MappedPage {
  page: Uint8Array;
  buffer: ArrayBufferLike;
  offset: number;
}

const mappedPage = (page: Uint8Array): MappedPage => ({ page, buffer: page.buffer, offset: page.byteOffset });

/**
 * The fewest buffers for a list of pages' sector ranges: ranges that follow one another in the host's view
 * of guest RAM (whole pages of a buffer the guest allocated in one piece, the usual case) become one, so
 * a 1 MiB request is a handful of iovecs rather than 256.
 */
class Runs {
  private list: Uint8Array[] = [];
  private memory: ArrayBufferLike | undefined;
  private start = 0;
  private end = 0;

  reset(): void {
    this.list = [];
    this.memory = undefined;
  }

  /** Adds sectors `first` to `last` of the page at byte `page` of `memory`. */
  extend(memory: ArrayBufferLike, page: number, first: number, last: number): void {
    const from = page + first * SECTOR;
    const to = page + (last + 1) * SECTOR;
    if (memory === this.memory && from === this.end) {
      this.end = to;
      return;
    }
    if (this.memory) this.list.push(new Uint8Array(this.memory, this.start, this.end - this.start));
    this.memory = memory;
    this.start = from;
    this.end = to;
  }

  finish(): Uint8Array[] {
    if (this.memory) this.list.push(new Uint8Array(this.memory, this.start, this.end - this.start));
    this.memory = undefined;
    return this.list;
  }
}

/**
 * The segments of the request being started, read off the ring or its indirect pages into arrays every
 * request reuses: a request reads, checks and maps its segments before its first await, so no two use
 * them at once, and a 1 MiB request builds no object per segment. While every page read so far is a grant
 * kept mapped (persistent grants, the steady state), its buffers are built in the same loop.
 */
class SegmentList {
  count = 0;
  readonly grefs: Uint32Array;
  /** First and last 512-byte sector used of each segment's page. */
  readonly first: Uint8Array;
  readonly last: Uint8Array;
  readonly pages: MappedPage[];
  private readonly runs = new Runs();
  /** Whether the data moves into the guest's pages (a read), so that they must be mapped writable. */
  private intoGuest = false;
  private allKept = false;

  constructor(
    capacity: number,
    /** The queue's grants kept mapped. */
    private readonly kept: KeptGrants,
  ) {
    this.grefs = new Uint32Array(capacity);
    this.first = new Uint8Array(capacity);
    this.last = new Uint8Array(capacity);
    this.pages = new Array<MappedPage>(capacity);
  }

  /** Starts the list of a request that moves data into the guest's pages (`intoGuest`) or out of them. */
  begin(intoGuest: boolean): void {
    this.count = 0;
    this.intoGuest = intoGuest;
    this.allKept = true;
    this.runs.reset();
  }

  /**
   * Appends the `count` segments that start at `at` in `bytes` (a request or a page of segments), each
   * one's sector bounds checked; the sectors they cover. One loop over them all, the list's state in
   * locals: a 1 MiB request has 256.
   */
  add(bytes: Uint8Array, at: number, count: number): number {
    const { grefs, first: firsts, last: lasts, runs, intoGuest, kept } = this;
    const { memoryIndex, offsets, memories } = kept;
    let n = this.count;
    let allKept = this.allKept;
    let sectors = 0;
    for (let end = at + count * SEGMENT_SIZE; at < end; at += SEGMENT_SIZE) {
      const g = at + SEGMENT_GREF;
      const gref = (bytes[g] | (bytes[g + 1] << 8) | (bytes[g + 2] << 16) | (bytes[g + 3] << 24)) >>> 0;
      const first = bytes[at + SEGMENT_FIRST];
      const last = bytes[at + SEGMENT_LAST];
      if (last >= SECTORS_PER_PAGE || first > last) throw new Refused(BLKIF_RSP.ERROR, `a segment of sectors ${first}–${last} of its page`);
      grefs[n] = gref;
      firsts[n] = first;
      lasts[n] = last;
      n++;
      sectors += last - first + 1;
      if (allKept) {
        if (kept.serves(gref, intoGuest)) runs.extend(memories[memoryIndex[gref]], offsets[gref], first, last);
        else allKept = false;
      }
    }
    this.count = n;
    this.allKept = allKept;
    return sectors;
  }

  /** The segments' buffers if every page is a grant kept mapped; else undefined, and the pages are to be mapped. */
  keptRuns(): Uint8Array[] | undefined {
    return this.allKept ? this.runs.finish() : undefined;
  }

  /** The segments' buffers, once their pages are mapped. */
  mappedRuns(): Uint8Array[] {
    this.runs.reset();
    for (let i = 0; i < this.count; i++) this.runs.extend(this.pages[i].buffer, this.pages[i].offset, this.first[i], this.last[i]);
    return this.runs.finish();
  }
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
  /** Grants kept mapped between requests, where both ends keep them. */
  private readonly kept: KeptGrants;
  private readonly segments: SegmentList;
  /** An indirect request's pages of segments, their refs and their mappings: reused as the segment list is. */
  private readonly indirectGrefs: Uint32Array;
  private readonly indirectPages: MappedPage[];
  /** The disk's reads and writes, held for the length of a pass and merged where they follow on. */
  private readonly plug: DiskPlug;
  /** The response being written, before it is copied to its slot. */
  private readonly responseBytes: Uint8Array;
  private readonly responseView: DataView;
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
    this.kept = new KeptGrants(options.maxPersistentGrants);
    this.segments = new SegmentList(Math.max(BLKIF_MAX_SEGMENTS_PER_REQUEST, options.maxIndirectSegments), this.kept);
    this.indirectGrefs = new Uint32Array(Math.ceil(options.maxIndirectSegments / SEGMENTS_PER_INDIRECT_PAGE));
    this.indirectPages = new Array<MappedPage>(this.indirectGrefs.length);
    this.plug = new DiskPlug(disk, options.ioThreads);
    this.responseBytes = new Uint8Array(this.response.size);
    this.responseView = new DataView(this.responseBytes.buffer);
  }

  /** Requests taken and not yet answered. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Takes every request waiting on the ring and starts it; call when notified (and once at connect). */
  service(): void {
    if (this.stopped || this.halted) return;
    this.plug.plug();
    try {
      do {
        for (let n = this.ring.unconsumed(); n > 0; n--) this.start(this.ring.takeRequest());
      } while (this.ring.finalCheckForRequests());
    } catch (e) {
      if (!(e instanceof RingOverflowError)) throw e;
      // As Linux's blkback: a frontend that overruns its ring gets no more service on it.
      this.halted = true;
      this.guestLog.warn('blkif-ring', { device: this.name, reason: e.message }, 'block frontend overran its ring; the queue stops');
    } finally {
      this.plug.unplug();
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
    this.kept.release();
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
    const r = this.responseView;
    r.setBigUint64(this.response.offsets.id, id, true);
    r.setUint8(this.response.offsets.operation, operation);
    r.setInt16(this.response.offsets.status, status, true);
    this.ring.putResponse(this.responseBytes);
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
        const sector = u64(view, this.request.offsets.sector_number);
        if (count > BLKIF_MAX_SEGMENTS_PER_REQUEST) throw new Refused(BLKIF_RSP.ERROR, `${count} segments, more than ${BLKIF_MAX_SEGMENTS_PER_REQUEST}`);
        if (operation === BLKIF_OP.READ || operation === BLKIF_OP.WRITE) {
          if (count === 0) throw new Refused(BLKIF_RSP.ERROR, 'a read or write with no segments');
          const write = operation === BLKIF_OP.WRITE;
          return this.transfer(write, sector, this.directSegments(bytes, count, write));
        }
        // A flush or barrier carrying data writes it between two flushes: the disk holds what came before, then this.
        // Its segments are read just before they are mapped, as every request's are: the list is the queue's.
        await this.disk.flush();
        if (count > 0) {
          await this.transfer(true, sector, this.directSegments(bytes, count, true));
          await this.disk.flush();
        }
        return;
      }
      case BLKIF_OP.DISCARD: {
        if (!this.disk.discard) throw new Refused(BLKIF_RSP.EOPNOTSUPP, 'discard is not offered');
        const d = this.discardDef.decode(bytes);
        if (this.disk.readOnly) throw new Refused(BLKIF_RSP.ERROR, 'discard on a read-only disk');
        const sector = Number(d.sector_number);
        const count = Number(d.nr_sectors);
        this.checkRange(sector, count);
        if (count > 0) await this.disk.discardRange(sector * SECTOR, count * SECTOR);
        return;
      }
      case BLKIF_OP.INDIRECT: {
        if (this.options.maxIndirectSegments === 0) throw new Refused(BLKIF_RSP.EOPNOTSUPP, 'indirect requests are not offered');
        const at = this.indirectDef.offsets;
        const op = bytes[at.indirect_op];
        const count = view.getUint16(at.nr_segments, true);
        if (op !== BLKIF_OP.READ && op !== BLKIF_OP.WRITE) throw new Refused(BLKIF_RSP.ERROR, `indirect operation ${op}`);
        if (count === 0 || count > this.options.maxIndirectSegments) {
          throw new Refused(BLKIF_RSP.ERROR, `${count} indirect segments, not 1 to ${this.options.maxIndirectSegments}`);
        }
        const write = op === BLKIF_OP.WRITE;
        return this.transfer(write, u64(view, at.sector_number), this.indirectSegments(view, count, write));
      }
      default:
        throw new Refused(BLKIF_RSP.EOPNOTSUPP, `operation ${operation}`);
    }
  }

  /** The segments of a request that carries them, for a write or a read; the sectors they cover. */
  private directSegments(bytes: Uint8Array, count: number, write: boolean): number {
    const list = this.segments;
    list.begin(!write);
    return list.add(bytes, this.request.offsets.seg, count);
  }

  /** The segments of an indirect request, from its pages of segments, for a write or a read; the sectors they cover. */
  private indirectSegments(view: DataView, count: number, write: boolean): number {
    const n = Math.ceil(count / SEGMENTS_PER_INDIRECT_PAGE);
    const grefs = this.indirectGrefs;
    for (let i = 0; i < n; i++) grefs[i] = view.getUint32(this.indirectDef.offsets.indirect_grefs + i * 4, true);
    // The pages of segments, kept mapped like data pages where grants are persistent, and let go once read.
    const pages = this.indirectPages;
    const release = this.mapInto(grefs, n, pages, false);
    const list = this.segments;
    list.begin(!write);
    let sectors = 0;
    try {
      for (let p = 0; p < n; p++) {
        const segments = Math.min(SEGMENTS_PER_INDIRECT_PAGE, count - p * SEGMENTS_PER_INDIRECT_PAGE);
        sectors += list.add(pages[p].page, 0, segments);
      }
    } finally {
      release?.();
    }
    return sectors;
  }

  private checkRange(sector: number, count: number): void {
    const align = this.disk.sectorSize / SECTOR;
    if (sector % align !== 0 || count % align !== 0) throw new Refused(BLKIF_RSP.ERROR, `sectors ${sector}+${count} are not aligned to the disk's ${this.disk.sectorSize}-byte sectors`);
    if (sector + count > this.disk.sectors) throw new Refused(BLKIF_RSP.ERROR, `sectors ${sector}+${count} run past the disk's ${this.disk.sectors}`);
  }

  /**
   * One read or write of the segments just read (`sectors` of them): grants mapped (writable for a read,
   * into the guest), the disk's bytes moved in one vectored call.
   */
  private transfer(write: boolean, sector: number, sectors: number): Promise<void> {
    if (write && this.disk.readOnly) throw new Refused(BLKIF_RSP.ERROR, 'a write to a read-only disk');
    this.checkRange(sector, sectors);
    const list = this.segments;
    const offset = sector * SECTOR;
    const kept = list.keptRuns();
    if (kept) return write ? this.plug.writev(kept, offset) : this.plug.readv(kept, offset);
    const release = this.mapInto(list.grefs, list.count, list.pages, !write);
    let io: Promise<void>;
    try {
      const buffers = list.mappedRuns();
      io = write ? this.plug.writev(buffers, offset) : this.plug.readv(buffers, offset);
    } catch (e) {
      release?.();
      throw e;
    }
    return release ? io.finally(release) : io;
  }

  /**
   * Maps the first `count` of `grefs` into `pages`: through the persistent set where both ends keep grants
   * mapped, else for this request only. What it returns lets go of those mapped for this request only.
   */
  private mapInto(grefs: ArrayLike<number>, count: number, pages: MappedPage[], writable: boolean): (() => void) | undefined {
    if (!this.options.persistent) {
      const m = this.map(Array.from({ length: count }, (_, i) => grefs[i]), writable);
      for (let i = 0; i < count; i++) pages[i] = mappedPage(m.page(i));
      return () => m.unmap();
    }
    let once: MappedGrants[] | undefined;
    for (let i = 0; i < count; i++) {
      if (this.kept.serves(grefs[i], writable)) pages[i] = mappedPage(this.kept.page(grefs[i]));
      else {
        const mapped = this.keepOrMapOnce(grefs[i], writable);
        if (mapped.once) (once ??= []).push(mapped.once);
        pages[i] = mapped.page;
      }
    }
    return once && (() => once.forEach((m) => m.unmap()));
  }

  /** A grant not kept as `writable` asks: kept from now on while the set has room, else mapped for this request (`once`). */
  private keepOrMapOnce(gref: number, writable: boolean): { page: MappedPage; once?: MappedGrants } {
    // Mapped writable where the grant allows it, so that one mapping serves reads and writes alike.
    const { mapped, writable: mappedWritable } = this.mapPreferring(gref, writable);
    const page = mappedPage(mapped.page(0));
    // One kept read-only stays kept (a request in flight may be using it); this one serves this request.
    if (this.kept.keep(gref, mapped, page.page, mappedWritable)) return { page };
    return { page, once: mapped };
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

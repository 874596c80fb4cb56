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
const SEGMENT = blkifRequestSegment.native; // the same in both ABIs
const SEGMENTS_PER_INDIRECT_PAGE = 4096 / SEGMENT.size;

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

/** A grant kept mapped between requests. */
interface KeptGrant {
  view: MappedPage;
  mapped: MappedGrants;
  writable: boolean;
}

/**
 * The segments of the request being started, read off the ring or its indirect pages into arrays every
 * request reuses: a request reads, checks and maps its segments before its first await, so no two use
 * them at once, and a 1 MiB request builds no object per segment.
 */
class SegmentList {
  count = 0;
  readonly grefs: Uint32Array;
  /** First and last 512-byte sector used of each segment's page. */
  readonly first: Uint8Array;
  readonly last: Uint8Array;
  readonly pages: MappedPage[];

  constructor(capacity: number) {
    this.grefs = new Uint32Array(capacity);
    this.first = new Uint8Array(capacity);
    this.last = new Uint8Array(capacity);
    this.pages = new Array<MappedPage>(capacity);
  }

  /** Appends the segment at `at` in `bytes` (a request or a page of segments), its sector bounds checked; the sectors it covers. */
  add(bytes: Uint8Array, at: number): number {
    const g = at + SEGMENT.offsets.gref;
    const gref = (bytes[g] | (bytes[g + 1] << 8) | (bytes[g + 2] << 16) | (bytes[g + 3] << 24)) >>> 0;
    const first = bytes[at + SEGMENT.offsets.first_sect];
    const last = bytes[at + SEGMENT.offsets.last_sect];
    if (last >= SECTORS_PER_PAGE || first > last) throw new Refused(BLKIF_RSP.ERROR, `a segment of sectors ${first}–${last} of its page`);
    this.grefs[this.count] = gref;
    this.first[this.count] = first;
    this.last[this.count] = last;
    this.count++;
    return last - first + 1;
  }

  /**
   * The bytes of the segments, their pages mapped, as few buffers as they make: segments that follow one
   * another in the host's view of guest RAM (whole pages of a buffer the guest allocated in one piece, the
   * usual case) become one buffer, so a 1 MiB request is a handful of iovecs rather than 256.
   */
  contiguousRuns(): Uint8Array[] {
    const runs: Uint8Array[] = [];
    let memory: ArrayBufferLike | undefined;
    let start = 0;
    let end = 0;
    for (let i = 0; i < this.count; i++) {
      const page = this.pages[i];
      const from = page.offset + this.first[i] * SECTOR;
      const to = page.offset + (this.last[i] + 1) * SECTOR;
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
  /**
   * Grants kept mapped, indexed by ref (an array, not a Map: a 1 MiB request looks up 256), and how many.
   * Only refs the guest's grant table holds are ever kept, so its length is bounded by the table's.
   */
  private readonly kept: (KeptGrant | undefined)[] = [];
  private keptCount = 0;
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
    this.segments = new SegmentList(Math.max(BLKIF_MAX_SEGMENTS_PER_REQUEST, options.maxIndirectSegments));
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
    for (const k of this.kept) k?.mapped.unmap();
    this.kept.length = 0;
    this.keptCount = 0;
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
          return this.transfer(operation === BLKIF_OP.WRITE, sector, this.directSegments(bytes, count));
        }
        // A flush or barrier carrying data writes it between two flushes: the disk holds what came before, then this.
        // Its segments are read just before they are mapped, as every request's are: the list is the queue's.
        await this.disk.flush();
        if (count > 0) {
          await this.transfer(true, sector, this.directSegments(bytes, count));
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
        return this.transfer(op === BLKIF_OP.WRITE, u64(view, at.sector_number), this.indirectSegments(view, count));
      }
      default:
        throw new Refused(BLKIF_RSP.EOPNOTSUPP, `operation ${operation}`);
    }
  }

  /** The segments of a request that carries them; the sectors they cover. */
  private directSegments(bytes: Uint8Array, count: number): number {
    const list = this.segments;
    list.count = 0;
    let sectors = 0;
    for (let i = 0; i < count; i++) sectors += list.add(bytes, this.request.offsets.seg + i * SEGMENT.size);
    return sectors;
  }

  /** The segments of an indirect request, from its pages of segments; the sectors they cover. */
  private indirectSegments(view: DataView, count: number): number {
    const n = Math.ceil(count / SEGMENTS_PER_INDIRECT_PAGE);
    const grefs = this.indirectGrefs;
    for (let i = 0; i < n; i++) grefs[i] = view.getUint32(this.indirectDef.offsets.indirect_grefs + i * 4, true);
    // The pages of segments, kept mapped like data pages where grants are persistent, and let go once read.
    const pages = this.indirectPages;
    const release = this.mapInto(grefs, n, pages, false);
    const list = this.segments;
    list.count = 0;
    let sectors = 0;
    try {
      for (let p = 0; p < n; p++) {
        const segments = Math.min(SEGMENTS_PER_INDIRECT_PAGE, count - p * SEGMENTS_PER_INDIRECT_PAGE);
        for (let i = 0; i < segments; i++) sectors += list.add(pages[p].page, i * SEGMENT.size);
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
    const release = this.mapInto(list.grefs, list.count, list.pages, !write);
    let io: Promise<void>;
    try {
      const buffers = list.contiguousRuns();
      const offset = sector * SECTOR;
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
      const kept = this.kept[grefs[i]];
      if (kept && (kept.writable || !writable)) pages[i] = kept.view;
      else {
        const mapped = this.keepOrMapOnce(grefs[i], writable, kept);
        if (mapped.once) (once ??= []).push(mapped.once);
        pages[i] = mapped.page;
      }
    }
    return once && (() => once.forEach((m) => m.unmap()));
  }

  /** A grant not kept as `writable` asks: kept from now on while the set has room, else mapped for this request (`once`). */
  private keepOrMapOnce(gref: number, writable: boolean, kept: KeptGrant | undefined): { page: MappedPage; once?: MappedGrants } {
    // Mapped writable where the grant allows it, so that one mapping serves reads and writes alike.
    const mapped = this.mapPreferring(gref, writable);
    // One kept read-only stays kept (a request in flight may be using it); this one serves this request.
    if (!kept && this.keptCount < this.options.maxPersistentGrants) {
      // Filled up to the ref first: a sparse array would fall back to a dictionary, as slow as a Map.
      while (this.kept.length < gref) this.kept.push(undefined);
      this.kept[gref] = mapped;
      this.keptCount++;
      return { page: mapped.view };
    }
    return { page: mapped.view, once: mapped.mapped };
  }

  /** One grant mapped writable if it may be, else read-only if that is all `writable` asks. */
  private mapPreferring(gref: number, writable: boolean): KeptGrant {
    const kept = (mapped: MappedGrants, writable: boolean): KeptGrant => ({ view: mappedPage(mapped.page(0)), mapped, writable });
    if (writable) return kept(this.map([gref], true), true);
    try {
      return kept(this.grants.map(this.options.frontDomid, [gref], true), true);
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      return kept(this.map([gref], false), false);
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

// The guest's XenStore connection: the XenStore page (requests from the
// guest, replies and watch events to it, each a byte ring of 1024 with
// free-running indexes) and its event channel to domain 0. The guest owns
// req_prod and rsp_cons, the server req_cons and rsp_prod, and keeps its own
// copies of the indexes it owns. Served on the main thread whenever the
// guest notifies. The server offers the reconnection and error features: a
// guest asks for a fresh connection by setting `connection` to RECONNECT,
// and a ring the guest broke (an index beyond the ring, a message over the
// payload limit) is marked in `error` and left alone until then.
import type { RateLimitedLog } from '../common/log.js';
import {
  XENSTORE_CONNECTION, XENSTORE_ERROR, XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE, XS, xenstoreDomainInterface,
} from '../xen/abi/xenstore.js';
import { serveNotifications, type BackendChannel } from '../xen/evtchn/backend.js';
import { encodeMessage, MessageFramer, type XsMessage } from './wire.js';

const LAYOUT = xenstoreDomainInterface.native;
type IndexName = 'req_cons' | 'req_prod' | 'rsp_cons' | 'rsp_prod' | 'server_features' | 'connection' | 'error';

/** What a transport needs of the store. */
export interface StoreService<C> {
  connect(domid: number, send: (m: XsMessage) => void): C;
  disconnect(conn: C): void;
  handle(conn: C, m: XsMessage): void;
}

/**
 * xenstored's quota of outstanding requests per domain: a request is outstanding until its reply, and
 * every watch event it caused, has been put in the response ring. At the limit the server takes no
 * more requests until the guest reads.
 */
export const OUTSTANDING_MAX = 20;

/**
 * xenstored's hard memory quota per domain (2.5 MiB), here for what waits for the guest to read:
 * a watch event that would take the queue past it is dropped, with a rate-limited log line.
 */
export const QUEUED_BYTES_MAX = 2.5 * 1024 * 1024;

/** What holding one queued message costs beyond its bytes (the objects around it), counted against QUEUED_BYTES_MAX. */
const QUEUED_MESSAGE_OVERHEAD = 256;

/** xenstored drops a watch event the guest has not read within 20 s. */
export const WATCH_EVENT_TIMEOUT_MS = 20_000;

/** Passes over the rings one service makes at most (each moves up to a ring's worth each way). */
const MAX_PASSES = 16;

/** A message waiting for room in the response ring. */
interface Queued {
  bytes: Uint8Array;
  /** Counts against OUTSTANDING_MAX: a reply, or an event the guest's own request caused. */
  outstanding: boolean;
  /** A watch event not yet begun: its path and token (the key duplicates share) and when it was queued. */
  event?: { key: string; at: number };
}

export class XenStoreRing<C> {
  private readonly words: Uint32Array;
  private conn: C;
  private framer = new MessageFramer();
  private reqCons = 0;
  private rspProd = 0;
  /** Requests taken off the ring, waiting while too many replies do. */
  private requests: XsMessage[] = [];
  /** Whole messages waiting for room in the response ring, the first possibly part-written. */
  private output: Queued[] = [];
  private outputOffset = 0;
  private outputBytes = 0;
  private outstanding = 0;
  /** Watch events queued and not yet begun, by path and token: a second one is not queued. */
  private waitingEvents = new Map<string, number>();
  private stopped = false;
  private servicing = false;

  constructor(
    private readonly page: Uint8Array,
    private channel: BackendChannel,
    private readonly store: StoreService<C>,
    private readonly domid: number,
    private readonly guestLog: RateLimitedLog,
    private readonly now: () => number = Date.now,
  ) {
    this.words = new Uint32Array(page.buffer, page.byteOffset, page.length / 4);
    this.conn = store.connect(domid, (m) => this.queue(m));
    this.reset();
    this.set('server_features', XENSTORE_SERVER_FEATURE.RECONNECTION | XENSTORE_SERVER_FEATURE.ERROR);
  }

  private get(name: IndexName): number {
    return Atomics.load(this.words, LAYOUT.offsets[name] / 4);
  }

  private set(name: IndexName, value: number): void {
    Atomics.store(this.words, LAYOUT.offsets[name] / 4, value >>> 0);
  }

  /** Indexes at zero, nothing buffered, connected: a new session on the same page. */
  private reset(): void {
    this.framer = new MessageFramer();
    this.requests = [];
    this.output = [];
    this.outputOffset = 0;
    this.outputBytes = 0;
    this.outstanding = 0;
    this.waitingEvents.clear();
    this.reqCons = 0;
    this.rspProd = 0;
    for (const name of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod', 'error'] as const) this.set(name, 0);
    this.set('connection', XENSTORE_CONNECTION.CONNECTED);
  }

  /**
   * Queues a reply or watch event for the guest. As xenstored: an event identical to one still waiting
   * is dropped (but for the special "@" ones, each of which matters), and so is one past the queue's
   * memory quota; any event the guest leaves unread for WATCH_EVENT_TIMEOUT_MS goes (see dropStale).
   */
  private queue(m: XsMessage): void {
    const bytes = encodeMessage(m);
    let event: Queued['event'];
    if (m.type === XS.WATCH_EVENT) {
      const key = Buffer.from(m.payload).toString('latin1');
      if (!key.startsWith('@') && this.waitingEvents.has(key)) return;
      this.dropStale();
      if (this.outputBytes + bytes.length + QUEUED_MESSAGE_OVERHEAD > QUEUED_BYTES_MAX) {
        this.guestLog.warn('xenstore-events', { domid: this.domid }, 'guest does not read its XenStore ring; watch event dropped');
        return;
      }
      event = { key, at: this.now() };
      this.waitingEvents.set(key, (this.waitingEvents.get(key) ?? 0) + 1);
    }
    // An event queued while this guest's request is served is that request's doing.
    const outstanding = m.type !== XS.WATCH_EVENT || this.servicing;
    this.output.push({ bytes, outstanding, event });
    this.outputBytes += bytes.length + QUEUED_MESSAGE_OVERHEAD;
    if (outstanding) this.outstanding++;
    // A watch event from a change made elsewhere (the socket, the VMM): the serving loop sends it.
    if (!this.servicing) this.channel.notifier.notify();
  }

  /** Drops the events at the head of the queue that waited past WATCH_EVENT_TIMEOUT_MS unread. */
  private dropStale(): void {
    const oldest = this.now() - WATCH_EVENT_TIMEOUT_MS;
    while (this.output.length > 0 && this.outputOffset === 0) {
      const head = this.output[0];
      if (!head.event || head.event.at > oldest) return;
      this.unqueueHead();
    }
  }

  /** Takes the head message off the queue, written or dropped. */
  private unqueueHead(): void {
    const head = this.output.shift()!;
    this.outputOffset = 0;
    this.outputBytes -= head.bytes.length + QUEUED_MESSAGE_OVERHEAD;
    if (head.outstanding) this.outstanding--;
    this.forgetEvent(head);
  }

  /** A waiting event begun or dropped: it no longer counts for the duplicates of its key. */
  private forgetEvent(q: Queued): void {
    if (!q.event) return;
    const n = this.waitingEvents.get(q.event.key)! - 1;
    if (n === 0) this.waitingEvents.delete(q.event.key);
    else this.waitingEvents.set(q.event.key, n);
    q.event = undefined;
  }

  private fail(error: number, why: string): void {
    this.guestLog.warn('xenstore-ring', { domid: this.domid, why }, 'guest broke its XenStore ring; it stays stopped until the guest reconnects');
    this.set('error', error);
  }

  /**
   * Takes the guest's requests off the ring and serves them while fewer than OUTSTANDING_MAX are
   * outstanding; the rest wait here (at most a ring's worth) and are served as replies drain. Bytes taken.
   */
  private readRequests(): number {
    const prod = this.get('req_prod');
    const avail = (prod - this.reqCons) >>> 0;
    if (avail > XENSTORE_RING_SIZE) {
      this.fail(XENSTORE_ERROR.RINGIDX, `req_prod ${prod} is more than a ring past req_cons ${this.reqCons}`);
      return 0;
    }
    // Not taken while requests already wait: a guest cannot grow the backlog past one ring.
    const take = this.requests.length === 0 ? avail : 0;
    const bytes = new Uint8Array(take);
    for (let i = 0; i < take; i++) bytes[i] = this.page[LAYOUT.offsets.req + ((this.reqCons + i) % XENSTORE_RING_SIZE)];
    this.reqCons = (this.reqCons + take) >>> 0;
    this.set('req_cons', this.reqCons);
    this.requests.push(...this.framer.push(bytes));
    while (this.requests.length > 0 && this.outstanding < OUTSTANDING_MAX) this.store.handle(this.conn, this.requests.shift()!);
    if (this.framer.broken !== null) this.fail(XENSTORE_ERROR.PROTO, this.framer.broken);
    return take;
  }

  /** Copies queued replies and events into the response ring as far as the guest left room; bytes given. */
  private writeResponses(): number {
    const cons = this.get('rsp_cons');
    const used = (this.rspProd - cons) >>> 0;
    if (used > XENSTORE_RING_SIZE) {
      this.fail(XENSTORE_ERROR.RINGIDX, `rsp_cons ${cons} is past rsp_prod ${this.rspProd}`);
      return 0;
    }
    let room = XENSTORE_RING_SIZE - used;
    let given = 0;
    this.dropStale();
    while (room > 0 && this.output.length > 0) {
      const msg = this.output[0].bytes;
      // Once begun, an event no longer waits: a duplicate is queued after it, and the timeout is past.
      if (this.outputOffset === 0) this.forgetEvent(this.output[0]);
      const n = Math.min(room, msg.length - this.outputOffset);
      for (let i = 0; i < n; i++) this.page[LAYOUT.offsets.rsp + ((this.rspProd + given + i) % XENSTORE_RING_SIZE)] = msg[this.outputOffset + i];
      given += n;
      room -= n;
      this.outputOffset += n;
      if (this.outputOffset === msg.length) {
        this.unqueueHead();
        this.dropStale();
      }
    }
    this.rspProd = (this.rspProd + given) >>> 0;
    // The bytes are in place before the index says so: Atomics.store is sequentially consistent.
    this.set('rsp_prod', this.rspProd);
    return given;
  }

  /** One pass: a reconnection asked for, requests in, replies out, the guest told if anything moved. */
  service(): void {
    this.servicing = true;
    try {
      this.serviceOnce();
    } finally {
      this.servicing = false;
    }
  }

  private serviceOnce(): void {
    if (this.get('connection') === XENSTORE_CONNECTION.RECONNECT) {
      this.store.disconnect(this.conn);
      this.conn = this.store.connect(this.domid, (m) => this.queue(m));
      this.reset();
      this.channel.notifyGuest();
      return;
    }
    if (this.get('error') !== XENSTORE_ERROR.NONE) return;
    let moved = 0;
    for (let pass = 0; ; pass++) {
      if (pass === MAX_PASSES) {
        // A guest refilling its ring as fast as it is served gets the rest on a later turn of the
        // main thread's event loop, which also serves the other vCPUs' forwarded hypercalls.
        this.channel.notifier.notify();
        break;
      }
      const before = this.requests.length;
      const step = this.readRequests() + this.writeResponses();
      if ((step === 0 && this.requests.length === before) || this.get('error') !== XENSTORE_ERROR.NONE) break;
      moved += step;
    }
    if (moved > 0) this.channel.notifyGuest();
  }

  /** Serves the ring whenever the guest notifies, until stop(). */
  run(): Promise<void> {
    return serveNotifications(() => this.channel, () => this.service(), () => this.stopped);
  }

  /**
   * The same session over another channel: the guest closed its end and bound domain 0's port again
   * from another of its ports. Requests, replies, watches and transactions carry on.
   */
  follow(channel: BackendChannel): void {
    const old = this.channel;
    this.channel = channel;
    old.notifier.notify();
  }

  /** A new session over a new channel (after a soft reset): the old connection's watches and transactions go. */
  rebind(channel: BackendChannel): void {
    const old = this.channel;
    this.channel = channel;
    this.store.disconnect(this.conn);
    this.conn = this.store.connect(this.domid, (m) => this.queue(m));
    this.reset();
    old.notifier.notify();
  }

  stop(): void {
    this.stopped = true;
    this.channel.notifier.notify();
  }
}

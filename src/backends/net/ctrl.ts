// A PV network device's control ring (io/netif.h, "Control ring"), the
// backend's end: a frontend that asked for it (ctrl-ring-ref and
// event-channel-ctrl) sets the hash of the packets it receives through it, as
// Linux's netback lets it: the algorithm (none or Toeplitz), the hash types
// (IPv4, IPv4 with TCP, IPv6, IPv6 with TCP), the key (up to 40 bytes, read
// from a page it grants, zero-padded), and a mapping table of up to 128
// entries from hash to queue (read from a granted page, each entry checked
// against the queues connected). Static grant mapping is not offered: those
// requests, and any unknown type, are answered NOT_SUPPORTED. A frontend that
// breaks the ring itself (a producer index more than a ring ahead) stops it,
// as a transmit or receive ring stops.
import type { RateLimitedLog } from '../../common/log.js';
import { PAGE_SIZE } from '../../memory/guest-memory.js';
import { XEN_NETIF_CTRL_HASH_ALGORITHM, XEN_NETIF_CTRL_HASH_TYPE, XEN_NETIF_CTRL_STATUS, XEN_NETIF_CTRL_TYPE, xenNetifCtrlRequest, xenNetifCtrlResponse } from '../../xen/abi/netif.js';
import { RingOverflowError, type BackRing } from '../ring.js';
import { DeviceError, type GrantedPages } from '../xenbus.js';
import { hashInput, toeplitz } from './hash.js';
import type { Packet } from './packet.js';

/** The largest key taken, in bytes (netback's XEN_NETBK_MAX_HASH_KEY_SIZE). */
export const MAX_HASH_KEY_BYTES = 40;
/** The largest mapping table, in entries (netback's XEN_NETBK_MAX_HASH_MAPPING_SIZE). */
export const MAX_HASH_MAPPING_SIZE = 128;
/** The hash types offered. */
export const HASH_FLAGS_SUPPORTED = XEN_NETIF_CTRL_HASH_TYPE.IPV4 | XEN_NETIF_CTRL_HASH_TYPE.IPV4_TCP | XEN_NETIF_CTRL_HASH_TYPE.IPV6 | XEN_NETIF_CTRL_HASH_TYPE.IPV6_TCP;
/** Mapping entries one granted page holds. */
const ENTRIES_PER_PAGE = PAGE_SIZE / 4;

const request = xenNetifCtrlRequest.native;
const response = xenNetifCtrlResponse.native;
const S = XEN_NETIF_CTRL_STATUS;
const T = XEN_NETIF_CTRL_TYPE;
/** The requests that change where packets go, and with what hash. */
const STEERING_REQUESTS: ReadonlySet<number> = new Set([T.SET_HASH_ALGORITHM, T.SET_HASH_FLAGS, T.SET_HASH_KEY, T.SET_HASH_MAPPING_SIZE, T.SET_HASH_MAPPING]);

/** What the frontend set. */
export interface HashSettings {
  algorithm: number;
  flags: number;
  key: Uint8Array;
  /** The mapping table's entries in use (0: a packet's queue is its hash modulo the queues). */
  mapping: Uint32Array;
}

export class NetCtrl {
  private halted = false;
  private algorithm: number = XEN_NETIF_CTRL_HASH_ALGORITHM.NONE;
  private flags = 0;
  private readonly key = new Uint8Array(MAX_HASH_KEY_BYTES);
  private mapping = new Uint32Array(0);

  constructor(
    private readonly ring: BackRing,
    private readonly grants: GrantedPages,
    private readonly frontDomid: number,
    /** The queues connected: every mapping entry must name one. */
    private readonly queues: number,
    /** Raises the control ring's event channel. */
    private readonly notify: () => void,
    /** Called when a request changed how packets are steered, before the frontend is answered. */
    private readonly settingsChanged: () => void,
    private readonly guestLog: RateLimitedLog,
    private readonly name: string,
  ) {}

  /** Whether the ring stopped because the frontend broke it. */
  get stopped(): boolean {
    return this.halted;
  }

  /** A copy of what the frontend set. */
  get settings(): HashSettings {
    return { algorithm: this.algorithm, flags: this.flags, key: this.key.slice(), mapping: this.mapping.slice() };
  }

  /** Answers every request the frontend queued; call when notified (and once at connect). */
  service(): void {
    if (this.halted) return;
    let answered = false;
    try {
      do {
        while (this.ring.unconsumed() > 0) {
          const r = request.decode(this.ring.takeRequest());
          const { status, data } = this.handle(r.type, r.data);
          if (status === S.SUCCESS && STEERING_REQUESTS.has(r.type)) this.settingsChanged();
          this.ring.putResponse(response.encode({ id: r.id, type: r.type, status, data }));
          answered = true;
        }
      } while (this.ring.finalCheckForRequests());
    } catch (e) {
      if (!(e instanceof RingOverflowError)) throw e;
      this.halted = true;
      this.guestLog.warn('netif-ctrl-ring', { device: this.name, reason: e.message }, 'network frontend broke its control ring; it stops');
    }
    if (answered && this.ring.pushResponses()) this.notify();
  }

  /**
   * Where a packet for the guest goes under the frontend's settings, with its hash attached where one
   * of the enabled types fits it: the queue, or undefined while no hashing is set (the packet stays
   * on the queue the host gave it). A packet no type fits hashes as 0, as netback's does, and carries no hash.
   */
  steer(packet: Packet): number | undefined {
    const hashing = this.algorithm === XEN_NETIF_CTRL_HASH_ALGORITHM.TOEPLITZ;
    const input = hashing && this.flags ? hashInput(packet.frame, this.flags) : undefined;
    const value = input ? toeplitz(this.key, input.bytes) : 0;
    if (input) packet.hash = { typeBit: input.typeBit, value };
    else if (packet.hash) delete packet.hash; // steered again, under settings that give it none
    if (!hashing) return undefined;
    return this.mapping.length ? this.mapping[value % this.mapping.length] : value % this.queues;
  }

  private handle(type: number, data: number[]): { status: number; data: number } {
    const ok = (value = 0) => ({ status: S.SUCCESS, data: value });
    const refuse = (status: number) => ({ status, data: 0 });
    switch (type) {
      case T.SET_HASH_ALGORITHM:
        if (data[0] !== XEN_NETIF_CTRL_HASH_ALGORITHM.NONE && data[0] !== XEN_NETIF_CTRL_HASH_ALGORITHM.TOEPLITZ) return refuse(S.INVALID_PARAMETER);
        this.algorithm = data[0];
        return ok();
      case T.GET_HASH_FLAGS:
        // "A valid hash algorithm must be selected before this operation can succeed."
        if (this.algorithm === XEN_NETIF_CTRL_HASH_ALGORITHM.NONE) return refuse(S.NOT_SUPPORTED);
        return ok(HASH_FLAGS_SUPPORTED);
      case T.SET_HASH_FLAGS:
        if (data[0] & ~HASH_FLAGS_SUPPORTED) return refuse(S.INVALID_PARAMETER);
        if (this.algorithm === XEN_NETIF_CTRL_HASH_ALGORITHM.NONE) return refuse(S.NOT_SUPPORTED);
        this.flags = data[0];
        return ok();
      case T.SET_HASH_KEY: {
        const [gref, length] = data;
        if (length > MAX_HASH_KEY_BYTES) return refuse(S.BUFFER_OVERFLOW);
        const key = new Uint8Array(MAX_HASH_KEY_BYTES);
        if (length > 0 && !this.readGranted(gref, (page) => key.set(page.subarray(0, length)), 'hash key')) return refuse(S.INVALID_PARAMETER);
        this.key.set(key);
        return ok();
      }
      case T.GET_HASH_MAPPING_SIZE:
        return ok(MAX_HASH_MAPPING_SIZE);
      case T.SET_HASH_MAPPING_SIZE:
        if (data[0] > MAX_HASH_MAPPING_SIZE) return refuse(S.INVALID_PARAMETER);
        this.mapping = new Uint32Array(data[0]);
        return ok();
      case T.SET_HASH_MAPPING: {
        const [gref, size, offset] = data;
        if (size > ENTRIES_PER_PAGE) return refuse(S.BUFFER_OVERFLOW);
        if (offset + size > this.mapping.length) return refuse(S.INVALID_PARAMETER);
        const entries = new Uint32Array(size);
        if (size > 0 && !this.readGranted(gref, (page) => entries.set(new Uint32Array(page.slice(0, size * 4).buffer)), 'hash mapping')) return refuse(S.INVALID_PARAMETER);
        // All or nothing: a table naming a queue that is not there leaves the old one.
        if (entries.some((q) => q >= this.queues)) return refuse(S.INVALID_PARAMETER);
        this.mapping.set(entries, offset);
        return ok();
      }
      default:
        // Static grant mapping (GET_GREF_MAPPING_SIZE, ADD_ and DEL_GREF_MAPPING), INVALID and anything unknown.
        return refuse(S.NOT_SUPPORTED);
    }
  }

  /** Runs `read` over the page the frontend granted as `gref` (read-only will do); false if it is not granted. */
  private readGranted(gref: number, read: (page: Uint8Array) => void, what: string): boolean {
    let pages;
    try {
      pages = this.grants.map(this.frontDomid, [gref], false);
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      this.guestLog.warn('netif-ctrl', { device: this.name, reason: e.message }, `the network frontend's ${what} cannot be read`);
      return false;
    }
    try {
      read(pages.page(0));
    } finally {
      pages.unmap();
    }
    return true;
  }
}

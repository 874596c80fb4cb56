// One queue of a PV network device, the backend's end (io/netif.h): the
// transmit ring, whose packets (a first request, extra-info slots, more
// requests while more_data) are copied out of the pages the guest granted and
// handed to the host's link; and the receive ring, whose requests are pages
// the guest posted, filled with the packets the link brings (one page per slot,
// extra-info slots after the first for GSO and the hash the frontend asked for
// over its control ring). Each request is checked as
// Linux's netback checks it: a malformed packet is answered NETIF_RSP_ERROR,
// counted and logged (rate-limited), and a frontend that breaks the ring
// itself (a packet running past req_prod, a producer index more than a ring
// ahead) stops the queue, as netback turns the interface's carrier off.
import type { RateLimitedLog } from '../../common/log.js';
import { PAGE_SIZE } from '../../memory/guest-memory.js';
import { NETIF_RSP, NETRXF, NETTXF, netifExtraInfo, XEN_NETIF_CTRL_HASH_ALGORITHM, netifRxRequest, netifRxResponse, netifTxRequest, netifTxResponse, XEN_NETIF_EXTRA_FLAG, XEN_NETIF_EXTRA_TYPE, XEN_NETIF_GSO_TYPE, XEN_NETIF_NR_SLOTS_MIN } from '../../xen/abi/netif.js';
import type { BackRing } from '../ring.js';
import { RingOverflowError } from '../ring.js';
import { DeviceError, type GrantedPages } from '../xenbus.js';
import { checksumPlace, completeChecksum, ETH_HLEN, transportOf, type GsoType, type Packet } from './packet.js';

/** Where packets from the guest go: the host's side of the device. */
export interface NetLink {
  /** Whether it takes frames whose checksum is left partial, and TCP segmentation left to do. */
  readonly offloads: { checksum: boolean; gso: boolean };
  /** Passes a packet on; false if the host dropped it (the link says why, rate-limited). */
  send(packet: Packet): boolean;
}

/** What the frontend negotiated for what it receives. */
export interface NetFrontendFeatures {
  /** A packet may take several receive slots (feature-sg). */
  sg: boolean;
  /** It takes packets whose checksum is left partial: IPv4 unless feature-no-csum-offload, IPv6 with feature-ipv6-csum-offload. */
  checksumIpv4: boolean;
  checksumIpv6: boolean;
  /** GSO packets it takes (feature-gso-tcpv4, -tcpv6). */
  gso: Record<GsoType, boolean>;
}

export interface NetQueueStats {
  txPackets: number;
  txBytes: number;
  /** Transmit packets refused as malformed (answered NETIF_RSP_ERROR). */
  txErrors: number;
  /** Transmit packets the host's side dropped. */
  txDropped: number;
  rxPackets: number;
  rxBytes: number;
  /** Packets for the guest it could not take (too large for it, or an offload it did not negotiate). */
  rxDropped: number;
}

/** Slots a transmit packet may take before the frontend counts as broken, as netback's fatal_skb_slots. */
const FATAL_SLOTS = 20;

/** A frontend that broke the ring itself: the queue stops. */
class BrokenRing extends Error {}

/** A malformed packet: answered NETIF_RSP_ERROR. */
class Refused extends Error {}

type TxRequest = ReturnType<(typeof netifTxRequest)['native']['decode']>;

const GSO_OF_XEN: Record<number, GsoType | undefined> = { [XEN_NETIF_GSO_TYPE.TCPV4]: 'tcpv4', [XEN_NETIF_GSO_TYPE.TCPV6]: 'tcpv6' };
const XEN_OF_GSO: Record<GsoType, number> = { tcpv4: XEN_NETIF_GSO_TYPE.TCPV4, tcpv6: XEN_NETIF_GSO_TYPE.TCPV6 };

// netif's structs are the same in both ABIs.
const txRequest = netifTxRequest.native;
const txResponse = netifTxResponse.native;
const rxRequest = netifRxRequest.native;
const rxResponse = netifRxResponse.native;
const extraInfo = netifExtraInfo.native;

export class NetQueue {
  readonly stats: NetQueueStats = { txPackets: 0, txBytes: 0, txErrors: 0, txDropped: 0, rxPackets: 0, rxBytes: 0, rxDropped: 0 };
  private halted = false;

  constructor(
    private readonly tx: BackRing,
    private readonly rx: BackRing,
    private readonly grants: GrantedPages,
    private readonly frontDomid: number,
    private readonly link: NetLink,
    private readonly frontend: NetFrontendFeatures,
    /** Raises the queue's event channel. */
    private readonly notify: () => void,
    private readonly guestLog: RateLimitedLog,
    private readonly name: string,
  ) {}

  /** Whether the queue stopped because the frontend broke a ring. */
  get stopped(): boolean {
    return this.halted;
  }

  /** Sends every packet the guest queued; call when notified (and once at connect). */
  serviceTx(): void {
    if (this.halted) return;
    let answered = false;
    try {
      do {
        while (this.tx.unconsumed() > 0) {
          this.transmit();
          answered = true;
        }
      } while (this.tx.finalCheckForRequests());
    } catch (e) {
      if (!(e instanceof BrokenRing || e instanceof RingOverflowError)) throw e;
      this.halt(e.message);
    }
    if (answered && this.tx.pushResponses()) this.notify();
  }

  /**
   * Puts a packet from the link into the guest's receive buffers: false if the guest has not posted
   * enough of them yet (keep it, and try again when the guest next notifies). A packet the guest cannot
   * take is dropped, and counted.
   */
  receive(packet: Packet): boolean {
    if (this.halted) return true;
    const p = this.fitForGuest(packet);
    if (!p) {
      this.stats.rxDropped++;
      return true;
    }
    const dataSlots = Math.max(1, Math.ceil(p.frame.length / PAGE_SIZE));
    // The extra-info slots after the first: GSO, then the hash, each flagged MORE but the last.
    const extras: Uint8Array[] = [];
    if (p.gso) {
      const gso = new Uint8Array(6);
      new DataView(gso.buffer).setUint16(0, p.gso.size, true);
      gso[2] = XEN_OF_GSO[p.gso.type];
      extras.push(extraInfo.encode({ type: XEN_NETIF_EXTRA_TYPE.GSO, flags: 0, u: gso }));
    }
    if (p.hash) {
      const hash = new Uint8Array(6);
      hash[0] = p.hash.typeBit;
      hash[1] = XEN_NETIF_CTRL_HASH_ALGORITHM.TOEPLITZ;
      new DataView(hash.buffer).setUint32(2, p.hash.value, true);
      extras.push(extraInfo.encode({ type: XEN_NETIF_EXTRA_TYPE.HASH, flags: 0, u: hash }));
    }
    extras.forEach((e, i) => {
      if (i < extras.length - 1) e[1] |= XEN_NETIF_EXTRA_FLAG.MORE;
    });
    const slots = dataSlots + extras.length;
    try {
      // Asks to be told of the next buffer posted when there are too few.
      if (this.rx.unconsumed() < slots && (!this.rx.finalCheckForRequests() || this.rx.unconsumed() < slots)) return false;
    } catch (e) {
      if (!(e instanceof RingOverflowError)) throw e;
      this.halt(e.message);
      return true;
    }
    const requests = Array.from({ length: slots }, () => rxRequest.decode(this.rx.takeRequest()));
    const data = [requests[0], ...requests.slice(1 + extras.length)];
    let status: number = NETIF_RSP.OKAY;
    try {
      const pages = this.grants.map(this.frontDomid, data.map((r) => r.gref), true);
      try {
        data.forEach((_, i) => pages.page(i).set(p.frame.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)));
      } finally {
        pages.unmap();
      }
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      status = NETIF_RSP.ERROR;
      this.guestLog.warn('netif-rx', { device: this.name, reason: e.message }, 'network receive buffer refused');
    }
    const checksumFlags = p.partialChecksum ? NETRXF.csum_blank | NETRXF.data_validated : p.validated ? NETRXF.data_validated : 0;
    data.forEach((r, i) => {
      const last = i === data.length - 1;
      const length = last ? p.frame.length - i * PAGE_SIZE : PAGE_SIZE;
      const flags = (last ? 0 : NETRXF.more_data) | (i === 0 ? checksumFlags | (extras.length ? NETRXF.extra_info : 0) : 0);
      this.rx.putResponse(rxResponse.encode({ id: r.id, offset: 0, flags, status: status === NETIF_RSP.OKAY ? length : status }));
      if (i === 0) for (const e of extras) this.rx.putResponse(e);
    });
    if (status === NETIF_RSP.OKAY) {
      this.stats.rxPackets++;
      this.stats.rxBytes += p.frame.length;
    } else this.stats.rxDropped++;
    if (this.rx.pushResponses()) this.notify();
    return true;
  }

  /** The packet as the frontend can take it (a checksum completed here where it cannot), or undefined if it cannot take it at all. */
  private fitForGuest(p: Packet): Packet | undefined {
    if (p.frame.length < ETH_HLEN || p.frame.length > 0xffff) return undefined;
    if (!this.frontend.sg && p.frame.length > PAGE_SIZE) return undefined;
    if (p.gso && !this.frontend.gso[p.gso.type]) return undefined;
    if (!p.partialChecksum) return p;
    const ipv6 = transportOf(p.frame)?.ipVersion === 6;
    if (ipv6 ? this.frontend.checksumIpv6 : this.frontend.checksumIpv4) return p;
    if (p.gso) return undefined;
    const frame = p.frame.slice();
    completeChecksum(frame, p.partialChecksum.start, p.partialChecksum.offset);
    return { frame, validated: true };
  }

  /** Takes one packet off the transmit ring, sends it unless it is malformed, and answers each of its slots. */
  private transmit(): void {
    const first = txRequest.decode(this.tx.takeRequest());
    const extras: Uint8Array[] = [];
    if (first.flags & NETTXF.extra_info) {
      let more = true;
      while (more) {
        if (extras.length >= XEN_NETIF_EXTRA_TYPE.MAX - 1) throw new BrokenRing(`packet ${first.id} has more than ${XEN_NETIF_EXTRA_TYPE.MAX - 1} extra-info slots`);
        if (this.tx.unconsumed() === 0) throw new BrokenRing(`packet ${first.id}'s extra-info slots run past req_prod`);
        const e = this.tx.takeRequest();
        extras.push(e);
        more = (extraInfo.decode(e).flags & XEN_NETIF_EXTRA_FLAG.MORE) !== 0;
      }
    }
    const slots: TxRequest[] = [first];
    while (slots[slots.length - 1].flags & NETTXF.more_data) {
      if (slots.length >= FATAL_SLOTS) throw new BrokenRing(`packet ${first.id} takes more than ${FATAL_SLOTS} slots`);
      if (this.tx.unconsumed() === 0) throw new BrokenRing(`packet ${first.id} runs past req_prod`);
      slots.push(txRequest.decode(this.tx.takeRequest()));
    }
    let status: number = NETIF_RSP.OKAY;
    try {
      const packet = this.assemble(slots, extras);
      if (this.link.send(packet)) {
        this.stats.txPackets++;
        this.stats.txBytes += packet.frame.length;
      } else this.stats.txDropped++;
    } catch (e) {
      if (!(e instanceof Refused || e instanceof DeviceError)) throw e;
      status = NETIF_RSP.ERROR;
      this.stats.txErrors++;
      this.guestLog.warn('netif-tx', { device: this.name, id: first.id, reason: e.message }, 'network packet from the guest refused');
    }
    this.tx.putResponse(txResponse.encode({ id: first.id, status }));
    for (let i = 0; i < extras.length; i++) this.tx.putResponse(txResponse.encode({ id: 0, status: NETIF_RSP.NULL }));
    for (const s of slots.slice(1)) this.tx.putResponse(txResponse.encode({ id: s.id, status }));
  }

  /** The frame a transmit packet's slots describe, copied out of the guest's pages, and what it leaves to the link. */
  private assemble(slots: TxRequest[], extras: Uint8Array[]): Packet {
    const [first] = slots;
    if (slots.length > XEN_NETIF_NR_SLOTS_MIN) throw new Refused(`${slots.length} slots, more than ${XEN_NETIF_NR_SLOTS_MIN}`);
    const rest = slots.slice(1).reduce((n, s) => n + s.size, 0);
    if (rest > first.size) throw new Refused(`its fragments hold ${rest} bytes, more than the packet's ${first.size}`);
    if (first.size < ETH_HLEN) throw new Refused(`${first.size} bytes, shorter than an Ethernet header`);
    const lengths = [first.size - rest, ...slots.slice(1).map((s) => s.size)];
    slots.forEach((s, i) => {
      if (s.offset + lengths[i] > PAGE_SIZE) throw new Refused(`slot ${i} (${lengths[i]} bytes at ${s.offset}) crosses its page`);
    });
    let gso: Packet['gso'];
    for (const e of extras) {
      const x = extraInfo.decode(e);
      // Multicast filters are not offered; a hash the frontend computed is of no use to the host's link.
      if (x.type !== XEN_NETIF_EXTRA_TYPE.GSO) continue;
      const size = x.u[0] | (x.u[1] << 8);
      const type = GSO_OF_XEN[x.u[2]];
      if (!type || size === 0) throw new Refused(`GSO type ${x.u[2]} of segments of ${size} bytes`);
      if (!this.link.offloads.gso) throw new Refused('GSO, which was not offered');
      gso = { type, size };
    }
    const frame = new Uint8Array(first.size);
    const pages = this.grants.map(this.frontDomid, slots.map((s) => s.gref), false);
    try {
      let at = 0;
      slots.forEach((s, i) => {
        frame.set(pages.page(i).subarray(s.offset, s.offset + lengths[i]), at);
        at += lengths[i];
      });
    } finally {
      pages.unmap();
    }
    if (!(first.flags & NETTXF.csum_blank)) {
      if (gso) throw new Refused('GSO without a partial checksum');
      return { frame, validated: (first.flags & NETTXF.data_validated) !== 0 };
    }
    const place = checksumPlace(frame);
    if (!place) throw new Refused('a partial checksum in a packet that is not TCP or UDP over IP');
    if (this.link.offloads.checksum) return { frame, partialChecksum: place, validated: true, gso };
    completeChecksum(frame, place.start, place.offset);
    return { frame, validated: true };
  }

  private halt(reason: string): void {
    this.halted = true;
    this.guestLog.warn('netif-ring', { device: this.name, reason }, 'network frontend broke its ring; the queue stops');
  }
}

// An Ethernet frame between a guest's network device and the host's link,
// with what the two sides may leave to each other: a checksum left to be
// completed (its start and where the result goes, the pseudo-header's sum
// already in place, as Linux and virtio leave it), a checksum known good, and
// TCP segmentation left to do (GSO: the segment size). And the header parsing
// and checksum arithmetic to complete a checksum where the other side cannot.

export type GsoType = 'tcpv4' | 'tcpv6';

export interface Packet {
  frame: Uint8Array;
  /** The checksum at csumStart + csumOffset is the pseudo-header's sum, to be completed over the bytes from csumStart. */
  partialChecksum?: { start: number; offset: number };
  /** The checksums were checked (or are the sender's to trust). */
  validated?: boolean;
  gso?: { type: GsoType; size: number };
  /** The Toeplitz hash the frontend asked for over its control ring, and its type's bit number (XEN_NETIF_CTRL_HASH_TYPE_BIT): for the guest. */
  hash?: { typeBit: number; value: number };
}

export const ETH_HLEN = 14;
export const ETHERTYPE = { ipv4: 0x0800, ipv6: 0x86dd, vlan: 0x8100 } as const;
export const IPPROTO = { tcp: 6, udp: 17 } as const;
/** Where TCP and UDP keep their checksum. */
const CSUM_OFFSET = { [IPPROTO.tcp]: 16, [IPPROTO.udp]: 6 } as Record<number, number>;

/** An Ethernet frame's network layer: its EtherType (after one VLAN tag, if there is one) and where its header starts. */
export function networkOf(frame: Uint8Array): { v: DataView; type: number; ip: number } | undefined {
  if (frame.length < ETH_HLEN) return undefined;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let at = 12;
  let type = v.getUint16(at);
  if (type === ETHERTYPE.vlan) {
    if (frame.length < ETH_HLEN + 4) return undefined;
    at += 4;
    type = v.getUint16(at);
  }
  return { v, type, ip: at + 2 };
}

/** What a frame carries, as far as a checksum needs: its layer-4 header's offset and protocol; undefined if not TCP or UDP over IP. */
export function transportOf(frame: Uint8Array): { ipVersion: 4 | 6; l4: number; protocol: number } | undefined {
  const network = networkOf(frame);
  if (!network) return undefined;
  const { v, type, ip } = network;
  if (type === ETHERTYPE.ipv4) {
    if (frame.length < ip + 20) return undefined;
    const ihl = (frame[ip] & 0x0f) * 4;
    // A fragment other than the first has no layer-4 header; the first has one only if the IP header is whole.
    const fragment = v.getUint16(ip + 6) & 0x3fff;
    if (ihl < 20 || fragment !== 0 || frame.length < ip + ihl) return undefined;
    return { ipVersion: 4, l4: ip + ihl, protocol: frame[ip + 9] };
  }
  if (type === ETHERTYPE.ipv6) {
    if (frame.length < ip + 40) return undefined;
    return { ipVersion: 6, l4: ip + 40, protocol: frame[ip + 6] };
  }
  return undefined;
}

/** Where the checksum of a TCP or UDP frame lies, for a frame whose checksum is left partial; undefined if it has none there. */
export function checksumPlace(frame: Uint8Array): { start: number; offset: number } | undefined {
  const t = transportOf(frame);
  const offset = t && CSUM_OFFSET[t.protocol];
  if (t === undefined || offset === undefined || frame.length < t.l4 + offset + 2) return undefined;
  return { start: t.l4, offset };
}

/** The 16-bit ones' complement sum of `bytes` added to `sum` (unfolded). */
function onesSum(bytes: Uint8Array, sum = 0): number {
  const n = bytes.length & ~1;
  for (let i = 0; i < n; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length & 1) sum += bytes[n] << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * Completes a partial checksum in place: the field holds the pseudo-header's sum, and the result
 * covers everything from `start`. UDP's zero (no checksum) is sent as all ones.
 */
export function completeChecksum(frame: Uint8Array, start: number, offset: number): void {
  const at = start + offset;
  let c = ~fold(onesSum(frame.subarray(start))) & 0xffff;
  if (c === 0 && offset === CSUM_OFFSET[IPPROTO.udp]) c = 0xffff;
  frame[at] = c >> 8;
  frame[at + 1] = c & 0xff;
}

// The hash a netif frontend may ask for over its control ring (io/netif.h,
// "Hash types" and "Hash algorithms"): the Toeplitz hash of a packet's IP
// addresses, and its TCP ports where the frontend enabled the TCP type, the
// "maximal" type the packet and the enabled flags allow.
import { XEN_NETIF_CTRL_HASH_TYPE, XEN_NETIF_CTRL_HASH_TYPE_BIT } from '../../xen/abi/netif.js';
import { ETHERTYPE, IPPROTO, networkOf } from './packet.js';

/**
 * The Toeplitz hash of `data` under `key`: for each bit of the data set, from the most significant
 * bit of its first byte on, the 32 bits of the key that start at that bit's position are XORed into
 * the result. Key bits past its end count as zeros.
 */
export function toeplitz(key: Uint8Array, data: Uint8Array): number {
  const keyByte = (i: number) => (i < key.length ? key[i] : 0);
  // The key's 32-bit window at the current bit, and the next byte's bits to shift in after it.
  let window = ((keyByte(0) << 24) | (keyByte(1) << 16) | (keyByte(2) << 8) | keyByte(3)) >>> 0;
  let hash = 0;
  for (let i = 0; i < data.length; i++) {
    const next = keyByte(i + 4);
    for (let bit = 0; bit < 8; bit++) {
      if (data[i] & (0x80 >> bit)) hash = (hash ^ window) >>> 0;
      window = ((window << 1) | ((next >> (7 - bit)) & 1)) >>> 0;
    }
  }
  return hash;
}

/** What a packet is hashed as: its type's bit number (the extra-info slot's htype) and the bytes hashed. */
export interface HashInput {
  typeBit: number;
  bytes: Uint8Array;
}

/**
 * The bytes to hash of an Ethernet frame, under the hash types enabled (XEN_NETIF_CTRL_HASH_TYPE
 * flags): source and destination address, then TCP's source and destination port where the TCP type
 * is enabled and the packet is TCP (not a fragment, its header there); undefined when no enabled type
 * fits the frame.
 */
export function hashInput(frame: Uint8Array, flags: number): HashInput | undefined {
  const network = networkOf(frame);
  if (!network) return undefined;
  const { v, type, ip } = network;
  const withPorts = (addresses: number, addressLength: number, l4: number | undefined, typeBit: number): HashInput => {
    const bytes = new Uint8Array(addressLength + 4);
    bytes.set(frame.subarray(addresses, addresses + addressLength));
    bytes.set(frame.subarray(l4!, l4! + 4), addressLength);
    return { typeBit, bytes };
  };
  if (type === ETHERTYPE.ipv4) {
    if (frame.length < ip + 20 || frame[ip] >> 4 !== 4) return undefined;
    const ihl = (frame[ip] & 0x0f) * 4;
    const fragment = v.getUint16(ip + 6) & 0x3fff;
    const l4 = ip + ihl;
    const tcp = ihl >= 20 && fragment === 0 && frame[ip + 9] === IPPROTO.tcp && frame.length >= l4 + 4;
    if (tcp && flags & XEN_NETIF_CTRL_HASH_TYPE.IPV4_TCP) return withPorts(ip + 12, 8, l4, XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV4_TCP);
    if (flags & XEN_NETIF_CTRL_HASH_TYPE.IPV4) return { typeBit: XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV4, bytes: frame.slice(ip + 12, ip + 20) };
    return undefined;
  }
  if (type === ETHERTYPE.ipv6) {
    if (frame.length < ip + 40 || frame[ip] >> 4 !== 6) return undefined;
    const l4 = ip + 40;
    // Only a TCP header right after the fixed header: extension headers are not walked.
    const tcp = frame[ip + 6] === IPPROTO.tcp && frame.length >= l4 + 4;
    if (tcp && flags & XEN_NETIF_CTRL_HASH_TYPE.IPV6_TCP) return withPorts(ip + 8, 32, l4, XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV6_TCP);
    if (flags & XEN_NETIF_CTRL_HASH_TYPE.IPV6) return { typeBit: XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV6, bytes: frame.slice(ip + 8, ip + 40) };
    return undefined;
  }
  return undefined;
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XEN_NETIF_CTRL_HASH_TYPE as F, XEN_NETIF_CTRL_HASH_TYPE_BIT as BIT } from '../../xen/abi/netif.js';
import { hashInput, toeplitz } from './hash.js';

/** The key of Microsoft's RSS verification suite. */
const KEY = Buffer.from('6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa', 'hex');

const v4 = (s: string) => s.split('.').map(Number);
const port = (p: number) => [p >> 8, p & 0xff];
function v6(s: string): number[] {
  const [head, tail = ''] = s.split('::');
  const words = (x: string) => (x ? x.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

// Microsoft's RSS verification suite: source address and port, destination address and port, the hash with ports (TCP), without.
const IPV4: [string, number, string, number, number, number][] = [
  ['66.9.149.187', 2794, '161.142.100.80', 1766, 0x51ccc178, 0x323e8fc2],
  ['199.92.111.2', 14230, '65.69.140.83', 4739, 0xc626b0ea, 0xd718262a],
  ['24.19.198.95', 12898, '12.22.207.184', 38024, 0x5c2b394a, 0xd2d0a5de],
  ['38.27.205.30', 48228, '209.142.163.6', 2217, 0xafc7327f, 0x82989176],
  ['153.39.163.191', 44251, '202.188.127.2', 1303, 0x10e828a2, 0x5d1809c5],
];
const IPV6: [string, number, string, number, number, number][] = [
  ['3ffe:2501:200:1fff::7', 2794, '3ffe:2501:200:3::1', 1766, 0x40207d3d, 0x2cc18cd5],
  ['3ffe:501:8::260:97ff:fe40:efab', 14230, 'ff02::1', 4739, 0xdde51bbf, 0x0f0c461c],
  ['3ffe:1900:4545:3:200:f8ff:fe21:67cf', 44251, 'fe80::200:f8ff:fe21:67cf', 38024, 0x02d1feef, 0x4b61e985],
];

test('toeplitz: the RSS verification suite, IPv4 and IPv6, with and without ports', () => {
  for (const [src, sp, dst, dp, withPorts, without] of IPV4) {
    assert.equal(toeplitz(KEY, new Uint8Array([...v4(src), ...v4(dst), ...port(sp), ...port(dp)])), withPorts, `${src}:${sp} → ${dst}:${dp}`);
    assert.equal(toeplitz(KEY, new Uint8Array([...v4(src), ...v4(dst)])), without, `${src} → ${dst}`);
  }
  for (const [src, sp, dst, dp, withPorts, without] of IPV6) {
    assert.equal(toeplitz(KEY, new Uint8Array([...v6(src), ...v6(dst), ...port(sp), ...port(dp)])), withPorts, `${src}:${sp} → ${dst}:${dp}`);
    assert.equal(toeplitz(KEY, new Uint8Array([...v6(src), ...v6(dst)])), without, `${src} → ${dst}`);
  }
});

test('toeplitz: key bytes past the key count as zeros; an empty key hashes to 0', () => {
  const data = new Uint8Array([...v4('66.9.149.187'), ...v4('161.142.100.80'), ...port(2794), ...port(1766)]);
  const short = KEY.subarray(0, 10);
  const padded = new Uint8Array(40);
  padded.set(short);
  assert.equal(toeplitz(short, data), toeplitz(padded, data));
  assert.equal(toeplitz(new Uint8Array(0), data), 0);
});

/** An Ethernet frame carrying an IP packet (header `ip`, then `l4`). */
function frame(type: number, ip: number[], l4: number[]): Uint8Array {
  return new Uint8Array([...new Array(12).fill(2), type >> 8, type & 0xff, ...ip, ...l4]);
}
const ipv4Header = (protocol: number, src: string, dst: string, fragment = 0) => [0x45, 0, 0, 40, 0, 0, fragment >> 8, fragment & 0xff, 64, protocol, 0, 0, ...v4(src), ...v4(dst)];
const ipv6Header = (next: number, src: string, dst: string) => [0x60, 0, 0, 0, 0, 20, next, 64, ...v6(src), ...v6(dst)];
const ports = [...port(2794), ...port(1766), ...new Array(16).fill(0)];

test('hashInput: the maximal type the flags allow; TCP only with its ports there and not a fragment; UDP hashes as IP', () => {
  const tcp4 = frame(0x0800, ipv4Header(6, '66.9.149.187', '161.142.100.80'), ports);
  const all = F.IPV4 | F.IPV4_TCP | F.IPV6 | F.IPV6_TCP;
  let h = hashInput(tcp4, all)!;
  assert.equal(h.typeBit, BIT.IPV4_TCP);
  assert.equal(toeplitz(KEY, h.bytes), 0x51ccc178);
  h = hashInput(tcp4, F.IPV4)!;
  assert.equal(h.typeBit, BIT.IPV4);
  assert.equal(toeplitz(KEY, h.bytes), 0x323e8fc2);
  assert.equal(hashInput(tcp4, F.IPV6 | F.IPV6_TCP), undefined);
  assert.equal(hashInput(tcp4, F.IPV4_TCP | F.IPV6)!.typeBit, BIT.IPV4_TCP);
  const udp4 = frame(0x0800, ipv4Header(17, '66.9.149.187', '161.142.100.80'), ports);
  assert.equal(hashInput(udp4, F.IPV4_TCP), undefined);
  assert.equal(toeplitz(KEY, hashInput(udp4, all)!.bytes), 0x323e8fc2);
  const fragment = frame(0x0800, ipv4Header(6, '66.9.149.187', '161.142.100.80', 0x2000), ports);
  assert.equal(hashInput(fragment, all)!.typeBit, BIT.IPV4);
  const tcp6 = frame(0x86dd, ipv6Header(6, '3ffe:2501:200:1fff::7', '3ffe:2501:200:3::1'), ports);
  h = hashInput(tcp6, all)!;
  assert.equal(h.typeBit, BIT.IPV6_TCP);
  assert.equal(toeplitz(KEY, h.bytes), 0x40207d3d);
  h = hashInput(tcp6, F.IPV6)!;
  assert.equal(toeplitz(KEY, h.bytes), 0x2cc18cd5);
  // In a VLAN tag.
  const tagged = new Uint8Array([...tcp4.subarray(0, 12), 0x81, 0, 0, 5, ...tcp4.subarray(12)]);
  assert.equal(toeplitz(KEY, hashInput(tagged, all)!.bytes), 0x51ccc178);
  // Not IP, or too short.
  assert.equal(hashInput(frame(0x0806, new Array(28).fill(0), []), all), undefined);
  assert.equal(hashInput(tcp4.subarray(0, 30), all), undefined);
  assert.equal(hashInput(tcp4.subarray(0, 36), all)!.typeBit, BIT.IPV4, 'addresses there, ports not');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../../common/captured-logger.js';
import { RateLimitedLog } from '../../common/log.js';
import { SRING_INDEX, SRING_RING_OFFSET } from '../../xen/abi/blkif.js';
import { NETIF_RSP, NETIF_RX_RING_ENTRY_SIZE, NETIF_TX_RING_ENTRY_SIZE, NETRXF, NETTXF, netifExtraInfo, netifRxRequest, netifRxResponse, netifTxRequest, netifTxResponse, XEN_NETIF_CTRL_HASH_ALGORITHM, XEN_NETIF_CTRL_HASH_TYPE_BIT, XEN_NETIF_EXTRA_FLAG, XEN_NETIF_EXTRA_TYPE, XEN_NETIF_GSO_TYPE } from '../../xen/abi/netif.js';
import { BackRing } from '../ring.js';
import { FRONT, fakeGrants } from '../fake-grants.js';
import type { Packet } from './packet.js';
import { NetQueue, type NetFrontendFeatures } from './queue.js';


/** A UDP datagram over IPv4 in an Ethernet frame, its UDP checksum the pseudo-header's sum (partial) or complete. */
export function udpFrame(payload: Uint8Array, complete: boolean): Uint8Array {
  const frame = new Uint8Array(14 + 20 + 8 + payload.length);
  const v = new DataView(frame.buffer);
  frame.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  v.setUint16(12, 0x0800);
  frame[14] = 0x45;
  v.setUint16(16, 20 + 8 + payload.length);
  frame[22] = 64;
  frame[23] = 17;
  frame.set([10, 0, 0, 1, 10, 0, 0, 2], 26);
  v.setUint16(34, 5000);
  v.setUint16(36, 7);
  v.setUint16(38, 8 + payload.length);
  frame.set(payload, 42);
  let sum = pseudoSum(frame);
  if (complete) {
    for (let i = 34; i < frame.length; i += 2) sum += (frame[i] << 8) | (i + 1 < frame.length ? frame[i + 1] : 0);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    v.setUint16(40, ~sum & 0xffff || 0xffff);
  } else {
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    v.setUint16(40, sum);
  }
  return frame;
}

function pseudoSum(frame: Uint8Array): number {
  const v = new DataView(frame.buffer, frame.byteOffset);
  return v.getUint16(26) + v.getUint16(28) + v.getUint16(30) + v.getUint16(32) + 17 + v.getUint16(38);
}

/** Whether a frame's UDP checksum is complete and right. */
export function udpChecksumOk(frame: Uint8Array): boolean {
  let sum = pseudoSum(frame);
  for (let i = 34; i < frame.length; i += 2) sum += (frame[i] << 8) | (i + 1 < frame.length ? frame[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

/** The guest's side of one queue: granted pages, both rings, a link that keeps what it is sent. */
function frontend(options: { features?: Partial<NetFrontendFeatures>; offloads?: { checksum: boolean; gso: boolean } } = {}) {
  const { grants, grant } = fakeGrants();
  const ring = (entry: number) => {
    const page = new Uint8Array(4096);
    const back = new BackRing([page], entry);
    let prod = 0;
    let cons = 0;
    const header = new DataView(page.buffer);
    // As SHARED_RING_INIT leaves them.
    header.setUint32(SRING_INDEX.req_event, 1, true);
    header.setUint32(SRING_INDEX.rsp_event, 1, true);
    return {
      back,
      header,
      push(bytes: Uint8Array, publish = true) {
        page.set(bytes, SRING_RING_OFFSET + (prod % back.size) * entry);
        prod++;
        if (publish) header.setUint32(SRING_INDEX.req_prod, prod, true);
      },
      responses(): Uint8Array[] {
        const out: Uint8Array[] = [];
        for (const rspProd = header.getUint32(SRING_INDEX.rsp_prod, true); cons < rspProd; cons++) {
          const at = SRING_RING_OFFSET + (cons % back.size) * entry;
          out.push(page.slice(at, at + entry));
        }
        return out;
      },
    };
  };
  const tx = ring(NETIF_TX_RING_ENTRY_SIZE);
  const rx = ring(NETIF_RX_RING_ENTRY_SIZE);
  const sent: Packet[] = [];
  const { logger, warns } = capturedLogger();
  let notifications = 0;
  const features: NetFrontendFeatures = { sg: true, checksumIpv4: true, checksumIpv6: false, gso: { tcpv4: true, tcpv6: false }, ...options.features };
  const link = { offloads: options.offloads ?? { checksum: true, gso: true }, send: (p: Packet) => sent.push(p) > 0 };
  const queue = new NetQueue(tx.back, rx.back, grants, FRONT, link, features, () => notifications++, new RateLimitedLog(logger), 'vif-test');
  return {
    queue, sent, warns, tx, rx, notifications: () => notifications,
    grant,
    txRequest(gref: number, offset: number, size: number, flags: number, id: number, publish = true) {
      tx.push(netifTxRequest.native.encode({ gref, offset, flags, id, size }), publish);
    },
    txResponses: () => tx.responses().map((b) => netifTxResponse.native.decode(b)),
    postRx(id: number, gref: number) {
      rx.push(netifRxRequest.native.encode({ id, pad: 0, gref }));
    },
    rxResponses: () => rx.responses(),
  };
}

test('transmit: a packet in one slot, and one in three (more_data), copied out of their pages at their offsets; each slot answered', () => {
  const f = frontend({ offloads: { checksum: true, gso: true } });
  const one = udpFrame(new Uint8Array(100).fill(7), true);
  f.grant(10, new Uint8Array([...new Uint8Array(64), ...one]), true);
  f.txRequest(10, 64, one.length, NETTXF.data_validated, 1);
  const big = udpFrame(new Uint8Array(9000).map((_, i) => i), true);
  f.grant(11, big.subarray(0, 4000), true);
  f.grant(12, big.subarray(4000, 8000), true);
  const tail = f.grant(13, undefined, true);
  tail.set(big.subarray(8000), 100);
  f.txRequest(11, 0, big.length, NETTXF.more_data, 2, false);
  f.txRequest(12, 0, 4000, NETTXF.more_data, 3, false);
  f.txRequest(13, 100, big.length - 8000, 0, 4);
  f.queue.serviceTx();
  assert.deepEqual(f.sent.map((p) => [p.frame, p.validated]), [[one, true], [big, false]]);
  assert.deepEqual(f.txResponses(), [1, 2, 3, 4].map((id) => ({ id, status: NETIF_RSP.OKAY })));
  assert.equal(f.notifications(), 1);
  assert.deepEqual([f.queue.stats.txPackets, f.queue.stats.txBytes], [2, one.length + big.length]);
});

test('transmit: a partial checksum goes to a link that completes it, or is completed here; GSO goes with it, answered NULL for the extra slot', () => {
  for (const checksum of [true, false]) {
    const f = frontend({ offloads: { checksum, gso: checksum } });
    const frame = udpFrame(new Uint8Array(300).fill(3), false);
    f.grant(10, frame, true);
    f.txRequest(10, 0, frame.length, NETTXF.csum_blank | NETTXF.data_validated, 1);
    f.queue.serviceTx();
    const [p] = f.sent;
    if (checksum) assert.deepEqual([p.partialChecksum, udpChecksumOk(p.frame)], [{ start: 34, offset: 6 }, false]);
    else assert.deepEqual([p.partialChecksum, udpChecksumOk(p.frame)], [undefined, true]);
  }
  const f = frontend();
  const frame = udpFrame(new Uint8Array(3000), false);
  f.grant(10, frame, true);
  f.txRequest(10, 0, frame.length, NETTXF.csum_blank | NETTXF.extra_info, 5, false);
  const gso = new Uint8Array([0xa8, 0x05, XEN_NETIF_GSO_TYPE.TCPV4, 0, 0, 0]);
  f.tx.push(netifExtraInfo.native.encode({ type: XEN_NETIF_EXTRA_TYPE.GSO, flags: 0, u: gso }));
  f.queue.serviceTx();
  assert.deepEqual(f.sent[0].gso, { type: 'tcpv4', size: 1448 });
  assert.deepEqual(f.txResponses(), [{ id: 5, status: NETIF_RSP.OKAY }, { id: 0, status: NETIF_RSP.NULL }]);
});

test('transmit: malformed packets are answered NETIF_RSP_ERROR, counted and logged, and the ring goes on', () => {
  const f = frontend({ offloads: { checksum: true, gso: false } });
  const frame = udpFrame(new Uint8Array(64), true);
  f.grant(10, frame, true);
  f.txRequest(10, 4000, frame.length, 0, 1); // crosses its page
  f.txRequest(10, 0, 10, 0, 2); // shorter than an Ethernet header
  f.txRequest(99, 0, frame.length, 0, 3); // a ref never granted
  f.txRequest(10, 0, 20, NETTXF.more_data, 4); // fragments larger than the packet
  f.txRequest(10, 0, 30, 0, 5);
  f.txRequest(10, 0, frame.length, NETTXF.extra_info, 6); // GSO, not offered
  f.tx.push(netifExtraInfo.native.encode({ type: XEN_NETIF_EXTRA_TYPE.GSO, flags: 0, u: new Uint8Array([0xa8, 5, 1, 0, 0, 0]) }));
  f.txRequest(10, 0, frame.length, 0, 7); // a good one after them
  f.queue.serviceTx();
  const E = NETIF_RSP.ERROR;
  assert.deepEqual(f.txResponses().map((r) => [r.id, r.status]), [[1, E], [2, E], [3, E], [4, E], [5, E], [6, E], [0, NETIF_RSP.NULL], [7, NETIF_RSP.OKAY]]);
  assert.equal(f.sent.length, 1);
  assert.equal(f.queue.stats.txErrors, 5);
  assert.ok(f.warns().length >= 1);
  assert.ok(!f.queue.stopped);
});

test('transmit: a packet whose slots run past req_prod, or that takes more than 20 slots, stops the queue', () => {
  const f = frontend();
  f.grant(10, new Uint8Array(4096), true);
  f.txRequest(10, 0, 100, NETTXF.more_data, 1);
  f.queue.serviceTx();
  assert.ok(f.queue.stopped);
  assert.match(JSON.stringify(f.warns()), /runs past req_prod/);
  const g = frontend();
  g.grant(10, new Uint8Array(4096), true);
  for (let i = 0; i < 21; i++) g.txRequest(10, 0, 100, NETTXF.more_data, i);
  g.queue.serviceTx();
  assert.ok(g.queue.stopped);
  assert.equal(g.sent.length, 0);
});

test('receive: a packet per posted page, a larger one over several (more_data), a GSO one with its extra-info slot; each response in its request\'s place', () => {
  const f = frontend();
  const small = udpFrame(new Uint8Array(50).fill(1), true);
  assert.equal(f.queue.receive({ frame: small, validated: true }), false, 'nothing posted yet');
  const pages = Array.from({ length: 8 }, (_, i) => {
    f.postRx(100 + i, 20 + i);
    return f.grant(20 + i);
  });
  assert.equal(f.queue.receive({ frame: small, validated: true }), true);
  const big = udpFrame(new Uint8Array(6000).map((_, i) => i * 3), false);
  assert.equal(f.queue.receive({ frame: big, partialChecksum: { start: 34, offset: 6 } }), true);
  const gso = udpFrame(new Uint8Array(5000), false);
  assert.equal(f.queue.receive({ frame: gso, partialChecksum: { start: 34, offset: 6 }, gso: { type: 'tcpv4', size: 1448 } }), true);
  const rsp = f.rxResponses();
  const r = (i: number) => netifRxResponse.native.decode(rsp[i]);
  assert.deepEqual(r(0), { id: 100, offset: 0, flags: NETRXF.data_validated, status: small.length });
  assert.deepEqual(r(1), { id: 101, offset: 0, flags: NETRXF.more_data | NETRXF.csum_blank | NETRXF.data_validated, status: 4096 });
  assert.deepEqual(r(2), { id: 102, offset: 0, flags: 0, status: big.length - 4096 });
  assert.deepEqual(r(3), { id: 103, offset: 0, flags: NETRXF.more_data | NETRXF.csum_blank | NETRXF.data_validated | NETRXF.extra_info, status: 4096 });
  const extra = netifExtraInfo.native.decode(rsp[4]);
  assert.deepEqual([extra.type, extra.flags & XEN_NETIF_EXTRA_FLAG.MORE, extra.u[0] | (extra.u[1] << 8), extra.u[2]], [XEN_NETIF_EXTRA_TYPE.GSO, 0, 1448, XEN_NETIF_GSO_TYPE.TCPV4]);
  assert.deepEqual(r(5), { id: 105, offset: 0, flags: 0, status: gso.length - 4096 });
  assert.deepEqual([pages[0].subarray(0, small.length), pages[1], pages[2].subarray(0, big.length - 4096)], [small, big.subarray(0, 4096), big.subarray(4096)]);
  assert.deepEqual([pages[3], pages[5].subarray(0, gso.length - 4096)], [gso.subarray(0, 4096), gso.subarray(4096)]);
  assert.equal(f.queue.stats.rxPackets, 3);
});

test('receive: what the frontend cannot take is dropped (too large without feature-sg, GSO it did not ask for), a partial checksum completed for one that cannot take it', () => {
  const f = frontend({ features: { sg: false, checksumIpv4: false, gso: { tcpv4: false, tcpv6: false } } });
  const pages = Array.from({ length: 4 }, (_, i) => {
    f.postRx(i, 20 + i);
    return f.grant(20 + i);
  });
  assert.equal(f.queue.receive({ frame: udpFrame(new Uint8Array(5000), true) }), true);
  assert.equal(f.queue.receive({ frame: udpFrame(new Uint8Array(500), false), partialChecksum: { start: 34, offset: 6 }, gso: { type: 'tcpv4', size: 100 } }), true);
  assert.equal(f.queue.stats.rxDropped, 2);
  assert.equal(f.rxResponses().length, 0);
  const partial = udpFrame(new Uint8Array(500).fill(9), false);
  assert.equal(f.queue.receive({ frame: partial, partialChecksum: { start: 34, offset: 6 } }), true);
  const [rsp] = f.rxResponses();
  assert.deepEqual(netifRxResponse.native.decode(rsp), { id: 0, offset: 0, flags: NETRXF.data_validated, status: partial.length });
  assert.ok(udpChecksumOk(pages[0].subarray(0, partial.length)), 'the checksum was completed');
  assert.ok(!udpChecksumOk(partial), 'in a copy: the link\'s frame is left as it was');
});

test('receive: a hash the control ring asked for goes in an extra-info slot after the first, after GSO\'s (MORE set on that one)', () => {
  const f = frontend();
  Array.from({ length: 6 }, (_, i) => {
    f.postRx(200 + i, 40 + i);
    return f.grant(40 + i);
  });
  const small = udpFrame(new Uint8Array(50), true);
  assert.equal(f.queue.receive({ frame: small, validated: true, hash: { typeBit: XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV4, value: 0x323e8fc2 } }), true);
  const gso = udpFrame(new Uint8Array(5000), false);
  assert.equal(f.queue.receive({ frame: gso, partialChecksum: { start: 34, offset: 6 }, gso: { type: 'tcpv4', size: 1448 }, hash: { typeBit: XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV4_TCP, value: 0x51ccc178 } }), true);
  const rsp = f.rxResponses();
  assert.equal(rsp.length, 6);
  const r = (i: number) => netifRxResponse.native.decode(rsp[i]);
  const x = (i: number) => netifExtraInfo.native.decode(rsp[i]);
  assert.deepEqual(r(0), { id: 200, offset: 0, flags: NETRXF.data_validated | NETRXF.extra_info, status: small.length });
  assert.deepEqual([x(1).type, x(1).flags, [...x(1).u]], [XEN_NETIF_EXTRA_TYPE.HASH, 0, [XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV4, XEN_NETIF_CTRL_HASH_ALGORITHM.TOEPLITZ, 0xc2, 0x8f, 0x3e, 0x32]]);
  assert.deepEqual(r(2), { id: 202, offset: 0, flags: NETRXF.more_data | NETRXF.csum_blank | NETRXF.data_validated | NETRXF.extra_info, status: 4096 });
  assert.deepEqual([x(3).type, x(3).flags], [XEN_NETIF_EXTRA_TYPE.GSO, XEN_NETIF_EXTRA_FLAG.MORE]);
  assert.deepEqual([x(4).type, x(4).flags, [...x(4).u]], [XEN_NETIF_EXTRA_TYPE.HASH, 0, [XEN_NETIF_CTRL_HASH_TYPE_BIT.IPV4_TCP, XEN_NETIF_CTRL_HASH_ALGORITHM.TOEPLITZ, 0x78, 0xc1, 0xcc, 0x51]]);
  assert.deepEqual(r(5), { id: 205, offset: 0, flags: 0, status: gso.length - 4096 });
});

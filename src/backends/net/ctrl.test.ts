import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../../common/captured-logger.js';
import { RateLimitedLog } from '../../common/log.js';
import { SRING_INDEX, SRING_RING_OFFSET } from '../../xen/abi/blkif.js';
import {
  NETIF_CTRL_RING_ENTRY_SIZE, XEN_NETIF_CTRL_HASH_ALGORITHM as ALG, XEN_NETIF_CTRL_HASH_TYPE as F, XEN_NETIF_CTRL_HASH_TYPE_BIT as BIT,
  XEN_NETIF_CTRL_STATUS as S, XEN_NETIF_CTRL_TYPE as T, xenNetifCtrlRequest, xenNetifCtrlResponse,
} from '../../xen/abi/netif.js';
import { FRONT, fakeGrants } from '../fake-grants.js';
import { BackRing } from '../ring.js';
import { HASH_FLAGS_SUPPORTED, MAX_HASH_MAPPING_SIZE, NetCtrl } from './ctrl.js';
import { toeplitz } from './hash.js';
import type { Packet } from './packet.js';

const KEY = Buffer.from('6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa', 'hex');

/** The guest's side of a control ring, for a device of `queues` queues. */
function frontend(queues = 2) {
  const { grants, grant, mapped } = fakeGrants();
  const page = new Uint8Array(4096);
  const back = new BackRing([page], NETIF_CTRL_RING_ENTRY_SIZE);
  const header = new DataView(page.buffer);
  header.setUint32(SRING_INDEX.req_event, 1, true);
  header.setUint32(SRING_INDEX.rsp_event, 1, true);
  let prod = 0;
  let cons = 0;
  let id = 0;
  let notifications = 0;
  const { logger, warns } = capturedLogger();
  /** Per change of the settings reported, the responses the frontend could see then. */
  const changes: number[] = [];
  const ctrl = new NetCtrl(back, grants, FRONT, queues, () => notifications++, () => changes.push(header.getUint32(SRING_INDEX.rsp_prod, true)), new RateLimitedLog(logger), 'vif-test');
  const push = (type: number, data: number[] = [0, 0, 0]) => {
    page.set(xenNetifCtrlRequest.native.encode({ id: ++id, type, data: [...data, 0, 0, 0].slice(0, 3) }), SRING_RING_OFFSET + (prod % back.size) * NETIF_CTRL_RING_ENTRY_SIZE);
    prod++;
    header.setUint32(SRING_INDEX.req_prod, prod, true);
  };
  const responses = () => {
    const out = [];
    for (const rspProd = header.getUint32(SRING_INDEX.rsp_prod, true); cons < rspProd; cons++) {
      const at = SRING_RING_OFFSET + (cons % back.size) * NETIF_CTRL_RING_ENTRY_SIZE;
      out.push(xenNetifCtrlResponse.native.decode(page.slice(at, at + 12)));
    }
    return out;
  };
  /** Sends one request and returns its response's status and data. */
  const call = (type: number, data: number[] = []) => {
    push(type, data);
    ctrl.service();
    const rsp = responses();
    assert.equal(rsp.length, 1);
    assert.deepEqual([rsp[0].id, rsp[0].type], [id, type]);
    return [rsp[0].status, rsp[0].data];
  };
  return { ctrl, grant, mapped, header, push, responses, call, warns, changes, notifications: () => notifications };
}

test('control ring: the algorithm first, then the hash types offered and set; unknown flags refused', () => {
  const f = frontend();
  assert.deepEqual(f.call(T.GET_HASH_FLAGS), [S.NOT_SUPPORTED, 0], 'no algorithm yet');
  assert.deepEqual(f.call(T.SET_HASH_FLAGS, [F.IPV4]), [S.NOT_SUPPORTED, 0]);
  assert.deepEqual(f.call(T.SET_HASH_ALGORITHM, [2]), [S.INVALID_PARAMETER, 0]);
  assert.deepEqual(f.call(T.SET_HASH_ALGORITHM, [ALG.TOEPLITZ]), [S.SUCCESS, 0]);
  assert.deepEqual(f.call(T.GET_HASH_FLAGS), [S.SUCCESS, F.IPV4 | F.IPV4_TCP | F.IPV6 | F.IPV6_TCP]);
  assert.equal(HASH_FLAGS_SUPPORTED, 15);
  assert.deepEqual(f.call(T.SET_HASH_FLAGS, [F.IPV4 | 16]), [S.INVALID_PARAMETER, 0]);
  assert.equal(f.ctrl.settings.flags, 0);
  assert.deepEqual(f.call(T.SET_HASH_FLAGS, [F.IPV4 | F.IPV4_TCP]), [S.SUCCESS, 0]);
  assert.deepEqual(f.ctrl.settings, { algorithm: ALG.TOEPLITZ, flags: F.IPV4 | F.IPV4_TCP, key: new Uint8Array(40), mapping: new Uint32Array(0) });
  assert.ok(f.notifications() > 0, 'the frontend was notified of its responses');
});

test('control ring: the key from a granted page (read-only will do), zero-padded; too long, or not granted, refused', () => {
  const f = frontend();
  f.grant(30, KEY, true);
  assert.deepEqual(f.call(T.SET_HASH_KEY, [30, 40]), [S.SUCCESS, 0]);
  assert.deepEqual(f.ctrl.settings.key, new Uint8Array(KEY));
  assert.deepEqual(f.call(T.SET_HASH_KEY, [30, 16]), [S.SUCCESS, 0]);
  assert.deepEqual(f.ctrl.settings.key, new Uint8Array([...KEY.subarray(0, 16), ...new Array(24).fill(0)]));
  assert.deepEqual(f.call(T.SET_HASH_KEY, [30, 41]), [S.BUFFER_OVERFLOW, 0]);
  assert.deepEqual(f.call(T.SET_HASH_KEY, [31, 40]), [S.INVALID_PARAMETER, 0]);
  assert.deepEqual(f.ctrl.settings.key.subarray(0, 16), new Uint8Array(KEY.subarray(0, 16)), 'a refused key changes nothing');
  assert.equal(f.warns().length, 1, 'the ref not granted is logged');
  assert.deepEqual(f.call(T.SET_HASH_KEY, [31, 0]), [S.SUCCESS, 0], 'length 0 clears the key and reads nothing');
  assert.deepEqual(f.ctrl.settings.key, new Uint8Array(40));
  assert.equal(f.mapped.get(30), 0, 'the key page is let go');
});

test('control ring: the mapping table: its size up to 128, entries from a granted page at an offset, each a queue there; all or nothing', () => {
  const f = frontend(2);
  assert.deepEqual(f.call(T.GET_HASH_MAPPING_SIZE), [S.SUCCESS, MAX_HASH_MAPPING_SIZE]);
  assert.deepEqual(f.call(T.SET_HASH_MAPPING_SIZE, [129]), [S.INVALID_PARAMETER, 0]);
  assert.deepEqual(f.call(T.SET_HASH_MAPPING_SIZE, [8]), [S.SUCCESS, 0]);
  assert.deepEqual(f.ctrl.settings.mapping, new Uint32Array(8));
  const entries = (...q: number[]) => new Uint8Array(new Uint32Array(q).buffer);
  f.grant(40, entries(1, 1, 0, 1), true);
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [40, 4, 2]), [S.SUCCESS, 0]);
  assert.deepEqual([...f.ctrl.settings.mapping], [0, 0, 1, 1, 0, 1, 0, 0]);
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [40, 4, 5]), [S.INVALID_PARAMETER, 0], 'past the table');
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [40, 1, 0xffffffff]), [S.INVALID_PARAMETER, 0], 'an offset that would wrap');
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [40, 1025, 0]), [S.BUFFER_OVERFLOW, 0], 'more than a page holds');
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [41, 4, 0]), [S.INVALID_PARAMETER, 0], 'not granted');
  f.grant(42, entries(1, 2, 1), true);
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [42, 3, 0]), [S.INVALID_PARAMETER, 0], 'queue 2 of 2');
  assert.deepEqual([...f.ctrl.settings.mapping], [0, 0, 1, 1, 0, 1, 0, 0], 'nothing of a refused table is taken');
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [42, 1, 7]), [S.SUCCESS, 0], 'only the entries asked for are read');
  assert.deepEqual(f.call(T.SET_HASH_MAPPING, [99, 0, 8]), [S.SUCCESS, 0], 'an empty sub-table at the end reads nothing');
  assert.deepEqual(f.call(T.SET_HASH_MAPPING_SIZE, [0]), [S.SUCCESS, 0]);
  assert.deepEqual(f.ctrl.settings.mapping, new Uint32Array(0));
});

test('control ring: static grant mapping, INVALID and unknown types are NOT_SUPPORTED; several requests answered in one pass, by id', () => {
  const f = frontend();
  for (const type of [T.GET_GREF_MAPPING_SIZE, T.ADD_GREF_MAPPING, T.DEL_GREF_MAPPING, T.INVALID, 11, 0xffff]) assert.deepEqual(f.call(type, [0, 1, 2]), [S.NOT_SUPPORTED, 0]);
  f.push(T.SET_HASH_ALGORITHM, [ALG.TOEPLITZ]);
  f.push(T.GET_HASH_FLAGS);
  f.push(T.GET_HASH_MAPPING_SIZE);
  f.ctrl.service();
  assert.deepEqual(f.responses().map((r) => [r.type, r.status, r.data]), [[T.SET_HASH_ALGORITHM, 0, 0], [T.GET_HASH_FLAGS, 0, 15], [T.GET_HASH_MAPPING_SIZE, 0, 128]]);
});

test('control ring: a producer index more than a ring ahead stops it, as a transmit or receive ring stops', () => {
  const f = frontend();
  f.push(T.GET_HASH_MAPPING_SIZE);
  f.header.setUint32(SRING_INDEX.req_prod, 1000, true);
  f.ctrl.service();
  assert.ok(f.ctrl.stopped);
  assert.deepEqual(f.responses(), []);
  assert.match(String(f.warns()[0].msg), /broke its control ring/);
  f.header.setUint32(SRING_INDEX.req_prod, 1, true);
  f.ctrl.service();
  assert.deepEqual(f.responses(), [], 'a stopped ring answers nothing more');
});

/** A TCP/IPv4 frame from 66.9.149.187:2794 to 161.142.100.80:1766 (the RSS suite's first). */
function tcpFrame(protocol = 6): Uint8Array {
  return new Uint8Array([...new Array(12).fill(2), 8, 0, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, protocol, 0, 0, 66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6, ...new Array(16).fill(0)]);
}

test('steering: none until Toeplitz is chosen; then the hash of the enabled type picks the mapping\'s entry, or the queue by modulo without one; the packet carries its hash', () => {
  const f = frontend(2);
  assert.equal(f.ctrl.steer({ frame: tcpFrame() }), undefined);
  f.grant(30, KEY, true);
  f.call(T.SET_HASH_ALGORITHM, [ALG.TOEPLITZ]);
  f.call(T.SET_HASH_KEY, [30, 40]);
  // Toeplitz with no types: every packet hashes as 0, and none carries a hash.
  const plain: Packet = { frame: tcpFrame() };
  assert.equal(f.ctrl.steer(plain), 0);
  assert.equal('hash' in plain, false);
  f.call(T.SET_HASH_FLAGS, [F.IPV4 | F.IPV4_TCP]);
  const tcp: Packet = { frame: tcpFrame() };
  assert.equal(f.ctrl.steer(tcp), 0x51ccc178 % 2);
  assert.deepEqual(tcp.hash, { typeBit: BIT.IPV4_TCP, value: 0x51ccc178 });
  const udp: Packet = { frame: tcpFrame(17) };
  f.call(T.SET_HASH_MAPPING_SIZE, [4]);
  f.grant(40, new Uint8Array(new Uint32Array([1, 1, 0, 1]).buffer), true);
  f.call(T.SET_HASH_MAPPING, [40, 4, 0]);
  assert.equal(f.ctrl.steer(udp), [1, 1, 0, 1][0x323e8fc2 % 4]);
  assert.deepEqual(udp.hash, { typeBit: BIT.IPV4, value: toeplitz(KEY, new Uint8Array([66, 9, 149, 187, 161, 142, 100, 80])) });
  const arp: Packet = { frame: new Uint8Array([...new Array(12).fill(2), 8, 6, ...new Array(28).fill(0)]) };
  assert.equal(f.ctrl.steer(arp), 1, 'what no type fits hashes as 0: entry 0');
  assert.equal('hash' in arp, false);
  // Steered again under other settings, a packet carries the hash they give it, or none.
  f.call(T.SET_HASH_FLAGS, [F.IPV6]);
  assert.equal(f.ctrl.steer(tcp), [1, 1, 0, 1][0]);
  assert.equal('hash' in tcp, false);
  f.call(T.SET_HASH_FLAGS, [F.IPV4]);
  f.ctrl.steer(tcp);
  f.call(T.SET_HASH_ALGORITHM, [ALG.NONE]);
  assert.equal(f.ctrl.steer(tcp), undefined);
  assert.equal('hash' in tcp, false);
});

test('control ring: a request that changes the steering reports it before its response is published; reads and refusals do not', () => {
  const f = frontend(2);
  f.grant(30, KEY, true);
  f.call(T.GET_HASH_FLAGS);
  f.call(T.SET_HASH_FLAGS, [F.IPV4]);
  assert.deepEqual(f.changes, [], 'a read and a refusal change nothing');
  f.call(T.SET_HASH_ALGORITHM, [ALG.TOEPLITZ]);
  f.call(T.SET_HASH_KEY, [30, 40]);
  f.call(T.GET_HASH_MAPPING_SIZE);
  f.call(T.SET_HASH_MAPPING_SIZE, [MAX_HASH_MAPPING_SIZE + 1]);
  f.call(T.SET_HASH_MAPPING_SIZE, [2]);
  // The responses published when each change was reported: none of the request's own yet.
  assert.deepEqual(f.changes, [2, 3, 6]);
});

// memory_op through a dispatcher, with real guest memory and memory map (and
// a fake KVM behind it), and hypercall arguments in a fake guest window.
import { fstatSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../common/captured-logger.js';
import { RateLimitedLog } from '../common/log.js';
import { GuestMemory, PAGE_SIZE } from '../memory/guest-memory.js';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { FakeKvm } from '../memory/fake-kvm.js';
import { MemoryMap } from '../memory/memory-map.js';
import { HYPERCALL } from './abi/hypercalls.js';
import type { Abi } from './abi/layout.js';
import { E820_MAX, e820Entry, XENMAPSPACE, XENMEM } from './abi/memory.js';
import { sharedInfoLayout } from './abi/shared-info.js';
import { DOMID } from './abi/xen.js';
import { DomainState } from './domain-state.js';
import { HypercallDispatcher } from './hypercall.js';
import { checkSelf, latchSharedInfoAbi, MEMORY_OP_ROUTE, memoryOps, type MemoryOpDomain } from './memory.js';
import { Reservation } from './reservation.js';
import { GrantTable } from './gnttab/table.js';
import { serveRoutes } from './routes.js';
import { SHARED_INFO_PAGE, writeWallclock } from './shared-info.js';
import { XEN_ERRNO } from './abi/errno.js';
import { XenError } from './errors.js';
import { FakeGuest } from './fake-guest.js';

const MiB = 1024 * 1024;
const ARG = 0x40_0000n; // the fake guest window for arguments
const DOMID_OWN = 1;
/** A frame KVM keeps for itself, in these tests. */
const KVM_FRAME = 0xfee00;
/** Where the toolstack's XenStore ring would be: another overlay page. */
const STORE_FRAME = 0x1fe;
const STORE_PAGE = 1;
const BOOT_WALL = 1_700_000_123_456_789_012n;
const E820 = [
  { addr: 0n, size: 0x9_f000n, type: 1 },
  { addr: 0x9_f000n, size: 0x1000n, type: 2 },
  { addr: 0x10_0000n, size: 0x10_0000n, type: 1 },
];

function setup(t: { after(fn: () => void): void }, guestBytes = 0x4000) {
  const mem = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 4);
  t.after(() => mem.dispose());
  const kvm = new FakeKvm();
  const memoryMap = new MemoryMap(kvm, mem, 32, new Set([KVM_FRAME]));
  const state = DomainState.create(2);
  const sharedInfo = mem.overlayPage(SHARED_INFO_PAGE);
  writeWallclock(sharedInfo, 'native', BOOT_WALL);
  const { logger, errors, warns } = capturedLogger();
  const reservation = new Reservation(mem, memoryMap);
  const guestLog = new RateLimitedLog(logger);
  const gnttab = { domid: DOMID_OWN, memory: mem, grantTable: GrantTable.create(mem, 2, 1), guestLog, unmapOverlay: (page: number) => memoryMap.unmapOverlay(page) };
  const domain: MemoryOpDomain = { domid: DOMID_OWN, memoryMap, state, sharedInfo, bootWallNs: BOOT_WALL, e820: E820, reservation, guestLog, gnttab };
  const dispatcher = new HypercallDispatcher(logger);
  serveRoutes(dispatcher, 'main', [MEMORY_OP_ROUTE], [memoryOps(domain)]);
  const guest = new FakeGuest(ARG, guestBytes);
  const call = (abi: Abi, cmd: number | bigint, arg: bigint = ARG) =>
    dispatcher.dispatch({ vcpu: 0, abi, guest: guest as unknown as GuestVirtual }, 0, HYPERCALL.memory_op, [BigInt(cmd), arg, 0n, 0n, 0n]);
  /** Frames where overlay page 0 (shared_info) is mapped in KVM. */
  const sharedInfoSlots = () => [...kvm.live.values()].filter((s) => s.host === mem.overlays.hostAddress).map((s) => s.gpa / PAGE_SIZE);
  return { mem, kvm, memoryMap, state, sharedInfo, domain, reservation, guest, call, errors, warns, sharedInfoSlots };
}

/** xen_add_to_physmap written field by field from the header layout (not through the ABI module). */
function putAddToPhysmap(g: FakeGuest, abi: Abi, a: { domid: number; size?: number; space: number; idx: bigint; gpfn: bigint }, at = ARG) {
  const v = g.view(at);
  v.setUint16(0, a.domid, true);
  v.setUint16(2, a.size ?? 0, true);
  v.setUint32(4, a.space, true);
  if (abi === 'native') {
    v.setBigUint64(8, a.idx, true);
    v.setBigUint64(16, a.gpfn, true);
  } else {
    v.setUint32(8, Number(a.idx), true);
    v.setUint32(12, Number(a.gpfn), true);
  }
}

const u32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint32(o, true);

test('checkSelf: DOMID_SELF and the own id pass, anything else is ESRCH', () => {
  checkSelf(DOMID.SELF, 1);
  checkSelf(1, 1);
  for (const d of [0, 2, DOMID.IO, DOMID.XEN, 0xffff]) assert.throws(() => checkSelf(d, 1), (e: unknown) => e instanceof XenError && e.errno === 3);
});

test('add_to_physmap shared_info: mapped at the frame, moved, moved above RAM — exactly one mapping each time', (t) => {
  const { mem, memoryMap, call, guest, sharedInfo, sharedInfoSlots, errors } = setup(t);
  assert.equal(memoryMap.overlayFrame(0), undefined);
  assert.deepEqual(sharedInfoSlots(), []);
  sharedInfo[0] = 0x5a;
  for (const [domid, gpfn] of [[DOMID.SELF, 0x100n], [DOMID_OWN, 0x180n], [DOMID.SELF, 0x1_0000n]] as const) {
    putAddToPhysmap(guest, 'native', { domid, space: XENMAPSPACE.shared_info, idx: 0n, gpfn });
    assert.equal(call('native', XENMEM.add_to_physmap), 0n, `gpfn 0x${gpfn.toString(16)}`);
    assert.equal(memoryMap.overlayFrame(0), Number(gpfn));
    assert.deepEqual(sharedInfoSlots(), [Number(gpfn)], 'exactly one mapping');
    // Guest-physical accesses at the frame reach the shared_info page itself.
    assert.equal(mem.readU8(Number(gpfn) * PAGE_SIZE), 0x5a);
    mem.writeU8(Number(gpfn) * PAGE_SIZE + 1, 0x77);
    assert.equal(sharedInfo[1], 0x77);
  }
  // The frames it left are RAM again.
  assert.ok(mem.isRam(0x100 * PAGE_SIZE, PAGE_SIZE));
  assert.ok(mem.isRam(0x180 * PAGE_SIZE, PAGE_SIZE));
  // Mapping at the same frame again is harmless.
  assert.equal(call('native', XENMEM.add_to_physmap), 0n);
  assert.deepEqual(sharedInfoSlots(), [0x1_0000]);
  assert.equal(errors().length, 0);
});

test('add_to_physmap: shared_info at the frame of the XenStore ring takes it, as Xen frees the page there; no log', (t) => {
  const { mem, memoryMap, call, guest, sharedInfo, errors } = setup(t);
  memoryMap.mapOverlay(STORE_PAGE, STORE_FRAME);
  sharedInfo[0] = 0x5a;
  for (let i = 0; i < 3; i++) {
    putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: BigInt(STORE_FRAME) });
    assert.equal(call('native', XENMEM.add_to_physmap), 0n);
    assert.equal(memoryMap.overlayFrame(0), STORE_FRAME);
    assert.equal(memoryMap.overlayFrame(STORE_PAGE), undefined, 'the ring page left the guest view');
    assert.equal(mem.readU8(STORE_FRAME * PAGE_SIZE), 0x5a);
  }
  assert.deepEqual(errors(), []);
});

test('add_to_physmap: a frame KVM keeps for itself is -EPERM, and nothing moves', (t) => {
  const { kvm, memoryMap, call, guest, errors } = setup(t);
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x100n });
  assert.equal(call('native', XENMEM.add_to_physmap), 0n);
  const n = kvm.calls.length;
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: BigInt(KVM_FRAME) });
  assert.equal(call('native', XENMEM.add_to_physmap), -1n);
  assert.equal(kvm.calls.length, n, 'no slot touched');
  assert.equal(memoryMap.overlayFrame(0), 0x100);
  assert.deepEqual(errors(), []);
});

test('add_to_physmap: idx ≠ 0 is -EINVAL; nothing moves', (t) => {
  const { memoryMap, call, guest } = setup(t);
  for (const idx of [1n, 2n, 0x8000_0000n]) {
    putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx, gpfn: 0x100n });
    assert.equal(call('native', XENMEM.add_to_physmap), -22n);
  }
  assert.equal(memoryMap.overlayFrame(0), undefined);
});

test('add_to_physmap: a frame out of range is -EINVAL', (t) => {
  const { memoryMap, call, guest, errors } = setup(t);
  for (const gpfn of [1n << 28n, 1n << 40n, (1n << 53n) + 1n, 0xffff_ffff_ffff_ffffn]) {
    putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn });
    assert.equal(call('native', XENMEM.add_to_physmap), -22n, `gpfn 0x${gpfn.toString(16)}`);
  }
  assert.equal(memoryMap.overlayFrame(0), undefined);
  assert.equal(errors().length, 0, 'refused as a guest error, not as a failure inside xenkvm');
});

test('add_to_physmap: spaces not yet served are -ENOSYS, unknown spaces -EINVAL', (t) => {
  const { call, guest } = setup(t);
  for (const space of [XENMAPSPACE.gmfn, XENMAPSPACE.gmfn_range, XENMAPSPACE.gmfn_foreign, XENMAPSPACE.dev_mmio]) {
    putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space, idx: 0n, gpfn: 0x100n });
    assert.equal(call('native', XENMEM.add_to_physmap), -38n, `space ${space}`);
  }
  for (const space of [6, 7, 0xffff, 0xffff_ffff]) {
    putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space, idx: 0n, gpfn: 0x100n });
    assert.equal(call('native', XENMEM.add_to_physmap), -22n, `space ${space}`);
  }
});

test('add_to_physmap of grant-table frames: frame 0 placed and moved, the RAM under it freed; beyond max_grant_frames or a status frame under v1 -EINVAL', (t) => {
  const { memoryMap, call, guest, domain, reservation } = setup(t);
  const table = domain.gnttab.grantTable;
  const page = table.sharedPage(0);
  const before = reservation.totPages;
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.grant_table, idx: 0n, gpfn: 0x150n });
  assert.equal(call('native', XENMEM.add_to_physmap), 0n);
  assert.equal(memoryMap.overlayFrame(page), 0x150);
  assert.equal(reservation.totPages, before - 1, 'the RAM page at the frame is freed');
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.grant_table, idx: 0n, gpfn: 0x151n });
  assert.equal(call('native', XENMEM.add_to_physmap), 0n);
  assert.equal(memoryMap.overlayFrame(page), 0x151, 'moved, as every overlay has one place');
  assert.equal(domain.memoryMap.layout.filter((s) => s.gpa === 0x150 * PAGE_SIZE).length, 0);
  for (const idx of [1n, 0x8000_0000n, 0x1_0000_0000n + 1n]) {
    putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.grant_table, idx, gpfn: 0x152n });
    assert.equal(call('native', XENMEM.add_to_physmap), -22n, `idx 0x${idx.toString(16)}: past this table's one frame`);
  }
  // idx is taken as 32 bits, as Xen's frame helpers take it.
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.grant_table, idx: 0x1_0000_0000n, gpfn: 0x152n });
  assert.equal(call('native', XENMEM.add_to_physmap), 0n);
  assert.equal(memoryMap.overlayFrame(page), 0x152);
  assert.equal(table.frames, 1);
});

test('add_to_physmap: another domain is -ESRCH', (t) => {
  const { memoryMap, call, guest } = setup(t);
  for (const domid of [0, 2, DOMID.IO, DOMID.XEN]) {
    putAddToPhysmap(guest, 'native', { domid, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x100n });
    assert.equal(call('native', XENMEM.add_to_physmap), -3n);
  }
  assert.equal(memoryMap.overlayFrame(0), undefined);
});

test('add_to_physmap: a bad argument pointer is -EFAULT', (t) => {
  const { call } = setup(t);
  assert.equal(call('native', XENMEM.add_to_physmap, 0n), -14n);
  assert.equal(call('native', XENMEM.add_to_physmap, ARG + 0x4000n - 16n), -14n, 'native struct is 24 bytes');
});

test('add_to_physmap compat: 16-byte struct, idx at 8 and gpfn at 12 (4 bytes each)', (t) => {
  const { memoryMap, call, guest } = setup(t);
  // Fill what a native decode would read with garbage: a compat decode must not look there.
  guest.view(ARG).setBigUint64(16, 0xdead_beef_dead_beefn, true);
  putAddToPhysmap(guest, 'compat', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x1234n });
  assert.equal(call('compat', XENMEM.add_to_physmap), 0n);
  assert.equal(memoryMap.overlayFrame(0), 0x1234);
  // A compat struct that ends 16 bytes before the window's end still fits.
  putAddToPhysmap(guest, 'compat', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x155n }, ARG + 0x4000n - 16n);
  assert.equal(call('compat', XENMEM.add_to_physmap, ARG + 0x4000n - 16n), 0n);
  assert.equal(memoryMap.overlayFrame(0), 0x155);
  putAddToPhysmap(guest, 'compat', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 1n, gpfn: 0x100n });
  assert.equal(call('compat', XENMEM.add_to_physmap), -22n);
});

test('add_to_physmap: mapping from a 32-bit caller latches the compat shared_info layout and rewrites the wallclock there', (t) => {
  const { state, call, guest, sharedInfo } = setup(t);
  const n = sharedInfoLayout.native;
  const c = sharedInfoLayout.compat;
  assert.equal(state.sharedInfoAbi, 'native');
  assert.equal(u32(sharedInfo, c.wcVersion), 0);
  putAddToPhysmap(guest, 'compat', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x100n });
  assert.equal(call('compat', XENMEM.add_to_physmap), 0n);
  assert.equal(state.sharedInfoAbi, 'compat');
  assert.equal(u32(sharedInfo, c.wcVersion), 2);
  assert.equal(u32(sharedInfo, c.wcSec), 1_700_000_123);
  assert.equal(u32(sharedInfo, c.wcNsec), 456_789_012);
  assert.equal(u32(sharedInfo, c.wcSecHi), 0);
  // Latching the same layout again does not rewrite it.
  assert.equal(call('compat', XENMEM.add_to_physmap), 0n);
  assert.equal(u32(sharedInfo, c.wcVersion), 2);
  // Back to native from a 64-bit caller: rewritten at the native offsets.
  const before = u32(sharedInfo, n.wcVersion);
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x100n });
  assert.equal(call('native', XENMEM.add_to_physmap), 0n);
  assert.equal(state.sharedInfoAbi, 'native');
  assert.equal(u32(sharedInfo, n.wcVersion), before + 2);
  assert.equal(u32(sharedInfo, n.wcSec), 1_700_000_123);
});

test('add_to_physmap: a refused mapping latches nothing', (t) => {
  const { state, call, guest } = setup(t);
  putAddToPhysmap(guest, 'compat', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 1n, gpfn: 0x100n });
  assert.equal(call('compat', XENMEM.add_to_physmap), -22n);
  assert.equal(state.sharedInfoAbi, 'native');
});

test('latchSharedInfoAbi: no rewrite when the layout is unchanged', (t) => {
  const { domain, sharedInfo } = setup(t);
  const v = u32(sharedInfo, sharedInfoLayout.native.wcVersion);
  latchSharedInfoAbi(domain, 'native');
  assert.equal(u32(sharedInfo, sharedInfoLayout.native.wcVersion), v);
  latchSharedInfoAbi(domain, 'compat');
  assert.equal(u32(sharedInfo, sharedInfoLayout.compat.wcVersion), 2);
});

// ---- add_to_physmap_batch -------------------------------------------------

/** xen_add_to_physmap_batch and its three arrays, laid out from the header. */
function putBatch(g: FakeGuest, abi: Abi, b: { domid: number; space: number; foreign?: number; idxs: bigint[]; gpfns: bigint[] }) {
  const word = abi === 'native' ? 8 : 4;
  const IDXS = ARG + 0x1000n;
  const GPFNS = ARG + 0x1800n;
  const ERRS = ARG + 0x2000n;
  const v = g.view(ARG);
  v.setUint16(0, b.domid, true);
  v.setUint16(2, b.space, true);
  v.setUint16(4, b.idxs.length, true);
  v.setUint16(6, b.foreign ?? 0, true);
  const ptrs = [IDXS, GPFNS, ERRS];
  ptrs.forEach((p, i) => (word === 8 ? v.setBigUint64(8 + 8 * i, p, true) : v.setUint32(8 + 4 * i, Number(p), true)));
  b.idxs.forEach((x, i) => (word === 8 ? g.view(IDXS).setBigUint64(i * 8, x, true) : g.view(IDXS).setUint32(i * 4, Number(x), true)));
  b.gpfns.forEach((x, i) => (word === 8 ? g.view(GPFNS).setBigUint64(i * 8, x, true) : g.view(GPFNS).setUint32(i * 4, Number(x), true)));
  g.bytes.fill(0xee, Number(ERRS - ARG), Number(ERRS - ARG) + 64);
  return { errs: (n: number) => Array.from({ length: n }, (_, i) => g.view(ERRS).getInt32(i * 4, true)), errByte: (i: number) => g.bytes[Number(ERRS - ARG) + i] };
}

for (const abi of ['native', 'compat'] as Abi[]) {
  test(`add_to_physmap_batch (${abi}): each entry succeeds or fails on its own into errs[i]`, (t) => {
    const { memoryMap, call, guest, sharedInfoSlots, state } = setup(t);
    const b = putBatch(guest, abi, { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idxs: [0n, 1n, 0n, 5n], gpfns: [0x100n, 0x101n, 0x102n, 0x103n] });
    assert.equal(call(abi, XENMEM.add_to_physmap_batch), 0n);
    assert.deepEqual(b.errs(4), [0, -22, 0, -22]);
    assert.equal(b.errByte(16), 0xee, 'nothing past errs[size-1]');
    assert.equal(memoryMap.overlayFrame(0), 0x102, 'the last successful entry wins');
    assert.deepEqual(sharedInfoSlots(), [0x102]);
    assert.equal(state.sharedInfoAbi, abi);
  });

  test(`add_to_physmap_batch (${abi}): whole-call refusals`, (t) => {
    const { memoryMap, call, guest } = setup(t);
    const one = { idxs: [0n], gpfns: [0x100n] };
    putBatch(guest, abi, { domid: 2, space: XENMAPSPACE.shared_info, ...one });
    assert.equal(call(abi, XENMEM.add_to_physmap_batch), -3n, 'another domain');
    putBatch(guest, abi, { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, foreign: 3, ...one });
    assert.equal(call(abi, XENMEM.add_to_physmap_batch), -22n, 'res0 must be 0');
    putBatch(guest, abi, { domid: DOMID.SELF, space: XENMAPSPACE.gmfn, ...one });
    assert.equal(call(abi, XENMEM.add_to_physmap_batch), -38n, 'gmfn not yet served');
    putBatch(guest, abi, { domid: DOMID.SELF, space: 77, ...one });
    assert.equal(call(abi, XENMEM.add_to_physmap_batch), -22n, 'unknown space');
    assert.equal(memoryMap.overlayFrame(0), undefined);
    // An empty batch is fine and writes nothing.
    const e = putBatch(guest, abi, { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idxs: [], gpfns: [] });
    assert.equal(call(abi, XENMEM.add_to_physmap_batch), 0n);
    assert.equal(e.errByte(0), 0xee);
  });
}

test('add_to_physmap_batch: 65,535 entries moving shared_info back and forth change the memslots once, not per entry', (t) => {
  const SIZE = 65_535;
  const { kvm, memoryMap, call, guest, sharedInfoSlots } = setup(t, 0x20_0000);
  const IDXS = ARG + 0x1000n;
  const GPFNS = IDXS + BigInt(SIZE * 8);
  const ERRS = GPFNS + BigInt(SIZE * 8);
  const v = guest.view(ARG);
  v.setUint16(0, DOMID.SELF, true);
  v.setUint16(2, XENMAPSPACE.shared_info, true);
  v.setUint16(4, SIZE, true);
  [IDXS, GPFNS, ERRS].forEach((p, i) => v.setBigUint64(8 + 8 * i, p, true));
  for (let i = 0; i < SIZE; i++) guest.view(GPFNS).setBigUint64(i * 8, i % 2 ? 0x101n : 0x100n, true);
  const before = kvm.calls.length;
  assert.equal(call('native', XENMEM.add_to_physmap_batch), 0n);
  assert.ok(kvm.calls.length - before <= 4, `${kvm.calls.length - before} memslot changes`);
  assert.equal(memoryMap.overlayFrame(0), 0x100, 'the last entry (even) wins');
  assert.deepEqual(sharedInfoSlots(), [0x100]);
  assert.ok(Array.from({ length: SIZE }, (_, i) => guest.view(ERRS).getInt32(i * 4, true)).every((e) => e === 0));
});

test('add_to_physmap_batch: gmfn_range is refused (add_to_physmap only, memory.h)', (t) => {
  const { call, guest } = setup(t);
  putBatch(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.gmfn_range, idxs: [0n], gpfns: [0x100n] });
  assert.equal(call('native', XENMEM.add_to_physmap_batch), BigInt(-XEN_ERRNO.EOPNOTSUPP));
});

test('add_to_physmap_batch: arrays outside guest memory are -EFAULT', (t) => {
  const { call, guest } = setup(t);
  putBatch(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idxs: [0n], gpfns: [0x100n] });
  guest.view(ARG).setBigUint64(8, 0xdead_0000n, true); // idxs
  assert.equal(call('native', XENMEM.add_to_physmap_batch), -14n);
});

// ---- memory_map -----------------------------------------------------------

function putMemoryMap(g: FakeGuest, abi: Abi, nr: number, buffer: bigint) {
  const v = g.view(ARG);
  v.setUint32(0, nr, true);
  if (abi === 'native') v.setBigUint64(8, buffer, true);
  else v.setUint32(4, Number(buffer), true);
}

for (const abi of ['native', 'compat'] as Abi[]) {
  test(`memory_map (${abi}): copies min(nr_entries, e820 length) packed 20-byte entries and writes the count back`, (t) => {
    const { call, guest } = setup(t);
    const BUF = ARG + 0x1000n;
    const entries = (n: number) =>
      Array.from({ length: n }, (_, i) => {
        const v = guest.view(BUF + BigInt(i * 20));
        return { addr: v.getBigUint64(0, true), size: v.getBigUint64(8, true), type: v.getUint32(16, true) };
      });
    for (const nr of [0, 1, 2, 3, 4, 128]) {
      guest.bytes.fill(0xcc, 0x1000, 0x2000);
      putMemoryMap(guest, abi, nr, BUF);
      assert.equal(call(abi, XENMEM.memory_map), 0n);
      const n = Math.min(nr, E820.length);
      assert.equal(guest.view(ARG).getUint32(0, true), n, `nr_entries for ${nr}`);
      assert.deepEqual(entries(n), E820.slice(0, n));
      assert.equal(guest.bytes[0x1000 + n * 20], 0xcc, 'nothing past the copied entries');
    }
  });
}

test('memory_map: a bad buffer is -EFAULT', (t) => {
  const { call, guest } = setup(t);
  putMemoryMap(guest, 'native', 3, 0xdead_0000n);
  assert.equal(call('native', XENMEM.memory_map), -14n);
});

/** xen_foreign_memory_map: domid, then the xen_memory_map at its alignment. */
function putForeignMemoryMap(g: FakeGuest, abi: Abi, domid: number, nr: number, buffer: bigint) {
  const v = g.view(ARG);
  v.setUint16(0, domid, true);
  const map = abi === 'native' ? 8 : 4;
  v.setUint32(map, nr, true);
  if (abi === 'native') v.setBigUint64(map + 8, buffer, true);
  else v.setUint32(map + 4, Number(buffer), true);
}

for (const abi of ['native', 'compat'] as Abi[]) {
  test(`set_memory_map (${abi}): a domain sets its own map, which memory_map returns from then on; an empty one makes memory_map -ENOSYS`, (t) => {
    const { call, guest } = setup(t, 0x8000);
    const BUF = ARG + 0x1000n;
    const mine = [
      { addr: 0n, size: 0xa_0000n, type: 1 },
      { addr: 0xffff_ffff_ffff_f000n, size: 0x1000n, type: 2 },
    ];
    mine.forEach((e, i) => guest.bytes.set(e820Entry.native.encode(e), 0x1000 + i * 20));
    putForeignMemoryMap(guest, abi, DOMID.SELF, mine.length, BUF);
    assert.equal(call(abi, XENMEM.set_memory_map), 0n);
    guest.bytes.fill(0, 0x1000, 0x2000);
    putMemoryMap(guest, abi, 8, BUF);
    assert.equal(call(abi, XENMEM.memory_map), 0n);
    assert.equal(guest.view(ARG).getUint32(0, true), 2);
    assert.deepEqual([0, 1].map((i) => e820Entry.native.decode(guest.bytes.subarray(0x1000 + i * 20, 0x1000 + (i + 1) * 20))), mine);
    putForeignMemoryMap(guest, abi, DOMID_OWN, 0, BUF);
    assert.equal(call(abi, XENMEM.set_memory_map), 0n);
    putMemoryMap(guest, abi, 8, BUF);
    assert.equal(call(abi, XENMEM.memory_map), -38n);
  });
}

test('set_memory_map: more than E820MAX entries is -EINVAL, another domain -ESRCH, a bad buffer -EFAULT; the map is kept', (t) => {
  const { call, guest } = setup(t);
  const BUF = ARG + 0x1000n;
  putForeignMemoryMap(guest, 'native', DOMID.SELF, E820_MAX + 1, BUF);
  assert.equal(call('native', XENMEM.set_memory_map), BigInt(-XEN_ERRNO.EINVAL));
  putForeignMemoryMap(guest, 'native', DOMID_OWN + 1, 1, BUF);
  assert.equal(call('native', XENMEM.set_memory_map), BigInt(-XEN_ERRNO.ESRCH));
  putForeignMemoryMap(guest, 'native', DOMID.SELF, 1, 0xdead_0000n);
  assert.equal(call('native', XENMEM.set_memory_map), -14n);
  assert.equal(call('native', XENMEM.set_memory_map, 0xdead_0000n), -14n);
  putMemoryMap(guest, 'native', 8, BUF);
  assert.equal(call('native', XENMEM.memory_map), 0n);
  assert.equal(guest.view(ARG).getUint32(0, true), E820.length);
});

// ---- reservations and the rest ---------------------------------------------

const LIST = ARG + 0x1000n;

/** xen_memory_reservation written field by field from the header layout, and its extent list at LIST. */
function putReservation(g: FakeGuest, abi: Abi, r: { gfns: readonly number[]; nr?: number; order?: number; flags?: number; domid?: number; list?: bigint }) {
  const v = g.view(ARG);
  const list = r.list ?? LIST;
  const nr = r.nr ?? r.gfns.length;
  if (abi === 'native') {
    v.setBigUint64(0, list, true);
    v.setBigUint64(8, BigInt(nr), true);
    v.setUint32(16, r.order ?? 0, true);
    v.setUint32(20, r.flags ?? 0, true);
    v.setUint16(24, r.domid ?? DOMID.SELF, true);
  } else {
    v.setUint32(0, Number(list), true);
    v.setUint32(4, nr, true);
    v.setUint32(8, r.order ?? 0, true);
    v.setUint32(12, r.flags ?? 0, true);
    v.setUint16(16, r.domid ?? DOMID.SELF, true);
  }
  const l = g.view(LIST);
  r.gfns.forEach((gfn, i) => (abi === 'native' ? l.setBigUint64(i * 8, BigInt(gfn), true) : l.setUint32(i * 4, gfn, true)));
}

/** Host memory the RAM memfd holds, in 512-byte blocks. */
const ramBlocks = (mem: GuestMemory) => fstatSync(mem.ram.handle.fd).blocks;
const tot = (s: ReturnType<typeof setup>, abi: Abi = 'native') => {
  s.guest.view(ARG + 0x800n).setUint16(0, DOMID.SELF, true);
  return s.call(abi, XENMEM.current_reservation, ARG + 0x800n);
};
const frameBytes = (mem: GuestMemory, gfn: number) => mem.read(gfn * PAGE_SIZE, PAGE_SIZE);

test('decrease_reservation gives frames back to the host; populate_physmap puts zeroed ones there again', (t) => {
  const s = setup(t, 0x2000);
  for (const abi of ['native', 'compat'] as Abi[]) {
    const gfns = [0x10, 0x11, 0x12, 0x13, 0x30, 0x31, 0x32, 0x33];
    for (const g of gfns) s.mem.fill(g * PAGE_SIZE, PAGE_SIZE, 0xaa);
    const before = ramBlocks(s.mem);
    putReservation(s.guest, abi, { gfns });
    assert.equal(s.call(abi, XENMEM.decrease_reservation), 8n, abi);
    assert.equal(tot(s, abi), 504n);
    assert.ok(ramBlocks(s.mem) <= before - (8 * PAGE_SIZE) / 512, `host memory freed: ${before} → ${ramBlocks(s.mem)} blocks`);
    assert.equal(s.call(abi, XENMEM.decrease_reservation), 0n, 'nothing left at those frames: the first extent fails');
    s.mem.fill(0x12 * PAGE_SIZE, PAGE_SIZE, 0x55); // the guest touches a frame it gave back
    assert.equal(s.call(abi, XENMEM.populate_physmap), 8n);
    assert.equal(tot(s, abi), 512n);
    for (const g of gfns) assert.deepEqual(frameBytes(s.mem, g), new Uint8Array(PAGE_SIZE), `frame 0x${g.toString(16)} scrubbed`);
    assert.equal(s.call(abi, XENMEM.populate_physmap), 0n, 'at max_pages: no page to populate with');
    assert.ok(frameBytes(s.mem, 0x11).every((b) => b === 0));
  }
  assert.deepEqual(s.errors(), []);
});

test('reservation ops stop where Xen stops: order, partial extents, the continuation start, domid, flags, bad pointers', (t) => {
  const s = setup(t, 0x2000);
  const op = (cmd: number, start = 0) => s.call('native', (BigInt(start) << 6n) | BigInt(cmd));
  putReservation(s.guest, 'native', { gfns: [0x40], order: 10 });
  assert.equal(op(XENMEM.decrease_reservation), 0n, 'order 10 is past a domU\'s 9');
  putReservation(s.guest, 'native', { gfns: [0x40, 0x42], order: 1 });
  assert.equal(op(XENMEM.decrease_reservation), 2n);
  assert.equal(tot(s), 508n, '2 extents of 2 pages');
  putReservation(s.guest, 'native', { gfns: [0x50, 0x50, 0x51] });
  assert.equal(op(XENMEM.decrease_reservation), 1n, 'the second entry finds nothing and ends the call');
  assert.equal(tot(s), 507n);
  putReservation(s.guest, 'native', { gfns: [0x60, 0x61, 0x62] });
  assert.equal(op(XENMEM.decrease_reservation, 1), 3n, 'a continuation starts at its extent');
  assert.equal(tot(s), 505n, '0x61 and 0x62 only');
  assert.equal(op(XENMEM.decrease_reservation, 5), 5n, 'a start past nr_extents is given back');
  putReservation(s.guest, 'native', { gfns: [0x70], domid: 0 });
  assert.equal(op(XENMEM.decrease_reservation), 0n, 'another domain: nothing done');
  putReservation(s.guest, 'native', { gfns: [0x70], flags: 12 });
  assert.equal(op(XENMEM.decrease_reservation), 0n, 'address bits ≤ 12');
  putReservation(s.guest, 'native', { gfns: [0x70], flags: 32 });
  assert.equal(op(XENMEM.decrease_reservation), 1n, 'address bits 32 are fine');
  putReservation(s.guest, 'native', { gfns: [0x70], nr: 2 ** 26 });
  assert.equal(op(XENMEM.decrease_reservation), 0n, 'too many extents to continue');
  putReservation(s.guest, 'native', { gfns: [0x70], flags: 1 << 16 });
  assert.equal(op(XENMEM.populate_physmap), 0n, 'populate-on-demand on itself');
  putReservation(s.guest, 'native', { gfns: [], nr: 3, list: ARG + 0x2000n - 8n });
  s.guest.view(ARG + 0x2000n - 8n).setBigUint64(0, 0x71n, true);
  assert.equal(op(XENMEM.decrease_reservation), 1n, 'the list runs off mapped memory after one entry');
  assert.equal(op(XENMEM.decrease_reservation, 7), 7n);
  assert.equal(s.call('native', XENMEM.decrease_reservation, 0n), 0n, 'an unreadable struct: the start');
  assert.equal(s.call('native', (9n << 6n) | BigInt(XENMEM.populate_physmap), 0n), 9n);
  assert.equal(tot(s), 503n);
  assert.deepEqual(s.errors(), []);
});

test('increase_reservation holds pages at no frame up to max_pages; populate outside RAM stops with one warning', (t) => {
  const s = setup(t, 0x2000);
  putReservation(s.guest, 'native', { gfns: [0x80, 0x81, 0x82, 0x83] });
  assert.equal(s.call('native', XENMEM.decrease_reservation), 4n);
  putReservation(s.guest, 'native', { gfns: [], nr: 3, order: 1, list: 0n });
  assert.equal(s.call('native', XENMEM.increase_reservation), 2n, 'room for 2 extents of 2 pages; the list (NULL) is not read');
  assert.equal(tot(s), 512n);
  putReservation(s.guest, 'native', { gfns: [0x80] });
  assert.equal(s.call('native', XENMEM.populate_physmap), 0n, 'the pages are held: none left to populate with');
  // Frames outside RAM: xenkvm has no page for them.
  putReservation(s.guest, 'native', { gfns: [0x90] });
  assert.equal(s.call('native', XENMEM.decrease_reservation), 1n);
  putReservation(s.guest, 'native', { gfns: [0x1ff, 0x1fe], order: 0 });
  assert.equal(s.call('native', XENMEM.populate_physmap), 1n, '0x1ff again (its old page stays counted), then max_pages is reached');
  assert.equal(s.call('native', XENMEM.populate_physmap), 0n);
  assert.equal(s.warns().length, 0, 'only a frame outside RAM is worth a line');
  putReservation(s.guest, 'native', { gfns: [0x91] });
  assert.equal(s.call('native', XENMEM.decrease_reservation), 1n);
  putReservation(s.guest, 'native', { gfns: [0x1ff], order: 1 });
  assert.equal(s.call('native', XENMEM.populate_physmap), 0n, 'an extent running past RAM');
  assert.equal(s.warns().length, 1);
  assert.match(s.warns()[0].msg, /outside the RAM/);
});

test('shared_info mapped over RAM frees that page; decrease_reservation there takes shared_info out; maximum_gpfn and maximum_ram_page', (t) => {
  const s = setup(t, 0x2000);
  const q = (cmd: number, start = 0n) => {
    s.guest.view(ARG + 0x800n).setUint16(0, DOMID.SELF, true);
    return s.call('native', (start << 6n) | BigInt(cmd), ARG + 0x800n);
  };
  assert.equal(q(XENMEM.maximum_ram_page), 512n);
  assert.equal(q(XENMEM.maximum_gpfn), 511n);
  assert.equal(q(XENMEM.maximum_ram_page, 1n), -22n);
  assert.equal(q(XENMEM.maximum_gpfn, 1n), -22n);
  assert.equal(q(XENMEM.current_reservation, 2n), -22n);
  putAddToPhysmap(s.guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0xa0n });
  assert.equal(s.call('native', XENMEM.add_to_physmap), 0n);
  assert.equal(tot(s), 511n, 'the RAM page under shared_info is freed, as Xen frees it');
  putAddToPhysmap(s.guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x8000n });
  assert.equal(s.call('native', XENMEM.add_to_physmap), 0n);
  assert.equal(q(XENMEM.maximum_gpfn), 0x8000n, 'the highest frame ever mapped');
  assert.equal(tot(s), 511n, 'nothing to free above RAM; 0xa0 stays a hole');
  putReservation(s.guest, 'native', { gfns: [0xa0] });
  assert.equal(s.call('native', XENMEM.decrease_reservation), 0n, 'nothing at 0xa0 since shared_info left it');
  putReservation(s.guest, 'native', { gfns: [0x8000] });
  assert.equal(s.call('native', XENMEM.decrease_reservation), 1n, 'shared_info itself leaves the map');
  assert.equal(s.memoryMap.overlayFrame(SHARED_INFO_PAGE), undefined);
  assert.deepEqual(s.sharedInfoSlots(), []);
  assert.equal(tot(s), 511n, 'shared_info is not one of the domain\'s pages');
  assert.equal(q(XENMEM.maximum_gpfn), 0x8000n, 'max_mapped_pfn never goes down');
  putReservation(s.guest, 'native', { gfns: [0xa0] });
  assert.equal(s.call('native', XENMEM.populate_physmap), 1n);
  assert.equal(tot(s), 512n);
});

test('current and maximum reservation: the RAM pages, for DOMID_SELF or the own id only', (t) => {
  const { call, guest } = setup(t);
  for (const abi of ['native', 'compat'] as Abi[]) {
    for (const cmd of [XENMEM.current_reservation, XENMEM.maximum_reservation]) {
      guest.view(ARG).setUint16(0, DOMID.SELF, true);
      assert.equal(call(abi, cmd), 512n);
      guest.view(ARG).setUint16(0, DOMID_OWN, true);
      assert.equal(call(abi, cmd), 512n);
      guest.view(ARG).setUint16(0, 0, true);
      assert.equal(call(abi, cmd), -3n);
      assert.equal(call(abi, cmd, 0n), -14n);
    }
  }
});

test('other sub-ops are -ENOSYS; only the low 6 bits of cmd name the sub-op', (t) => {
  const { call, guest, memoryMap } = setup(t);
  for (const cmd of [XENMEM.remove_from_physmap, XENMEM.exchange,
    XENMEM.acquire_resource, XENMEM.machine_memory_map, 63]) {
    assert.equal(call('native', cmd), -38n, `cmd ${cmd}`);
  }
  putAddToPhysmap(guest, 'native', { domid: DOMID.SELF, space: XENMAPSPACE.shared_info, idx: 0n, gpfn: 0x100n });
  assert.equal(call('native', (1n << 6n) | BigInt(XENMEM.add_to_physmap)), 0n);
  assert.equal(memoryMap.overlayFrame(0), 0x100);
});

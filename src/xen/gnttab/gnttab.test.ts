// The grant table against a fake guest: Xen 4.17's answers to an HVM domU's
// GNTTABOP calls in both ABIs, the pins and in-use flags Xen keeps, and the
// backends' mapping API.
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import assert from 'node:assert/strict';
import { capturedLogger } from '../../common/captured-logger.js';
import { RateLimitedLog } from '../../common/log.js';
import { GuestMemory, PAGE_SIZE } from '../../memory/guest-memory.js';
import type { GuestVirtual } from '../../memory/guest-virtual.js';
import { MemoryMap } from '../../memory/memory-map.js';
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GTF } from '../abi/grant-table.js';
import { HYPERCALL } from '../abi/hypercalls.js';
import type { Abi } from '../abi/layout.js';
import { DOMID } from '../abi/xen.js';
import { FakeGuest } from '../fake-guest.js';
import { HypercallDispatcher } from '../hypercall.js';
import { serveRoutes } from '../routes.js';
import { GrantMapError, GrantMapper, StaleGrantError } from './mapper.js';
import { GRANT_TABLE_OP_ROUTE, grantFramePage, grantTableOps, grantTableVcpuOps, seedReservedEntries } from './ops.js';
import { grantTablePages, GrantTable } from './table.js';

const MiB = 1 << 20;
const OWN = 1;
const FIRST_PAGE = 3;
const MAX_FRAMES = 4;
const ARG = 0x7000_0000n;
const FRAME_LIST = ARG + 0x800n;
const CONSOLE_GFN = 0xfefff;
const STORE_GFN = 0xfeffc;

function setup(t: { after(fn: () => void): void }) {
  const memory = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], FIRST_PAGE + grantTablePages(MAX_FRAMES));
  t.after(() => memory.dispose());
  const memoryMap = new MemoryMap({ setUserMemoryRegion: () => {} }, memory, 64);
  const table = GrantTable.create(memory, FIRST_PAGE, MAX_FRAMES);
  seedReservedEntries(memory, table, [{ ref: 0, gfn: CONSOLE_GFN }, { ref: 1, gfn: STORE_GFN }]);
  const { logger, warns } = capturedLogger();
  const d = { domid: OWN, memory, grantTable: table, guestLog: new RateLimitedLog(logger), unmapOverlay: (page: number) => memoryMap.unmapOverlay(page) };
  // As the VMM is built: the vCPU thread serves copy and forwards the rest to the main thread.
  const main = new HypercallDispatcher(logger);
  serveRoutes(main, 'main', [GRANT_TABLE_OP_ROUTE], [grantTableOps(d)]);
  const dispatcher = new HypercallDispatcher(logger);
  serveRoutes(dispatcher, 'vcpu', [GRANT_TABLE_OP_ROUTE], [grantTableVcpuOps(d)], (ctx, nr, args) => main.dispatch(ctx, 0, nr, args));
  const guest = new FakeGuest(ARG, 0x1000);
  const call = (abi: Abi, op: number | bigint, count: number | bigint = 1, arg = ARG) =>
    dispatcher.dispatch({ vcpu: 0, abi, guest: guest as unknown as GuestVirtual }, 0, HYPERCALL.grant_table_op, [BigInt(op), arg, BigInt(count), 0n, 0n]);
  const entryV1 = (ref: number) => new DataView(memory.overlayPage(table.sharedPage(0)).buffer, memory.overlayPage(table.sharedPage(0)).byteOffset + ref * 8, 8);
  /** Writes a v1 entry the way a guest grants. */
  const grantV1 = (ref: number, flags: number, domid: number, frame: number) => {
    const e = entryV1(ref);
    e.setUint16(0, flags, true);
    e.setUint16(2, domid, true);
    e.setUint32(4, frame, true);
  };
  const flagsV1 = (ref: number) => entryV1(ref).getUint16(0, true);
  return { memory, memoryMap, table, d, guest, call, grantV1, flagsV1, entryV1, warns };
}

test('the toolstack\'s reserved entries: console and XenStore rings granted to domain 0 in v1, the other six empty', (t) => {
  const { entryV1 } = setup(t);
  const read = (ref: number) => [entryV1(ref).getUint16(0, true), entryV1(ref).getUint16(2, true), entryV1(ref).getUint32(4, true)];
  assert.deepEqual(read(0), [GTF.permit_access, 0, CONSOLE_GFN]);
  assert.deepEqual(read(1), [GTF.permit_access, 0, STORE_GFN]);
  for (let ref = 2; ref < 8; ref++) assert.deepEqual(read(ref), [0, 0, 0]);
});

for (const abi of ['native', 'compat'] as const) {
  test(`query_size and setup_table (${abi}): frames unmapped read as all ones, mapped as their frame; growing within max_grant_frames`, (t) => {
    const { call, guest, memoryMap, table } = setup(t);
    const v = guest.view();
    const word = abi === 'native' ? 8 : 4;
    // query_size: dom, nr_frames, max_nr_frames, status.
    for (const dom of [DOMID.SELF, OWN]) {
      v.setUint16(0, dom, true);
      assert.equal(call(abi, GNTTABOP.query_size), 0n);
      assert.deepEqual([v.getUint32(4, true), v.getUint32(8, true), v.getInt16(12, true)], [1, MAX_FRAMES, GNTST.okay]);
    }
    for (const [dom, status] of [[0, GNTST.permission_denied], [5, GNTST.bad_domain]]) {
      v.setUint16(0, dom, true);
      assert.equal(call(abi, GNTTABOP.query_size), 0n);
      assert.equal(v.getInt16(12, true), status, `dom ${dom}`);
    }
    assert.equal(call(abi, GNTTABOP.query_size, 2), -22n);
    assert.equal(call(abi, GNTTABOP.query_size, 0xffff_ffffn), -22n, 'a count negative as an int');

    const setupTable = (dom: number, frames: number) => {
      v.setUint16(0, dom, true);
      v.setUint32(4, frames, true);
      v.setInt16(8, 0x55, true);
      if (abi === 'native') v.setBigUint64(16, FRAME_LIST, true);
      else v.setUint32(12, Number(FRAME_LIST), true);
      return call(abi, GNTTABOP.setup_table);
    };
    const list = (n: number) => Array.from({ length: n }, (_, i) => (word === 8 ? guest.view(FRAME_LIST).getBigUint64(i * 8, true) : BigInt(guest.view(FRAME_LIST).getUint32(i * 4, true))));
    const status = () => v.getInt16(8, true);
    assert.equal(setupTable(DOMID.SELF, 1), 0n);
    assert.equal(status(), GNTST.okay);
    assert.deepEqual(list(1), [abi === 'native' ? 0xffff_ffff_ffff_ffffn : 0xffff_ffffn]);
    memoryMap.mapOverlay(table.sharedPage(0), 0x300);
    assert.equal(setupTable(OWN, 2), 0n);
    assert.equal(status(), GNTST.okay);
    assert.deepEqual(list(2), [0x300n, abi === 'native' ? 0xffff_ffff_ffff_ffffn : 0xffff_ffffn]);
    assert.equal(table.frames, 2, 'grown to the frames asked for');
    assert.equal(setupTable(DOMID.SELF, MAX_FRAMES + 1), 0n);
    assert.equal(status(), GNTST.general_error);
    assert.equal(table.frames, 2);
    assert.equal(setupTable(0, 1), 0n);
    assert.equal(status(), GNTST.permission_denied);
    assert.equal(setupTable(9, 1), 0n);
    assert.equal(status(), GNTST.bad_domain);
    // A frame list the guest cannot write: the status says so, the call still succeeds.
    v.setUint16(0, DOMID.SELF, true);
    v.setUint32(4, 1, true);
    if (abi === 'native') v.setBigUint64(16, 0x10n, true);
    else v.setUint32(12, 0x10, true);
    assert.equal(call(abi, GNTTABOP.setup_table), 0n);
    assert.equal(status(), GNTST.bad_virt_addr);
    assert.equal(call(abi, GNTTABOP.setup_table, 0), abi === 'native' ? -22n : 0n, 'a count of 0: refused natively, nothing to do in compat');
    assert.equal(call(abi, GNTTABOP.setup_table, 1, 0x10n), -14n, 'an unreadable argument');
  });
}

test('the ops Xen filters out for HVM guests are -ENOSYS, as are high command bits; none is reported as missing', (t) => {
  const { call, warns } = setup(t);
  for (const op of [GNTTABOP.transfer, GNTTABOP.unmap_and_replace, GNTTABOP.get_status_frames, GNTTABOP.cache_flush, GNTTABOP.dump_table, 13, 0x1000 | GNTTABOP.query_size]) {
    assert.equal(call('native', op), -38n, `op 0x${op.toString(16)}`);
  }
  assert.deepEqual(warns(), []);
});

test('get_version and set_version: v1 at first; 0 is no query; to v2 and back with the reserved entries carried over and the rest wiped; busy while an entry past them is pinned', (t) => {
  const { call, guest, table, memory, grantV1, flagsV1, entryV1, memoryMap, d } = setup(t);
  const v = guest.view();
  const getVersion = (dom: number) => {
    v.setUint16(0, dom, true);
    v.setUint32(4, 0xeeee, true);
    const rc = call('native', GNTTABOP.get_version);
    return [rc, v.getUint32(4, true)];
  };
  assert.deepEqual(getVersion(DOMID.SELF), [0n, 1]);
  assert.deepEqual(getVersion(OWN), [0n, 1]);
  assert.deepEqual(getVersion(0), [-1n, 0xeeee]);
  assert.deepEqual(getVersion(7), [-3n, 0xeeee]);
  const setVersion = (version: number) => {
    v.setUint32(0, version, true);
    return [call('native', GNTTABOP.set_version), v.getUint32(0, true)];
  };
  assert.deepEqual(setVersion(0), [-22n, 1], 'refused, and the version in force written back');
  assert.deepEqual(setVersion(3), [-22n, 1]);
  assert.deepEqual(setVersion(1), [0n, 1]);
  grantV1(9, GTF.permit_access, 0, 0x10);
  const mapper = new GrantMapper(table, memory);
  const mapping = mapper.map([9], false);
  assert.deepEqual(setVersion(2), [-16n, 1], 'an entry past the reserved ones is mapped');
  mapping.unmap();
  assert.deepEqual(setVersion(2), [0n, 2]);
  assert.equal(table.version, 2);
  assert.equal(table.entries, 256);
  const shared = new DataView(memory.overlayPage(table.sharedPage(0)).buffer, memory.overlayPage(table.sharedPage(0)).byteOffset);
  assert.deepEqual([shared.getUint16(0, true), shared.getUint16(2, true), shared.getBigUint64(8, true)], [GTF.permit_access, 0, BigInt(CONSOLE_GFN)]);
  assert.deepEqual([shared.getUint16(16, true), shared.getBigUint64(24, true)], [GTF.permit_access, BigInt(STORE_GFN)]);
  assert.equal(shared.getUint16(9 * 16, true), 0, 'entries past the reserved ones are wiped');
  // The status frame maps only in v2; mapping one past the table grows it.
  assert.equal(grantFramePage(d, 0x8000_0000n), table.statusPage(0));
  memoryMap.mapOverlay(table.statusPage(0), 0x400);
  assert.throws(() => grantFramePage(d, 0x8000_0001n), /errno 22/, 'a second status frame needs 16 shared frames, past max_grant_frames 4');
  // Back to v1: the status frame leaves the guest's map; the reserved entries return in v1 form.
  assert.deepEqual(setVersion(1), [0n, 1]);
  assert.equal(memoryMap.overlayFrame(table.statusPage(0)), undefined);
  assert.deepEqual([flagsV1(0), entryV1(0).getUint32(4, true), entryV1(1).getUint32(4, true)], [GTF.permit_access, CONSOLE_GFN, STORE_GFN]);
  assert.throws(() => grantFramePage(d, 0x8000_0000n), /errno 22/, 'no status frames in v1');
});

test('v2 to v1 is refused (-ERANGE) while a reserved entry holds a frame v1 cannot', (t) => {
  const { call, guest, table, memory } = setup(t);
  const v = guest.view();
  v.setUint32(0, 2, true);
  assert.equal(call('native', GNTTABOP.set_version), 0n);
  const shared = new DataView(memory.overlayPage(table.sharedPage(0)).buffer, memory.overlayPage(table.sharedPage(0)).byteOffset);
  shared.setBigUint64(2 * 16 + 8, 1n << 33n, true);
  shared.setUint16(2 * 16, GTF.permit_access, true);
  v.setUint32(0, 1, true);
  assert.equal(call('native', GNTTABOP.set_version), -34n);
  assert.equal(v.getUint32(0, true), 2);
});

test('pins: the first sets GTF_reading (and GTF_writing), the last clears them; a read-only grant, another grantee or a sub-page grant is refused for a map', (t) => {
  const { table, grantV1, flagsV1, memory } = setup(t);
  const ram = (gfn: number) => memory.heldRamPage(gfn) !== undefined;
  grantV1(10, GTF.permit_access, 0, 0x20);
  table.locked(() => {
    assert.deepEqual(table.pin(10, 0, false, 'map', ram), { gfn: 0x20, offset: 0, length: PAGE_SIZE });
    assert.equal(flagsV1(10), GTF.permit_access | GTF.reading);
    table.pin(10, 0, true, 'map', ram);
    assert.equal(flagsV1(10), GTF.permit_access | GTF.reading | GTF.writing);
    table.unpin(10, true);
    assert.equal(flagsV1(10), GTF.permit_access | GTF.reading, 'no writer left');
    table.unpin(10, false);
    assert.equal(flagsV1(10), GTF.permit_access);
    table.pin(10, 0, false, 'map', ram);
    assert.equal(table.pin(10, OWN, false, 'copy', ram), GNTST.general_error, 'pinned by domain 0: no other domain may pin it meanwhile');
    table.unpin(10, false);
    assert.equal(table.pin(10, 5, false, 'map', ram), GNTST.general_error, 'granted to another domain');
    grantV1(11, GTF.permit_access | GTF.readonly, 0, 0x21);
    assert.equal(table.pin(11, 0, true, 'map', ram), GNTST.general_error, 'read-only');
    assert.equal(flagsV1(11), GTF.permit_access | GTF.readonly, 'nothing set');
    grantV1(12, GTF.accept_transfer, 0, 0x22);
    assert.equal(table.pin(12, 0, false, 'map', ram), GNTST.general_error);
    grantV1(13, GTF.permit_access, 0, 0x10_0000);
    assert.equal(table.pin(13, 0, false, 'map', ram), GNTST.bad_page, 'not the guest\'s RAM');
    assert.equal(flagsV1(13), GTF.permit_access, 'the flag set for the check is cleared again');
    assert.equal(table.pin(512, 0, false, 'map', ram), GNTST.bad_gntref);
    assert.equal(table.pin(-1, 0, false, 'map', ram), GNTST.bad_gntref);
  });
});

test('the backends\' mapping API: all refs or none, views of the guest\'s own pages, a balloon-returned frame refused, nothing usable after unmap', (t) => {
  const { table, grantV1, flagsV1, memory } = setup(t);
  const mapper = new GrantMapper(table, memory);
  grantV1(20, GTF.permit_access, 0, 0x30);
  grantV1(21, GTF.permit_access, 0, 0x31);
  grantV1(22, GTF.permit_access | GTF.readonly, 0, 0x32);
  memory.write(0x31 * PAGE_SIZE + 5, Uint8Array.of(0xab));
  const m = mapper.map([20, 21], true);
  assert.equal(m.page(1)[5], 0xab, 'the guest\'s page itself');
  m.page(0)[7] = 0xcd;
  assert.equal(memory.readU8(0x30 * PAGE_SIZE + 7), 0xcd);
  assert.equal(flagsV1(20), GTF.permit_access | GTF.reading | GTF.writing);
  assert.throws(() => mapper.map([20, 22], true), (e: unknown) => e instanceof GrantMapError && e.ref === 22 && e.status === GNTST.general_error);
  assert.deepEqual(table.pins(20), { readers: 1, writers: 1 }, 'the failed map left nothing pinned');
  const ro = mapper.map([22], false);
  assert.equal(flagsV1(22), GTF.permit_access | GTF.readonly | GTF.reading);
  ro.unmap();
  m.unmap();
  m.unmap();
  assert.equal(flagsV1(20), GTF.permit_access);
  assert.throws(() => m.page(0), StaleGrantError);
  memory.setReturned(memory.ramPageOf(0x31)!, true);
  assert.throws(() => mapper.map([21], false), (e: unknown) => e instanceof GrantMapError && e.status === GNTST.bad_page);
  assert.equal(flagsV1(21), GTF.permit_access);
});

/** Writes one gnttab_copy (native layout) at `at`. */
function putCopy(g: FakeGuest, at: bigint, c: { src: [bigint, number, number]; dst: [bigint, number, number]; len: number; flags: number }): void {
  const v = g.view(at);
  v.setBigUint64(0, c.src[0], true);
  v.setUint16(8, c.src[1], true);
  v.setUint16(10, c.src[2], true);
  v.setBigUint64(16, c.dst[0], true);
  v.setUint16(24, c.dst[1], true);
  v.setUint16(26, c.dst[2], true);
  v.setUint16(32, c.len, true);
  v.setUint16(34, c.flags, true);
  v.setInt16(36, 0x55, true);
}

test('copy: frames of its own by DOMID_SELF, grants of its own by ref; each op its status, the call 0', (t) => {
  const { call, guest, memory, grantV1, flagsV1 } = setup(t);
  memory.write(0x40 * PAGE_SIZE, Uint8Array.from({ length: 64 }, (_, i) => i + 1));
  grantV1(30, GTF.permit_access, OWN, 0x41);
  grantV1(31, GTF.permit_access | GTF.readonly, OWN, 0x42);
  grantV1(32, GTF.permit_access, 0, 0x43);
  const ops: { src: [bigint, number, number]; dst: [bigint, number, number]; len: number; flags: number; want: number }[] = [
    { src: [0x40n, DOMID.SELF, 0], dst: [0x44n, DOMID.SELF, 100], len: 16, flags: 0, want: GNTST.okay },
    { src: [0x40n, DOMID.SELF, 8], dst: [30n, OWN, 200], len: 8, flags: GNTCOPY.dest_gref, want: GNTST.okay },
    { src: [30n, DOMID.SELF, 200], dst: [0x45n, DOMID.SELF, 0], len: 8, flags: GNTCOPY.source_gref, want: GNTST.okay },
    { src: [0x40n, OWN, 0], dst: [0x44n, DOMID.SELF, 0], len: 8, flags: 0, want: GNTST.permission_denied },
    { src: [0x40n, DOMID.SELF, 4000], dst: [0x44n, DOMID.SELF, 0], len: 200, flags: 0, want: GNTST.bad_copy_arg },
    { src: [0x10_0000n, DOMID.SELF, 0], dst: [0x44n, DOMID.SELF, 0], len: 8, flags: 0, want: GNTST.bad_page },
    { src: [0x40n, DOMID.SELF, 0], dst: [31n, OWN, 0], len: 8, flags: GNTCOPY.dest_gref, want: GNTST.general_error },
    { src: [32n, OWN, 0], dst: [0x44n, DOMID.SELF, 0], len: 8, flags: GNTCOPY.source_gref, want: GNTST.general_error },
    { src: [5000n, OWN, 0], dst: [0x44n, DOMID.SELF, 0], len: 8, flags: GNTCOPY.source_gref, want: GNTST.bad_gntref },
    { src: [32n, 0, 0], dst: [0x44n, DOMID.SELF, 0], len: 8, flags: GNTCOPY.source_gref, want: GNTST.general_error },
    { src: [32n, 9, 0], dst: [0x44n, DOMID.SELF, 0], len: 8, flags: GNTCOPY.source_gref, want: GNTST.bad_domain },
  ];
  ops.forEach((op, i) => putCopy(guest, ARG + BigInt(i * 40), op));
  assert.equal(call('native', GNTTABOP.copy, ops.length), 0n);
  ops.forEach((op, i) => assert.equal(guest.view(ARG + BigInt(i * 40)).getInt16(36, true), op.want, `op ${i}`));
  assert.deepEqual([...memory.read(0x44 * PAGE_SIZE + 99, 18)], [0, ...Array.from({ length: 16 }, (_, i) => i + 1), 0]);
  assert.deepEqual([...memory.read(0x41 * PAGE_SIZE + 200, 8)], [9, 10, 11, 12, 13, 14, 15, 16]);
  assert.deepEqual([...memory.read(0x45 * PAGE_SIZE, 8)], [9, 10, 11, 12, 13, 14, 15, 16]);
  assert.equal(flagsV1(30), GTF.permit_access, 'the copy\'s pins are gone');
  assert.equal(flagsV1(31), GTF.permit_access | GTF.readonly);
  // A fault on an op stops the batch there with -EFAULT.
  assert.equal(call('native', GNTTABOP.copy, 200), -14n);
});

test('swap_grant_ref and map_grant_ref as an HVM guest sees them; unmap knows no handle', (t) => {
  const { call, guest, grantV1, entryV1, warns } = setup(t);
  const v = guest.view();
  grantV1(40, GTF.permit_access, 0, 0x50);
  grantV1(41, GTF.permit_access | GTF.readonly, 0, 0x51);
  v.setUint32(0, 40, true);
  v.setUint32(4, 41, true);
  assert.equal(call('native', GNTTABOP.swap_grant_ref), 0n);
  assert.equal(v.getInt16(8, true), GNTST.okay);
  assert.deepEqual([entryV1(40).getUint32(4, true), entryV1(41).getUint32(4, true)], [0x51, 0x50]);
  v.setUint32(4, 512, true);
  assert.equal(call('native', GNTTABOP.swap_grant_ref), 0n);
  assert.equal(v.getInt16(8, true), GNTST.bad_gntref);
  // map_grant_ref: host_addr, flags, ref, dom, status, handle, dev_bus_addr.
  const map = (flags: number, ref: number, dom: number) => {
    v.setBigUint64(0, 0x60000n, true);
    v.setUint32(8, flags, true);
    v.setUint32(12, ref, true);
    v.setUint16(16, dom, true);
    assert.equal(call('native', GNTTABOP.map_grant_ref), 0n);
    return v.getInt16(18, true);
  };
  grantV1(42, GTF.permit_access, OWN, 0x52);
  assert.equal(map(0, 42, OWN), GNTST.bad_gntref, 'neither host_map nor device_map');
  assert.equal(map(GNTMAP.host_map | GNTMAP.device_map, 42, OWN), GNTST.general_error);
  assert.equal(map(GNTMAP.host_map, 42, DOMID.SELF), GNTST.bad_domain);
  assert.equal(map(GNTMAP.host_map, 42, 9), GNTST.bad_domain);
  assert.equal(map(GNTMAP.host_map, 4000, OWN), GNTST.bad_gntref);
  assert.equal(map(GNTMAP.host_map, 42, OWN), GNTST.general_error, 'its own grant: not mapped by xenkvm');
  assert.equal(warns().length, 1);
  v.setUint32(16, 0, true);
  assert.equal(call('native', GNTTABOP.unmap_grant_ref), 0n);
  assert.equal(v.getInt16(20, true), GNTST.bad_handle);
});

test('a backend in another thread maps through the same table: pins and in-use flags stay exact while both threads map the same ref', async (t) => {
  const { table, grantV1, flagsV1, memory } = setup(t);
  grantV1(50, GTF.permit_access, 0, 0x60);
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    (async () => {
      const { GuestMemory } = await import(workerData.memoryModule);
      const { GrantTable } = await import(workerData.tableModule);
      const { GrantMapper } = await import(workerData.mapperModule);
      const memory = GuestMemory.attach(workerData.memory);
      const mapper = new GrantMapper(GrantTable.attach(workerData.table, memory), memory);
      for (let i = 0; i < workerData.rounds; i++) {
        const m = mapper.map([50], true);
        m.page(0)[i % 4096] = 0x77;
        m.unmap();
      }
      const kept = mapper.map([50], true);
      parentPort.postMessage('mapped');
    })().catch((e) => parentPort.postMessage(String(e)));`;
  const rounds = 2000;
  const module = (name: string) => new URL(name, import.meta.url).href;
  const worker = new Worker(code, {
    eval: true,
    workerData: {
      memory: memory.handle, table: table.handle, rounds,
      memoryModule: module('../../memory/guest-memory.js'), tableModule: module('./table.js'), mapperModule: module('./mapper.js'),
    },
  });
  t.after(() => worker.terminate());
  const done = new Promise<string>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const mapper = new GrantMapper(table, memory);
  for (let i = 0; i < rounds; i++) mapper.map([50], false).unmap();
  assert.equal(await done, 'mapped');
  assert.deepEqual(table.pins(50), { readers: 1, writers: 1 }, 'the worker\'s last mapping, and nothing else');
  assert.equal(flagsV1(50), GTF.permit_access | GTF.reading | GTF.writing);
  assert.equal(memory.readU8(0x60 * PAGE_SIZE + 5), 0x77, 'the worker wrote the guest\'s page');
});

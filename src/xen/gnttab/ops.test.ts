// grant_table_op through a dispatcher, with real guest memory and a fake guest window for arguments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../../common/captured-logger.js';
import { RateLimitedLog } from '../../common/log.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import type { GuestVirtual } from '../../memory/guest-virtual.js';
import type { Abi } from '../abi/layout.js';
import { GNTST, GNTTABOP } from '../abi/grant-table.js';
import { HYPERCALL } from '../abi/hypercalls.js';
import { DOMID } from '../abi/xen.js';
import { FakeGuest } from '../fake-guest.js';
import { HypercallDispatcher } from '../hypercall.js';
import { serveRoutes } from '../routes.js';
import { GRANT_TABLE_OP_ROUTE, grantTableOps } from './ops.js';
import { GrantTable, grantTablePages } from './table.js';

const MiB = 1024 * 1024;
const ARG = 0x40_0000n;
const LIST = ARG + 0x100n;

function setup(t: { after(fn: () => void): void }, maxFrames = 4) {
  const mem = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 1 + grantTablePages(maxFrames));
  t.after(() => mem.dispose());
  const { logger } = capturedLogger();
  const d = { domid: 1, memory: mem, grantTable: GrantTable.create(mem, 1, maxFrames), guestLog: new RateLimitedLog(logger), unmapOverlay: () => {} };
  const dispatcher = new HypercallDispatcher(logger);
  serveRoutes(dispatcher, 'main', [GRANT_TABLE_OP_ROUTE], [grantTableOps(d)]);
  const guest = new FakeGuest(ARG, 0x1000, 0x5a);
  const call = (abi: Abi, cmd: number, count: number) =>
    dispatcher.dispatch({ vcpu: 0, abi, guest: guest as unknown as GuestVirtual }, 0, HYPERCALL.grant_table_op, [BigInt(cmd), ARG, BigInt(count), 0n, 0n]);
  return { guest, call };
}

/** A compat gnttab_setup_table: dom, nr_frames at 4, status at 8, a 32-bit frame_list handle at 12. */
function putCompatSetupTable(g: FakeGuest, dom: number, nrFrames: number) {
  const v = g.view(ARG);
  v.setUint16(0, dom, true);
  v.setUint32(4, nrFrames, true);
  v.setInt16(8, 0x777, true);
  v.setUint32(12, Number(LIST), true);
}

test('compat setup_table writes 32-bit frames, ~0 as 0xffffffff, and nothing past nr_frames', (t) => {
  const { guest, call } = setup(t);
  putCompatSetupTable(guest, DOMID.SELF, 2);
  assert.equal(call('compat', GNTTABOP.setup_table, 1), 0n);
  const v = guest.view(ARG);
  assert.equal(v.getInt16(8, true), GNTST.okay);
  const list = guest.view(LIST);
  assert.deepEqual([list.getUint32(0, true), list.getUint32(4, true), list.getUint32(8, true)], [0xffff_ffff, 0xffff_ffff, 0x5a5a_5a5a]);
});

test('compat setup_table refuses more than 1021 frames, its translation limit, even where the table may grow further', (t) => {
  const { guest, call } = setup(t, 1024);
  putCompatSetupTable(guest, DOMID.SELF, 1022);
  assert.equal(call('compat', GNTTABOP.setup_table, 1), 0n);
  assert.equal(guest.view(ARG).getInt16(8, true), GNTST.general_error);
  assert.equal(guest.view(LIST).getUint32(0, true), 0x5a5a_5a5a);
});

// hvm_op through a dispatcher: HVM parameter rules as Xen applies them to a
// domain acting on itself, the upcall vector, pagetable_dying and get_time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../common/captured-logger.js';
import { RateLimitedLog } from '../common/log.js';
import { GuestMemory } from '../memory/guest-memory.js';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { MemoryMap } from '../memory/memory-map.js';
import { HVM_NR_PARAMS, HVM_PARAM, HVMOP } from './abi/hvm.js';
import { HYPERCALL } from './abi/hypercalls.js';
import type { Abi } from './abi/layout.js';
import { sharedInfoLayout } from './abi/shared-info.js';
import { DOMID } from './abi/xen.js';
import { DomainState } from './domain-state.js';
import { HVM_OP_ROUTE, hvmOps, type HvmOpDomain } from './hvm.js';
import { HypercallDispatcher } from './hypercall.js';
import { MEMORY_OP_ROUTE, memoryOps } from './memory.js';
import { Reservation } from './reservation.js';
import { GrantTable } from './gnttab/table.js';
import { serveRoutes } from './routes.js';
import { SHARED_INFO_PAGE, writeWallclock } from './shared-info.js';
import { FakeGuest } from './fake-guest.js';

const MiB = 1024 * 1024;
const ARG = 0x40_0000n;
const BOOT_WALL = 1_700_000_123_456_789_012n;
const ABIS: Abi[] = ['native', 'compat'];

function setup(t: { after(fn: () => void): void }) {
  const mem = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 4);
  t.after(() => mem.dispose());
  const memoryMap = new MemoryMap({ setUserMemoryRegion: () => {} }, mem, 32);
  const state = DomainState.create(2);
  const sharedInfo = mem.overlayPage(SHARED_INFO_PAGE);
  writeWallclock(sharedInfo, 'native', BOOT_WALL);
  let now = 123_456_789n;
  const routeChanges: number[] = [];
  /** The callback in force each time a change was announced. */
  const callbackChanges: bigint[] = [];
  const { logger, errors, warns } = capturedLogger();
  const domain: HvmOpDomain = {
    domid: 1, memoryMap, state, sharedInfo, bootWallNs: BOOT_WALL, e820: [], reservation: new Reservation(mem, memoryMap),
    gnttab: { domid: 1, memory: mem, grantTable: GrantTable.create(mem, 2, 1), guestLog: new RateLimitedLog(logger), unmapOverlay: (page) => memoryMap.unmapOverlay(page) },
    systemTime: () => now,
    upcallRouteChanged: (v) => routeChanges.push(v),
    callbackChanging: () => callbackChanges.push(state.param(HVM_PARAM.CALLBACK_IRQ)),
    guestLog: new RateLimitedLog(logger),
  };
  const dispatcher = new HypercallDispatcher(logger);
  serveRoutes(dispatcher, 'main', [MEMORY_OP_ROUTE, HVM_OP_ROUTE], [memoryOps(domain), hvmOps(domain)]);
  const guest = new FakeGuest(ARG, 0x1000);
  const call = (abi: Abi, op: number | bigint, arg: bigint = ARG) =>
    dispatcher.dispatch({ vcpu: 0, abi, guest: guest as unknown as GuestVirtual }, 0, HYPERCALL.hvm_op, [BigInt(op), arg, 0n, 0n, 0n]);
  /** xen_hvm_param: domid 0, pad 2, index 4, value 8 — 16 bytes in both ABIs. */
  const putParam = (index: number, value = 0n, domid: number = DOMID.SELF) => {
    guest.bytes.fill(0, 0, 16);
    guest.view().setUint16(0, domid, true);
    guest.view().setUint32(4, index, true);
    guest.view().setBigUint64(8, value, true);
  };
  const set = (abi: Abi, index: number, value: bigint, domid?: number) => {
    putParam(index, value, domid);
    return call(abi, HVMOP.set_param);
  };
  const get = (abi: Abi, index: number, domid?: number) => {
    putParam(index, 0xdead_dead_dead_deadn, domid);
    const rc = call(abi, HVMOP.get_param);
    return { rc, value: guest.view().getBigUint64(8, true) };
  };
  return { mem, memoryMap, state, sharedInfo, domain, guest, call, set, get, errors, warns, routeChanges, callbackChanges, setNow: (v: bigint) => (now = v) };
}

test('a new callback or upcall vector re-examines the pending upcalls of the vCPUs it routes', (t) => {
  const s = setup(t);
  assert.equal(s.set('native', HVM_PARAM.CALLBACK_IRQ, (2n << 56n) | 0xf3n), 0n);
  assert.deepEqual(s.routeChanges, [0, 1], 'every vCPU, for the domain-wide callback');
  assert.deepEqual(s.callbackChanges, [0n], 'announced before it changed, so the old line can be lowered');
  assert.equal(s.set('native', HVM_PARAM.CALLBACK_IRQ, 20n), 0n);
  assert.deepEqual(s.callbackChanges, [0n, (2n << 56n) | 0xf3n]);
  s.routeChanges.length = 0;
  putUpcall(s.guest, 1, 0xf4);
  assert.equal(s.call('native', HVMOP.set_evtchn_upcall_vector), 0n);
  assert.deepEqual(s.routeChanges, [1], 'just that vCPU, for its own vector');
});

const SETTABLE = [
  HVM_PARAM.CALLBACK_IRQ, HVM_PARAM.VM86_TSS, HVM_PARAM.VM86_TSS_SIZED, HVM_PARAM.ACPI_IOPORTS_LOCATION,
  HVM_PARAM.VM_GENERATION_ID_ADDR, HVM_PARAM.STORE_EVTCHN, HVM_PARAM.CONSOLE_EVTCHN, HVM_PARAM.X87_FIP_WIDTH,
];
const SET_ONCE = [HVM_PARAM.VIRIDIAN, HVM_PARAM.IOREQ_SERVER_PFN, HVM_PARAM.NR_IOREQ_SERVER_PAGES, HVM_PARAM.ALTP2M, HVM_PARAM.MCA_CAP];
const READABLE = [
  HVM_PARAM.CALLBACK_IRQ, HVM_PARAM.VM86_TSS, HVM_PARAM.VM86_TSS_SIZED, HVM_PARAM.ACPI_IOPORTS_LOCATION,
  HVM_PARAM.VM_GENERATION_ID_ADDR, HVM_PARAM.STORE_PFN, HVM_PARAM.STORE_EVTCHN, HVM_PARAM.CONSOLE_PFN,
  HVM_PARAM.CONSOLE_EVTCHN, HVM_PARAM.ALTP2M, HVM_PARAM.X87_FIP_WIDTH,
];
const ALL = Array.from({ length: HVM_NR_PARAMS }, (_, i) => i);

test('set_param: the guest-settable parameters can be set and changed freely', (t) => {
  const { set, state, errors } = setup(t);
  for (const abi of ABIS) {
    for (const index of SETTABLE) {
      assert.equal(set(abi, index, 0x10n + BigInt(index)), 0n, `param ${index}`);
      assert.equal(state.param(index), 0x10n + BigInt(index));
      assert.equal(set(abi, index, 0x20n), 0n, `param ${index} again`);
      assert.equal(state.param(index), 0x20n);
    }
  }
  assert.equal(errors().length, 0);
});

test('set_param: set-once parameters take one non-zero value; a different one is -EEXIST', (t) => {
  const { set, state } = setup(t);
  for (const index of SET_ONCE) {
    assert.equal(set('native', index, 5n), 0n, `param ${index}`);
    assert.equal(set('native', index, 5n), 0n, 'the same value again is fine');
    assert.equal(set('compat', index, 6n), -17n, 'a different value');
    assert.equal(set('native', index, 0n), -17n, 'nor back to 0');
    assert.equal(state.param(index), 5n);
  }
  // While still 0, any value may be set (including 0 itself).
  const fresh = setup(t);
  assert.equal(fresh.set('native', HVM_PARAM.VIRIDIAN, 0n), 0n);
  assert.equal(fresh.set('native', HVM_PARAM.VIRIDIAN, 0xffff_ffff_ffff_ffffn), 0n);
  assert.equal(fresh.state.param(HVM_PARAM.VIRIDIAN), -1n);
  assert.equal(fresh.set('native', HVM_PARAM.VIRIDIAN, 0xffff_ffff_ffff_ffffn), 0n, 'the same all-ones value compares equal');
});

test('set_param: every other parameter is -EPERM for the domain itself, and left alone', (t) => {
  const { set, state } = setup(t);
  const others = ALL.filter((i) => !SETTABLE.includes(i as never) && !SET_ONCE.includes(i as never));
  assert.ok(others.includes(HVM_PARAM.STORE_PFN) && others.includes(HVM_PARAM.CONSOLE_PFN) && others.includes(HVM_PARAM.TIMER_MODE));
  for (const abi of ABIS) {
    for (const index of others) {
      assert.equal(set(abi, index, 1n), -1n, `param ${index}`);
      assert.equal(state.param(index), 0n);
    }
  }
});

test('get_param: the readable parameters, written back into the struct', (t) => {
  const { get, state, guest } = setup(t);
  for (const abi of ABIS) {
    for (const index of READABLE) {
      state.setParam(index, 0x1_0000_0000n + BigInt(index));
      const r = get(abi, index);
      assert.equal(r.rc, 0n, `param ${index}`);
      assert.equal(r.value, 0x1_0000_0000n + BigInt(index));
      assert.equal(guest.view().getUint16(0, true), DOMID.SELF, 'domid kept');
      assert.equal(guest.view().getUint32(4, true), index, 'index kept');
    }
  }
  // Negative (all-ones) values come back as the 64-bit pattern.
  state.setParam(HVM_PARAM.STORE_PFN, -1n);
  assert.equal(get('native', HVM_PARAM.STORE_PFN).value, 0xffff_ffff_ffff_ffffn);
});

test('get_param: unreadable parameters are -EPERM and the value is not written', (t) => {
  const { get, state } = setup(t);
  const unreadable = ALL.filter((i) => !READABLE.includes(i as never));
  assert.ok(unreadable.includes(HVM_PARAM.VIRIDIAN) && unreadable.includes(HVM_PARAM.IOREQ_PFN) && unreadable.includes(HVM_PARAM.MCA_CAP));
  for (const abi of ABIS) {
    for (const index of unreadable) {
      state.setParam(index, 7n);
      const r = get(abi, index);
      assert.equal(r.rc, -1n, `param ${index}`);
      assert.equal(r.value, 0xdead_dead_dead_deadn);
    }
  }
});

test('set_param/get_param: index ≥ 39 is -EINVAL; another domain is -ESRCH', (t) => {
  const { set, get } = setup(t);
  for (const abi of ABIS) {
    for (const index of [HVM_NR_PARAMS, 40, 0xffff, 0xffff_ffff]) {
      assert.equal(set(abi, index, 1n), -22n, `set ${index}`);
      assert.equal(get(abi, index).rc, -22n, `get ${index}`);
    }
    for (const domid of [0, 2, DOMID.XEN]) {
      assert.equal(set(abi, HVM_PARAM.CALLBACK_IRQ, 1n, domid), -3n);
      assert.equal(get(abi, HVM_PARAM.CALLBACK_IRQ, domid).rc, -3n);
    }
    assert.equal(set(abi, HVM_PARAM.STORE_EVTCHN, 3n, 1), 0n, 'the own domid works like DOMID_SELF');
    assert.equal(get(abi, HVM_PARAM.STORE_EVTCHN, 1).value, 3n);
  }
});

test('set_param CALLBACK_IRQ from a 32-bit caller latches the compat shared_info layout and rewrites the wallclock', (t) => {
  const { set, state, sharedInfo } = setup(t);
  const u32 = (o: number) => new DataView(sharedInfo.buffer, sharedInfo.byteOffset).getUint32(o, true);
  const c = sharedInfoLayout.compat;
  assert.equal(set('compat', HVM_PARAM.CALLBACK_IRQ, (2n << 56n) | 0xf3n), 0n);
  assert.equal(state.sharedInfoAbi, 'compat');
  assert.equal(u32(c.wcVersion), 2);
  assert.equal(u32(c.wcSec), 1_700_000_123);
  assert.equal(u32(c.wcNsec), 456_789_012);
  // Other parameters latch nothing.
  assert.equal(set('native', HVM_PARAM.STORE_EVTCHN, 1n), 0n);
  assert.equal(state.sharedInfoAbi, 'compat');
  // A refused CALLBACK_IRQ latches nothing either.
  assert.equal(set('native', HVM_PARAM.CALLBACK_IRQ, 1n, 0), -3n);
  assert.equal(state.sharedInfoAbi, 'compat');
  assert.equal(set('native', HVM_PARAM.CALLBACK_IRQ, 0n), 0n);
  assert.equal(state.sharedInfoAbi, 'native');
});

test('set_param CALLBACK_IRQ: the PCI INTx type is taken as Xen takes it, whatever device, bus or PCI domain, and re-examines the upcalls', (t) => {
  const { set, get, state, routeChanges, warns } = setup(t);
  // 00:02.0 INTA (the Xen platform device), then another device, bus, pin and PCI domain, from either ABI.
  for (const intx of [(1n << 56n) | 0x1000n, (1n << 56n) | (7n << 32n) | 0x02_21_03n]) {
    for (const abi of ABIS) {
      routeChanges.length = 0;
      assert.equal(set(abi, HVM_PARAM.CALLBACK_IRQ, intx), 0n, `0x${intx.toString(16)} (${abi})`);
      assert.equal(state.param(HVM_PARAM.CALLBACK_IRQ), intx);
      assert.equal(get(abi, HVM_PARAM.CALLBACK_IRQ).value, intx);
      assert.deepEqual(routeChanges, [0, 1], 'every vCPU\'s pending upcall goes out the new way');
    }
  }
  assert.deepEqual(warns(), []);
});

/** xen_hvm_evtchn_upcall_vector: vcpu (u32) at 0, vector (u8) at 4. */
function putUpcall(g: FakeGuest, vcpu: number, vector: number) {
  g.bytes.fill(0, 0, 8);
  g.view().setUint32(0, vcpu, true);
  g.view().setUint8(4, vector);
}

test('set_evtchn_upcall_vector: per vCPU; vectors below 0x10 are -EINVAL, unknown vCPUs -ENOENT', (t) => {
  const { call, guest, state } = setup(t);
  for (const abi of ABIS) {
    putUpcall(guest, 1, 0xf3);
    assert.equal(call(abi, HVMOP.set_evtchn_upcall_vector), 0n);
    assert.equal(state.upcallVector(1), 0xf3);
    assert.equal(state.upcallVector(0), 0);
    putUpcall(guest, 0, 0x10);
    assert.equal(call(abi, HVMOP.set_evtchn_upcall_vector), 0n);
    assert.equal(state.upcallVector(0), 0x10);
    for (const v of [0, 1, 0x0f]) {
      putUpcall(guest, 0, v);
      assert.equal(call(abi, HVMOP.set_evtchn_upcall_vector), -22n, `vector ${v}`);
    }
    for (const vcpu of [2, 3, 0xffff_ffff]) {
      putUpcall(guest, vcpu, 0x40);
      assert.equal(call(abi, HVMOP.set_evtchn_upcall_vector), -2n, `vcpu ${vcpu}`);
    }
    // The vector is checked before the vCPU, as in Xen.
    putUpcall(guest, 9, 0x05);
    assert.equal(call(abi, HVMOP.set_evtchn_upcall_vector), -22n);
    assert.equal(state.upcallVector(0), 0x10);
    state.setUpcallVector(0, 0);
  }
});

test('pagetable_dying: -EINVAL with hardware paging; another domain -ESRCH', (t) => {
  const { call, guest } = setup(t);
  for (const abi of ABIS) {
    guest.view().setUint16(0, DOMID.SELF, true);
    guest.view().setBigUint64(8, 0x1000n, true);
    assert.equal(call(abi, HVMOP.pagetable_dying), -22n);
    guest.view().setUint16(0, 5, true);
    assert.equal(call(abi, HVMOP.pagetable_dying), -3n);
  }
});

test('get_time: the current system time, 8 bytes', (t) => {
  const { call, guest, setNow } = setup(t);
  for (const abi of ABIS) {
    guest.bytes.fill(0xcc, 0, 16);
    setNow(987_654_321_000n);
    assert.equal(call(abi, HVMOP.get_time), 0n);
    assert.equal(guest.view().getBigUint64(0, true), 987_654_321_000n);
    assert.equal(guest.bytes[8], 0xcc);
  }
});

test('unknown sub-ops are -ENOSYS; bad pointers -EFAULT', (t) => {
  const { call, errors } = setup(t);
  for (const abi of ABIS) {
    for (const op of [HVMOP.flush_tlbs, HVMOP.get_mem_type, HVMOP.altp2m, 2, 99, 0xffff_ffff]) assert.equal(call(abi, op), -38n, `op ${op}`);
    // The op is an unsigned long that Xen switches on whole: high bits make a known op unknown.
    for (const op of [HVMOP.get_param, HVMOP.set_param, HVMOP.get_time]) assert.equal(call(abi, (1n << 32n) | BigInt(op)), -38n, `op ${op} with bit 32`);
    for (const op of [HVMOP.set_param, HVMOP.get_param, HVMOP.set_evtchn_upcall_vector, HVMOP.pagetable_dying, HVMOP.get_time]) {
      assert.equal(call(abi, op, 0n), -14n, `op ${op} at NULL`);
      assert.equal(call(abi, op, ARG + 0x1000n - 4n), -14n, `op ${op} across the end`);
    }
  }
  assert.equal(errors().length, 0);
});

// Soft reset on real guest memory and memory map (a fake KVM behind it), with
// the domain's Xen state set up the way a guest would have left it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import { GuestMemory, PAGE_SIZE } from '../memory/guest-memory.js';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { FakeKvm } from '../memory/fake-kvm.js';
import { MemoryMap } from '../memory/memory-map.js';
import { VIRQ } from './abi/event-channel.js';
import { HVM_PARAM } from './abi/hvm.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { SCHEDOP, SHUTDOWN } from './abi/sched.js';
import { sharedInfoLayout } from './abi/shared-info.js';
import { AreaKind, DomainState } from './domain-state.js';
import { BackendPorts } from './evtchn/backend.js';
import { EventDelivery } from './evtchn/delivery.js';
import { portLimit } from './evtchn/ops.js';
import { PortState, PortTable } from './evtchn/ports.js';
import { FakeGuest } from './fake-guest.js';
import { HypercallDispatcher } from './hypercall.js';
import { SHARED_INFO_PAGE, writeWallclock } from './shared-info.js';
import { serveRoutes } from './routes.js';
import { Reservation } from './reservation.js';
import { SCHED_OP_ROUTE } from './sched.js';
import { softReset, softResetOps } from './soft-reset.js';

const MiB = 1024 * 1024;
const SHINFO_GFN = 0x80;
const VCPU_INFO_GPA = 0x9_0040;
const area = (gpa: number) => ({ abi: 'native' as const, pieces: [{ gpa, length: 48 }] });

function setup(t: { after(fn: () => void): void }) {
  const memory = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 4);
  t.after(() => memory.dispose());
  const kvm = new FakeKvm();
  const memoryMap = new MemoryMap(kvm, memory, 32);
  const state = DomainState.create(2);
  const ports = PortTable.create();
  const events = new EventDelivery(memory, state, ports, () => {});
  const evtchn = { domid: 1, state, ports, events, backends: new BackendPorts(ports, events, () => portLimit(ports, state)), fastPath: true, fifo: true };
  const domain = { state, memoryMap, reservation: new Reservation(memory, memoryMap), evtchn };
  const sharedInfoSlots = () => [...kvm.live.values()].filter((s) => s.host === memory.overlays.hostAddress).map((s) => s.gpa / PAGE_SIZE);
  return { memory, memoryMap, state, ports, events, domain, sharedInfoSlots };
}

test('soft reset closes every port, unregisters every guest area, unmaps shared_info and clears the shutdown code', (t) => {
  const s = setup(t);
  const shinfo = s.memory.overlayPage(SHARED_INFO_PAGE);
  writeWallclock(shinfo, 'native', 1_700_000_000_123_456_789n);
  // The guest's RAM at the frame before shared_info goes over it.
  s.memory.fill(SHINFO_GFN * PAGE_SIZE, PAGE_SIZE, 0x5a);
  s.memoryMap.mapOverlay(SHARED_INFO_PAGE, SHINFO_GFN);
  s.ports.set(1, { state: PortState.Ipi, vcpu: 1, peer: 0, remoteDom: 0 });
  s.ports.set(2, { state: PortState.Virq, vcpu: 0, peer: VIRQ.TIMER, remoteDom: 0 });
  s.ports.set(3, { state: PortState.Interdomain, vcpu: 0, peer: 4, remoteDom: 1 });
  s.ports.set(4, { state: PortState.Interdomain, vcpu: 0, peer: 3, remoteDom: 1 });
  s.ports.set(5, { state: PortState.Unbound, vcpu: 0, peer: 0, remoteDom: 0 });
  s.events.setPending(3, 0);
  const mask = sharedInfoLayout.native.evtchnMask;
  shinfo[mask] = 0b100; // port 2 masked: the mask bit is the guest's and stays
  s.state.setVcpuInfoAddress(0, VCPU_INFO_GPA);
  for (let v = 0; v < 2; v++) {
    s.state.setArea(v, AreaKind.Runstate, area(0x9_1000 + v * 64));
    s.state.setArea(v, AreaKind.Time, area(0x9_2000 + v * 64));
    s.state.setUpcallVector(v, 0xe0 + v);
  }
  s.state.setParam(HVM_PARAM.CALLBACK_IRQ, (2n << 56n) | 0xf3n);
  s.state.shutdownCode = SHUTDOWN.soft_reset;
  const wallclock = shinfo.slice(sharedInfoLayout.native.wcVersion, sharedInfoLayout.native.wcVersion + 12);

  softReset(s.domain);

  for (let port = 1; port <= 5; port++) assert.equal(s.ports.get(port).state, PortState.Free, `port ${port}`);
  assert.equal(s.ports.get(0).state, PortState.Reserved, 'port 0 stays reserved');
  assert.equal(s.ports.virqPort(VIRQ.TIMER, 0), undefined, 'VIRQ_TIMER can be bound again');
  assert.equal(s.events.isPending(3), false, 'a closed port keeps no event');
  assert.equal(shinfo[mask], 0b100);
  for (let v = 0; v < 2; v++) {
    assert.equal(s.state.vcpuInfoAddress(v), undefined, `vCPU ${v}'s vcpu_info is back in shared_info`);
    assert.equal(s.state.area(v, AreaKind.Runstate), undefined);
    assert.equal(s.state.area(v, AreaKind.Time), undefined);
  }
  assert.equal(s.memoryMap.overlayFrame(SHARED_INFO_PAGE), undefined);
  assert.deepEqual(s.sharedInfoSlots(), [], 'KVM no longer maps shared_info anywhere');
  assert.ok(s.memory.isRam(SHINFO_GFN * PAGE_SIZE, PAGE_SIZE), 'the frame is RAM again');
  assert.deepEqual(s.memory.read(SHINFO_GFN * PAGE_SIZE, PAGE_SIZE), new Uint8Array(PAGE_SIZE), 'a fresh page, as Xen puts one there');
  assert.deepEqual(shinfo.slice(sharedInfoLayout.native.wcVersion, sharedInfoLayout.native.wcVersion + 12), wallclock, 'shared_info keeps its contents');
  assert.equal(s.state.shutdownCode, undefined);
  // What Xen's soft reset leaves alone.
  assert.equal(s.state.param(HVM_PARAM.CALLBACK_IRQ), (2n << 56n) | 0xf3n);
  assert.deepEqual([s.state.upcallVector(0), s.state.upcallVector(1)], [0xe0, 0xe1]);
  // shared_info can be mapped again, at the same frame or elsewhere.
  s.memoryMap.mapOverlay(SHARED_INFO_PAGE, SHINFO_GFN);
  assert.deepEqual(s.sharedInfoSlots(), [SHINFO_GFN]);
});

test('soft reset with shared_info never mapped, or mapped above RAM, changes no RAM', (t) => {
  const s = setup(t);
  s.memory.fill(0, 2 * MiB, 0x77);
  softReset(s.domain);
  assert.equal(s.memoryMap.overlayFrame(SHARED_INFO_PAGE), undefined);
  const high = 0xf_0000;
  s.memoryMap.mapOverlay(SHARED_INFO_PAGE, high);
  softReset(s.domain);
  assert.deepEqual(s.sharedInfoSlots(), []);
  assert.equal(s.memory.isBacked(high * PAGE_SIZE), false, 'no page to put above RAM: the frame is a hole again');
  assert.ok(s.memory.read(0, 2 * MiB).every((b) => b === 0x77));
});

test('sched_op on the main thread is the soft reset, then the toolstack\'s part: 0 to the guest and one info line', (t) => {
  const s = setup(t);
  s.memoryMap.mapOverlay(SHARED_INFO_PAGE, SHINFO_GFN);
  s.ports.set(1, { state: PortState.Ipi, vcpu: 0, peer: 0, remoteDom: 0 });
  const { logger, lines, errors } = capturedLogger();
  const dispatcher = new HypercallDispatcher(logger);
  let toolstackRuns = 0;
  serveRoutes(dispatcher, 'main', [SCHED_OP_ROUTE], [softResetOps(s.domain, logger, () => {
    assert.equal(s.ports.get(1).state, PortState.Free, 'the toolstack runs after the reset');
    toolstackRuns++;
  })]);
  const ctx = { vcpu: 1, abi: 'native' as const, guest: new FakeGuest(0x1000n, 16) as unknown as GuestVirtual };
  assert.equal(dispatcher.dispatch(ctx, 0, HYPERCALL.sched_op, [BigInt(SCHEDOP.shutdown), 0x1000n, 0n, 0n, 0n]), 0n);
  assert.equal(s.ports.get(1).state, PortState.Free);
  assert.equal(s.memoryMap.overlayFrame(SHARED_INFO_PAGE), undefined);
  assert.equal(toolstackRuns, 1);
  const info = lines.filter((l) => l.level === 30);
  assert.equal(info.length, 1);
  assert.equal(info[0].vcpu, 1);
  assert.match(info[0].msg, /soft-reset/);
  assert.deepEqual(errors(), []);
});

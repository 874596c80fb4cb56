import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, KVM_XEN_NO_GPA, xenHvmAttrTypes, xenVcpuAttrTypes } from '../kvm/abi.js';
import { VIRQ } from '../xen/abi/event-channel.js';
import { PortState } from '../xen/evtchn/ports.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';
import { fastPathDomain } from './fast-path-domain.js';
import { TimerState } from '../xen/timers.js';
import { KvmSharedInfo } from './kvm-shared-info.js';
import { KvmTimer } from './kvm-timer.js';
import { KvmUpcallVector } from './kvm-upcall-vector.js';

const VECTOR = 0xf3;
const PRIORITY = BigInt(KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL) << 32n;

/** A vCPU 1 whose KVM keeps a timer as KVM does: the attribute's port, and its deadline until it is delivered. */
function setup(t: { after(fn: () => void): void }) {
  const { memory, memoryMap, state, ports } = fastPathDomain(t);
  const timers = TimerState.create(2);
  const kvm = { port: 0n, expires: 0n, vector: 0n, xenId: 0n, calls: [] as string[], holdsVcpuInfo: true };
  const vcpu = {
    setXenAttr: (type: number, value: bigint, value2 = 0n) => {
      if (type === xenVcpuAttrTypes.UPCALL_VECTOR) kvm.vector = value;
      else if (type === xenVcpuAttrTypes.VCPU_ID) kvm.xenId = value;
      else if (type === xenVcpuAttrTypes.TIMER) {
        kvm.port = value & 0xffff_ffffn;
        kvm.expires = kvm.port === 0n ? 0n : value2;
        assert.ok(kvm.port === 0n || value >> 32n === PRIORITY >> 32n, 'the 2-level priority');
      } else assert.fail(`attribute ${type}`);
      kvm.calls.push(`set ${type}`);
    },
    getXenAttr: (type: number) => {
      assert.equal(type, xenVcpuAttrTypes.TIMER);
      kvm.calls.push('get');
      return { value: PRIORITY | kvm.port, value2: kvm.expires };
    },
  };
  const timer = new KvmTimer(vcpu, 1, new KvmUpcallVector(vcpu, 1, state), ports, timers, memory, () => kvm.holdsVcpuInfo);
  /** Makes every condition for KVM's delivery hold: shared_info mapped, a vector, VIRQ_TIMER bound on port 5. */
  const deliverable = () => {
    memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
    state.setUpcallVector(1, VECTOR);
    ports.set(5, { state: PortState.Virq, vcpu: 1, peer: VIRQ.TIMER, remoteDom: 0 });
  };
  const singleshot = () => timers.vcpuTimers(1).singleshot;
  return { memoryMap, state, ports, timers, kvm, timer, deliverable, singleshot };
}

test("KVM takes a vCPU's singleshot timer once it can deliver VIRQ_TIMER as Xen would, the deadline with it", (t) => {
  const { kvm, timer, timers, deliverable, singleshot } = setup(t);
  assert.equal(kvm.xenId, 1n, "KVM knows the vCPU's Xen id, whose timer calls it answers");
  timers.setSingleshot(1, 5_000_000n);
  timer.sync();
  assert.equal(kvm.port, 0n, 'nothing bound, no vector: xenkvm keeps it');
  assert.equal(singleshot(), 5_000_000n);
  deliverable();
  timer.sync();
  assert.equal(kvm.vector, BigInt(VECTOR), 'the vector KVM injects');
  assert.equal(kvm.port, 5n);
  assert.equal(kvm.expires, 5_000_000n, 'the armed deadline moved to KVM');
  assert.equal(singleshot(), 0n, "and left xenkvm's timer thread");
  const calls = kvm.calls.length;
  timer.sync();
  assert.equal(kvm.calls.length, calls, 'unchanged: no ioctl');
});

test('the timer comes back to xenkvm, deadline and all, when KVM could no longer deliver its event as Xen would', (t) => {
  for (const [what, change] of [
    ['FIFO', (s: ReturnType<typeof setup>) => (s.ports.fifoActive = true)],
    ['no vector', (s: ReturnType<typeof setup>) => s.state.setUpcallVector(1, 0)],
    ['shared_info unmapped', (s: ReturnType<typeof setup>) => s.memoryMap.unmapOverlay(SHARED_INFO_PAGE)],
    ['vcpu_info not in KVM', (s: ReturnType<typeof setup>) => (s.kvm.holdsVcpuInfo = false)],
    ['VIRQ_TIMER closed', (s: ReturnType<typeof setup>) => s.ports.free(5)],
  ] as const) {
    const s = setup(t);
    s.deliverable();
    s.timer.sync();
    s.kvm.expires = 7_000_000n; // the guest armed it through KVM
    change(s);
    s.timer.sync();
    assert.equal(s.kvm.port, 0n, `${what}: KVM holds no timer`);
    assert.equal(s.singleshot(), 7_000_000n, `${what}: xenkvm's timer thread has the deadline`);
  }
});

test('a timer KVM already fired (delivered) comes back as none; one it has not is re-armed on the new port', (t) => {
  const { kvm, timer, ports, deliverable, singleshot } = setup(t);
  deliverable();
  timer.sync();
  kvm.expires = 0n; // fired and delivered
  timer.release();
  assert.equal(kvm.port, 0n);
  assert.equal(singleshot(), 0n, 'nothing to fire again');
  timer.sync();
  assert.equal(kvm.port, 5n, 'the next entry hands it back');
  kvm.expires = 9_000_000n;
  ports.free(5);
  ports.set(6, { state: PortState.Virq, vcpu: 1, peer: VIRQ.TIMER, remoteDom: 0 });
  timer.sync();
  assert.deepEqual([kvm.port, kvm.expires], [6n, 9_000_000n], 'rebound: the same deadline, the new port');
});

test("before the vCPU's thread sleeps in xenkvm, its timer goes to xenkvm's timer thread, whose event wakes it", (t) => {
  const { kvm, timer, deliverable, singleshot } = setup(t);
  deliverable();
  timer.sync();
  kvm.expires = 3_000_000n;
  timer.release();
  assert.equal(kvm.port, 0n);
  assert.equal(singleshot(), 3_000_000n);
  timer.sync();
  assert.deepEqual([kvm.port, kvm.expires, singleshot()], [5n, 3_000_000n, 0n], 'and back to KVM at the next entry');
});

test("KVM is told where shared_info is, and its layout, after the calls that move it; the layout before the frame; the wallclock stays xenkvm's", (t) => {
  const { memory, memoryMap, state } = fastPathDomain(t);
  const told: [string, bigint][] = [];
  const names = Object.fromEntries(Object.entries(xenHvmAttrTypes).map(([k, v]) => [v, k]));
  const sharedInfo = new KvmSharedInfo({ setXenAttr: (type, value) => told.push([names[type], value]) }, memory, state, () => told.push(['wallclock', 0n]));
  const sync = () => {
    told.length = 0;
    sharedInfo.sync();
    return [...told];
  };
  assert.deepEqual(sync(), [['LONG_MODE', 1n]], 'unmapped');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
  assert.deepEqual(sync(), [['SHARED_INFO', 0x100n], ['wallclock', 0n]], "xenkvm's wallclock written over KVM's");
  assert.deepEqual(sync(), []);
  state.sharedInfoAbi = 'compat';
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x200);
  assert.deepEqual(sync(), [['LONG_MODE', 0n], ['SHARED_INFO', 0x200n], ['wallclock', 0n]]);
  memoryMap.unmapOverlay(SHARED_INFO_PAGE);
  assert.deepEqual(sync(), [['SHARED_INFO', KVM_XEN_NO_GPA]]);
});

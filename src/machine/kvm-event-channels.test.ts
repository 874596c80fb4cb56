import assert from 'node:assert/strict';
import { test } from 'node:test';
import { xenEvtchnFlags, xenHvmConfig } from '../kvm/abi.js';
import { EVTCHNSTAT } from '../xen/abi/event-channel.js';
import { PortState } from '../xen/evtchn/ports.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';
import { fastPathDomain } from './fast-path-domain.js';
import { KvmEventChannels } from './kvm-event-channels.js';

const DOMID = 1;
const MSR = 0x40000000;
const VECTORS = [0xf3, 0xf4];

/** Two vCPUs, and a KVM that keeps its sends as KVM does (by send port), recording what it was told. */
function setup(t: { after(fn: () => void): void }) {
  const { memory, memoryMap, state, ports } = fastPathDomain(t);
  const kvm = { flags: 0, sends: new Map<number, string>(), calls: [] as string[] };
  const vm = {
    configureXenHvm: (flags: number, msr: number) => {
      assert.equal(msr, MSR, 'the hypercall MSR stays named');
      kvm.flags = flags;
      kvm.calls.push(`config ${flags}`);
    },
    setXenEventChannel: (flags: number, sendPort = 0, type = 0, deliver = { port: 0, vcpu: 0 }) => {
      kvm.calls.push(`evtchn ${flags} ${sendPort}`);
      if (flags === xenEvtchnFlags.RESET) return kvm.sends.clear();
      if (flags === xenEvtchnFlags.DEASSIGN) return assert.ok(kvm.sends.delete(sendPort), `port ${sendPort} was assigned`);
      if (flags === xenEvtchnFlags.UPDATE) {
        const was = kvm.sends.get(sendPort);
        assert.ok(was?.startsWith(`${type} ${deliver.port} `), 'an update keeps type and port');
      } else {
        assert.equal(flags, 0);
        assert.ok(!kvm.sends.has(sendPort), `port ${sendPort} assigned twice`);
        if (type === EVTCHNSTAT.ipi) assert.equal(deliver.port, sendPort, "an IPI raises its own port, as KVM insists");
      }
      kvm.sends.set(sendPort, `${type} ${deliver.port} ${deliver.vcpu}`);
    },
  };
  const channels = new KvmEventChannels(vm, MSR, DOMID, state, ports, memory);
  /** Every condition for KVM's delivery: shared_info mapped, and each vCPU's vector set, told to KVM and taken. */
  const deliverable = () => {
    memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
    VECTORS.forEach((vector, v) => {
      state.setUpcallVector(v, vector);
      state.setKvmUpcallVector(v, vector);
      state.noteUpcallTaken(v, vector);
    });
  };
  return { memoryMap, state, ports, kvm, channels, deliverable };
}

test('KVM raises the events while the 2-level ABI is in use and shared_info is mapped, for each vCPU with a vector KVM injects and its LAPIC took', (t) => {
  const { memoryMap, state, ports, kvm, channels, deliverable } = setup(t);
  const now = () => [state.kvmDeliversEvents, state.kvmRaisesEventsFor(0), state.kvmRaisesEventsFor(1)];
  channels.sync();
  assert.deepEqual(now(), [false, false, false]);
  assert.deepEqual(kvm.calls, [], 'nothing told while nothing changes');
  deliverable();
  channels.sync();
  assert.deepEqual(now(), [true, true, true]);
  assert.equal(kvm.flags, xenHvmConfig.INTERCEPT_HCALL | xenHvmConfig.EVTCHN_SEND, 'KVM serves sends and polls');

  /** After `change`, whether KVM raises events at all, and for each vCPU; then `undo` restores all. */
  const after = (label: string, change: () => void, undo: () => void, expected: boolean[]) => {
    change();
    channels.sync();
    assert.deepEqual(now(), expected, label);
    assert.equal(kvm.flags, xenHvmConfig.INTERCEPT_HCALL | (expected[0] ? xenHvmConfig.EVTCHN_SEND : 0), `${label}: KVM's poll is real only while it raises events`);
    undo();
    channels.sync();
    assert.deepEqual(now(), [true, true, true], `${label}, undone`);
  };
  after('FIFO', () => (ports.fifoActive = true), () => (ports.fifoActive = false), [false, false, false]);
  after('shared_info unmapped', () => memoryMap.unmapOverlay(SHARED_INFO_PAGE), () => memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x180), [false, false, false]);
  after('a vector KVM was not told yet', () => state.setKvmUpcallVector(1, 0), () => state.setKvmUpcallVector(1, VECTORS[1]), [true, true, false]);
  after('a vector set anew, not taken yet', () => state.setUpcallVector(0, VECTORS[0]), () => state.noteUpcallTaken(0, VECTORS[0]), [true, false, true]);
  after('vectors taken once, then forgotten (soft reset)', () => {
    state.forgetUpcallTaken(0);
    state.forgetUpcallTaken(1);
  }, () => {
    state.noteUpcallTaken(0, VECTORS[0]);
    state.noteUpcallTaken(1, VECTORS[1]);
  }, [false, false, false]);
  after('a vCPU with the HVM callback instead', () => {
    state.setUpcallVector(1, 0);
    state.setKvmUpcallVector(1, 0);
  }, () => {
    state.setUpcallVector(1, VECTORS[1]);
    state.setKvmUpcallVector(1, VECTORS[1]);
    state.noteUpcallTaken(1, VECTORS[1]);
  }, [true, true, false]);

  channels.suspend();
  assert.equal(state.kvmDeliversEvents, false, 'suspended for a hypercall: every thread raises its own events');
  channels.sync();
  assert.equal(state.kvmDeliversEvents, true);
});

test('KVM serves the sends on IPI and loopback ports, following every rebinding, and forgets them all when it stops raising events', (t) => {
  const { state, ports, kvm, channels, deliverable } = setup(t);
  ports.set(3, { state: PortState.Ipi, vcpu: 1, peer: 0, remoteDom: 0 });
  ports.set(4, { state: PortState.Interdomain, vcpu: 0, peer: 5, remoteDom: DOMID });
  ports.set(5, { state: PortState.Interdomain, vcpu: 1, peer: 4, remoteDom: DOMID });
  ports.set(6, { state: PortState.Interdomain, vcpu: 0, peer: 1, remoteDom: 0 }); // a backend's: its sends stay xenkvm's
  ports.set(7, { state: PortState.Virq, vcpu: 0, peer: 0, remoteDom: 0 });
  channels.sync();
  assert.equal(kvm.sends.size, 0, 'none while KVM raises no events');
  deliverable();
  channels.sync();
  assert.deepEqual([...kvm.sends].sort(), [
    [3, `${EVTCHNSTAT.ipi} 3 1`],
    [4, `${EVTCHNSTAT.interdomain} 5 1`],
    [5, `${EVTCHNSTAT.interdomain} 4 0`],
  ]);
  kvm.calls.length = 0;
  channels.sync();
  assert.equal(kvm.calls.length, 0, 'nothing told again while nothing changed');

  ports.setVcpu(5, 0); // EVTCHNOP_bind_vcpu on the loopback's far end
  ports.free(3); // EVTCHNOP_close
  ports.set(8, { state: PortState.Ipi, vcpu: 0, peer: 0, remoteDom: 0 });
  channels.sync();
  assert.deepEqual([...kvm.sends].sort(), [
    [4, `${EVTCHNSTAT.interdomain} 5 0`],
    [5, `${EVTCHNSTAT.interdomain} 4 0`],
    [8, `${EVTCHNSTAT.ipi} 8 0`],
  ]);
  assert.ok(kvm.calls.includes(`evtchn ${xenEvtchnFlags.UPDATE} 4`), 'a send retargeted in place');

  state.setUpcallVector(0, VECTORS[0]); // set again: vCPU 0's LAPIC has not taken it yet
  channels.sync();
  assert.deepEqual([...kvm.sends].sort(), [], "none raises an event on vCPU 0, whose events KVM no longer raises");
  state.noteUpcallTaken(0, VECTORS[0]);
  channels.sync();
  assert.equal(kvm.sends.size, 3, 'told again once it took it');

  ports.fifoActive = true;
  channels.sync();
  assert.equal(kvm.sends.size, 0, 'forgotten under FIFO');
  ports.fifoActive = false;
  channels.sync();
  assert.equal(kvm.sends.size, 3, 'told again under 2-level');
  assert.equal(state.kvmDeliversEvents, true);
});

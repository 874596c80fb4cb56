// makeUpcall: which way an upcall leaves, and what is owed when the guest cannot take it yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HVM_PARAM } from '../abi/hvm.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { sharedInfoLayout } from '../abi/shared-info.js';
import { DomainState } from '../domain-state.js';
import { SHARED_INFO_PAGE } from '../shared-info.js';
import { PortTable } from './ports.js';
import { callbackGsi, makeEventDelivery, makeUpcall, type UpcallHost } from './upcall.js';

function recordingHost(lapicTakes: boolean, kvmTakes = true): { host: UpcallHost; calls: string[] } {
  const calls: string[] = [];
  const host: UpcallHost = {
    signalMsi: (apicId, vector) => {
      calls.push(`msi ${apicId} 0x${vector.toString(16)}`);
      return lapicTakes;
    },
    kick: (vcpu) => void calls.push(`kick ${vcpu}`),
    wake: (vcpu) => void calls.push(`wake ${vcpu}`),
    raiseGsi: (gsi) => void calls.push(`raise ${gsi}`),
    intxGsi: (slot, pin) => 16 + ((slot + pin) & 7),
    kvmSend: (port, vcpu) => {
      calls.push(`kvm-send ${port} ${vcpu}`);
      return kvmTakes;
    },
  };
  return { host, calls };
}

test('a per-vCPU upcall vector the LAPIC takes is one MSI, nothing owed', () => {
  const state = DomainState.create(2);
  state.setUpcallVector(1, 0xe0);
  state.noteUpcallTaken(1, 0xe0);
  const { host, calls } = recordingHost(true);
  makeUpcall(state, host)(1);
  assert.deepEqual(calls, ['wake 1', 'msi 1 0xe0']);
  assert.equal(state.upcallOwed(1), false);
});

test('a per-vCPU upcall vector a software-disabled LAPIC refuses stays owed, and its vCPU is kicked to retry', () => {
  const state = DomainState.create(2);
  state.setUpcallVector(1, 0xe0);
  const { host, calls } = recordingHost(false);
  makeUpcall(state, host)(1);
  assert.deepEqual(calls, ['wake 1', 'msi 1 0xe0', 'kick 1']);
  assert.equal(state.upcallOwed(1), true);
  assert.equal(state.upcallOwed(0), false);
});

test('the HVM callback vector is owed to the vCPU, whose thread injects it', () => {
  const state = DomainState.create(1);
  state.setParam(HVM_PARAM.CALLBACK_IRQ, (2n << 56n) | 0xf3n);
  const { host, calls } = recordingHost(true);
  makeUpcall(state, host)(0);
  assert.deepEqual(calls, ['wake 0', 'kick 0']);
  assert.equal(state.upcallOwed(0), true);
});

test('a GSI or PCI INTx callback raises its line for vCPU 0 once until it is released (at EOI); other vCPUs raise nothing', () => {
  for (const [value, gsi] of [[20n, 20], [(1n << 56n) | (0x10n << 8n) | 1n, 19], [(1n << 56n) | (3n << 16n) | (0x13n << 8n), 18]] as const) {
    const state = DomainState.create(2);
    state.setParam(HVM_PARAM.CALLBACK_IRQ, value);
    const { host, calls } = recordingHost(true);
    makeUpcall(state, host)(0);
    makeUpcall(state, host)(0);
    makeUpcall(state, host)(1);
    assert.deepEqual(calls, ['wake 0', `raise ${gsi}`, 'wake 0', 'wake 1'], `callback 0x${value.toString(16)}`);
    assert.equal(state.releaseCallbackGsi(), gsi);
    makeUpcall(state, host)(0);
    assert.deepEqual(calls.slice(4), ['wake 0', `raise ${gsi}`], 'raised again once released');
  }
});

test('callbackGsi: a GSI the IOAPIC has a pin for, the INTx line of slot (devfn >> 3) and pin, nothing else', () => {
  const host = { intxGsi: (slot: number, pin: number) => 100 * slot + pin };
  assert.equal(callbackGsi({ type: 'gsi', gsi: 23 }, host), 23);
  assert.equal(callbackGsi({ type: 'gsi', gsi: 24 }, host), undefined);
  assert.equal(callbackGsi({ type: 'gsi', gsi: 0 }, host), undefined);
  assert.equal(callbackGsi({ type: 'pci_intx', domain: 0, bus: 0, devfn: 0x17, intx: 3 }, host), 203);
  assert.equal(callbackGsi({ type: 'vector', vector: 0xf3 }, host), undefined);
  assert.equal(callbackGsi({ type: 'none' }, host), undefined);
});

test("a vector the LAPIC took is noted, and forgotten when the guest sets its vector again", () => {
  const state = DomainState.create(2);
  state.setUpcallVector(1, 0xe0);
  makeUpcall(state, recordingHost(false).host)(1);
  assert.equal(state.upcallTaken(1), 0, 'refused by a software-disabled LAPIC: not taken');
  const { host, calls } = recordingHost(true);
  makeUpcall(state, host)(1);
  assert.equal(state.upcallTaken(1), 0xe0);
  assert.deepEqual(calls, ['wake 1', 'msi 1 0xe0', 'kick 1'], "news for the vCPU's thread: it is kicked to look");
  makeUpcall(state, host)(1);
  assert.deepEqual(calls.slice(3), ['wake 1', 'msi 1 0xe0'], 'no news the second time');
  assert.equal(state.upcallTaken(0), 0);
  state.setUpcallVector(1, 0xe0);
  assert.equal(state.upcallTaken(1), 0, 'set again (the guest may have reset its LAPIC): not taken yet');
});

test('while KVM raises the events, a thread hands KVM those of the vCPUs it raises them for; the others, and any KVM refuses, it raises itself and wakes every vCPU', (t) => {
  const memory = GuestMemory.create([{ gpa: 0, size: 1 << 20 }], 2);
  t.after(() => memory.dispose());
  const state = DomainState.create(2);
  const ports = PortTable.create(64);
  const page = memory.overlayPage(SHARED_INFO_PAGE);
  const pending = (port: number) => (page[sharedInfoLayout.native.evtchnPending + (port >> 3)] >> (port & 7)) & 1;
  for (const kvmTakes of [true, false]) {
    const { host, calls } = recordingHost(true, kvmTakes);
    const events = makeEventDelivery(memory, state, ports, host);
    const raise = (port: number, vcpu: number) => {
      calls.length = 0;
      events.setPending(port, vcpu);
      const was = pending(port);
      events.clearPending(port);
      return { calls: calls.filter((c) => !c.startsWith('wake')), inBitmap: was === 1 };
    };
    state.kvmDeliversEvents = false;
    state.setKvmRaisesEventsFor(1, true);
    assert.deepEqual(raise(5, 1), { calls: [], inBitmap: true }, 'xenkvm raises it while KVM raises none');
    state.kvmDeliversEvents = true;
    assert.deepEqual(raise(6, 0), { calls: ['kick 0', 'kick 1'], inBitmap: true }, 'vCPU 0, whose events KVM does not raise');
    assert.deepEqual(
      raise(6, 1),
      kvmTakes ? { calls: ['kvm-send 6 1'], inBitmap: false } : { calls: ['kvm-send 6 1', 'kick 0', 'kick 1'], inBitmap: true },
      kvmTakes ? 'KVM raises it: nothing from xenkvm in the bitmap' : 'refused by KVM: xenkvm raises it',
    );
    ports.fifoActive = true;
    calls.length = 0;
    events.setPending(7, 1);
    assert.ok(!calls.some((c) => c.startsWith('kvm-send')), 'never under FIFO, which KVM does not know');
    ports.fifoActive = false;
  }
});

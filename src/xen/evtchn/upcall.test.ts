// makeUpcall: which way an upcall leaves, and what is owed when the guest cannot take it yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HVM_PARAM } from '../abi/hvm.js';
import { DomainState } from '../domain-state.js';
import { callbackGsi, makeUpcall, type UpcallHost } from './upcall.js';

function recordingHost(lapicTakes: boolean): { host: UpcallHost; calls: string[] } {
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
  };
  return { host, calls };
}

test('a per-vCPU upcall vector the LAPIC takes is one MSI, nothing owed', () => {
  const state = DomainState.create(2);
  state.setUpcallVector(1, 0xe0);
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

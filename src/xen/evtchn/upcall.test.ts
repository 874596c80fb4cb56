// makeUpcall: which way an upcall leaves, and what is owed when the guest cannot take it yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HVM_PARAM } from '../abi/hvm.js';
import { DomainState } from '../domain-state.js';
import { makeUpcall, type UpcallHost } from './upcall.js';

function recordingHost(lapicTakes: boolean): { host: UpcallHost; calls: string[] } {
  const calls: string[] = [];
  const host: UpcallHost = {
    signalMsi: (apicId, vector) => {
      calls.push(`msi ${apicId} 0x${vector.toString(16)}`);
      return lapicTakes;
    },
    kick: (vcpu) => void calls.push(`kick ${vcpu}`),
    wake: (vcpu) => void calls.push(`wake ${vcpu}`),
    setGsi: (gsi, level) => void calls.push(`gsi ${gsi} ${level}`),
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

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KVM_XEN_NO_GPA, xenHvmAttrTypes } from '../kvm/abi.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { MemoryMap } from '../memory/memory-map.js';
import { DomainState } from '../xen/domain-state.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';
import { KvmSharedInfo } from './kvm-shared-info.js';

function setup(t: { after(fn: () => void): void }, hva?: bigint) {
  const memory = GuestMemory.create([{ gpa: 0, size: 2 * 1024 * 1024 }], 4);
  t.after(() => memory.dispose());
  const memoryMap = new MemoryMap({ setUserMemoryRegion: () => {} }, memory, 32);
  const state = DomainState.create(2);
  const told: (string | bigint)[][] = [];
  const names = Object.fromEntries(Object.entries(xenHvmAttrTypes).map(([k, v]) => [v, k]));
  const sharedInfo = new KvmSharedInfo({ setXenAttr: (type, value) => told.push([names[type], value]) }, memory, state, () => told.push(['wallclock']), hva);
  /** What sync() tells KVM, and whether it writes the domain's wallclock back. */
  const sync = () => {
    told.length = 0;
    sharedInfo.sync();
    return [...told];
  };
  return { memoryMap, state, sync };
}

test('KVM is told shared_info by frame as the guest maps, moves and drops it, and the wallclock it overwrote is written back', (t) => {
  const { memoryMap, state, sync } = setup(t);
  assert.deepEqual(sync(), [['LONG_MODE', 1n]], 'the layout only: no page yet');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
  assert.deepEqual(sync(), [['SHARED_INFO', 0x100n], ['wallclock']]);
  assert.deepEqual(sync(), [], 'unchanged: no ioctl');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x1000);
  assert.deepEqual(sync(), [['SHARED_INFO', 0x1000n], ['wallclock']], 'moved');
  state.sharedInfoAbi = 'compat';
  assert.deepEqual(sync(), [['LONG_MODE', 0n], ['wallclock']], 'a new layout while KVM holds the page: KVM 6.12 writes its wallclock again');
  memoryMap.unmapOverlay(SHARED_INFO_PAGE);
  assert.deepEqual(sync(), [['SHARED_INFO', KVM_XEN_NO_GPA]], 'dropped');
});

test('by host address, KVM is told shared_info only as the guest maps and drops it: a move tells it nothing', (t) => {
  const hva = 0x7f00_1234_0000n;
  const { memoryMap, sync } = setup(t, hva);
  sync();
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
  assert.deepEqual(sync(), [['SHARED_INFO_HVA', hva], ['wallclock']]);
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x1000);
  assert.deepEqual(sync(), [], 'moved: the same host address');
  memoryMap.unmapOverlay(SHARED_INFO_PAGE);
  assert.deepEqual(sync(), [['SHARED_INFO_HVA', 0n]], 'dropped');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x200);
  assert.deepEqual(sync(), [['SHARED_INFO_HVA', hva], ['wallclock']], 'mapped again');
});

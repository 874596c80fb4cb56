import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KVM_XEN_NO_GPA, xenVcpuAttrTypes } from '../kvm/abi.js';
import { GuestMemory, PAGE_SIZE } from '../memory/guest-memory.js';
import { MemoryMap } from '../memory/memory-map.js';
import { vcpuTimeInfo } from '../xen/abi/shared-info.js';
import { AreaKind, DomainState } from '../xen/domain-state.js';
import { SHARED_INFO_PAGE, VCPU_INFO_TIME_OFFSET } from '../xen/shared-info.js';
import { KvmTimeRecords } from './kvm-time-records.js';

const MiB = 1024 * 1024;

function setup(t: { after(fn: () => void): void }, id = 1, sharedInfoHva?: bigint) {
  const memory = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 4);
  t.after(() => memory.dispose());
  const memoryMap = new MemoryMap({ setUserMemoryRegion: () => {} }, memory, 32);
  const state = DomainState.create(40);
  const told: [string, bigint][] = [];
  const names = Object.fromEntries(Object.entries(xenVcpuAttrTypes).map(([k, v]) => [v, k]));
  const records = new KvmTimeRecords({ setXenAttr: (type, value) => told.push([names[type], value]) }, id, state, memory, sharedInfoHva);
  /** What sync() tells KVM. */
  const sync = () => {
    told.length = 0;
    records.sync();
    return [...told];
  };
  return { memory, memoryMap, state, records, sync };
}

test('KVM is told where a vCPU\'s time records are only when that changes: shared_info\'s slot, a registered vcpu_info, a time area', (t) => {
  const { memoryMap, state, sync } = setup(t);
  assert.deepEqual(sync(), [], 'nothing mapped, nothing registered: KVM holds none already');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
  assert.deepEqual(sync(), [['VCPU_INFO', BigInt(0x100 * PAGE_SIZE + 64)]], "vCPU 1's slot in shared_info");
  assert.deepEqual(sync(), [], 'unchanged: no ioctl');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x1000);
  assert.deepEqual(sync(), [['VCPU_INFO', BigInt(0x1000 * PAGE_SIZE + 64)]], 'shared_info moved');
  state.setVcpuInfoAddress(1, 0x4_0080);
  assert.deepEqual(sync(), [['VCPU_INFO', 0x4_0080n]], 'registered');
  state.setArea(1, AreaKind.Time, { abi: 'native', pieces: [{ gpa: 0x5_0040, length: 32 }] });
  assert.deepEqual(sync(), [['VCPU_TIME_INFO', 0x5_0040n]]);
  state.setArea(1, AreaKind.Time, { abi: 'compat', pieces: [{ gpa: 0x5_0040, length: 32 }] });
  assert.deepEqual(sync(), [], 'registered again at the same place');
  state.setArea(1, AreaKind.Time, undefined);
  state.setVcpuInfoAddress(1, undefined);
  memoryMap.unmapOverlay(SHARED_INFO_PAGE);
  assert.deepEqual(sync(), [['VCPU_INFO', KVM_XEN_NO_GPA], ['VCPU_TIME_INFO', KVM_XEN_NO_GPA]], 'all gone (a soft reset)');
});

test('a vCPU beyond shared_info\'s 32 has no vcpu_info until it registers one; a place no memory backs is none', (t) => {
  const { memoryMap, state, sync } = setup(t, 33);
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
  assert.deepEqual(sync(), []);
  state.setArea(33, AreaKind.Time, { abi: 'native', pieces: [{ gpa: 4 * MiB, length: 32 }] });
  assert.deepEqual(sync(), [], 'above RAM: KVM would refuse it');
  state.setVcpuInfoAddress(33, 0x4_0000);
  assert.deepEqual(sync(), [['VCPU_INFO', 0x4_0000n]]);
});

test('the record KVM last wrote is read back from the vcpu_info, else the time area; none before KVM writes one', (t) => {
  const { memory, state, records, sync } = setup(t);
  assert.equal(records.current(), undefined);
  state.setArea(1, AreaKind.Time, { abi: 'native', pieces: [{ gpa: 0x5_0040, length: 32 }] });
  sync();
  assert.equal(records.current(), undefined, 'version 0: not written yet');
  const record = (gpa: number, systemTime: bigint) =>
    memory.write(gpa, vcpuTimeInfo.native.encode({ version: 2, tsc_timestamp: 0x1234_5678n, system_time: systemTime, tsc_to_system_mul: 0x8000_0000, tsc_shift: -1, flags: 1 }));
  record(0x5_0040, 1_000n);
  assert.deepEqual(records.current(), { tscTimestamp: 0x1234_5678n, systemTime: 1_000n, mul: 0x8000_0000, shift: -1 });
  state.setVcpuInfoAddress(1, 0x4_0080);
  sync();
  record(0x4_0080 + VCPU_INFO_TIME_OFFSET, 2_000n);
  assert.equal(records.current()?.systemTime, 2_000n, 'the vcpu_info first');
});

test('where KVM takes shared_info by host address, a vcpu_info in its slot is given by host address: a move tells KVM nothing', (t) => {
  const hva = 0x7f00_1234_0000n;
  const { memory, memoryMap, state, records, sync } = setup(t, 1, hva);
  assert.deepEqual(sync(), [], 'not mapped yet: none');
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x100);
  assert.deepEqual(sync(), [['VCPU_INFO_HVA', hva + 64n]], "vCPU 1's slot, by host address");
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x1000);
  assert.deepEqual(sync(), [], 'moved: the same host address');
  state.sharedInfoAbi = 'compat';
  assert.deepEqual(sync(), [], 'the compat layout: its vcpu_info slots are 64 bytes too');
  // KVM's record is read from the overlay page itself.
  memory.overlayPage(SHARED_INFO_PAGE).set(vcpuTimeInfo.native.encode({ version: 2, tsc_timestamp: 5n, system_time: 3_000n, tsc_to_system_mul: 0x8000_0000, tsc_shift: -1, flags: 1 }), 64 + VCPU_INFO_TIME_OFFSET);
  assert.equal(records.current()?.systemTime, 3_000n);
  state.setVcpuInfoAddress(1, 0x4_0080);
  assert.deepEqual(sync(), [['VCPU_INFO', 0x4_0080n]], 'registered: by guest address, which a move of its frame would change');
  state.setVcpuInfoAddress(1, undefined);
  memoryMap.unmapOverlay(SHARED_INFO_PAGE);
  assert.deepEqual(sync(), [['VCPU_INFO', KVM_XEN_NO_GPA]], 'none');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CpuidEntry } from '../kvm/system.js';
import { HYPERVISOR_LEAF_FIRST, HYPERVISOR_LEAF_LAST, vcpuCpuid } from './cpuid.js';

const e = (fn: number, fields: Partial<CpuidEntry> = {}): CpuidEntry => ({ function: fn, index: 0, indexed: false, eax: 0, ebx: 0, ecx: 0, edx: 0, ...fields });

/** "KVMKVMKVM\0\0\0" as KVM reports it in leaf 0x40000000. */
const kvmSignature = e(0x40000000, { eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d });

const SUPPORTED: CpuidEntry[] = [
  e(0, { eax: 0x1f, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 }),
  e(1, { eax: 0x000806ec, ebx: 0xff080800, ecx: 0xfffa3223, edx: 0x178bfbff }),
  e(0xb, { index: 0, indexed: true, eax: 1, ebx: 2, ecx: 0x100, edx: 0 }),
  e(0xb, { index: 1, indexed: true, eax: 4, ebx: 8, ecx: 0x201, edx: 0 }),
  e(0x1f, { index: 0, indexed: true, eax: 1, ebx: 2, ecx: 0x100, edx: 0x77 }),
  kvmSignature,
  e(0x40000001, { eax: 0x01007afb }),
  e(0x40000010, { eax: 1 }),
  e(0x4fffffff, { eax: 1 }),
  e(0x80000000, { eax: 0x80000008 }),
  e(0x80000001, { ecx: 0x121, edx: 0x2c100800 }),
];

const XEN: CpuidEntry[] = [
  e(0x40000000, { eax: 0x40000002, ebx: 0x566e6558, ecx: 0x65584d4d, edx: 0x4d4d566e }),
  e(0x40000001, { eax: 0x0004000e }),
];

test('KVM\'s hypervisor leaves are removed and the VMM\'s appended', () => {
  const out = vcpuCpuid(SUPPORTED, 0, XEN);
  const hv = out.filter((x) => x.function >= HYPERVISOR_LEAF_FIRST && x.function <= HYPERVISOR_LEAF_LAST);
  assert.deepEqual(hv, XEN);
  assert.ok(!out.some((x) => x.ebx === kvmSignature.ebx && x.ecx === kvmSignature.ecx), 'no KVMKVMKVM signature');
  assert.deepEqual(out.slice(-XEN.length), XEN, 'appended at the end');
  assert.equal(HYPERVISOR_LEAF_FIRST, 0x40000000);
  assert.equal(HYPERVISOR_LEAF_LAST, 0x4fffffff);
});

test('other leaves pass through in order', () => {
  const out = vcpuCpuid(SUPPORTED, 0, []);
  assert.deepEqual(out.map((x) => [x.function, x.index]), [[0, 0], [1, 0], [0xb, 0], [0xb, 1], [0x1f, 0], [0x80000000, 0], [0x80000001, 0]]);
  assert.deepEqual(out[0], SUPPORTED[0]);
  assert.deepEqual(out.at(-1), SUPPORTED.at(-1));
});

test('leaf 1 EBX[31:24] is the APIC id, the low bits kept', () => {
  for (const id of [0, 1, 7, 0x80, 0xff]) {
    const leaf1 = vcpuCpuid(SUPPORTED, id, []).find((x) => x.function === 1)!;
    assert.equal(leaf1.ebx, ((id << 24) | 0x080800) >>> 0, `apic id ${id}`);
    assert.ok(leaf1.ebx >= 0, 'unsigned');
    assert.equal(leaf1.eax, 0x000806ec);
    assert.equal(leaf1.ecx, 0xfffa3223);
    assert.equal(leaf1.edx, 0x178bfbff);
  }
});

test('leaves 0xB and 0x1F report the APIC id in EDX for every subleaf', () => {
  const out = vcpuCpuid(SUPPORTED, 5, []);
  const topo = out.filter((x) => x.function === 0xb || x.function === 0x1f);
  assert.equal(topo.length, 3);
  for (const x of topo) assert.equal(x.edx, 5);
  assert.deepEqual(topo.map((x) => [x.eax, x.ebx, x.ecx]), [[1, 2, 0x100], [4, 8, 0x201], [1, 2, 0x100]]);
});

test('the input entries are not modified', () => {
  const copy = structuredClone(SUPPORTED);
  const out = vcpuCpuid(SUPPORTED, 9, XEN);
  assert.deepEqual(SUPPORTED, copy);
  assert.notEqual(out.find((x) => x.function === 1), SUPPORTED[1]);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CpuidEntry } from '../kvm/system.js';
import { CPUID_1_ECX_HYPERVISOR, CPUID_1_EDX_HTT, HYPERVISOR_LEAF_FIRST, HYPERVISOR_LEAF_LAST, vcpuCpuid } from './cpuid.js';

const e = (fn: number, fields: Partial<CpuidEntry> = {}): CpuidEntry => ({ function: fn, index: 0, indexed: false, eax: 0, ebx: 0, ecx: 0, edx: 0, ...fields });
const leaf = (out: CpuidEntry[], fn: number, index = 0) => out.find((x) => x.function === fn && x.index === index)!;

/** "KVMKVMKVM\0\0\0" as KVM reports it in leaf 0x40000000. */
const kvmSignature = e(0x40000000, { eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d });

/**
 * KVM_GET_SUPPORTED_CPUID of upstream KVM on an Intel host: no hypervisor bit, no HTT, the host's APIC id (0x12) and
 * logical processor count (16) in leaf 1 EBX, the host's 8 cores in leaf 4, leaf 0xB zeroed but for the host's x2APIC id.
 */
const INTEL: CpuidEntry[] = [
  e(0, { eax: 0x1f, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 }), // GenuineIntel
  e(1, { eax: 0x000806ec, ebx: 0x12100800, ecx: 0x7ffa3223, edx: 0x078bfbff }),
  e(4, { index: 0, indexed: true, eax: 0x1c004121, ebx: 0x01c0003f, ecx: 0x3f }),
  e(4, { index: 1, indexed: true, eax: 0x1c004122, ebx: 0x01c0003f, ecx: 0x3f }),
  e(4, { index: 2, indexed: true, eax: 0x1c004143, ebx: 0x03c0003f, ecx: 0x3ff }),
  e(4, { index: 3, indexed: true, eax: 0x1c03c163, ebx: 0x03c0003f, ecx: 0x1fff, edx: 6 }),
  e(4, { index: 4, indexed: true }),
  e(0xb, { index: 0, indexed: true, edx: 0x12 }),
  kvmSignature,
  e(0x40000001, { eax: 0x01007afb }),
  e(0x40000010, { eax: 1 }),
  e(0x4fffffff, { eax: 1 }),
  e(0x80000000, { eax: 0x80000008 }),
  e(0x80000001, { ecx: 0x121, edx: 0x2c100800 }),
  e(0x80000008, { eax: 0x3027 }),
];

/** Upstream KVM on an AMD host: the host's 16 cores in leaf 0x80000008 ECX, leaf 0x8000001E zeroed. */
const AMD: CpuidEntry[] = [
  e(0, { eax: 0x10, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 }), // AuthenticAMD
  e(1, { eax: 0x00a00f11, ebx: 0x05100800, ecx: 0x7ef8320b, edx: 0x078bfbff }),
  e(0xb, { index: 0, indexed: true, edx: 5 }),
  e(0x80000000, { eax: 0x80000021 }),
  e(0x80000001, { ecx: 0x75c237ff, edx: 0x2fd3fbff }),
  e(0x80000008, { eax: 0x3030, ebx: 0x0100d000, ecx: 0x0000400f }),
  e(0x8000001e, {}),
];

const XEN: CpuidEntry[] = [
  e(0x40000000, { eax: 0x40000002, ebx: 0x566e6558, ecx: 0x65584d4d, edx: 0x4d4d566e }),
  e(0x40000001, { eax: 0x0004000e }),
];

test('KVM\'s hypervisor leaves are removed and the VMM\'s appended', () => {
  const out = vcpuCpuid(INTEL, 0, 1, XEN);
  const hv = out.filter((x) => x.function >= HYPERVISOR_LEAF_FIRST && x.function <= HYPERVISOR_LEAF_LAST);
  assert.deepEqual(hv, XEN);
  assert.ok(!out.some((x) => x.ebx === kvmSignature.ebx && x.ecx === kvmSignature.ecx), 'no KVMKVMKVM signature');
  assert.deepEqual(out.slice(-XEN.length), XEN, 'appended at the end');
  assert.equal(HYPERVISOR_LEAF_FIRST, 0x40000000);
  assert.equal(HYPERVISOR_LEAF_LAST, 0x4fffffff);
});

test('other leaves pass through in order, none added', () => {
  const out = vcpuCpuid(INTEL, 0, 1, []);
  assert.deepEqual(
    out.map((x) => [x.function, x.index]),
    INTEL.filter((x) => x.function < HYPERVISOR_LEAF_FIRST || x.function > HYPERVISOR_LEAF_LAST).map((x) => [x.function, x.index]),
  );
  assert.deepEqual(leaf(out, 0), INTEL[0]);
  assert.deepEqual(leaf(out, 0x80000001), leaf(INTEL, 0x80000001));
  assert.deepEqual(leaf(out, 0x80000008), leaf(INTEL, 0x80000008), 'no AMD topology on Intel');
  assert.deepEqual(vcpuCpuid(AMD, 0, 1, []).map((x) => [x.function, x.index]), AMD.map((x) => [x.function, x.index]));
});

test('leaf 1 ECX has the hypervisor bit, which KVM does not report, and nothing else changed', () => {
  for (const supported of [INTEL, AMD]) {
    const before = leaf(supported, 1);
    assert.equal(before.ecx & CPUID_1_ECX_HYPERVISOR, 0, 'as upstream KVM reports it');
    for (const id of [0, 3]) {
      const leaf1 = leaf(vcpuCpuid(supported, id, 4, []), 1);
      assert.equal(leaf1.ecx, (before.ecx | CPUID_1_ECX_HYPERVISOR) >>> 0);
      assert.equal(leaf1.eax, before.eax);
    }
  }
  // A hypervisor bit KVM does report stays set.
  const withBit = INTEL.map((x) => (x.function === 1 ? { ...x, ecx: 0xfffa3223 } : x));
  assert.equal(leaf(vcpuCpuid(withBit, 0, 1, []), 1).ecx, 0xfffa3223);
});

test('leaf 1 EBX: the vCPU\'s APIC id in [31:24], the vCPU count in [23:16], CLFLUSH kept; HTT set with more than one vCPU', () => {
  for (const id of [0, 1, 7, 0x3f]) {
    const leaf1 = leaf(vcpuCpuid(INTEL, id, 64, []), 1);
    assert.equal(leaf1.ebx, ((id << 24) | (64 << 16) | 0x0800) >>> 0, `apic id ${id}`);
    assert.equal(leaf1.edx, (0x078bfbff | CPUID_1_EDX_HTT) >>> 0);
  }
  const one = leaf(vcpuCpuid(INTEL, 0, 1, []), 1);
  assert.equal(one.ebx, 0x00010800);
  assert.equal(one.edx & CPUID_1_EDX_HTT, 0, 'no HTT for a single vCPU');
  const hostHtt = INTEL.map((x) => (x.function === 1 ? { ...x, edx: x.edx | CPUID_1_EDX_HTT } : x));
  assert.equal(leaf(vcpuCpuid(hostHtt, 0, 1, []), 1).edx & CPUID_1_EDX_HTT, 0, 'a host HTT bit is not passed on');
});

test('leaf 4 counts the vCPUs as the package\'s cores, in every valid subleaf', () => {
  const out = vcpuCpuid(INTEL, 2, 3, []);
  for (let i = 0; i < 4; i++) {
    const before = leaf(INTEL, 4, i);
    const after = leaf(out, 4, i);
    assert.equal(after.eax >>> 26, 2, `subleaf ${i}: 3 cores`);
    assert.equal(after.eax & 0x03ff_ffff, before.eax & 0x03ff_ffff, 'cache type, level and sharing kept');
    assert.deepEqual([after.ebx, after.ecx, after.edx], [before.ebx, before.ecx, before.edx]);
  }
  assert.deepEqual(leaf(out, 4, 4), leaf(INTEL, 4, 4), 'the terminating subleaf stays empty');
});

test('leaves 0xB and 0x1F: the x2APIC id in EDX; upstream KVM\'s "no topology" stays so', () => {
  const leafB = leaf(vcpuCpuid(INTEL, 5, 8, []), 0xb);
  assert.deepEqual([leafB.eax, leafB.ebx, leafB.ecx, leafB.edx], [0, 0, 0, 5]);
});

test('leaves 0xB and 0x1F: a host topology an older KVM passes through is restated for the vCPUs', () => {
  const old = [
    ...INTEL.slice(0, 2),
    e(0xb, { index: 0, indexed: true, eax: 1, ebx: 2, ecx: 0x100, edx: 0x12 }), // SMT: 2 threads
    e(0xb, { index: 1, indexed: true, eax: 4, ebx: 16, ecx: 0x201, edx: 0x12 }), // core: 16 logical processors
    e(0xb, { index: 2, indexed: true, ecx: 2, edx: 0x12 }), // invalid
    e(0x1f, { index: 0, indexed: true, eax: 1, ebx: 2, ecx: 0x100, edx: 0x12 }),
    e(0x1f, { index: 1, indexed: true, eax: 3, ebx: 8, ecx: 0x201, edx: 0x12 }),
    e(0x1f, { index: 2, indexed: true, eax: 5, ebx: 16, ecx: 0x502, edx: 0x12 }), // die
  ];
  const out = vcpuCpuid(old, 5, 6, []);
  const topo = out.filter((x) => x.function === 0xb || x.function === 0x1f).map((x) => [x.function, x.index, x.eax, x.ebx, x.ecx, x.edx]);
  assert.deepEqual(topo, [
    [0xb, 0, 0, 1, 0x100, 5],
    [0xb, 1, 3, 6, 0x201, 5],
    [0xb, 2, 0, 0, 2, 5],
    [0x1f, 0, 0, 1, 0x100, 5],
    [0x1f, 1, 3, 6, 0x201, 5],
    [0x1f, 2, 3, 6, 0x502, 5],
  ]);
});

test('AMD: leaf 0x8000001E gives the APIC id and core id, leaf 0x80000008 the vCPUs as cores', () => {
  for (const [id, vcpus, apicIdSize] of [[0, 1, 0], [1, 2, 1], [4, 5, 3], [63, 64, 6]]) {
    const out = vcpuCpuid(AMD, id, vcpus, []);
    const ext = leaf(out, 0x8000001e);
    assert.deepEqual([ext.eax, ext.ebx, ext.ecx, ext.edx], [id, id, 0, 0], `vCPU ${id} of ${vcpus}`);
    const sizes = leaf(out, 0x80000008);
    assert.equal(sizes.ecx, (apicIdSize << 12) | (vcpus - 1));
    assert.deepEqual([sizes.eax, sizes.ebx, sizes.edx], [0x3030, 0x0100d000, 0]);
    assert.equal(leaf(out, 0xb).edx, id);
    assert.equal(leaf(out, 1).ebx >>> 24, id);
  }
});

test('the input entries are not modified', () => {
  for (const supported of [INTEL, AMD]) {
    const copy = structuredClone(supported);
    const out = vcpuCpuid(supported, 9, 12, XEN);
    assert.deepEqual(supported, copy);
    assert.notEqual(leaf(out, 1), leaf(supported, 1));
  }
});

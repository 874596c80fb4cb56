import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuVendor, decodeCpuid, encodeCpuid, Kvm, KvmUnavailableError, type CpuidEntry } from './system.js';

test('a missing KVM device is one actionable error', () => {
  assert.throws(() => Kvm.open('/nonexistent/kvm'), (e: Error) => e instanceof KvmUnavailableError && /^\/nonexistent\/kvm does not exist: this host has no KVM/.test(e.message));
});

test('a device that is not KVM is refused', () => {
  assert.throws(() => Kvm.open('/dev/null'), (e: Error) => e instanceof KvmUnavailableError && e.message === '/dev/null is not a KVM device');
});

test('CPUID entries round-trip through the kvm_cpuid2 encoding', () => {
  const entries = [
    { function: 0, index: 0, indexed: false, eax: 0xd, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 },
    { function: 7, index: 1, indexed: true, eax: 1, ebx: 0xffffffff, ecx: 0, edx: 0x80000000 },
  ];
  assert.deepEqual(decodeCpuid(encodeCpuid(entries)), entries);
});

test('the CPU vendor comes from the leaf 0 signature: AMD and Hygon follow AMD, the others Intel', () => {
  const leaf0 = (sig: string): CpuidEntry[] => {
    const v = new DataView(new TextEncoder().encode(sig).buffer);
    return [{ function: 0, index: 0, indexed: false, eax: 0xd, ebx: v.getUint32(0, true), edx: v.getUint32(4, true), ecx: v.getUint32(8, true) }];
  };
  assert.equal(cpuVendor(leaf0('AuthenticAMD')), 'amd');
  assert.equal(cpuVendor(leaf0('HygonGenuine')), 'amd');
  assert.equal(cpuVendor(leaf0('GenuineIntel')), 'intel');
  assert.equal(cpuVendor(leaf0('CentaurHauls')), 'intel');
  assert.equal(cpuVendor([]), 'intel');
  // Leaf 0 as KVM reports it on an AMD host: EBX "Auth", EDX "enti", ECX "cAMD".
  assert.equal(cpuVendor([{ function: 0, index: 0, indexed: false, eax: 0xd, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 }]), 'amd');
});

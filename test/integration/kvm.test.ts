// The host's KVM, as xenkvm finds it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { caps } from '../../src/kvm/abi.js';
import { Kvm } from '../../src/kvm/system.js';
import { requireKvm } from '../guest-runner.js';

requireKvm();

test('the host KVM has what xenkvm needs and reports its CPUID', () => {
  const kvm = Kvm.open();
  try {
    kvm.requireExtensions();
    assert.ok(kvm.checkExtension(caps.KVM_CAP_NR_MEMSLOTS) >= 32);
    assert.ok(kvm.vcpuMmapSize() >= 4096);
    const cpuid = kvm.supportedCpuid();
    assert.ok(cpuid.some((e) => e.function === 0 && e.eax >= 1), 'leaf 0');
    assert.ok(cpuid.some((e) => e.function === 1), 'leaf 1');
  } finally {
    kvm.close();
  }
});

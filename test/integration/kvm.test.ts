// The host's KVM, as xenkvm finds it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { caps } from '../../src/kvm/abi.js';
import { realtimeNs } from '../../src/common/clock.js';
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

for (const withRealtime of [true, false]) {
  test(`kvmclock set to follow a clock starts at it or a hair ahead, never behind (${withRealtime ? 'KVM_CLOCK_REALTIME' : 'the value alone, as Linux 5.12–5.15 take it'})`, () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    try {
      // A clock far from kvmclock's own, so that a set that did nothing cannot pass.
      const offset = 1_000_000_000_000n;
      const now = () => process.hrtime.bigint() + offset;
      vm.setClockFollowing(now, realtimeNs, withRealtime);
      const before = now();
      const clock = vm.getClock().clock;
      const after = now();
      assert.ok(clock >= before, `kvmclock ${before - clock} ns behind`);
      assert.ok(clock <= after + 5_000_000n, `kvmclock ${clock - after} ns ahead`);
    } finally {
      vm.close();
      kvm.close();
    }
  });
}

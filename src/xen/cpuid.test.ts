// The Xen time leaf (0x40000003): the TSC frequency and scale, and whether the TSC is reliable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XEN_CPUID_FIRST_LEAF, XEN_CPUID_LEAF, XEN_CPUID_TIME_FLAG, XEN_CPUID_TSC_MODE } from './abi/cpuid.js';
import type { XenConfig } from './config.js';
import { xenCpuidLeaves } from './cpuid.js';
import { tscScale } from './time.js';
import { GrantTable } from './gnttab/table.js';

const config = (tscStable: boolean): XenConfig => ({
  version: { major: 4, minor: 17 }, domid: 1, handle: new Uint8Array(16), tscKhz: 2_096_024,
  pvclock: { tscTimestamp: 0n, systemTime: 0n, ...tscScale(2_096_024_000) }, tscStable, bootWallNs: 0n, bootMonotonicNs: 0n, kvmTime: false, evtchnFastPath: true, evtchnFifo: true,
  grantTable: GrantTable.createHandle(3, 1),
  cpuPolicy: { cr4Valid: 0n, eferValid: 0n },
  hypercallEntry: 'out',
});
const timeLeaf = (c: XenConfig, subleaf: number) => {
  const e = xenCpuidLeaves(c, 0).find((l) => l.function === XEN_CPUID_FIRST_LEAF + XEN_CPUID_LEAF.time && l.index === subleaf);
  assert.ok(e?.indexed, `subleaf ${subleaf}`);
  return e;
};

test('time leaf: the TSC is reported reliable only where KVM keeps the vCPUs\' TSCs in step; never emulated', () => {
  for (const stable of [true, false]) {
    const l = timeLeaf(config(stable), 0);
    assert.equal(l.eax, stable ? XEN_CPUID_TIME_FLAG.tsc_reliable : 0, `stable ${stable}`);
    assert.equal(l.ebx, XEN_CPUID_TSC_MODE.default);
    assert.equal(l.ecx, 2_096_024);
  }
});

test('time leaf: subleaf 1 is the pvclock scale, subleaf 2 the TSC frequency', () => {
  const c = config(false);
  const { mul, shift } = tscScale(2_096_024_000);
  assert.deepEqual([timeLeaf(c, 1).ecx, timeLeaf(c, 1).edx], [mul, shift & 0xff]);
  assert.equal(timeLeaf(c, 2).eax, 2_096_024);
});

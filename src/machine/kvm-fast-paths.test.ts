import assert from 'node:assert/strict';
import { test } from 'node:test';
import { xenHvmConfig } from '../kvm/abi.js';
import { ALL_KVM_FAST_PATHS, kvmFastPathsOn, parseKvmFastPaths } from './kvm-fast-paths.js';

test('--kvm-fast-paths takes all, none, or a list of known names', () => {
  assert.deepEqual(parseKvmFastPaths('all'), ALL_KVM_FAST_PATHS);
  assert.deepEqual(parseKvmFastPaths('none'), []);
  assert.deepEqual(parseKvmFastPaths('version'), ['version']);
  assert.deepEqual(parseKvmFastPaths('version, version'), ['version']);
  assert.deepEqual(parseKvmFastPaths('time,version'), ['time', 'version']);
  assert.deepEqual(parseKvmFastPaths('timer'), ['timer', 'time'], 'timer brings time along');
  assert.deepEqual(parseKvmFastPaths('evtchn'), ['evtchn', 'time'], 'evtchn brings time along');
  assert.deepEqual(parseKvmFastPaths('shinfo-hva'), ['shinfo-hva', 'time'], 'shinfo-hva brings time along');
  assert.equal(parseKvmFastPaths('version,timer-in-userspace'), undefined);
  assert.equal(parseKvmFastPaths(''), undefined);
  assert.equal(parseKvmFastPaths('toString'), undefined);
});

test('a fast path is on only where KVM intercepts Xen hypercalls and has what it needs', () => {
  const full = xenHvmConfig.INTERCEPT_HCALL | xenHvmConfig.EVTCHN_SEND;
  assert.deepEqual(kvmFastPathsOn(['version'], full), { on: ['version'], unavailable: [] });
  assert.deepEqual(kvmFastPathsOn(['version'], xenHvmConfig.INTERCEPT_HCALL), { on: [], unavailable: ['version'] });
  assert.deepEqual(kvmFastPathsOn(['version'], xenHvmConfig.EVTCHN_SEND), { on: [], unavailable: ['version'] });
  assert.deepEqual(kvmFastPathsOn([], full), { on: [], unavailable: [] });
  // KVM before EVTCHN_SEND (Linux 5.12 to 5.19) keeps time records, not the version.
  const older = xenHvmConfig.INTERCEPT_HCALL | xenHvmConfig.SHARED_INFO;
  assert.deepEqual(kvmFastPathsOn(['version', 'time', 'timer'], older), { on: ['time'], unavailable: ['version', 'timer'] });
  assert.deepEqual(kvmFastPathsOn(['timer'], full), { on: [], unavailable: ['timer'] }, 'no time records without SHARED_INFO: no timer');
  assert.deepEqual(kvmFastPathsOn(['timer', 'time'], full | xenHvmConfig.SHARED_INFO), { on: ['timer', 'time'], unavailable: [] });
  assert.deepEqual(kvmFastPathsOn(['evtchn', 'time'], older), { on: ['time'], unavailable: ['evtchn'] }, 'no event channels in KVM before EVTCHN_SEND');
  assert.deepEqual(kvmFastPathsOn(['evtchn'], full), { on: [], unavailable: ['evtchn'] }, 'no time records without SHARED_INFO: no event channels');
  // Linux 6.1's KVM has no host addresses for shared_info; 6.9's has.
  const linux61 = full | xenHvmConfig.SHARED_INFO;
  assert.deepEqual(kvmFastPathsOn(['shinfo-hva', 'time'], linux61), { on: ['time'], unavailable: ['shinfo-hva'] });
  assert.deepEqual(kvmFastPathsOn(['shinfo-hva', 'time'], linux61 | xenHvmConfig.SHARED_INFO_HVA), { on: ['shinfo-hva', 'time'], unavailable: [] });
});

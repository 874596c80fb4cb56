// xen_version as an unprivileged HVM domU sees it, in both ABIs, against a
// fake guest: a window of bytes at a guest-virtual address, faulting outside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../common/captured-logger.js';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { HYPERCALL } from './abi/hypercalls.js';
import type { Abi } from './abi/layout.js';
import { XENFEAT, XENVER } from './abi/version.js';
import type { XenConfig } from './config.js';
import { HypercallDispatcher, type HypercallContext } from './hypercall.js';
import { serveRoutes } from './routes.js';
import { HVM_FEATURES, versionOps, XEN_VERSION_ROUTE } from './version.js';
import { FakeGuest } from './fake-guest.js';
import { GrantTable } from './gnttab/table.js';

const ABIS: Abi[] = ['native', 'compat'];
const FILL = 0xaa;
const BASE = 0x7000_1000n;

const config = (over: Partial<XenConfig> = {}): XenConfig => ({
  version: { major: 4, minor: 17 },
  domid: 1,
  handle: Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i),
  tscKhz: 2_000_000,
  pvclock: { tscTimestamp: 0n, systemTime: 0n, mul: 2 ** 31, shift: 0 },
  tscStable: true,
  bootWallNs: 0n,
  bootMonotonicNs: 0n,
  evtchnFastPath: true,
  evtchnFifo: true,
  grantTable: GrantTable.createHandle(3, 1),
  kvmTime: false,
  cpuPolicy: { cr4Valid: 0n, eferValid: 0n },
  hypercallEntry: 'out',
  ...over,
});

function setup(abi: Abi, cfg = config(), size = 4096) {
  const guest = new FakeGuest(BASE, size, FILL);
  const ctx: HypercallContext = { vcpu: 0, abi, guest: guest as unknown as GuestVirtual };
  const d = new HypercallDispatcher(capturedLogger().logger);
  serveRoutes(d, 'vcpu', [XEN_VERSION_ROUTE], [versionOps(cfg)]);
  /** RAX of xen_version(cmd, arg): a value, or a negative errno. */
  const run = (cmd: number, arg: bigint = BASE) => Number(d.dispatch(ctx, 0, HYPERCALL.xen_version, [BigInt(cmd), arg, 0n, 0n, 0n]));
  return { guest, ctx, run, cfg };
}

/** The C string at the start of `bytes`, and whether everything after its NUL is NUL too. */
function cString(bytes: Uint8Array): { text: string; padded: boolean } {
  const nul = bytes.indexOf(0);
  assert.ok(nul >= 0, 'NUL-terminated');
  return { text: new TextDecoder().decode(bytes.subarray(0, nul)), padded: bytes.subarray(nul).every((b) => b === 0) };
}

test('XENVER_version: major:minor (16:16) from the config, no memory touched', () => {
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    assert.equal(run(XENVER.version, 0n), 0x0004_0011);
    assert.ok(guest.bytes.every((b) => b === FILL));
    const other = setup(abi, config({ version: { major: 4, minor: 19 } }));
    assert.equal(other.run(XENVER.version, 0n), 0x0004_0013);
    const big = setup(abi, config({ version: { major: 0x7fff, minor: 0xffff } }));
    assert.equal(big.run(XENVER.version, 0n), 0x7fff_ffff);
  }
});

test('XENVER_version: a major of 0x8000 or more is still a positive major:minor, not an error', () => {
  const { run } = setup('native', config({ version: { major: 0x8000, minor: 1 } }));
  assert.equal(run(XENVER.version, 0n), 0x8000_0001);
  const top = setup('native', config({ version: { major: 0xffff, minor: 0xffff } }));
  assert.equal(top.run(XENVER.version, 0n), 0xffff_ffff);
});

test('XENVER_extraversion: NUL-padded to all 16 bytes', () => {
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    assert.equal(run(XENVER.extraversion), 0);
    const s = cString(guest.bytes.subarray(0, 16));
    assert.equal(s.text, '.0');
    assert.ok(s.padded, 'every byte up to 16 written');
    assert.equal(guest.bytes[16], FILL, 'nothing past 16 bytes');
  }
});

test('XENVER_compile_info: four NUL-padded strings at 0, 64, 80, 112 (144 bytes) in both ABIs', () => {
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    assert.equal(run(XENVER.compile_info), 0);
    const field = (off: number, len: number) => cString(guest.bytes.subarray(off, off + len));
    assert.deepEqual(field(0, 64), { text: 'gcc', padded: true });
    assert.deepEqual(field(64, 16), { text: 'xen', padded: true });
    assert.deepEqual(field(80, 32), { text: '', padded: true });
    assert.deepEqual(field(112, 32), { text: 'Tue Oct 17 00:00:00 UTC 2023', padded: true });
    assert.equal(guest.bytes[144], FILL);
  }
});

test('XENVER_capabilities: the HVM capabilities, padded to 1024 bytes', () => {
  for (const abi of ABIS) {
    const { guest, run } = setup(abi, config(), 2048);
    assert.equal(run(XENVER.capabilities), 0);
    const s = cString(guest.bytes.subarray(0, 1024));
    assert.deepEqual(s.text.split(' '), ['hvm-3.0-x86_32', 'hvm-3.0-x86_32p', 'hvm-3.0-x86_64']);
    assert.ok(s.padded);
    assert.equal(guest.bytes[1024], FILL);
  }
});

test('XENVER_changeset: padded to 64 bytes', () => {
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    assert.equal(run(XENVER.changeset), 0);
    const s = cString(guest.bytes.subarray(0, 64));
    assert.ok(s.text.length > 0);
    assert.ok(s.padded);
    assert.equal(guest.bytes[64], FILL);
  }
});

test('XENVER_platform_parameters: before 4.18 native HYPERVISOR_VIRT_START (8 bytes), compat 0 (4 bytes)', () => {
  const n = setup('native');
  assert.equal(n.run(XENVER.platform_parameters), 0);
  assert.equal(new DataView(n.guest.bytes.buffer).getBigUint64(0, true), 0xffff_8000_0000_0000n);
  assert.equal(n.guest.bytes[8], FILL);
  const c = setup('compat');
  assert.equal(c.run(XENVER.platform_parameters), 0);
  assert.deepEqual([...c.guest.bytes.subarray(0, 4)], [0, 0, 0, 0]);
  assert.equal(c.guest.bytes[4], FILL, 'a compat xen_ulong_t is 4 bytes');
});

test('XENVER_platform_parameters: from 4.18 on, 0 for a 64-bit HVM caller too', () => {
  for (const version of [{ major: 4, minor: 18 }, { major: 4, minor: 19 }, { major: 5, minor: 0 }]) {
    const n = setup('native', config({ version }));
    assert.equal(n.run(XENVER.platform_parameters), 0);
    assert.equal(new DataView(n.guest.bytes.buffer).getBigUint64(0, true), 0n, `${version.major}.${version.minor}`);
    assert.equal(n.guest.bytes[8], FILL);
    const c = setup('compat', config({ version }));
    assert.equal(c.run(XENVER.platform_parameters), 0);
    assert.deepEqual([...c.guest.bytes.subarray(0, 5)], [0, 0, 0, 0, FILL]);
  }
  const old = setup('native', config({ version: { major: 3, minor: 99 } }));
  old.run(XENVER.platform_parameters);
  assert.equal(new DataView(old.guest.bytes.buffer).getBigUint64(0, true), 0xffff_8000_0000_0000n);
});

test('XENVER_get_features: submap 0 holds the features of a translated HVM domU', () => {
  const expected =
    (1 << XENFEAT.writable_page_tables) |
    (1 << XENFEAT.auto_translated_physmap) |
    (1 << XENFEAT.hvm_callback_vector) |
    (1 << XENFEAT.hvm_safe_pvclock) |
    (1 << XENFEAT.memory_op_vnode_supported) |
    (1 << XENFEAT.not_direct_mapped);
  assert.equal(expected, 0x1_2305);
  assert.equal(HVM_FEATURES, expected);
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    const view = new DataView(guest.bytes.buffer);
    view.setUint32(0, 0, true); // IN: submap_idx
    assert.equal(run(XENVER.get_features), 0);
    assert.equal(view.getUint32(0, true), 0, 'submap_idx');
    const submap = view.getUint32(4, true);
    assert.equal(submap, 0x1_2305);
    for (const bit of ['hvm_callback_vector', 'hvm_safe_pvclock', 'auto_translated_physmap', 'writable_page_tables', 'memory_op_vnode_supported', 'not_direct_mapped'] as const) {
      assert.ok(submap & (1 << XENFEAT[bit]), bit);
    }
    assert.equal(submap & (1 << XENFEAT.dom0), 0, 'not dom0');
    assert.equal(submap & (1 << XENFEAT.direct_mapped), 0, 'not direct-mapped');
    assert.equal(submap & (1 << XENFEAT.hvm_pirqs), 0, 'no PIRQs');
    assert.equal(submap & (1 << XENFEAT.supervisor_mode_kernel), 0);
    assert.equal(guest.bytes[8], FILL);
  }
});

test('XENVER_get_features: any other submap is -EINVAL and nothing is written', () => {
  for (const abi of ABIS) {
    for (const idx of [1, 2, 0xffff_ffff]) {
      const { run, guest } = setup(abi);
      new DataView(guest.bytes.buffer).setUint32(0, idx, true);
      assert.equal(run(XENVER.get_features), -22);
      assert.equal(new DataView(guest.bytes.buffer).getUint32(0, true), idx);
      assert.ok(guest.bytes.subarray(4).every((b) => b === FILL));
    }
  }
});

test('XENVER_pagesize: 4096 with a null argument, -EINVAL otherwise', () => {
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    assert.equal(run(XENVER.pagesize, 0n), 4096);
    assert.equal(run(XENVER.pagesize, BASE), -22);
    assert.equal(run(XENVER.pagesize, 1n), -22);
    assert.ok(guest.bytes.every((b) => b === FILL));
  }
});

test('XENVER_guest_handle: the configured 16-byte handle', () => {
  for (const abi of ABIS) {
    const { run, guest, cfg } = setup(abi);
    assert.equal(run(XENVER.guest_handle), 0);
    assert.deepEqual(guest.bytes.subarray(0, 16), cfg.handle);
    assert.equal(guest.bytes[16], FILL);
  }
});

test('XENVER_commandline: denied: just "<denied>" and its NUL, the rest of the buffer untouched', () => {
  for (const abi of ABIS) {
    const { guest, run } = setup(abi, config(), 2048);
    assert.equal(run(XENVER.commandline), 0);
    assert.deepEqual(guest.bytes.subarray(0, 9), new TextEncoder().encode('<denied>\0'));
    assert.ok(guest.bytes.subarray(9).every((b) => b === FILL), 'only 9 bytes written');
  }
});

test('XENVER_build_id: -EPERM; unknown sub-ops: -ENOSYS', () => {
  for (const abi of ABIS) {
    const { run, guest } = setup(abi);
    assert.equal(run(XENVER.build_id), -1);
    for (const cmd of [11, 12, 0x7fff_ffff, 0xffff_ffff]) {
      assert.equal(run(cmd), -38, `cmd ${cmd}`);
    }
    assert.ok(guest.bytes.every((b) => b === FILL));
  }
});

test('through the dispatcher: values, errors and bad pointers (-EFAULT)', () => {
  const { logger, errors } = capturedLogger();
  const d = new HypercallDispatcher(logger);
  serveRoutes(d, 'vcpu', [XEN_VERSION_ROUTE], [versionOps(config())]);
  for (const abi of ABIS) {
    const { ctx } = setup(abi);
    const call = (cmd: number | bigint, arg: bigint) => d.dispatch(ctx, 0, HYPERCALL.xen_version, [BigInt(cmd), arg, 0n, 0n, 0n]);
    assert.equal(call(XENVER.version, 0n), 0x4_0011n);
    // The sub-op is the low 32 bits of the first argument.
    assert.equal(call((1n << 32n) | BigInt(XENVER.pagesize), 0n), 4096n);
    assert.equal(call(XENVER.pagesize, 8n), -22n);
    assert.equal(call(XENVER.build_id, BASE), -1n);
    assert.equal(call(XENVER.commandline, BASE), 0n);
    assert.equal(call(99, BASE), -38n);
    // Bad pointers: outside the window, and straddling its end.
    for (const cmd of [XENVER.extraversion, XENVER.compile_info, XENVER.capabilities, XENVER.changeset, XENVER.platform_parameters,
      XENVER.get_features, XENVER.guest_handle, XENVER.commandline]) {
      assert.equal(call(cmd, 0n), -14n, `cmd ${cmd} at NULL`);
      assert.equal(call(cmd, 0xdead_0000n), -14n, `cmd ${cmd} unmapped`);
      assert.equal(call(cmd, BASE + 4096n - 2n), -14n, `cmd ${cmd} across the end`);
    }
    // A CPL 3 caller gets -EPERM for everything.
    assert.equal(d.dispatch(ctx, 3, HYPERCALL.xen_version, [BigInt(XENVER.version), 0n, 0n, 0n, 0n]), -1n);
  }
  assert.equal(errors().length, 0, 'no failure inside xenkvm');
});

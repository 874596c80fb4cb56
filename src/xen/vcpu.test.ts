// vcpu_op and vm_assist through a dispatcher, with real guest memory and real
// page walks: paging off, or small page tables (4-level for 64-bit callers,
// 32-bit non-PAE for compat) that map two non-adjacent frames adjacently.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../common/captured-logger.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestVirtual } from '../memory/guest-virtual.js';
import { MemoryMap } from '../memory/memory-map.js';
import type { PagingState } from '../memory/page-walker.js';
import { HYPERCALL } from './abi/hypercalls.js';
import type { Abi } from './abi/layout.js';
import { sharedInfoLayout, vcpuTimeInfo, XEN_PVCLOCK_TSC_STABLE_BIT } from './abi/shared-info.js';
import { RUNSTATE, VCPU_SSHOTTMR_future, VCPUOP, vcpuRunstateInfo, vcpuSetPeriodicTimer, vcpuSetSingleshotTimer } from './abi/vcpu.js';
import { VMASST_CMD, VMASST_TYPE } from './abi/xen.js';
import type { XenConfig } from './config.js';
import { AreaKind, DomainState } from './domain-state.js';
import { HypercallDispatcher, type HypercallContext } from './hypercall.js';
import { encodeRunstate, recordFromWords, RunstateAccount } from './runstate.js';
import { bytesArea, SHARED_INFO_PAGE, writeVcpuTime } from './shared-info.js';
import { pvclockRead, TSC_STABILITY_RECHECK_MS, VcpuClock, type PvclockParams } from './time.js';
import { serveRoutes } from './routes.js';
import { rewriteVcpuTime, SET_TIMER_OP_ROUTE, VCPU_OP_ROUTE, vcpuOps, VM_ASSIST_ROUTE } from './vcpu.js';
import { TimerState } from './timers.js';
import { GrantTable } from './gnttab/table.js';

const MiB = 1024 * 1024;
const PAGE = 4096;
const ARG_GPA = 0x1000; // identity-mapped in every paging mode
const ARG = BigInt(ARG_GPA);
const FRAME_A = 0x5_0000;
const FRAME_B = 0x3_0000; // below A: the two frames are neither adjacent nor in order
const VA_AREA = 0x20_0000n; // VA_AREA → FRAME_A, VA_AREA + 4K → FRAME_B, VA_AREA + 8K unmapped
const VA_UNMAPPED = 0x40_0000n;
const TABLES = 0x10_0000; // page tables are built from here up
const CANARY = 0xa5;
const P: PvclockParams = { tscTimestamp: 0x1111_2222_3333n, systemTime: 0x4444_5555n, mul: 0x9876_5432, shift: -1 };

const FLAT: PagingState = { cr0: 1, cr3: 0, cr4: 0, efer: 0 };

/** `kvmTime`: KVM writes the time records, and KVM's last record for vCPU 0 is `kvmRecord.value`. */
function setup(t: { after(fn: () => void): void }, options: { kvmTime?: { value: PvclockParams | undefined } } = {}) {
  const mem = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 4);
  t.after(() => mem.dispose());
  const memoryMap = new MemoryMap({ setUserMemoryRegion: () => {} }, mem, 32);
  const state = DomainState.create(2);
  const clock = { now: 1_000n, halted: 0n };
  const self = new RunstateAccount(0, state, mem, () => clock.now, () => clock.halted);
  const other = new RunstateAccount(1, state, mem, () => clock.now, () => clock.halted);
  self.transition(RUNSTATE.running); // the caller is running
  const config: XenConfig = {
    version: { major: 4, minor: 17 }, domid: 1, handle: new Uint8Array(16), tscKhz: 2_000_000, pvclock: P, tscStable: true, bootWallNs: 0n, bootMonotonicNs: 0n, kvmTime: options.kvmTime !== undefined, evtchnFastPath: true, evtchnFifo: true,
    grantTable: GrantTable.createHandle(3, 1),
    cpuPolicy: { cr4Valid: 0n, eferValid: 0n },
  hypercallEntry: 'out',
  };
  // The calling vCPU's TSC and KVM's word on the TSCs, as the vCPU thread reads them.
  const kvmClock = { tsc: P.tscTimestamp, stable: true, ms: 0, reads: 0 };
  const kvmRecord = options.kvmTime && { kvmRecord: () => options.kvmTime!.value };
  const vcpuClock = new VcpuClock(P, true, { tsc: () => (kvmClock.reads++, kvmClock.tsc), tscStable: () => kvmClock.stable, ...kvmRecord }, () => kvmClock.ms);
  const timers = TimerState.create(2);
  const { logger, errors } = capturedLogger();
  const dispatcher = new HypercallDispatcher(logger);
  const forwarded: { ctx: HypercallContext; args: bigint[] }[] = [];
  const forward = (ctx: HypercallContext, nr: number, args: readonly bigint[]) => {
    assert.equal(nr, HYPERCALL.vcpu_op);
    forwarded.push({ ctx, args: [...args] });
    return 0x77n;
  };
  const marked: number[] = [];
  /** The vCPUs whose threads were told their time records moved (only where KVM writes them). */
  const moved: number[] = [];
  // As Xen's vcpu_mark_events_pending: set upcall_pending where the vcpu_info now is.
  const markEventsPending = (v: number) => {
    marked.push(v);
    const gpa = state.vcpuInfoAddress(v);
    if (gpa !== undefined) mem.writeU8(gpa, 1);
  };
  serveRoutes(dispatcher, 'vcpu', [SET_TIMER_OP_ROUTE, VM_ASSIST_ROUTE, VCPU_OP_ROUTE], vcpuOps({ config, state, memory: mem, self: { vcpu: 0, runstate: self }, systemTime: () => clock.now, clock: vcpuClock, markEventsPending, timeRecordsMoved: (v) => moved.push(v), timers }), forward);
  t.after(() => assert.deepEqual(errors(), [], 'no failure inside xenkvm'));

  // Page tables.
  let next = TABLES;
  const alloc = () => {
    const gpa = next;
    next += PAGE;
    mem.fill(gpa, PAGE, 0);
    return gpa;
  };
  const root = alloc();
  const mapLong = (va: bigint, gpa: number) => {
    let table = root;
    for (let level = 4; level > 1; level--) {
      const ea = table + Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn) * 8;
      let e = mem.readU64(ea);
      if (!(e & 1n)) {
        e = BigInt(alloc()) | 3n;
        mem.writeU64(ea, e);
      }
      table = Number(e & 0xf_ffff_ffff_f000n);
    }
    mem.writeU64(table + Number((va >> 12n) & 0x1ffn) * 8, BigInt(gpa) | 3n);
  };
  const pd = alloc();
  const map32 = (va: bigint, gpa: number) => {
    const v = Number(va);
    const pde = pd + (v >>> 22) * 4;
    let e = mem.readU32(pde);
    if (!(e & 1)) {
      e = alloc() | 3;
      mem.writeU32(pde, e);
    }
    mem.writeU32((e & ~0xfff) + ((v >>> 12) & 0x3ff) * 4, gpa | 3);
  };
  for (const map of [mapLong, map32]) {
    map(ARG, ARG_GPA);
    map(VA_AREA, FRAME_A);
    map(VA_AREA + 0x1000n, FRAME_B);
  }
  const tablesEnd = next;
  const LONG: PagingState = { cr0: 0x8000_0011, cr3: root, cr4: 0x20, efer: 0x500 };
  const PROT32: PagingState = { cr0: 0x8000_0011, cr3: pd, cr4: 0, efer: 0 };
  /** The paging a caller of each ABI uses in these tests. */
  const pagingFor = (abi: Abi) => (abi === 'native' ? LONG : PROT32);

  const dispatch = (abi: Abi, paging: PagingState, nr: number, args: bigint[]) =>
    dispatcher.dispatch({ vcpu: 0, abi, guest: new GuestVirtual(mem, paging) }, 0, nr, [...args, 0n, 0n, 0n, 0n, 0n].slice(0, 5));
  const vcpuOp = (abi: Abi, op: number, vcpuid: number | bigint, arg?: Uint8Array, paging = pagingFor(abi)) => {
    if (arg) mem.write(ARG_GPA, arg);
    return dispatch(abi, paging, HYPERCALL.vcpu_op, [BigInt(op), BigInt(vcpuid), ARG]);
  };
  const vmAssist = (cmd: bigint | number, type: bigint | number) => dispatch('native', LONG, HYPERCALL.vm_assist, [BigInt(cmd), BigInt(type)]);
  const canaries = () => {
    mem.fill(FRAME_A, PAGE, CANARY);
    mem.fill(FRAME_B, PAGE, CANARY);
  };
  /** The 8K the guest sees at VA_AREA: FRAME_A then FRAME_B. */
  const window = () => {
    const out = new Uint8Array(2 * PAGE);
    out.set(mem.read(FRAME_A, PAGE), 0);
    out.set(mem.read(FRAME_B, PAGE), PAGE);
    return out;
  };
  /** All of RAM but the page tables (whose accessed/dirty bits a walk may set). */
  const ramSnapshot = () => {
    const all = mem.read(0, 2 * MiB);
    all.fill(0, TABLES, tablesEnd);
    return all;
  };
  const rewriteTime = (vcpu: number) => rewriteVcpuTime({ config, state, memory: mem, clock: vcpuClock }, vcpu);
  return { mem, memoryMap, state, clock, self, other, forwarded, moved, dispatch, vcpuOp, vmAssist, canaries, window, ramSnapshot, LONG, PROT32, pagingFor, kvmClock, vcpuClock, timers, rewriteTime };
}

const u64le = (v: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
};
/** vcpu_register_vcpu_info: mfn u64, offset u32, rsvd u32 — 16 bytes in both ABIs. */
const vcpuInfoArg = (mfn: bigint, offset: number) => {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, mfn, true);
  v.setUint32(8, offset, true);
  return b;
};
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const ABIS: Abi[] = ['native', 'compat'];

// ---- register_vcpu_info ---------------------------------------------------

/** Fills the legacy vcpu_info of `vcpu` in shared_info with recognisable content. */
function legacyVcpuInfo(mem: GuestMemory, abi: Abi, vcpu: number): Uint8Array {
  const si = mem.overlayPage(SHARED_INFO_PAGE);
  const at = sharedInfoLayout[abi].vcpuInfo(vcpu);
  for (let i = 0; i < 64; i++) si[at + i] = 0x30 + i;
  si[at] = 0; // evtchn_upcall_pending
  si[at + 1] = 1; // evtchn_upcall_mask
  dv(si).setUint32(at + 32, 4, true); // time.version
  return si.slice(at, at + 64);
}

test('register_vcpu_info (native shared_info): copies the legacy vcpu_info, marks everything pending, writes the time at +32', (t) => {
  const { mem, state, vcpuOp, ramSnapshot } = setup(t);
  const legacy = legacyVcpuInfo(mem, 'native', 0);
  const gpa = 0x40_080;
  const before = ramSnapshot();
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x40n, 0x80)), 0n);
  assert.equal(state.vcpuInfoAddress(0), gpa);
  const info = mem.read(gpa, 64);
  assert.equal(info[0], 1, 'evtchn_upcall_pending');
  assert.equal(info[1], legacy[1], 'evtchn_upcall_mask copied');
  assert.deepEqual([...info.subarray(2, 8)], [...legacy.subarray(2, 8)], 'padding copied');
  assert.equal(dv(info).getBigUint64(8, true), 0xffff_ffff_ffff_ffffn, 'every selector bit');
  assert.deepEqual([...info.subarray(16, 32)], [...legacy.subarray(16, 32)], 'arch_vcpu_info copied');
  // The time record: the copied one, rewritten through the version protocol.
  const time = info.subarray(32, 64);
  assert.equal(dv(time).getUint32(0, true), 6);
  assert.deepEqual([...time.subarray(4, 8)], [...legacy.subarray(36, 40)], 'pad0 copied');
  assert.equal(dv(time).getBigUint64(vcpuTimeInfo.native.offsets.tsc_timestamp, true), P.tscTimestamp);
  assert.equal(dv(time).getBigUint64(vcpuTimeInfo.native.offsets.system_time, true), P.systemTime);
  assert.equal(dv(time).getUint32(vcpuTimeInfo.native.offsets.tsc_to_system_mul, true), P.mul);
  assert.equal(dv(time).getInt8(vcpuTimeInfo.native.offsets.tsc_shift), P.shift);
  assert.equal(time[vcpuTimeInfo.native.offsets.flags], XEN_PVCLOCK_TSC_STABLE_BIT);
  // Only those 64 bytes (and the argument) changed; shared_info's copy is left as it was.
  const after = ramSnapshot();
  for (let i = 0; i < after.length; i++) {
    if (i >= gpa && i < gpa + 64) continue;
    if (i >= ARG_GPA && i < ARG_GPA + 16) continue;
    if (after[i] !== before[i]) assert.fail(`byte 0x${i.toString(16)} changed`);
  }
  assert.deepEqual(mem.overlayPage(SHARED_INFO_PAGE).slice(0, 64), legacy);
});

test('register_vcpu_info (compat shared_info): 4-byte selector at 4, arch at 8', (t) => {
  const { mem, state, vcpuOp } = setup(t);
  state.sharedInfoAbi = 'compat';
  const legacy = legacyVcpuInfo(mem, 'compat', 1);
  const gpa = 0x7_f000 + 4032; // the last place in a page a vcpu_info fits
  assert.equal(vcpuOp('compat', VCPUOP.register_vcpu_info, 1, vcpuInfoArg(0x7fn, 4032)), 0n);
  assert.equal(state.vcpuInfoAddress(1), gpa);
  assert.equal(state.vcpuInfoAddress(0), undefined);
  const info = mem.read(gpa, 64);
  assert.equal(info[0], 1);
  assert.equal(info[1], legacy[1]);
  assert.equal(dv(info).getUint32(4, true), 0xffff_ffff, 'every selector bit');
  assert.deepEqual([...info.subarray(8, 32)], [...legacy.subarray(8, 32)], 'arch_vcpu_info copied');
  assert.equal(dv(info).getUint32(32, true), 6);
  assert.equal(dv(info).getBigUint64(40, true), P.tscTimestamp);
});

test('register_vcpu_info: only once per vCPU', (t) => {
  const { mem, state, vcpuOp } = setup(t);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x40n, 0)), 0n);
  mem.fill(0x60_000, PAGE, CANARY);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x60n, 0)), -22n);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x40n, 0)), -22n, 'not even at the same place');
  assert.equal(state.vcpuInfoAddress(0), 0x40_000);
  assert.ok(mem.read(0x60_000, PAGE).every((b) => b === CANARY));
  // The other vCPU still can, by another vCPU's call.
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 1, vcpuInfoArg(0x60n, 64)), 0n);
  assert.equal(state.vcpuInfoAddress(1), 0x60_040);
});

test('register_vcpu_info: a vcpu_info may not cross a page (offset > 4032 is -EINVAL)', (t) => {
  const { state, vcpuOp } = setup(t);
  for (const offset of [4033, 4095, 4096, 0xffff_ffff]) {
    assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x40n, offset)), -22n, `offset ${offset}`);
  }
  assert.equal(state.vcpuInfoAddress(0), undefined);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x40n, 4032)), 0n);
});

test('register_vcpu_info: a frame that is not RAM, or holds an overlay, is -EINVAL', (t) => {
  const { state, vcpuOp, memoryMap } = setup(t);
  memoryMap.mapOverlay(SHARED_INFO_PAGE, 0x60);
  for (const mfn of [0x60n, 0x200n, 0x1000n, 1n << 40n, 0xffff_ffff_ffff_ffffn]) {
    assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(mfn, 0)), -22n, `mfn 0x${mfn.toString(16)}`);
  }
  assert.equal(state.vcpuInfoAddress(0), undefined);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x1ffn, 0)), 0n, 'the last RAM frame is fine');
});

test('register_vcpu_info: a bad argument pointer is -EFAULT', (t) => {
  const { dispatch, LONG } = setup(t);
  assert.equal(dispatch('native', LONG, HYPERCALL.vcpu_op, [BigInt(VCPUOP.register_vcpu_info), 0n, VA_UNMAPPED]), -14n);
  assert.equal(dispatch('native', FLAT, HYPERCALL.vcpu_op, [BigInt(VCPUOP.register_vcpu_info), 0n, 0x1000_0000n]), -14n);
});

// ---- register_runstate_memory_area -----------------------------------------

for (const abi of ABIS) {
  const size = vcpuRunstateInfo[abi].size;

  test(`register_runstate_memory_area (${abi}): at every offset around a page boundary, the area is written at once, nothing else`, (t) => {
    const { state, clock, self, vcpuOp, canaries, window } = setup(t);
    for (let off = PAGE - size - 3; off <= PAGE + 3; off++) {
      canaries();
      clock.now += 7n;
      const gva = VA_AREA + BigInt(off);
      // A 32-bit caller's address is the low half of the union: the high half may hold anything.
      const raw = abi === 'compat' ? (0xdead_beefn << 32n) | gva : gva;
      assert.equal(vcpuOp(abi, VCPUOP.register_runstate_memory_area, 0, u64le(raw)), 0n, `offset ${off}`);
      const w = window();
      const expected = encodeRunstate(abi, self.current);
      assert.equal(self.current.stateEntryTime, clock.now, 'brought up to now first');
      assert.deepEqual(w.subarray(off, off + size), expected, `offset ${off}`);
      for (let i = 0; i < w.length; i++) if ((i < off || i >= off + size) && w[i] !== CANARY) assert.fail(`offset ${off}: byte ${i} outside the area changed`);
      const reg = state.area(0, AreaKind.Runstate)!;
      assert.equal(reg.abi, abi);
      const split = Math.max(0, Math.min(size, PAGE - off));
      const pieces = [];
      if (split > 0) pieces.push({ gpa: FRAME_A + off, length: split });
      if (split < size) pieces.push({ gpa: FRAME_B + Math.max(0, off - PAGE), length: size - split });
      assert.deepEqual(reg.pieces, pieces);
    }
  });

  test(`register_runstate_memory_area (${abi}): later updates go to the area; with the update flag the final bytes are the same`, (t) => {
    const { clock, self, vcpuOp, vmAssist, canaries, window } = setup(t);
    const off = PAGE - 10;
    canaries();
    assert.equal(vcpuOp(abi, VCPUOP.register_runstate_memory_area, 0, u64le(VA_AREA + BigInt(off))), 0n);
    assert.equal(vmAssist(VMASST_CMD.enable, VMASST_TYPE.runstate_update_flag), 0n);
    clock.now += 1000n;
    self.transition(RUNSTATE.runnable);
    assert.deepEqual(window().subarray(off, off + size), encodeRunstate(abi, self.current));
    clock.now += 1000n;
    self.transition(RUNSTATE.running);
    const w = window();
    assert.deepEqual(w.subarray(off, off + size), encodeRunstate(abi, self.current));
    assert.equal(w[off + vcpuRunstateInfo[abi].offsets.state_entry_time + 7] & 0x80, 0, 'the update flag ends clear');
  });

  test(`register_runstate_memory_area (${abi}): for another vCPU, its own record is written, and its later updates follow`, (t) => {
    const { state, clock, other, vcpuOp, canaries, window } = setup(t);
    clock.now = 5_000n;
    other.transition(RUNSTATE.running);
    clock.now = 9_000n;
    canaries();
    const off = PAGE - 20;
    assert.equal(vcpuOp(abi, VCPUOP.register_runstate_memory_area, 1, u64le(VA_AREA + BigInt(off))), 0n);
    assert.deepEqual(window().subarray(off, off + size), encodeRunstate(abi, recordFromWords(state.runstate(1))));
    assert.equal(recordFromWords(state.runstate(1)).state, RUNSTATE.running);
    assert.equal(state.area(0, AreaKind.Runstate), undefined, 'the caller\'s own area is not touched');
    other.transition(RUNSTATE.offline);
    assert.deepEqual(window().subarray(off, off + size), encodeRunstate(abi, other.current));
  });
}

test('register_runstate_memory_area: paging off, one piece', (t) => {
  const { mem, self, vcpuOp, state } = setup(t);
  assert.equal(vcpuOp('native', VCPUOP.register_runstate_memory_area, 0, u64le(0x9000n), FLAT), 0n);
  assert.deepEqual(state.area(0, AreaKind.Runstate), { abi: 'native', pieces: [{ gpa: 0x9000, length: 48 }] });
  assert.deepEqual(mem.read(0x9000, 48), encodeRunstate('native', self.current));
});

test('register_runstate_memory_area: a null address unregisters', (t) => {
  const { state, clock, self, vcpuOp, canaries, window } = setup(t);
  assert.equal(vcpuOp('native', VCPUOP.register_runstate_memory_area, 0, u64le(VA_AREA + 100n)), 0n);
  assert.ok(state.area(0, AreaKind.Runstate));
  assert.equal(vcpuOp('native', VCPUOP.register_runstate_memory_area, 0, u64le(0n)), 0n);
  assert.equal(state.area(0, AreaKind.Runstate), undefined);
  canaries();
  clock.now += 100n;
  self.transition(RUNSTATE.runnable);
  assert.ok(window().every((b) => b === CANARY), 'no longer written');
  // A compat caller's null is the low half being 0.
  assert.equal(vcpuOp('compat', VCPUOP.register_runstate_memory_area, 0, u64le(VA_AREA)), 0n);
  assert.ok(state.area(0, AreaKind.Runstate));
  assert.equal(vcpuOp('compat', VCPUOP.register_runstate_memory_area, 0, u64le(0x1234_5678n << 32n)), 0n);
  assert.equal(state.area(0, AreaKind.Runstate), undefined);
});

test('register_runstate_memory_area: an address that does not translate is accepted; nothing is written', (t) => {
  const { state, clock, self, vcpuOp, ramSnapshot, window, canaries } = setup(t);
  assert.equal(vcpuOp('native', VCPUOP.register_runstate_memory_area, 0, u64le(VA_AREA)), 0n);
  canaries();
  const before = ramSnapshot();
  for (const [gva, paging] of [
    [VA_UNMAPPED, undefined],
    [VA_AREA + 0x2000n - 10n, undefined], // starts mapped, ends unmapped
    [0xffff_8000_0000_0000n, undefined],
    [0x1000_0000n, FLAT], // beyond RAM
  ] as const) {
    assert.equal(vcpuOp('native', VCPUOP.register_runstate_memory_area, 0, u64le(gva), paging), 0n, `0x${gva.toString(16)}`);
    assert.equal(state.area(0, AreaKind.Runstate), undefined, 'the previous area is dropped');
  }
  clock.now += 100n;
  self.transition(RUNSTATE.runnable);
  const after = ramSnapshot();
  after.set(before.subarray(ARG_GPA, ARG_GPA + 8), ARG_GPA); // the argument itself
  assert.ok(after.every((b, i) => b === before[i]), 'nothing written anywhere');
  assert.ok(window().every((b) => b === CANARY));
});

// ---- register_vcpu_time_memory_area ----------------------------------------

for (const abi of ABIS) {
  test(`register_vcpu_time_memory_area (${abi}): a vcpu_time_info written at once, across a page boundary`, (t) => {
    const { state, vcpuOp, canaries, window } = setup(t);
    for (const off of [0, PAGE - 32, PAGE - 31, PAGE - 12, PAGE - 1, PAGE]) {
      canaries();
      assert.equal(vcpuOp(abi, VCPUOP.register_vcpu_time_memory_area, 0, u64le(VA_AREA + BigInt(off))), 0n);
      const expected = new Uint8Array(32).fill(CANARY);
      writeVcpuTime(bytesArea(expected), 0, P, true);
      const w = window();
      assert.deepEqual(w.subarray(off, off + 32), expected, `offset ${off}`);
      assert.equal(dv(w.subarray(off)).getUint32(0, true) % 2, 0, 'version even');
      for (let i = 0; i < w.length; i++) if ((i < off || i >= off + 32) && w[i] !== CANARY) assert.fail(`offset ${off}: byte ${i} changed`);
      assert.equal(state.area(0, AreaKind.Time)!.abi, abi);
    }
  });
}

test('register_vcpu_time_memory_area: null unregisters; untranslatable is accepted and writes nothing', (t) => {
  const { state, vcpuOp, canaries, window } = setup(t);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 1, u64le(VA_AREA)), 0n);
  assert.deepEqual(state.area(1, AreaKind.Time), { abi: 'native', pieces: [{ gpa: FRAME_A, length: 32 }] });
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 1, u64le(0n)), 0n);
  assert.equal(state.area(1, AreaKind.Time), undefined);
  canaries();
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 1, u64le(VA_UNMAPPED)), 0n);
  assert.equal(state.area(1, AreaKind.Time), undefined);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 1, u64le(VA_AREA + 0x2000n - 8n)), 0n);
  assert.equal(state.area(1, AreaKind.Time), undefined);
  assert.ok(window().every((b) => b === CANARY));
});

// ---- get_runstate_info, is_up -----------------------------------------------

for (const abi of ABIS) {
  test(`get_runstate_info (${abi}): the caller's own record, brought up to now`, (t) => {
    const { mem, clock, self, vcpuOp } = setup(t);
    clock.now = 10_000n;
    clock.halted = 2_000n;
    mem.fill(ARG_GPA, 64, CANARY);
    assert.equal(vcpuOp(abi, VCPUOP.get_runstate_info, 0), 0n);
    const r = self.current;
    assert.equal(r.state, RUNSTATE.running);
    assert.equal(r.stateEntryTime, 10_000n);
    assert.deepEqual(mem.read(ARG_GPA, vcpuRunstateInfo[abi].size), encodeRunstate(abi, r));
    assert.equal(mem.readU8(ARG_GPA + vcpuRunstateInfo[abi].size), CANARY);
    assert.equal(r.time.reduce((a, b) => a + b, 0n), 10_000n);
  });

  test(`get_runstate_info (${abi}): another vCPU's record as last accounted`, (t) => {
    const { mem, clock, other, state, vcpuOp } = setup(t);
    clock.now = 3_000n;
    other.transition(RUNSTATE.running);
    clock.now = 4_000n;
    other.transition(RUNSTATE.runnable);
    assert.equal(vcpuOp(abi, VCPUOP.get_runstate_info, 1), 0n);
    const r = recordFromWords(state.runstate(1));
    assert.equal(r.state, RUNSTATE.runnable);
    assert.deepEqual(mem.read(ARG_GPA, vcpuRunstateInfo[abi].size), encodeRunstate(abi, r));
  });
}

test(
  "get_runstate_info: another running vCPU's times add up to the current system time (vcpu.h: the sum does not drift from system time)",

  (t) => {
    const { mem, clock, other, vcpuOp } = setup(t);
    clock.now = 500n;
    other.transition(RUNSTATE.running);
    clock.now = 1_000_000n; // vCPU 1 has been running since 500 without an exit to the VMM
    assert.equal(vcpuOp('native', VCPUOP.get_runstate_info, 1), 0n);
    const d = dv(mem.read(ARG_GPA, 48));
    assert.equal(d.getInt32(0, true), RUNSTATE.running);
    const times = [0, 1, 2, 3].map((i) => d.getBigUint64(16 + 8 * i, true));
    assert.equal(times.reduce((a, b) => a + b, 0n), 1_000_000n);
  },
);

test('get_runstate_info: a bad pointer is -EFAULT', (t) => {
  const { dispatch, LONG } = setup(t);
  assert.equal(dispatch('native', LONG, HYPERCALL.vcpu_op, [BigInt(VCPUOP.get_runstate_info), 0n, VA_UNMAPPED]), -14n);
  assert.equal(dispatch('native', LONG, HYPERCALL.vcpu_op, [BigInt(VCPUOP.get_runstate_info), 1n, VA_AREA + 0x2000n - 8n]), -14n);
});

test('is_up: whether the vCPU is up (DomainState), whatever its runstate', (t) => {
  const { state, clock, other, vcpuOp } = setup(t);
  assert.equal(vcpuOp('native', VCPUOP.is_up, 0), 0n);
  assert.equal(vcpuOp('native', VCPUOP.is_up, 1), 0n);
  state.setUp(1, true);
  assert.equal(vcpuOp('compat', VCPUOP.is_up, 1), 1n);
  assert.equal(vcpuOp('native', VCPUOP.is_up, 0), 0n, 'per vCPU');
  clock.now += 10n;
  other.transition(RUNSTATE.blocked);
  assert.equal(vcpuOp('native', VCPUOP.is_up, 1), 1n, 'blocked is up');
  // vcpuid is an unsigned int: the high half of the register is ignored.
  assert.equal(vcpuOp('native', VCPUOP.is_up, (7n << 32n) | 1n), 1n);
  state.setUp(1, false);
  assert.equal(vcpuOp('native', VCPUOP.is_up, 1), 0n);
});

test('initialise, up and down go to the main thread with the context and all arguments; its value is returned', (t) => {
  const { forwarded, dispatch, LONG, PROT32 } = setup(t);
  for (const [abi, paging, op] of [['native', LONG, VCPUOP.initialise], ['compat', PROT32, VCPUOP.up], ['native', LONG, VCPUOP.down]] as const) {
    const args = [BigInt(op), 1n, ARG, 4n, 5n];
    assert.equal(dispatch(abi, paging, HYPERCALL.vcpu_op, args), 0x77n);
    const f = forwarded.at(-1)!;
    assert.deepEqual(f.args, args);
    assert.equal(f.ctx.abi, abi);
    assert.equal(f.ctx.vcpu, 0);
  }
  assert.equal(forwarded.length, 3);
  // An id out of range is refused before anything is forwarded.
  assert.equal(dispatch('native', LONG, HYPERCALL.vcpu_op, [BigInt(VCPUOP.up), 2n]), -2n);
  assert.equal(forwarded.length, 3);
});

test('a vCPU id out of range is -ENOENT for every sub-op', (t) => {
  const { vcpuOp, state, forwarded } = setup(t);
  for (const op of [VCPUOP.register_vcpu_info, VCPUOP.register_runstate_memory_area, VCPUOP.register_vcpu_time_memory_area, VCPUOP.get_runstate_info, VCPUOP.is_up, VCPUOP.initialise, VCPUOP.up, VCPUOP.down, 99]) {
    for (const id of [2, 3, 0x7fff_ffff, 0xffff_ffff]) assert.equal(vcpuOp('native', op, id, u64le(VA_AREA)), -2n, `op ${op} vcpu ${id}`);
  }
  assert.equal(state.area(0, AreaKind.Runstate), undefined);
  assert.equal(forwarded.length, 0);
});

test('unknown vcpu_op sub-ops are -ENOSYS', (t) => {
  const { vcpuOp } = setup(t);
  for (const op of [VCPUOP.send_nmi, 14, 99, 0x7fff_ffff]) assert.equal(vcpuOp('native', op, 0), -38n, `op ${op}`);
});

// ---- timers -------------------------------------------------------------------

/** The singleshot deadline armed for `vcpu` (0: none). */
const armed = (timers: TimerState, vcpu: number) => timers.vcpuTimers(vcpu).singleshot;

for (const abi of ABIS) {
  test(`set_singleshot_timer (${abi}): VCPU_SSHOTTMR_future judges the deadline by the guest's own clock, which may run ahead of the host's`, (t) => {
    const { clock, kvmClock, timers, vcpuOp } = setup(t);
    kvmClock.tsc = P.tscTimestamp + 50_000_000n;
    const guestNow = pvclockRead(P, kvmClock.tsc);
    clock.now = guestNow - 3_000_000n; // the host clock 3 ms behind what the guest reads
    const set = (deadline: bigint, flags: number) => vcpuOp(abi, VCPUOP.set_singleshot_timer, 0, vcpuSetSingleshotTimer[abi].encode({ timeout_abs_ns: deadline, flags }));
    // 1 ms in the guest's past, 2 ms in the host's future: past.
    assert.equal(set(guestNow - 1_000_000n, VCPU_SSHOTTMR_future), -62n, '-ETIME');
    assert.equal(armed(timers, 0), 0n, 'nothing armed');
    assert.equal(kvmClock.reads, 1, "the vCPU's TSC was read");
    assert.equal(set(guestNow - 1n, VCPU_SSHOTTMR_future), -62n, 'past by 1 ns');
    assert.equal(set(guestNow, VCPU_SSHOTTMR_future), 0n, 'now is not past');
    assert.equal(armed(timers, 0), guestNow);
    assert.equal(set(guestNow + 1_000_000n, VCPU_SSHOTTMR_future), 0n);
    assert.equal(armed(timers, 0), guestNow + 1_000_000n);
    // Without the flag a past deadline is armed (it fires at once), and the TSC is not read.
    const reads = kvmClock.reads;
    assert.equal(set(guestNow - 1_000_000n, 0), 0n);
    assert.equal(armed(timers, 0), guestNow - 1_000_000n);
    assert.equal(kvmClock.reads, reads);
    // Compared unsigned, as Xen does: 2^63 and up is no past deadline, but a negative time that fires at once.
    for (const huge of [1n << 63n, (1n << 64n) - 1n]) {
      assert.equal(set(huge, VCPU_SSHOTTMR_future), 0n, `0x${huge.toString(16)}`);
      assert.equal(armed(timers, 0), 1n, 'armed to fire at once');
    }
  });
}

/** The periodic timer of `vcpu`: its period (0: none) and next deadline. */
const periodic = (timers: TimerState, vcpu: number) => {
  const { period, next } = timers.vcpuTimers(vcpu);
  return { period, next };
};

for (const abi of ABIS) {
  test(`set_periodic_timer (${abi}): from 1 ms to Xen's STIME_DELTA_MAX (2^62 - 1 ns), for any vCPU; beyond either, -EINVAL and nothing changes`, (t) => {
    const { clock, timers, vcpuOp } = setup(t);
    clock.now = 1n << 61n; // late in a long-running domain: a period past the limit would wrap the deadline
    const set = (vcpu: number, period: bigint) => vcpuOp(abi, VCPUOP.set_periodic_timer, vcpu, vcpuSetPeriodicTimer[abi].encode({ period_ns: period }));
    for (const period of [999_999n, (1n << 62n), (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n]) {
      assert.equal(set(1, period), -22n, `period ${period}`);
      assert.deepEqual(periodic(timers, 1), { period: 0n, next: 0n });
    }
    assert.equal(set(1, (1n << 62n) - 1n), 0n);
    assert.deepEqual(periodic(timers, 1), { period: (1n << 62n) - 1n, next: clock.now + (1n << 62n) - 1n });
    assert.ok(periodic(timers, 1).next > 0n, 'the deadline never wraps');
    assert.equal(set(0, 1_000_000n), 0n);
    assert.deepEqual(periodic(timers, 0), { period: 1_000_000n, next: clock.now + 1_000_000n });
  });
}

test("a vCPU's time records drop XEN_PVCLOCK_TSC_STABLE_BIT once KVM no longer keeps the TSCs in step, asked once a second; the time they give is unchanged", (t) => {
  const { mem, kvmClock, vcpuClock, vcpuOp, rewriteTime } = setup(t);
  const si = mem.overlayPage(SHARED_INFO_PAGE);
  const legacy1 = sharedInfoLayout.native.vcpuInfo(1) + 32;
  writeVcpuTime(bytesArea(si), legacy1, P, true); // as the VMM writes it when the domain is built
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 0, vcpuInfoArg(0x40n, 0x80)), 0n);
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 0, u64le(VA_AREA)), 0n);
  const records = () => [mem.read(0x40_080 + 32, 32), mem.read(FRAME_A, 32), si.slice(legacy1, legacy1 + 32)];
  const before = records();
  const legacy0 = si.slice(0, 64);
  for (const r of before) assert.equal(r[vcpuTimeInfo.native.offsets.flags], XEN_PVCLOCK_TSC_STABLE_BIT);

  kvmClock.stable = false;
  kvmClock.ms = TSC_STABILITY_RECHECK_MS - 1;
  assert.equal(vcpuClock.recheck(), false, 'not asked again within the second');
  assert.equal(vcpuClock.tscStable, true);
  kvmClock.ms = TSC_STABILITY_RECHECK_MS;
  assert.equal(vcpuClock.recheck(), true, 'asked again');
  assert.equal(vcpuClock.tscStable, false);
  rewriteTime(0);
  rewriteTime(1);
  const after = records();
  for (const [i, r] of after.entries()) {
    assert.equal(r[vcpuTimeInfo.native.offsets.flags], 0, `record ${i}`);
    assert.equal(dv(r).getUint32(0, true), dv(before[i]).getUint32(0, true) + 2, `record ${i}: version`);
    assert.deepEqual(r.subarray(8, 29), before[i].subarray(8, 29), `record ${i}: same time base`);
  }
  assert.deepEqual(si.slice(0, 64), legacy0, "vCPU 0's vcpu_info in shared_info is no longer its own: left alone");
  // Areas registered from now on say so at once.
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 0, u64le(VA_AREA + 0x100n)), 0n);
  assert.equal(mem.readU8(FRAME_A + 0x100 + vcpuTimeInfo.native.offsets.flags), 0);
});

test('where KVM writes the time records: registrations write none, tell the target vCPU\'s thread, and a time area across a page is -EINVAL', (t) => {
  const { mem, state, moved, vcpuOp, ramSnapshot, canaries, window } = setup(t, { kvmTime: { value: undefined } });
  const before = ramSnapshot();
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_info, 1, vcpuInfoArg(0x40n, 0x80)), 0n);
  const info = mem.read(0x40_080, 64);
  assert.deepEqual([...info.subarray(32, 64)], [...before.subarray(0x40_080 + 32, 0x40_080 + 64)], 'no time record written: KVM writes it');
  assert.equal(dv(info).getBigUint64(8, true), 0xffff_ffff_ffff_ffffn, 'the rest of the registration as ever');
  assert.deepEqual(moved, [1]);
  canaries();
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 0, u64le(VA_AREA + BigInt(PAGE - 32))), 0n, 'ends at the page end');
  assert.deepEqual(state.area(0, AreaKind.Time), { abi: 'native', pieces: [{ gpa: FRAME_A + PAGE - 32, length: 32 }] });
  assert.ok(window().every((b) => b === CANARY), 'nothing written');
  assert.deepEqual(moved, [1, 0]);
  for (const abi of ABIS) {
    assert.equal(vcpuOp(abi, VCPUOP.register_vcpu_time_memory_area, 0, u64le(VA_AREA + BigInt(PAGE - 31))), -22n, `${abi}: across the page boundary`);
  }
  assert.deepEqual(state.area(0, AreaKind.Time), { abi: 'native', pieces: [{ gpa: FRAME_A + PAGE - 32, length: 32 }] }, 'the old registration stands');
  assert.equal(vcpuOp('native', VCPUOP.register_vcpu_time_memory_area, 0, u64le(0n)), 0n);
  assert.equal(state.area(0, AreaKind.Time), undefined);
  assert.deepEqual(moved, [1, 0, 0], 'unregistering is told too');
});

test("where KVM writes the time records, the guest's clock is KVM's last record, and its flags are KVM's to set", (t) => {
  const kvm: { value: PvclockParams | undefined } = { value: undefined };
  const { kvmClock, vcpuClock, timers, vcpuOp } = setup(t, { kvmTime: kvm });
  kvmClock.tsc = P.tscTimestamp + 50_000_000n;
  assert.equal(vcpuClock.guestNow(), pvclockRead(P, kvmClock.tsc), 'before KVM wrote a record: the domain\'s own time base');
  kvm.value = { ...P, systemTime: P.systemTime + 7_000_000n };
  const guestNow = pvclockRead(kvm.value, kvmClock.tsc);
  assert.equal(vcpuClock.guestNow(), guestNow);
  const set = (deadline: bigint) => vcpuOp('native', VCPUOP.set_singleshot_timer, 0, vcpuSetSingleshotTimer.native.encode({ timeout_abs_ns: deadline, flags: VCPU_SSHOTTMR_future }));
  assert.equal(set(guestNow - 1n), -62n, 'past by KVM\'s record: -ETIME');
  assert.equal(set(guestNow), 0n);
  assert.equal(armed(timers, 0), guestNow);
  kvmClock.stable = false;
  kvmClock.ms = 10 * TSC_STABILITY_RECHECK_MS;
  assert.equal(vcpuClock.recheck(), false, 'never asked again: xenkvm rewrites no record');
});

// ---- vm_assist ----------------------------------------------------------------

test('vm_assist: runstate_update_flag can be enabled and disabled', (t) => {
  const { state, vmAssist } = setup(t);
  assert.equal(vmAssist(VMASST_CMD.enable, VMASST_TYPE.runstate_update_flag), 0n);
  assert.equal(state.vmAssistEnabled(VMASST_TYPE.runstate_update_flag), true);
  assert.equal(vmAssist(VMASST_CMD.enable, VMASST_TYPE.runstate_update_flag), 0n, 'enabling twice is fine');
  assert.equal(vmAssist(VMASST_CMD.disable, VMASST_TYPE.runstate_update_flag), 0n);
  assert.equal(state.vmAssistEnabled(VMASST_TYPE.runstate_update_flag), false);
});

test('vm_assist: every other type is -EINVAL for an HVM guest; an unknown command -ENOSYS', (t) => {
  const { state, vmAssist } = setup(t);
  for (const type of [0, 1, 2, 3, 4, 6, 31, 32, 37, 63, 64, 1n << 40n]) {
    assert.equal(vmAssist(VMASST_CMD.enable, type), -22n, `type ${type}`);
    assert.equal(vmAssist(VMASST_CMD.disable, type), -22n, `type ${type}`);
  }
  for (let type = 0; type < 32; type++) assert.equal(state.vmAssistEnabled(type), false);
  for (const cmd of [2, 3, 0xffff_ffff]) assert.equal(vmAssist(cmd, VMASST_TYPE.runstate_update_flag), -38n, `cmd ${cmd}`);
  assert.equal(vmAssist(7, 0), -22n, 'the type is checked first');
  assert.equal(state.vmAssistEnabled(VMASST_TYPE.runstate_update_flag), false);
  // Both are unsigned ints to Xen: the high halves of the registers do not count.
  assert.equal(vmAssist((1n << 32n) | BigInt(VMASST_CMD.enable), (7n << 32n) | BigInt(VMASST_TYPE.runstate_update_flag)), 0n);
  assert.equal(state.vmAssistEnabled(VMASST_TYPE.runstate_update_flag), true);
});

// Runstate accounting with a fake clock and halt counter, the
// vcpu_runstate_info encodings, and the guest area write with and without
// the update flag (VMASST_TYPE_runstate_update_flag).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../memory/guest-memory.js';
import type { Abi } from './abi/layout.js';
import { RUNSTATE, vcpuRunstateInfo, XEN_RUNSTATE_UPDATE } from './abi/vcpu.js';
import { VMASST_TYPE } from './abi/xen.js';
import { AreaKind, DomainState } from './domain-state.js';
import { encodeRunstate, recordFromWords, RunstateAccount, writeRunstateArea, type RunstateRecord } from './runstate.js';

const MiB = 1024 * 1024;
const CANARY = 0xa5;

function setup(t: { after(fn: () => void): void }) {
  const mem = GuestMemory.create([{ gpa: 0, size: 2 * MiB }], 4);
  t.after(() => mem.dispose());
  const state = DomainState.create(2);
  const clock = { now: 0n, halted: 0n };
  const account = (vcpu = 0, memory: GuestMemory = mem) => new RunstateAccount(vcpu, state, memory, () => clock.now, () => clock.halted);
  return { mem, state, clock, account };
}

const sum = (r: RunstateRecord) => r.time.reduce((a, b) => a + b, 0n);
const words = (r: RunstateRecord) => [BigInt(r.state), r.stateEntryTime, ...r.time];

/** The record, the published copy, and the invariant that the times add up to state_entry_time. */
function check(acct: RunstateAccount, state: DomainState, vcpu: number, expected: { state: number; entry: bigint; time: bigint[] }) {
  const r = acct.current;
  assert.equal(r.state, expected.state, 'state');
  assert.equal(r.stateEntryTime, expected.entry, 'state_entry_time');
  assert.deepEqual([...r.time], expected.time, 'time[]');
  assert.equal(sum(r), r.stateEntryTime, 'times add up to state_entry_time');
  assert.deepEqual(state.runstate(vcpu), words(r), 'published to DomainState');
}

test('RunstateAccount: starts offline at 0 and publishes that', (t) => {
  const { state, account } = setup(t);
  const a = account();
  check(a, state, 0, { state: RUNSTATE.offline, entry: 0n, time: [0n, 0n, 0n, 0n] });
});

test('RunstateAccount: offline → running → runnable → running, times add up after every transition', (t) => {
  const { state, clock, account } = setup(t);
  const a = account();
  clock.now = 1_000n;
  a.transition(RUNSTATE.running);
  check(a, state, 0, { state: RUNSTATE.running, entry: 1_000n, time: [0n, 0n, 0n, 1_000n] });
  clock.now = 3_500n;
  a.transition(RUNSTATE.runnable);
  check(a, state, 0, { state: RUNSTATE.runnable, entry: 3_500n, time: [2_500n, 0n, 0n, 1_000n] });
  clock.now = 3_600n;
  a.transition(RUNSTATE.running);
  check(a, state, 0, { state: RUNSTATE.running, entry: 3_600n, time: [2_500n, 100n, 0n, 1_000n] });
  clock.now = 10_000n;
  a.refresh();
  check(a, state, 0, { state: RUNSTATE.running, entry: 10_000n, time: [8_900n, 100n, 0n, 1_000n] });
  clock.now = 10_001n;
  a.transition(RUNSTATE.offline);
  check(a, state, 0, { state: RUNSTATE.offline, entry: 10_001n, time: [8_901n, 100n, 0n, 1_000n] });
});

test('RunstateAccount: halted time inside running is blocked time', (t) => {
  const { state, clock, account } = setup(t);
  clock.halted = 777n; // halted before the vCPU ever ran: not counted
  const a = account();
  clock.now = 100n;
  a.transition(RUNSTATE.running);
  clock.now = 1_100n;
  clock.halted = 777n + 300n;
  a.refresh();
  check(a, state, 0, { state: RUNSTATE.running, entry: 1_100n, time: [700n, 0n, 300n, 100n] });
  // Halt counted while paused (runnable) is not blocked time: the baseline moves on.
  a.transition(RUNSTATE.runnable);
  clock.now = 1_200n;
  clock.halted += 50n;
  a.transition(RUNSTATE.running);
  check(a, state, 0, { state: RUNSTATE.running, entry: 1_200n, time: [700n, 100n, 300n, 100n] });
  clock.now = 1_300n;
  a.refresh();
  check(a, state, 0, { state: RUNSTATE.running, entry: 1_300n, time: [800n, 100n, 300n, 100n] });
});

test('RunstateAccount: blocked time is clamped to the elapsed time, and never negative', (t) => {
  const { state, clock, account } = setup(t);
  const a = account();
  a.transition(RUNSTATE.running);
  clock.now = 100n;
  clock.halted = 5_000n; // more halted than elapsed
  a.refresh();
  check(a, state, 0, { state: RUNSTATE.running, entry: 100n, time: [0n, 0n, 100n, 0n] });
  // The excess is not carried over.
  clock.now = 200n;
  a.refresh();
  check(a, state, 0, { state: RUNSTATE.running, entry: 200n, time: [100n, 0n, 100n, 0n] });
  // A counter going backwards (a reset) gives no negative blocked time.
  clock.now = 300n;
  clock.halted = 10n;
  a.refresh();
  check(a, state, 0, { state: RUNSTATE.running, entry: 300n, time: [200n, 0n, 100n, 0n] });
});

test('RunstateAccount: a clock going backwards adds nothing and keeps state_entry_time', (t) => {
  const { state, clock, account } = setup(t);
  const a = account();
  clock.now = 500n;
  a.transition(RUNSTATE.running);
  clock.now = 400n;
  a.transition(RUNSTATE.runnable);
  check(a, state, 0, { state: RUNSTATE.runnable, entry: 500n, time: [0n, 0n, 0n, 500n] });
  clock.now = 600n;
  a.transition(RUNSTATE.running);
  check(a, state, 0, { state: RUNSTATE.running, entry: 600n, time: [0n, 100n, 0n, 500n] });
});

test('RunstateAccount: the invariant holds over a long random walk', (t) => {
  const { state, clock, account } = setup(t);
  const a = account(1);
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 5000; i++) {
    clock.now += BigInt(rnd(1000));
    clock.halted += BigInt(rnd(800));
    if (rnd(10) === 0) clock.now -= BigInt(rnd(50));
    a.transition(rnd(4));
    const r = a.current;
    assert.equal(sum(r), r.stateEntryTime);
    assert.ok(r.time.every((x) => x >= 0n));
    assert.deepEqual(state.runstate(1), words(r));
  }
});

// ---- encodings ------------------------------------------------------------

const R: RunstateRecord = { state: RUNSTATE.blocked, stateEntryTime: 0x0123_4567_89ab_cdefn, time: [11n, 22n, 33n, 0xffff_ffff_0000_0001n] };

test('encodeRunstate: native 48 bytes (time at 16), compat 44 (everything after state moved up by 4)', () => {
  const n = encodeRunstate('native', R);
  assert.equal(n.length, 48);
  const dn = new DataView(n.buffer);
  assert.equal(dn.getInt32(0, true), RUNSTATE.blocked);
  assert.equal(dn.getUint32(4, true), 0, 'padding');
  assert.equal(dn.getBigUint64(8, true), R.stateEntryTime);
  assert.deepEqual([0, 1, 2, 3].map((i) => dn.getBigUint64(16 + 8 * i, true)), R.time);
  const c = encodeRunstate('compat', R);
  assert.equal(c.length, 44);
  const dc = new DataView(c.buffer);
  assert.equal(dc.getInt32(0, true), RUNSTATE.blocked);
  assert.equal(dc.getBigUint64(4, true), R.stateEntryTime);
  assert.deepEqual([0, 1, 2, 3].map((i) => dc.getBigUint64(12 + 8 * i, true)), R.time);
});

test('encodeRunstate: the update flag is bit 63 of state_entry_time, the top bit of its last byte', () => {
  assert.equal(XEN_RUNSTATE_UPDATE, 1n << 63n);
  for (const [abi, at] of [['native', 8], ['compat', 4]] as const) {
    const f = encodeRunstate(abi, R, true);
    assert.equal(new DataView(f.buffer).getBigUint64(at, true), R.stateEntryTime | XEN_RUNSTATE_UPDATE);
    assert.equal(f[at + 7], 0x81);
    const plain = encodeRunstate(abi, R, false);
    assert.deepEqual([...f].map((b, i) => (i === at + 7 ? b & 0x7f : b)), [...plain]);
  }
});

test('recordFromWords: the DomainState words back into a record', () => {
  assert.deepEqual(recordFromWords([2n, 99n, 1n, 2n, 3n, 4n]), { state: 2, stateEntryTime: 99n, time: [1n, 2n, 3n, 4n] });
  assert.deepEqual(recordFromWords(words(R)), R);
});

// ---- the guest area -------------------------------------------------------

/** GuestMemory with every write recorded (GuestArea only uses isBacked, read and write). */
function recordingMemory(mem: GuestMemory) {
  const writes: { gpa: number; data: number[] }[] = [];
  const memory = {
    isBacked: (gpa: number, length?: number) => mem.isBacked(gpa, length),
    read: (gpa: number, length: number) => mem.read(gpa, length),
    write: (gpa: number, data: Uint8Array) => {
      writes.push({ gpa, data: [...data] });
      mem.write(gpa, data);
    },
  } as unknown as GuestMemory;
  return { memory, writes };
}

const FRAME_A = 0x5_0000;
const FRAME_B = 0x3_0000; // below A: the pieces are not adjacent and not in order

/** An area split at `split` bytes: its first part ends page A, its second starts page B. */
function splitPieces(size: number, split: number) {
  const pieces = [{ gpa: FRAME_A + 4096 - split, length: split }, { gpa: FRAME_B, length: size - split }];
  return pieces.filter((p) => p.length > 0);
}

function areaBytes(mem: GuestMemory, pieces: { gpa: number; length: number }[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of pieces) {
    out.set(mem.read(p.gpa, p.length), off);
    off += p.length;
  }
  return out;
}

/** Every byte of the two frames outside the pieces still holds the canary. */
function assertOnlyArea(mem: GuestMemory, pieces: { gpa: number; length: number }[]) {
  for (const frame of [FRAME_A, FRAME_B]) {
    const page = mem.read(frame, 4096);
    for (let i = 0; i < 4096; i++) {
      const inside = pieces.some((p) => frame + i >= p.gpa && frame + i < p.gpa + p.length);
      if (!inside) assert.equal(page[i], CANARY, `byte 0x${(frame + i).toString(16)} outside the area changed`);
    }
  }
}

test('writeRunstateArea: nothing registered, nothing written', (t) => {
  const { mem, state } = setup(t);
  const { memory, writes } = recordingMemory(mem);
  writeRunstateArea(memory, state, 0, R);
  assert.equal(writes.length, 0);
});

for (const abi of ['native', 'compat'] as Abi[]) {
  const size = vcpuRunstateInfo[abi].size;
  const flagAt = vcpuRunstateInfo[abi].offsets.state_entry_time + 7;

  test(`writeRunstateArea (${abi}): without the assist, the record alone, split over two non-adjacent frames`, (t) => {
    const { mem, state } = setup(t);
    for (const split of [size, 1, 10, flagAt, flagAt + 1, size - 1]) {
      mem.fill(FRAME_A, 4096, CANARY);
      mem.fill(FRAME_B, 4096, CANARY);
      const pieces = splitPieces(size, split);
      state.setArea(0, AreaKind.Runstate, { abi, pieces });
      const { memory, writes } = recordingMemory(mem);
      writeRunstateArea(memory, state, 0, R);
      assert.deepEqual(areaBytes(mem, pieces), encodeRunstate(abi, R), `split ${split}`);
      assert.equal(writes.length, pieces.length, 'one write per piece');
      assertOnlyArea(mem, pieces);
    }
  });

  test(`writeRunstateArea (${abi}): with runstate_update_flag, every intermediate state shows the flag`, (t) => {
    const { mem, state } = setup(t);
    state.setVmAssist(VMASST_TYPE.runstate_update_flag, true);
    for (const split of [size, 1, 10, flagAt, flagAt + 1, size - 1]) {
      mem.fill(FRAME_A, 4096, CANARY);
      mem.fill(FRAME_B, 4096, CANARY);
      const pieces = splitPieces(size, split);
      state.setArea(0, AreaKind.Runstate, { abi, pieces });
      const { memory, writes } = recordingMemory(mem);
      // Replay the writes one by one on a copy to see what a concurrent guest reader could see.
      const before = areaBytes(mem, pieces);
      writeRunstateArea(memory, state, 0, R);
      const offsetOf = (gpa: number) => {
        let off = 0;
        for (const p of pieces) {
          if (gpa >= p.gpa && gpa < p.gpa + p.length) return off + gpa - p.gpa;
          off += p.length;
        }
        assert.fail(`write at 0x${gpa.toString(16)} outside the area`);
      };
      const seen = before.slice();
      writes.forEach((w, i) => {
        seen.set(w.data, offsetOf(w.gpa));
        if (i < writes.length - 1) assert.ok(seen[flagAt] & 0x80, `split ${split}: after write ${i} the flag is clear mid-update`);
      });
      // First the flag byte alone, last the flag byte alone, cleared.
      assert.deepEqual(writes[0].data, [0x81]);
      assert.equal(offsetOf(writes[0].gpa), flagAt);
      assert.deepEqual(writes.at(-1)!.data, [0x01]);
      assert.equal(offsetOf(writes.at(-1)!.gpa), flagAt);
      assert.equal(writes.length, 2 + pieces.length);
      assert.deepEqual(areaBytes(mem, pieces), encodeRunstate(abi, R), 'final record, flag clear');
      assertOnlyArea(mem, pieces);
    }
  });
}

test('writeRunstateArea: a zero top byte of state_entry_time goes 0x80 then 0', (t) => {
  const { mem, state } = setup(t);
  state.setVmAssist(VMASST_TYPE.runstate_update_flag, true);
  const pieces = [{ gpa: 0x8000, length: 48 }];
  state.setArea(1, AreaKind.Runstate, { abi: 'native', pieces });
  const { memory, writes } = recordingMemory(mem);
  const r: RunstateRecord = { state: RUNSTATE.running, stateEntryTime: 1_000n, time: [1_000n, 0n, 0n, 0n] };
  writeRunstateArea(memory, state, 1, r);
  assert.deepEqual(writes.map((w) => w.data.length), [1, 48, 1]);
  assert.deepEqual(writes[0], { gpa: 0x8000 + 15, data: [0x80] });
  assert.deepEqual(writes[2], { gpa: 0x8000 + 15, data: [0] });
  assert.deepEqual(mem.read(0x8000, 48), encodeRunstate('native', r));
});

test('writeRunstateArea: an area no longer backed is skipped whole', (t) => {
  const { mem, state } = setup(t);
  // Second piece beyond RAM.
  state.setArea(0, AreaKind.Runstate, { abi: 'native', pieces: [{ gpa: 2 * MiB - 16, length: 16 }, { gpa: 64 * MiB, length: 32 }] });
  const { memory, writes } = recordingMemory(mem);
  writeRunstateArea(memory, state, 0, R);
  assert.equal(writes.length, 0);
});

test('RunstateAccount: every transition rewrites the registered area', (t) => {
  const { mem, state, clock, account } = setup(t);
  const a = account(0);
  const pieces = splitPieces(44, 20);
  state.setArea(0, AreaKind.Runstate, { abi: 'compat', pieces });
  mem.fill(FRAME_A, 4096, CANARY);
  mem.fill(FRAME_B, 4096, CANARY);
  clock.now = 5_000n;
  a.transition(RUNSTATE.running);
  assert.deepEqual(areaBytes(mem, pieces), encodeRunstate('compat', a.current));
  clock.now = 6_000n;
  a.transition(RUNSTATE.runnable);
  assert.deepEqual(areaBytes(mem, pieces), encodeRunstate('compat', a.current));
  assertOnlyArea(mem, pieces);
  // Unregistered: later transitions leave the old bytes alone.
  state.setArea(0, AreaKind.Runstate, undefined);
  const old = areaBytes(mem, pieces);
  clock.now = 7_000n;
  a.transition(RUNSTATE.running);
  assert.deepEqual(areaBytes(mem, pieces), old);
});

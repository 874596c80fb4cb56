// DomainState: one SharedArrayBuffer that every thread attaches to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { HVM_NR_PARAMS, HVM_PARAM } from './abi/hvm.js';
import { VMASST_TYPE } from './abi/xen.js';
import { AreaKind, CONTEXT_BYTES, DomainState } from './domain-state.js';

test('create: defaults — native shared_info, no assists, params 0, nothing registered', () => {
  const s = DomainState.create(3);
  assert.equal(s.vcpuCount, 3);
  assert.equal(s.sharedInfoAbi, 'native');
  for (let t = 0; t < 32; t++) assert.equal(s.vmAssistEnabled(t), false);
  for (let i = 0; i < HVM_NR_PARAMS; i++) assert.equal(s.param(i), 0n);
  for (let v = 0; v < 3; v++) {
    assert.equal(s.upcallVector(v), 0);
    assert.equal(s.vcpuInfoAddress(v), undefined);
    assert.equal(s.area(v, AreaKind.Runstate), undefined);
    assert.equal(s.area(v, AreaKind.Time), undefined);
  }
  assert.ok(s.buffer instanceof SharedArrayBuffer);
  assert.equal(s.buffer.byteLength % 8, 0);
});

test('attach: a second DomainState on the same buffer sees every value, both ways', () => {
  const a = DomainState.create(4);
  const b = new DomainState(a.buffer);
  assert.equal(b.vcpuCount, 4);
  a.sharedInfoAbi = 'compat';
  a.setVmAssist(VMASST_TYPE.runstate_update_flag, true);
  a.setParam(HVM_PARAM.CALLBACK_IRQ, 0x0200_0000_0000_00f3n);
  a.setParam(HVM_NR_PARAMS - 1, -5n);
  a.setUpcallVector(3, 0xf3);
  a.setVcpuInfoAddress(2, 0x1_2345_6780);
  a.setArea(1, AreaKind.Runstate, { abi: 'compat', pieces: [{ gpa: 0x1ff0, length: 16 }, { gpa: 0x9000, length: 28 }] });
  a.setRunstate(3, [1n, 2n, 3n, 4n, 5n, 6n]);
  assert.equal(b.sharedInfoAbi, 'compat');
  assert.equal(b.vmAssistEnabled(VMASST_TYPE.runstate_update_flag), true);
  assert.equal(b.param(HVM_PARAM.CALLBACK_IRQ), 0x0200_0000_0000_00f3n);
  assert.equal(b.param(HVM_NR_PARAMS - 1), -5n);
  assert.equal(b.upcallVector(3), 0xf3);
  assert.equal(b.vcpuInfoAddress(2), 0x1_2345_6780);
  assert.deepEqual(b.area(1, AreaKind.Runstate), { abi: 'compat', pieces: [{ gpa: 0x1ff0, length: 16 }, { gpa: 0x9000, length: 28 }] });
  assert.deepEqual(b.runstate(3), [1n, 2n, 3n, 4n, 5n, 6n]);
  // And back.
  b.sharedInfoAbi = 'native';
  b.setUpcallVector(0, 0x20);
  assert.equal(a.sharedInfoAbi, 'native');
  assert.equal(a.upcallVector(0), 0x20);
});

test('per-vCPU fields do not bleed into each other or into the params', () => {
  const s = DomainState.create(3);
  for (let v = 0; v < 3; v++) {
    s.setUpcallVector(v, 0x40 + v);
    s.setVcpuInfoAddress(v, 0x1000 * (v + 1));
    s.setArea(v, AreaKind.Runstate, { abi: 'native', pieces: [{ gpa: 0x10_0000 + v, length: 48 }] });
    s.setArea(v, AreaKind.Time, { abi: 'compat', pieces: [{ gpa: 0x20_0000 + v, length: 32 }] });
    s.setRunstate(v, [BigInt(v), 10n + BigInt(v), 1n, 2n, 3n, 4n]);
  }
  for (let v = 0; v < 3; v++) {
    assert.equal(s.upcallVector(v), 0x40 + v);
    assert.equal(s.vcpuInfoAddress(v), 0x1000 * (v + 1));
    assert.deepEqual(s.area(v, AreaKind.Runstate), { abi: 'native', pieces: [{ gpa: 0x10_0000 + v, length: 48 }] });
    assert.deepEqual(s.area(v, AreaKind.Time), { abi: 'compat', pieces: [{ gpa: 0x20_0000 + v, length: 32 }] });
    assert.deepEqual(s.runstate(v), [BigInt(v), 10n + BigInt(v), 1n, 2n, 3n, 4n]);
  }
  for (let i = 0; i < HVM_NR_PARAMS; i++) assert.equal(s.param(i), 0n);
});

test('params: 64-bit values, stored signed', () => {
  const s = DomainState.create(1);
  s.setParam(HVM_PARAM.STORE_PFN, 0xfeff0n);
  s.setParam(HVM_PARAM.CONSOLE_PFN, 0xffff_ffff_ffff_ffffn);
  s.setParam(HVM_PARAM.VIRIDIAN, 1n << 63n);
  assert.equal(s.param(HVM_PARAM.STORE_PFN), 0xfeff0n);
  assert.equal(s.param(HVM_PARAM.CONSOLE_PFN), -1n);
  assert.equal(s.param(HVM_PARAM.VIRIDIAN), -(1n << 63n));
  assert.equal(BigInt.asUintN(64, s.param(HVM_PARAM.CONSOLE_PFN)), 0xffff_ffff_ffff_ffffn);
});

test('vm assists: set and clear individual bits', () => {
  const s = DomainState.create(1);
  s.setVmAssist(5, true);
  s.setVmAssist(2, true);
  assert.equal(s.vmAssistEnabled(5), true);
  assert.equal(s.vmAssistEnabled(2), true);
  assert.equal(s.vmAssistEnabled(3), false);
  s.setVmAssist(5, false);
  assert.equal(s.vmAssistEnabled(5), false);
  assert.equal(s.vmAssistEnabled(2), true);
  s.setVmAssist(5, false);
  assert.equal(s.vmAssistEnabled(5), false);
});

test('vcpuInfoAddress: undefined until set; address 0 is an address', () => {
  const s = DomainState.create(2);
  s.setVcpuInfoAddress(0, 0);
  assert.equal(s.vcpuInfoAddress(0), 0);
  assert.equal(s.vcpuInfoAddress(1), undefined);
  s.setVcpuInfoAddress(1, 2 ** 40 - 64);
  assert.equal(s.vcpuInfoAddress(1), 2 ** 40 - 64);
});

test('areas: set, replace, clear; one or two pieces; more than two refused', () => {
  const s = DomainState.create(2);
  s.setArea(0, AreaKind.Time, { abi: 'native', pieces: [{ gpa: 0x1ff0, length: 16 }, { gpa: 0x5000, length: 16 }] });
  assert.deepEqual(s.area(0, AreaKind.Time), { abi: 'native', pieces: [{ gpa: 0x1ff0, length: 16 }, { gpa: 0x5000, length: 16 }] });
  // Replacing with one piece drops the old second piece.
  s.setArea(0, AreaKind.Time, { abi: 'compat', pieces: [{ gpa: 0x3000, length: 32 }] });
  assert.deepEqual(s.area(0, AreaKind.Time), { abi: 'compat', pieces: [{ gpa: 0x3000, length: 32 }] });
  // Piece at guest-physical 0 is kept.
  s.setArea(0, AreaKind.Runstate, { abi: 'native', pieces: [{ gpa: 0, length: 48 }] });
  assert.deepEqual(s.area(0, AreaKind.Runstate), { abi: 'native', pieces: [{ gpa: 0, length: 48 }] });
  s.setArea(0, AreaKind.Time, undefined);
  assert.equal(s.area(0, AreaKind.Time), undefined);
  assert.deepEqual(s.area(0, AreaKind.Runstate), { abi: 'native', pieces: [{ gpa: 0, length: 48 }] }, 'the other kind stays');
  assert.throws(() => s.setArea(1, AreaKind.Runstate, { abi: 'native', pieces: [{ gpa: 0, length: 1 }, { gpa: 8, length: 1 }, { gpa: 16, length: 1 }] }));
  // An empty registration (no pieces) is a registration of nothing, not "none".
  s.setArea(1, AreaKind.Time, { abi: 'native', pieces: [] });
  assert.deepEqual(s.area(1, AreaKind.Time), { abi: 'native', pieces: [] });
});

test('power: up and initialised per vCPU, seen through an attached copy', () => {
  const a = DomainState.create(3);
  const b = new DomainState(a.buffer);
  for (let v = 0; v < 3; v++) {
    assert.equal(a.isUp(v), false);
    assert.equal(a.isInitialised(v), false);
  }
  a.setUp(1, true);
  a.setInitialised(2);
  assert.deepEqual([0, 1, 2].map((v) => b.isUp(v)), [false, true, false]);
  assert.deepEqual([0, 1, 2].map((v) => b.isInitialised(v)), [false, false, true]);
  b.setUp(1, false);
  assert.equal(a.isUp(1), false);
});

test('start context: stored per vCPU with its ABI, taken once after a start request', () => {
  const a = DomainState.create(2);
  const b = new DomainState(a.buffer);
  assert.equal(b.takeStartContext(0), undefined, 'nothing requested');
  const ctx = Uint8Array.from({ length: 88 }, (_, i) => i + 1);
  a.setStartContext(1, 'compat', ctx);
  assert.equal(b.takeStartContext(1), undefined, 'stored but not requested');
  a.requestStart(1);
  const got = b.takeStartContext(1)!;
  assert.equal(got.abi, 'compat');
  assert.equal(got.context.length, CONTEXT_BYTES);
  assert.deepEqual(got.context.subarray(0, 88), ctx);
  assert.ok(got.context.subarray(88).every((x) => x === 0));
  assert.equal(b.takeStartContext(1), undefined, 'taken once');
  assert.equal(b.takeStartContext(0), undefined, 'the other vCPU has none');
  // A second, shorter context replaces the first entirely; a longer one is cut to CONTEXT_BYTES.
  a.setStartContext(1, 'native', Uint8Array.of(9, 9));
  a.requestStart(1);
  const again = b.takeStartContext(1)!;
  assert.equal(again.abi, 'native');
  assert.deepEqual([...again.context.subarray(0, 3)], [9, 9, 0]);
  a.setStartContext(0, 'native', new Uint8Array(CONTEXT_BYTES + 50).fill(7));
  a.requestStart(0);
  assert.ok(b.takeStartContext(0)!.context.every((x) => x === 7));
  // The context of vCPU 0 did not spill into vCPU 1's.
  a.requestStart(1);
  assert.deepEqual([...b.takeStartContext(1)!.context.subarray(0, 3)], [9, 9, 0]);
});

test('runstate: round trip of all six words, including the update flag bit', () => {
  const s = DomainState.create(2);
  const words = [3n, (1n << 63n) | 12345n, 1n, 2n, 3n, 0x7fff_ffff_ffff_ffffn];
  s.setRunstate(1, words);
  const back = s.runstate(1).map((w) => BigInt.asUintN(64, w));
  assert.deepEqual(back, words);
  assert.deepEqual(s.runstate(0), [0n, 0n, 0n, 0n, 0n, 0n]);
});

/**
 * Reads a record of `s` in a worker, again and again, while `write` changes it here: `read` is the
 * worker's expression for one read of `s`, `whole(value, last)` its test that the read is not torn
 * (`last` the read before). The worker reads at least 1000 times and once more after `write` ends,
 * so `final` is what the last write left.
 */
async function readWhileWriting(s: DomainState, read: string, whole: string, write: () => void): Promise<{ reads: number; torn: number; final: string }> {
  const control = new Int32Array(new SharedArrayBuffer(8)); // [0] reader started, [1] stop
  const url = new URL('./domain-state.js', import.meta.url).href;
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     import(workerData.url).then(({ DomainState }) => {
       const s = new DomainState(workerData.buffer);
       const control = new Int32Array(workerData.control);
       const whole = ${whole};
       let reads = 0, torn = 0, last;
       Atomics.store(control, 0, 1);
       while (Atomics.load(control, 1) === 0 || reads < 1000) {
         const w = ${read};
         reads++;
         if (!whole(w, last)) torn++;
         last = w;
       }
       parentPort.postMessage({ reads, torn, final: JSON.stringify(${read}, (k, v) => typeof v === 'bigint' ? String(v) : v) });
     });`,
    { eval: true, workerData: { url, buffer: s.buffer, control: control.buffer } },
  );
  const done = new Promise<{ reads: number; torn: number; final: string }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const deadline = Date.now() + 10_000;
  while (Atomics.load(control, 0) === 0 && Date.now() < deadline) Atomics.wait(control, 0, 0, 1);
  assert.equal(Atomics.load(control, 0), 1, 'reader started');
  write();
  Atomics.store(control, 1, 1);
  const r = await done;
  await worker.terminate();
  return r;
}

test('runstate: a reader on another thread never sees a torn record', async () => {
  const s = DomainState.create(2);
  const N = 200_000;
  const r = await readWhileWriting(s, 's.runstate(1)', '(w, last) => w.every((x) => x === w[0]) && (last === undefined || w[0] >= last[0])', () => {
    for (let i = 1; i <= N; i++) {
      const v = BigInt(i);
      s.setRunstate(1, [v, v, v, v, v, v]);
    }
  });
  assert.equal(r.torn, 0, `${r.torn} torn reads out of ${r.reads}`);
  assert.ok(r.reads >= 1000);
  assert.equal(r.final, JSON.stringify(Array(6).fill(String(N))), 'the read after the last write sees it');
});

test("areas: a vCPU thread reading its runstate area never sees a registration another thread is changing half-done", async () => {
  const s = DomainState.create(2);
  const A = { abi: 'native' as const, pieces: [{ gpa: 0x1000, length: 48 }] };
  const B = { abi: 'compat' as const, pieces: [{ gpa: 0x2ffc, length: 4 }, { gpa: 0x5000, length: 40 }] };
  const whole = `(w) => w !== undefined && (JSON.stringify(w) === ${JSON.stringify(JSON.stringify(A))} || JSON.stringify(w) === ${JSON.stringify(JSON.stringify(B))})`;
  s.setArea(1, AreaKind.Runstate, A);
  const r = await readWhileWriting(s, `s.area(1, ${AreaKind.Runstate})`, whole, () => {
    for (let i = 0; i < 200_000; i++) s.setArea(1, AreaKind.Runstate, i % 2 ? A : B);
  });
  assert.equal(r.torn, 0, `${r.torn} torn reads out of ${r.reads}`);
  assert.equal(r.final, JSON.stringify(A), "the last write (i = 199,999) left A");
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitReasons, internalErrors, kvmRun, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT, systemEvents } from './abi.js';
import { decodeExit, describeExit, type KvmExit } from './exits.js';

/** A made-up kvm_run page with the given exit reason; garbage elsewhere so stray reads show. */
function page(reason: number): { view: DataView; bytes: Uint8Array } {
  const bytes = new Uint8Array(4096).fill(0xa5);
  const view = new DataView(bytes.buffer);
  view.setUint32(kvmRun.exit_reason, reason, true);
  return { view, bytes };
}

/** An I/O exit as KVM lays it out. */
function ioPage(direction: number, size: number, port: number, count: number, dataOffset: bigint): DataView {
  const { view } = page(exitReasons.IO);
  view.setUint8(kvmRun.io.direction, direction);
  view.setUint8(kvmRun.io.size, size);
  view.setUint16(kvmRun.io.port, port, true);
  view.setUint32(kvmRun.io.count, count, true);
  view.setBigUint64(kvmRun.io.data_offset, dataOffset, true);
  return view;
}

/** An MMIO exit as KVM lays it out, with 8 data bytes. */
function mmioPage(gpa: bigint, data: number[], len: number, isWrite: boolean): { view: DataView; bytes: Uint8Array } {
  const p = page(exitReasons.MMIO);
  p.view.setBigUint64(kvmRun.mmio.phys_addr, gpa, true);
  p.bytes.set(data, kvmRun.mmio.data);
  p.view.setUint32(kvmRun.mmio.len, len, true);
  p.view.setUint8(kvmRun.mmio.is_write, isWrite ? 1 : 0);
  return p;
}

function oneLine(exit: KvmExit, ...needles: string[]): string {
  const line = describeExit(exit);
  assert.ok(!line.includes('\n'), `multi-line description: ${line}`);
  assert.ok(line.length > 0);
  for (const n of needles) assert.ok(line.includes(n), `${JSON.stringify(line)} lacks ${JSON.stringify(n)}`);
  return line;
}

test('io out', () => {
  const exit = decodeExit(ioPage(KVM_EXIT_IO_OUT, 2, 0x3f8, 1, 0x1000n));
  assert.deepEqual(exit, { kind: 'io', direction: 'out', port: 0x3f8, size: 2, count: 1, dataOffset: 0x1000 });
  oneLine(exit, 'I/O', 'out', '0x3f8', 'size 2', 'count 1');
});

test('io in, string I/O', () => {
  const exit = decodeExit(ioPage(KVM_EXIT_IO_IN, 4, 0xcf9, 3, 0x2000n));
  assert.deepEqual(exit, { kind: 'io', direction: 'in', port: 0xcf9, size: 4, count: 3, dataOffset: 0x2000 });
  oneLine(exit, 'in', '0xcf9', 'size 4', 'count 3');
});

test('io with a 16-bit port at the top of the range', () => {
  const exit = decodeExit(ioPage(KVM_EXIT_IO_IN, 1, 0xffff, 1, 0x1000n));
  assert.equal(exit.kind === 'io' && exit.port, 0xffff);
});

test('mmio write copies the data', () => {
  const { view, bytes } = mmioPage(0xfed00010n, [1, 2, 3, 4, 5, 6, 7, 8], 4, true);
  const exit = decodeExit(view);
  assert.equal(exit.kind, 'mmio');
  if (exit.kind !== 'mmio') return;
  assert.equal(exit.gpa, 0xfed00010);
  assert.equal(exit.len, 4);
  assert.equal(exit.isWrite, true);
  assert.deepEqual([...exit.data], [1, 2, 3, 4]);
  // A copy: later changes to the run page do not show through.
  bytes[kvmRun.mmio.data] = 0x99;
  assert.equal(exit.data[0], 1);
  oneLine(exit, 'MMIO', 'write', '0xfed00010', 'length 4');
});

test('mmio read, len clamped to 8, gpa above 4 GiB', () => {
  const { view } = mmioPage(0x1_0000_0000n, [9, 8, 7, 6, 5, 4, 3, 2], 4096, false);
  const exit = decodeExit(view);
  assert.equal(exit.kind, 'mmio');
  if (exit.kind !== 'mmio') return;
  assert.equal(exit.gpa, 0x1_0000_0000);
  assert.equal(exit.len, 8);
  assert.equal(exit.isWrite, false);
  assert.deepEqual([...exit.data], [9, 8, 7, 6, 5, 4, 3, 2]);
  oneLine(exit, 'MMIO', 'read', '0x100000000', 'length 8');
});

test('mmio on a run page that is a view into a larger buffer', () => {
  const backing = new Uint8Array(3 * 4096);
  const view = new DataView(backing.buffer, 4096, 4096);
  view.setUint32(kvmRun.exit_reason, exitReasons.MMIO, true);
  view.setBigUint64(kvmRun.mmio.phys_addr, 0xe0000n, true);
  backing.set([0xde, 0xad], 4096 + kvmRun.mmio.data);
  view.setUint32(kvmRun.mmio.len, 2, true);
  const exit = decodeExit(view);
  assert.equal(exit.kind === 'mmio' && exit.gpa, 0xe0000);
  assert.deepEqual(exit.kind === 'mmio' && [...exit.data], [0xde, 0xad]);
});

test('hlt, shutdown, intr, irq-window-open', () => {
  const cases: [number, KvmExit['kind']][] = [
    [exitReasons.HLT, 'hlt'],
    [exitReasons.SHUTDOWN, 'shutdown'],
    [exitReasons.INTR, 'intr'],
    [exitReasons.IRQ_WINDOW_OPEN, 'irq-window-open'],
  ];
  for (const [reason, kind] of cases) {
    const exit = decodeExit(page(reason).view);
    assert.deepEqual(exit, { kind });
    oneLine(exit, kind);
  }
});

test('exception', () => {
  const { view } = page(exitReasons.EXCEPTION);
  view.setUint32(kvmRun.ex.exception, 13, true);
  view.setUint32(kvmRun.ex.error_code, 0x18, true);
  const exit = decodeExit(view);
  assert.deepEqual(exit, { kind: 'exception', vector: 13, errorCode: 0x18 });
  oneLine(exit, 'exception 13', '0x18');
});

function systemEvent(type: number, data: bigint[], ndata = data.length): KvmExit {
  const { view } = page(exitReasons.SYSTEM_EVENT);
  view.setUint32(kvmRun.system_event.type, type, true);
  view.setUint32(kvmRun.system_event.ndata, ndata, true);
  data.forEach((d, i) => view.setBigUint64(kvmRun.system_event.data + 8 * i, d, true));
  return decodeExit(view);
}

test('system-event shutdown, reset, crash', () => {
  const s = systemEvent(systemEvents.SHUTDOWN, [0x1234n]);
  assert.deepEqual(s, { kind: 'system-event', event: 'shutdown', type: 1, data: [0x1234n] });
  oneLine(s, 'system event', 'shutdown', 'type 1');
  const r = systemEvent(systemEvents.RESET, []);
  assert.deepEqual(r, { kind: 'system-event', event: 'reset', type: 2, data: [] });
  oneLine(r, 'reset', 'type 2');
  const c = systemEvent(systemEvents.CRASH, [1n, 2n]);
  assert.deepEqual(c, { kind: 'system-event', event: 'crash', type: 3, data: [1n, 2n] });
  oneLine(c, 'crash', 'type 3');
});

test('system-event wakeup, suspend, sev-term', () => {
  assert.equal((systemEvent(systemEvents.WAKEUP, []) as { event: string }).event, 'wakeup');
  assert.equal((systemEvent(systemEvents.SUSPEND, []) as { event: string }).event, 'suspend');
  assert.equal((systemEvent(systemEvents.SEV_TERM, []) as { event: string }).event, 'sev-term');
});

test('system-event of an unknown type', () => {
  const e = systemEvent(77, []);
  assert.deepEqual(e, { kind: 'system-event', event: 'unknown', type: 77, data: [] });
  oneLine(e, 'unknown', 'type 77');
});

test('system-event ndata clamped to 16', () => {
  const data = Array.from({ length: 16 }, (_, i) => BigInt(i + 100));
  const e = systemEvent(systemEvents.CRASH, data, 0xffffffff);
  assert.equal(e.kind, 'system-event');
  if (e.kind !== 'system-event') return;
  assert.equal(e.data.length, 16);
  assert.deepEqual(e.data, data);
});

test('fail-entry', () => {
  const { view } = page(exitReasons.FAIL_ENTRY);
  view.setBigUint64(kvmRun.fail_entry.hardware_entry_failure_reason, 0x80000021n, true);
  view.setUint32(kvmRun.fail_entry.cpu, 3, true);
  const exit = decodeExit(view);
  assert.deepEqual(exit, { kind: 'fail-entry', hardwareReason: 0x80000021n, cpu: 3 });
  oneLine(exit, 'VM entry failed', 'CPU 3', '0x80000021');
});

function internal(suberror: number, data: bigint[], ndata = data.length): { view: DataView; bytes: Uint8Array } {
  const p = page(exitReasons.INTERNAL_ERROR);
  p.view.setUint32(kvmRun.internal.suberror, suberror, true);
  p.view.setUint32(kvmRun.internal.ndata, ndata, true);
  data.forEach((d, i) => p.view.setBigUint64(kvmRun.internal.data + 8 * i, d, true));
  return p;
}

test('internal-error, plain', () => {
  const exit = decodeExit(internal(internalErrors.DELIVERY_EV, [0x80000b0en, 0x1n]).view);
  assert.deepEqual(exit, {
    kind: 'internal-error',
    suberror: 3,
    description: 'event delivery failed',
    data: [0x80000b0en, 1n],
  });
  oneLine(exit, 'internal error', 'event delivery failed', 'suberror 3', '0x80000b0e 0x1');
});

test('internal-error descriptions and unknown suberrors', () => {
  const d = (s: number) => (decodeExit(internal(s, []).view) as { description: string }).description;
  assert.equal(d(internalErrors.EMULATION), 'instruction emulation failed');
  assert.equal(d(internalErrors.SIMUL_EX), 'exception raised while delivering an exception');
  assert.equal(d(internalErrors.UNEXPECTED_EXIT_REASON), 'unexpected hardware exit reason');
  assert.equal(d(42), 'internal error 42');
  const exit = decodeExit(internal(42, []).view);
  const line = oneLine(exit, 'suberror 42');
  assert.ok(!line.includes('data'), line);
});

test('internal-error ndata clamped to 16', () => {
  const data = Array.from({ length: 16 }, (_, i) => BigInt(i));
  const exit = decodeExit(internal(internalErrors.SIMUL_EX, data, 1000).view);
  assert.equal(exit.kind === 'internal-error' && exit.data.length, 16);
});

function emulationFailure(insn: number[], insnSize = insn.length, flags = BigInt(internalErrors.EMULATION_FLAG_INSTRUCTION_BYTES)) {
  const { view, bytes } = internal(internalErrors.EMULATION, [], 3);
  view.setBigUint64(kvmRun.emulation_failure.flags, flags, true);
  view.setUint8(kvmRun.emulation_failure.insn_size, insnSize);
  bytes.set(insn, kvmRun.emulation_failure.insn_bytes);
  return decodeExit(view);
}

test('internal-error: emulation failure with instruction bytes', () => {
  const exit = emulationFailure([0x0f, 0x01, 0xd9]);
  assert.equal(exit.kind, 'internal-error');
  if (exit.kind !== 'internal-error') return;
  assert.equal(exit.suberror, internalErrors.EMULATION);
  assert.equal(exit.description, 'instruction emulation failed');
  assert.deepEqual([...exit.instructionBytes!], [0x0f, 0x01, 0xd9]);
  assert.equal(exit.data.length, 3);
  oneLine(exit, 'instruction emulation failed', 'suberror 1');
});

test('internal-error: emulation failure insn_size clamped to 15', () => {
  const insn = Array.from({ length: 16 }, (_, i) => 0x90 + i);
  const exit = emulationFailure(insn, 200);
  assert.equal(exit.kind, 'internal-error');
  if (exit.kind !== 'internal-error') return;
  assert.deepEqual([...exit.instructionBytes!], insn.slice(0, 15));
});

test('internal-error: emulation failure without the flag has no instruction bytes', () => {
  const exit = emulationFailure([0x0f, 0x0b], 2, 0n);
  assert.equal(exit.kind, 'internal-error');
  assert.equal(exit.kind === 'internal-error' && exit.instructionBytes, undefined);
  assert.ok(!('instructionBytes' in exit));
});

test('internal-error: the flag means nothing for other suberrors', () => {
  const { view, bytes } = internal(internalErrors.DELIVERY_EV, [], 3);
  view.setBigUint64(kvmRun.emulation_failure.flags, 1n, true);
  view.setUint8(kvmRun.emulation_failure.insn_size, 2);
  bytes.set([0x0f, 0x0b], kvmRun.emulation_failure.insn_bytes);
  const exit = decodeExit(view);
  assert.ok(!('instructionBytes' in exit));
});

test('internal-error: emulation failure without flags data (ndata 0) has no instruction bytes', () => {
  const { view, bytes } = internal(internalErrors.EMULATION, [], 0);
  view.setBigUint64(kvmRun.emulation_failure.flags, 1n, true);
  view.setUint8(kvmRun.emulation_failure.insn_size, 2);
  bytes.set([0x0f, 0x0b], kvmRun.emulation_failure.insn_bytes);
  const exit = decodeExit(view);
  assert.ok(!('instructionBytes' in exit));
  assert.deepEqual(exit.kind === 'internal-error' && exit.data, []);
});

test('rdmsr', () => {
  const { view } = page(exitReasons.X86_RDMSR);
  view.setUint8(kvmRun.msr.error, 0);
  view.setUint32(kvmRun.msr.reason, 4, true);
  view.setUint32(kvmRun.msr.index, 0xc0000080, true);
  const exit = decodeExit(view);
  assert.deepEqual(exit, { kind: 'rdmsr', index: 0xc0000080, reason: 4 });
  oneLine(exit, 'RDMSR', '0xc0000080');
});

test('wrmsr', () => {
  const { view } = page(exitReasons.X86_WRMSR);
  view.setUint32(kvmRun.msr.reason, 2, true);
  view.setUint32(kvmRun.msr.index, 0x40000000, true);
  view.setBigUint64(kvmRun.msr.data, 0xffff_8000_0000_1001n, true);
  const exit = decodeExit(view);
  assert.deepEqual(exit, { kind: 'wrmsr', index: 0x40000000, data: 0xffff_8000_0000_1001n, reason: 2 });
  oneLine(exit, 'WRMSR', '0x40000000', '0xffff800000001001');
});

test('unknown reasons: named, unnamed, and ones xenkvm does not decode', () => {
  const { view } = page(34);
  view.setBigUint64(kvmRun.hw.hardware_exit_reason, 0x30n, true);
  const xen = decodeExit(view);
  assert.deepEqual(xen, { kind: 'unknown', reason: 34, name: 'XEN', hardwareReason: 0x30n });
  oneLine(xen, 'XEN', '34', '0x30');

  const odd = page(999);
  odd.view.setBigUint64(kvmRun.hw.hardware_exit_reason, 7n, true);
  const e999 = decodeExit(odd.view);
  assert.deepEqual(e999, { kind: 'unknown', reason: 999, name: 'exit reason 999', hardwareReason: 7n });
  oneLine(e999, 'exit reason 999', '0x7');

  for (const [reason, name] of [
    [exitReasons.UNKNOWN, 'UNKNOWN'],
    [exitReasons.HYPERCALL, 'HYPERCALL'],
    [exitReasons.DEBUG, 'DEBUG'],
    [exitReasons.NMI, 'NMI'],
    [exitReasons.X86_BUS_LOCK, 'X86_BUS_LOCK'],
    [exitReasons.MEMORY_FAULT, 'MEMORY_FAULT'],
  ] as const) {
    const e = decodeExit(page(reason).view);
    assert.equal(e.kind, 'unknown', name);
    assert.equal(e.kind === 'unknown' && e.name, name);
    oneLine(e, name, `(${reason})`);
  }
});

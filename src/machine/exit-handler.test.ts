import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino, type Logger } from 'pino';
import { capturedLogger } from '../common/captured-logger.js';
import { exitReasons, kvmRegs, kvmRun, kvmSregs, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT, KVM_EXIT_XEN_HCALL } from '../kvm/abi.js';
import type { KvmExit } from '../kvm/exits.js';
import { PVM_LIMITS, type CpuVendor } from '../kvm/system.js';
import type { Regs, Sregs } from '../kvm/vcpu.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { IoBus, type PortDevice } from './devices/io-bus.js';
import { ExitHandler, type ExitVcpu, type MsrHandler } from './exit-handler.js';
import { exitStatus } from './exit-status.js';

const KiB = 1024;

type IoExit = Extract<KvmExit, { kind: 'io' }>;
type MsrResult = { fault: true } | { fault: false; value?: bigint };

/** Where KVM puts port I/O data: the page after kvm_run (KVM_PIO_PAGE_OFFSET). */
const DATA = 4096;

class FakeVcpu implements ExitVcpu {
  readonly id = 1;
  /** A made-up kvm_run mapping of three pages, like KVM's. */
  readonly runBytes = new Uint8Array(3 * 4096);
  readonly run = new DataView(this.runBytes.buffer);
  /** The I/O data page. */
  readonly io = this.runBytes.subarray(DATA, DATA + 64);
  mmioReads: Uint8Array[] = [];
  msrResults: MsrResult[] = [];
  regs: Regs = kvmRegs.decode(new Uint8Array(kvmRegs.size));
  sregs: Sregs = kvmSregs.decode(new Uint8Array(kvmSregs.size));
  regsError: Error | undefined;

  completeMmioRead(bytes: Uint8Array): void {
    this.mmioReads.push(Uint8Array.from(bytes));
  }
  completeMsr(result: MsrResult): void {
    this.msrResults.push(result);
  }
  xenResults: bigint[] = [];
  completeXenHypercall(result: bigint): void {
    this.xenResults.push(result);
  }
  getRegs(): Regs {
    if (this.regsError) throw this.regsError;
    return this.regs;
  }
  getSregs(): Sregs {
    return this.sregs;
  }
}

class Recorder implements PortDevice {
  writes: [number, number, number][] = [];
  reads: [number, number][] = [];
  constructor(private readonly values: number[] = [0]) {}
  read(offset: number, size: number): number {
    this.reads.push([offset, size]);
    return this.values[(this.reads.length - 1) % this.values.length];
  }
  write(offset: number, size: number, value: number): void {
    this.writes.push([offset, size, value]);
  }
}

function setup(t: { after(fn: () => void): void }, msrs?: MsrHandler, logger: Logger = pino({ level: 'silent' }), vendor: CpuVendor = 'intel', pvm = false) {
  const memory = GuestMemory.create([{ gpa: 0, size: 64 * KiB }], 1);
  t.after(() => memory.dispose());
  const bus = new IoBus();
  const vcpu = new FakeVcpu();
  const handler = new ExitHandler(vcpu, bus, memory, { vendor, pvm }, logger, msrs);
  return { memory, bus, vcpu, handler };
}

test('a Xen hypercall exit is decoded from kvm_run, served, and its result handed back to KVM; without Xen it stops the vCPU', (t) => {
  const memory = GuestMemory.create([{ gpa: 0, size: 64 * KiB }], 1);
  t.after(() => memory.dispose());
  const xenExit = (vcpu: FakeVcpu) => {
    vcpu.run.setUint32(kvmRun.exit_reason, exitReasons.XEN, true);
    vcpu.run.setUint32(kvmRun.xen.type, KVM_EXIT_XEN_HCALL, true);
    vcpu.run.setUint32(kvmRun.xen.longmode, 1, true);
    vcpu.run.setUint32(kvmRun.xen.cpl, 3, true);
    vcpu.run.setBigUint64(kvmRun.xen.input, 17n, true);
    for (let i = 0; i < 6; i++) vcpu.run.setBigUint64(kvmRun.xen.params + 8 * i, BigInt(i + 1) << 32n, true);
  };
  const vcpu = new FakeVcpu();
  const calls: unknown[] = [];
  const hypercalls = { port: 0xe2, call: () => undefined, xen: (exit: unknown) => (calls.push(exit), -38n) };
  const handler = new ExitHandler(vcpu, new IoBus(), memory, { vendor: 'amd', pvm: false }, pino({ level: 'silent' }), undefined, hypercalls);
  xenExit(vcpu);
  assert.equal(handler.handleRun(exitReasons.XEN), undefined);
  assert.deepEqual(calls, [{ kind: 'xen-hcall', longMode: true, cpl: 3, input: 17n, params: [1, 2, 3, 4, 5, 6].map((i) => BigInt(i) << 32n) }]);
  assert.deepEqual(vcpu.xenResults, [-38n]);
  // Another type of Xen exit is not a hypercall: reported, not served.
  vcpu.run.setUint32(kvmRun.xen.type, 2, true);
  assert.equal(handler.handleRun(exitReasons.XEN)?.stop, 'vcpu-error');
  const { handler: withoutXen, vcpu: other } = setup(t);
  xenExit(other);
  assert.match(withoutXen.handleRun(exitReasons.XEN)?.message ?? '', /no Xen to serve it/);
  assert.equal(calls.length, 1);
});

/** An I/O exit whose data is at `at` within the I/O data page. */
const io = (direction: 'in' | 'out', port: number, size: number, count = 1, at = 0): IoExit => ({ kind: 'io', direction, port, size, count, dataOffset: DATA + at });

test('io out goes to the device', (t) => {
  const { bus, vcpu, handler } = setup(t);
  const dev = new Recorder();
  bus.register(0x70, 2, dev);
  vcpu.io.set([0x8f]);
  assert.equal(handler.handle(io('out', 0x70, 1)), undefined);
  vcpu.io.set([0x34, 0x12], 8);
  handler.handle(io('out', 0x71, 2, 1, 8));
  vcpu.io.set([0xef, 0xbe, 0xad, 0xde]);
  handler.handle(io('out', 0x70, 4));
  assert.deepEqual(dev.writes, [[0, 1, 0x8f], [1, 2, 0x1234], [0, 4, 0xdeadbeef]]);
});

test('io in writes the value back into the data area', (t) => {
  const { bus, vcpu, handler } = setup(t);
  bus.register(0x60, 1, new Recorder([0x1ab]));
  bus.register(0x61, 1, new Recorder([0xbeef]));
  bus.register(0x62, 1, new Recorder([0xdeadbeef]));
  vcpu.io.fill(0x55);
  assert.equal(handler.handle(io('in', 0x60, 1)), undefined);
  assert.deepEqual([...vcpu.io.subarray(0, 2)], [0xab, 0x55], 'one byte, masked');
  handler.handle(io('in', 0x61, 2, 1, 16));
  assert.deepEqual([...vcpu.io.subarray(16, 19)], [0xef, 0xbe, 0x55]);
  handler.handle(io('in', 0x62, 4, 1, 32));
  assert.deepEqual([...vcpu.io.subarray(32, 37)], [0xef, 0xbe, 0xad, 0xde, 0x55]);
});

test('string I/O out: count items in order', (t) => {
  const { bus, vcpu, handler } = setup(t);
  const dev = new Recorder();
  bus.register(0xe9, 1, dev);
  vcpu.io.set([0x41, 0x42, 0x43]);
  handler.handle(io('out', 0xe9, 1, 3));
  assert.deepEqual(dev.writes, [[0, 1, 0x41], [0, 1, 0x42], [0, 1, 0x43]]);
  dev.writes = [];
  vcpu.io.set([1, 0, 2, 0, 3, 0]);
  handler.handle(io('out', 0xe9, 2, 3));
  assert.deepEqual(dev.writes, [[0, 2, 1], [0, 2, 2], [0, 2, 3]]);
});

test('string I/O in: count items, each read from the device', (t) => {
  const { bus, vcpu, handler } = setup(t);
  const dev = new Recorder([0x1111, 0x2222, 0x3333]);
  bus.register(0x1f0, 1, dev);
  handler.handle(io('in', 0x1f0, 2, 3, 4));
  assert.equal(dev.reads.length, 3);
  assert.deepEqual([...vcpu.io.subarray(4, 10)], [0x11, 0x11, 0x22, 0x22, 0x33, 0x33]);
});

test('unknown port: reads are all-ones, writes are dropped', (t) => {
  const { vcpu, handler } = setup(t);
  handler.handle(io('in', 0x123, 1));
  assert.equal(vcpu.io[0], 0xff);
  vcpu.io.fill(0);
  handler.handle(io('in', 0x123, 2));
  assert.deepEqual([...vcpu.io.subarray(0, 3)], [0xff, 0xff, 0]);
  vcpu.io.fill(0);
  handler.handle(io('in', 0x123, 4, 2));
  assert.deepEqual([...vcpu.io.subarray(0, 9)], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
  assert.equal(handler.handle(io('out', 0x123, 4)), undefined);
});

test('mmio read of unbacked memory completes with all-ones', (t) => {
  const { vcpu, handler } = setup(t);
  const exit: KvmExit = { kind: 'mmio', gpa: 0xfed00000, len: 4, isWrite: false, data: new Uint8Array(4) };
  assert.equal(handler.handle(exit), undefined);
  assert.equal(vcpu.mmioReads.length, 1);
  assert.ok(vcpu.mmioReads[0].length >= 4);
  assert.ok(vcpu.mmioReads[0].every((b) => b === 0xff));
});

test('mmio write is dropped', (t) => {
  const { vcpu, handler } = setup(t);
  assert.equal(handler.handle({ kind: 'mmio', gpa: 0xfed00000, len: 4, isWrite: true, data: Uint8Array.of(1, 2, 3, 4) }), undefined);
  assert.deepEqual(vcpu.mmioReads, []);
});

test('rdmsr and wrmsr without a handler fault', (t) => {
  const { vcpu, handler } = setup(t);
  assert.equal(handler.handle({ kind: 'rdmsr', index: 0x40000000, reason: 4 }), undefined);
  assert.equal(handler.handle({ kind: 'wrmsr', index: 0x40000000, data: 5n, reason: 4 }), undefined);
  assert.deepEqual(vcpu.msrResults, [{ fault: true }, { fault: true }]);
});

test('rdmsr and wrmsr with an MsrHandler', (t) => {
  const calls: unknown[] = [];
  const msrs: MsrHandler = {
    read: (vcpu, index) => {
      calls.push(['read', vcpu, index]);
      return index === 0x40000001 ? 0x1234_5678_9abc_def0n : undefined;
    },
    write: (vcpu, index, value) => {
      calls.push(['write', vcpu, index, value]);
      return index === 0x40000001;
    },
  };
  const { vcpu, handler } = setup(t, msrs);
  handler.handle({ kind: 'rdmsr', index: 0x40000001, reason: 4 });
  handler.handle({ kind: 'rdmsr', index: 0x40000002, reason: 4 });
  handler.handle({ kind: 'wrmsr', index: 0x40000001, data: 7n, reason: 4 });
  handler.handle({ kind: 'wrmsr', index: 0x40000002, data: 8n, reason: 4 });
  assert.deepEqual(vcpu.msrResults, [{ fault: false, value: 0x1234_5678_9abc_def0n }, { fault: true }, { fault: false }, { fault: true }]);
  assert.deepEqual(calls, [
    ['read', 1, 0x40000001],
    ['read', 1, 0x40000002],
    ['write', 1, 0x40000001, 7n],
    ['write', 1, 0x40000002, 8n],
  ]);
});

test('a handler reading 0 is not a fault', (t) => {
  const { vcpu, handler } = setup(t, { read: () => 0n, write: () => true });
  handler.handle({ kind: 'rdmsr', index: 0x1b, reason: 4 });
  assert.deepEqual(vcpu.msrResults, [{ fault: false, value: 0n }]);
});

test('hlt, intr and irq-window-open need nothing', (t) => {
  const { vcpu, handler } = setup(t);
  for (const kind of ['hlt', 'intr', 'irq-window-open'] as const) assert.equal(handler.handle({ kind }), undefined);
  assert.deepEqual(vcpu.mmioReads, []);
  assert.deepEqual(vcpu.msrResults, []);
});

const INSN = [0x0f, 0x0b, 0x90, 0xf4, 0xeb, 0xfe, 0x48, 0x89, 0xe5, 0xc3, 0xcc, 0x66, 0x90, 0x0f, 0x01];

test('shutdown on Intel is a triple fault reporting RIP, mode and the instruction bytes', (t) => {
  const { memory, vcpu, handler } = setup(t, undefined, undefined, 'intel');
  memory.write(0x2000, Uint8Array.from([...INSN, 0xaa]));
  vcpu.regs.rip = 0x2000n;
  vcpu.sregs.cr0 = 0x11n; // PE, no paging
  vcpu.sregs.cs.db = 1;
  vcpu.sregs.cs.base = 0n;
  const action = handler.handle({ kind: 'shutdown' });
  assert.equal(action?.stop, 'triple-fault');
  assert.equal(exitStatus[action!.stop], 3);
  const m = action!.message;
  assert.ok(!m.includes('\n'));
  assert.match(m, /vCPU 1/);
  assert.match(m, /RIP 0x2000\b/);
  assert.match(m, /32-bit/);
  assert.match(m, /CS base 0x0\b/);
  assert.ok(m.includes('instruction bytes 0f 0b 90 f4 eb fe 48 89 e5 c3 cc 66 90 0f 01'), m);
  assert.ok(!m.includes('aa'), 'at most 15 bytes');
});

test('shutdown on AMD is a triple fault whose registers are not reported: KVM has reset the vCPU', (t) => {
  const { memory, vcpu, handler } = setup(t, undefined, undefined, 'amd');
  // What KVM leaves after SVM's shutdown intercept: the INIT state, at the reset vector.
  memory.write(0xfff0, Uint8Array.of(0xea, 0x5b, 0xe0, 0x00, 0xf0));
  vcpu.regs.rip = 0xfff0n;
  vcpu.sregs.cr0 = 0x60000010n;
  vcpu.sregs.cs.base = 0xffff0000n;
  const action = handler.handle({ kind: 'shutdown' });
  assert.equal(action?.stop, 'triple-fault');
  assert.equal(exitStatus[action!.stop], 3);
  const m = action!.message;
  assert.ok(!m.includes('\n'));
  assert.match(m, /^vCPU 1 triple-faulted; /);
  assert.match(m, /KVM resets the vCPU/);
  assert.match(m, /registers at the fault are lost/);
  for (const shown of [/RIP/, /0xfff0/, /real mode/, /CS base/, /instruction bytes/, /ea 5b/]) assert.doesNotMatch(m, shown);
  // The same through kvm_run, and even when the registers cannot be read.
  vcpu.regsError = new Error('KVM_GET_REGS failed: EIO');
  vcpu.run.setUint32(kvmRun.exit_reason, exitReasons.SHUTDOWN, true);
  assert.deepEqual(handler.handleRun(exitReasons.SHUTDOWN), action);
});

test('shutdown on PVM is a triple fault at the registers PVM keeps, with what PVM cannot run and what to do', (t) => {
  const { memory, vcpu, handler } = setup(t, undefined, undefined, 'amd', true);
  memory.write(0x2000, Uint8Array.of(0x0f, 0x22, 0xc0)); // mov %eax, %cr0: paging on in 32-bit mode
  vcpu.regs.rip = 0x2000n;
  vcpu.sregs.cr0 = 0x11n;
  vcpu.sregs.cs.db = 1;
  vcpu.sregs.cs.base = 0n;
  const action = handler.handle({ kind: 'shutdown' });
  assert.equal(action?.stop, 'triple-fault');
  assert.equal(action!.message, `vCPU 1 triple-faulted at RIP 0x2000 (32-bit mode, CS base 0x0), instruction bytes 0f 22 c0 ${'00 '.repeat(12).trim()}; ${PVM_LIMITS}: --accel nested runs such a guest`);
});

test('triple fault in real mode fetches at CS base + RIP', (t) => {
  const { memory, vcpu, handler } = setup(t);
  memory.write(0xf0f0, Uint8Array.of(0xea, 0x5b, 0xe0, 0x00, 0xf0));
  vcpu.regs.rip = 0xf0n;
  vcpu.sregs.cr0 = 0n;
  vcpu.sregs.cs.base = 0xf000n;
  const m = handler.handle({ kind: 'shutdown' })!.message;
  assert.match(m, /RIP 0xf0\b/);
  assert.match(m, /real mode/);
  assert.match(m, /CS base 0xf000\b/);
  assert.ok(m.includes('instruction bytes ea 5b e0 00 f0'), m);
});

test('triple fault at the end of RAM reports the bytes that exist', (t) => {
  const { memory, vcpu, handler } = setup(t);
  memory.write(64 * KiB - 3, Uint8Array.of(0xeb, 0xfe, 0xf4));
  vcpu.regs.rip = BigInt(64 * KiB - 3);
  const m = handler.handle({ kind: 'shutdown' })!.message;
  assert.ok(m.endsWith('instruction bytes eb fe f4'), m);
});

test('triple fault at an unbacked RIP says the bytes are unreadable', (t) => {
  const { vcpu, handler } = setup(t);
  vcpu.regs.rip = 0x80000000n;
  const m = handler.handle({ kind: 'shutdown' })!.message;
  assert.match(m, /RIP 0x80000000/);
  assert.match(m, /instruction bytes unreadable/);
});

test('internal error with instruction bytes reports those, not memory', (t) => {
  const { memory, vcpu, handler } = setup(t);
  memory.write(0x3000, Uint8Array.of(0x11, 0x22, 0x33));
  vcpu.regs.rip = 0x3000n;
  vcpu.sregs.efer = 1n << 10n; // long mode active
  vcpu.sregs.cr0 = 0x80000011n;
  vcpu.sregs.cs.l = 1;
  const action = handler.handle({
    kind: 'internal-error',
    suberror: 1,
    description: 'instruction emulation failed',
    data: [1n, 0x0f01n],
    instructionBytes: Uint8Array.of(0x0f, 0x01, 0xd9),
  });
  assert.equal(action?.stop, 'vcpu-error');
  const m = action!.message;
  assert.match(m, /instruction emulation failed/);
  assert.match(m, /64-bit mode/);
  assert.match(m, /RIP 0x3000\b/);
  assert.ok(m.includes('instruction bytes 0f 01 d9'), m);
  assert.ok(!m.includes('11 22 33'), m);
});

test('internal error without instruction bytes reads them from memory', (t) => {
  const { memory, vcpu, handler } = setup(t);
  memory.write(0x3000, Uint8Array.of(0x11, 0x22, 0x33));
  vcpu.regs.rip = 0x3000n;
  const action = handler.handle({ kind: 'internal-error', suberror: 3, description: 'event delivery failed', data: [] });
  assert.equal(action?.stop, 'vcpu-error');
  assert.match(action!.message, /event delivery failed/);
  assert.match(action!.message, /instruction bytes 11 22 33/);
});

/** 32-bit PAE paging with RIP at linear 0x4000, mapped to guest-physical 0x4000 through the PDPT at 0x1000 (PDPTE 0 = `pdpte`). */
function paeIdentity(memory: GuestMemory, vcpu: FakeVcpu, pdpte: number): void {
  const entry = (gpa: number, value: number) => memory.write(gpa, Uint8Array.from(new Uint8Array(new BigUint64Array([BigInt(value)]).buffer)));
  entry(0x1000, pdpte); // page directory at 0x2000
  entry(0x2000, 0x3000 | 0x3); // page table at 0x3000
  entry(0x3000 + 4 * 8, 0x4000 | 0x3); // linear 0x4000 → 0x4000
  vcpu.sregs.cr0 = 0x8000_0011n; // PG, PE
  vcpu.sregs.cr3 = 0x1000n;
  vcpu.sregs.cr4 = 0x20n; // PAE
  vcpu.sregs.cs.db = 1;
  vcpu.regs.rip = 0x4000n;
  memory.write(0x4000, Uint8Array.of(0x0f, 0x0b));
}

test('instruction bytes under 32-bit PAE paging: a PDPTE with the Accessed bit AMD sets is read on AMD only', (t) => {
  for (const [vendor, bytes] of [['amd', '0f 0b'], ['intel', 'unreadable']] as const) {
    const { memory, vcpu, handler } = setup(t, undefined, undefined, vendor);
    paeIdentity(memory, vcpu, 0x2000 | 0x21); // P, A
    const m = handler.handle({ kind: 'internal-error', suberror: 1, description: 'x', data: [] })!.message;
    assert.match(m, new RegExp(`instruction bytes ${bytes}`), `${vendor}: ${m}`);
  }
  // Without A both vendors read them.
  const { memory, vcpu, handler } = setup(t);
  paeIdentity(memory, vcpu, 0x2000 | 0x1);
  assert.match(handler.handle({ kind: 'internal-error', suberror: 1, description: 'x', data: [] })!.message, /instruction bytes 0f 0b/);
});

test('system events: shutdown powers off, reset resets, others are vCPU errors', (t) => {
  const { handler } = setup(t);
  const ev = (event: Extract<KvmExit, { kind: 'system-event' }>['event'], type: number): KvmExit => ({ kind: 'system-event', event, type, data: [] });
  const off = handler.handle(ev('shutdown', 1));
  assert.equal(off?.stop, 'poweroff');
  assert.match(off!.message, /vCPU 1/);
  assert.equal(handler.handle(ev('reset', 2))?.stop, 'reset');
  const crash = handler.handle(ev('crash', 3));
  assert.equal(crash?.stop, 'vcpu-error');
  assert.match(crash!.message, /crash/);
  const odd = handler.handle(ev('unknown', 99));
  assert.equal(odd?.stop, 'vcpu-error');
  assert.match(odd!.message, /type 99/);
});

test('unknown exits, exceptions and entry failures stop the vCPU with a report', (t) => {
  const { vcpu, handler } = setup(t);
  vcpu.regs.rip = 0x1234n;
  const u = handler.handle({ kind: 'unknown', reason: 34, name: 'XEN', hardwareReason: 0n });
  assert.equal(u?.stop, 'vcpu-error');
  assert.match(u!.message, /XEN/);
  assert.match(u!.message, /RIP 0x1234/);
  const e = handler.handle({ kind: 'exception', vector: 6, errorCode: 0 });
  assert.equal(e?.stop, 'vcpu-error');
  assert.match(e!.message, /exception 6/);
  const f = handler.handle({ kind: 'fail-entry', hardwareReason: 0x21n, cpu: 2 });
  assert.equal(f?.stop, 'vcpu-error');
  assert.match(f!.message, /0x21/);
});

test('unreadable registers do not make handle throw', (t) => {
  const { vcpu, handler } = setup(t);
  vcpu.regsError = new Error('KVM_GET_REGS failed: EIO');
  const tf = handler.handle({ kind: 'shutdown' });
  assert.equal(tf?.stop, 'triple-fault');
  assert.match(tf!.message, /unknown RIP/);
  assert.match(tf!.message, /KVM_GET_REGS failed: EIO/);
  const ie = handler.handle({ kind: 'internal-error', suberror: 1, description: 'x', data: [], instructionBytes: Uint8Array.of(1) });
  assert.equal(ie?.stop, 'vcpu-error');
  assert.match(ie!.message, /unknown RIP/);
  const u = handler.handle({ kind: 'unknown', reason: 999, name: 'exit reason 999', hardwareReason: 0n });
  assert.equal(u?.stop, 'vcpu-error');
});

test('many unhandled accesses do not throw, and the guest log is rate-limited per kind', (t) => {
  const log = capturedLogger();
  const { vcpu, handler } = setup(t, undefined, log.logger);
  for (let i = 0; i < 100; i++) {
    handler.handle(io('in', 0x300, 1));
    handler.handle({ kind: 'mmio', gpa: 0xe0000000, len: 1, isWrite: true, data: Uint8Array.of(0) });
    handler.handle({ kind: 'rdmsr', index: 0x123, reason: 4 });
  }
  assert.equal(vcpu.msrResults.length, 100);
  // 10 lines per kind (I/O, MMIO, MSR) in the window, the other 270 dropped
  assert.equal(log.warns().length, 30);
});

/** Fills kvm_run for an I/O exit, as KVM would. */
function ioRun(vcpu: FakeVcpu, direction: number, port: number, size: number, count: number, dataOffset = DATA): void {
  const run = vcpu.run;
  run.setUint32(kvmRun.exit_reason, exitReasons.IO, true);
  run.setUint8(kvmRun.io.direction, direction);
  run.setUint8(kvmRun.io.size, size);
  run.setUint16(kvmRun.io.port, port, true);
  run.setUint32(kvmRun.io.count, count, true);
  run.setBigUint64(kvmRun.io.data_offset, BigInt(dataOffset), true);
}

test('handleRun serves port I/O straight from kvm_run', (t) => {
  const { bus, vcpu, handler } = setup(t);
  const dev = new Recorder([0xbeef]);
  bus.register(0x510, 2, dev);
  ioRun(vcpu, KVM_EXIT_IO_OUT, 0x511, 2, 2, DATA + 8);
  vcpu.run.setUint32(DATA + 8, 0x56781234, true);
  assert.equal(handler.handleRun(exitReasons.IO), undefined);
  assert.deepEqual(dev.writes, [[1, 2, 0x1234], [1, 2, 0x5678]]);
  ioRun(vcpu, KVM_EXIT_IO_IN, 0x510, 2, 1);
  assert.equal(handler.handleRun(exitReasons.IO), undefined);
  assert.equal(vcpu.run.getUint16(DATA, true), 0xbeef);
  // Unknown port through the fast path.
  ioRun(vcpu, KVM_EXIT_IO_IN, 0x9999, 4, 1, DATA + 16);
  handler.handleRun(exitReasons.IO);
  assert.equal(vcpu.run.getUint32(DATA + 16, true), 0xffffffff);
});

test('handleRun decodes other exits from kvm_run', (t) => {
  const { vcpu, handler } = setup(t);
  vcpu.run.setUint32(kvmRun.exit_reason, exitReasons.X86_RDMSR, true);
  vcpu.run.setUint32(kvmRun.msr.index, 0x8b, true);
  assert.equal(handler.handleRun(exitReasons.X86_RDMSR), undefined);
  assert.deepEqual(vcpu.msrResults, [{ fault: true }]);
  vcpu.run.setUint32(kvmRun.exit_reason, exitReasons.HLT, true);
  assert.equal(handler.handleRun(exitReasons.HLT), undefined);
  vcpu.run.setUint32(kvmRun.exit_reason, exitReasons.SHUTDOWN, true);
  assert.equal(handler.handleRun(exitReasons.SHUTDOWN)?.stop, 'triple-fault');
});

test('malformed I/O exits are refused before touching anything', (t) => {
  const { bus, vcpu, handler } = setup(t);
  const dev = new Recorder();
  bus.register(0x70, 1, dev);
  // A size KVM never uses.
  assert.throws(() => handler.handle({ kind: 'io', direction: 'in', port: 0x70, size: 3, count: 1, dataOffset: DATA }), /malformed I\/O exit/);
  // Data overlapping the kvm_run structure itself.
  assert.throws(() => handler.handle({ kind: 'io', direction: 'in', port: 0x70, size: 1, count: 1, dataOffset: kvmRun.size - 1 }), /malformed/);
  assert.throws(() => handler.handle({ kind: 'io', direction: 'in', port: 0x70, size: 1, count: 1, dataOffset: 0 }), /malformed/);
  // Data running past the mapping.
  assert.throws(() => handler.handle({ kind: 'io', direction: 'in', port: 0x70, size: 4, count: 1, dataOffset: vcpu.run.byteLength - 2 }), /malformed/);
  assert.throws(() => handler.handle({ kind: 'io', direction: 'out', port: 0x70, size: 2, count: 0x10000, dataOffset: DATA }), /malformed/);
  ioRun(vcpu, KVM_EXIT_IO_IN, 0x70, 1, 1, 40);
  const before2 = Uint8Array.from(vcpu.runBytes);
  assert.throws(() => handler.handleRun(exitReasons.IO), /malformed/);
  assert.deepEqual(vcpu.runBytes, before2);
  assert.deepEqual(dev.reads, []);
  assert.deepEqual(dev.writes, []);
  // The last bytes of the mapping are fine.
  handler.handle({ kind: 'io', direction: 'in', port: 0x70, size: 4, count: 1, dataOffset: vcpu.run.byteLength - 4 });
  assert.equal(dev.reads.length, 1);
});

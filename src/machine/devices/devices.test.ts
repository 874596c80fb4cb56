import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AcpiPm } from './acpi-pm.js';
import { DebugConsole } from './debug-console.js';
import { IoBus, type PortDevice } from './io-bus.js';
import type { Platform, StopReason } from './platform.js';
import { PostCode } from './post-code.js';
import { Uart16550 } from './uart16550.js';

class FakePlatform implements Platform {
  stops: { reason: StopReason; message?: string }[] = [];
  output: number[] = [];
  irqs: [number, boolean][] = [];
  requestStop(reason: StopReason, message?: string): void {
    this.stops.push({ reason, message });
  }
  consoleOutput(bytes: Uint8Array): void {
    this.output.push(...bytes);
  }
  setIrqLevel(irq: number, level: boolean): void {
    this.irqs.push([irq, level]);
  }
  get lastIrq(): [number, boolean] | undefined {
    return this.irqs.at(-1);
  }
}

const reasons = (p: FakePlatform) => p.stops.map((s) => s.reason);

class Recorder implements PortDevice {
  reads: [number, number][] = [];
  writes: [number, number, number][] = [];
  constructor(private readonly value: number) {}
  read(offset: number, size: number): number {
    this.reads.push([offset, size]);
    return this.value + offset;
  }
  write(offset: number, size: number, value: number): void {
    this.writes.push([offset, size, value]);
  }
}

// ---- IoBus ---------------------------------------------------------------

test('IoBus dispatches by offset from the base port', () => {
  const bus = new IoBus();
  const a = new Recorder(0x100);
  const b = new Recorder(0x200);
  bus.register(0x3f8, 8, a);
  bus.register(0x80, 1, b);
  assert.equal(bus.read(0x3f8, 1), 0x100);
  assert.equal(bus.read(0x3fd, 1), 0x105);
  assert.equal(bus.read(0x80, 2), 0x200);
  assert.equal(bus.write(0x3ff, 4, 0xdeadbeef), true);
  assert.equal(bus.write(0x80, 1, 0x55), true);
  assert.deepEqual(a.reads, [[0, 1], [5, 1]]);
  assert.deepEqual(a.writes, [[7, 4, 0xdeadbeef]]);
  assert.deepEqual(b.reads, [[0, 2]]);
  assert.deepEqual(b.writes, [[0, 1, 0x55]]);
});

test('IoBus: unknown ports read undefined and writes report false', () => {
  const bus = new IoBus();
  const a = new Recorder(0);
  bus.register(0x3f8, 8, a);
  assert.equal(bus.read(0x3f7, 1), undefined);
  assert.equal(bus.read(0x400, 1), undefined);
  assert.equal(bus.write(0x3f7, 1, 0), false);
  assert.equal(bus.write(0x400, 1, 0), false);
  assert.equal(bus.read(0xe9, 1), undefined);
  assert.deepEqual(a.reads, []);
  assert.deepEqual(a.writes, []);
});

test('IoBus: registering a port twice throws', () => {
  const bus = new IoBus();
  bus.register(0x600, 2, new Recorder(0));
  assert.throws(() => bus.register(0x601, 4, new Recorder(0)), /0x601 registered twice/);
  assert.throws(() => bus.register(0x600, 1, new Recorder(0)), /registered twice/);
  bus.register(0x602, 1, new Recorder(0x42));
  assert.equal(bus.read(0x602, 1), 0x42);
});

// ---- DebugConsole, PostCode ------------------------------------------------

test('DebugConsole writes the bytes of 1-, 2- and 4-byte writes in order', () => {
  const p = new FakePlatform();
  const d = new DebugConsole(p);
  d.write(0, 1, 0x41);
  d.write(0, 2, 0x4342);
  d.write(0, 4, 0x47464544);
  d.write(0, 1, 0x1ff); // only the low byte
  assert.deepEqual(p.output, [0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0xff]);
  assert.equal(d.read(), 0xe9);
});

test('DebugConsole through the bus', () => {
  const p = new FakePlatform();
  const bus = new IoBus();
  bus.register(0xe9, 1, new DebugConsole(p));
  bus.write(0xe9, 4, 0xfffffffe);
  assert.deepEqual(p.output, [0xfe, 0xff, 0xff, 0xff]);
  assert.equal(bus.read(0xe9, 1), 0xe9);
});

test('PostCode reads all-ones of the access size and drops writes', () => {
  const pc = new PostCode();
  assert.equal(pc.read(0, 1), 0xff);
  assert.equal(pc.read(0, 2), 0xffff);
  assert.equal(pc.read(0, 4), 0xffffffff);
  pc.write();
});

// ---- AcpiPm ----------------------------------------------------------------

const S5 = 5;

function acpi() {
  const p = new FakePlatform();
  return { p, pm: new AcpiPm(p, S5) };
}

test('AcpiPm sleep control: S5 with SLP_EN powers off', () => {
  const { p, pm } = acpi();
  pm.sleepControl.write(0, 1, (S5 << 2) | 0x20);
  assert.deepEqual(reasons(p), ['poweroff']);
  assert.match(p.stops[0].message ?? '', /S5/);
});

test('AcpiPm sleep control: other sleep types and SLP_EN clear are ignored', () => {
  const { p, pm } = acpi();
  for (let typ = 0; typ < 8; typ++) if (typ !== S5) pm.sleepControl.write(0, 1, (typ << 2) | 0x20);
  pm.sleepControl.write(0, 1, S5 << 2);
  pm.sleepControl.write(0, 1, 0);
  assert.deepEqual(reasons(p), []);
  assert.equal(pm.sleepControl.read(0, 1), 0);
  assert.equal(pm.sleepStatus.read(0, 1), 0);
  pm.sleepStatus.write(0, 1, 0xff);
  assert.equal(pm.sleepStatus.read(0, 1), 0, 'WAK_STS never set');
  assert.deepEqual(reasons(p), []);
});

test('AcpiPm PM1a event block reads 0 and ignores writes', () => {
  const { p, pm } = acpi();
  pm.pm1aEvent.write(0, 2, 0xffff);
  pm.pm1aEvent.write(2, 2, 0xffff);
  assert.equal(pm.pm1aEvent.read(0, 2), 0);
  assert.equal(pm.pm1aEvent.read(2, 2), 0);
  assert.deepEqual(reasons(p), []);
});

test('AcpiPm PM1a control: 16-bit write of S5|SLP_EN powers off', () => {
  const { p, pm } = acpi();
  pm.pm1aControl.write(0, 2, (S5 << 10) | (1 << 13) | 1);
  assert.deepEqual(reasons(p), ['poweroff']);
});

test('AcpiPm PM1a control: 32-bit write of S5|SLP_EN powers off', () => {
  const { p, pm } = acpi();
  pm.pm1aControl.write(0, 4, (S5 << 10) | (1 << 13));
  assert.deepEqual(reasons(p), ['poweroff']);
});

test('AcpiPm PM1a control: byte write to offset 1 powers off', () => {
  const { p, pm } = acpi();
  pm.pm1aControl.write(0, 1, 1); // SCI_EN only
  assert.deepEqual(reasons(p), []);
  pm.pm1aControl.write(1, 1, ((S5 << 10) | (1 << 13)) >> 8);
  assert.deepEqual(reasons(p), ['poweroff']);
});

test('AcpiPm PM1a control: other sleep types, SLP_EN clear, byte writes to offset 0 are ignored', () => {
  const { p, pm } = acpi();
  pm.pm1aControl.write(0, 2, S5 << 10); // SLP_EN clear
  pm.pm1aControl.write(0, 2, (3 << 10) | (1 << 13)); // S3
  pm.pm1aControl.write(0, 2, (1 << 13)); // S0
  pm.pm1aControl.write(1, 1, (1 << 13 | 1 << 10) >> 8); // S1 by byte
  pm.pm1aControl.write(0, 1, 0xff); // low byte holds neither SLP_TYP nor SLP_EN
  assert.deepEqual(reasons(p), []);
});

test('AcpiPm PM1a control: SCI_EN reads 1', () => {
  const { pm } = acpi();
  assert.equal(pm.pm1aControl.read(0, 2) & 1, 1);
  assert.equal(pm.pm1aControl.read(0, 1), 1);
  assert.equal(pm.pm1aControl.read(1, 1), 0);
});

test('AcpiPm reset register: bit 2 resets, other values do nothing', () => {
  const { p, pm } = acpi();
  pm.reset.write(0, 1, 0x02);
  pm.reset.write(0, 1, 0x00);
  pm.reset.write(0, 1, 0x0b);
  assert.deepEqual(reasons(p), []);
  pm.reset.write(0, 1, 0x06);
  assert.deepEqual(reasons(p), ['reset']);
  pm.reset.write(0, 1, 0x04);
  assert.deepEqual(reasons(p), ['reset', 'reset']);
  assert.equal(pm.reset.read(0, 1), 0);
});

test('AcpiPm keyboard controller: 0xfe pulses reset, other commands do nothing', () => {
  const { p, pm } = acpi();
  pm.keyboardController.write(0, 1, 0xad);
  pm.keyboardController.write(0, 1, 0xd1);
  pm.keyboardController.write(0, 1, 0xff);
  assert.deepEqual(reasons(p), []);
  assert.equal(pm.keyboardController.read(0, 1), 0);
  pm.keyboardController.write(0, 1, 0xfe);
  assert.deepEqual(reasons(p), ['reset']);
});

// ---- Uart16550 ---------------------------------------------------------------

const THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

function uart(irq = 4) {
  const p = new FakePlatform();
  const state = Uart16550.createState();
  return { p, state, u: new Uart16550(state, p, irq) };
}

test('Uart16550: THR writes go to the console', () => {
  const { p, u } = uart();
  for (const c of 'hi\n') u.write(THR, 1, c.charCodeAt(0));
  u.write(THR, 1, 0x1e9); // low byte only
  assert.deepEqual(p.output, [0x68, 0x69, 0x0a, 0xe9]);
});

test('Uart16550: DLAB switches offsets 0/1 between DLL/DLM and THR/IER', () => {
  const { p, u } = uart();
  u.write(LCR, 1, 0x83);
  assert.equal(u.read(LCR), 0x83);
  u.write(0, 1, 0x01); // DLL
  u.write(1, 1, 0x02); // DLM
  assert.deepEqual(p.output, [], 'DLL write is not output');
  assert.equal(u.read(0), 0x01);
  assert.equal(u.read(1), 0x02);
  u.write(LCR, 1, 0x03);
  assert.equal(u.read(IER), 0, 'IER untouched by the DLM write');
  assert.equal(u.read(0), 0, 'RBR is empty');
  u.write(IER, 1, 0x05);
  assert.equal(u.read(IER), 0x05);
  u.write(THR, 1, 0x41);
  assert.deepEqual(p.output, [0x41]);
  u.write(LCR, 1, 0x80);
  assert.equal(u.read(0), 0x01, 'DLL kept');
  assert.equal(u.read(1), 0x02, 'DLM kept');
});

test('Uart16550: IER keeps only its low 4 bits', () => {
  const { u } = uart();
  u.write(IER, 1, 0xf1);
  assert.equal(u.read(IER), 0x01);
});

test('Uart16550: LSR says the transmitter is empty', () => {
  const { u } = uart();
  assert.equal(u.read(LSR), 0x60);
  u.write(THR, 1, 0x41);
  assert.equal(u.read(LSR), 0x60);
});

test('Uart16550: scratch register', () => {
  const { u } = uart();
  assert.equal(u.read(SCR), 0);
  u.write(SCR, 1, 0x5a);
  assert.equal(u.read(SCR), 0x5a);
  u.write(SCR, 1, 0x1a5);
  assert.equal(u.read(SCR), 0xa5);
});

test('Uart16550: MCR and loopback', () => {
  const { p, u } = uart();
  assert.equal(u.read(MSR), 0);
  u.write(MCR, 1, 0xff);
  assert.equal(u.read(MCR), 0x1f);
  // Loopback: MSR reflects MCR's outputs (DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD).
  u.write(MCR, 1, 0x10 | 0x0b);
  assert.equal(u.read(MSR), 0xb0);
  u.write(THR, 1, 0x41);
  assert.deepEqual(p.output, [], 'loopback suppresses output');
  u.write(MCR, 1, 0x0b);
  assert.equal(u.read(MSR), 0);
  u.write(THR, 1, 0x42);
  assert.deepEqual(p.output, [0x42]);
});

test('Uart16550: loopback maps RTS to CTS and DTR to DSR', () => {
  const { u } = uart();
  // The Linux 8250 driver's loopback probe: LOOP|OUT2|RTS must read back DCD|CTS.
  u.write(MCR, 1, 0x10 | 0x08 | 0x02);
  assert.equal(u.read(MSR) & 0xf0, 0x90);
  u.write(MCR, 1, 0x10 | 0x01);
  assert.equal(u.read(MSR) & 0xf0, 0x20);
  u.write(MCR, 1, 0x10 | 0x04);
  assert.equal(u.read(MSR) & 0xf0, 0x40);
});

test('Uart16550: IIR without an interrupt, with and without FIFOs', () => {
  const { u } = uart();
  assert.equal(u.read(IIR), 0x01);
  u.write(FCR, 1, 0x07);
  assert.equal(u.read(IIR), 0xc1);
  u.write(FCR, 1, 0x00);
  assert.equal(u.read(IIR), 0x01);
});

test('Uart16550: THRE interrupt raised by IER, acknowledged by reading IIR, raised again by THR', () => {
  const { p, u } = uart(4);
  u.write(IER, 1, 0x02);
  assert.deepEqual(p.lastIrq, [4, true]);
  assert.equal(u.read(IIR), 0x02);
  assert.deepEqual(p.lastIrq, [4, false]);
  assert.equal(u.read(IIR), 0x01, 'acknowledged');
  u.write(THR, 1, 0x41);
  assert.deepEqual(p.lastIrq, [4, true]);
  assert.deepEqual(p.output, [0x41]);
  assert.equal(u.read(IIR), 0x02);
  assert.deepEqual(p.lastIrq, [4, false]);
  // Disabling the interrupt lowers the line.
  u.write(THR, 1, 0x42);
  assert.deepEqual(p.lastIrq, [4, true]);
  u.write(IER, 1, 0x00);
  assert.deepEqual(p.lastIrq, [4, false]);
  assert.equal(u.read(IIR), 0x01);
  assert.ok(p.irqs.every(([irq]) => irq === 4));
});

test('Uart16550: THRE interrupt with FIFOs enabled reads 0xc2', () => {
  const { p, u } = uart(3);
  u.write(FCR, 1, 0x01);
  u.write(IER, 1, 0x02);
  assert.deepEqual(p.lastIrq, [3, true]);
  assert.equal(u.read(IIR), 0xc2);
  assert.deepEqual(p.lastIrq, [3, false]);
  assert.equal(u.read(IIR), 0xc1);
});

test('Uart16550: THR writes without THRI enabled keep the line low', () => {
  const { p, u } = uart();
  u.write(IER, 1, 0x01); // receive interrupt only
  u.write(THR, 1, 0x41);
  assert.ok(p.irqs.every(([, level]) => !level));
  assert.equal(u.read(IIR), 0x01);
});

test('Uart16550: two instances over the same state see the same registers', () => {
  const a = uart();
  const pb = new FakePlatform();
  const b = new Uart16550(a.state, pb, 4);
  a.u.write(LCR, 1, 0x80);
  a.u.write(0, 1, 0x0c);
  assert.equal(b.read(LCR), 0x80);
  assert.equal(b.read(0), 0x0c);
  b.write(LCR, 1, 0x03);
  b.write(SCR, 1, 0x77);
  assert.equal(a.u.read(SCR), 0x77);
  assert.equal(a.u.read(LCR), 0x03);
  // The THRE interrupt armed through one is acknowledged through the other.
  a.u.write(IER, 1, 0x02);
  assert.deepEqual(a.p.lastIrq, [4, true]);
  assert.equal(b.read(IIR), 0x02);
  assert.deepEqual(pb.lastIrq, [4, false]);
  assert.equal(a.u.read(IIR), 0x01);
  // Output goes to the writer's platform.
  b.write(THR, 1, 0x5a);
  assert.deepEqual(pb.output, [0x5a]);
  assert.deepEqual(a.p.output, []);
});

test('Uart16550 through the bus at 0x3f8', () => {
  const { p, u } = uart();
  const bus = new IoBus();
  bus.register(0x3f8, 8, u);
  bus.write(0x3f8, 1, 0x58);
  assert.equal(bus.read(0x3fd, 1), 0x60);
  bus.write(0x3ff, 1, 0x12);
  assert.equal(bus.read(0x3ff, 1), 0x12);
  assert.deepEqual(p.output, [0x58]);
});

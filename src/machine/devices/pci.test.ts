// PCI bus 0 through both access mechanisms, the Xen platform device's registers and its unplug ports, and MMIO dispatch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../../common/captured-logger.js';
import { RateLimitedLog } from '../../common/log.js';
import { IoBus } from './io-bus.js';
import { ECAM_BUS_SIZE, PciConfigSpace, type PciFunction } from './pci.js';
import { XenUnplugPorts, xenPlatformFunction } from './xen-platform.js';

const ECAM = 0xe0000000;
const FUNCTIONS: PciFunction[] = [
  { slot: 0, vendor: 0x8086, device: 0x1237, revision: 2, classCode: 0x060000 },
  xenPlatformFunction(2, 0xc000, 0xf0000000, 18),
];

/** Two threads' views of one bus: what one writes, the other reads. */
function setup() {
  const state = PciConfigSpace.createState(FUNCTIONS);
  const views = [new PciConfigSpace(state, FUNCTIONS), new PciConfigSpace(state, FUNCTIONS)];
  const buses = views.map((pci) => {
    const bus = new IoBus();
    bus.register(0xcf8, 1, pci.ports.address);
    bus.register(0xcfa, 2, pci.ports.address);
    bus.register(0xcfc, 4, pci.ports.data);
    bus.registerMmio(ECAM, ECAM_BUS_SIZE, { read: (at, size) => pci.ecamRead(at, size), write: (at, size, v) => pci.ecamWrite(at, size, v) });
    return bus;
  });
  const cf8 = (bus: IoBus, slot: number, reg: number, fn = 0, busNr = 0) => bus.write(0xcf8, 4, (0x8000_0000 | (busNr << 16) | (slot << 11) | (fn << 8) | reg) >>> 0);
  /** A dword through mechanism #1 on thread `t`. */
  const conf = (t: number, slot: number, reg: number, fn = 0) => {
    cf8(buses[t], slot, reg & 0xfc, fn);
    return buses[t].read(0xcfc + (reg & 3), 4 - (reg & 3) >= 4 ? 4 : 1)!;
  };
  const ecam = (t: number, slot: number, reg: number, size = 4) => {
    const b = buses[t].mmioRead(ECAM + (slot << 15) + reg, size)!;
    return new DataView(b.buffer).getUint32(0, true);
  };
  return { buses, cf8, conf, ecam };
}

test('mechanism #1: the address register reads back, only as a dword; bus 0 answers with the host bridge and the Xen platform device', () => {
  const { buses, cf8, conf } = setup();
  const bus = buses[0];
  bus.write(0xcfb, 1, 0x01); // Linux's probe pokes the last byte first
  cf8(bus, 0, 0);
  assert.equal(bus.read(0xcf8, 4), 0x8000_0000);
  assert.equal(bus.read(0xcf8, 1), 0xffffffff, 'a byte there is not the address register');
  assert.equal(buses[1].read(0xcf8, 4), 0x8000_0000, 'one register for the machine');
  assert.equal(conf(0, 0, 0x00), 0x1237_8086);
  assert.equal(conf(0, 0, 0x08) >>> 8, 0x060000, 'a host bridge');
  assert.equal(conf(0, 2, 0x00), 0x0001_5853);
  assert.equal(conf(0, 2, 0x08), 0xff80_0001, 'class 0xff80, revision 1');
  assert.equal(conf(0, 2, 0x2c), 0x0001_5853, 'subsystem');
  assert.equal(conf(0, 2, 0x3c) & 0xffff, 0x0112, 'INTA, line 18');
  assert.equal(conf(0, 2, 0x0c) >>> 16 & 0xff, 0, 'header type 0, one function');
  for (const [slot, fn] of [[1, 0], [3, 0], [31, 0], [2, 1], [0, 7]]) assert.equal(conf(0, slot, 0, fn), 0xffffffff, `${slot}.${fn} is absent`);
  cf8(bus, 0, 0, 0, 1);
  assert.equal(bus.read(0xcfc, 4), 0xffffffff, 'bus 1 is absent');
  bus.write(0xcf8, 4, 0x0000_1000); // enable bit clear
  assert.equal(bus.read(0xcfc, 4), 0xffffffff);
  cf8(bus, 2, 0x00);
  assert.equal(bus.read(0xcfe, 2), 0x0001, 'a word at data offset 2');
  assert.equal(bus.read(0xcfd, 1), 0x58);
  assert.equal(bus.read(0xcfd, 2), 0xffffffff, 'an unaligned access');
});

test('writes change only writable bits; BAR sizing works as on hardware; threads share the registers', () => {
  const { buses, cf8, conf } = setup();
  const bus = buses[0];
  /** A dword through mechanism #1 on thread 0; each check reads back, on either thread. */
  const put = (slot: number, reg: number, v: number) => {
    cf8(bus, slot, reg);
    bus.write(0xcfc, 4, v);
  };
  assert.equal(conf(0, 2, 0x04) & 0xffff, 0x0003, 'I/O and memory decode on, as firmware leaves them');
  assert.equal(conf(0, 2, 0x10), 0xc001, 'BAR 0: I/O at 0xc000');
  assert.equal(conf(0, 2, 0x14), 0xf000_0008, 'BAR 1: prefetchable memory at 0xf0000000');
  const writes: [reg: number, value: number, thread: number, after: number, what: string][] = [
    [0x10, 0xffffffff, 1, 0xffff_ff01, '256 bytes of I/O'],
    [0x14, 0xffffffff, 0, 0xff00_0008, '16 MiB of memory'],
    ...[0x18, 0x1c, 0x20, 0x24, 0x30].map((reg): [number, number, number, number, string] => [reg, 0xffffffff, 0, 0, `register 0x${reg.toString(16)} is not implemented`]),
    [0x14, 0xe100_0000, 1, 0xe100_0008, 'moved'],
    [0x04, 0xffffffff, 0, 0x0407, 'COMMAND keeps its writable bits; STATUS reads 0'],
    [0x00, 0x12345678, 0, 0x0001_5853, 'ids are read-only'],
  ];
  for (const [reg, value, thread, after, what] of writes) {
    put(2, reg, value);
    assert.equal(conf(thread, 2, reg), after, what);
  }
  cf8(bus, 2, 0x3c);
  bus.write(0xcfc, 1, 0x0b);
  bus.write(0xcfd, 1, 0x04);
  assert.equal(conf(1, 2, 0x3c) & 0xffff, 0x010b, 'the line is writable, the pin not');
  put(5, 0x3c, 0); // to nothing: dropped
  assert.equal(conf(0, 5, 0x3c), 0xffffffff);
});

test('ECAM reaches the same registers; past the first 256 bytes reads 0; an absent function or a bad access reads all-ones', () => {
  const { buses, conf, ecam } = setup();
  assert.equal(ecam(0, 2, 0x00), 0x0001_5853);
  assert.equal(ecam(0, 0, 0x08) >>> 8, 0x060000);
  assert.equal(ecam(0, 2, 0x100), 0, 'no extended capabilities');
  assert.equal(ecam(0, 2, 0xffc), 0);
  assert.equal(ecam(0, 4, 0x00), 0xffffffff);
  assert.equal(ecam(0, 2, 0x02, 2) & 0xffff, 0x0001);
  assert.equal(ecam(0, 2, 0x01, 2), 0xffff, 'unaligned');
  assert.equal(buses[0].mmioWrite(ECAM + (2 << 15) + 0x3c, Uint8Array.of(0x0a)), true);
  assert.equal(conf(1, 2, 0x3c) & 0xff, 0x0a, 'an ECAM write, seen through mechanism #1 on another thread');
  const q = buses[0].mmioRead(ECAM + (2 << 15), 8)!;
  assert.deepEqual([...q], [0x53, 0x58, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00], 'a quadword is two dwords');
  assert.equal(buses[0].mmioRead(ECAM + ECAM_BUS_SIZE, 4), undefined, 'past bus 0 is no device');
  assert.equal(buses[0].mmioWrite(ECAM - 4, new Uint8Array(4)), false);
  assert.throws(() => buses[0].registerMmio(ECAM + 4096, 4096, { read: () => 0, write: () => {} }), /registered twice/);
});

test('the Xen unplug ports: magic, protocol 1, never blacklisted; the unplug mask and the drivers\' log lines are logged, bounded', () => {
  const { logger, lines } = capturedLogger();
  const ports = new XenUnplugPorts(new RateLimitedLog(logger));
  assert.equal(ports.read(0, 2), 0x49d2);
  assert.equal(ports.read(2, 1), 1);
  ports.write(2, 2, 3); // product number
  ports.write(0, 4, 0x1234); // build number
  assert.equal(ports.read(0, 2), 0x49d2, 'still the magic: not blacklisted');
  ports.write(0, 2, 0x3);
  for (const c of 'hello from the drivers\n') ports.write(2, 1, c.charCodeAt(0));
  for (let i = 0; i < 1000; i++) ports.write(2, 1, 0x41);
  ports.write(2, 1, 0x0a);
  assert.equal(ports.read(1, 1), 0xff);
  assert.equal(ports.read(0, 4), 0xffffffff);
  const msgs = lines.map((l) => l.msg);
  assert.ok(msgs.some((m) => /unplugged emulated devices/.test(m)));
  assert.ok(lines.some((l) => l.mask === '0x3'));
  assert.ok(msgs.some((m) => m.includes('guest PV driver: "hello from the drivers"')), msgs.join('\n'));
  const long = msgs.find((m) => m.includes('AAAA'))!;
  assert.match(long, /\(and 224 more\)/, 'a line is cut at 256 bytes, and quoted at 32');
});

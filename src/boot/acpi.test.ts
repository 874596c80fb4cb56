import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AcpiFadt, AcpiGas, AcpiMadt, AcpiRsdp, AcpiSdtHeader, FADT_HW_REDUCED_ACPI, FADT_RESET_REG_SUP,
  IAPC_8042, IAPC_LEGACY_DEVICES, IAPC_VGA_NOT_PRESENT, MadtInterruptOverride, MadtIoApic, MadtLocalApic,
  amlPkgLength, buildAcpiTables, findS5SleepType, parseAcpiTables, type AcpiOptions,
} from './acpi.js';

const BASE = 0xe0000;

function options(over: Partial<AcpiOptions> = {}): AcpiOptions {
  return {
    base: BASE,
    maxBytes: 0x10000,
    cpus: 2,
    lapicAddress: 0xfee00000,
    ioapic: { id: 2, address: 0xfec00000, gsiBase: 0 },
    interruptOverrides: [{ source: 0, gsi: 2, flags: 0 }, { source: 9, gsi: 9, flags: 0xd }],
    sciInterrupt: 9,
    sleepControlPort: 0x604,
    sleepStatusPort: 0x605,
    pm1aEventPort: 0x600,
    pm1aControlPort: 0x608,
    resetPort: 0xcf9,
    resetValue: 0x06,
    s5SleepType: 5,
    hardwareReduced: true,
    oemId: 'XENKVM',
    oemTableId: 'XENKVMPV',
    ...over,
  };
}

const sum = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);
const text = (b: Uint8Array) => String.fromCharCode(...b);

function reader(bytes: Uint8Array, base: number) {
  return (paddr: number, len: number) => {
    const off = paddr - base;
    if (off < 0 || off + len > bytes.length) throw new Error(`read outside the blob at 0x${paddr.toString(16)}`);
    return bytes.subarray(off, off + len);
  };
}

function build(over: Partial<AcpiOptions> = {}) {
  const blob = buildAcpiTables(options(over));
  const tables = parseAcpiTables(reader(blob.bytes, BASE), blob.rsdpPaddr);
  const get = (sig: string) => {
    const t = tables.find((x) => x.signature === sig);
    assert.ok(t, `table ${sig} present`);
    return t;
  };
  return { blob, tables, get };
}

test('struct layouts match the ACPI spec', () => {
  assert.equal(AcpiGas.size, 12);
  assert.equal(AcpiRsdp.size, 36);
  assert.equal(AcpiRsdp.offsets.xsdt_address, 24);
  assert.equal(AcpiRsdp.offsets.extended_checksum, 32);
  assert.equal(AcpiSdtHeader.size, 36);
  assert.equal(AcpiFadt.size, 276);
  assert.equal(AcpiMadt.size, 44);
  assert.equal(MadtLocalApic.size, 8);
  assert.equal(MadtIoApic.size, 12);
  assert.equal(MadtInterruptOverride.size, 10);
});

test('FADT field offsets', () => {
  const o = AcpiFadt.offsets;
  assert.equal(o.firmware_ctrl, 36);
  assert.equal(o.dsdt, 40);
  assert.equal(o.sci_int, 46);
  assert.equal(o.smi_cmd, 48);
  assert.equal(o.pm1a_evt_blk, 56);
  assert.equal(o.pm1a_cnt_blk, 64);
  assert.equal(o.pm_tmr_blk, 76);
  assert.equal(o.pm1_evt_len, 88);
  assert.equal(o.pm1_cnt_len, 89);
  assert.equal(o.iapc_boot_arch, 109);
  assert.equal(o.flags, 112);
  assert.equal(o.reset_reg, 116);
  assert.equal(o.reset_value, 128);
  assert.equal(o.fadt_minor_version, 131);
  assert.equal(o.x_firmware_ctrl, 132);
  assert.equal(o.x_dsdt, 140);
  assert.equal(o.x_pm1a_evt_blk, 148);
  assert.equal(o.x_pm1a_cnt_blk, 172);
  assert.equal(o.x_pm_tmr_blk, 208);
  assert.equal(o.sleep_control_reg, 244);
  assert.equal(o.sleep_status_reg, 256);
  assert.equal(o.hypervisor_vendor_identity, 268);
});

test('every table checksums to zero; RSDP both checksums', () => {
  const { blob, tables } = build();
  assert.equal(blob.rsdpPaddr, BASE);
  assert.deepEqual(tables.map((t) => t.signature), ['XSDT', 'FACP', 'APIC', 'DSDT']);
  assert.deepEqual(blob.tables.map((t) => t.signature), ['XSDT', 'FACP', 'APIC', 'DSDT']);
  for (const t of blob.tables) {
    const bytes = blob.bytes.subarray(t.paddr - BASE, t.paddr - BASE + t.length);
    assert.equal(sum(bytes), 0, `${t.signature} checksum`);
    assert.equal(t.paddr % 8, 0, `${t.signature} alignment`);
    assert.equal(text(bytes.subarray(0, 4)), t.signature);
    assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true), t.length);
    assert.equal(text(bytes.subarray(10, 16)), 'XENKVM');
    assert.equal(text(bytes.subarray(16, 24)), 'XENKVMPV');
  }
  const rsdp = blob.bytes.subarray(0, 36);
  assert.equal(text(rsdp.subarray(0, 8)), 'RSD PTR ');
  assert.equal(sum(rsdp.subarray(0, 20)), 0);
  assert.equal(sum(rsdp), 0);
  const r = AcpiRsdp.decode(rsdp);
  assert.equal(r.revision, 2);
  assert.equal(r.rsdt_address, 0);
  assert.equal(r.length, 36);
  assert.equal(Number(r.xsdt_address), blob.tables[0].paddr);
  const last = blob.tables[blob.tables.length - 1];
  assert.equal(blob.bytes.length, last.paddr - BASE + last.length);
});

test('FADT contents', () => {
  const { get } = build();
  const fadt = get('FACP');
  assert.equal(fadt.length, 276);
  assert.equal(fadt.revision, 6);
  const f = AcpiFadt.decode(fadt.bytes);
  const dsdt = get('DSDT');
  assert.equal(Number(f.x_dsdt), dsdt.paddr);
  assert.equal(f.dsdt, dsdt.paddr);
  assert.equal(f.firmware_ctrl, 0);
  assert.equal(f.smi_cmd, 0);
  assert.equal(f.acpi_enable, 0);
  assert.equal(f.pm_tmr_blk, 0);
  assert.equal(f.pm_tmr_len, 0);
  assert.equal(f.x_pm_tmr_blk.address, 0n);
  assert.equal(f.sci_int, 9);
  assert.equal(f.pm1a_evt_blk, 0x600);
  assert.equal(f.pm1a_cnt_blk, 0x608);
  assert.equal(f.pm1_evt_len, 4);
  assert.equal(f.pm1_cnt_len, 2);
  assert.deepEqual(f.x_pm1a_evt_blk, { space_id: 1, bit_width: 32, bit_offset: 0, access_size: 2, address: 0x600n });
  assert.deepEqual(f.x_pm1a_cnt_blk, { space_id: 1, bit_width: 16, bit_offset: 0, access_size: 2, address: 0x608n });
  assert.deepEqual(f.sleep_control_reg, { space_id: 1, bit_width: 8, bit_offset: 0, access_size: 1, address: 0x604n });
  assert.deepEqual(f.sleep_status_reg, { space_id: 1, bit_width: 8, bit_offset: 0, access_size: 1, address: 0x605n });
  assert.deepEqual(f.reset_reg, { space_id: 1, bit_width: 8, bit_offset: 0, access_size: 1, address: 0xcf9n });
  assert.equal(f.reset_value, 6);
  assert.ok(f.flags & FADT_RESET_REG_SUP);
  assert.ok(f.flags & FADT_HW_REDUCED_ACPI);
  assert.ok(f.iapc_boot_arch & IAPC_VGA_NOT_PRESENT);
  assert.equal(f.iapc_boot_arch & (IAPC_LEGACY_DEVICES | IAPC_8042), 0);
  // The same bytes at the offsets the spec names.
  const v = new DataView(fadt.bytes.buffer, fadt.bytes.byteOffset);
  assert.equal(Number(v.getBigUint64(140, true)), dsdt.paddr);
  assert.equal(v.getBigUint64(244 + 4, true), 0x604n);
  assert.equal(v.getBigUint64(256 + 4, true), 0x605n);
  assert.equal(v.getBigUint64(116 + 4, true), 0xcf9n);
  assert.equal(fadt.bytes[128], 6);
  assert.equal(v.getUint32(56, true), 0x600);
  assert.equal(v.getUint32(64, true), 0x608);
  assert.ok(v.getUint32(112, true) & (1 << 20));

  const legacy = AcpiFadt.decode(build({ hardwareReduced: false }).get('FACP').bytes);
  assert.equal(legacy.flags & FADT_HW_REDUCED_ACPI, 0);
  assert.ok(legacy.flags & FADT_RESET_REG_SUP);
});

for (const cpus of [1, 2, 64]) {
  test(`MADT with ${cpus} CPU(s)`, () => {
    const { get } = build({ cpus });
    const madt = get('APIC');
    const m = AcpiMadt.decode(madt.bytes);
    assert.equal(m.local_apic_address, 0xfee00000);
    assert.equal(m.flags, 0);
    const lapics: { uid: number; id: number; flags: number }[] = [];
    const ioapics: { id: number; address: number; gsi: number }[] = [];
    const overrides: { bus: number; source: number; gsi: number; flags: number }[] = [];
    for (let at = AcpiMadt.size; at < madt.length;) {
      const type = madt.bytes[at];
      const len = madt.bytes[at + 1];
      assert.ok(len >= 2 && at + len <= madt.length, 'entry fits');
      const e = madt.bytes.subarray(at);
      if (type === 0) {
        const x = MadtLocalApic.decode(e);
        assert.equal(len, 8);
        lapics.push({ uid: x.processor_uid, id: x.apic_id, flags: x.flags });
      } else if (type === 1) {
        const x = MadtIoApic.decode(e);
        assert.equal(len, 12);
        ioapics.push({ id: x.io_apic_id, address: x.address, gsi: x.gsi_base });
      } else if (type === 2) {
        const x = MadtInterruptOverride.decode(e);
        assert.equal(len, 10);
        overrides.push({ bus: x.bus, source: x.source, gsi: x.gsi, flags: x.flags });
      } else assert.fail(`unexpected MADT entry type ${type}`);
      at += len;
    }
    assert.deepEqual(lapics, Array.from({ length: cpus }, (_, i) => ({ uid: i, id: i, flags: 1 })));
    assert.deepEqual(ioapics, [{ id: 2, address: 0xfec00000, gsi: 0 }]);
    assert.deepEqual(overrides, [{ bus: 0, source: 0, gsi: 2, flags: 0 }, { bus: 0, source: 9, gsi: 9, flags: 0xd }]);
  });
}

test('MADT without IOAPIC or overrides', () => {
  const { get } = build({ ioapic: undefined, interruptOverrides: undefined, cpus: 3 });
  assert.equal(get('APIC').length, AcpiMadt.size + 3 * 8);
});

test('DSDT is exactly a definition block holding Name (_S5, Package (4) {...})', () => {
  const { get } = build({ s5SleepType: 5 });
  const dsdt = get('DSDT');
  assert.equal(dsdt.revision, 2);
  assert.deepEqual([...dsdt.bytes.subarray(36)], [
    0x08, 0x5f, 0x53, 0x35, 0x5f, // NameOp "_S5_"
    0x12, 0x08, 0x04, // PackageOp, PkgLength 8, NumElements 4
    0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00, // BytePrefix 5, BytePrefix 5, Zero, Zero
  ]);
});

test('DSDT with a UART: \\_SB.COM1, a PNP0501 whose _CRS holds its 8 ports and its IRQ, after _S5', () => {
  const { get } = build({ s5SleepType: 5, uart: { port: 0x3f8, irq: 4 } });
  const body = [...get('DSDT').bytes.subarray(36)];
  const s5 = 14;
  const crs = [
    0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, // IO (Decode16, 0x3f8, 0x3f8, 1, 8)
    0x22, 0x10, 0x00, // IRQNoFlags () {4}
    0x79, 0x00, // EndTag
  ];
  const device = [
    0x43, 0x4f, 0x4d, 0x31, // "COM1"
    0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x05, 0x01, // Name (_HID, EisaId ("PNP0501"))
    0x08, 0x5f, 0x55, 0x49, 0x44, 0x01, // Name (_UID, One)
    0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, crs.length + 3, 0x0a, crs.length, ...crs, // Name (_CRS, Buffer (13) {...})
  ];
  const scope = [0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, device.length + 1, ...device]; // \_SB_, DeviceOp
  assert.deepEqual(body.slice(s5), [0x10, scope.length + 1, ...scope]); // ScopeOp
  assert.equal(findS5SleepType(get('DSDT').bytes), 5);
  assert.throws(() => buildAcpiTables(options({ uart: { port: 0x3f8, irq: 16 } })), /UART IRQ/);
});

test('with PCI: an MCFG naming the ECAM window for bus 0, and \\_SB.PCI0 with its resources and a _PRT entry for every slot and pin', () => {
  const pci = {
    ecamBase: 0xe0000000, configPorts: 0xcf8, intxGsi: (slot: number, pin: number) => 16 + ((slot + pin) & 7),
    memoryWindows: [{ start: 0xc0000000, end: 0xdfffffff }, { start: 0xf0000000, end: 0xfebfffff }],
  };
  const { tables, get } = build({ pci });
  assert.deepEqual(tables.map((t) => t.signature), ['XSDT', 'FACP', 'APIC', 'MCFG', 'DSDT']);
  const mcfg = get('MCFG');
  assert.equal(mcfg.length, 60);
  assert.deepEqual([...mcfg.bytes.subarray(36)], [
    0, 0, 0, 0, 0, 0, 0, 0, // reserved
    0x00, 0x00, 0x00, 0xe0, 0, 0, 0, 0, // base address
    0x00, 0x00, 0x00, 0x00, // segment 0, buses 0–0
    0, 0, 0, 0,
  ]);
  const dsdt = [...get('DSDT').bytes];
  const has = (seq: number[], what: string) => {
    const at = dsdt.findIndex((_, i) => seq.every((b, j) => dsdt[i + j] === b));
    assert.ok(at >= 0, `${what} not in the DSDT`);
    return at;
  };
  has([0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82], '\\_SB_ Device');
  const device = has([0x50, 0x43, 0x49, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0a, 0x03], '"PCI0" with _HID EisaId ("PNP0A03")');
  has([0x08, 0x5f, 0x53, 0x45, 0x47, 0x00, 0x08, 0x5f, 0x42, 0x42, 0x4e, 0x00, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00], '_SEG, _BBN, _UID zero');
  const crs = [
    0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // WordBusNumber 0–0
    0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, // IO (Decode16, 0xcf8, 0xcf8, 1, 8)
    0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x00, 0xf7, 0x0c, 0, 0, 0xf8, 0x0c, // WordIO 0–0xcf7
    0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0, 0x00, 0xf3, // WordIO 0xd00–0xffff
    0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xff, 0xdf, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20, // DWordMemory
    0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xf0, 0xff, 0xff, 0xbf, 0xfe, 0, 0, 0, 0, 0x00, 0x00, 0xc0, 0x0e,
    0x79, 0x00,
  ];
  // Name (_CRS, Buffer (n) {...}): BufferOp, a 2-byte PkgLength, BytePrefix n.
  has([0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x40 | ((crs.length + 4) & 0x0f), (crs.length + 4) >> 4, 0x0a, crs.length, ...crs], '_CRS');
  const prt = has([0x08, 0x5f, 0x50, 0x52, 0x54, 0x12], 'Name (_PRT, Package');
  assert.ok(prt > device);
  assert.equal(dsdt[prt + 6] >> 6, 1, 'a 2-byte PkgLength');
  assert.equal(dsdt[prt + 8], 128, '32 slots × 4 pins');
  has([0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x12], 'Package { 0x0002FFFF, Zero, Zero, 18 }');
  has([0x12, 0x0c, 0x04, 0x0c, 0xff, 0xff, 0x1f, 0x00, 0x0a, 0x03, 0x00, 0x0a, 0x12], 'Package { 0x001FFFFF, 3, Zero, 18 }');
  has([0x12, 0x09, 0x04, 0x0b, 0xff, 0xff, 0x01, 0x00, 0x0a, 0x11], 'Package { 0xFFFF, One, Zero, 17 }');
  assert.equal(findS5SleepType(get('DSDT').bytes), 5);
  assert.throws(() => buildAcpiTables(options({ pci: { ...pci, configPorts: 0x10000 } })), /PCI configuration ports/);
});

test('with an RTC (an HVM guest\'s): the FADT no longer says there is none, and \\_SB.RTC_ is a PNP0B00 with its 2 ports and IRQ 8', () => {
  const noRtc = new DataView(build().get('FACP').bytes.buffer, build().get('FACP').bytes.byteOffset).getUint16(AcpiFadt.offsets.iapc_boot_arch, true);
  const { get } = build({ cmosRtc: { port: 0x70, irq: 8 } });
  const fadt = get('FACP');
  const arch = new DataView(fadt.bytes.buffer, fadt.bytes.byteOffset).getUint16(AcpiFadt.offsets.iapc_boot_arch, true);
  assert.equal(noRtc & (1 << 5), 1 << 5, 'CMOS RTC not present, without one');
  assert.equal(arch & (1 << 5), 0);
  const dsdt = [...get('DSDT').bytes];
  const device = [
    0x52, 0x54, 0x43, 0x5f, // "RTC_"
    0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0b, 0x00, // Name (_HID, EisaId ("PNP0B00"))
    0x08, 0x5f, 0x55, 0x49, 0x44, 0x01,
    0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 16, 0x0a, 13,
    0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, // IO (Decode16, 0x70, 0x70, 1, 2)
    0x22, 0x00, 0x01, // IRQNoFlags () {8}
    0x79, 0x00,
  ];
  assert.ok(dsdt.some((_, i) => device.every((b, j) => dsdt[i + j] === b)), 'the RTC device');
  assert.throws(() => buildAcpiTables(options({ cmosRtc: { port: 0x70, irq: 16 } })), /RTC IRQ/);
});

test('_S5 round-trips through findS5SleepType', () => {
  for (let t = 0; t <= 7; t++) {
    const { get } = build({ s5SleepType: t });
    assert.equal(findS5SleepType(get('DSDT').bytes), t);
  }
  assert.throws(() => buildAcpiTables(options({ s5SleepType: 8 })), /S5 sleep type/);
});

test('findS5SleepType on other encodings', () => {
  const hdr = new Uint8Array(36);
  hdr.set([0x44, 0x53, 0x44, 0x54]);
  const withBody = (...b: number[]) => Uint8Array.from([...hdr, ...b]);
  // \_S5_ with ZeroOp / OneOp and a 2-byte PkgLength.
  assert.equal(findS5SleepType(withBody(0x08, 0x5c, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x40, 0x00, 0x04, 0x01, 0x01, 0, 0)), 1);
  assert.equal(findS5SleepType(withBody(0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0x00, 0x00, 0, 0)), 0);
  assert.equal(findS5SleepType(withBody(0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x07, 0x02, 0x0b, 0x07, 0x00)), 7);
  // Absent, truncated, not a package.
  assert.equal(findS5SleepType(withBody(0x08, 0x5f, 0x53, 0x34, 0x5f, 0x12, 0x06, 0x04, 0x0a, 0x05)), undefined);
  assert.equal(findS5SleepType(withBody(0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0x0a)), undefined);
  assert.equal(findS5SleepType(withBody(0x08, 0x5f, 0x53, 0x35, 0x5f, 0x0a, 0x05)), undefined);
  assert.equal(findS5SleepType(hdr), undefined);
});

test('AML PkgLength encoding', () => {
  assert.deepEqual([...amlPkgLength(7)], [8]);
  assert.deepEqual([...amlPkgLength(62)], [63]);
  // 63 content bytes + 2 length bytes = 65 = 0x41.
  assert.deepEqual([...amlPkgLength(63)], [0x41, 0x04]);
  assert.deepEqual([...amlPkgLength(3000)], [0x40 | (3002 & 0xf), (3002 >> 4) & 0xff]);
  assert.deepEqual([...amlPkgLength(5000)], [0x80 | (5003 & 0xf), (5003 >> 4) & 0xff, (5003 >> 12) & 0xff]);
});

test('parseAcpiTables rejects a bad checksum', () => {
  const blob = buildAcpiTables(options());
  const madt = blob.tables.find((t) => t.signature === 'APIC')!;
  const broken = blob.bytes.slice();
  broken[madt.paddr - BASE + 40] ^= 1;
  assert.throws(() => parseAcpiTables(reader(broken, BASE), BASE), /APIC .* bad checksum/);
  const badRsdp = blob.bytes.slice();
  badRsdp[30] ^= 1; // in the extended part only
  assert.throws(() => parseAcpiTables(reader(badRsdp, BASE), BASE), /extended checksum/);
  const badDsdt = blob.bytes.slice();
  badDsdt[badDsdt.length - 1] ^= 1;
  assert.throws(() => parseAcpiTables(reader(badDsdt, BASE), BASE), /DSDT .* bad checksum/);
});

test('limits and argument errors', () => {
  const need = buildAcpiTables(options()).bytes.length;
  assert.doesNotThrow(() => buildAcpiTables(options({ maxBytes: need })));
  assert.throws(() => buildAcpiTables(options({ maxBytes: need - 1 })), /only \d+ are available/);
  assert.throws(() => buildAcpiTables(options({ base: BASE + 8 })), /multiple of 16/);
  assert.throws(() => buildAcpiTables(options({ oemId: 'TOOLONGID' })), /OEM ID/);
  const short = buildAcpiTables(options({ oemId: 'XK' }));
  assert.equal(text(short.bytes.subarray(9, 15)), 'XK    ');
});

test('tables above 4 GiB leave the 32-bit DSDT pointer empty', () => {
  const base = 0x1_0000_0000;
  const blob = buildAcpiTables(options({ base }));
  const tables = parseAcpiTables(reader(blob.bytes, base), base);
  const f = AcpiFadt.decode(tables.find((t) => t.signature === 'FACP')!.bytes);
  assert.equal(f.dsdt, 0);
  assert.equal(Number(f.x_dsdt), tables.find((t) => t.signature === 'DSDT')!.paddr);
});

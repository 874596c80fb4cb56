// ACPI tables for a PVH or HVM guest (ACPI 6.5 layouts): RSDP, XSDT, FADT, MADT, MCFG
// and a DSDT holding \_S5, the UART, an HVM guest's RTC and the PCI host bridge, built as one blob for a
// guest-physical base. Plus a reader that walks them back from guest memory and
// checks every checksum.

import { struct } from '../common/struct.js';

export const AcpiGas = struct('acpi_generic_address', {
  space_id: 'u8',
  bit_width: 'u8',
  bit_offset: 'u8',
  access_size: 'u8',
  address: 'u64',
}, { packed: true });

export const AcpiRsdp = struct('acpi_rsdp', {
  signature: { bytes: 8 },
  checksum: 'u8',
  oem_id: { bytes: 6 },
  revision: 'u8',
  rsdt_address: 'u32',
  length: 'u32',
  xsdt_address: 'u64',
  extended_checksum: 'u8',
  reserved: { bytes: 3 },
}, { packed: true });

export const AcpiSdtHeader = struct('acpi_table_header', {
  signature: { bytes: 4 },
  length: 'u32',
  revision: 'u8',
  checksum: 'u8',
  oem_id: { bytes: 6 },
  oem_table_id: { bytes: 8 },
  oem_revision: 'u32',
  creator_id: { bytes: 4 },
  creator_revision: 'u32',
}, { packed: true });

const gas = { struct: AcpiGas } as const;

export const AcpiFadt = struct('acpi_fadt', {
  header: { struct: AcpiSdtHeader },
  firmware_ctrl: 'u32',
  dsdt: 'u32',
  reserved0: 'u8',
  preferred_pm_profile: 'u8',
  sci_int: 'u16',
  smi_cmd: 'u32',
  acpi_enable: 'u8',
  acpi_disable: 'u8',
  s4bios_req: 'u8',
  pstate_cnt: 'u8',
  pm1a_evt_blk: 'u32',
  pm1b_evt_blk: 'u32',
  pm1a_cnt_blk: 'u32',
  pm1b_cnt_blk: 'u32',
  pm2_cnt_blk: 'u32',
  pm_tmr_blk: 'u32',
  gpe0_blk: 'u32',
  gpe1_blk: 'u32',
  pm1_evt_len: 'u8',
  pm1_cnt_len: 'u8',
  pm2_cnt_len: 'u8',
  pm_tmr_len: 'u8',
  gpe0_blk_len: 'u8',
  gpe1_blk_len: 'u8',
  gpe1_base: 'u8',
  cst_cnt: 'u8',
  p_lvl2_lat: 'u16',
  p_lvl3_lat: 'u16',
  flush_size: 'u16',
  flush_stride: 'u16',
  duty_offset: 'u8',
  duty_width: 'u8',
  day_alrm: 'u8',
  mon_alrm: 'u8',
  century: 'u8',
  iapc_boot_arch: 'u16',
  reserved1: 'u8',
  flags: 'u32',
  reset_reg: gas,
  reset_value: 'u8',
  arm_boot_arch: 'u16',
  fadt_minor_version: 'u8',
  x_firmware_ctrl: 'u64',
  x_dsdt: 'u64',
  x_pm1a_evt_blk: gas,
  x_pm1b_evt_blk: gas,
  x_pm1a_cnt_blk: gas,
  x_pm1b_cnt_blk: gas,
  x_pm2_cnt_blk: gas,
  x_pm_tmr_blk: gas,
  x_gpe0_blk: gas,
  x_gpe1_blk: gas,
  sleep_control_reg: gas,
  sleep_status_reg: gas,
  hypervisor_vendor_identity: 'u64',
}, { packed: true });

export const AcpiMadt = struct('acpi_madt', {
  header: { struct: AcpiSdtHeader },
  local_apic_address: 'u32',
  flags: 'u32',
}, { packed: true });

export const MadtLocalApic = struct('acpi_madt_local_apic', {
  type: 'u8', length: 'u8', processor_uid: 'u8', apic_id: 'u8', flags: 'u32',
}, { packed: true });

export const MadtIoApic = struct('acpi_madt_io_apic', {
  type: 'u8', length: 'u8', io_apic_id: 'u8', reserved: 'u8', address: 'u32', gsi_base: 'u32',
}, { packed: true });

export const MadtInterruptOverride = struct('acpi_madt_interrupt_override', {
  type: 'u8', length: 'u8', bus: 'u8', source: 'u8', gsi: 'u32', flags: 'u16',
}, { packed: true });

export const MadtLocalX2Apic = struct('acpi_madt_local_x2apic', {
  type: 'u8', length: 'u8', reserved: 'u16', x2apic_id: 'u32', flags: 'u32', processor_uid: 'u32',
}, { packed: true });

export const AcpiMcfgAllocation = struct('acpi_mcfg_allocation', {
  address: 'u64', pci_segment: 'u16', start_bus_number: 'u8', end_bus_number: 'u8', reserved: 'u32',
}, { packed: true });

export const MADT_LOCAL_APIC = 0;
export const MADT_IO_APIC = 1;
export const MADT_INTERRUPT_OVERRIDE = 2;
export const MADT_LOCAL_X2APIC = 9;
export const MADT_LAPIC_ENABLED = 1;

export const GAS_SYSTEM_IO = 1;
export const GAS_ACCESS_BYTE = 1;
export const GAS_ACCESS_WORD = 2;

export const FADT_WBINVD = 1 << 0;
export const FADT_PWR_BUTTON = 1 << 4;
export const FADT_SLP_BUTTON = 1 << 5;
export const FADT_RESET_REG_SUP = 1 << 10;
export const FADT_HW_REDUCED_ACPI = 1 << 20;

export const IAPC_LEGACY_DEVICES = 1 << 0;
export const IAPC_8042 = 1 << 1;
export const IAPC_VGA_NOT_PRESENT = 1 << 2;
export const IAPC_MSI_NOT_SUPPORTED = 1 << 3;
export const IAPC_PCIE_ASPM_CONTROLS = 1 << 4;
export const IAPC_CMOS_RTC_NOT_PRESENT = 1 << 5;

const FADT_REVISION = 6;
const FADT_MINOR = 5;
const MADT_REVISION = 5;
const DSDT_REVISION = 2; // 64-bit AML integers
const MCFG_REVISION = 1;
const CREATOR_ID = 'XKVM';
const MAX_TABLE = 16 << 20;

export interface AcpiOptions {
  base: number;
  maxBytes: number;
  /** Local APIC ids 0..cpus-1. */
  cpus: number;
  lapicAddress: number;
  ioapic?: { id: number; address: number; gsiBase: number };
  /** MADT Interrupt Source Overrides on bus 0. */
  interruptOverrides?: { source: number; gsi: number; flags: number }[];
  sciInterrupt: number;
  sleepControlPort: number;
  sleepStatusPort: number;
  pm1aEventPort: number;
  pm1aControlPort: number;
  resetPort: number;
  resetValue: number;
  /** SLP_TYP for S5 (0..7). */
  s5SleepType: number;
  hardwareReduced: boolean;
  /** A 16550 UART (8 ports from `port`, an ISA IRQ), described in the DSDT as \_SB.COM1: a hardware-reduced machine has no other way to say it is there. */
  uart?: { port: number; irq: number };
  /** PCI bus 0 behind a host bridge (\_SB.PCI0): its ECAM window (MCFG), configuration ports, windows, and the GSI of each slot's INTx pin. */
  pci?: AcpiPci;
  /** A CMOS RTC (2 ports from `port`, an ISA IRQ), described in the DSDT as \_SB.RTC_; without it the FADT says there is none. */
  cmosRtc?: { port: number; irq: number };
  oemId: string;
  oemTableId: string;
}

export interface AcpiPci {
  ecamBase: number;
  /** Mechanism #1's 8 ports from here (0xcf8), kept out of the I/O window. */
  configPorts: number;
  memoryWindows: readonly { start: number; end: number }[];
  /** GSI of INTx `pin` (0 = INTA) of device `slot`. */
  intxGsi(slot: number, pin: number): number;
}

export interface AcpiTableInfo { signature: string; paddr: number; length: number }

export interface AcpiBlob {
  bytes: Uint8Array;
  rsdpPaddr: number;
  tables: AcpiTableInfo[];
}

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const align = (n: number, a: number) => Math.ceil(n / a) * a;

function oemField(s: string, len: number, what: string): Uint8Array {
  if (s.length > len || !/^[\x20-\x7e]*$/.test(s)) {
    throw new Error(`ACPI ${what} must be at most ${len} printable ASCII characters: ${JSON.stringify(s)}`);
  }
  return ascii(s.padEnd(len, ' '));
}

function sum(bytes: Uint8Array): number {
  let s = 0;
  for (const b of bytes) s = (s + b) & 0xff;
  return s;
}

/** Sets bytes[at] so that bytes sums to 0 mod 256. */
function fixChecksum(bytes: Uint8Array, at: number): void {
  bytes[at] = 0;
  bytes[at] = (256 - sum(bytes)) & 0xff;
}

function ioGas(port: number, bytes: number, access: number) {
  return { space_id: GAS_SYSTEM_IO, bit_width: bytes * 8, bit_offset: 0, access_size: access, address: BigInt(port) };
}

function checkRange(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`ACPI ${what} ${v} is out of range (0..${max})`);
}

/** AML PkgLength for a package whose contents after PkgLength are n bytes. */
export function amlPkgLength(n: number): Uint8Array {
  // The encoded length counts its own bytes.
  if (n + 1 < 0x40) return Uint8Array.of(n + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = n + 1 + extra;
    if (total < 1 << (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = (total >> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new Error(`AML package of ${n} bytes is too large`);
}

const AML_ZERO = 0x00;
const AML_ONE = 0x01;
const AML_ONES = 0xff;
const AML_NAME = 0x08;
const AML_BYTE_PREFIX = 0x0a;
const AML_WORD_PREFIX = 0x0b;
const AML_DWORD_PREFIX = 0x0c;
const AML_QWORD_PREFIX = 0x0e;
const AML_PACKAGE = 0x12;
const AML_BUFFER = 0x11;
const AML_SCOPE = 0x10;
const AML_EXT_PREFIX = 0x5b;
const AML_DEVICE = 0x82; // after AML_EXT_PREFIX
const AML_ROOT_CHAR = 0x5c;

/** EisaId ("PNP0501"): a 16550-compatible serial port, compressed as ACPI compresses EISA ids. */
const PNP0501 = 0x0105d041;
/** Small resource descriptors (ACPI 6.5, 6.4.2): I/O port, IRQ without flags, end tag. */
const RESOURCE_IO = 0x47;
const RESOURCE_IO_DECODE16 = 0x01;
const RESOURCE_IRQ_NO_FLAGS = 0x22;
const RESOURCE_END = 0x79;

const u32le = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

/** `Name (seg, value)` for a 4-character name. */
const amlName = (seg: string, value: number[]) => [AML_NAME, ...ascii(seg), ...value];

/** EisaId ("PNP0B00"): an AT-compatible real-time clock. */
const PNP0B00 = 0x000bd041;

/**
 * `Scope (\_SB) { Device (name) { Name (_HID, EisaId (hid)) Name (_UID, One)
 * Name (_CRS, ResourceTemplate () { IO (Decode16, port, port, 1, count) IRQNoFlags () {irq} }) } }`:
 * an ISA device, which a hardware-reduced machine has no other way to say is there.
 */
function amlIsaDevice(name: string, hid: number, port: number, count: number, irq: number): number[] {
  const crs = [
    RESOURCE_IO, RESOURCE_IO_DECODE16, port & 0xff, port >> 8, port & 0xff, port >> 8, 1, count,
    RESOURCE_IRQ_NO_FLAGS, (1 << irq) & 0xff, (1 << irq) >> 8,
    RESOURCE_END, 0, // checksum 0: the template is taken as valid
  ];
  const buffer = [AML_BYTE_PREFIX, crs.length, ...crs];
  const body = [
    ...ascii(name),
    ...amlName('_HID', [AML_DWORD_PREFIX, ...u32le(hid)]),
    ...amlName('_UID', [AML_ONE]),
    ...amlName('_CRS', [AML_BUFFER, ...amlPkgLength(buffer.length), ...buffer]),
  ];
  const device = [AML_EXT_PREFIX, AML_DEVICE, ...amlPkgLength(body.length), ...body];
  const scope = [AML_ROOT_CHAR, ...ascii('_SB_'), ...device];
  return [AML_SCOPE, ...amlPkgLength(scope.length), ...scope];
}

/** EisaId ("PNP0A03"): a PCI host bridge. */
const PNP0A03 = 0x030ad041;
/** Large resource descriptors (ACPI 6.5, 6.4.3): Word and DWord Address Space. */
const RESOURCE_WORD_ADDRESS = 0x88;
const RESOURCE_DWORD_ADDRESS = 0x87;
const ADDRESS_SPACE = { memory: 0, io: 1, bus: 2 } as const;
/** General flags: a producer, positive decode, minimum and maximum fixed. */
const ADDRESS_PRODUCER_FIXED = 0x0c;
/** Type-specific flags: I/O decodes the entire range; memory is read-write, non-cacheable. */
const IO_ENTIRE_RANGE = 0x03;
const MEMORY_READ_WRITE = 0x01;
const u16le = (v: number) => [v & 0xff, (v >>> 8) & 0xff];

/** WordBusNumber / WordIO (16-bit) or DWordMemory (32-bit): [min, max], no translation. */
function addressDescriptor(space: number, typeFlags: number, min: number, max: number, dword: boolean): number[] {
  const field = dword ? u32le : u16le;
  const body = [space, ADDRESS_PRODUCER_FIXED, typeFlags, ...field(0), ...field(min), ...field(max), ...field(0), ...field(max - min + 1)];
  return [dword ? RESOURCE_DWORD_ADDRESS : RESOURCE_WORD_ADDRESS, ...u16le(body.length), ...body];
}

/** An AML integer in the shortest encoding (up to 32 bits). */
function amlInteger(v: number): number[] {
  if (v === 0) return [AML_ZERO];
  if (v === 1) return [AML_ONE];
  if (v <= 0xff) return [AML_BYTE_PREFIX, v];
  if (v <= 0xffff) return [AML_WORD_PREFIX, ...u16le(v)];
  return [AML_DWORD_PREFIX, ...u32le(v)];
}

function amlPackage(elements: number[][]): number[] {
  const contents = [elements.length, ...elements.flat()];
  return [AML_PACKAGE, ...amlPkgLength(contents.length), ...contents];
}

function amlBuffer(bytes: number[]): number[] {
  const contents = [...amlInteger(bytes.length), ...bytes];
  return [AML_BUFFER, ...amlPkgLength(contents.length), ...contents];
}

/**
 * `Scope (\_SB) { Device (PCI0) { _HID PNP0A03, _SEG 0, _BBN 0, _UID 0, _CRS (bus 0, the configuration
 * ports, the I/O space around them, the memory windows), _PRT (every slot's INTA–INTD to its GSI) } }`.
 */
function amlPciHostBridge(pci: AcpiPci): number[] {
  const crs = [
    ...addressDescriptor(ADDRESS_SPACE.bus, 0, 0, 0, false),
    RESOURCE_IO, RESOURCE_IO_DECODE16, ...u16le(pci.configPorts), ...u16le(pci.configPorts), 1, 8,
    ...addressDescriptor(ADDRESS_SPACE.io, IO_ENTIRE_RANGE, 0, pci.configPorts - 1, false),
    ...addressDescriptor(ADDRESS_SPACE.io, IO_ENTIRE_RANGE, pci.configPorts + 8, 0xffff, false),
    ...pci.memoryWindows.flatMap((w) => addressDescriptor(ADDRESS_SPACE.memory, MEMORY_READ_WRITE, w.start, w.end, true)),
    RESOURCE_END, 0,
  ];
  const prt: number[][] = [];
  for (let slot = 0; slot < 32; slot++) {
    for (let pin = 0; pin < 4; pin++) prt.push(amlPackage([amlInteger(slot * 0x10000 + 0xffff), amlInteger(pin), [AML_ZERO], amlInteger(pci.intxGsi(slot, pin))]));
  }
  const body = [
    ...ascii('PCI0'),
    ...amlName('_HID', [AML_DWORD_PREFIX, ...u32le(PNP0A03)]),
    ...amlName('_SEG', [AML_ZERO]),
    ...amlName('_BBN', [AML_ZERO]),
    ...amlName('_UID', [AML_ZERO]),
    ...amlName('_CRS', amlBuffer(crs)),
    ...amlName('_PRT', amlPackage(prt)),
  ];
  const device = [AML_EXT_PREFIX, AML_DEVICE, ...amlPkgLength(body.length), ...body];
  const scope = [AML_ROOT_CHAR, ...ascii('_SB_'), ...device];
  return [AML_SCOPE, ...amlPkgLength(scope.length), ...scope];
}

/** `Name (_S5, Package (4) { t, t, Zero, Zero })`. */
function amlS5(sleepType: number): number[] {
  const elements = [AML_BYTE_PREFIX, sleepType, AML_BYTE_PREFIX, sleepType, AML_ZERO, AML_ZERO];
  const contents = [4, ...elements];
  return amlName('_S5_', [AML_PACKAGE, ...amlPkgLength(contents.length), ...contents]);
}

export function buildAcpiTables(opts: AcpiOptions): AcpiBlob {
  const { base } = opts;
  if (!Number.isSafeInteger(base) || base <= 0 || base % 16 !== 0) {
    throw new Error(`ACPI base ${base} must be a non-zero multiple of 16`);
  }
  if (!Number.isInteger(opts.cpus) || opts.cpus < 1) throw new Error(`ACPI needs at least one CPU (got ${opts.cpus})`);
  checkRange(opts.s5SleepType, 7, 'S5 sleep type');
  checkRange(opts.sciInterrupt, 0xffff, 'SCI interrupt');
  for (const [what, port] of [
    ['sleep control port', opts.sleepControlPort], ['sleep status port', opts.sleepStatusPort],
    ['PM1a event port', opts.pm1aEventPort], ['PM1a control port', opts.pm1aControlPort], ['reset port', opts.resetPort],
  ] as const) checkRange(port, 0xffff, what);
  checkRange(opts.resetValue, 0xff, 'reset value');
  checkRange(opts.lapicAddress, 0xffffffff, 'local APIC address');
  const oemId = oemField(opts.oemId, 6, 'OEM ID');
  const oemTableId = oemField(opts.oemTableId, 8, 'OEM table ID');

  const header = (signature: string, length: number, revision: number) => ({
    signature: ascii(signature), length, revision, checksum: 0, oem_id: oemId, oem_table_id: oemTableId,
    oem_revision: 1, creator_id: ascii(CREATOR_ID), creator_revision: 1,
  });

  // MADT
  const madtParts: Uint8Array[] = [];
  for (let id = 0; id < opts.cpus; id++) {
    // 8-bit APIC ids stop at 254 (255 is broadcast); beyond that x2APIC entries.
    madtParts.push(id < 255
      ? MadtLocalApic.encode({ type: MADT_LOCAL_APIC, length: MadtLocalApic.size, processor_uid: id, apic_id: id, flags: MADT_LAPIC_ENABLED })
      : MadtLocalX2Apic.encode({ type: MADT_LOCAL_X2APIC, length: MadtLocalX2Apic.size, x2apic_id: id, flags: MADT_LAPIC_ENABLED, processor_uid: id }));
  }
  if (opts.ioapic) {
    checkRange(opts.ioapic.id, 0xff, 'IOAPIC id');
    checkRange(opts.ioapic.address, 0xffffffff, 'IOAPIC address');
    checkRange(opts.ioapic.gsiBase, 0xffffffff, 'IOAPIC GSI base');
    madtParts.push(MadtIoApic.encode({
      type: MADT_IO_APIC, length: MadtIoApic.size, io_apic_id: opts.ioapic.id,
      address: opts.ioapic.address, gsi_base: opts.ioapic.gsiBase,
    }));
  }
  for (const o of opts.interruptOverrides ?? []) {
    checkRange(o.source, 0xff, 'override source');
    checkRange(o.gsi, 0xffffffff, 'override GSI');
    checkRange(o.flags, 0xffff, 'override flags');
    madtParts.push(MadtInterruptOverride.encode({
      type: MADT_INTERRUPT_OVERRIDE, length: MadtInterruptOverride.size, bus: 0, source: o.source, gsi: o.gsi, flags: o.flags,
    }));
  }
  const madtLength = AcpiMadt.size + madtParts.reduce((n, p) => n + p.length, 0);

  if (opts.uart) {
    checkRange(opts.uart.port, 0xfff8, 'UART port');
    checkRange(opts.uart.irq, 15, 'UART IRQ');
  }
  if (opts.cmosRtc) {
    checkRange(opts.cmosRtc.port, 0xfffe, 'RTC port');
    checkRange(opts.cmosRtc.irq, 15, 'RTC IRQ');
  }
  if (opts.pci) {
    checkRange(opts.pci.ecamBase, 0xffffffff, 'ECAM base');
    checkRange(opts.pci.configPorts, 0xfff8, 'PCI configuration ports');
    for (const w of opts.pci.memoryWindows) {
      checkRange(w.start, 0xffffffff, 'PCI window start');
      checkRange(w.end, 0xffffffff, 'PCI window end');
    }
  }
  const aml = Uint8Array.from([
    ...amlS5(opts.s5SleepType),
    ...(opts.uart ? amlIsaDevice('COM1', PNP0501, opts.uart.port, 8, opts.uart.irq) : []),
    ...(opts.cmosRtc ? amlIsaDevice('RTC_', PNP0B00, opts.cmosRtc.port, 2, opts.cmosRtc.irq) : []),
    ...(opts.pci ? amlPciHostBridge(opts.pci) : []),
  ]);
  const dsdtLength = AcpiSdtHeader.size + aml.length;
  const mcfgLength = AcpiSdtHeader.size + 8 + AcpiMcfgAllocation.size;

  const order = ['XSDT', 'FACP', 'APIC', ...(opts.pci ? (['MCFG'] as const) : []), 'DSDT'] as const;
  const xsdtEntries = ['FACP', 'APIC', ...(opts.pci ? (['MCFG'] as const) : [])] as const;
  const Xsdt = struct('acpi_xsdt', {
    header: { struct: AcpiSdtHeader },
    entries: { array: 'u64', count: xsdtEntries.length },
  }, { packed: true });
  const lengths: Record<(typeof order)[number], number> = {
    XSDT: Xsdt.size, FACP: AcpiFadt.size, APIC: madtLength, MCFG: mcfgLength, DSDT: dsdtLength,
  };

  let cursor = AcpiRsdp.size;
  const offsets = {} as Record<(typeof order)[number], number>;
  for (const sig of order) {
    cursor = align(cursor, 8);
    offsets[sig] = cursor;
    cursor += lengths[sig];
  }
  if (cursor > opts.maxBytes) {
    throw new Error(`ACPI tables need ${cursor} bytes but only ${opts.maxBytes} are available`);
  }
  const paddr = (sig: (typeof order)[number]) => base + offsets[sig];
  if (!Number.isSafeInteger(base + cursor)) throw new Error(`ACPI tables at 0x${base.toString(16)} are out of range`);

  const bytes = new Uint8Array(cursor);
  const view = new DataView(bytes.buffer);
  const tableBytes = (sig: (typeof order)[number]) => bytes.subarray(offsets[sig], offsets[sig] + lengths[sig]);

  Xsdt.write(view, offsets.XSDT, {
    header: header('XSDT', Xsdt.size, 1),
    entries: xsdtEntries.map((s) => BigInt(paddr(s))),
  });

  const dsdtAddr = paddr('DSDT');
  let flags = FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP;
  if (opts.hardwareReduced) flags |= FADT_HW_REDUCED_ACPI;
  let bootArch = IAPC_VGA_NOT_PRESENT;
  if (!opts.cmosRtc) bootArch |= IAPC_CMOS_RTC_NOT_PRESENT;
  AcpiFadt.write(view, offsets.FACP, {
    header: header('FACP', AcpiFadt.size, FADT_REVISION),
    dsdt: dsdtAddr < 2 ** 32 ? dsdtAddr : 0,
    sci_int: opts.sciInterrupt,
    // SMI_CMD 0: the platform is always in ACPI mode.
    smi_cmd: 0,
    pm1a_evt_blk: opts.pm1aEventPort,
    pm1a_cnt_blk: opts.pm1aControlPort,
    pm1_evt_len: 4,
    pm1_cnt_len: 2,
    iapc_boot_arch: bootArch,
    flags,
    reset_reg: ioGas(opts.resetPort, 1, GAS_ACCESS_BYTE),
    reset_value: opts.resetValue,
    fadt_minor_version: FADT_MINOR,
    x_dsdt: BigInt(dsdtAddr),
    x_pm1a_evt_blk: ioGas(opts.pm1aEventPort, 4, GAS_ACCESS_WORD),
    x_pm1a_cnt_blk: ioGas(opts.pm1aControlPort, 2, GAS_ACCESS_WORD),
    sleep_control_reg: ioGas(opts.sleepControlPort, 1, GAS_ACCESS_BYTE),
    sleep_status_reg: ioGas(opts.sleepStatusPort, 1, GAS_ACCESS_BYTE),
  });

  AcpiMadt.write(view, offsets.APIC, {
    header: header('APIC', madtLength, MADT_REVISION),
    local_apic_address: opts.lapicAddress,
    flags: 0, // no PCAT_COMPAT: there are no 8259s
  });
  let at = offsets.APIC + AcpiMadt.size;
  for (const p of madtParts) {
    bytes.set(p, at);
    at += p.length;
  }

  if (opts.pci) {
    AcpiSdtHeader.write(view, offsets.MCFG, header('MCFG', mcfgLength, MCFG_REVISION));
    AcpiMcfgAllocation.write(view, offsets.MCFG + AcpiSdtHeader.size + 8, {
      address: BigInt(opts.pci.ecamBase), pci_segment: 0, start_bus_number: 0, end_bus_number: 0, reserved: 0,
    });
  }

  AcpiSdtHeader.write(view, offsets.DSDT, header('DSDT', dsdtLength, DSDT_REVISION));
  bytes.set(aml, offsets.DSDT + AcpiSdtHeader.size);

  const checksumAt = AcpiSdtHeader.offsets.checksum;
  for (const sig of order) fixChecksum(tableBytes(sig), checksumAt);

  AcpiRsdp.write(view, 0, {
    signature: ascii('RSD PTR '),
    oem_id: oemId,
    revision: 2,
    rsdt_address: 0,
    length: AcpiRsdp.size,
    xsdt_address: BigInt(paddr('XSDT')),
  });
  fixChecksum(bytes.subarray(0, 20), AcpiRsdp.offsets.checksum);
  fixChecksum(bytes.subarray(0, AcpiRsdp.size), AcpiRsdp.offsets.extended_checksum);

  return {
    bytes,
    rsdpPaddr: base,
    tables: order.map((signature) => ({ signature, paddr: paddr(signature), length: lengths[signature] })),
  };
}

export interface AcpiTable extends AcpiTableInfo {
  revision: number;
  oemId: string;
  oemTableId: string;
  bytes: Uint8Array;
}

const text = (b: Uint8Array) => String.fromCharCode(...b);

function readChecked(read: (paddr: number, len: number) => Uint8Array, paddr: number, len: number): Uint8Array {
  const b = read(paddr, len);
  if (b.length < len) throw new Error(`ACPI: short read at 0x${paddr.toString(16)} (${b.length} of ${len} bytes)`);
  return b;
}

function readTable(read: (paddr: number, len: number) => Uint8Array, paddr: number, what: string): AcpiTable {
  const head = AcpiSdtHeader.decode(readChecked(read, paddr, AcpiSdtHeader.size));
  const signature = text(head.signature);
  if (head.length < AcpiSdtHeader.size || head.length > MAX_TABLE) {
    throw new Error(`ACPI ${what} (${signature}) at 0x${paddr.toString(16)} has a bad length ${head.length}`);
  }
  const bytes = readChecked(read, paddr, head.length).subarray(0, head.length);
  if (sum(bytes) !== 0) throw new Error(`ACPI ${signature} at 0x${paddr.toString(16)} has a bad checksum`);
  return {
    signature, paddr, length: head.length, revision: head.revision,
    oemId: text(head.oem_id), oemTableId: text(head.oem_table_id), bytes,
  };
}

function u64(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`ACPI ${what} 0x${v.toString(16)} is out of range`);
  return Number(v);
}

/**
 * Walks RSDP → XSDT (or RSDT) → tables, and FADT → DSDT, verifying every
 * checksum. Returns the root table first, then its entries, then the DSDT.
 */
export function parseAcpiTables(read: (paddr: number, len: number) => Uint8Array, rsdpPaddr: number): AcpiTable[] {
  const v1 = readChecked(read, rsdpPaddr, 20);
  if (text(v1.subarray(0, 8)) !== 'RSD PTR ') throw new Error(`ACPI: no RSDP signature at 0x${rsdpPaddr.toString(16)}`);
  if (sum(v1.subarray(0, 20)) !== 0) throw new Error('ACPI RSDP has a bad checksum');
  let root: AcpiTable;
  let entrySize: 4 | 8;
  if (v1[15] >= 2) {
    const full = readChecked(read, rsdpPaddr, AcpiRsdp.size);
    const rsdp = AcpiRsdp.decode(full);
    if (rsdp.length < AcpiRsdp.size || rsdp.length > 4096) throw new Error(`ACPI RSDP has a bad length ${rsdp.length}`);
    if (sum(readChecked(read, rsdpPaddr, rsdp.length).subarray(0, rsdp.length)) !== 0) {
      throw new Error('ACPI RSDP has a bad extended checksum');
    }
    root = readTable(read, u64(rsdp.xsdt_address, 'XSDT address'), 'XSDT');
    entrySize = 8;
    if (root.signature !== 'XSDT') throw new Error(`ACPI: RSDP points at ${root.signature}, not an XSDT`);
  } else {
    const rsdp = AcpiRsdp.decode(Uint8Array.from([...v1, ...new Uint8Array(AcpiRsdp.size - 20)]));
    root = readTable(read, rsdp.rsdt_address, 'RSDT');
    entrySize = 4;
    if (root.signature !== 'RSDT') throw new Error(`ACPI: RSDP points at ${root.signature}, not an RSDT`);
  }

  const tables: AcpiTable[] = [root];
  const rv = new DataView(root.bytes.buffer, root.bytes.byteOffset, root.bytes.byteLength);
  for (let off = AcpiSdtHeader.size; off + entrySize <= root.length; off += entrySize) {
    const addr = entrySize === 8 ? u64(rv.getBigUint64(off, true), 'table address') : rv.getUint32(off, true);
    tables.push(readTable(read, addr, `table at ${root.signature} offset ${off}`));
  }
  const fadt = tables.find((t) => t.signature === 'FACP');
  if (fadt) {
    const fv = new DataView(fadt.bytes.buffer, fadt.bytes.byteOffset, fadt.bytes.byteLength);
    const xOff = AcpiFadt.offsets.x_dsdt;
    const x = fadt.length >= xOff + 8 ? u64(fv.getBigUint64(xOff, true), 'X_DSDT') : 0;
    const dsdt = x || (fadt.length >= AcpiFadt.offsets.dsdt + 4 ? fv.getUint32(AcpiFadt.offsets.dsdt, true) : 0);
    if (dsdt) tables.push(readTable(read, dsdt, 'DSDT'));
  }
  return tables;
}

/** The first element of the `\_S5` package (the S5 SLP_TYP), if the AML defines one. */
export function findS5SleepType(dsdt: Uint8Array): number | undefined {
  const start = dsdt.length >= 4 && /^[DS]SDT$/.test(text(dsdt.subarray(0, 4))) ? AcpiSdtHeader.size : 0;
  for (let i = start; i + 4 <= dsdt.length; i++) {
    if (dsdt[i] !== 0x5f || dsdt[i + 1] !== 0x53 || dsdt[i + 2] !== 0x35 || dsdt[i + 3] !== 0x5f) continue;
    let op = i - 1;
    if (op >= 0 && dsdt[op] === AML_ROOT_CHAR) op--;
    if (op < 0 || dsdt[op] !== AML_NAME) continue;
    const value = decodeFirstPackageElement(dsdt, i + 4);
    if (value !== undefined) return value;
  }
  return undefined;
}

function decodeFirstPackageElement(b: Uint8Array, at: number): number | undefined {
  if (b[at] !== AML_PACKAGE || at + 1 >= b.length) return undefined;
  const lead = b[at + 1];
  const pkgBytes = lead >> 6;
  let p = at + 2 + pkgBytes; // past PkgLength
  if (b[p] === undefined || b[p] === 0) return undefined; // NumElements
  p++;
  const need = (n: number) => p + n < b.length; // opcode plus n data bytes present
  const le = (n: number) => {
    let v = 0;
    for (let k = n - 1; k >= 0; k--) v = v * 256 + b[p + 1 + k];
    return v;
  };
  switch (b[p]) {
    case AML_ZERO: return 0;
    case AML_ONE: return 1;
    case AML_ONES: return undefined;
    case AML_BYTE_PREFIX: return need(1) ? le(1) : undefined;
    case AML_WORD_PREFIX: return need(2) ? le(2) : undefined;
    case AML_DWORD_PREFIX: return need(4) ? le(4) : undefined;
    case AML_QWORD_PREFIX: return need(8) ? le(8) : undefined;
    default: return undefined;
  }
}

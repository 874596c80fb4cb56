// A minimal PCI bus 0: configuration space through mechanism #1 (the address
// register at 0xcf8, data at 0xcfc–0xcff) and through ECAM (memory-mapped,
// 4 KiB per function), so a guest's probing gets honest answers. Each function's
// 256 bytes live in one SharedArrayBuffer, with the address register, so every
// vCPU thread sees the same registers; which bits a guest may write is fixed by
// the function's description. BAR sizing works as on hardware: the writable
// bits of a BAR are those above its size.
import { allOnes, type PortDevice } from './io-bus.js';

export const PCI_CONFIG_SPACE = 256;
/** ECAM gives each function 4 KiB; what lies past the first 256 bytes reads as zero (no extended capabilities). */
export const ECAM_FUNCTION_SIZE = 4096;
export const ECAM_BUS_SIZE = 32 * 8 * ECAM_FUNCTION_SIZE;
const CONFIG_ENABLE = 0x8000_0000;

/** Standard header (type 0) registers. */
export const PCI_REG = {
  vendor: 0x00, device: 0x02, command: 0x04, status: 0x06, revision: 0x08, classCode: 0x09, cacheLineSize: 0x0c,
  latencyTimer: 0x0d, headerType: 0x0e, bar0: 0x10, subsystemVendor: 0x2c, subsystemId: 0x2e, romAddress: 0x30,
  capabilities: 0x34, interruptLine: 0x3c, interruptPin: 0x3d,
} as const;
/** COMMAND bits a guest may set: I/O and memory decode, bus master, INTx disable. */
export const PCI_COMMAND_WRITABLE = 0x0407;
const PCI_COMMAND_IO = 0x1;
const PCI_COMMAND_MEMORY = 0x2;
const BAR_IO = 0x1;
const BAR_MEM_PREFETCHABLE = 0x8;

export interface PciBar {
  kind: 'io' | 'mem32';
  /** A power of two: at least 4 (I/O) or 16 (memory) bytes. */
  size: number;
  /** Where it is until the guest moves it. */
  address: number;
  prefetchable?: boolean;
}

/** One function, 0, of a device on bus 0. */
export interface PciFunction {
  slot: number;
  vendor: number;
  device: number;
  revision: number;
  /** Class, subclass and programming interface, as the 24-bit value at 0x09. */
  classCode: number;
  subsystemVendor?: number;
  subsystemId?: number;
  /** Up to six BARs, by number. */
  bars?: readonly (PciBar | undefined)[];
  /** 1–4 for INTA–INTD, 0 for none, and the line it is routed to (a GSI). */
  interruptPin?: number;
  interruptLine?: number;
}

/** Initial register values and write masks of one function. */
function layout(f: PciFunction): { values: Uint8Array; writable: Uint8Array } {
  const values = new Uint8Array(PCI_CONFIG_SPACE);
  const writable = new Uint8Array(PCI_CONFIG_SPACE);
  const v = new DataView(values.buffer);
  const w = new DataView(writable.buffer);
  v.setUint16(PCI_REG.vendor, f.vendor, true);
  v.setUint16(PCI_REG.device, f.device, true);
  v.setUint8(PCI_REG.revision, f.revision);
  v.setUint8(PCI_REG.classCode, f.classCode & 0xff);
  v.setUint16(PCI_REG.classCode + 1, f.classCode >>> 8, true);
  v.setUint16(PCI_REG.subsystemVendor, f.subsystemVendor ?? 0, true);
  v.setUint16(PCI_REG.subsystemId, f.subsystemId ?? 0, true);
  v.setUint8(PCI_REG.interruptPin, f.interruptPin ?? 0);
  v.setUint8(PCI_REG.interruptLine, f.interruptLine ?? 0);
  w.setUint16(PCI_REG.command, PCI_COMMAND_WRITABLE, true);
  w.setUint8(PCI_REG.cacheLineSize, 0xff);
  w.setUint8(PCI_REG.latencyTimer, 0xff);
  w.setUint8(PCI_REG.interruptLine, 0xff);
  let command = 0;
  (f.bars ?? []).forEach((bar, i) => {
    if (!bar) return;
    const min = bar.kind === 'io' ? 4 : 16;
    if (i > 5 || bar.size < min || (bar.size & (bar.size - 1)) !== 0 || bar.address % bar.size !== 0) throw new Error(`PCI ${f.slot}: BAR ${i} is not a valid ${bar.kind} BAR`);
    const flags = bar.kind === 'io' ? BAR_IO : bar.prefetchable ? BAR_MEM_PREFETCHABLE : 0;
    v.setUint32(PCI_REG.bar0 + 4 * i, (bar.address | flags) >>> 0, true);
    w.setUint32(PCI_REG.bar0 + 4 * i, ~(bar.size - 1) >>> 0, true);
    command |= bar.kind === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
  });
  // As firmware leaves them: the BARs at their addresses and decoding.
  v.setUint16(PCI_REG.command, command, true);
  return { values, writable };
}

/** The configuration space of bus 0's functions, shared by every thread. */
export class PciConfigSpace {
  /** Word 0: the address register; then PCI_CONFIG_SPACE bytes per function, in `functions` order. */
  private readonly address: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly masks: Uint8Array[];
  private readonly bySlot = new Map<number, number>();

  constructor(
    readonly state: SharedArrayBuffer,
    functions: readonly PciFunction[],
  ) {
    this.address = new Int32Array(state, 0, 1);
    this.bytes = new Uint8Array(state, 4);
    this.masks = functions.map((f) => layout(f).writable);
    functions.forEach((f, i) => {
      if (!Number.isInteger(f.slot) || f.slot < 0 || f.slot > 31 || this.bySlot.has(f.slot)) throw new Error(`PCI slot ${f.slot} is invalid or taken`);
      this.bySlot.set(f.slot, i);
    });
  }

  /** The shared state with every function's registers as firmware leaves them; made once, on the main thread. */
  static createState(functions: readonly PciFunction[]): SharedArrayBuffer {
    const state = new SharedArrayBuffer(4 + functions.length * PCI_CONFIG_SPACE);
    functions.forEach((f, i) => new Uint8Array(state, 4 + i * PCI_CONFIG_SPACE, PCI_CONFIG_SPACE).set(layout(f).values));
    return state;
  }

  /** Where function (bus, slot, fn)'s registers start in `bytes`, or undefined when there is no such function. */
  private base(bus: number, slot: number, fn: number): number | undefined {
    if (bus !== 0 || fn !== 0) return undefined;
    const i = this.bySlot.get(slot);
    return i === undefined ? undefined : i * PCI_CONFIG_SPACE;
  }

  /** A read of 1, 2 or 4 bytes at `reg` (within one dword); all-ones where no function answers. */
  read(bus: number, slot: number, fn: number, reg: number, size: number): number {
    const base = this.base(bus, slot, fn);
    if (base === undefined) return allOnes(size);
    if (reg >= PCI_CONFIG_SPACE) return 0;
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + this.bytes[base + reg + i];
    return value;
  }

  /** A write of 1, 2 or 4 bytes: only the function's writable bits change; nothing where no function answers. */
  write(bus: number, slot: number, fn: number, reg: number, size: number, value: number): void {
    const base = this.base(bus, slot, fn);
    if (base === undefined || reg >= PCI_CONFIG_SPACE) return;
    const mask = this.masks[base / PCI_CONFIG_SPACE];
    for (let i = 0; i < size; i++) {
      const byte = (value >>> (8 * i)) & 0xff;
      const m = mask[reg + i];
      this.bytes[base + reg + i] = (this.bytes[base + reg + i] & ~m) | (byte & m);
    }
  }

  /** Configuration mechanism #1: the address register (a dword at 0xcf8) and the data window (0xcfc–0xcff). */
  readonly ports = {
    address: {
      // Only a dword access is the address register; bytes at 0xcf8–0xcfb belong to other registers (0xcf9 is the reset control).
      read: (_offset: number, size: number) => (size === 4 ? Atomics.load(this.address, 0) >>> 0 : 0xffffffff),
      write: (_offset: number, size: number, value: number) => {
        if (size === 4) Atomics.store(this.address, 0, value | 0);
      },
    } satisfies PortDevice,
    data: {
      read: (offset: number, size: number) => {
        const a = this.latched(offset, size);
        return a ? this.read(a.bus, a.slot, a.fn, a.reg, size) : 0xffffffff;
      },
      write: (offset: number, size: number, value: number) => {
        const a = this.latched(offset, size);
        if (a) this.write(a.bus, a.slot, a.fn, a.reg, size, value);
      },
    } satisfies PortDevice,
  };

  /** The function and register the address register selects for an access at data offset `offset`, if enabled and aligned. */
  private latched(offset: number, size: number): { bus: number; slot: number; fn: number; reg: number } | undefined {
    const a = Atomics.load(this.address, 0) >>> 0;
    if (!(a & CONFIG_ENABLE) || offset % size !== 0) return undefined;
    return { bus: (a >>> 16) & 0xff, slot: (a >>> 11) & 0x1f, fn: (a >>> 8) & 7, reg: (a & 0xfc) + offset };
  }

  /** An ECAM access at `offset` from the window's base (bus 0 only); accesses wider than a dword or unaligned read all-ones. */
  ecamRead(offset: number, size: number): number {
    const e = ecamDecode(offset, size);
    return e ? this.read(0, e.slot, e.fn, e.reg, size) : 0xffffffff;
  }

  ecamWrite(offset: number, size: number, value: number): void {
    const e = ecamDecode(offset, size);
    if (e) this.write(0, e.slot, e.fn, e.reg, size, value);
  }
}

function ecamDecode(offset: number, size: number): { slot: number; fn: number; reg: number } | undefined {
  if ((size !== 1 && size !== 2 && size !== 4) || offset % size !== 0 || offset < 0 || offset >= ECAM_BUS_SIZE) return undefined;
  return { slot: offset >>> 15, fn: (offset >>> 12) & 7, reg: offset & 0xfff };
}

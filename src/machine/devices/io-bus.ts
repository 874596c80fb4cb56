// Port I/O and MMIO dispatch: devices are register machines addressed by
// offset from their base port or guest-physical address.

/** What a read of `size` bytes (1, 2 or 4) from nothing returns, as on a PC: every bit set. */
export const allOnes = (size: number): number => (size === 4 ? 0xffffffff : (1 << (8 * size)) - 1);

export interface PortDevice {
  read(offset: number, size: number): number;
  write(offset: number, size: number, value: number): void;
}

export class IoBus {
  private readonly byPort = new Map<number, { base: number; device: PortDevice }>();
  private readonly mmio: { base: number; size: number; device: PortDevice }[] = [];

  register(base: number, length: number, device: PortDevice): void {
    for (let p = base; p < base + length; p++) {
      if (this.byPort.has(p)) throw new Error(`I/O port 0x${p.toString(16)} registered twice`);
      this.byPort.set(p, { base, device });
    }
  }

  /** The value read, or undefined when no device owns the port. */
  read(port: number, size: number): number | undefined {
    const d = this.byPort.get(port);
    return d ? d.device.read(port - d.base, size) : undefined;
  }

  /** False when no device owns the port. */
  write(port: number, size: number, value: number): boolean {
    const d = this.byPort.get(port);
    if (!d) return false;
    d.device.write(port - d.base, size, value);
    return true;
  }

  /** A device at guest-physical [base, base+size) that no memory backs, served on MMIO exits. */
  registerMmio(base: number, size: number, device: PortDevice): void {
    if (this.mmio.some((r) => base < r.base + r.size && r.base < base + size)) throw new Error(`MMIO range 0x${base.toString(16)}+${size} registered twice`);
    this.mmio.push({ base, size, device });
  }

  private mmioAt(gpa: number, size: number) {
    return this.mmio.find((r) => gpa >= r.base && gpa + size <= r.base + r.size);
  }

  /** The bytes an MMIO read of `size` (1–8) returns, little-endian, or undefined where no device is; 8 bytes are two dwords. */
  mmioRead(gpa: number, size: number): Uint8Array | undefined {
    const r = this.mmioAt(gpa, size);
    if (!r) return undefined;
    const out = new Uint8Array(8);
    const v = new DataView(out.buffer);
    const at = gpa - r.base;
    if (size === 8) {
      v.setUint32(0, r.device.read(at, 4), true);
      v.setUint32(4, r.device.read(at + 4, 4), true);
    } else {
      const value = r.device.read(at, size);
      for (let i = 0; i < size; i++) out[i] = (value >>> (8 * i)) & 0xff;
    }
    return out;
  }

  /** False where no device is. */
  mmioWrite(gpa: number, data: Uint8Array): boolean {
    const r = this.mmioAt(gpa, data.length);
    if (!r) return false;
    const v = new DataView(data.buffer, data.byteOffset, data.length);
    const at = gpa - r.base;
    if (data.length === 8) {
      r.device.write(at, 4, v.getUint32(0, true));
      r.device.write(at + 4, 4, v.getUint32(4, true));
    } else {
      let value = 0;
      for (let i = data.length - 1; i >= 0; i--) value = value * 256 + data[i];
      r.device.write(at, data.length, value);
    }
    return true;
  }
}

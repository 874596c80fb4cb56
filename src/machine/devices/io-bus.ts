// Port I/O dispatch: devices are register machines addressed by offset from
// their base port.

export interface PortDevice {
  read(offset: number, size: number): number;
  write(offset: number, size: number, value: number): void;
}

export class IoBus {
  private readonly byPort = new Map<number, { base: number; device: PortDevice }>();

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
}

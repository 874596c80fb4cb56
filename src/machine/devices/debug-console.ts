// Port 0xe9: every byte written goes to the console (Bochs/QEMU debugcon);
// reads return 0xe9 so a guest can detect the port.
import type { PortDevice } from './io-bus.js';
import type { Platform } from './platform.js';

export class DebugConsole implements PortDevice {
  constructor(private readonly platform: Platform) {}

  read(): number {
    return 0xe9;
  }

  write(_offset: number, size: number, value: number): void {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (value >>> (8 * i)) & 0xff;
    this.platform.consoleOutput(bytes);
  }
}

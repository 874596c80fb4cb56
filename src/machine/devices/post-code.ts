// Port 0x80, the POST-code port: guests write it for progress codes and as an
// I/O delay; writes are dropped and reads return all-ones, as on a PC.
import { allOnes, type PortDevice } from './io-bus.js';

export class PostCode implements PortDevice {
  read(_offset: number, size: number): number {
    return allOnes(size);
  }
  write(): void {}
}

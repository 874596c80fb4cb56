// A 16550A UART whose transmitter is the console. Output only: the receiver
// never has data. Registers live in a SharedArrayBuffer so that every vCPU
// thread's instance sees the same UART.
import type { PortDevice } from './io-bus.js';
import type { Platform } from './platform.js';

const enum Reg { IER, LCR, MCR, SCR, DLL, DLM, FCR, THRE_PENDING, COUNT }
const LCR_DLAB = 0x80;
const IER_THRI = 0x02;
const IIR_NO_INT = 0x01;
const IIR_THRI = 0x02;
const IIR_FIFO = 0xc0;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MCR_LOOP = 0x10;

/** In loopback the modem outputs feed the inputs: RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD. */
function loopbackModemStatus(mcr: number): number {
  return ((mcr & 2) << 3) | ((mcr & 1) << 5) | ((mcr & 4) << 4) | ((mcr & 8) << 4);
}

export class Uart16550 implements PortDevice {
  private readonly regs: Int32Array;

  constructor(
    state: SharedArrayBuffer,
    private readonly platform: Platform,
    private readonly irq: number,
  ) {
    this.regs = new Int32Array(state);
  }

  static createState(): SharedArrayBuffer {
    return new SharedArrayBuffer(Reg.COUNT * 4);
  }

  private get(r: Reg): number {
    return Atomics.load(this.regs, r);
  }
  private set(r: Reg, v: number): void {
    Atomics.store(this.regs, r, v & 0xff);
  }

  /** The transmitter is always empty at once, so the THR-empty interrupt is pending whenever it was armed by a write or IER. */
  private updateIrq(): void {
    this.platform.setIrqLevel(this.irq, (this.get(Reg.IER) & IER_THRI) !== 0 && this.get(Reg.THRE_PENDING) !== 0);
  }

  read(offset: number): number {
    const dlab = (this.get(Reg.LCR) & LCR_DLAB) !== 0;
    switch (offset) {
      case 0: return dlab ? this.get(Reg.DLL) : 0;
      case 1: return dlab ? this.get(Reg.DLM) : this.get(Reg.IER);
      case 2: {
        const fifo = this.get(Reg.FCR) & 1 ? IIR_FIFO : 0;
        if ((this.get(Reg.IER) & IER_THRI) && this.get(Reg.THRE_PENDING)) {
          // Reading IIR while THRE is the source acknowledges it.
          this.set(Reg.THRE_PENDING, 0);
          this.updateIrq();
          return fifo | IIR_THRI;
        }
        return fifo | IIR_NO_INT;
      }
      case 3: return this.get(Reg.LCR);
      case 4: return this.get(Reg.MCR);
      case 5: return LSR_THRE | LSR_TEMT;
      case 6: return this.get(Reg.MCR) & MCR_LOOP ? loopbackModemStatus(this.get(Reg.MCR)) : 0;
      case 7: return this.get(Reg.SCR);
      default: return 0xff;
    }
  }

  write(offset: number, _size: number, value: number): void {
    const dlab = (this.get(Reg.LCR) & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) return this.set(Reg.DLL, value);
        if (!(this.get(Reg.MCR) & MCR_LOOP)) this.platform.consoleOutput(Uint8Array.of(value & 0xff));
        this.set(Reg.THRE_PENDING, 1);
        return this.updateIrq();
      case 1:
        if (dlab) return this.set(Reg.DLM, value);
        this.set(Reg.IER, value & 0x0f);
        if (value & IER_THRI) this.set(Reg.THRE_PENDING, 1);
        return this.updateIrq();
      case 2: return this.set(Reg.FCR, value);
      case 3: return this.set(Reg.LCR, value);
      case 4: return this.set(Reg.MCR, value & 0x1f);
      case 7: return this.set(Reg.SCR, value);
    }
  }
}

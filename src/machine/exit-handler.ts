// What a vCPU thread does with each KVM exit: I/O goes to the port bus,
// accesses to unbacked guest-physical memory read all-ones and drop writes,
// filtered MSRs go to the MSR handler (#GP when none claims them), and exits
// that end the vCPU become a stop with a one-line report.
import type { Logger } from 'pino';
import { RateLimitedLog } from '../common/log.js';
import { describeExit, type KvmExit } from '../kvm/exits.js';
import type { Regs, Sregs } from '../kvm/vcpu.js';
import { translateRange } from '../memory/page-walker.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { IoBus } from './devices/io-bus.js';
import type { StopReason } from './devices/platform.js';

/** The vCPU operations exit handling needs (a fake in tests). */
export interface ExitVcpu {
  readonly id: number;
  ioData(exit: Extract<KvmExit, { kind: 'io' }>): Uint8Array;
  completeMmioRead(bytes: Uint8Array): void;
  completeMsr(result: { fault: true } | { fault: false; value?: bigint }): void;
  getRegs(): Regs;
  getSregs(): Sregs;
}

/** Claims MSRs the VMM emulates; undefined (read) or false (write) means #GP. */
export interface MsrHandler {
  read(vcpu: number, index: number): bigint | undefined;
  write(vcpu: number, index: number, value: bigint): boolean;
}

export type ExitAction = { stop: StopReason; message: string } | undefined;

const hex = (v: number | bigint) => `0x${v.toString(16)}`;
const MAX_INSTRUCTION = 15;

export class ExitHandler {
  private readonly guestLog: RateLimitedLog;

  constructor(
    private readonly vcpu: ExitVcpu,
    private readonly bus: IoBus,
    private readonly memory: GuestMemory,
    private readonly logger: Logger,
    private readonly msrs: MsrHandler | undefined,
  ) {
    this.guestLog = new RateLimitedLog(logger);
  }

  handle(exit: KvmExit): ExitAction {
    switch (exit.kind) {
      case 'io':
        this.io(exit);
        return undefined;
      case 'mmio':
        if (exit.isWrite) {
          this.guestLog.warn('mmio', { vcpu: this.vcpu.id, gpa: hex(exit.gpa), len: exit.len }, 'guest wrote to unbacked guest-physical memory; write dropped');
        } else {
          this.guestLog.warn('mmio', { vcpu: this.vcpu.id, gpa: hex(exit.gpa), len: exit.len }, 'guest read unbacked guest-physical memory; returned all-ones');
          this.vcpu.completeMmioRead(new Uint8Array(8).fill(0xff));
        }
        return undefined;
      case 'rdmsr': {
        const value = this.msrs?.read(this.vcpu.id, exit.index);
        if (value === undefined) this.guestLog.warn('msr', { vcpu: this.vcpu.id, msr: hex(exit.index) }, 'guest read an MSR xenkvm does not provide; #GP');
        this.vcpu.completeMsr(value === undefined ? { fault: true } : { fault: false, value });
        return undefined;
      }
      case 'wrmsr': {
        const ok = this.msrs?.write(this.vcpu.id, exit.index, exit.data) ?? false;
        if (!ok) this.guestLog.warn('msr', { vcpu: this.vcpu.id, msr: hex(exit.index), value: hex(exit.data) }, 'guest wrote an MSR xenkvm does not provide; #GP');
        this.vcpu.completeMsr({ fault: !ok });
        return undefined;
      }
      case 'hlt':
      case 'intr':
      case 'irq-window-open':
        return undefined;
      case 'shutdown':
        return { stop: 'triple-fault', message: `vCPU ${this.vcpu.id} triple-faulted at ${this.where()}` };
      case 'system-event':
        if (exit.event === 'shutdown') return { stop: 'poweroff', message: `vCPU ${this.vcpu.id} requested power-off` };
        if (exit.event === 'reset') return { stop: 'reset', message: `vCPU ${this.vcpu.id} requested reset` };
        return { stop: 'vcpu-error', message: `vCPU ${this.vcpu.id} stopped: ${describeExit(exit)}` };
      case 'internal-error':
        return { stop: 'vcpu-error', message: `vCPU ${this.vcpu.id} stopped: ${describeExit(exit)} at ${this.where(exit.instructionBytes)}` };
      default:
        return { stop: 'vcpu-error', message: `vCPU ${this.vcpu.id} stopped: ${describeExit(exit)} at ${this.where()}` };
    }
  }

  private io(exit: Extract<KvmExit, { kind: 'io' }>): void {
    const data = this.vcpu.ioData(exit);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    // String I/O (rep ins/outs) arrives as count back-to-back items.
    for (let i = 0; i < exit.count; i++) {
      const at = i * exit.size;
      if (exit.direction === 'out') {
        const value = exit.size === 1 ? view.getUint8(at) : exit.size === 2 ? view.getUint16(at, true) : view.getUint32(at, true);
        if (!this.bus.write(exit.port, exit.size, value)) {
          this.guestLog.warn('io', { vcpu: this.vcpu.id, port: hex(exit.port), size: exit.size, value: hex(value) }, 'guest wrote an I/O port with no device; write dropped');
        }
      } else {
        let value = this.bus.read(exit.port, exit.size);
        if (value === undefined) {
          this.guestLog.warn('io', { vcpu: this.vcpu.id, port: hex(exit.port), size: exit.size }, 'guest read an I/O port with no device; returned all-ones');
          value = 0xffffffff;
        }
        if (exit.size === 1) view.setUint8(at, value & 0xff);
        else if (exit.size === 2) view.setUint16(at, value & 0xffff, true);
        else view.setUint32(at, value >>> 0, true);
      }
    }
  }

  /** "RIP 0x… (CS:…, mode), instruction bytes …" for reports; best effort, never throws. */
  private where(instructionBytes?: Uint8Array): string {
    try {
      const regs = this.vcpu.getRegs();
      const sregs = this.vcpu.getSregs();
      const mode = sregs.efer & (1n << 10n) ? (sregs.cs.l ? '64-bit' : 'compatibility') : sregs.cr0 & 1n ? (sregs.cs.db ? '32-bit' : '16-bit protected') : 'real';
      const bytes = instructionBytes ?? this.fetchInstruction(sregs.cs.base + regs.rip, sregs);
      const text = bytes ? Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ') : 'unreadable';
      return `RIP ${hex(regs.rip)} (${mode} mode, CS base ${hex(sregs.cs.base)}), instruction bytes ${text}`;
    } catch (e) {
      return `an unknown RIP (registers unreadable: ${(e as Error).message})`;
    }
  }

  private fetchInstruction(linear: bigint, sregs: Sregs): Uint8Array | undefined {
    const t = translateRange(this.memory.forWalker(), sregs, linear, MAX_INSTRUCTION, { fetch: true });
    if (!t.ok) return undefined;
    const out: number[] = [];
    for (const p of t.pieces) {
      if (!this.memory.isBacked(p.gpa, p.length)) break;
      out.push(...this.memory.read(p.gpa, p.length));
    }
    return out.length ? Uint8Array.from(out) : undefined;
  }
}

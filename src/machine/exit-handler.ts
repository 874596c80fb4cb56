// What a vCPU thread does with each KVM exit: I/O goes to the port bus, and so
// do MMIO exits where a device is (PCI's ECAM); other accesses to unbacked
// guest-physical memory read all-ones and drop writes,
// filtered MSRs go to the MSR handler (#GP when none claims them), and exits
// that end the vCPU become a stop with a one-line report.
import type { Logger } from 'pino';
import { RateLimitedLog } from '../common/log.js';
import { exitReasonNames, exitReasons, kvmRun, KVM_EXIT_IO_OUT } from '../kvm/abi.js';
import { decodeExit, describeExit, type KvmExit } from '../kvm/exits.js';
import { PVM_LIMITS, type HostKvm } from '../kvm/system.js';
import type { Regs, Sregs } from '../kvm/vcpu.js';
import { translateRange } from '../memory/page-walker.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { IoBus } from './devices/io-bus.js';
import type { StopReason } from './devices/platform.js';

/** The vCPU operations exit handling needs (a fake in tests). */
export interface ExitVcpu {
  readonly id: number;
  /** The kvm_run mapping; I/O data lies inside it at data_offset. */
  readonly run: DataView;
  completeMmioRead(bytes: Uint8Array): void;
  completeMsr(result: { fault: true } | { fault: false; value?: bigint }): void;
  completeXenHypercall(result: bigint): void;
  getRegs(): Regs;
  getSregs(): Sregs;
}

/** Claims MSRs the VMM emulates; undefined (read) or false (write) means #GP. */
export interface MsrHandler {
  read(vcpu: number, index: number): bigint | undefined;
  write(vcpu: number, index: number, value: bigint): boolean;
}

/** The port the hypercall page's `out` stubs write the hypercall number to, and what serves hypercalls. */
export interface HypercallPort {
  readonly port: number;
  call(): void;
  /** A hypercall KVM intercepted (VMCALL/VMMCALL with KVM's Xen support on): its result, for KVM to put in RAX. */
  xen(exit: Extract<KvmExit, { kind: 'xen-hcall' }>): bigint;
}

export type ExitAction = { stop: StopReason; message: string } | undefined;

const hex = (v: number | bigint) => `0x${v.toString(16)}`;
const MAX_INSTRUCTION = 15;

/** Room for every exit reason KVM has (the highest is below 64). */
const EXIT_REASON_SLOTS = 64;

export class ExitHandler {
  private readonly guestLog: RateLimitedLog;
  /** How many exits of each reason reached xenkvm (KVM_RUN returning to user space). */
  private readonly exitCounts = new Float64Array(EXIT_REASON_SLOTS);

  constructor(
    private readonly vcpu: ExitVcpu,
    private readonly bus: IoBus,
    private readonly memory: GuestMemory,
    /** The host CPU's vendor (whose paging rules the guest's tables follow) and KVM: what it leaves of a vCPU that shut down. */
    private readonly host: HostKvm,
    private readonly logger: Logger,
    private readonly msrs: MsrHandler | undefined,
    private readonly hypercalls?: HypercallPort,
  ) {
    this.guestLog = new RateLimitedLog(logger);
  }

  /** Handles the exit now in kvm_run. Port I/O, the most frequent exit, is served without decoding into an object. */
  handleRun(reason: number): ExitAction {
    this.exitCounts[reason % EXIT_REASON_SLOTS]++;
    if (reason !== exitReasons.IO) return this.handle(decodeExit(this.vcpu.run));
    const run = this.vcpu.run;
    this.io(
      run.getUint8(kvmRun.io.direction) === KVM_EXIT_IO_OUT,
      run.getUint16(kvmRun.io.port, true),
      run.getUint8(kvmRun.io.size),
      run.getUint32(kvmRun.io.count, true),
      Number(run.getBigUint64(kvmRun.io.data_offset, true)),
    );
    return undefined;
  }

  /** The exits handled so far, by KVM's name for their reason (IO, XEN, MMIO...); reasons never seen are left out. */
  exitsByReason(): Record<string, number> {
    const out: Record<string, number> = {};
    this.exitCounts.forEach((n, reason) => {
      if (n > 0) out[exitReasonNames[reason] ?? String(reason)] = n;
    });
    return out;
  }

  handle(exit: KvmExit): ExitAction {
    switch (exit.kind) {
      case 'io':
        this.io(exit.direction === 'out', exit.port, exit.size, exit.count, exit.dataOffset);
        return undefined;
      case 'mmio':
        if (exit.isWrite ? this.bus.mmioWrite(exit.gpa, exit.data) : this.mmioDeviceRead(exit.gpa, exit.len)) return undefined;
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
      case 'xen-hcall':
        if (!this.hypercalls) return { stop: 'vcpu-error', message: `vCPU ${this.vcpu.id} stopped: a Xen hypercall exit with no Xen to serve it` };
        this.vcpu.completeXenHypercall(this.hypercalls.xen(exit));
        return undefined;
      case 'hlt':
      case 'intr':
      case 'irq-window-open':
        return undefined;
      case 'shutdown':
        return { stop: 'triple-fault', message: this.tripleFault() };
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

  private mmioDeviceRead(gpa: number, len: number): boolean {
    const bytes = this.bus.mmioRead(gpa, len);
    if (bytes) this.vcpu.completeMmioRead(bytes);
    return bytes !== undefined;
  }

  private io(out: boolean, port: number, size: number, count: number, dataOffset: number): void {
    const run = this.vcpu.run;
    if ((size !== 1 && size !== 2 && size !== 4) || dataOffset < kvmRun.size || dataOffset + size * count > run.byteLength) {
      throw new Error(`vCPU ${this.vcpu.id}: malformed I/O exit (port 0x${port.toString(16)}, size ${size}, count ${count}, data at ${dataOffset})`);
    }
    if (out && port === this.hypercalls?.port && size === 4 && count === 1) return this.hypercalls.call();
    // String I/O (rep ins/outs) arrives as count back-to-back items.
    for (let i = 0, at = dataOffset; i < count; i++, at += size) {
      if (out) {
        const value = size === 1 ? run.getUint8(at) : size === 2 ? run.getUint16(at, true) : run.getUint32(at, true);
        if (!this.bus.write(port, size, value)) {
          this.guestLog.warn('io', { vcpu: this.vcpu.id, port: hex(port), size, value: hex(value) }, 'guest wrote an I/O port with no device; write dropped');
        }
      } else {
        let value = this.bus.read(port, size);
        if (value === undefined) {
          this.guestLog.warn('io', { vcpu: this.vcpu.id, port: hex(port), size }, 'guest read an I/O port with no device; returned all-ones');
          value = 0xffffffff;
        }
        if (size === 1) run.setUint8(at, value & 0xff);
        else if (size === 2) run.setUint16(at, value & 0xffff, true);
        else run.setUint32(at, value >>> 0, true);
      }
    }
  }

  /**
   * On Intel (VMX) the registers after a shutdown exit are those of the triple fault. On AMD (SVM), KVM puts the
   * vCPU through INIT when it intercepts the shutdown (the VMCB is undefined after one) and only then exits to user
   * space: the registers are the reset state (RIP 0xfff0, real mode), not the fault's, and are not reported. PVM
   * keeps them, and triple-faults guests it cannot run: the report says so.
   */
  private tripleFault(): string {
    if (this.host.pvm) return `vCPU ${this.vcpu.id} triple-faulted at ${this.where()}; ${PVM_LIMITS}: --accel nested runs such a guest`;
    if (this.host.vendor === 'amd') {
      return `vCPU ${this.vcpu.id} triple-faulted; where is unknown: on AMD, KVM resets the vCPU when it intercepts the shutdown, so its registers at the fault are lost`;
    }
    return `vCPU ${this.vcpu.id} triple-faulted at ${this.where()}`;
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
    const t = translateRange(this.memory.walkerView, { ...sregs, vendor: this.host.vendor }, linear, MAX_INSTRUCTION, { fetch: true });
    if (!t.ok) return undefined;
    const out: number[] = [];
    for (const p of t.pieces) {
      if (!this.memory.isBacked(p.gpa, p.length)) break;
      out.push(...this.memory.read(p.gpa, p.length));
    }
    return out.length ? Uint8Array.from(out) : undefined;
  }
}

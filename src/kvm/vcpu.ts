// A KVM vCPU file descriptor and its kvm_run page. Used on the vCPU's own
// thread; KVM serialises vCPU ioctls, so another thread's call would block
// until KVM_RUN returns.
import {
  ioctls, kvmEnableCap, kvmMsrEntry, kvmMsrsHeader, kvmRegs, kvmRun, kvmSregs, kvmVcpuEvents,
} from './abi.js';
import { decodeExit, type KvmExit } from './exits.js';
import { check, EAGAIN, EINTR, errno, libc, mmapShared, munmap, SystemCallError, viewOf, type Pointer } from './libc.js';
import { encodeCpuid, type CpuidEntry } from './system.js';

export type Regs = ReturnType<typeof kvmRegs.read>;
export type Sregs = ReturnType<typeof kvmSregs.read>;
export type VcpuEvents = ReturnType<typeof kvmVcpuEvents.read>;

/** enter() result when KVM_RUN was interrupted rather than exiting. */
export const INTERRUPTED = -1;

export class Vcpu {
  private readonly runPtr: Pointer;
  /** The shared kvm_run page. */
  readonly run: DataView;
  private readonly runBytes: Uint8Array;

  constructor(
    readonly fd: number,
    readonly id: number,
    private readonly runSize: number,
  ) {
    this.runPtr = mmapShared(fd, runSize, `kvm_run of vCPU ${id}`);
    const buf = viewOf(this.runPtr, runSize);
    this.run = new DataView(buf);
    this.runBytes = new Uint8Array(buf);
  }

  private ioctl(name: keyof typeof ioctls, arg: Uint8Array | null): number {
    return check(`ioctl(${name}) on vCPU ${this.id}`, libc().ioctlPtr(this.fd, ioctls[name], arg));
  }

  /**
   * Enters the guest and returns the exit reason (decode it with exit()).
   * EINTR (a kick) and EAGAIN (an AP woken by INIT before its SIPI) return
   * INTERRUPTED: the caller checks its control state and runs again. Nothing
   * is allocated here: this is the hot path.
   */
  enter(): number {
    if (libc().ioctlInt(this.fd, ioctls.KVM_RUN, 0) < 0) {
      const e = errno();
      if (e === EINTR || e === EAGAIN) return INTERRUPTED;
      throw new SystemCallError(`ioctl(KVM_RUN) on vCPU ${this.id}`, e);
    }
    return this.run.getUint32(kvmRun.exit_reason, true);
  }

  /** The current exit, decoded. */
  exit(): KvmExit {
    return decodeExit(this.run);
  }

  set immediateExit(on: boolean) {
    this.run.setUint8(kvmRun.immediate_exit, on ? 1 : 0);
  }

  /** Answers an MMIO read exit. */
  completeMmioRead(bytes: Uint8Array): void {
    this.runBytes.set(bytes.subarray(0, 8), kvmRun.mmio.data);
  }

  /** Answers an RDMSR/WRMSR exit: fault injects #GP. */
  completeMsr(result: { fault: true } | { fault: false; value?: bigint }): void {
    this.run.setUint8(kvmRun.msr.error, result.fault ? 1 : 0);
    if (!result.fault && result.value !== undefined) this.run.setBigUint64(kvmRun.msr.data, result.value, true);
  }

  getRegs(): Regs {
    const buf = new Uint8Array(kvmRegs.size);
    this.ioctl('KVM_GET_REGS', buf);
    return kvmRegs.decode(buf);
  }

  setRegs(regs: Partial<Regs>): void {
    const buf = new Uint8Array(kvmRegs.size);
    this.ioctl('KVM_GET_REGS', buf);
    kvmRegs.write(new DataView(buf.buffer), 0, regs);
    this.ioctl('KVM_SET_REGS', buf);
  }

  getSregs(): Sregs {
    const buf = new Uint8Array(kvmSregs.size);
    this.ioctl('KVM_GET_SREGS', buf);
    return kvmSregs.decode(buf);
  }

  setSregs(sregs: Partial<Sregs>): void {
    const buf = new Uint8Array(kvmSregs.size);
    this.ioctl('KVM_GET_SREGS', buf);
    kvmSregs.write(new DataView(buf.buffer), 0, sregs);
    this.ioctl('KVM_SET_SREGS', buf);
  }

  getEvents(): VcpuEvents {
    const buf = new Uint8Array(kvmVcpuEvents.size);
    this.ioctl('KVM_GET_VCPU_EVENTS', buf);
    return kvmVcpuEvents.decode(buf);
  }

  setCpuid(entries: CpuidEntry[]): void {
    this.ioctl('KVM_SET_CPUID2', encodeCpuid(entries));
  }

  getMsrs(indices: number[]): Map<number, bigint> {
    const buf = new Uint8Array(kvmMsrsHeader.size + indices.length * kvmMsrEntry.size);
    const view = new DataView(buf.buffer);
    kvmMsrsHeader.write(view, 0, { nmsrs: indices.length });
    indices.forEach((index, i) => kvmMsrEntry.write(view, kvmMsrsHeader.size + i * kvmMsrEntry.size, { index }));
    const n = this.ioctl('KVM_GET_MSRS', buf);
    const out = new Map<number, bigint>();
    for (let i = 0; i < n; i++) {
      const e = kvmMsrEntry.read(view, kvmMsrsHeader.size + i * kvmMsrEntry.size);
      out.set(e.index, e.data);
    }
    return out;
  }

  setMsrs(values: [index: number, value: bigint][]): void {
    const buf = new Uint8Array(kvmMsrsHeader.size + values.length * kvmMsrEntry.size);
    const view = new DataView(buf.buffer);
    kvmMsrsHeader.write(view, 0, { nmsrs: values.length });
    values.forEach(([index, data], i) => kvmMsrEntry.write(view, kvmMsrsHeader.size + i * kvmMsrEntry.size, { index, data }));
    const n = this.ioctl('KVM_SET_MSRS', buf);
    if (n !== values.length) throw new Error(`vCPU ${this.id}: KVM_SET_MSRS set ${n} of ${values.length} MSRs (MSR 0x${values[n][0].toString(16)} refused)`);
  }

  getMpState(): number {
    const buf = new Uint8Array(4);
    this.ioctl('KVM_GET_MP_STATE', buf);
    return new DataView(buf.buffer).getUint32(0, true);
  }

  getTscKhz(): number {
    return check(`ioctl(KVM_GET_TSC_KHZ) on vCPU ${this.id}`, libc().ioctlInt(this.fd, ioctls.KVM_GET_TSC_KHZ, 0));
  }

  enableCap(cap: number, ...args: (number | bigint)[]): void {
    this.ioctl('KVM_ENABLE_CAP', kvmEnableCap.encode({ cap, args: args.map(BigInt) }));
  }

  /** The signal mask in force while this thread is inside KVM_RUN (the kernel's 8-byte sigset). */
  setSignalMask(kernelSigset: Uint8Array): void {
    const buf = new Uint8Array(4 + 8);
    new DataView(buf.buffer).setUint32(0, 8, true);
    buf.set(kernelSigset.subarray(0, 8), 4);
    this.ioctl('KVM_SET_SIGNAL_MASK', buf);
  }

  /** Unmaps kvm_run; the fd belongs to whoever created the vCPU. */
  unmap(): void {
    munmap(this.runPtr, this.runSize);
  }
}

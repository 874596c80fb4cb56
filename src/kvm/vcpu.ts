// A KVM vCPU file descriptor and its kvm_run page. Used on the vCPU's own
// thread; KVM serialises vCPU ioctls, so another thread's call would block
// until KVM_RUN returns.
import type { FieldType, StructDef, StructValue } from '../common/struct.js';
import { ioctls, kvmEnableCap, kvmXenVcpuAttr, kvmMsrEntry, kvmMsrsHeader, kvmRegs, kvmRun, kvmSegment, kvmSregs, kvmVcpuEvents, syncRegs } from './abi.js';
import { check, EAGAIN, EINTR, errno, libc, mmapShared, munmap, SystemCallError, viewOf, type Pointer } from './libc.js';
import { encodeCpuid, type CpuidEntry } from './system.js';

export type Regs = ReturnType<typeof kvmRegs.read>;
export type Sregs = ReturnType<typeof kvmSregs.read>;
export type VcpuEvents = ReturnType<typeof kvmVcpuEvents.read>;
type IoctlName = keyof typeof ioctls;

const SYNCED_SREGS = kvmRun.sync_regs + kvmRegs.size;
const DIRTY_REGS = BigInt(syncRegs.REGS);

/** enter() result when KVM_RUN was interrupted rather than exiting. */
export const INTERRUPTED = -1;

/** IA32_TIME_STAMP_COUNTER: read through KVM it is the guest's TSC. */
export const MSR_IA32_TSC = 0x10;

/**
 * vCPU ioctls that need no kvm_run mapping, for the thread that owns a vCPU
 * before its worker runs it (KVM serialises them with KVM_RUN).
 */
export const vcpuFd = {
  readMsr(fd: number, index: number): bigint {
    const buf = new Uint8Array(kvmMsrsHeader.size + kvmMsrEntry.size);
    const view = new DataView(buf.buffer);
    kvmMsrsHeader.write(view, 0, { nmsrs: 1 });
    kvmMsrEntry.write(view, kvmMsrsHeader.size, { index });
    if (check('ioctl(KVM_GET_MSRS)', libc().ioctlPtr(fd, ioctls.KVM_GET_MSRS, buf)) !== 1) throw new Error(`KVM cannot read MSR 0x${index.toString(16)}`);
    return kvmMsrEntry.read(view, kvmMsrsHeader.size).data;
  },
  tscKhz(fd: number): number {
    return check('ioctl(KVM_GET_TSC_KHZ)', libc().ioctlInt(fd, ioctls.KVM_GET_TSC_KHZ, 0));
  },
};

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
    // Registers and segment state arrive with every exit, so hypercalls need no register ioctls.
    this.run.setBigUint64(kvmRun.kvm_valid_regs, BigInt(syncRegs.REGS | syncRegs.SREGS), true);
  }

  /** A general register as of the current exit. */
  syncedReg(name: keyof Regs): bigint {
    return this.run.getBigUint64(kvmRun.sync_regs + kvmRegs.offsets[name], true);
  }

  /** Sets a general register for the next entry (KVM applies the synced registers before completing the exit). */
  setSyncedReg(name: keyof Regs, value: bigint): void {
    this.run.setBigUint64(kvmRun.sync_regs + kvmRegs.offsets[name], BigInt.asUintN(64, value), true);
    // Only general registers are ever written back; KVM clears the flag once it has applied them.
    this.run.setBigUint64(kvmRun.kvm_dirty_regs, DIRTY_REGS, true);
  }

  /** Segment and control registers as of the current exit. */
  syncedSregs(): Sregs {
    return kvmSregs.read(this.run, SYNCED_SREGS);
  }

  /** One control register (cr0, cr3, cr4, efer) as of the current exit, without decoding the rest. */
  syncedControl(name: 'cr0' | 'cr3' | 'cr4' | 'efer'): bigint {
    return this.run.getBigUint64(SYNCED_SREGS + kvmSregs.offsets[name], true);
  }

  /** The privilege level as of the current exit (SS's DPL, as KVM reports it). */
  syncedCpl(): number {
    return this.run.getUint8(SYNCED_SREGS + kvmSregs.offsets.ss + kvmSegment.offsets.dpl);
  }

  /** Whether the code segment is a 64-bit one (CS.L) as of the current exit. */
  syncedCodeIs64(): boolean {
    return this.run.getUint8(SYNCED_SREGS + kvmSregs.offsets.cs + kvmSegment.offsets.l) === 1;
  }

  private ioctl(name: IoctlName, arg: Uint8Array | null): number {
    return check(`ioctl(${name}) on vCPU ${this.id}`, libc().ioctlPtr(this.fd, ioctls[name], arg));
  }

  /**
   * Enters the guest and returns the exit reason (the exit is in `run`).
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

  /** Answers an MMIO read exit. */
  completeMmioRead(bytes: Uint8Array): void {
    this.runBytes.set(bytes.subarray(0, 8), kvmRun.mmio.data);
  }

  /** Answers a Xen hypercall exit: KVM puts `result` in RAX and moves past the VMCALL/VMMCALL. */
  completeXenHypercall(result: bigint): void {
    this.run.setBigUint64(kvmRun.xen.result, BigInt.asUintN(64, result), true);
  }

  /** Answers an RDMSR/WRMSR exit: fault injects #GP. */
  completeMsr(result: { fault: true } | { fault: false; value?: bigint }): void {
    this.run.setUint8(kvmRun.msr.error, result.fault ? 1 : 0);
    if (!result.fault && result.value !== undefined) this.run.setBigUint64(kvmRun.msr.data, result.value, true);
  }

  private get<F extends Record<string, FieldType>>(def: StructDef<F>, get: IoctlName): StructValue<F> {
    const buf = new Uint8Array(def.size);
    this.ioctl(get, buf);
    return def.decode(buf);
  }

  /** Read-modify-write, so callers give only the fields they change. */
  private update<F extends Record<string, FieldType>>(def: StructDef<F>, get: IoctlName, set: IoctlName, value: Partial<StructValue<F>>): void {
    const buf = new Uint8Array(def.size);
    this.ioctl(get, buf);
    def.write(new DataView(buf.buffer), 0, value);
    this.ioctl(set, buf);
  }

  getRegs(): Regs {
    return this.get(kvmRegs, 'KVM_GET_REGS');
  }

  setRegs(regs: Partial<Regs>): void {
    this.update(kvmRegs, 'KVM_GET_REGS', 'KVM_SET_REGS', regs);
  }

  getSregs(): Sregs {
    return this.get(kvmSregs, 'KVM_GET_SREGS');
  }

  setSregs(sregs: Partial<Sregs>): void {
    this.update(kvmSregs, 'KVM_GET_SREGS', 'KVM_SET_SREGS', sregs);
  }

  getMpState(): number {
    const buf = new Uint8Array(4);
    this.ioctl('KVM_GET_MP_STATE', buf);
    return new DataView(buf.buffer).getUint32(0, true);
  }

  setMpState(state: number): void {
    const buf = new Uint8Array(4);
    new DataView(buf.buffer).setUint32(0, state, true);
    this.ioctl('KVM_SET_MP_STATE', buf);
  }

  getEvents(): VcpuEvents {
    return this.get(kvmVcpuEvents, 'KVM_GET_VCPU_EVENTS');
  }

  setEvents(events: Partial<VcpuEvents>): void {
    this.update(kvmVcpuEvents, 'KVM_GET_VCPU_EVENTS', 'KVM_SET_VCPU_EVENTS', events);
  }

  /** Whether the guest had interrupts enabled (RFLAGS.IF) at the last exit. */
  get interruptsEnabled(): boolean {
    return this.run.getUint8(kvmRun.if_flag) !== 0;
  }

  setCpuid(entries: CpuidEntry[]): void {
    this.ioctl('KVM_SET_CPUID2', encodeCpuid(entries));
  }

  enableCap(cap: number, ...args: (number | bigint)[]): void {
    this.ioctl('KVM_ENABLE_CAP', kvmEnableCap.encode({ cap, args: args.map(BigInt) }));
  }

  /** KVM_XEN_VCPU_SET_ATTR: a piece of this vCPU's Xen state KVM keeps (`type` from xenVcpuAttrTypes). */
  setXenAttr(type: number, value: bigint, value2 = 0n): void {
    this.ioctl('KVM_XEN_VCPU_SET_ATTR', kvmXenVcpuAttr.encode({ type, value, value2 }));
  }

  /** KVM_XEN_VCPU_GET_ATTR: a piece of this vCPU's Xen state as KVM keeps it now. */
  getXenAttr(type: number): { value: bigint; value2: bigint } {
    const buf = kvmXenVcpuAttr.encode({ type });
    this.ioctl('KVM_XEN_VCPU_GET_ATTR', buf);
    const { value, value2 } = kvmXenVcpuAttr.decode(buf);
    return { value, value2 };
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

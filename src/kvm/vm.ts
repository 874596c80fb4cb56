// A KVM VM file descriptor.
import {
  caps, ioctls, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, kvmClockData, kvmIrqRoutingXenEvtchn, kvmXenHvmAttr, kvmXenHvmAttrEvtchn, kvmXenHvmConfig, kvmClockFlags, kvmEnableCap, kvmIrqLevel, kvmIrqRouting, kvmIrqRoutingEntry,
  kvmIrqRoutingIrqchip, kvmIrqfd, irqfdFlags, kvmMsi, kvmMsrFilter, kvmMsrFilterRange, kvmPitConfig, KVM_PIT_SPEAKER_DUMMY, kvmUserspaceMemoryRegion, msrFilter, xenHvmAttrTypes,
} from './abi.js';
import { addressOf, check, libc, SystemCallError } from './libc.js';

export interface MsrFilterRange {
  /** MSR_FILTER_READ and/or MSR_FILTER_WRITE: which accesses this range governs. */
  flags: number;
  base: number;
  /** One bit per MSR from base: 1 lets KVM handle the access, 0 sends it to user space. */
  bitmap: Uint8Array;
}

/** A GSI wired to a pin of one of KVM's in-kernel interrupt controllers (irqchips). */
export interface IrqchipRoute {
  gsi: number;
  irqchip: number;
  pin: number;
}

export class Vm {
  /** KVM_SIGNAL_MSI's argument, kept: events are signalled from a vCPU thread's hot path. */
  private readonly msi = new Uint8Array(kvmMsi.size);
  private readonly msiView = new DataView(this.msi.buffer);
  /** KVM_XEN_HVM_EVTCHN_SEND's argument, kept for the same reason. */
  private readonly xenEvent = new Uint8Array(kvmIrqRoutingXenEvtchn.size);
  private readonly xenEventView = new DataView(this.xenEvent.buffer);

  constructor(readonly fd: number) {}

  private ioctl(name: keyof typeof ioctls, arg: Uint8Array | null): number {
    return check(`ioctl(${name})`, libc().ioctlPtr(this.fd, ioctls[name], arg));
  }

  checkExtension(cap: number): number {
    return Math.max(0, libc().ioctlInt(this.fd, ioctls.KVM_CHECK_EXTENSION, cap));
  }

  createIrqchip(): void {
    this.ioctl('KVM_CREATE_IRQCHIP', null);
  }

  /** KVM's in-kernel 8254 PIT and port 0x61: it raises GSI 0, wherever the routing sends that. */
  createPit(): void {
    this.ioctl('KVM_CREATE_PIT2', kvmPitConfig.encode({ flags: KVM_PIT_SPEAKER_DUMMY }));
  }

  /** Replaces KVM's whole GSI routing table (a GSI may have several routes). */
  setGsiRouting(routes: readonly IrqchipRoute[]): void {
    const arg = new Uint8Array(kvmIrqRouting.size + routes.length * kvmIrqRoutingEntry.size);
    arg.set(kvmIrqRouting.encode({ nr: routes.length, flags: 0 }));
    routes.forEach((r, i) => {
      const u = new Uint8Array(32);
      u.set(kvmIrqRoutingIrqchip.encode({ irqchip: r.irqchip, pin: r.pin }));
      const entry = kvmIrqRoutingEntry.encode({ gsi: r.gsi, type: KVM_IRQ_ROUTING_IRQCHIP, flags: 0, pad: 0, u });
      arg.set(entry, kvmIrqRouting.size + i * kvmIrqRoutingEntry.size);
    });
    this.ioctl('KVM_SET_GSI_ROUTING', arg);
  }

  /**
   * Makes `eventfd` raise `gsi` when written, the line then held until the guest EOIs the interrupt, when
   * KVM lowers it and signals `resamplefd` (KVM_IRQFD in resample mode: a level-triggered source).
   */
  assignLevelIrqfd(eventfd: number, gsi: number, resamplefd: number): void {
    this.ioctl('KVM_IRQFD', kvmIrqfd.encode({ fd: eventfd, gsi, flags: irqfdFlags.RESAMPLE, resamplefd }));
  }

  /** Detaches `eventfd` from `gsi`; a line it held is lowered. */
  deassignIrqfd(eventfd: number, gsi: number): void {
    this.ioctl('KVM_IRQFD', kvmIrqfd.encode({ fd: eventfd, gsi, flags: irqfdFlags.DEASSIGN }));
  }

  setTssAddr(gpa: number): void {
    check('ioctl(KVM_SET_TSS_ADDR)', libc().ioctlInt(this.fd, ioctls.KVM_SET_TSS_ADDR, gpa));
  }

  setIdentityMapAddr(gpa: number): void {
    const arg = new Uint8Array(8);
    new DataView(arg.buffer).setBigUint64(0, BigInt(gpa), true);
    this.ioctl('KVM_SET_IDENTITY_MAP_ADDR', arg);
  }

  enableCap(cap: number, ...args: (number | bigint)[]): void {
    this.ioctl('KVM_ENABLE_CAP', kvmEnableCap.encode({ cap, args: args.map(BigInt) }));
  }

  /**
   * Turns on KVM's Xen support (CONFIG_KVM_XEN hosts): `flags` from xenHvmConfig. With INTERCEPT_HCALL,
   * every VMCALL/VMMCALL the guest makes exits as a Xen hypercall (KVM_EXIT_XEN) instead of being KVM's own.
   * KVM switches its Xen support on only with a hypercall-page MSR named; an MSR filter that sends that
   * MSR's writes to userspace keeps the page the VMM's to write.
   */
  configureXenHvm(flags: number, hypercallMsr: number): void {
    this.ioctl('KVM_XEN_HVM_CONFIG', kvmXenHvmConfig.encode({ flags, msr: hypercallMsr }));
  }

  /** KVM_XEN_HVM_SET_ATTR: a piece of the VM-wide Xen state KVM keeps (`type` from xenHvmAttrTypes). */
  setXenAttr(type: number, value: bigint): void {
    this.ioctl('KVM_XEN_HVM_SET_ATTR', kvmXenHvmAttr.encode({ type, value }));
  }

  /**
   * KVM_XEN_HVM_SET_ATTR of type EVTCHN: KVM serves the guest's EVTCHNOP_send on `sendPort` itself,
   * raising `deliver.port` on `deliver.vcpu` (2-level), or forgets one port or all (`flags` from xenEvtchnFlags).
   */
  setXenEventChannel(flags: number, sendPort = 0, evtchnType = 0, deliver = { port: 0, vcpu: 0 }): void {
    this.ioctl('KVM_XEN_HVM_SET_ATTR', kvmXenHvmAttrEvtchn.encode({
      type: xenHvmAttrTypes.EVTCHN, send_port: sendPort, evtchn_type: evtchnType, flags,
      deliver_port: deliver.port, deliver_vcpu: deliver.vcpu, deliver_priority: KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL,
    }));
  }

  /**
   * KVM_XEN_HVM_EVTCHN_SEND: KVM raises `port` for `vcpu` in the 2-level bitmaps as a guest's send
   * would, injecting the vCPU's upcall vector and waking a vCPU polling in KVM for it. False where KVM
   * refused it (no vcpu_info or shared_info it can reach): the caller delivers it itself.
   */
  sendXenEvent(port: number, vcpu: number): boolean {
    this.xenEventView.setUint32(kvmIrqRoutingXenEvtchn.offsets.port, port, true);
    this.xenEventView.setUint32(kvmIrqRoutingXenEvtchn.offsets.vcpu, vcpu, true);
    this.xenEventView.setUint32(kvmIrqRoutingXenEvtchn.offsets.priority, KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, true);
    try {
      this.ioctl('KVM_XEN_HVM_EVTCHN_SEND', this.xenEvent);
      return true;
    } catch (e) {
      if (e instanceof SystemCallError) return false;
      throw e;
    }
  }

  /** Maps host memory at a guest-physical range; size 0 deletes the slot. */
  setUserMemoryRegion(slot: number, gpa: number, size: number, hostAddress: bigint, flags = 0): void {
    this.ioctl(
      'KVM_SET_USER_MEMORY_REGION',
      kvmUserspaceMemoryRegion.encode({ slot, flags, guest_phys_addr: BigInt(gpa), memory_size: BigInt(size), userspace_addr: hostAddress }),
    );
  }

  createVcpu(id: number): number {
    return check('ioctl(KVM_CREATE_VCPU)', libc().ioctlInt(this.fd, ioctls.KVM_CREATE_VCPU, id));
  }

  /** An MSI at `address` (below 2^53, as every x86 MSI address is) with `data`; KVM's count of CPUs that took it. */
  signalMsi(address: number, data: number): number {
    this.msiView.setUint32(kvmMsi.offsets.address_lo, address % 2 ** 32, true);
    this.msiView.setUint32(kvmMsi.offsets.address_hi, Math.floor(address / 2 ** 32), true);
    this.msiView.setUint32(kvmMsi.offsets.data, data, true);
    return this.ioctl('KVM_SIGNAL_MSI', this.msi);
  }

  irqLine(irq: number, level: boolean): void {
    this.ioctl('KVM_IRQ_LINE', kvmIrqLevel.encode({ irq, level: level ? 1 : 0 }));
  }

  setMsrFilter(defaultAction: number, ranges: MsrFilterRange[]): void {
    if (ranges.length > msrFilter.MAX_RANGES) throw new Error(`at most ${msrFilter.MAX_RANGES} MSR filter ranges`);
    const buf = new Uint8Array(kvmMsrFilter.size);
    const view = new DataView(buf.buffer);
    kvmMsrFilter.write(view, 0, { flags: defaultAction });
    ranges.forEach((r, i) => {
      if (r.bitmap.length > msrFilter.MAX_BITMAP_BYTES) throw new Error(`MSR filter bitmap over ${msrFilter.MAX_BITMAP_BYTES} bytes`);
      kvmMsrFilterRange.write(view, kvmMsrFilter.offsets.ranges + i * kvmMsrFilterRange.size, {
        flags: r.flags,
        nmsrs: r.bitmap.length * 8,
        base: r.base,
        bitmap: addressOf(r.bitmap), // read by KVM during the ioctl only
      });
    });
    this.ioctl('KVM_X86_SET_MSR_FILTER', buf);
  }

  /** KVM_GET_CLOCK: the VM's kvmclock and its flags (kvmClockFlags.TSC_STABLE: KVM keeps every vCPU's TSC in step). */
  getClock(): { clock: bigint; flags: number } {
    const buf = new Uint8Array(kvmClockData.size);
    this.ioctl('KVM_GET_CLOCK', buf);
    const { clock, flags } = kvmClockData.decode(buf);
    return { clock, flags };
  }

  /**
   * KVM_SET_CLOCK: sets the VM's kvmclock. KVM also decides again, with the vCPUs it has now,
   * whether it keeps their TSCs in step (its master clock), which it otherwise first does when a vCPU runs.
   */
  setClock(clock: bigint): void {
    this.ioctl('KVM_SET_CLOCK', kvmClockData.encode({ clock }));
  }

  /**
   * Sets kvmclock to follow `now` (nanoseconds), never behind it. With KVM_CLOCK_REALTIME (Linux 5.16+)
   * KVM adds the real time that passed since a reading taken first, so the ioctl's own latency does
   * not count. Older kernels take only the value: a first set measures how long the ioctl takes, and
   * the second sets that much ahead. `withRealtime` says which way (default: what KVM_CAP_ADJUST_CLOCK offers).
   */
  setClockFollowing(now: () => bigint, realtimeNs: () => bigint, withRealtime = (this.checkExtension(caps.KVM_CAP_ADJUST_CLOCK) & kvmClockFlags.REALTIME) !== 0): void {
    if (withRealtime) {
      const realtime = realtimeNs();
      this.ioctl('KVM_SET_CLOCK', kvmClockData.encode({ clock: now(), realtime, flags: kvmClockFlags.REALTIME }));
      return;
    }
    const before = now();
    this.setClock(before);
    const took = now() - before;
    this.setClock(now() + took);
  }

  /**
   * Whether KVM keeps every vCPU's TSC in step: its master clock is in use (a TSC clocksource
   * on the host, every vCPU's TSC written in step), so a TSC read on one vCPU is never behind
   * one read earlier on another.
   */
  tscStable(): boolean {
    return (this.getClock().flags & kvmClockFlags.TSC_STABLE) !== 0;
  }

  close(): void {
    libc().close(this.fd);
  }
}

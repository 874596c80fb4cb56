// The HVM callback's line (HVM_PARAM_CALLBACK_IRQ of type GSI or PCI INTx):
// Xen holds an IOAPIC line high while vCPU 0's evtchn_upcall_pending is set,
// and looks again at every VM entry. Here every IOAPIC pin a callback may name
// is a KVM irqfd in resample mode: a write to its eventfd raises the line, KVM
// holds it until the guest EOIs the interrupt, then lowers it and signals one
// resample eventfd all the pins share, and the main thread raises the line
// again if upcall_pending is still set. (A line held with KVM_IRQ_LINE until
// vCPU 0's thread next ran made KVM deliver the interrupt anew at every EOI
// meanwhile: thousands of interrupts for one event.) The pins that devices
// drive too (the UART's, the RTC's, the SCI's) signal the resample eventfd at
// their own EOIs as well; the main thread then finds nothing owed.
import { closeSync, read } from 'node:fs';
import { KVM_IOAPIC_NUM_PINS } from '../kvm/abi.js';
import { check, EFD_CLOEXEC, libc, signalEventFd } from '../kvm/libc.js';
import type { Vm } from '../kvm/vm.js';
import { gsiOfIoapicPin } from './layout.js';

const newEventfd = (what: string) => check(`eventfd (${what})`, libc().eventfd(0, EFD_CLOEXEC));

/** Raises callback lines from any thread: each pin's eventfd, from the SharedArrayBuffer the main thread filled. */
export class CallbackLineRaiser {
  private readonly fds: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.fds = new Int32Array(buffer);
  }

  /** Raises IOAPIC pin `pin` (1–23) until the guest EOIs it. */
  raise(pin: number): void {
    signalEventFd(Atomics.load(this.fds, pin));
  }
}

/** The lines themselves, owned by the main thread. */
export class CallbackLines {
  readonly buffer = new SharedArrayBuffer(KVM_IOAPIC_NUM_PINS * 4);
  private readonly fds = new Int32Array(this.buffer);
  private readonly resampleFd = newEventfd('callback line resample');
  private watching = false;
  private closed = false;

  constructor(private readonly vm: Vm) {
    for (let pin = 1; pin < KVM_IOAPIC_NUM_PINS; pin++) this.assign(pin);
  }

  private assign(pin: number): void {
    const fd = newEventfd(`callback line ${pin}`);
    this.vm.assignLevelIrqfd(fd, gsiOfIoapicPin(pin), this.resampleFd);
    Atomics.store(this.fds, pin, fd);
  }

  /**
   * Lowers a line the guest has not EOI'd (its callback moved elsewhere): KVM drops the level of an irqfd
   * it detaches. The same eventfd is attached again, so a thread raising the line meanwhile writes to an
   * open file, and KVM raises the line for that write when it attaches it.
   */
  lower(pin: number): void {
    const fd = Atomics.load(this.fds, pin);
    this.vm.deassignIrqfd(fd, gsiOfIoapicPin(pin));
    this.vm.assignLevelIrqfd(fd, gsiOfIoapicPin(pin), this.resampleFd);
  }

  /** Calls `lowered` on the main thread each time the guest has EOI'd a line (and KVM lowered it) since the last call. */
  watch(lowered: () => void): void {
    if (this.watching) throw new Error('callback lines are watched once');
    this.watching = true;
    const count = new Uint8Array(8);
    const next = () =>
      // A blocking read of the eventfd, in libuv's thread pool.
      read(this.resampleFd, count, 0, 8, null, (err) => {
        if (this.closed) return closeSync(this.resampleFd);
        if (err) throw err;
        lowered();
        next();
      });
    next();
  }

  /** Detaches every line, once no thread raises them any more; the watch's pending read is ended by one last signal. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (let pin = 1; pin < KVM_IOAPIC_NUM_PINS; pin++) {
      const fd = Atomics.exchange(this.fds, pin, 0);
      this.vm.deassignIrqfd(fd, gsiOfIoapicPin(pin));
      closeSync(fd);
    }
    if (this.watching) signalEventFd(this.resampleFd);
    else closeSync(this.resampleFd);
  }
}

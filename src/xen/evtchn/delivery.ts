// Event delivery for one thread, whichever ABI the guest chose: the 2-level
// bitmaps in shared_info until its first EVTCHNOP_init_control, the FIFO
// queues after. Every delivery runs under the port table's lock, so a switch
// of ABI or a change of binding never meets a delivery half done.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { DomainState } from '../domain-state.js';
import { Fifo } from './fifo.js';
import type { PortTable } from './ports.js';
import { TwoLevel, type UpcallSink } from './two-level.js';

/** KVM's side of delivery while it raises the domain's events. */
export interface KvmEvents {
  /** Has KVM raise a 2-level event; false where KVM refused it. */
  send(port: number, vcpu: number): boolean;
  /** Brings every vCPU out of KVM_RUN, ending any poll KVM serves: a port turned pending without KVM. */
  kickPollers(): void;
}

export class EventDelivery {
  readonly twoLevel: TwoLevel;
  readonly fifo: Fifo;

  constructor(
    memory: GuestMemory,
    private readonly state: DomainState,
    readonly ports: PortTable,
    upcall: UpcallSink,
    private readonly wakePollers: () => void = () => {},
    /** While KVM raises the domain's events (the `evtchn` fast path): what hands it one, and what wakes its pollers. */
    private readonly kvm: KvmEvents = { send: () => false, kickPollers: () => {} },
  ) {
    this.twoLevel = new TwoLevel(memory, state, upcall, wakePollers);
    this.fifo = new Fifo(memory, ports, (vcpu) => this.twoLevel.markEventsPending(vcpu), wakePollers);
  }

  private get abi(): TwoLevel | Fifo {
    return this.ports.fifoActive ? this.fifo : this.twoLevel;
  }

  /** Raises the port's event for `vcpu`. */
  setPending(port: number, vcpu: number): void {
    this.ports.locked(() => {
      if (this.ports.fifoActive || !this.state.kvmDeliversEvents) return this.abi.setPending(port, vcpu);
      if (this.state.kvmRaisesEventsFor(vcpu) && this.kvm.send(port, vcpu)) return this.wakePollers();
      // xenkvm raises it: a vCPU polling in KVM, which wakes only for KVM's own events, must look again.
      this.abi.setPending(port, vcpu);
      this.kvm.kickPollers();
    });
  }

  clearPending(port: number): void {
    this.ports.locked(() => this.abi.clearPending(port));
  }

  /** EVTCHNOP_unmask: an event pending on a masked port is raised now. */
  unmask(port: number, vcpu: number): void {
    this.ports.locked(() => this.abi.unmask(port, vcpu));
  }

  isPending(port: number): boolean {
    return this.abi.isPending(port);
  }

  isMasked(port: number): boolean {
    return this.abi.isMasked(port);
  }

  /** A free port that may not be handed out yet (FIFO: still linked on a queue). */
  isBusy(port: number): boolean {
    return this.ports.fifoActive && this.fifo.isBusy(port);
  }

  markEventsPending(vcpu: number): void {
    this.twoLevel.markEventsPending(vcpu);
  }

  enableDeliveryAndCheck(vcpu: number): boolean {
    return this.twoLevel.enableDeliveryAndCheck(vcpu);
  }

  upcallPending(vcpu: number): boolean {
    return this.twoLevel.upcallPending(vcpu);
  }
}

// Injecting the event upcall into a vCPU, by the mechanism the guest chose:
// its per-vCPU vector (HVMOP_set_evtchn_upcall_vector), a LAPIC fixed
// interrupt it EOIs; or else the HVM-wide callback vector
// (HVM_PARAM_CALLBACK_IRQ type vector), which never touches the LAPIC: the
// target vCPU's own thread injects it directly when the guest can take it; or
// a level-triggered line for vCPU 0 (type GSI, or PCI INTx, whose GSI the
// machine's interrupt routing gives), raised until the guest EOIs it.
import { KVM_IOAPIC_NUM_PINS } from '../../kvm/abi.js';
import { decodeCallbackIrq, HVM_PARAM, type CallbackIrq } from '../abi/hvm.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { DomainState } from '../domain-state.js';
import { EventDelivery } from './delivery.js';
import type { PortTable } from './ports.js';

export interface UpcallHost {
  /** A fixed, edge-triggered MSI at a LAPIC; false when the LAPIC did not take it (software-disabled). */
  signalMsi(apicId: number, vector: number): boolean;
  /** Brings a vCPU out of KVM_RUN so its thread looks at what it owes the guest. */
  kick(vcpu: number): void;
  /** Wakes a vCPU thread sleeping in SCHEDOP_block or SCHEDOP_poll. */
  wake(vcpu: number): void;
  /** Raises IOAPIC pin `gsi`, held until the guest EOIs the interrupt (a level-triggered source). */
  raiseGsi(gsi: number): void;
  /** The GSI INTx `pin` (0 = INTA) of PCI device `slot` on bus 0 is wired to. */
  intxGsi(slot: number, pin: number): number;
  /** Has KVM raise a 2-level event (the `evtchn` fast path); false where KVM refused it. */
  kvmSend(port: number, vcpu: number): boolean;
}

/** The line a GSI or PCI INTx callback raises, or undefined (another kind, or a GSI the IOAPIC has no pin for). */
export function callbackGsi(callback: CallbackIrq, host: Pick<UpcallHost, 'intxGsi'>): number | undefined {
  if (callback.type === 'gsi') return callback.gsi > 0 && callback.gsi < KVM_IOAPIC_NUM_PINS ? callback.gsi : undefined;
  // Xen takes the device from the low bits of devfn and bus alike; the swizzle needs only the slot's low bits.
  if (callback.type === 'pci_intx') return host.intxGsi(callback.devfn >>> 3, callback.intx);
  return undefined;
}

/**
 * The line vCPU 0's upcall goes by, or undefined: a GSI or INTx callback, unless vCPU 0 has its own
 * upcall vector, which Xen prefers.
 */
export function vcpu0CallbackLine(state: DomainState, host: Pick<UpcallHost, 'intxGsi'>): number | undefined {
  if (state.upcallVector(0) !== 0) return undefined;
  return callbackGsi(decodeCallbackIrq(state.param(HVM_PARAM.CALLBACK_IRQ)), host);
}

export function makeUpcall(state: DomainState, host: UpcallHost): (vcpu: number) => void {
  return (vcpu) => {
    host.wake(vcpu);
    const vector = state.upcallVector(vcpu);
    if (vector !== 0) {
      if (host.signalMsi(vcpu, vector)) {
        // News for the vCPU's thread, which says (out of KVM_RUN) whether KVM may now raise its events.
        if (state.noteUpcallTaken(vcpu, vector)) host.kick(vcpu);
        return;
      }
      // KVM drops an MSI at a LAPIC the guest has not enabled yet, where Xen's vLAPIC holds it
      // pending (Linux sets its vector before it enables its LAPIC): the vCPU's thread retries.
      state.setUpcallOwed(vcpu, true);
      host.kick(vcpu);
      return;
    }
    if (callbackVector(state) !== undefined) {
      state.setUpcallOwed(vcpu, true);
      host.kick(vcpu);
      return;
    }
    if (vcpu !== 0) return;
    // As Xen: a GSI or INTx callback is a level-triggered line for vCPU 0's upcall_pending, raised again
    // after each EOI while it stays set (the main thread's CallbackLines).
    const gsi = vcpu0CallbackLine(state, host);
    if (gsi !== undefined && state.claimCallbackGsi(gsi)) host.raiseGsi(gsi);
  };
}

/** Event delivery for a thread: upcalls through `host`, and pollers woken when a port turns pending. */
export function makeEventDelivery(memory: GuestMemory, state: DomainState, ports: PortTable, host: UpcallHost): EventDelivery {
  const wakePollers = () => {
    state.notePortTurnedPending();
    if (state.pollers > 0) for (let v = 0; v < state.vcpuCount; v++) host.wake(v);
  };
  const kickPollers = () => {
    for (let v = 0; v < state.vcpuCount; v++) host.kick(v);
  };
  return new EventDelivery(memory, state, ports, makeUpcall(state, host), wakePollers, { send: host.kvmSend, kickPollers });
}

/** The callback vector, if the guest chose one. */
export function callbackVector(state: DomainState): number | undefined {
  const callback = decodeCallbackIrq(state.param(HVM_PARAM.CALLBACK_IRQ));
  return callback.type === 'vector' ? callback.vector : undefined;
}

// Injecting the event upcall into a vCPU, by the mechanism the guest chose:
// its per-vCPU vector (HVMOP_set_evtchn_upcall_vector), a LAPIC fixed
// interrupt it EOIs; or else the HVM-wide callback vector
// (HVM_PARAM_CALLBACK_IRQ type vector), which never touches the LAPIC: the
// target vCPU's own thread injects it directly when the guest can take it.
import { KVM_IOAPIC_NUM_PINS } from '../../kvm/abi.js';
import { decodeCallbackIrq, HVM_PARAM } from '../abi/hvm.js';
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
  /** Drives a GSI of the in-kernel IOAPIC. */
  setGsi(gsi: number, level: boolean): void;
}

export function makeUpcall(state: DomainState, host: UpcallHost): (vcpu: number) => void {
  return (vcpu) => {
    host.wake(vcpu);
    const vector = state.upcallVector(vcpu);
    if (vector !== 0) {
      if (host.signalMsi(vcpu, vector)) return;
      // KVM drops an MSI at a LAPIC the guest has not enabled yet, where Xen's vLAPIC holds it
      // pending (Linux sets its vector before it enables its LAPIC): the vCPU's thread retries.
      state.setUpcallOwed(vcpu, true);
      host.kick(vcpu);
      return;
    }
    const callback = decodeCallbackIrq(state.param(HVM_PARAM.CALLBACK_IRQ));
    if (callback.type === 'vector') {
      state.setUpcallOwed(vcpu, true);
      host.kick(vcpu);
    } else if (callback.type === 'gsi' && vcpu === 0 && callback.gsi > 0 && callback.gsi < KVM_IOAPIC_NUM_PINS) {
      // As Xen: a GSI callback is a level-triggered line for vCPU 0's upcall_pending; vCPU 0's thread lowers it.
      if (state.claimCallbackGsi(callback.gsi)) host.setGsi(callback.gsi, true);
      host.kick(0);
    }
    // A PCI INTx callback never gets here: HVMOP_set_param refuses it, xenkvm having no PCI bus.
  };
}

/** Event delivery for a thread: upcalls through `host`, and pollers woken when a port turns pending. */
export function makeEventDelivery(memory: GuestMemory, state: DomainState, ports: PortTable, host: UpcallHost): EventDelivery {
  const wakePollers = () => {
    state.notePortTurnedPending();
    if (state.pollers > 0) for (let v = 0; v < state.vcpuCount; v++) host.wake(v);
  };
  return new EventDelivery(memory, state, ports, makeUpcall(state, host), wakePollers);
}

/** The callback vector, if the guest chose one. */
export function callbackVector(state: DomainState): number | undefined {
  const callback = decodeCallbackIrq(state.param(HVM_PARAM.CALLBACK_IRQ));
  return callback.type === 'vector' ? callback.vector : undefined;
}

// Injecting the event upcall into a vCPU, by the mechanism the guest chose:
// its per-vCPU vector (HVMOP_set_evtchn_upcall_vector), a LAPIC fixed
// interrupt it EOIs; or else the HVM-wide callback vector
// (HVM_PARAM_CALLBACK_IRQ type vector), which never touches the LAPIC: the
// target vCPU's own thread injects it directly when the guest can take it.
import { decodeCallbackIrq, HVM_PARAM } from '../abi/hvm.js';
import type { DomainState } from '../domain-state.js';

export interface UpcallHost {
  /** A fixed, edge-triggered MSI at a LAPIC. */
  signalMsi(apicId: number, vector: number): void;
  /** Brings a vCPU out of KVM_RUN so its thread looks at what it owes the guest. */
  kick(vcpu: number): void;
}

export function makeUpcall(state: DomainState, host: UpcallHost): (vcpu: number) => void {
  return (vcpu) => {
    const vector = state.upcallVector(vcpu);
    if (vector !== 0) return host.signalMsi(vcpu, vector);
    const callback = decodeCallbackIrq(state.param(HVM_PARAM.CALLBACK_IRQ));
    if (callback.type === 'vector') {
      state.setCallbackPending(vcpu, true);
      host.kick(vcpu);
    }
    // GSI and PCI INTx callbacks are not wired to the IOAPIC: the guest sees the event only when it polls.
  };
}

/** The callback vector, if the guest chose one. */
export function callbackVector(state: DomainState): number | undefined {
  const callback = decodeCallbackIrq(state.param(HVM_PARAM.CALLBACK_IRQ));
  return callback.type === 'vector' ? callback.vector : undefined;
}

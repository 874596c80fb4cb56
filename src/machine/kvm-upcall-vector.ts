// A vCPU's upcall vector as KVM injects it with the events it raises itself
// (the `timer` and `evtchn` fast paths; KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR).
// Told on the vCPU's thread before every entry where it changed, and
// published, so the main thread hands KVM a vCPU's events only once its
// thread has told it.
import { xenVcpuAttrTypes } from '../kvm/abi.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { DomainState } from '../xen/domain-state.js';

export class KvmUpcallVector {
  /** The vector KVM was last told (0: none). */
  told = 0;

  constructor(
    private readonly vcpu: Pick<Vcpu, 'setXenAttr'>,
    private readonly id: number,
    private readonly state: DomainState,
  ) {}

  /** Tells KVM the vector where it changed. */
  sync(): void {
    const vector = this.state.upcallVector(this.id);
    if (vector === this.told) return;
    this.vcpu.setXenAttr(xenVcpuAttrTypes.UPCALL_VECTOR, BigInt(vector));
    this.told = vector;
    this.state.setKvmUpcallVector(this.id, vector);
  }
}

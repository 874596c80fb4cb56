// The VM-wide half of KVM's event delivery (the `timer` fast path): KVM sets
// the events it raises itself in shared_info, so it holds the page by frame
// (KVM_XEN_ATTR_TYPE_SHARED_INFO) in the layout the domain latched
// (KVM_XEN_ATTR_TYPE_LONG_MODE). Kept in step on the main thread after every
// hypercall it serves, while every vCPU is still held outside KVM_RUN: only
// those calls move, drop or re-lay shared_info, and KVM delivers only as a vCPU
// enters or from its timers, which fire into a vCPU's next entry.
import { KVM_XEN_NO_GPA, xenHvmAttrTypes } from '../kvm/abi.js';
import type { Vm } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Abi } from '../xen/abi/layout.js';
import type { DomainState } from '../xen/domain-state.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';

export class KvmSharedInfo {
  /** What KVM was last told: the frame (undefined: none) and the layout. */
  private frameTold: number | undefined;
  private abiTold: Abi | undefined;

  constructor(
    private readonly vm: Pick<Vm, 'setXenAttr'>,
    private readonly memory: GuestMemory,
    private readonly state: DomainState,
    /** Writes xenkvm's wallclock into shared_info again. */
    private readonly rewriteWallclock: () => void,
  ) {}

  /** Tells KVM where shared_info is and its layout, where either changed. */
  sync(): void {
    const abi = this.state.sharedInfoAbi;
    const frame = this.memory.placement.frameOf(SHARED_INFO_PAGE);
    // The layout first: KVM writes to the page in the layout it has then.
    if (abi !== this.abiTold) {
      this.vm.setXenAttr(xenHvmAttrTypes.LONG_MODE, abi === 'native' ? 1n : 0n);
      this.abiTold = abi;
    }
    if (frame === this.frameTold) return;
    this.vm.setXenAttr(xenHvmAttrTypes.SHARED_INFO, frame === undefined ? KVM_XEN_NO_GPA : BigInt(frame));
    this.frameTold = frame;
    // KVM wrote its own wallclock as it took the page (real time less kvmclock now, a few hundred ns
    // off): the domain's stays what it was, as on Xen, before any vCPU runs again.
    if (frame !== undefined) this.rewriteWallclock();
  }
}

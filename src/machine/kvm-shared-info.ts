// The VM-wide half of KVM's event delivery (the `timer` fast path): KVM sets
// the events it raises itself in shared_info, so it holds the page by frame
// (KVM_XEN_ATTR_TYPE_SHARED_INFO) in the layout the domain latched
// (KVM_XEN_ATTR_TYPE_LONG_MODE). Kept in step on the main thread after every
// hypercall it serves, while every vCPU is still held outside KVM_RUN: only
// those calls move, drop or re-lay shared_info, and KVM delivers only as a vCPU
// enters or from its timers, which fire into a vCPU's next entry. Where KVM
// takes the page by host address (the `shinfo-hva` fast path), it is told only
// when the guest maps or drops the page: a move leaves the overlay where it is.
import { KVM_XEN_NO_GPA, xenHvmAttrTypes } from '../kvm/abi.js';
import type { Vm } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Abi } from '../xen/abi/layout.js';
import type { DomainState } from '../xen/domain-state.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';

export class KvmSharedInfo {
  /** What KVM was last told: the frame (undefined: none; by host address, the frame the guest had then) and the layout. */
  private frameTold: number | undefined;
  private abiTold: Abi | undefined;

  constructor(
    private readonly vm: Pick<Vm, 'setXenAttr'>,
    private readonly memory: GuestMemory,
    private readonly state: DomainState,
    /** Writes xenkvm's wallclock into shared_info again. */
    private readonly rewriteWallclock: () => void,
    /** The page's host address, in the mapping KVM's memory slots use, where KVM takes it by host address. */
    private readonly hva?: bigint,
  ) {}

  /** Tells KVM where shared_info is and its layout, where either changed. */
  sync(): void {
    const abi = this.state.sharedInfoAbi;
    const frame = this.memory.placement.frameOf(SHARED_INFO_PAGE);
    // KVM writes its own wallclock (real time less kvmclock now, a few hundred ns off) as it takes the
    // page, and (Linux 6.12's) again in the new layout when told one while holding it: the domain's
    // is written back after, as it stays on Xen, before any vCPU runs again.
    let wallclockOverwritten = false;
    // The layout first: KVM writes to the page in the layout it has then.
    if (abi !== this.abiTold) {
      this.vm.setXenAttr(xenHvmAttrTypes.LONG_MODE, abi === 'native' ? 1n : 0n);
      this.abiTold = abi;
      wallclockOverwritten = this.frameTold !== undefined;
    }
    if (this.tellFrame(frame) && frame !== undefined) wallclockOverwritten = true;
    if (wallclockOverwritten) this.rewriteWallclock();
  }

  /** Tells KVM the page's frame, where that is news to it; whether it was. */
  private tellFrame(frame: number | undefined): boolean {
    if (this.hva !== undefined) {
      // By host address, only a map or a drop is news.
      if ((frame === undefined) === (this.frameTold === undefined)) return false;
      this.vm.setXenAttr(xenHvmAttrTypes.SHARED_INFO_HVA, frame === undefined ? 0n : this.hva);
    } else {
      if (frame === this.frameTold) return false;
      this.vm.setXenAttr(xenHvmAttrTypes.SHARED_INFO, frame === undefined ? KVM_XEN_NO_GPA : BigInt(frame));
    }
    this.frameTold = frame;
    return true;
  }
}

// The `time` fast path on a vCPU's thread: KVM writes the vCPU's Xen time
// records (vcpu_time_info) from its kvmclock, in its vcpu_info (registered, or
// its slot in shared_info) and its secondary time area, and xenkvm tells it
// where those are. KVM writes them only as the vCPU enters, on this thread, so
// telling it here before every entry means it never writes to a place the guest
// has left (a frame shared_info moved away from is RAM again) and never misses
// a new one, whichever thread moved it. Where KVM takes shared_info by host
// address (the `shinfo-hva` fast path), a vcpu_info in its slot there is given
// by host address too, which no move of the page changes.
import { KVM_XEN_NO_GPA, xenVcpuAttrTypes } from '../kvm/abi.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { PAGE_SIZE, type GuestMemory } from '../memory/guest-memory.js';
import { sharedInfoLayout, vcpuInfo, vcpuTimeInfo } from '../xen/abi/shared-info.js';
import { XEN_LEGACY_MAX_VCPUS } from '../xen/abi/xen.js';
import { AreaKind, type DomainState } from '../xen/domain-state.js';
import { SHARED_INFO_PAGE, VCPU_INFO_TIME_OFFSET } from '../xen/shared-info.js';
import type { PvclockParams } from '../xen/time.js';

const TIME_INFO = vcpuTimeInfo.native;

/** Where a vcpu_info is: at a guest-physical address, or in shared_info at an offset, given to KVM by host address. */
type VcpuInfoPlace = { gpa: number } | { sharedInfoOffset: number; hva: bigint };

export class KvmTimeRecords {
  /** The vcpu_info and time area KVM was last given (undefined: none). */
  private vcpuInfoTold: VcpuInfoPlace | undefined;
  private timeAreaTold: number | undefined;
  /** The time area as registered, and the registration's sequence count when it was read. */
  private timeArea: number | undefined;
  private timeAreaSequence = -1n;

  constructor(
    private readonly vcpu: Pick<Vcpu, 'setXenAttr'>,
    private readonly id: number,
    private readonly state: DomainState,
    private readonly memory: GuestMemory,
    /** shared_info's host address, in the mapping KVM's memory slots use, where KVM takes it by host address. */
    private readonly sharedInfoHva?: bigint,
  ) {}

  /**
   * Where the vCPU's vcpu_info is now: registered, else its slot in shared_info where the guest mapped it.
   * A place no memory backs (a frame the guest gave back) is none: KVM refuses it, and a write there is lost in Xen too.
   */
  private vcpuInfoPlace(): VcpuInfoPlace | undefined {
    const registered = this.state.vcpuInfoAddress(this.id);
    if (registered !== undefined) return this.backed(registered);
    const gfn = this.memory.placement.frameOf(SHARED_INFO_PAGE);
    if (this.id >= XEN_LEGACY_MAX_VCPUS || gfn === undefined) return undefined;
    const offset = sharedInfoLayout[this.state.sharedInfoAbi].vcpuInfo(this.id);
    if (this.sharedInfoHva !== undefined) return { sharedInfoOffset: offset, hva: this.sharedInfoHva + BigInt(offset) };
    return this.backed(gfn * PAGE_SIZE + offset);
  }

  private backed(gpa: number): VcpuInfoPlace | undefined {
    return this.memory.isBacked(gpa, vcpuInfo.native.size) ? { gpa } : undefined;
  }

  /** Tells KVM where the records are, where that changed since it was last told. Before each entry. */
  sync(): void {
    const sequence = this.state.areaSequence(this.id, AreaKind.Time);
    if (sequence !== this.timeAreaSequence) {
      this.timeAreaSequence = sequence;
      // Registration refuses a time area across pages where KVM writes it: KVM holds one within a page.
      const pieces = this.state.area(this.id, AreaKind.Time)?.pieces;
      this.timeArea = pieces?.length === 1 ? pieces[0].gpa : undefined;
    }
    this.tellVcpuInfo(this.vcpuInfoPlace());
    const timeArea = this.timeArea !== undefined && this.memory.isBacked(this.timeArea, TIME_INFO.size) ? this.timeArea : undefined;
    if (timeArea !== this.timeAreaTold) this.vcpu.setXenAttr(xenVcpuAttrTypes.VCPU_TIME_INFO, timeArea === undefined ? KVM_XEN_NO_GPA : BigInt(timeArea));
    this.timeAreaTold = timeArea;
  }

  private tellVcpuInfo(place: VcpuInfoPlace | undefined): void {
    const told = this.vcpuInfoTold;
    if (place === undefined ? told === undefined : told !== undefined && samePlace(place, told)) return;
    if (place === undefined) this.vcpu.setXenAttr(xenVcpuAttrTypes.VCPU_INFO, KVM_XEN_NO_GPA);
    else if ('gpa' in place) this.vcpu.setXenAttr(xenVcpuAttrTypes.VCPU_INFO, BigInt(place.gpa));
    else this.vcpu.setXenAttr(xenVcpuAttrTypes.VCPU_INFO_HVA, place.hva);
    this.vcpuInfoTold = place;
  }

  /** Whether KVM holds the vCPU's vcpu_info now. */
  get holdsVcpuInfo(): boolean {
    return this.vcpuInfoTold !== undefined;
  }

  /**
   * The record KVM last wrote for this vCPU, which its guest has been reading since it last entered;
   * undefined where KVM holds none or has not written one yet. Read on this thread, out of KVM_RUN,
   * so KVM is not writing it meanwhile.
   */
  current(): PvclockParams | undefined {
    const told = this.vcpuInfoTold;
    let bytes: Uint8Array;
    if (told !== undefined && 'hva' in told) {
      const at = told.sharedInfoOffset + VCPU_INFO_TIME_OFFSET;
      bytes = this.memory.overlayPage(SHARED_INFO_PAGE).subarray(at, at + TIME_INFO.size);
    } else {
      const gpa = told !== undefined ? told.gpa + VCPU_INFO_TIME_OFFSET : this.timeAreaTold;
      if (gpa === undefined || !this.memory.isBacked(gpa, TIME_INFO.size)) return undefined;
      bytes = this.memory.read(gpa, TIME_INFO.size);
    }
    const r = TIME_INFO.decode(bytes);
    if (r.version === 0 || r.tsc_to_system_mul === 0) return undefined;
    return { tscTimestamp: r.tsc_timestamp, systemTime: r.system_time, mul: r.tsc_to_system_mul, shift: r.tsc_shift };
  }
}

function samePlace(a: VcpuInfoPlace, b: VcpuInfoPlace): boolean {
  return 'gpa' in a ? 'gpa' in b && a.gpa === b.gpa : 'hva' in b && a.hva === b.hva;
}

// The `time` fast path on a vCPU's thread: KVM writes the vCPU's Xen time
// records (vcpu_time_info) from its kvmclock, in its vcpu_info (registered, or
// its slot in shared_info) and its secondary time area, and xenkvm tells it
// where those are. KVM writes them only as the vCPU enters, on this thread, so
// telling it here before every entry means it never writes to a place the guest
// has left (a frame shared_info moved away from is RAM again) and never misses
// a new one, whichever thread moved it.
import { KVM_XEN_NO_GPA, xenVcpuAttrTypes } from '../kvm/abi.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { PAGE_SIZE, type GuestMemory } from '../memory/guest-memory.js';
import { sharedInfoLayout, vcpuInfo, vcpuTimeInfo } from '../xen/abi/shared-info.js';
import { XEN_LEGACY_MAX_VCPUS } from '../xen/abi/xen.js';
import { AreaKind, type DomainState } from '../xen/domain-state.js';
import { SHARED_INFO_PAGE, VCPU_INFO_TIME_OFFSET } from '../xen/shared-info.js';
import type { PvclockParams } from '../xen/time.js';

const TIME_INFO = vcpuTimeInfo.native;

export class KvmTimeRecords {
  /** The vcpu_info and time area addresses KVM was last given (undefined: none). */
  private vcpuInfoTold: number | undefined;
  private timeAreaTold: number | undefined;
  /** The time area as registered, and the registration's sequence count when it was read. */
  private timeArea: number | undefined;
  private timeAreaSequence = -1n;

  constructor(
    private readonly vcpu: Pick<Vcpu, 'setXenAttr'>,
    private readonly id: number,
    private readonly state: DomainState,
    private readonly memory: GuestMemory,
  ) {}

  /** Where the vCPU's vcpu_info is now: registered, else its slot in shared_info where the guest mapped it. */
  private vcpuInfoGpa(): number | undefined {
    const registered = this.state.vcpuInfoAddress(this.id);
    if (registered !== undefined || this.id >= XEN_LEGACY_MAX_VCPUS) return registered;
    const gfn = this.memory.placement.frameOf(SHARED_INFO_PAGE);
    return gfn === undefined ? undefined : gfn * PAGE_SIZE + sharedInfoLayout[this.state.sharedInfoAbi].vcpuInfo(this.id);
  }

  /**
   * Tells KVM where the records are, where that changed since it was last told. Before each entry. A
   * place no memory backs (a frame the guest gave back) is none: KVM refuses it, and a write there is lost in Xen too.
   */
  sync(): void {
    const sequence = this.state.areaSequence(this.id, AreaKind.Time);
    if (sequence !== this.timeAreaSequence) {
      this.timeAreaSequence = sequence;
      // Registration refuses a time area across pages where KVM writes it: KVM holds one within a page.
      const pieces = this.state.area(this.id, AreaKind.Time)?.pieces;
      this.timeArea = pieces?.length === 1 ? pieces[0].gpa : undefined;
    }
    this.vcpuInfoTold = this.tell(xenVcpuAttrTypes.VCPU_INFO, this.vcpuInfoGpa(), vcpuInfo.native.size, this.vcpuInfoTold);
    this.timeAreaTold = this.tell(xenVcpuAttrTypes.VCPU_TIME_INFO, this.timeArea, TIME_INFO.size, this.timeAreaTold);
  }

  private tell(type: number, gpa: number | undefined, length: number, told: number | undefined): number | undefined {
    const now = gpa !== undefined && this.memory.isBacked(gpa, length) ? gpa : undefined;
    if (now !== told) this.vcpu.setXenAttr(type, now === undefined ? KVM_XEN_NO_GPA : BigInt(now));
    return now;
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
    const gpa = this.vcpuInfoTold !== undefined ? this.vcpuInfoTold + VCPU_INFO_TIME_OFFSET : this.timeAreaTold;
    if (gpa === undefined || !this.memory.isBacked(gpa, TIME_INFO.size)) return undefined;
    const r = TIME_INFO.decode(this.memory.read(gpa, TIME_INFO.size));
    if (r.version === 0 || r.tsc_to_system_mul === 0) return undefined;
    return { tscTimestamp: r.tsc_timestamp, systemTime: r.system_time, mul: r.tsc_to_system_mul, shift: r.tsc_shift };
  }
}

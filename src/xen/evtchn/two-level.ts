// Delivery in the 2-level ABI, as Xen does it: set the port's bit in
// shared_info's evtchn_pending; if it was clear and the port is not masked,
// set the word's bit in the vCPU's evtchn_pending_sel; if that was clear, set
// evtchn_upcall_pending; if that was clear, inject the upcall. Every step is
// an atomic test-and-set on the guest's own words, so vCPUs changing the same
// words concurrently never lose a bit.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { Abi } from '../abi/layout.js';
import { sharedInfoLayout, vcpuInfo } from '../abi/shared-info.js';
import { XEN_LEGACY_MAX_VCPUS } from '../abi/xen.js';
import type { DomainState } from '../domain-state.js';
import { SHARED_INFO_PAGE } from '../shared-info.js';

/** Injects the upcall for a vCPU whose evtchn_upcall_pending just went from 0 to 1. */
export type UpcallSink = (vcpu: number) => void;

/** Bit `bit` of a bitmap, within its 32-bit word. */
const bitMask = (bit: number) => 1 << (bit & 31);

/** Ports the 2-level ABI addresses: (bits per word)². */
export const twoLevelPorts = (abi: Abi) => (abi === 'native' ? 64 * 64 : 32 * 32);

export class TwoLevel {
  /** shared_info as 32-bit words, viewed once: its overlay page has a fixed host address wherever the guest maps it. */
  private readonly shared: Int32Array;

  constructor(
    private readonly memory: GuestMemory,
    private readonly state: DomainState,
    private readonly upcall: UpcallSink,
    /** Wakes the vCPUs sleeping in SCHEDOP_poll: a newly pending port may be theirs, masked or not. */
    private readonly wakePollers: () => void = () => {},
  ) {
    const page = memory.overlayPage(SHARED_INFO_PAGE);
    this.shared = new Int32Array(page.buffer, page.byteOffset, page.length / 4);
  }

  private get abi(): Abi {
    return this.state.sharedInfoAbi;
  }

  /** The index in `shared` of the 32-bit word of the bitmap at byte offset `base` that holds `bit`. */
  private static wordIndex(base: number, bit: number): number {
    return base / 4 + (bit >>> 5);
  }

  /** The vCPU's vcpu_info word at `offset` (0: upcall_pending; pending_sel's half holding `bit`), or undefined without a vcpu_info. */
  private vcpuWord(vcpu: number, offset: number): Int32Array | undefined {
    const gpa = this.state.vcpuInfoAddress(vcpu);
    if (gpa !== undefined) return this.memory.int32At(gpa + offset);
    if (vcpu >= XEN_LEGACY_MAX_VCPUS) return undefined; // no vcpu_info yet: Xen's dummy absorbs the event
    const i = (sharedInfoLayout[this.abi].vcpuInfo(vcpu) + offset) / 4;
    return this.shared.subarray(i, i + 1);
  }

  private static testAndSet(word: Int32Array | undefined, mask: number): boolean {
    return word === undefined || (Atomics.or(word, 0, mask) & mask) !== 0;
  }

  isMasked(port: number): boolean {
    return (Atomics.load(this.shared, TwoLevel.wordIndex(sharedInfoLayout[this.abi].evtchnMask, port)) & bitMask(port)) !== 0;
  }

  isPending(port: number): boolean {
    return (Atomics.load(this.shared, TwoLevel.wordIndex(sharedInfoLayout[this.abi].evtchnPending, port)) & bitMask(port)) !== 0;
  }

  /** EVTCHN set_pending: the port's event for `vcpu`. */
  setPending(port: number, vcpu: number): void {
    const mask = bitMask(port);
    if ((Atomics.or(this.shared, TwoLevel.wordIndex(sharedInfoLayout[this.abi].evtchnPending, port), mask) & mask) !== 0) return;
    this.wakePollers();
    if (this.isMasked(port)) return;
    this.markSelector(port, vcpu);
  }

  clearPending(port: number): void {
    Atomics.and(this.shared, TwoLevel.wordIndex(sharedInfoLayout[this.abi].evtchnPending, port), ~bitMask(port));
  }

  /** EVTCHNOP_unmask: a port that was masked with an event pending raises it now. */
  unmask(port: number, vcpu: number): void {
    const mask = bitMask(port);
    const was = Atomics.and(this.shared, TwoLevel.wordIndex(sharedInfoLayout[this.abi].evtchnMask, port), ~mask);
    if ((was & mask) !== 0 && this.isPending(port)) this.markSelector(port, vcpu);
  }

  private markSelector(port: number, vcpu: number): void {
    const bits = sharedInfoLayout[this.abi].wordBits;
    const selectorBit = Math.floor(port / bits);
    const o = vcpuInfo[this.abi].offsets;
    const sel = this.vcpuWord(vcpu, o.evtchn_pending_sel + Math.floor(selectorBit / 32) * 4);
    if (TwoLevel.testAndSet(sel, bitMask(selectorBit))) return;
    this.markEventsPending(vcpu);
  }

  /** vcpu_mark_events_pending: set evtchn_upcall_pending and, if it was clear, inject. */
  markEventsPending(vcpu: number): void {
    if (!TwoLevel.testAndSet(this.vcpuWord(vcpu, vcpuInfo[this.abi].offsets.evtchn_upcall_pending), 1)) this.upcall(vcpu);
  }

  /** SCHEDOP_block's first step: clear evtchn_upcall_mask, then say whether an upcall is pending. */
  enableDeliveryAndCheck(vcpu: number): boolean {
    const o = vcpuInfo[this.abi].offsets;
    // upcall_pending and upcall_mask are bytes 0 and 1 of the same word.
    const w = this.vcpuWord(vcpu, o.evtchn_upcall_pending);
    if (!w) return false;
    Atomics.and(w, 0, ~(0xff << (8 * o.evtchn_upcall_mask)));
    return (Atomics.load(w, 0) & 1) !== 0;
  }

  /** Whether evtchn_upcall_pending is set (the HVM callback vector stays asserted while it is). */
  upcallPending(vcpu: number): boolean {
    const w = this.vcpuWord(vcpu, vcpuInfo[this.abi].offsets.evtchn_upcall_pending);
    return w !== undefined && (Atomics.load(w, 0) & 1) !== 0;
  }
}

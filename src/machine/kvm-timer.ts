// The `timer` fast path on a vCPU's thread: KVM keeps the vCPU's singleshot
// timer (VCPUOP_set_singleshot_timer, stop_singleshot_timer, set_timer_op
// never reach xenkvm) and raises VIRQ_TIMER itself when it fires
// (KVM_XEN_VCPU_ATTR_TYPE_TIMER), for as long as KVM can deliver that event as
// Xen would: the 2-level ABI (KVM knows no FIFO queues), shared_info and the
// vCPU's vcpu_info in KVM (where it marks the event), and a per-vCPU upcall
// vector (which KVM injects; it has no GSI or INTx line). Checked before every
// entry, the deadline moving between KVM and xenkvm's timer thread whenever
// that changes, so a timer is never armed twice nor lost.
import { KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL, xenVcpuAttrTypes } from '../kvm/abi.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VIRQ } from '../xen/abi/event-channel.js';
import type { PortTable } from '../xen/evtchn/ports.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';
import type { TimerState } from '../xen/timers.js';
import type { KvmUpcallVector } from './kvm-upcall-vector.js';

export class KvmTimer {
  /** The VIRQ_TIMER port KVM raises (0: KVM holds no timer), as last told. */
  private portTold = 0;

  constructor(
    private readonly vcpu: Pick<Vcpu, 'setXenAttr' | 'getXenAttr'>,
    private readonly id: number,
    /** The upcall vector KVM injects with VIRQ_TIMER. */
    private readonly vector: KvmUpcallVector,
    private readonly ports: PortTable,
    private readonly timers: TimerState,
    private readonly memory: GuestMemory,
    /** Whether KVM holds the vCPU's vcpu_info (the `time` fast path's records). */
    private readonly kvmHoldsVcpuInfo: () => boolean,
  ) {
    // KVM answers a timer call only for the vCPU's own Xen id, which Linux 6.1 leaves at 0 for every vCPU
    // (set before KVM numbers the vCPU): else a vCPU but the first has its own timer refused (-EINVAL).
    vcpu.setXenAttr(xenVcpuAttrTypes.VCPU_ID, BigInt(id));
  }

  /** The VIRQ_TIMER port KVM may raise for this vCPU now, or 0. */
  private deliverablePort(): number {
    if (this.ports.fifoActive || this.vector.told === 0 || this.memory.placement.frameOf(SHARED_INFO_PAGE) === undefined || !this.kvmHoldsVcpuInfo()) return 0;
    return this.ports.virqPort(VIRQ.TIMER, this.id) ?? 0;
  }

  /** Before each entry: hands the timer to KVM, back, or to another port, where that changed. */
  sync(): void {
    this.vector.sync();
    this.hand(this.deliverablePort());
  }

  /**
   * Before the thread sleeps in SCHEDOP_block or poll, outside KVM_RUN, where KVM's event would
   * wait for the next entry: the timer goes back to xenkvm's timer thread, whose event wakes the
   * sleep as Xen's would. The next entry hands it to KVM again.
   */
  release(): void {
    this.hand(0);
  }

  private hand(port: number): void {
    if (port === this.portTold) return;
    // A deadline KVM passed without delivering yet comes back too: xenkvm's timer thread fires it at once.
    const deadline = this.portTold !== 0 ? this.kvmDeadline() : this.timers.takeSingleshot(this.id);
    const priority = BigInt(KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL) << 32n;
    this.vcpu.setXenAttr(xenVcpuAttrTypes.TIMER, port === 0 ? 0n : priority | BigInt(port), port === 0 ? 0n : (deadline ?? 0n));
    if (port === 0 && deadline !== undefined) this.timers.setSingleshot(this.id, deadline);
    this.portTold = port;
  }

  /** The deadline KVM's timer is armed for, until it delivers its event (undefined: none). */
  private kvmDeadline(): bigint | undefined {
    const expires = this.vcpu.getXenAttr(xenVcpuAttrTypes.TIMER).value2;
    return expires === 0n ? undefined : expires;
  }
}

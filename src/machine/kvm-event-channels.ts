// The `evtchn` fast path's VM-wide half, on the main thread: whether KVM
// raises the domain's events, for which vCPUs, and which of the guest's sends
// it serves. KVM knows only the 2-level ABI, and injects only a per-vCPU
// upcall vector (dropping it at a LAPIC still software-disabled, where Xen's
// would hold it), so it takes the events while the guest uses the 2-level ABI
// and KVM holds shared_info, and only for the vCPUs whose thread has told KVM
// their vector and whose LAPIC has taken that vector once. Then KVM serves the
// guest's EVTCHNOP_send on IPI and loopback ports bound to those vCPUs, and
// its SCHEDOP_poll for real (until then a yield); xenkvm's threads hand KVM
// their own events for those vCPUs, and raise the others' themselves and kick
// every vCPU, since KVM wakes a poller only for its own. Decided with every
// vCPU held, after each hypercall the main thread serves (the only ones that
// bind ports, switch ABI, move shared_info or set vectors) and when a vCPU's
// LAPIC first takes its vector.
import { xenEvtchnFlags, xenHvmConfig } from '../kvm/abi.js';
import type { Vm } from '../kvm/vm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { EVTCHNSTAT } from '../xen/abi/event-channel.js';
import type { DomainState } from '../xen/domain-state.js';
import { PortState, type PortTable } from '../xen/evtchn/ports.js';
import { SHARED_INFO_PAGE } from '../xen/shared-info.js';

/** A send KVM serves: the guest's send on the port raises `port` on `vcpu`. */
interface KvmSend {
  type: number;
  port: number;
  vcpu: number;
}

export class KvmEventChannels {
  private on = false;
  /** The sends KVM serves, by the port the guest sends on. */
  private readonly told = new Map<number, KvmSend>();

  constructor(
    private readonly vm: Pick<Vm, 'configureXenHvm' | 'setXenEventChannel'>,
    private readonly hypercallMsr: number,
    private readonly domid: number,
    private readonly state: DomainState,
    private readonly ports: PortTable,
    private readonly memory: GuestMemory,
  ) {}

  /**
   * Before a hypercall that may change what KVM needs: xenkvm's threads deliver their events
   * themselves until sync() says otherwise (shared_info may move, or the ABI change, meanwhile).
   * Under the table's lock, so no thread is handing an event to KVM as this returns.
   */
  suspend(): void {
    this.ports.locked(() => {
      this.state.kvmDeliversEvents = false;
    });
  }

  /** With every vCPU held: tells KVM whether it takes the events, for which vCPUs, and which sends it serves. */
  sync(): void {
    const raises = this.raisesFor();
    const on = raises.some((r) => r);
    if (on !== this.on) {
      // KVM serves SCHEDOP_poll for real only with EVTCHN_SEND, and wakes a poller only for events it raises.
      this.vm.configureXenHvm(xenHvmConfig.INTERCEPT_HCALL | (on ? xenHvmConfig.EVTCHN_SEND : 0), this.hypercallMsr);
      if (!on) {
        this.vm.setXenEventChannel(xenEvtchnFlags.RESET);
        this.told.clear();
      }
      this.on = on;
    }
    raises.forEach((r, v) => this.state.setKvmRaisesEventsFor(v, r));
    if (on) this.tellSends(raises);
    this.state.kvmDeliversEvents = on;
  }

  /** For each vCPU, whether KVM may raise its events now. */
  private raisesFor(): boolean[] {
    const anywhere = !this.ports.fifoActive && this.memory.placement.frameOf(SHARED_INFO_PAGE) !== undefined;
    return Array.from({ length: this.state.vcpuCount }, (_, v) => anywhere && this.state.kvmMayRaiseEventsFor(v));
  }

  /**
   * The sends KVM may serve now: on IPIs, and loopback interdomain channels (the guest's own domain at
   * both ends), raising an event on a vCPU KVM raises events for.
   */
  private wantedSends(raises: readonly boolean[]): Map<number, KvmSend> {
    const want = new Map<number, KvmSend>();
    for (let p = 1; p < this.ports.validLimit; p++) {
      const state = this.ports.state(p);
      const send =
        state === PortState.Ipi ? { type: EVTCHNSTAT.ipi, port: p, vcpu: this.ports.vcpu(p) }
        : state === PortState.Interdomain && this.ports.remoteDom(p) === this.domid ? { type: EVTCHNSTAT.interdomain, port: this.ports.peer(p), vcpu: this.ports.vcpu(this.ports.peer(p)) }
        : undefined;
      if (send && raises[send.vcpu]) want.set(p, send);
    }
    return want;
  }

  private tellSends(raises: readonly boolean[]): void {
    const want = this.wantedSends(raises);
    for (const port of this.told.keys()) {
      if (!want.has(port)) {
        this.vm.setXenEventChannel(xenEvtchnFlags.DEASSIGN, port);
        this.told.delete(port);
      }
    }
    for (const [port, send] of want) {
      const was = this.told.get(port);
      if (was && was.type === send.type && was.port === send.port && was.vcpu === send.vcpu) continue;
      // KVM retargets a port in place only to another vCPU; anything else is forgotten and told anew.
      if (was && was.type === send.type && was.port === send.port) this.vm.setXenEventChannel(xenEvtchnFlags.UPDATE, port, send.type, send);
      else {
        if (was) this.vm.setXenEventChannel(xenEvtchnFlags.DEASSIGN, port);
        this.vm.setXenEventChannel(0, port, send.type, send);
      }
      this.told.set(port, send);
    }
  }
}

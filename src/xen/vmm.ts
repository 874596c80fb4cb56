// The Xen half on the main thread: state the whole domain shares (the
// shared_info overlay, HVM parameters, event-channel bindings) and the
// hypercalls that change it, soft reset included, forwarded from the vCPU
// threads. The caller holds every vCPU paused while one of these runs, so
// memslot changes never race a running vCPU.
import type { Logger } from 'pino';
import { RateLimitedLog } from '../common/log.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { GuestVirtual } from '../memory/guest-virtual.js';
import type { MemoryMap } from '../memory/memory-map.js';
import type { ForwardedHypercall } from './accelerator.js';
import { sharedInfoLayout } from './abi/shared-info.js';
import { XEN_LEGACY_MAX_VCPUS } from './abi/xen.js';
import type { XenConfig } from './config.js';
import type { DomainState } from './domain-state.js';
import { hvmOps } from './hvm.js';
import { HypercallDispatcher } from './hypercall.js';
import { HYPERCALL_ROUTES } from './route-table.js';
import { serveRoutes } from './routes.js';
import { vcpuPowerOps, type VcpuPower } from './vcpu-power.js';
import { BackendPorts } from './evtchn/backend.js';
import type { EventDelivery } from './evtchn/delivery.js';
import { evtchnMainOps, portLimit } from './evtchn/ops.js';
import type { PortTable } from './evtchn/ports.js';
import { makeEventDelivery, makeUpcall, vcpu0CallbackLine, type UpcallHost } from './evtchn/upcall.js';
import { memoryOps } from './memory.js';
import { grantTableOps } from './gnttab/ops.js';
import { GrantTable } from './gnttab/table.js';
import { Reservation } from './reservation.js';
import { softResetOps } from './soft-reset.js';
import { consoleReadOps, type ConsoleInputQueue } from './console-io.js';
import { bytesArea, SHARED_INFO_PAGE, VCPU_INFO_TIME_OFFSET, writeVcpuTime, writeWallclock } from './shared-info.js';
import { systemTimeClock } from './time.js';

export class XenVmm {
  private readonly dispatcher: HypercallDispatcher;
  /** Event delivery from the main thread. */
  readonly events: EventDelivery;
  /** Domain 0's ends of event channels, for the VMM's backends. */
  readonly backends: BackendPorts;
  /** The guest's grant table, which backends map its grants through. */
  readonly grantTable: GrantTable;
  private readonly softResetListeners: (() => void)[] = [];
  private readonly upcallTo: (vcpu: number) => void;

  constructor(
    readonly config: XenConfig,
    private readonly memory: GuestMemory,
    memoryMap: MemoryMap,
    private readonly state: DomainState,
    e820: readonly { addr: number; size: number; type: number }[],
    power: VcpuPower,
    ports: PortTable,
    private readonly upcall: UpcallHost,
    /** Lowers a callback line the guest has not EOI'd, as Xen does when the callback moves or the domain is soft-reset. */
    private readonly lowerCallbackLine: (gsi: number) => void,
    /** Console input, for CONSOLEIO_read. */
    consoleInput: ConsoleInputQueue,
    logger: Logger,
  ) {
    this.dispatcher = new HypercallDispatcher(logger);
    const sharedInfo = memory.overlayPage(SHARED_INFO_PAGE);
    // Before the guest maps it, shared_info already holds the wallclock and each legacy vcpu_info's time
    // (where KVM writes the time, each vCPU's thread has it written as the guest maps the page).
    writeWallclock(sharedInfo, state.sharedInfoAbi, config.bootWallNs);
    for (let vcpu = 0; vcpu < (config.kvmTime ? 0 : Math.min(state.vcpuCount, XEN_LEGACY_MAX_VCPUS)); vcpu++) {
      writeVcpuTime(bytesArea(sharedInfo), sharedInfoLayout[state.sharedInfoAbi].vcpuInfo(vcpu) + VCPU_INFO_TIME_OFFSET, config.pvclock, config.tscStable);
    }
    const upcallTo = makeUpcall(state, upcall);
    this.upcallTo = upcallTo;
    const events = makeEventDelivery(memory, state, ports, upcall);
    this.events = events;
    const reservation = new Reservation(memory, memoryMap);
    const guestLog = new RateLimitedLog(logger);
    this.grantTable = GrantTable.attach(config.grantTable, memory);
    const gnttab = { domid: config.domid, memory, grantTable: this.grantTable, guestLog, unmapOverlay: (page: number) => memoryMap.unmapOverlay(page) };
    const domain = {
      callbackChanging: () => this.releaseCallbackLine(),
      upcallRouteChanged: (v: number) => {
        if (events.upcallPending(v)) upcallTo(v);
      },
      domid: config.domid,
      memoryMap,
      state,
      sharedInfo,
      bootWallNs: config.bootWallNs,
      e820: e820.map((e) => ({ addr: BigInt(e.addr), size: BigInt(e.size), type: e.type })),
      reservation,
      systemTime: systemTimeClock(config.bootMonotonicNs),
      guestLog,
      gnttab,
    };
    this.backends = new BackendPorts(ports, events, () => portLimit(ports, state));
    const evtchn = { domid: config.domid, state, ports, events, backends: this.backends, fastPath: config.evtchnFastPath, fifo: config.evtchnFifo };
    serveRoutes(this.dispatcher, 'main', HYPERCALL_ROUTES, [
      memoryOps(domain),
      grantTableOps(gnttab),
      hvmOps(domain),
      vcpuPowerOps(state, power, config.cpuPolicy),
      evtchnMainOps(evtchn),
      softResetOps({ state, memoryMap, reservation, evtchn }, logger, () => {
        this.releaseCallbackLine();
        for (const listener of this.softResetListeners) listener();
      }),
      consoleReadOps(consoleInput),
    ]);
  }

  /**
   * The guest EOI'd a callback line, and KVM lowered it (or EOI'd another device's line on a pin shared
   * with it): raised again while vCPU 0's upcall is pending and still goes by the line, as Xen evaluates
   * the line at every VM entry.
   */
  callbackLineLowered(): void {
    this.state.releaseCallbackGsi();
    if (vcpu0CallbackLine(this.state, this.upcall) !== undefined && this.events.upcallPending(0)) this.upcallTo(0);
  }

  /** Lowers the line the callback holds, then lets it be raised again: released first, an event could raise it just before it is lowered, and be lost. */
  private releaseCallbackLine(): void {
    const gsi = this.state.callbackGsiHeld;
    if (gsi === undefined) return;
    this.lowerCallbackLine(gsi);
    this.state.releaseCallbackGsi();
  }

  /** Runs `listener` after each soft reset, on the main thread with every vCPU still held. */
  onSoftReset(listener: () => void): void {
    this.softResetListeners.push(listener);
  }

  /** Serves a forwarded hypercall; the CPL was checked on the vCPU thread. */
  dispatch(call: ForwardedHypercall): bigint {
    const ctx = { vcpu: call.vcpu, abi: call.abi, guest: new GuestVirtual(this.memory, call.paging) };
    return this.dispatcher.dispatch(ctx, 0, call.nr, call.args);
  }
}

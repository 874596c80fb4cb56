// SCHEDOP_shutdown(SHUTDOWN_soft_reset), as Xen and libxl treat an HVM domU
// (kexec and kdump use it): the toolstack soft-resets the domain and lets it
// run on, memory kept, the calling vCPU seeing 0. Following Xen's
// domain_soft_reset and arch_domain_soft_reset, the reset closes every event
// channel, forgets every vCPU's vcpu_info, runstate and time areas, and takes
// shared_info out of the guest-physical map; domain_resume then clears the
// shutdown code. Xen leaves the rest alone, and so does this: HVM parameters
// (CALLBACK_IRQ included), per-vCPU upcall vectors, timers and watchdogs, VM
// assists and shared_info's contents. A timer that fires later finds its
// VIRQ unbound and its event is dropped, as in Xen.
import type { Logger } from 'pino';
import type { MemoryMap } from '../memory/memory-map.js';
import { AreaKind, type DomainState } from './domain-state.js';
import { resetPorts, type EvtchnVmmDomain } from './evtchn/ops.js';
import type { Reservation } from './reservation.js';
import { served, type ServedOps } from './routes.js';
import { SCHED_OP_ROUTE } from './sched.js';
import { SHARED_INFO_PAGE } from './shared-info.js';

export interface SoftResetDomain {
  state: DomainState;
  memoryMap: MemoryMap;
  reservation: Reservation;
  evtchn: EvtchnVmmDomain;
}

/** Resets the domain; the caller holds every vCPU outside KVM_RUN. */
export function softReset(d: SoftResetDomain): void {
  resetPorts(d.evtchn);
  for (let vcpu = 0; vcpu < d.state.vcpuCount; vcpu++) {
    // vCPUs below 32 fall back to their vcpu_info in shared_info, as it was before they registered one.
    d.state.setVcpuInfoAddress(vcpu, undefined);
    d.state.setArea(vcpu, AreaKind.Runstate, undefined);
    d.state.setArea(vcpu, AreaKind.Time, undefined);
    // Not Xen's state but KVM's: the next kernel (kexec) resets its LAPICs, so KVM raises no event until each takes its vector again.
    d.state.forgetUpcallTaken(vcpu);
  }
  const gfn = d.memoryMap.overlayFrame(SHARED_INFO_PAGE);
  if (gfn !== undefined) {
    d.memoryMap.unmapOverlay(SHARED_INFO_PAGE);
    // Xen puts a fresh page at the frame. Above RAM, where xenkvm has no page to put, the frame stays empty.
    d.reservation.refill(gfn);
  }
  d.state.shutdownCode = undefined;
}

/**
 * SCHEDOP_shutdown reaches the main thread only as a soft reset: the vCPU thread read the shutdown
 * reason and forwards nothing else (reading it again here could see another value, written
 * meanwhile by another vCPU).
 */
export function softResetOps(d: SoftResetDomain, logger: Logger, toolstack: () => void): ServedOps {
  return served(SCHED_OP_ROUTE, {
    shutdown: (ctx) => {
      softReset(d);
      // Then the toolstack's part, as libxl's after xc_domain_soft_reset: new store and console channels.
      toolstack();
      logger.info({ vcpu: ctx.vcpu }, 'guest soft-reset the domain (SCHEDOP_shutdown soft_reset): event channels closed, vcpu_info, runstate and time areas unregistered, shared_info unmapped');
      return 0;
    },
  });
}

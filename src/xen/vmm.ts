// The Xen half on the main thread: state the whole domain shares (the
// shared_info overlay, HVM parameters) and the hypercalls that change it,
// forwarded from the vCPU threads. The caller holds every vCPU paused while
// one of these runs, so memslot changes never race a running vCPU.
import type { Logger } from 'pino';
import type { GuestMemory } from '../memory/guest-memory.js';
import { GuestVirtual } from '../memory/guest-virtual.js';
import type { ForwardedHypercall } from './accelerator.js';
import type { XenConfig } from './config.js';
import { HypercallDispatcher } from './hypercall.js';

export class XenVmm {
  private readonly dispatcher: HypercallDispatcher;

  constructor(
    readonly config: XenConfig,
    private readonly memory: GuestMemory,
    logger: Logger,
  ) {
    this.dispatcher = new HypercallDispatcher(logger);
  }

  /** Serves a forwarded hypercall; the CPL was checked on the vCPU thread. */
  dispatch(call: ForwardedHypercall): bigint {
    const ctx = { vcpu: call.vcpu, abi: call.abi, guest: new GuestVirtual(this.memory, call.paging) };
    return this.dispatcher.dispatch(ctx, 0, call.nr, call.args);
  }
}

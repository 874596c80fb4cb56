// What Xen's toolstack (libxl, xenconsoled, xenstored) does for a domU,
// done by the VMM for its one guest: the XenStore and console pages at Xen's
// special frames, their event channels bound to domain 0, the HVM parameters
// that tell the guest where they are, and the console backend serving the
// ring while the guest runs.
import type { Logger } from 'pino';
import { ConsoleRing, type ConsoleInput } from '../backends/console.js';
import { RateLimitedLog } from '../common/log.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { MemoryMap } from '../memory/memory-map.js';
import { HVM_PARAM } from '../xen/abi/hvm.js';
import type { DomainState } from '../xen/domain-state.js';
import type { XenVmm } from '../xen/vmm.js';
import { CONSOLE_GFN, CONSOLE_OVERLAY_PAGE, XENSTORE_GFN, XENSTORE_OVERLAY_PAGE } from './layout.js';

export class Toolstack {
  private readonly console: ConsoleRing;
  private running: Promise<void>[] = [];

  constructor(
    memory: GuestMemory,
    memoryMap: MemoryMap,
    state: DomainState,
    xen: XenVmm,
    output: (bytes: Uint8Array) => void,
    consoleInput: ConsoleInput,
    logger: Logger,
  ) {
    memoryMap.mapOverlay(XENSTORE_OVERLAY_PAGE, XENSTORE_GFN);
    memoryMap.mapOverlay(CONSOLE_OVERLAY_PAGE, CONSOLE_GFN);
    const store = xen.backends.create();
    const console = xen.backends.create();
    state.setParam(HVM_PARAM.STORE_PFN, BigInt(XENSTORE_GFN));
    state.setParam(HVM_PARAM.STORE_EVTCHN, BigInt(store.guestPort));
    state.setParam(HVM_PARAM.CONSOLE_PFN, BigInt(CONSOLE_GFN));
    state.setParam(HVM_PARAM.CONSOLE_EVTCHN, BigInt(console.guestPort));
    // Guest sends on the console port wake the backend straight from the vCPU thread.
    console.setFastPath(true);
    this.console = new ConsoleRing(memory.overlayPage(CONSOLE_OVERLAY_PAGE), console, output, consoleInput, new RateLimitedLog(logger));
  }

  /** Starts the backends; they serve until stop(). */
  start(): void {
    this.running = [this.console.run()];
  }

  async stop(): Promise<void> {
    this.console.stop();
    await Promise.all(this.running);
  }
}

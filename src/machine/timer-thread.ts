// The timer thread: sleeps until the earliest Xen timer of any vCPU and
// raises VIRQ_TIMER on that vCPU when it expires, delivering the event
// itself (either ABI, upcall by MSI or a kick) without the main thread.
import { parentPort, workerData } from 'node:worker_threads';
import { configureLogging, type LogLevel } from '../common/log.js';
import { Vm } from '../kvm/vm.js';
import { GuestMemory, type GuestMemoryHandle } from '../memory/guest-memory.js';
import { VIRQ } from '../xen/abi/event-channel.js';
import { DomainState } from '../xen/domain-state.js';
import { PortTable } from '../xen/evtchn/ports.js';
import { makeEventDelivery } from '../xen/evtchn/upcall.js';
import { systemTimeClock } from '../xen/time.js';
import { TimerState } from '../xen/timers.js';
import { CallbackLineRaiser } from './callback-lines.js';
import { upcallHost } from './msi.js';
import { VcpuControl } from './vcpu-control.js';

/** A domain watchdog expired: the domain has crashed, as Xen's toolstack sees it. */
export type TimerMessage = { type: 'watchdog'; id: number };

export interface TimerThreadInit {
  memory: GuestMemoryHandle;
  domainState: SharedArrayBuffer;
  ports: SharedArrayBuffer;
  timers: SharedArrayBuffer;
  controls: SharedArrayBuffer[];
  /** The callback lines' eventfds (CallbackLines.buffer). */
  callbackLines: SharedArrayBuffer;
  vmFd: number;
  bootMonotonicNs: bigint;
  logLevel: LogLevel;
}

function main(init: TimerThreadInit): void {
  configureLogging(init.logLevel);
  const memory = GuestMemory.attach(init.memory);
  try {
    const vm = new Vm(init.vmFd);
    const state = new DomainState(init.domainState);
    const ports = new PortTable(init.ports);
    const controls = init.controls.map((b) => new VcpuControl(b));
    const events = makeEventDelivery(memory, state, ports, upcallHost(vm, controls, new CallbackLineRaiser(init.callbackLines)));
    new TimerState(init.timers).run(
      systemTimeClock(init.bootMonotonicNs),
      (vcpu) => {
        // Under the table's lock: this thread is not held while the main thread rebinds ports.
        ports.locked(() => {
          const port = ports.virqPort(VIRQ.TIMER, vcpu);
          if (port !== undefined) events.setPending(port, vcpu);
        });
      },
      (watchdog) => parentPort?.postMessage({ type: 'watchdog', id: watchdog + 1 } satisfies TimerMessage),
    );
  } finally {
    memory.dispose();
  }
}

main(workerData as TimerThreadInit);

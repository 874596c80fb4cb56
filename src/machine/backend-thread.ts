// What a backend's own thread (block, network) needs of the machine, and its
// setup there: the guest's memory and grant table, and event delivery to the
// guest from that thread (as the timer thread delivers VIRQ_TIMER), so that a
// backend answers its frontend without the main thread.
import { configureLogging, type LogLevel } from '../common/log.js';
import { Vm } from '../kvm/vm.js';
import { GuestMemory, type GuestMemoryHandle } from '../memory/guest-memory.js';
import { DomainState } from '../xen/domain-state.js';
import { BackendChannel } from '../xen/evtchn/backend.js';
import type { EventDelivery } from '../xen/evtchn/delivery.js';
import { PortTable } from '../xen/evtchn/ports.js';
import { makeEventDelivery } from '../xen/evtchn/upcall.js';
import { GrantTable, type GrantTableHandle } from '../xen/gnttab/table.js';
import { CallbackLineRaiser } from './callback-lines.js';
import { upcallHost } from './msi.js';
import { VcpuControl } from './vcpu-control.js';

export interface BackendThreadInit {
  memory: GuestMemoryHandle;
  grantTable: GrantTableHandle;
  domainState: SharedArrayBuffer;
  ports: SharedArrayBuffer;
  controls: SharedArrayBuffer[];
  callbackLines: SharedArrayBuffer;
  vmFd: number;
  guestDomid: number;
  logLevel: LogLevel;
}

export interface BackendThread {
  memory: GuestMemory;
  grantTable: GrantTable;
  /** Domain 0's end of a channel the main thread bound: notifications from the guest, and raising its port. */
  channel(backendPort: number, guestPort: number): BackendChannel;
  dispose(): void;
}

export function attachBackendThread(init: BackendThreadInit): BackendThread {
  configureLogging(init.logLevel);
  const memory = GuestMemory.attach(init.memory);
  const ports = new PortTable(init.ports);
  const controls = init.controls.map((b) => new VcpuControl(b));
  const events: EventDelivery = makeEventDelivery(memory, new DomainState(init.domainState), ports, upcallHost(new Vm(init.vmFd), controls, new CallbackLineRaiser(init.callbackLines)));
  return {
    memory,
    grantTable: GrantTable.attach(init.grantTable, memory),
    channel: (backendPort, guestPort) => new BackendChannel(ports, events, backendPort, guestPort),
    dispose: () => memory.dispose(),
  };
}

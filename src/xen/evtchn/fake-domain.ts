// For the event-channel unit tests: a domain of two vCPUs over real guest
// memory (1 MiB of RAM and the shared_info overlay), serving event_channel_op
// through the dispatcher as a guest's hypercalls would reach it.
import { pino, type Logger } from 'pino';
import { GuestMemory } from '../../memory/guest-memory.js';
import type { Abi } from '../abi/layout.js';
import { sharedInfoLayout, vcpuInfo } from '../abi/shared-info.js';
import { DomainState } from '../domain-state.js';
import { FakeGuest } from '../fake-guest.js';
import { HypercallDispatcher } from '../hypercall.js';
import { serveRoutes } from '../routes.js';
import { SHARED_INFO_PAGE } from '../shared-info.js';
import { BackendPorts } from './backend.js';
import { EventDelivery } from './delivery.js';
import { EVENT_CHANNEL_OP_ROUTE, evtchnMainOps, evtchnVcpuOps, portLimit } from './ops.js';
import { PortTable } from './ports.js';

const ARG = 0x1000n;

export function evtchnTestDomain(t: { after(fn: () => void): void }, abi: Abi = 'native', options: { portCount?: number; fastPath?: boolean; fifo?: boolean; logger?: Logger } = {}) {
  const memory = GuestMemory.create([{ gpa: 0, size: 1 << 20 }], 2);
  t.after(() => memory.dispose());
  const state = DomainState.create(2);
  state.sharedInfoAbi = abi;
  const upcalls: number[] = [];
  const ports = PortTable.create(options.portCount);
  const events = new EventDelivery(memory, state, ports, (v) => upcalls.push(v));
  const backends = new BackendPorts(ports, events, () => portLimit(ports, state));
  const d = { domid: 1, state, ports, events, backends, fastPath: options.fastPath ?? true, fifo: options.fifo ?? true };
  // Both threads' dispatchers, the vCPU's forwarding to the main thread's as the VM does.
  const logger = options.logger ?? pino({ level: 'silent' });
  const main = new HypercallDispatcher(logger);
  serveRoutes(main, 'main', [EVENT_CHANNEL_OP_ROUTE], [evtchnMainOps(d)]);
  const dispatcher = new HypercallDispatcher(logger);
  serveRoutes(dispatcher, 'vcpu', [EVENT_CHANNEL_OP_ROUTE], [evtchnVcpuOps(d)], (ctx, nr, args) => main.dispatch(ctx, 0, nr, args));
  const guest = new FakeGuest(ARG, 64);
  const ctx = { vcpu: 0, abi, guest: guest as never };
  /** Runs an op with 32-bit words at the argument and returns rc and the words after. */
  const op = (cmd: number, ...words: number[]) => {
    guest.bytes.fill(0);
    words.forEach((w, i) => guest.view().setUint32(i * 4, w >>> 0, true));
    const rc = Number(dispatcher.dispatch(ctx, 0, 32, [BigInt(cmd), ARG, 0n, 0n, 0n]));
    return { rc, word: (i: number) => guest.view().getUint32(i * 4, true) };
  };
  const page = memory.overlayPage(SHARED_INFO_PAGE);
  const l = sharedInfoLayout[abi];
  const bit = (base: number, n: number) => (page[base + (n >> 3)] >> (n & 7)) & 1;
  const info = (v: number) => l.vcpuInfo(v);
  return {
    d, op, upcalls, page, memory,
    pending: (port: number) => bit(l.evtchnPending, port),
    setMask: (port: number, on: boolean) => { page[l.evtchnMask + (port >> 3)] = on ? page[l.evtchnMask + (port >> 3)] | (1 << (port & 7)) : page[l.evtchnMask + (port >> 3)] & ~(1 << (port & 7)); },
    upcallPending: (v: number) => page[info(v) + vcpuInfo[abi].offsets.evtchn_upcall_pending],
    selector: (v: number, n: number) => bit(info(v) + vcpuInfo[abi].offsets.evtchn_pending_sel, n),
    clearUpcall: (v: number) => { page[info(v) + vcpuInfo[abi].offsets.evtchn_upcall_pending] = 0; },
  };
}

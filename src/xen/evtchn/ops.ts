// event_channel_op for both ABIs. Binding, closing, status, reset and the
// FIFO setup change the port table and run on the main thread (all vCPUs
// held) under the table's lock. Sends on the ports the VMM registered, and
// unmasks, run on the calling vCPU's thread (the fast path); a send on any
// other port goes to the main thread.
import { XEN_ERRNO } from '../abi/errno.js';
import {
  EVTCHN_FIFO, EVTCHNOP, EVTCHNSTAT, NR_VIRQS, VIRQ, virqIsGlobal, evtchnAllocUnbound, evtchnBindInterdomain, evtchnBindIpi, evtchnBindVcpu,
  evtchnBindVirq, evtchnClose, evtchnExpandArray, evtchnInitControl, evtchnReset, evtchnSend, evtchnSetPriority, evtchnStatus,
  evtchnStatusU, evtchnUnmask,
} from '../abi/event-channel.js';
import { HYPERCALL } from '../abi/hypercalls.js';
import { DOMID } from '../abi/xen.js';
import type { DomainState } from '../domain-state.js';
import { XenError } from '../errors.js';
import { readArg, readArgU32, writeArgU32, type HypercallContext } from '../hypercall.js';
import { firstArgLow32, served, subOpRoute, type OpHandler, type ServedOps } from '../routes.js';
import { BACKEND_DOMID, backendNotifier, type BackendPorts } from './backend.js';
import type { EventDelivery } from './delivery.js';
import { PortFlag, PortState, type PortTable } from './ports.js';
import { twoLevelPorts } from './two-level.js';

export interface EvtchnDomain {
  domid: number;
  state: DomainState;
  ports: PortTable;
  events: EventDelivery;
}

/** The main thread's view: domain 0's ports, and whether the VMM registers ports with the accelerator. */
export interface EvtchnVmmDomain extends EvtchnDomain {
  backends: BackendPorts;
  fastPath: boolean;
  /** Whether EVTCHNOP_init_control and expand_array are offered (the FIFO ABI). */
  fifo: boolean;
}

/** Ports the domain can address now: the ABI's reach, within the table (max_evtchn_port + 1). */
export function portLimit(ports: PortTable, state: DomainState): number {
  return ports.fifoActive ? ports.capacity : Math.min(ports.capacity, twoLevelPorts(state.sharedInfoAbi));
}


function self(d: EvtchnDomain, dom: number): boolean {
  return dom === DOMID.SELF || dom === d.domid;
}

/** The FIFO ABI's sub-ops, where it is not offered: what Xen built without CONFIG_EVTCHN_FIFO answers, after reading the argument. */
function requireFifo(d: EvtchnVmmDomain): void {
  if (!d.fifo) throw new XenError(XEN_ERRNO.EOPNOTSUPP);
}

function checkVcpu(d: EvtchnDomain, vcpu: number): number {
  if (vcpu >= d.state.vcpuCount) throw new XenError(XEN_ERRNO.ENOENT);
  return vcpu;
}

/** Frees a port; the far end of an interdomain pair goes back to unbound, waiting for this domain. */
function closePort(d: EvtchnVmmDomain, port: number): void {
  const p = d.ports.get(port);
  if (p.state === PortState.Free || p.state === PortState.Reserved) throw new XenError(XEN_ERRNO.EINVAL);
  if (p.state === PortState.Interdomain && p.remoteDom === d.domid) {
    d.ports.changeBinding(p.peer, { ...d.ports.get(p.peer), state: PortState.Unbound, peer: d.domid, remoteDom: 0 });
  } else if (p.state === PortState.Interdomain) {
    d.backends.guestClosed(p.peer);
  }
  // A port re-bound later must not start with a stale event.
  d.events.clearPending(port);
  d.ports.free(port);
}

/** EVTCHNOP_reset: every port closed, and the domain back on the 2-level ABI (Xen drops the FIFO control blocks and array). */
export function resetPorts(d: EvtchnVmmDomain): void {
  d.ports.locked(() => {
    for (let port = 1; port < d.ports.validLimit; port++) if (d.ports.state(port) !== PortState.Free) closePort(d, port);
    d.ports.dropFifo();
  });
}

/** Registers a port the accelerator may serve sends on, if the VMM uses the fast path at all. */
function registerFastPath(d: EvtchnVmmDomain, port: number): void {
  if (d.fastPath) d.ports.setFlag(port, PortFlag.FastPath, true);
}

function allocate(d: EvtchnVmmDomain, limit: number): number {
  return d.ports.allocate(limit, (port) => d.events.isBusy(port));
}

/** A sub-op served on the main thread, under the port table's lock; `limit` is portLimit's. */
type ControlOp = (ctx: HypercallContext, d: EvtchnVmmDomain, arg: bigint, limit: number) => number;

const CONTROL_OPS: Partial<Record<keyof typeof EVTCHNOP, ControlOp>> = {
  send: (ctx, d, arg, limit) => {
    return send(d, d.ports.check(readArg(ctx, evtchnSend[ctx.abi], arg).port, limit));
  },
  alloc_unbound: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnAllocUnbound[ctx.abi], arg);
    if (!self(d, a.dom)) throw new XenError(XEN_ERRNO.ESRCH);
    // Xen records the remote domain without looking it up: only that domain may bind the port later.
    const port = allocate(d, limit);
    d.ports.set(port, { state: PortState.Unbound, vcpu: 0, peer: self(d, a.remote_dom) ? d.domid : a.remote_dom, remoteDom: 0 });
    writeArgU32(ctx, arg + BigInt(evtchnAllocUnbound[ctx.abi].offsets.port), port);
    return 0;
  },
  bind_interdomain: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnBindInterdomain[ctx.abi], arg);
    let local: number;
    if (self(d, a.remote_dom)) {
      const remote = d.ports.check(a.remote_port, limit);
      const r = d.ports.get(remote);
      if (r.state !== PortState.Unbound || r.peer !== d.domid) throw new XenError(XEN_ERRNO.EINVAL);
      local = allocate(d, limit);
      d.ports.set(local, { state: PortState.Interdomain, vcpu: 0, peer: remote, remoteDom: d.domid });
      d.ports.changeBinding(remote, { ...r, state: PortState.Interdomain, peer: local, remoteDom: d.domid });
      registerFastPath(d, remote);
      registerFastPath(d, local);
    } else if (a.remote_dom === BACKEND_DOMID) {
      local = allocate(d, limit);
      d.backends.guestBinds(a.remote_port, local);
      d.ports.set(local, { state: PortState.Interdomain, vcpu: 0, peer: a.remote_port, remoteDom: BACKEND_DOMID });
      d.backends.guestBound(a.remote_port);
    } else {
      throw new XenError(XEN_ERRNO.ESRCH);
    }
    writeArgU32(ctx, arg + BigInt(evtchnBindInterdomain[ctx.abi].offsets.local_port), local);
    // As Xen does: the new port starts pending, so nothing sent while it was unbound is lost.
    d.events.setPending(local, 0);
    return 0;
  },
  bind_virq: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnBindVirq[ctx.abi], arg);
    if (a.virq >= NR_VIRQS) throw new XenError(XEN_ERRNO.EINVAL);
    if (virqIsGlobal(a.virq) && a.vcpu !== 0) throw new XenError(XEN_ERRNO.EINVAL);
    const vcpu = checkVcpu(d, a.vcpu);
    if (d.ports.virqPort(a.virq, vcpu) !== undefined) throw new XenError(XEN_ERRNO.EEXIST);
    const port = allocate(d, limit);
    d.ports.set(port, { state: PortState.Virq, vcpu, peer: a.virq, remoteDom: 0 });
    writeArgU32(ctx, arg + BigInt(evtchnBindVirq[ctx.abi].offsets.port), port);
    return 0;
  },
  bind_ipi: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnBindIpi[ctx.abi], arg);
    const vcpu = checkVcpu(d, a.vcpu);
    const port = allocate(d, limit);
    d.ports.set(port, { state: PortState.Ipi, vcpu, peer: 0, remoteDom: 0 });
    registerFastPath(d, port);
    writeArgU32(ctx, arg + BigInt(evtchnBindIpi[ctx.abi].offsets.port), port);
    return 0;
  },
  bind_vcpu: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnBindVcpu[ctx.abi], arg);
    const vcpu = checkVcpu(d, a.vcpu);
    const port = d.ports.check(a.port, limit);
    const p = d.ports.get(port);
    const movable = p.state === PortState.Unbound || p.state === PortState.Interdomain || (p.state === PortState.Virq && virqIsGlobal(p.peer));
    if (!movable) throw new XenError(XEN_ERRNO.EINVAL);
    d.ports.setVcpu(port, vcpu);
    return 0;
  },
  close: (ctx, d, arg, limit) => {
    closePort(d, d.ports.check(readArg(ctx, evtchnClose[ctx.abi], arg).port, limit));
    return 0;
  },
  status: (ctx, d, arg, limit) => {
    const def = evtchnStatus[ctx.abi];
    const s = readArg(ctx, def, arg);
    if (!self(d, s.dom)) throw new XenError(XEN_ERRNO.ESRCH);
    const port = d.ports.check(s.port, limit);
    const p = d.ports.get(port);
    const u = new Uint8Array(8);
    let status: number = EVTCHNSTAT.closed;
    switch (p.state) {
      case PortState.Unbound:
        status = EVTCHNSTAT.unbound;
        u.set(evtchnStatusU.unbound[ctx.abi].encode({ dom: p.peer }));
        break;
      case PortState.Interdomain:
        status = EVTCHNSTAT.interdomain;
        u.set(evtchnStatusU.interdomain[ctx.abi].encode({ dom: p.remoteDom, port: p.peer }));
        break;
      case PortState.Virq:
        status = EVTCHNSTAT.virq;
        new DataView(u.buffer).setUint32(0, p.peer, true);
        break;
      case PortState.Ipi:
        status = EVTCHNSTAT.ipi;
        break;
    }
    ctx.guest.write(arg, def.encode({ dom: s.dom, port, status, vcpu: p.vcpu, u }));
    return 0;
  },
  reset: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnReset[ctx.abi], arg);
    if (!self(d, a.dom)) throw new XenError(XEN_ERRNO.ESRCH);
    resetPorts(d);
    return 0;
  },
  init_control: (ctx, d, arg, limit) => {
    const def = evtchnInitControl[ctx.abi];
    const a = readArg(ctx, def, arg);
    requireFifo(d);
    const vcpu = checkVcpu(d, a.vcpu);
    d.events.fifo.initControl(vcpu, a.control_gfn, a.offset, (port) => d.events.twoLevel.isPending(port));
    ctx.guest.write(arg + BigInt(def.offsets.link_bits), Uint8Array.of(EVTCHN_FIFO.LINK_BITS));
    return 0;
  },
  expand_array: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnExpandArray[ctx.abi], arg);
    requireFifo(d);
    d.events.fifo.expandArray(a.array_gfn);
    return 0;
  },
  set_priority: (ctx, d, arg, limit) => {
    const a = readArg(ctx, evtchnSetPriority[ctx.abi], arg);
    const port = d.ports.check(a.port, limit);
    if (!d.ports.fifoActive) throw new XenError(XEN_ERRNO.ENOSYS, 'the 2-level ABI has no priorities');
    if (a.priority > EVTCHN_FIFO.PRIORITY_MIN) throw new XenError(XEN_ERRNO.EINVAL);
    d.ports.setPriority(port, a.priority);
    return 0;
  },
};

/** EVTCHNOP_send on a valid port, under the table's lock. A send to domain 0 wakes its backend's notifier. */
function send(d: EvtchnDomain, port: number): number {
  switch (d.ports.state(port)) {
    case PortState.Interdomain: {
      const peer = d.ports.peer(port);
      if (d.ports.remoteDom(port) === BACKEND_DOMID) backendNotifier(d.ports, port).notify();
      else d.events.setPending(peer, d.ports.vcpu(peer));
      return 0;
    }
    case PortState.Ipi:
      d.events.setPending(port, d.ports.vcpu(port));
      return 0;
    case PortState.Unbound:
      return 0; // nobody listens yet: dropped, as in Xen
    default:
      throw new XenError(XEN_ERRNO.EINVAL);
  }
}

export const EVENT_CHANNEL_OP_ROUTE = subOpRoute(HYPERCALL.event_channel_op, firstArgLow32, 'EVTCHNOP_', EVTCHNOP, {
  // The fast path: sends on the ports the VMM registered, and unmasks, which only touch the guest's own words.
  send: 'vcpu-first', unmask: 'vcpu',
  alloc_unbound: 'main', bind_interdomain: 'main', bind_virq: 'main', bind_ipi: 'main', bind_vcpu: 'main', close: 'main', status: 'main',
  reset: 'main', init_control: 'main', expand_array: 'main', set_priority: 'main',
});

/** A send on a port the VMM registered, under the table's lock; undefined for any other port. */
function fastSend(ctx: HypercallContext, d: EvtchnDomain, arg: bigint): number | undefined {
  const port = d.ports.check(readArgU32(ctx, arg + BigInt(evtchnSend[ctx.abi].offsets.port)), portLimit(d.ports, d.state));
  if (!d.ports.hasFlag(port, PortFlag.FastPath)) return undefined;
  return d.ports.locked(() => (d.ports.hasFlag(port, PortFlag.FastPath) ? send(d, port) : undefined));
}

/** event_channel_op on the calling vCPU's thread. */
export function evtchnVcpuOps(d: EvtchnDomain): ServedOps {
  return served(EVENT_CHANNEL_OP_ROUTE, {
    send: (ctx, [, arg]) => fastSend(ctx, d, arg),
    unmask: (ctx, [, arg]) => {
      const port = d.ports.check(readArgU32(ctx, arg + BigInt(evtchnUnmask[ctx.abi].offsets.port)), portLimit(d.ports, d.state));
      d.events.unmask(port, d.ports.vcpu(port));
      return 0;
    },
  });
}

/** event_channel_op on the main thread: every sub-op under the port table's lock. */
export function evtchnMainOps(d: EvtchnVmmDomain): ServedOps {
  const handlers: Partial<Record<keyof typeof EVTCHNOP, OpHandler>> = {};
  for (const [name, op] of Object.entries(CONTROL_OPS) as [keyof typeof EVTCHNOP, ControlOp][]) {
    handlers[name] = (ctx, [, arg]) => d.ports.locked(() => op(ctx, d, arg, portLimit(d.ports, d.state)));
  }
  // A send forwarded because its port was not registered then may have been registered since.
  const controlSend = handlers.send!;
  handlers.send = (ctx, args) => fastSend(ctx, d, args[1]) ?? controlSend(ctx, args);
  return served(EVENT_CHANNEL_OP_ROUTE, handlers);
}

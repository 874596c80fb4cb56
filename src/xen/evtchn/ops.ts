// event_channel_op on the 2-level ABI. Binding, closing, status and reset
// change the port table and run on the main thread (all vCPUs held); send and
// unmask only read it and run on the calling vCPU's thread (the fast path).
import { XEN_ERRNO } from '../abi/errno.js';
import {
  EVTCHNOP, EVTCHNSTAT, NR_VIRQS, VIRQ, evtchnAllocUnbound, evtchnBindInterdomain, evtchnBindIpi, evtchnBindVcpu, evtchnBindVirq,
  evtchnClose, evtchnReset, evtchnSend, evtchnStatus, evtchnStatusU, evtchnUnmask,
} from '../abi/event-channel.js';
import { HYPERCALL } from '../abi/hypercalls.js';
import { DOMID } from '../abi/xen.js';
import type { DomainState } from '../domain-state.js';
import { XenError } from '../errors.js';
import { readArg, writeArgU32, type HypercallContext, type HypercallDispatcher } from '../hypercall.js';
import { PortState, type PortTable } from './ports.js';
import { twoLevelPorts, type TwoLevel } from './two-level.js';

export interface EvtchnDomain {
  domid: number;
  state: DomainState;
  ports: PortTable;
  twoLevel: TwoLevel;
}

/** VIRQs bound on each vCPU; the rest (the arch ones included, on x86) are global, bound once on vCPU 0. */
const PER_VCPU_VIRQS = new Set<number>([VIRQ.TIMER, VIRQ.DEBUG, VIRQ.XENOPROF, VIRQ.XENPMU]);
const virqIsGlobal = (virq: number) => !PER_VCPU_VIRQS.has(virq);

function self(d: EvtchnDomain, dom: number): boolean {
  return dom === DOMID.SELF || dom === d.domid;
}

function checkVcpu(d: EvtchnDomain, vcpu: number): number {
  if (vcpu >= d.state.vcpuCount) throw new XenError(XEN_ERRNO.ENOENT);
  return vcpu;
}

/** Frees a port; the far end of an interdomain pair goes back to unbound, waiting for this domain. */
function closePort(d: EvtchnDomain, port: number): void {
  const p = d.ports.get(port);
  if (p.state === PortState.Free || p.state === PortState.Reserved) throw new XenError(XEN_ERRNO.EINVAL);
  if (p.state === PortState.Interdomain && p.remoteDom === d.domid) {
    const peer = d.ports.get(p.peer);
    d.ports.set(p.peer, { ...peer, state: PortState.Unbound, peer: d.domid, remoteDom: 0 });
  }
  // A port re-bound later must not start with a stale event.
  d.twoLevel.clearPending(port);
  d.ports.free(port);
}

/** Closes every port of the domain, as Xen's evtchn_reset does for EVTCHNOP_reset and a soft reset. Main thread only. */
export function resetPorts(d: EvtchnDomain): void {
  const limit = Math.min(twoLevelPorts(d.state.sharedInfoAbi), d.ports.validLimit);
  for (let port = 1; port < limit; port++) if (d.ports.get(port).state !== PortState.Free) closePort(d, port);
}

/** Served on the main thread. */
export function evtchnControlOp(ctx: HypercallContext, d: EvtchnDomain, op: number, arg: bigint): number {
  const limit = twoLevelPorts(d.state.sharedInfoAbi);
  switch (op) {
    case EVTCHNOP.alloc_unbound: {
      const a = readArg(ctx, evtchnAllocUnbound[ctx.abi], arg);
      if (!self(d, a.dom)) throw new XenError(XEN_ERRNO.ESRCH);
      // Xen records the remote domain without looking it up: only that domain may bind the port later.
      const port = d.ports.allocate(limit);
      d.ports.set(port, { state: PortState.Unbound, vcpu: 0, peer: self(d, a.remote_dom) ? d.domid : a.remote_dom, remoteDom: 0 });
      writeArgU32(ctx, arg + BigInt(evtchnAllocUnbound[ctx.abi].offsets.port), port);
      return 0;
    }
    case EVTCHNOP.bind_interdomain: {
      const a = readArg(ctx, evtchnBindInterdomain[ctx.abi], arg);
      if (!self(d, a.remote_dom)) throw new XenError(XEN_ERRNO.ESRCH);
      const remote = d.ports.check(a.remote_port, limit);
      const r = d.ports.get(remote);
      if (r.state !== PortState.Unbound || r.peer !== d.domid) throw new XenError(XEN_ERRNO.EINVAL);
      const local = d.ports.allocate(limit);
      d.ports.set(local, { state: PortState.Interdomain, vcpu: 0, peer: remote, remoteDom: d.domid });
      d.ports.set(remote, { ...r, state: PortState.Interdomain, peer: local, remoteDom: d.domid });
      writeArgU32(ctx, arg + BigInt(evtchnBindInterdomain[ctx.abi].offsets.local_port), local);
      // As Xen does: the new port starts pending, so nothing sent while it was unbound is lost.
      d.twoLevel.setPending(local, 0);
      return 0;
    }
    case EVTCHNOP.bind_virq: {
      const a = readArg(ctx, evtchnBindVirq[ctx.abi], arg);
      if (a.virq >= NR_VIRQS) throw new XenError(XEN_ERRNO.EINVAL);
      if (virqIsGlobal(a.virq) && a.vcpu !== 0) throw new XenError(XEN_ERRNO.EINVAL);
      const vcpu = checkVcpu(d, a.vcpu);
      if (d.ports.virqPort(a.virq, vcpu) !== undefined) throw new XenError(XEN_ERRNO.EEXIST);
      const port = d.ports.allocate(limit);
      d.ports.set(port, { state: PortState.Virq, vcpu, peer: a.virq, remoteDom: 0 });
      writeArgU32(ctx, arg + BigInt(evtchnBindVirq[ctx.abi].offsets.port), port);
      return 0;
    }
    case EVTCHNOP.bind_ipi: {
      const a = readArg(ctx, evtchnBindIpi[ctx.abi], arg);
      const vcpu = checkVcpu(d, a.vcpu);
      const port = d.ports.allocate(limit);
      d.ports.set(port, { state: PortState.Ipi, vcpu, peer: 0, remoteDom: 0 });
      writeArgU32(ctx, arg + BigInt(evtchnBindIpi[ctx.abi].offsets.port), port);
      return 0;
    }
    case EVTCHNOP.bind_vcpu: {
      const a = readArg(ctx, evtchnBindVcpu[ctx.abi], arg);
      const vcpu = checkVcpu(d, a.vcpu);
      const port = d.ports.check(a.port, limit);
      const p = d.ports.get(port);
      const movable = p.state === PortState.Unbound || p.state === PortState.Interdomain || (p.state === PortState.Virq && virqIsGlobal(p.peer));
      if (!movable) throw new XenError(XEN_ERRNO.EINVAL);
      d.ports.set(port, { ...p, vcpu });
      return 0;
    }
    case EVTCHNOP.close: {
      closePort(d, d.ports.check(readArg(ctx, evtchnClose[ctx.abi], arg).port, limit));
      return 0;
    }
    case EVTCHNOP.status: {
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
    }
    case EVTCHNOP.reset: {
      const a = readArg(ctx, evtchnReset[ctx.abi], arg);
      if (!self(d, a.dom)) throw new XenError(XEN_ERRNO.ESRCH);
      resetPorts(d);
      return 0;
    }
    default:
      throw new XenError(XEN_ERRNO.ENOSYS);
  }
}

/** Served on the calling vCPU's thread: the table only changes while every vCPU is held. */
export function evtchnFastOp(ctx: HypercallContext, d: EvtchnDomain, op: number, arg: bigint): number | undefined {
  const limit = twoLevelPorts(d.state.sharedInfoAbi);
  switch (op) {
    case EVTCHNOP.send: {
      const port = d.ports.check(readArg(ctx, evtchnSend[ctx.abi], arg).port, limit);
      const p = d.ports.get(port);
      switch (p.state) {
        case PortState.Interdomain: {
          const peer = d.ports.get(p.peer);
          d.twoLevel.setPending(p.peer, peer.vcpu);
          return 0;
        }
        case PortState.Ipi:
          d.twoLevel.setPending(port, p.vcpu);
          return 0;
        case PortState.Unbound:
          return 0; // nobody listens yet: dropped, as in Xen
        default:
          throw new XenError(XEN_ERRNO.EINVAL);
      }
    }
    case EVTCHNOP.unmask: {
      const port = d.ports.check(readArg(ctx, evtchnUnmask[ctx.abi], arg).port, limit);
      d.twoLevel.unmask(port, d.ports.get(port).vcpu);
      return 0;
    }
    default:
      return undefined;
  }
}

export function registerEventChannelOp(dispatcher: HypercallDispatcher, serve: (ctx: HypercallContext, op: number, arg: bigint, args: readonly bigint[]) => number | bigint): void {
  dispatcher.register(HYPERCALL.event_channel_op, (ctx, args) => serve(ctx, Number(args[0] & 0xffffffffn), args[1], args));
}

// sched_op, served on the calling vCPU's thread: yield, and shutdown as the
// toolstack sees it (power-off, reboot, crash; a watchdog expiring is a
// crash; suspend ends the run, there being no save yet; a soft reset is
// forwarded to the main thread and the guest runs on). The first code set by
// SCHEDOP_shutdown_code, if any, overrides the reason, as in Xen.
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { SCHEDOP, SHUTDOWN, schedPoll, schedShutdown, schedWatchdog } from './abi/sched.js';
import { WATCHDOGS, type TimerState } from './timers.js';
import { XenError } from './errors.js';
import { readArg, type HypercallContext } from './hypercall.js';
import { firstArgLow32, served, subOpRoute, type ServedOps } from './routes.js';

export type ShutdownKind = 'poweroff' | 'reboot' | 'crash' | 'suspend';

export interface SchedDomain {
  /** Ends the run the way the shutdown reason says. */
  shutdown(kind: ShutdownKind, message: string): void;
  shutdownCode(): number | undefined;
  /** Sets the code unless one is set: the first stays until a soft reset. */
  latchShutdownCode(code: number): void;
  /**
   * Puts the calling vCPU to sleep (runstate blocked) until `done()`, an
   * absolute system-time deadline, or the VMM needing its thread; with
   * `once`, also after one short slice (a LAPIC interrupt may be waiting).
   */
  sleep(done: () => boolean, options: { deadline?: bigint; once?: boolean }): void;
  /** Whether the calling vCPU has evtchn_upcall_pending set; clears its upcall mask first, as SCHEDOP_block does. */
  eventsPendingWithDeliveryEnabled(): boolean;
  /** A port the guest named: -EINVAL unless valid. */
  checkPort(port: number): number;
  isPending(port: number): boolean;
  /**
   * Xen's local_events_need_delivery for the caller: interrupts on (RFLAGS.IF) and an upcall pending.
   * (A pending LAPIC interrupt counts in Xen too; it is seen only from inside KVM.)
   */
  localEventsNeedDelivery(ctx: HypercallContext): boolean;
  /** Whether the calling vCPU's evtchn_upcall_pending is set. */
  upcallPending(): boolean;
  /** DomainState.portsTurnedPending. */
  portsTurnedPending(): number;
  timers: TimerState;
  systemTime(): bigint;
}

/** At most this many ports in one SCHEDOP_poll. */
const MAX_POLL_PORTS = 128;

const REASONS: Record<number, ShutdownKind> = {
  [SHUTDOWN.poweroff]: 'poweroff',
  [SHUTDOWN.reboot]: 'reboot',
  [SHUTDOWN.crash]: 'crash',
  [SHUTDOWN.watchdog]: 'crash',
  [SHUTDOWN.suspend]: 'suspend',
};

function reasonOf(ctx: HypercallContext, arg: bigint): number {
  const def = schedShutdown[ctx.abi];
  // Xen takes the reason as a byte.
  return readArg(ctx, def, arg).reason & 0xff;
}

export const SCHED_OP_ROUTE = subOpRoute(HYPERCALL.sched_op, firstArgLow32, 'SCHEDOP_', SCHEDOP, {
  // A soft reset, and only that, is forwarded: it changes the whole domain.
  yield: 'vcpu', block: 'vcpu', shutdown: 'vcpu-first', poll: 'vcpu', shutdown_code: 'vcpu', watchdog: 'vcpu',
});

/** sched_op on the calling vCPU's thread. */
export function schedOps(d: SchedDomain): ServedOps {
  return served(SCHED_OP_ROUTE, {
    yield: () => 0,
    shutdown: (ctx, [, arg]) => {
      const reason = d.shutdownCode() ?? reasonOf(ctx, arg);
      if (reason === SHUTDOWN.soft_reset) return undefined;
      // A reason the toolstack does not know ends the domain as a crash would.
      const kind = REASONS[reason] ?? 'crash';
      d.shutdown(kind, `guest vCPU ${ctx.vcpu} shut the domain down (SCHEDOP_shutdown, reason ${reason}: ${kind})`);
      return 0;
    },
    shutdown_code: (ctx, [, arg]) => {
      d.latchShutdownCode(reasonOf(ctx, arg));
      return 0;
    },
    block: () => {
      d.sleep(() => d.eventsPendingWithDeliveryEnabled(), { once: true });
      return 0;
    },
    poll: (ctx, [, arg]) => {
      poll(ctx, d, arg);
      return 0;
    },
    watchdog: (ctx, [, arg]) => watchdog(ctx, d, arg),
  });
}

/**
 * SCHEDOP_poll as Xen 4.17 serves it: nothing to wait for when an interrupt could be taken now; the
 * ports read one at a time, an invalid one -EINVAL and a pending one the end (later ones unread);
 * then asleep until the one port listed turns pending (or, listing none or several, any port of the
 * domain does), an upcall becomes pending (Xen's vcpu_kick), or the absolute timeout. Always 0.
 */
function poll(ctx: HypercallContext, d: SchedDomain, arg: bigint): void {
  const p = readArg(ctx, schedPoll[ctx.abi], arg);
  if (p.nr_ports > MAX_POLL_PORTS) throw new XenError(XEN_ERRNO.EINVAL);
  if (d.localEventsNeedDelivery(ctx)) return;
  const generation = d.portsTurnedPending();
  const upcallBefore = d.upcallPending();
  const ports: number[] = [];
  for (let i = 0; i < p.nr_ports; i++) {
    const port = d.checkPort(ctx.guest.readU32(BigInt(p.ports) + BigInt(i * 4)));
    if (d.isPending(port)) return;
    ports.push(port);
  }
  const portWakes = ports.length === 1 ? () => d.isPending(ports[0]) : () => d.portsTurnedPending() !== generation;
  const timeout = BigInt.asIntN(64, BigInt(p.timeout));
  d.sleep(() => portWakes() || (!upcallBefore && d.upcallPending()), timeout === 0n ? {} : { deadline: timeout });
}

/** SCHEDOP_watchdog: id 0 claims a watchdog (its id is returned), another id re-arms it, timeout 0 frees it; expiry is a crash. */
function watchdog(ctx: HypercallContext, d: SchedDomain, arg: bigint): number {
  const def = schedWatchdog[ctx.abi];
  const w = readArg(ctx, def, arg);
  const deadline = d.systemTime() + BigInt(w.timeout) * 1_000_000_000n;
  if (w.id === 0) {
    const id = d.timers.claimWatchdog(deadline > 0n ? deadline : 1n);
    if (id === undefined) throw new XenError(XEN_ERRNO.ENOSPC);
    return id + 1;
  }
  const id = w.id - 1;
  if (id >= WATCHDOGS || !d.timers.watchdogInUse(id)) throw new XenError(XEN_ERRNO.EINVAL);
  d.timers.setWatchdog(id, w.timeout === 0 ? undefined : deadline);
  return 0;
}

// The routing table of every hypercall xenkvm serves: each Xen op (a
// hypercall, or one sub-op of a hypercall that has them) with its Xen name and
// the thread that serves it. Each hypercall module exports the routes of its
// hypercalls and the handlers it gives on each thread, keyed by the ops' Xen
// names; both dispatchers, the vCPU threads' (XenAccelerator) and the main
// thread's (XenVmm), are built from this table, so an op is served where its
// route says or nowhere, and an op missing from the table is -ENOSYS on the
// calling vCPU's thread without going anywhere (reported once when Xen has it).
import { XEN_ERRNO } from './abi/errno.js';
import { hypercallName } from './abi/hypercalls.js';
import { NotImplementedError, XenError } from './errors.js';
import type { HypercallContext, HypercallDispatcher, HypercallHandler } from './hypercall.js';

/**
 * Where an op is served. 'vcpu': on the calling vCPU's thread. 'main': forwarded to the main thread,
 * which holds every vCPU while it changes state the whole domain shares. 'vcpu-first': on the vCPU
 * thread when it can be (its handler there answers undefined when not), else forwarded.
 */
export type Thread = 'vcpu' | 'main' | 'vcpu-first';

export interface OpRoute {
  readonly hypercall: number;
  /** The sub-op's number; undefined for a hypercall without sub-ops. */
  readonly op: number | undefined;
  /** Xen's name: the sub-op's constant (EVTCHNOP_send) or the hypercall's (set_timer_op). */
  readonly name: string;
  readonly thread: Thread;
}

type Constants = Readonly<Record<string, number>>;

export interface HypercallRoute<C extends Constants = Constants> {
  readonly hypercall: number;
  /**
   * The sub-op a call names, from its arguments (undefined: one no sub-op can be, as a number too wide
   * for Xen's op argument); absent for a hypercall without sub-ops.
   */
  readonly subOp?: (args: readonly bigint[]) => number | undefined;
  readonly constants: C;
  /** Of the sub-ops' Xen names. */
  readonly prefix: string;
  /** By sub-op number, or the one entry under WHOLE. */
  readonly ops: ReadonlyMap<number, OpRoute>;
}

const WHOLE = -1;

/** The sub-op in the low 32 bits of the first argument (an unsigned int cmd in Xen's prototype). */
export const firstArgLow32 = (args: readonly bigint[]) => Number(args[0] & 0xffffffffn);

/** A hypercall with sub-ops, named `${prefix}${name}` after their constants; those not listed are -ENOSYS. */
export function subOpRoute<C extends Constants>(
  hypercall: number, subOp: NonNullable<HypercallRoute['subOp']>, prefix: string, constants: C, threads: Partial<Record<keyof C & string, Thread>>,
): HypercallRoute<C> {
  const ops = new Map<number, OpRoute>();
  for (const [name, thread] of Object.entries(threads) as [string, Thread][]) {
    ops.set(constants[name], { hypercall, op: constants[name], name: `${prefix}${name}`, thread });
  }
  return { hypercall, subOp, constants, prefix, ops };
}

/** A hypercall without sub-ops, served on one thread. */
export function wholeRoute(hypercall: number, thread: Thread): HypercallRoute<Record<never, number>> {
  return { hypercall, constants: {}, prefix: '', ops: new Map([[WHOLE, { hypercall, op: undefined, name: hypercallName(hypercall), thread }]]) };
}

/** Answers the call, or (only for a 'vcpu-first' op on the vCPU thread) undefined to forward it. */
export type OpHandler = (ctx: HypercallContext, args: readonly bigint[]) => number | bigint | undefined;

/** The handlers a module gives for one hypercall on one thread. */
export interface ServedOps {
  readonly route: HypercallRoute;
  readonly handlers: ReadonlyMap<number, OpHandler>;
  /** Run before any sub-op, known or not, as Xen checks some arguments first (vcpu_op's vCPU id). */
  readonly check?: (ctx: HypercallContext, args: readonly bigint[]) => void;
}

/** Handlers by the sub-ops' names. */
export function served<C extends Constants>(
  route: HypercallRoute<C>, handlers: Partial<Record<keyof C & string, OpHandler>>, check?: ServedOps['check'],
): ServedOps {
  const byNumber = new Map<number, OpHandler>();
  for (const [name, handler] of Object.entries(handlers) as [string, OpHandler][]) byNumber.set(route.constants[name], handler);
  return { route, handlers: byNumber, check };
}

/** The handler of a hypercall without sub-ops. */
export function servedWhole(route: HypercallRoute<Record<never, number>>, handler: OpHandler): ServedOps {
  return { route, handlers: new Map([[WHOLE, handler]]) };
}

/** Sends a call to the main thread; the value for the caller's RAX. */
export type Forward = (ctx: HypercallContext, hypercall: number, args: readonly bigint[]) => bigint;

/**
 * Registers with `dispatcher` every hypercall of `routes` that has an op served on `thread`, each op
 * answered by its handler in `served` or, on the vCPU thread, forwarded. Throws when `served` and the
 * table disagree (a handler missing for an op the thread serves, or given for one it does not): a
 * mistake in xenkvm, found when the VM is built.
 */
export function serveRoutes(dispatcher: HypercallDispatcher, thread: 'vcpu' | 'main', routes: readonly HypercallRoute[], served: readonly ServedOps[], forward?: Forward): void {
  const byHypercall = new Map(served.map((s) => [s.route.hypercall, s]));
  for (const s of served) if (!routes.includes(s.route)) throw new Error(`${hypercallName(s.route.hypercall)}: handlers for a route not in the table`);
  for (const route of routes) {
    const s = byHypercall.get(route.hypercall);
    const ops = new Map<number, HypercallHandler>();
    for (const [key, op] of route.ops) {
      const handler = s?.handlers.get(key);
      const here = thread === 'vcpu' ? op.thread !== 'main' : op.thread !== 'vcpu';
      if (here !== (handler !== undefined)) throw new Error(`${op.name}: ${here ? 'no handler' : 'a handler'} on the ${thread} thread, which its route ${here ? 'names' : 'does not name'}`);
      if (thread === 'main' || op.thread === 'vcpu') {
        if (handler) ops.set(key, handler as HypercallHandler);
        continue;
      }
      if (!forward) throw new Error(`${op.name} is forwarded, and the vCPU thread was given nowhere to forward it`);
      ops.set(key, op.thread === 'main' ? (ctx, args) => forward(ctx, route.hypercall, args) : (ctx, args) => handler!(ctx, args) ?? forward(ctx, route.hypercall, args));
    }
    for (const key of s?.handlers.keys() ?? []) if (!route.ops.has(key)) throw new Error(`${hypercallName(route.hypercall)} sub-op ${key}: a handler with no route`);
    if (ops.size === 0) continue;
    const check = s?.check;
    const subOp = route.subOp;
    // A sub-op Xen has and xenkvm lacks is reported (once, by the dispatcher); one Xen lacks too is not.
    const xenNames = new Map(Object.entries(route.constants).map(([name, op]) => [op, name]));
    const notXens = `no such ${hypercallName(route.hypercall)} sub-op in Xen either`;
    dispatcher.register(route.hypercall, (ctx, args) => {
      check?.(ctx, args);
      const op = subOp ? subOp(args) : WHOLE;
      const handler = op === undefined ? undefined : ops.get(op);
      if (!handler) {
        const name = op === undefined ? undefined : xenNames.get(op);
        throw name === undefined ? new XenError(XEN_ERRNO.ENOSYS, notXens) : new NotImplementedError(`${hypercallName(route.hypercall)} ${route.prefix}${name}`);
      }
      return handler(ctx, args) as number | bigint;
    });
  }
}

/** Every op of the table, as one list. */
export function allOps(routes: readonly HypercallRoute[]): OpRoute[] {
  return routes.flatMap((r) => [...r.ops.values()]);
}

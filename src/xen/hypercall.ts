// The hypercall dispatcher: decodes the calling convention of the guest's
// mode, refuses calls from CPL > 0, runs the subsystem's handler, and turns
// every failure into the Xen errno the guest gets in RAX — the one place that
// does so.
import type { Logger } from 'pino';
import { RateLimitedLog } from '../common/log.js';
import { GuestFaultError, type GuestVirtual } from '../memory/guest-virtual.js';
import { GuestMemoryError } from '../memory/guest-memory.js';
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL, hypercallName } from './abi/hypercalls.js';
import { nameOf } from './abi/layout.js';
import type { Abi } from './abi/layout.js';
import { NotImplementedError, XenError } from './errors.js';

export interface HypercallContext {
  readonly vcpu: number;
  /** The ABI of the guest's mode at the time of the call: native in 64-bit mode, compat otherwise. */
  readonly abi: Abi;
  /** The caller's view of guest-virtual memory, for pointer arguments. */
  readonly guest: GuestVirtual;
}

/** The struct a pointer argument addresses, copied in from the caller's memory. */
export function readArg<D extends { size: number; decode(bytes: Uint8Array): unknown }>(ctx: HypercallContext, def: D, arg: bigint): ReturnType<D['decode']> {
  return def.decode(ctx.guest.read(arg, def.size)) as ReturnType<D['decode']>;
}

/** Reads a 32-bit field (a port) from the caller's memory, without decoding a struct around it. */
export function readArgU32(ctx: HypercallContext, gva: bigint): number {
  return ctx.guest.readU32(gva);
}

/** Writes an output field of 32 bits (a port, a count) into the caller's memory. */
export function writeArgU32(ctx: HypercallContext, gva: bigint, value: number): void {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  ctx.guest.write(gva, bytes);
}

/** Returns the value for RAX (≥ 0) or throws XenError. */
export type HypercallHandler = (ctx: HypercallContext, args: readonly bigint[]) => number | bigint;

/** The five argument registers of each ABI, in order. */
export const ARGUMENT_REGISTERS = {
  native: ['rdi', 'rsi', 'rdx', 'r10', 'r8'],
  compat: ['rbx', 'rcx', 'rdx', 'rsi', 'rdi'],
} as const;

/**
 * Unimplemented numbers and sub-ops are each reported once, for the first this many: a guest can
 * name 2^32 of them, so past these only the rate limit bounds the lines and nothing more is kept.
 */
export const REPORTED_ONCE_MAX = 256;

export class HypercallDispatcher {
  private readonly handlers = new Map<number, HypercallHandler>();
  private readonly reported = new Set<string>();
  private readonly guestLog: RateLimitedLog;

  constructor(logger: Logger) {
    this.guestLog = new RateLimitedLog(logger);
  }

  register(nr: number, handler: HypercallHandler): void {
    if (this.handlers.has(nr)) throw new Error(`hypercall ${hypercallName(nr)} registered twice`);
    this.handlers.set(nr, handler);
  }

  /** The value for the guest's RAX; never throws, whatever the guest passed or a handler did. */
  dispatch(ctx: HypercallContext, cpl: number, nr: number, args: readonly bigint[]): bigint {
    if (cpl > 0) return BigInt(-XEN_ERRNO.EPERM);
    try {
      const handler = this.handlers.get(nr);
      if (!handler) {
        this.once(`${nr}`, `guest called hypercall ${nr} (${nameOf(HYPERCALL, nr) ?? 'not a Xen hypercall'}), which xenkvm does not implement; -ENOSYS`);
        return BigInt(-XEN_ERRNO.ENOSYS);
      }
      return BigInt(handler(ctx, args));
    } catch (e) {
      return this.failed(ctx, nr, args, e);
    }
  }

  private failed(ctx: HypercallContext, nr: number, args: readonly bigint[], e: unknown): bigint {
    if (e instanceof NotImplementedError) this.once(`${nr}/${e.op}`, `guest called ${e.op}, which xenkvm does not implement; -ENOSYS`);
    if (e instanceof XenError) return BigInt(-e.errno);
    if (e instanceof GuestFaultError || e instanceof GuestMemoryError) return BigInt(-XEN_ERRNO.EFAULT);
    // A bug in xenkvm must not take the VM down: the guest sees a failed call and the log says why.
    this.guestLog.error('internal', { vcpu: ctx.vcpu, hypercall: hypercallName(nr), err: (e as Error)?.message ?? String(e) }, 'hypercall failed inside xenkvm; returned -EINVAL');
    return BigInt(-XEN_ERRNO.EINVAL);
  }

  private once(key: string, message: string): void {
    if (this.reported.has(key)) return;
    if (this.reported.size < REPORTED_ONCE_MAX) this.reported.add(key);
    this.guestLog.warn('unimplemented', {}, message);
  }
}

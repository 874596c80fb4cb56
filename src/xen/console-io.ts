// console_io: the hypervisor's own console, a second way out for a guest
// besides its PV console ring. Xen lets a domain use it when the toolstack
// makes it the console domain; xenkvm's one guest is treated so. Writes are
// served on the calling vCPU's thread, to the same output as the guest's
// other consoles; reads take from the console input on the main thread.
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { CONSOLEIO } from './abi/xen.js';
import { XenError } from './errors.js';
import type { HypercallContext, HypercallDispatcher } from './hypercall.js';

/** Xen copies a write in pieces of this size. */
const CHUNK = 128;
/** A write past this much output is cut short: the rest would only flood the host (Xen preempts long writes instead). */
export const CONSOLEIO_WRITE_MAX = 64 * 1024;

export interface ConsoleIoDomain {
  /** Guest bytes for the console output; `truncated` is called for a write cut short at CONSOLEIO_WRITE_MAX. */
  output?: { write(bytes: Uint8Array): void; truncated(count: number): void };
  /** Console input: up to `max` bytes still queued (peek), then the count the guest took. */
  input?: { peek(max: number): Uint8Array; consume(count: number): void };
}

function write(ctx: HypercallContext, out: NonNullable<ConsoleIoDomain['output']>, count: number, buffer: bigint): number {
  const total = Math.min(count, CONSOLEIO_WRITE_MAX);
  for (let done = 0; done < total; done += CHUNK) out.write(ctx.guest.read(buffer + BigInt(done), Math.min(CHUNK, total - done)));
  if (count > total) out.truncated(count);
  return 0;
}

/**
 * console_io(cmd, count, buffer). A domain registers the halves it serves: the vCPU
 * threads write, the main thread reads; an op it lacks is forwarded.
 */
export function consoleIo(ctx: HypercallContext, d: ConsoleIoDomain, args: readonly bigint[]): number | undefined {
  const count = Number(args[1] & 0xffffffffn);
  switch (Number(args[0] & 0xffffffffn)) {
    case CONSOLEIO.write:
      return d.output ? write(ctx, d.output, count, args[2]) : undefined;
    case CONSOLEIO.read: {
      if (!d.input) return undefined;
      // The result is a count or an error: a count that reads as negative cannot be told apart.
      if (count > 0x7fffffff) throw new XenError(XEN_ERRNO.E2BIG);
      const bytes = d.input.peek(count);
      // Taken only once it is in the guest's buffer: a bad buffer (-EFAULT) loses no input.
      if (bytes.length > 0) ctx.guest.write(args[2], bytes);
      d.input.consume(bytes.length);
      return bytes.length;
    }
    default:
      throw new XenError(XEN_ERRNO.ENOSYS, 'no such console_io command');
  }
}

export function registerConsoleIo(dispatcher: HypercallDispatcher, d: ConsoleIoDomain, forward: (ctx: HypercallContext, args: readonly bigint[]) => number | bigint): void {
  dispatcher.register(HYPERCALL.console_io, (ctx, args) => consoleIo(ctx, d, args) ?? forward(ctx, args));
}

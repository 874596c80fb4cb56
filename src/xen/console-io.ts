// console_io: the hypervisor's own console, a second way out for a guest
// besides its PV console ring. Xen lets a domain use it when the toolstack
// makes it the console domain; xenkvm's one guest is treated so. Writes are
// served on the calling vCPU's thread, to the same output as the guest's
// other consoles; reads take from the console input on the main thread.
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { CONSOLEIO } from './abi/xen.js';
import { XenError } from './errors.js';
import type { HypercallContext } from './hypercall.js';
import { firstArgLow32, served, subOpRoute, type ServedOps } from './routes.js';

/** Xen copies a write in pieces of this size. */
const CHUNK = 128;
/** A write past this much output is cut short: the rest would only flood the host (Xen preempts long writes instead). */
export const CONSOLEIO_WRITE_MAX = 64 * 1024;

/** Guest bytes for the console output; `truncated` is called for a write cut short at CONSOLEIO_WRITE_MAX. */
export interface ConsoleOutput {
  write(bytes: Uint8Array): void;
  truncated(count: number): void;
}

/** Console input: up to `max` bytes still queued (peek), then the count the guest took. */
export interface ConsoleInputQueue {
  peek(max: number): Uint8Array;
  consume(count: number): void;
}

function write(ctx: HypercallContext, out: ConsoleOutput, count: number, buffer: bigint): number {
  const total = Math.min(count, CONSOLEIO_WRITE_MAX);
  for (let done = 0; done < total; done += CHUNK) out.write(ctx.guest.read(buffer + BigInt(done), Math.min(CHUNK, total - done)));
  if (count > total) out.truncated(count);
  return 0;
}

export const CONSOLE_IO_ROUTE = subOpRoute(HYPERCALL.console_io, firstArgLow32, 'CONSOLEIO_', CONSOLEIO, { write: 'vcpu', read: 'main' });

/** console_io(cmd, count, buffer): CONSOLEIO_write, on the calling vCPU's thread. */
export function consoleWriteOps(out: ConsoleOutput): ServedOps {
  return served(CONSOLE_IO_ROUTE, { write: (ctx, [, count, buffer]) => write(ctx, out, Number(count & 0xffffffffn), buffer) });
}

/** CONSOLEIO_read, on the main thread, where the input is. */
export function consoleReadOps(input: ConsoleInputQueue): ServedOps {
  return served(CONSOLE_IO_ROUTE, {
    read: (ctx, [, wideCount, buffer]) => {
      const count = Number(wideCount & 0xffffffffn);
      // The result is a count or an error: a count that reads as negative cannot be told apart.
      if (count > 0x7fffffff) throw new XenError(XEN_ERRNO.E2BIG);
      const bytes = input.peek(count);
      // Taken only once it is in the guest's buffer: a bad buffer (-EFAULT) loses no input.
      if (bytes.length > 0) ctx.guest.write(buffer, bytes);
      input.consume(bytes.length);
      return bytes.length;
    },
  });
}

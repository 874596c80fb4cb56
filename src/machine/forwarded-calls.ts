// Hypercalls the vCPU threads forward to the main thread, served one at a time
// with every vCPU held outside KVM_RUN. Whatever happens while one is served,
// its vCPU gets an answer and the calls queued after it are served: a failure
// inside xenkvm stops the VM with a clear reason instead of leaving a vCPU
// waiting for ever on its channel.
import { XEN_ERRNO } from '../xen/abi/errno.js';
import { hypercallName } from '../xen/abi/hypercalls.js';
import type { ForwardedHypercall } from '../xen/accelerator.js';

export interface ForwardedCallHost {
  /** Holds every vCPU outside KVM_RUN. */
  pause(): Promise<void>;
  resume(): void;
  /** The value for the caller's RAX. */
  dispatch(call: ForwardedHypercall): bigint;
  /** Stops the VM: xenkvm failed. */
  fail(message: string): void;
}

export class ForwardedCalls {
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly host: ForwardedCallHost) {}

  /** Queues `call`; the promise settles (never rejects) once `reply` has had its answer. */
  serve(call: ForwardedHypercall, reply: (value: bigint) => void): Promise<void> {
    let value = BigInt(-XEN_ERRNO.EINVAL);
    return this.whileHeld(`serving ${hypercallName(call.nr)} for vCPU ${call.vcpu}`, () => {
      value = this.host.dispatch(call);
    }, () => reply(value));
  }

  /**
   * Queues `work`, done with every vCPU held, in turn with the calls; `after` runs once it is done
   * or failed (`what` names it then, and the VM stops). The promise never rejects.
   */
  whileHeld(what: string, work: () => void, after: () => void = () => {}): Promise<void> {
    this.queue = this.queue.then(async () => {
      try {
        await this.host.pause();
        try {
          work();
        } finally {
          this.host.resume();
        }
      } catch (e) {
        this.host.fail(`${what} failed inside xenkvm: ${(e as Error)?.message ?? String(e)}`);
      } finally {
        after();
      }
    });
    return this.queue;
  }
}

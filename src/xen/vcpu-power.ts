// VCPUOP_initialise, _up and _down, served on the main thread because they
// act on another vCPU's thread: a vCPU brought up loads the context it was
// initialised with; one brought down stays out of KVM_RUN until it is
// brought up again.
import { XEN_ERRNO } from './abi/errno.js';
import { VCPUOP, vcpuHvmContext } from './abi/vcpu.js';
import type { DomainState } from './domain-state.js';
import { XenError } from './errors.js';
import type { HypercallContext } from './hypercall.js';
import { hvmContextToStart, type GuestCpuPolicy } from './vcpu-context.js';

/** What the machine does to a vCPU's thread. */
export interface VcpuPower {
  /** Lets the vCPU run (kicking it out of a wait for SIPI so it loads a start context). */
  run(vcpu: number): void;
  /** Keeps the vCPU out of KVM_RUN until run() is called. */
  down(vcpu: number): void;
}

export function vcpuPowerOp(ctx: HypercallContext, state: DomainState, power: VcpuPower, policy: GuestCpuPolicy, args: readonly bigint[]): number {
  const op = Number(args[0] & 0xffffffffn);
  const target = Number(args[1] & 0xffffffffn);
  if (target >= state.vcpuCount) throw new XenError(XEN_ERRNO.ENOENT);
  switch (op) {
    case VCPUOP.initialise: {
      const def = vcpuHvmContext[ctx.abi];
      const bytes = ctx.guest.read(args[2], def.size);
      hvmContextToStart(ctx.abi, bytes, policy); // refuses what Xen refuses, before anything changes
      if (state.isInitialised(target)) throw new XenError(XEN_ERRNO.EEXIST);
      state.setStartContext(target, ctx.abi, bytes);
      state.setInitialised(target);
      state.requestStart(target);
      return 0;
    }
    case VCPUOP.up:
      if (!state.isInitialised(target)) throw new XenError(XEN_ERRNO.EINVAL);
      if (!state.isUp(target)) {
        state.setUp(target, true);
        power.run(target);
      }
      return 0;
    case VCPUOP.down:
      if (state.isUp(target)) {
        state.setUp(target, false);
        power.down(target);
      }
      return 0;
    default:
      throw new XenError(XEN_ERRNO.ENOSYS);
  }
}

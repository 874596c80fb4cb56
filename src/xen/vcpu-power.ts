// VCPUOP_initialise, _up and _down, served on the main thread because they
// act on another vCPU's thread: a vCPU brought up loads the context it was
// initialised with; one brought down stays out of KVM_RUN until it is
// brought up again.
import { XEN_ERRNO } from './abi/errno.js';
import { vcpuHvmContext } from './abi/vcpu.js';
import type { DomainState } from './domain-state.js';
import { XenError } from './errors.js';
import { served, type ServedOps } from './routes.js';
import { checkVcpuOpTarget, VCPU_OP_ROUTE, vcpuOpTarget } from './vcpu.js';
import { hvmContextToStart, type GuestCpuPolicy } from './vcpu-context.js';

/** What the machine does to a vCPU's thread. */
export interface VcpuPower {
  /** Lets the vCPU run (kicking it out of a wait for SIPI so it loads a start context). */
  run(vcpu: number): void;
  /** Keeps the vCPU out of KVM_RUN until run() is called. */
  down(vcpu: number): void;
}

/** VCPUOP_initialise, _up and _down on the main thread. */
export function vcpuPowerOps(state: DomainState, power: VcpuPower, policy: GuestCpuPolicy): ServedOps {
  return served(VCPU_OP_ROUTE, {
    initialise: (ctx, args) => {
      const target = vcpuOpTarget(args);
      const def = vcpuHvmContext[ctx.abi];
      const bytes = ctx.guest.read(args[2], def.size);
      hvmContextToStart(ctx.abi, bytes, policy); // refuses what Xen refuses, before anything changes
      if (state.isInitialised(target)) throw new XenError(XEN_ERRNO.EEXIST);
      state.setStartContext(target, ctx.abi, bytes);
      state.setInitialised(target);
      state.requestStart(target);
      return 0;
    },
    up: (_ctx, args) => {
      const target = vcpuOpTarget(args);
      if (!state.isInitialised(target)) throw new XenError(XEN_ERRNO.EINVAL);
      if (!state.isUp(target)) {
        state.setUp(target, true);
        power.run(target);
      }
      return 0;
    },
    down: (_ctx, args) => {
      const target = vcpuOpTarget(args);
      if (state.isUp(target)) {
        state.setUp(target, false);
        power.down(target);
      }
      return 0;
    },
  }, checkVcpuOpTarget(state));
}

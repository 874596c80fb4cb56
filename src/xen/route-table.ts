// Every hypercall xenkvm serves, with the routes of its ops (routes.ts): the one table both
// dispatchers are built from, in hypercall-number order. A hypercall missing here is -ENOSYS.
import { CONSOLE_IO_ROUTE } from './console-io.js';
import { EVENT_CHANNEL_OP_ROUTE } from './evtchn/ops.js';
import { GRANT_TABLE_OP_ROUTE } from './gnttab/ops.js';
import { HVM_OP_ROUTE } from './hvm.js';
import { MEMORY_OP_ROUTE } from './memory.js';
import { allOps, type HypercallRoute } from './routes.js';
import { SCHED_OP_ROUTE } from './sched.js';
import { TOOLSTACK_ROUTES } from './toolstack-ops.js';
import { SET_TIMER_OP_ROUTE, VCPU_OP_ROUTE, VM_ASSIST_ROUTE } from './vcpu.js';
import { XEN_VERSION_ROUTE } from './version.js';

export const HYPERCALL_ROUTES: readonly HypercallRoute[] = [
  SET_TIMER_OP_ROUTE, MEMORY_OP_ROUTE, XEN_VERSION_ROUTE, CONSOLE_IO_ROUTE, VM_ASSIST_ROUTE, VCPU_OP_ROUTE, SCHED_OP_ROUTE,
  EVENT_CHANNEL_OP_ROUTE, GRANT_TABLE_OP_ROUTE, HVM_OP_ROUTE, ...TOOLSTACK_ROUTES,
].sort((a, b) => a.hypercall - b.hypercall);

/** Every Xen op of the table. */
export const XEN_OPS = allOps(HYPERCALL_ROUTES);

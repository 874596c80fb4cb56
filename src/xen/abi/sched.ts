// sched_op (hypercall 29): sub-ops, shutdown reasons and argument structs (sched.h).
import { both, handle, xstruct, type Abi } from './layout.js';

export const SCHEDOP = {
  yield: 0,
  block: 1,
  shutdown: 2,
  poll: 3,
  remote_shutdown: 4,
  shutdown_code: 5,
  watchdog: 6,
  pin_override: 7,
} as const;

/** sched_shutdown.reason. */
export const SHUTDOWN = {
  poweroff: 0,
  reboot: 1,
  suspend: 2,
  crash: 3,
  watchdog: 4,
  soft_reset: 5,
  MAX: 5,
} as const;

export const schedShutdown = both((abi) => xstruct('sched_shutdown', abi, { reason: 'u32' }));

/** native 24 bytes, compat 16: the handle is 4 bytes and timeout only 4-aligned. */
const defSchedPoll = <A extends Abi>(abi: A) =>
  xstruct('sched_poll', abi, {
    /** evtchn_port_t[nr_ports] */
    ports: handle(abi),
    nr_ports: 'u32',
    /** Absolute system time (ns); 0: no timeout. */
    timeout: 'u64',
  });
export const schedPoll = { native: defSchedPoll('native'), compat: defSchedPoll('compat') } as const;

export const schedRemoteShutdown = both((abi) => xstruct('sched_remote_shutdown', abi, { domain_id: 'u16', reason: 'u32' }));

export const schedWatchdog = both((abi) => xstruct('sched_watchdog', abi, { id: 'u32', timeout: 'u32' }));

export const schedPinOverride = both((abi) => xstruct('sched_pin_override', abi, { pcpu: 'i32' }));

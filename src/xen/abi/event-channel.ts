// event_channel_op (hypercall 32): sub-ops, argument structs, VIRQs and the
// 2-level and FIFO ABIs (event_channel.h, xen.h). Every argument struct has
// the same layout in both ABIs.
import { both, xstruct, type PerAbi } from './layout.js';

export const EVTCHNOP = {
  bind_interdomain: 0,
  bind_virq: 1,
  bind_pirq: 2,
  close: 3,
  send: 4,
  status: 5,
  alloc_unbound: 6,
  bind_ipi: 7,
  bind_vcpu: 8,
  unmask: 9,
  reset: 10,
  init_control: 11,
  expand_array: 12,
  set_priority: 13,
} as const;

/** Virtual IRQs for EVTCHNOP_bind_virq. */
export const VIRQ = {
  TIMER: 0,
  DEBUG: 1,
  CONSOLE: 2,
  DOM_EXC: 3,
  TBUF: 4,
  DEBUGGER: 6,
  XENOPROF: 7,
  CON_RING: 8,
  PCPU_STATE: 9,
  MEM_EVENT: 10,
  ARGO: 11,
  ENOMEM: 12,
  XENPMU: 13,
  ARCH_0: 16,
  ARCH_1: 17,
  ARCH_2: 18,
  ARCH_3: 19,
  ARCH_4: 20,
  ARCH_5: 21,
  ARCH_6: 22,
  ARCH_7: 23,
} as const;
export const NR_VIRQS = 24;

/** VIRQs bound on each vCPU; the rest (the arch ones included, on x86) are global, bound once on vCPU 0 and kept in its table. */
const PER_VCPU_VIRQS: ReadonlySet<number> = new Set<number>([VIRQ.TIMER, VIRQ.DEBUG, VIRQ.XENOPROF, VIRQ.XENPMU]);
export const virqIsGlobal = (virq: number) => !PER_VCPU_VIRQS.has(virq);

/** evtchn_status.status. */
export const EVTCHNSTAT = { closed: 0, unbound: 1, interdomain: 2, pirq: 3, virq: 4, ipi: 5 } as const;

/** evtchn_bind_pirq.flags. */
export const BIND_PIRQ__WILL_SHARE = 1;

/** Ports the 2-level ABI can address: (bits per word)^2. */
export const EVTCHN_2L_NR_CHANNELS: PerAbi<number> = { native: 4096, compat: 1024 };

export const evtchnAllocUnbound = both((abi) => xstruct('evtchn_alloc_unbound', abi, { dom: 'u16', remote_dom: 'u16', port: 'u32' }));
export const evtchnBindInterdomain = both((abi) =>
  xstruct('evtchn_bind_interdomain', abi, { remote_dom: 'u16', remote_port: 'u32', local_port: 'u32' }),
);
export const evtchnBindVirq = both((abi) => xstruct('evtchn_bind_virq', abi, { virq: 'u32', vcpu: 'u32', port: 'u32' }));
export const evtchnBindPirq = both((abi) => xstruct('evtchn_bind_pirq', abi, { pirq: 'u32', flags: 'u32', port: 'u32' }));
export const evtchnBindIpi = both((abi) => xstruct('evtchn_bind_ipi', abi, { vcpu: 'u32', port: 'u32' }));
export const evtchnClose = both((abi) => xstruct('evtchn_close', abi, { port: 'u32' }));
export const evtchnSend = both((abi) => xstruct('evtchn_send', abi, { port: 'u32' }));
export const evtchnStatus = both((abi) =>
  xstruct('evtchn_status', abi, {
    dom: 'u16',
    port: 'u32',
    status: 'u32',
    vcpu: 'u32',
    /** Union by status: unbound/interdomain per evtchnStatusU; pirq or virq a u32 at its start. */
    u: { bytes: 8, align: 4 },
  }),
);
/** The members of evtchn_status.u, at offsets.u. */
export const evtchnStatusU = {
  unbound: both((abi) => xstruct('evtchn_status.u.unbound', abi, { dom: 'u16' })),
  interdomain: both((abi) => xstruct('evtchn_status.u.interdomain', abi, { dom: 'u16', port: 'u32' })),
} as const;
export const evtchnBindVcpu = both((abi) => xstruct('evtchn_bind_vcpu', abi, { port: 'u32', vcpu: 'u32' }));
export const evtchnUnmask = both((abi) => xstruct('evtchn_unmask', abi, { port: 'u32' }));
export const evtchnReset = both((abi) => xstruct('evtchn_reset', abi, { dom: 'u16' }));
export const evtchnInitControl = both((abi) =>
  xstruct('evtchn_init_control', abi, {
    control_gfn: 'u64',
    offset: 'u32',
    vcpu: 'u32',
    link_bits: 'u8',
    _pad: { array: 'u8', count: 7 },
  }),
);
export const evtchnExpandArray = both((abi) => xstruct('evtchn_expand_array', abi, { array_gfn: 'u64' }));
export const evtchnSetPriority = both((abi) => xstruct('evtchn_set_priority', abi, { port: 'u32', priority: 'u32' }));

/** FIFO ABI: priorities, event word bits (event_word_t is u32) and sizes. */
export const EVTCHN_FIFO = {
  PRIORITY_MAX: 0,
  PRIORITY_DEFAULT: 7,
  PRIORITY_MIN: 15,
  MAX_QUEUES: 16,
  PENDING: 31,
  MASKED: 30,
  LINKED: 29,
  BUSY: 28,
  LINK_BITS: 17,
  LINK_MASK: (1 << 17) - 1,
  NR_CHANNELS: 1 << 17,
} as const;

/** Per-vCPU control block at control_gfn:offset. */
export const evtchnFifoControlBlock = both((abi) =>
  xstruct('evtchn_fifo_control_block', abi, { ready: 'u32', _rsvd: 'u32', head: { array: 'u32', count: EVTCHN_FIFO.MAX_QUEUES } }),
);

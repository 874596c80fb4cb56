// Facts from xen.h that belong to no single sub-op: domain ids, vm_assist,
// console_io, multicall entries.
import { xstruct, ulong, type Abi } from './layout.js';

/** Reserved domain ids (domid_t is u16). */
export const DOMID = {
  FIRST_RESERVED: 0x7ff0,
  SELF: 0x7ff0,
  IO: 0x7ff1,
  XEN: 0x7ff2,
  COW: 0x7ff3,
  INVALID: 0x7ff4,
  IDLE: 0x7fff,
  MASK: 0x7fff,
} as const;

/** vCPUs whose vcpu_info lives in shared_info; later ones must register one elsewhere. */
export const XEN_LEGACY_MAX_VCPUS = 32;

/** vm_assist(cmd, type). */
export const VMASST_CMD = { enable: 0, disable: 1 } as const;
export const VMASST_TYPE = {
  '4gb_segments': 0,
  '4gb_segments_notify': 1,
  writable_pagetables: 2,
  pae_extended_cr3: 3,
  architectural_iopl: 4,
  /** XEN_RUNSTATE_UPDATE is set in state_entry_time while the runstate area is rewritten. */
  runstate_update_flag: 5,
  m2p_strict: 32,
} as const;

/** console_io(cmd, count, buffer). */
export const CONSOLEIO = { write: 0, read: 1 } as const;

/** multicall(entries, nr): op, result and six arguments, each a xen_ulong_t. */
const defMulticallEntry = <A extends Abi>(abi: A) =>
  xstruct('multicall_entry', abi, { op: ulong(abi), result: ulong(abi), args: { array: ulong(abi), count: 6 } });
export const multicallEntry = { native: defMulticallEntry('native'), compat: defMulticallEntry('compat') } as const;

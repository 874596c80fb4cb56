// The toolstack's hypercalls (sysctl.h, domctl.h, platform.h, hvm/dm_op.h):
// only what refusing a domU's call the way Xen refuses it needs.
import { both, handle, ulong, xstruct, type PerAbi } from './layout.js';

export const XEN_SYSCTL_INTERFACE_VERSION = 0x15;
export const XEN_DOMCTL_INTERFACE_VERSION = 0x15;
export const XENPF_INTERFACE_VERSION = 0x03000001;

/** The XEN_DOMCTL_* commands whose refusal differs from the rest. */
export const XEN_DOMCTL = { createdomain: 1, getdomaininfo: 5, shadow_op: 10 } as const;

/** Bytes Xen copies in before looking at a call: the whole struct. */
export const XEN_SYSCTL_SIZE: PerAbi<number> = { native: 136, compat: 136 };
export const XEN_DOMCTL_SIZE: PerAbi<number> = { native: 144, compat: 144 };
export const XEN_PLATFORM_OP_SIZE: PerAbi<number> = { native: 136, compat: 136 };

/** All three structs start with cmd (u32) and interface_version (u32); xen_domctl's domain (u16) follows. */
export const TOOLSTACK_INTERFACE_VERSION_OFFSET = 4;
export const XEN_DOMCTL_DOMAIN_OFFSET = 8;

/** HYPERVISOR_dm_op takes at most this many buffers. */
export const DM_OP_MAX_BUFS = 2;
export const xenDmOpBuf = both((abi) => xstruct('xen_dm_op_buf', abi, { h: handle(abi), size: ulong(abi) }));

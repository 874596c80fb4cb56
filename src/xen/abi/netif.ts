// The PV network device's shared rings (io/netif.h): transmit and receive
// requests and responses, the extra-info slots that follow a request (GSO,
// multicast, hash), and their flags; the control ring's requests and
// responses, and the hash types and algorithms it sets. No member is wider than 32 bits, so a
// 32-bit frontend's layouts are a 64-bit one's.
import { both, xstruct } from './layout.js';

/** Flags of a transmit request (guest to backend). */
export const NETTXF = { csum_blank: 1, data_validated: 2, more_data: 4, extra_info: 8 } as const;
/** Flags of a receive response (backend to guest). */
export const NETRXF = { data_validated: 1, csum_blank: 2, more_data: 4, extra_info: 8, gso_prefix: 16 } as const;

export const XEN_NETIF_EXTRA_TYPE = { NONE: 0, GSO: 1, MCAST_ADD: 2, MCAST_DEL: 3, HASH: 4, MAX: 5 } as const;
export const XEN_NETIF_EXTRA_FLAG = { MORE: 1 } as const;
export const XEN_NETIF_GSO_TYPE = { NONE: 0, TCPV4: 1, TCPV6: 2 } as const;

export const NETIF_RSP = { DROPPED: -2, ERROR: -1, OKAY: 0, NULL: 1 } as const;

/** The slots a packet may take that every backend must accept. */
export const XEN_NETIF_NR_SLOTS_MIN = 18;
/** The largest packet a transmit request may describe (its size field is 16 bits). */
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

export const netifTxRequest = both((abi) => xstruct('netif_tx_request', abi, { gref: 'u32', offset: 'u16', flags: 'u16', id: 'u16', size: 'u16' }));
export const netifTxResponse = both((abi) => xstruct('netif_tx_response', abi, { id: 'u16', status: 'i16' }));
export const netifRxRequest = both((abi) => xstruct('netif_rx_request', abi, { id: 'u16', pad: 'u16', gref: 'u32' }));
export const netifRxResponse = both((abi) => xstruct('netif_rx_response', abi, { id: 'u16', offset: 'u16', flags: 'u16', status: 'i16' }));
/** An extra-info slot; `u` is a GSO descriptor (size, type, pad, features), a MAC address or a hash, by `type`. */
export const netifExtraInfo = both((abi) => xstruct('netif_extra_info', abi, { type: 'u8', flags: 'u8', u: { bytes: 6, align: 2 } }));

/** A ring slot holds a request or a response (a union): the larger. */
export const NETIF_TX_RING_ENTRY_SIZE = 12;
export const NETIF_RX_RING_ENTRY_SIZE = 8;

/** Control requests' types. */
export const XEN_NETIF_CTRL_TYPE = {
  INVALID: 0, GET_HASH_FLAGS: 1, SET_HASH_FLAGS: 2, SET_HASH_KEY: 3, GET_HASH_MAPPING_SIZE: 4, SET_HASH_MAPPING_SIZE: 5,
  SET_HASH_MAPPING: 6, SET_HASH_ALGORITHM: 7, GET_GREF_MAPPING_SIZE: 8, ADD_GREF_MAPPING: 9, DEL_GREF_MAPPING: 10,
} as const;
/** Control responses' statuses. */
export const XEN_NETIF_CTRL_STATUS = { SUCCESS: 0, NOT_SUPPORTED: 1, INVALID_PARAMETER: 2, BUFFER_OVERFLOW: 3 } as const;
/** Hash types, as flags (SET_HASH_FLAGS, GET_HASH_FLAGS). */
export const XEN_NETIF_CTRL_HASH_TYPE = { IPV4: 1, IPV4_TCP: 2, IPV6: 4, IPV6_TCP: 8 } as const;
/** The same types as bit numbers: what a hash extra-info slot's htype says. */
export const XEN_NETIF_CTRL_HASH_TYPE_BIT = { IPV4: 0, IPV4_TCP: 1, IPV6: 2, IPV6_TCP: 3 } as const;
export const XEN_NETIF_CTRL_HASH_ALGORITHM = { NONE: 0, TOEPLITZ: 1 } as const;

export const xenNetifCtrlRequest = both((abi) => xstruct('xen_netif_ctrl_request', abi, { id: 'u16', type: 'u16', data: { array: 'u32', count: 3 } }));
export const xenNetifCtrlResponse = both((abi) => xstruct('xen_netif_ctrl_response', abi, { id: 'u16', type: 'u16', status: 'u32', data: 'u32' }));
/** A control ring's slot: a request (the larger). */
export const NETIF_CTRL_RING_ENTRY_SIZE = 16;

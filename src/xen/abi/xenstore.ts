// XenStore's wire protocol and the shared page a domain talks to it through
// (io/xs_wire.h). Every message is a 16-byte header and up to 4096 bytes of
// payload, the same in both ABIs.
import { both, xstruct } from './layout.js';

/** xsd_sockmsg.type. */
export const XS = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
  TYPE_COUNT: 23,
  INVALID: 0xffff,
} as const;

/** The error names an XS_ERROR reply carries (xsd_errors, in the header's order). */
export const XSD_ERRORS = [
  'EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO', 'ENOTEMPTY', 'ENOSYS', 'EROFS', 'EBUSY',
  'EAGAIN', 'EISCONN', 'E2BIG', 'EPERM',
] as const;
export type XsdError = (typeof XSD_ERRORS)[number];

/** The two strings of an XS_WATCH_EVENT payload, in order. */
export const XS_WATCH = { PATH: 0, TOKEN: 1 } as const;

export const XENSTORE_RING_SIZE = 1024;
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/** xenstore_domain_interface.server_features bits. */
export const XENSTORE_SERVER_FEATURE = { RECONNECTION: 1, ERROR: 2 } as const;
/** xenstore_domain_interface.connection. */
export const XENSTORE_CONNECTION = { CONNECTED: 0, RECONNECT: 1 } as const;
/** xenstore_domain_interface.error. */
export const XENSTORE_ERROR = { NONE: 0, COMM: 1, RINGIDX: 2, PROTO: 3 } as const;

export const xsdSockmsg = both((abi) => xstruct('xsd_sockmsg', abi, { type: 'u32', req_id: 'u32', tx_id: 'u32', len: 'u32' }));

/** The XenStore page: requests from the guest, replies and watch events to it. */
export const xenstoreDomainInterface = both((abi) =>
  xstruct('xenstore_domain_interface', abi, {
    req: { array: 'u8', count: XENSTORE_RING_SIZE },
    rsp: { array: 'u8', count: XENSTORE_RING_SIZE },
    req_cons: 'u32',
    req_prod: 'u32',
    rsp_cons: 'u32',
    rsp_prod: 'u32',
    server_features: 'u32',
    connection: 'u32',
    error: 'u32',
  }),
);

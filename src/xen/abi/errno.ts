// Xen's errno values (xen/errno.h), positive. A hypercall fails by returning
// the negated value in eax/rax: use xenError().

export const XEN_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  /** Xen-internal: never returned to a guest. */
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  EWOULDBLOCK: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  EDOM: 33,
  ERANGE: 34,
  EDEADLK: 35,
  EDEADLOCK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ENODATA: 61,
  ETIME: 62,
  EBADMSG: 74,
  EOVERFLOW: 75,
  EILSEQ: 84,
  /** Xen-internal: a hypercall to be restarted (continuation); never returned to a guest. */
  ERESTART: 85,
  ENOTSOCK: 88,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
} as const;

export type XenErrnoName = keyof typeof XEN_ERRNO;

/** Values only the hypervisor itself uses (errno.h puts them under __XEN__). */
export const XEN_ERRNO_INTERNAL: readonly XenErrnoName[] = ['EINTR', 'ERESTART'];

/** The hypercall return value for an error: -errno. */
export function xenError(name: XenErrnoName): number {
  return -XEN_ERRNO[name];
}

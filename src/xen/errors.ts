// A guest-visible hypercall failure: the Xen errno the guest gets back
// (negated in RAX). Only the dispatcher turns it into a value.
export class XenError extends Error {
  override name = 'XenError';
  constructor(
    /** Positive Xen errno (xen/errno.h). */
    readonly errno: number,
    /** Why, when Xen itself gives this answer; without one, -ENOSYS means xenkvm lacks the operation. */
    readonly reason?: string,
  ) {
    super(reason ?? `Xen errno ${errno}`);
  }
}

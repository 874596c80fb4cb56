// A guest-visible hypercall failure: the Xen errno the guest gets back
// (negated in RAX). Only the dispatcher turns it into a value.
export class XenError extends Error {
  override name = 'XenError';
  constructor(
    /** Positive Xen errno (xen/errno.h). */
    readonly errno: number,
    message?: string,
  ) {
    super(message ?? `Xen errno ${errno}`);
  }
}

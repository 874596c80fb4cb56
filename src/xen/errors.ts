// A guest-visible hypercall failure: the Xen errno the guest gets back
// (negated in RAX). Only the dispatcher turns it into a value.
import { XEN_ERRNO } from './abi/errno.js';

export class XenError extends Error {
  override name = 'XenError';
  constructor(
    /** Positive Xen errno (xen/errno.h). */
    readonly errno: number,
    /** Why, when Xen itself gives this answer. */
    readonly reason?: string,
  ) {
    super(reason ?? `Xen errno ${errno}`);
  }
}

/** -ENOSYS for an op Xen has and xenkvm lacks, named as Xen names it: the dispatcher reports it once. */
export class NotImplementedError extends XenError {
  override name = 'NotImplementedError';
  constructor(readonly op: string) {
    super(XEN_ERRNO.ENOSYS, `${op} is not implemented`);
  }
}

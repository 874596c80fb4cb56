import type { XsdError } from '../xen/abi/xenstore.js';

/** A request refused with one of xenstored's error names; the engine answers it as XS_ERROR. */
export class XsError extends Error {
  override name = 'XsError';
  constructor(readonly code: XsdError) {
    super(code);
  }
}

const shared = new Map<XsdError, XsError>();

/**
 * Throws the one shared XsError for `code`. Constructing an Error costs
 * microseconds (the stack trace) and guests fail requests routinely (probing
 * for nodes), so the engine reuses one per code; the VMM API rethrows fresh
 * ones for its callers.
 */
export function fail(code: XsdError): never {
  let e = shared.get(code);
  if (e === undefined) shared.set(code, (e = new XsError(code)));
  throw e;
}

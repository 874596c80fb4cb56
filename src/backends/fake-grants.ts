// For the backends' tests: pages a make-believe frontend (domain FRONT) grants
// domain 0, mapped as GrantedPages maps them (all refs or none, read-only ones
// refused for writing), with a count of live mappings per ref.
import assert from 'node:assert/strict';
import { DeviceError, type GrantedPages } from './xenbus.js';

export const FRONT = 1;

export function fakeGrants() {
  const pages = new Map<number, { page: Uint8Array; readonly: boolean }>();
  /** Mappings not yet let go, by ref. */
  const mapped = new Map<number, number>();
  const grants: GrantedPages = {
    map(domid, refs, writable) {
      assert.equal(domid, FRONT);
      for (const ref of refs) {
        const g = pages.get(ref);
        if (!g) throw new DeviceError(`grant reference ${ref} cannot be mapped (GNTST_general_error)`);
        if (writable && g.readonly) throw new DeviceError(`grant reference ${ref} is read-only`);
      }
      for (const ref of refs) mapped.set(ref, (mapped.get(ref) ?? 0) + 1);
      let live = true;
      return {
        page: (i) => pages.get(refs[i])!.page,
        unmap: () => {
          if (!live) return;
          live = false;
          for (const ref of refs) mapped.set(ref, mapped.get(ref)! - 1);
        },
      };
    },
  };
  return {
    grants,
    mapped,
    /** Grants `page` (a fresh one unless given: a view of a larger memory) as `ref`, holding `bytes` if given; the page. */
    grant(ref: number, bytes?: Uint8Array, readonly = false, page: Uint8Array = new Uint8Array(4096)): Uint8Array {
      if (bytes) page.set(bytes);
      pages.set(ref, { page, readonly });
      return page;
    },
  };
}

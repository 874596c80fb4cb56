// XenStore path rules (docs/misc/xenstore.txt, xenstored_core.c
// is_valid_nodename and canonicalize): absolute paths of [A-Za-z0-9-/_@],
// no empty component, no trailing slash but the root's; relative paths are
// taken from /local/domain/<domid>; "@..." names only special watch events.

const SHAPE = /^(?:\/|(?:\/[A-Za-z0-9\-_@]+)+)$/;
// xenstored's sscanf("/local/domain/%5u/"): a per-domain prefix that the length quota does not count.
const DOMAIN_PREFIX = /^\/local\/domain\/(-?\d+)\//;

export const SPECIAL_INTRODUCE = '@introduceDomain';
export const SPECIAL_RELEASE = '@releaseDomain';

export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

/** The absolute form of a path a domain sent; special (@) names and absolute paths stay as they are. */
export function canonicalize(domid: number, path: string): string {
  return path[0] === '/' || path[0] === '@' ? path : `${domainPath(domid)}/${path}`;
}

/**
 * A valid node name: its shape, and at most `maxLength` characters after a
 * /local/domain/<domid>/ prefix (xenstored 4.17 applies XENSTORE_REL_PATH_MAX
 * this way to every path, absolute or not).
 */
export function isValidNodePath(path: string, maxLength: number): boolean {
  if (!SHAPE.test(path)) return false;
  const prefix = DOMAIN_PREFIX.exec(path);
  const skipped = prefix !== null && prefix[1]!.length <= 5 ? prefix[0].length : 0;
  return path.length <= skipped + maxLength;
}

/** The parent of a node path; the root is its own parent, as in xenstored's get_parent. */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** The watch paths an event on `path` matches when it is not exact: the path itself and each ancestor up to "/" (xenstored's is_child). */
export function watchPathsMatching(path: string): string[] {
  const out = [path];
  if (path[0] === '@') {
    out.push('/');
    return out;
  }
  for (let p = path; p !== '/'; ) {
    p = parentOf(p);
    out.push(p);
  }
  return out;
}

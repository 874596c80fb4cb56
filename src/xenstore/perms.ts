// XenStore permissions (docs/misc/xenstore.txt, xenstored_core.c perm_for_conn):
// a node's first entry names its owner and the access of every domain not
// listed after it; domain 0 and the owner may do anything; a domain that
// SET_TARGET pointed at another acts as that domain's owner and inherits the
// entries naming it.
import { strtol } from './payload.js';

export interface Perm {
  domid: number;
  access: 'n' | 'r' | 'w' | 'b';
}

export const PERM_READ = 1;
export const PERM_WRITE = 2;
export const PERM_OWNER = 8;
const PERM_ALL = PERM_READ | PERM_WRITE | PERM_OWNER;

const ACCESS_BITS = { n: 0, r: PERM_READ, w: PERM_WRITE, b: PERM_READ | PERM_WRITE } as const;

/** Who asks: a connection's domain (or the VMM as domain 0) and the domain it targets, if any. */
export interface Actor {
  readonly domid: number;
  readonly target: number | undefined;
}

export const VMM_ACTOR: Actor = { domid: 0, target: undefined };

/** Domain 0 is the only privileged domain here (xenstored's dom0_domid and priv_domid). */
export function isPrivileged(domid: number): boolean {
  return domid === 0;
}

/** The PERM_* bits `actor` has on a node with `perms`. */
export function permFor(actor: Actor, perms: readonly Perm[]): number {
  const { domid, target } = actor;
  const owner = perms[0]!.domid;
  if (isPrivileged(domid) || owner === domid || (target !== undefined && owner === target)) return PERM_ALL;
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i]!;
    if (p.domid === domid || (target !== undefined && p.domid === target)) return ACCESS_BITS[p.access];
  }
  return ACCESS_BITS[perms[0]!.access];
}

export function canRead(actor: Actor, perms: readonly Perm[]): boolean {
  return (permFor(actor, perms) & PERM_READ) !== 0;
}

/** "b5" and the like, as GET_PERMS returns them. */
export function permString(p: Perm): string {
  return `${p.access}${p.domid}`;
}

/** One SET_PERMS entry, read as xenstored's xs_strings_to_perms reads it (strtol base 0, domid kept as unsigned); undefined if malformed. */
export function parsePerm(s: string): Perm | undefined {
  const access = s[0];
  if (access !== 'n' && access !== 'r' && access !== 'w' && access !== 'b') return undefined;
  const digits = s.slice(1);
  const { value, end } = strtol(digits, 0);
  if (digits.length === 0 || end !== digits.length) return undefined;
  return { domid: Number(BigInt.asUintN(32, value)), access };
}

/** A Perm list from the VMM, checked; undefined if it is not one. */
export function validPerms(perms: readonly Perm[]): Perm[] | undefined {
  if (perms.length === 0) return undefined;
  const out: Perm[] = [];
  for (const p of perms) {
    if (!Number.isInteger(p.domid) || p.domid < 0 || p.domid > 0xffffffff || !Object.hasOwn(ACCESS_BITS, p.access)) return undefined;
    out.push({ domid: p.domid, access: p.access });
  }
  return out;
}

// The node operations (xenstored_core.c do_read, do_write, do_mkdir, do_rm,
// do_set_perms and their helpers), written once against a NodeView so that
// they run the same on the live store and inside a transaction.
import { fail } from './errors.js';
import { baseName, childPath, parentOf } from './paths.js';
import { type Actor, isPrivileged, type Perm, PERM_OWNER, PERM_WRITE, permFor } from './perms.js';
import type { Quotas } from './quotas.js';
import { makeNode, type Node } from './tree.js';
import type { NodeView } from './view.js';

export interface OpContext {
  readonly actor: Actor;
  readonly view: NodeView;
  readonly quotas: Quotas;
}

const EMPTY = new Uint8Array(0);

/**
 * The node at `path` if `actor` has all of `want` on it (xenstored's get_node),
 * else why not. A missing node is ENOENT only to a domain the nearest existing
 * ancestor grants some of `want`; to others it is EACCES, which says nothing
 * about whether the node exists.
 */
function lookup(ctx: OpContext, path: string, want: number): Node | 'EACCES' | 'ENOENT' {
  const node = ctx.view.get(path);
  if (node !== undefined) return (permFor(ctx.actor, node.perms) & want) === want ? node : 'EACCES';
  if (isPrivileged(ctx.actor.domid)) return 'ENOENT';
  return (permFor(ctx.actor, nearestAncestor(ctx.view, path).perms) & want) !== 0 ? 'ENOENT' : 'EACCES';
}

export function getNode(ctx: OpContext, path: string, want: number): Node {
  const node = lookup(ctx, path, want);
  if (typeof node === 'string') fail(node);
  return node;
}

/** Like getNode, but a missing node is undefined where getNode says ENOENT. */
function findNode(ctx: OpContext, path: string, want: number): Node | undefined {
  const node = lookup(ctx, path, want);
  if (node === 'ENOENT') return undefined;
  if (node === 'EACCES') fail(node);
  return node;
}

function nearestAncestor(view: NodeView, path: string): Node {
  for (let p = parentOf(path); ; p = parentOf(p)) {
    const node = view.get(p);
    // The root always exists: nothing removes it.
    if (node !== undefined || p === '/') return node!;
  }
}

function childBytes(children: readonly string[]): number {
  let n = 0;
  for (const c of children) n += c.length + 1;
  return n;
}

/** xenstored's record-size quota: its header, 8 bytes per permission, the value and the child names with their NULs. */
function checkEntrySize(ctx: OpContext, perms: number, valueLength: number, childLength: number): void {
  if (isPrivileged(ctx.actor.domid)) return;
  if (24 + 8 * perms + valueLength + childLength >= ctx.quotas.entrySize) fail('ENOSPC');
}

/**
 * Creates `path` and its missing ancestors below the nearest existing one,
 * which each inherit that ancestor's permissions; an unprivileged creator owns
 * them. Checks every quota before changing anything.
 */
function createNode(ctx: OpContext, path: string, value: Uint8Array): Node {
  const { view, actor } = ctx;
  const missing = [path];
  let parentPath = parentOf(path);
  let parent = view.get(parentPath);
  while (parent === undefined) {
    missing.push(parentPath);
    parentPath = parentOf(parentPath);
    parent = view.get(parentPath);
  }
  const perms: readonly Perm[] = isPrivileged(actor.domid)
    ? parent.perms
    : [{ domid: actor.domid, access: parent.perms[0]!.access }, ...parent.perms.slice(1)];
  const topName = baseName(missing[missing.length - 1]!);
  if (!isPrivileged(actor.domid)) {
    if (view.nodesOwnedBy(actor.domid) + missing.length > ctx.quotas.nodesPerDomain) fail('ENOSPC');
    checkEntrySize(ctx, perms.length, value.length, 0);
    for (let i = 1; i < missing.length; i++) checkEntrySize(ctx, perms.length, 0, baseName(missing[i - 1]!).length + 1);
    checkEntrySize(ctx, parent.perms.length, parent.value.length, childBytes(parent.children) + topName.length + 1);
  }
  // Bottom-up, as xenstored writes them: the new leaf gets the oldest generation.
  let leaf: Node | undefined;
  let below: string | undefined;
  for (const p of missing) {
    const node = makeNode(view.nextGeneration(), below === undefined ? value : EMPTY, perms, below === undefined ? [] : [below]);
    view.set(p, node);
    leaf ??= node;
    below = baseName(p);
  }
  view.set(parentPath, makeNode(view.nextGeneration(), parent.value, parent.perms, [...parent.children, topName]));
  view.addOwnedNodes(perms[0]!.domid, missing.length);
  return leaf!;
}

export function write(ctx: OpContext, path: string, value: Uint8Array): void {
  const old = findNode(ctx, path, PERM_WRITE);
  let node: Node;
  if (old === undefined) node = createNode(ctx, path, value);
  else {
    checkEntrySize(ctx, old.perms.length, value.length, childBytes(old.children));
    node = makeNode(ctx.view.nextGeneration(), value, old.perms, old.children);
    ctx.view.set(path, node);
  }
  ctx.view.changed(path, 'subtree', node);
}

export function mkdir(ctx: OpContext, path: string): void {
  if (findNode(ctx, path, PERM_WRITE) !== undefined) return;
  const node = createNode(ctx, path, EMPTY);
  ctx.view.changed(path, 'subtree', node);
}

/** RM: deletes the node and everything below it; a missing node is fine if its parent exists. */
export function rm(ctx: OpContext, path: string): void {
  if (findNode(ctx, path, PERM_WRITE) === undefined) {
    if (ctx.view.get(parentOf(path)) === undefined) fail('ENOENT');
    return;
  }
  if (path === '/') fail('EINVAL');
  removeSubtree(ctx.view, path);
}

/**
 * Deletes an existing node and its descendants without permission checks
 * (xenstored's rm_node): children first, each firing the watches on exactly
 * its path before it goes, the node itself firing those on it and above.
 */
export function removeSubtree(view: NodeView, path: string): void {
  const parentPath = parentOf(path);
  const parent = view.get(parentPath)!;
  deleteTree(view, path, view.get(path)!, 'subtree');
  const name = baseName(path);
  const children = parent.children.filter((c) => c !== name);
  view.set(parentPath, makeNode(view.nextGeneration(), parent.value, parent.perms, children));
}

function deleteTree(view: NodeView, path: string, node: Node, match: 'exact' | 'subtree'): void {
  for (const name of node.children) {
    const p = childPath(path, name);
    const child = view.get(p);
    if (child !== undefined) deleteTree(view, p, child, 'exact');
  }
  view.changed(path, match, node);
  view.delete(path);
  view.addOwnedNodes(node.perms[0]!.domid, -1);
}

/** SET_PERMS on a node: its owner, a target of the owner, or domain 0; only domain 0 may give it away. */
export function setPerms(ctx: OpContext, path: string, perms: readonly Perm[]): void {
  const old = getNode(ctx, path, PERM_WRITE | PERM_OWNER);
  const oldOwner = old.perms[0]!.domid;
  const newOwner = perms[0]!.domid;
  if (!isPrivileged(ctx.actor.domid) && newOwner !== oldOwner) fail('EPERM');
  checkEntrySize(ctx, perms.length, old.value.length, childBytes(old.children));
  const node = makeNode(ctx.view.nextGeneration(), old.value, perms, old.children);
  ctx.view.set(path, node);
  if (newOwner !== oldOwner) {
    ctx.view.addOwnedNodes(oldOwner, -1);
    ctx.view.addOwnedNodes(newOwner, 1);
  }
  ctx.view.changed(path, 'subtree', node, old.perms);
}

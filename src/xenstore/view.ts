// What an operation sees of the store: the live tree, or a transaction's
// snapshot with its own changes on top. Operations are written once against
// this; the two implementations decide what reading, changing and firing
// watches mean.
import type { Perm } from './perms.js';
import type { Node } from './tree.js';

/** Which watches a change fires: those on the path itself, or those on it and every ancestor. */
export type WatchMatch = 'exact' | 'subtree';

export interface NodeView {
  get(path: string): Node | undefined;
  set(path: string, node: Node): void;
  delete(path: string): void;
  nextGeneration(): number;
  /** Nodes owned by `domid`, as this view counts them. */
  nodesOwnedBy(domid: number): number;
  addOwnedNodes(domid: number, delta: number): void;
  /** A change watches must hear of: now, or when the transaction commits. `node` is the node after the change, `oldPerms` its permissions before a SET_PERMS. */
  changed(path: string, match: WatchMatch, node: Node | undefined, oldPerms?: readonly Perm[]): void;
}

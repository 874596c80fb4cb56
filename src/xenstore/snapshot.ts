// The store's saved form: plain JSON (values in base64, permissions as the
// strings GET_PERMS returns), complete enough that a restored store answers
// every request exactly as the saved one would have, generation counts and
// transaction snapshots included.
import { parsePerm, type Perm, permString } from './perms.js';
import { makeNode, type Node } from './tree.js';
import type { WatchMatch } from './view.js';

export interface SavedNode {
  generation: number;
  value: string;
  perms: string[];
  children: string[];
}

export interface SavedWatch {
  path: string;
  token: string;
  relative: boolean;
  seq: number;
}

export interface SavedTransaction {
  id: number;
  snapshot: number;
  failed: boolean;
  createdNodes: boolean;
  /** Path, its snapshot version (null: absent), the watch event it owes. */
  accessed: [string, SavedNode | null, WatchMatch | null][];
  writes: [string, SavedNode | null][];
  ownedDelta: [number, number][];
}

export interface SavedConnection {
  id: number;
  domid: number;
  nextTransactionId: number;
  watches: SavedWatch[];
  transactions: SavedTransaction[];
}

export interface StoreSnapshot {
  format: 'xenkvm-xenstore-1';
  /** The next generation count. */
  generation: number;
  /** Live nodes, parents before children. */
  nodes: [string, SavedNode][];
  /** Versions open transactions still see: path, then each version with the generation it stopped being current. */
  history: [string, { node: SavedNode | null; until: number }[]][];
  specialPerms: [string, string[]][];
  /** Introduced domains and whether they were seen shut down. */
  introduced: [number, boolean][];
  targets: [number, number][];
  ownedNodes: [number, number][];
  nextConnectionId: number;
  nextWatchSeq: number;
  connections: SavedConnection[];
}

export function savePerms(perms: readonly Perm[]): string[] {
  return perms.map(permString);
}

export function loadPerms(saved: readonly string[]): Perm[] {
  return saved.map((s) => {
    const p = parsePerm(s);
    if (p === undefined) throw new Error(`snapshot: bad permission ${JSON.stringify(s)}`);
    return p;
  });
}

export function saveNode(node: Node): SavedNode {
  return {
    generation: node.generation,
    value: Buffer.from(node.value.buffer, node.value.byteOffset, node.value.length).toString('base64'),
    perms: savePerms(node.perms),
    children: [...node.children],
  };
}

export function loadNode(saved: SavedNode): Node {
  return makeNode(saved.generation, new Uint8Array(Buffer.from(saved.value, 'base64')), loadPerms(saved.perms), [...saved.children]);
}

// The node tree: a map from path to immutable node, plus just enough history
// for open transactions to read the store as it was when they started.
//
// A transaction's snapshot is a generation number, so starting one is O(1).
// While any transaction is open, each change remembers the version it
// replaces (or that the path was absent) until the generation it stopped
// being current; a snapshot read walks that short list. Versions no open
// snapshot can see are dropped as the path changes again, and all history
// goes when the last transaction ends. A plain read is one map lookup.
import type { Perm } from './perms.js';

export interface Node {
  /** xenstored's generation count: unique per version, renewed by every change to the node (value, perms or children). */
  readonly generation: number;
  readonly value: Uint8Array;
  readonly perms: readonly Perm[];
  /** Child names in the order xenstored keeps them: creation order. */
  readonly children: readonly string[];
}

/** A node version; every one is built here, so all have one shape. */
export function makeNode(generation: number, value: Uint8Array, perms: readonly Perm[], children: readonly string[]): Node {
  return { generation, value, perms, children };
}

/** The generation recorded for a path that does not exist. */
export const NO_GENERATION = -1;

/** A version that stopped being current at generation `until`; null: the path did not exist. */
export interface PastVersion {
  readonly node: Node | null;
  readonly until: number;
  /** The domain whose change made it history, and the bytes charged to that domain for keeping it. */
  readonly charged?: { readonly domid: number; readonly bytes: number };
}

/** What keeping a version costs, roughly as xenstored counts a node's memory: a fixed part, the path and the record. */
function versionBytes(path: string, node: Node | null): number {
  let n = 64 + path.length;
  if (node !== null) {
    n += node.value.length + 8 * node.perms.length;
    for (const c of node.children) n += c.length + 1;
  }
  return n;
}

export class NodeTree {
  private readonly live = new Map<string, Node>();
  private readonly history = new Map<string, PastVersion[]>();
  /** Snapshot generations of the open transactions, ascending (a snapshot is always newer than all before it). */
  private readonly snapshots: number[] = [];
  private counter: number;
  /** Bytes of history each domain's changes keep (see chargeTo). */
  private readonly charges = new Map<number, number>();
  /** The domain the history the next changes make is charged to; undefined: nobody's (domain 0, the VMM). */
  chargeTo: number | undefined;

  constructor(generation = 0) {
    this.counter = generation;
  }

  /** The next generation count; each is used once. */
  nextGeneration(): number {
    return this.counter++;
  }

  /** The generation the next change will get (for save/restore). */
  get generation(): number {
    return this.counter;
  }

  get(path: string): Node | undefined {
    return this.live.get(path);
  }

  /** The node at `path` as a transaction started at `snapshot` sees it. */
  at(path: string, snapshot: number): Node | undefined {
    const past = this.history.get(path);
    if (past !== undefined) {
      for (const v of past) if (v.until > snapshot) return v.node ?? undefined;
    }
    return this.live.get(path);
  }

  /** Makes `node` current at `path`; its generation must be fresh. */
  set(path: string, node: Node): void {
    if (this.snapshots.length > 0) this.remember(path, node.generation);
    this.live.set(path, node);
  }

  delete(path: string): void {
    if (!this.live.has(path)) return;
    if (this.snapshots.length > 0) this.remember(path, this.nextGeneration());
    this.live.delete(path);
  }

  openSnapshot(): number {
    const s = this.nextGeneration();
    this.snapshots.push(s);
    return s;
  }

  /** Ends a snapshot taken by openSnapshot (or restored with restoreSnapshot). */
  closeSnapshot(snapshot: number): void {
    const at = this.snapshots.indexOf(snapshot);
    if (at >= 0) this.snapshots.splice(at, 1);
    if (this.snapshots.length === 0) {
      this.history.clear();
      this.charges.clear();
    }
  }

  /** Bytes of history kept for open transactions because of `domid`'s changes. */
  historyBytes(domid: number): number {
    return this.charges.get(domid) ?? 0;
  }

  /** Nodes in depth-first order, children in their list order. */
  *walk(path = '/'): Generator<[string, Node]> {
    const node = this.live.get(path);
    if (node === undefined) return;
    yield [path, node];
    for (const name of node.children) yield* this.walk(path === '/' ? `/${name}` : `${path}/${name}`);
  }

  pastVersions(): IterableIterator<[string, PastVersion[]]> {
    return this.history.entries();
  }

  /** Restore: a live node, a path's history, or an open snapshot, exactly as saved. */
  restoreNode(path: string, node: Node): void {
    this.live.set(path, node);
  }

  restorePast(path: string, past: PastVersion[]): void {
    this.history.set(path, past);
  }

  restoreSnapshot(snapshot: number): void {
    this.snapshots.push(snapshot);
    this.snapshots.sort((a, b) => a - b);
  }

  /** Records the version at `path` that stops being current at `until`, keeping only versions some open snapshot still sees. */
  private remember(path: string, until: number): void {
    const past = this.history.get(path) ?? [];
    const node = this.live.get(path) ?? null;
    const charged = this.chargeTo === undefined ? undefined : { domid: this.chargeTo, bytes: versionBytes(path, node) };
    past.push({ node, until, charged });
    this.charge(charged, 1);
    // A version was current from the previous entry's `until` (or earlier) to its own.
    let from = 0;
    const kept = past.filter((v) => {
      const seen = this.snapshots.some((s) => s >= from && s < v.until);
      from = v.until;
      if (!seen) this.charge(v.charged, -1);
      return seen;
    });
    if (kept.length > 0) this.history.set(path, kept);
    else this.history.delete(path);
  }

  private charge(c: PastVersion['charged'], sign: 1 | -1): void {
    if (c === undefined) return;
    const left = (this.charges.get(c.domid) ?? 0) + sign * c.bytes;
    if (left > 0) this.charges.set(c.domid, left);
    else this.charges.delete(c.domid);
  }
}

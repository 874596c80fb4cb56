// A transaction (xenstored_transaction.c): reads see the store as it was at
// TRANSACTION_START, changes stay private until commit. Every node it looks
// at is recorded with the generation it had in that snapshot; the commit
// fails with EAGAIN if any of them has another generation by then (changed,
// deleted, or deleted and created again). Watch events are queued per node,
// as xenstored queues them, and fire at commit.
import { fail } from './errors.js';
import { NO_GENERATION, type Node, type NodeTree } from './tree.js';
import type { NodeView, WatchMatch } from './view.js';

/** A node the transaction has looked at: its snapshot version, and the watch event its changes owe. */
export interface Access {
  readonly base: Node | undefined;
  fire: WatchMatch | undefined;
}

export class Transaction implements NodeView {
  readonly accessed = new Map<string, Access>();
  /** The transaction's own versions; null: deleted. */
  readonly writes = new Map<string, Node | null>();
  readonly ownedDelta = new Map<number, number>();
  /** A change was refused half-way (the touched-nodes quota): xenstored no longer lets it commit. */
  failed = false;
  createdNodes = false;

  constructor(
    readonly id: number,
    readonly snapshot: number,
    private readonly tree: NodeTree,
    private readonly ownedOutside: (domid: number) => number,
    /** Distinct nodes it may touch; undefined for privileged connections. */
    private readonly nodeLimit: number | undefined,
  ) {}

  get(path: string): Node | undefined {
    const own = this.writes.get(path);
    if (own !== undefined) return own ?? undefined;
    return this.touch(path).base;
  }

  set(path: string, node: Node): void {
    this.touch(path);
    this.writes.set(path, node);
  }

  delete(path: string): void {
    this.touch(path);
    this.writes.set(path, null);
  }

  nextGeneration(): number {
    return this.tree.nextGeneration();
  }

  nodesOwnedBy(domid: number): number {
    return this.ownedOutside(domid) + (this.ownedDelta.get(domid) ?? 0);
  }

  addOwnedNodes(domid: number, delta: number): void {
    if (delta > 0) this.createdNodes = true;
    this.ownedDelta.set(domid, (this.ownedDelta.get(domid) ?? 0) + delta);
  }

  changed(path: string, match: WatchMatch): void {
    const access = this.touch(path);
    // A subtree event on a node replaces an exact one, never the other way round.
    access.fire = access.fire === 'subtree' || match === 'subtree' ? 'subtree' : 'exact';
  }

  /** The first node whose generation moved since the snapshot, if any. */
  conflict(): string | undefined {
    for (const [path, access] of this.accessed) {
      const now = this.tree.get(path)?.generation ?? NO_GENERATION;
      if (now !== (access.base?.generation ?? NO_GENERATION)) return path;
    }
    return undefined;
  }

  /** Restore: an access as saved. */
  restoreAccess(path: string, access: Access): void {
    this.accessed.set(path, access);
  }

  private touch(path: string): Access {
    let access = this.accessed.get(path);
    if (access === undefined) {
      if (this.nodeLimit !== undefined && this.accessed.size >= this.nodeLimit) {
        this.failed = true;
        fail('ENOSPC');
      }
      access = { base: this.tree.at(path, this.snapshot), fire: undefined };
      this.accessed.set(path, access);
    }
    return access;
  }
}


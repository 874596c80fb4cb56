// Watches by path, so that a change looks up the watches on its path and its
// ancestors instead of scanning every connection (xenstored_watch.c scans;
// the matching rule, is_child, is the same).
import { watchPathsMatching } from './paths.js';
import type { WatchMatch } from './view.js';

export interface IndexedWatch {
  /** Absolute path or @ name. */
  readonly path: string;
  /** Delivery order: xenstored walks connections in the order they came, then each one's watches in the order they were set. */
  readonly ownerOrder: number;
  readonly seq: number;
}

export class WatchIndex<W extends IndexedWatch> {
  private readonly byPath = new Map<string, W[]>();

  add(w: W): void {
    const list = this.byPath.get(w.path);
    if (list === undefined) this.byPath.set(w.path, [w]);
    else list.push(w);
  }

  remove(w: W): void {
    const list = this.byPath.get(w.path);
    if (list === undefined) return;
    const at = list.indexOf(w);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.byPath.delete(w.path);
  }

  /** The watches an event on `path` fires, in delivery order. */
  matching(path: string, match: WatchMatch): W[] {
    if (this.byPath.size === 0) return [];
    if (match === 'exact') return [...(this.byPath.get(path) ?? [])].sort(byDeliveryOrder);
    const out: W[] = [];
    for (const p of watchPathsMatching(path)) {
      const list = this.byPath.get(p);
      if (list !== undefined) out.push(...list);
    }
    return out.sort(byDeliveryOrder);
  }
}

function byDeliveryOrder(a: IndexedWatch, b: IndexedWatch): number {
  return a.ownerOrder - b.ownerOrder || a.seq - b.seq;
}

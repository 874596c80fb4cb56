// Mapping what a guest grants, for xenkvm's backends (domain 0's part), in the
// shape of libxengnttab: map one or several refs of the guest, read-only or
// writable, all or none; unmap. Each map pins its entries as Xen's map does
// (GTF_reading and GTF_writing set where the guest sees them, so it does not
// end access meanwhile, and a read-only grant is never mapped writable); what
// it gives back are views of the guest's own RAM pages, refused once unmapped.
// As under Xen, a soft reset keeps the guest's memory and its grant table, so
// mappings stay valid across it until their backend lets them go.
import { GNTST } from '../abi/grant-table.js';
import { nameOf } from '../abi/layout.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { GrantTable } from './table.js';

/** Why a map failed: Xen's status for the first ref that could not be mapped. */
export class GrantMapError extends Error {
  override name = 'GrantMapError';
  constructor(
    readonly ref: number,
    readonly status: number,
  ) {
    super(`grant reference ${ref} cannot be mapped (GNTST_${nameOf(GNTST, status) ?? status})`);
  }
}

/** A page used after its mapping was unmapped. */
export class StaleGrantError extends Error {
  override name = 'StaleGrantError';
}

export class GrantMapping {
  private live = true;

  constructor(
    private readonly table: GrantTable,
    readonly refs: readonly number[],
    readonly writable: boolean,
    private readonly views: readonly Uint8Array[],
  ) {}

  /** The i-th mapped page; StaleGrantError once unmapped. */
  page(i: number): Uint8Array {
    if (!this.live) throw new StaleGrantError(`grant reference ${this.refs[i]} is no longer mapped`);
    return this.views[i];
  }

  /** Unpins its entries; the second call does nothing. */
  unmap(): void {
    if (!this.live) return;
    this.live = false;
    this.table.locked(() => {
      for (const ref of this.refs) this.table.unpin(ref, this.writable);
    });
  }
}

export class GrantMapper {
  constructor(
    private readonly table: GrantTable,
    private readonly memory: GuestMemory,
    /** The domain the backend is: entries must grant to it. */
    private readonly grantee = 0,
  ) {}

  /** Maps every ref or none: GrantMapError names the first that failed, and nothing stays pinned. */
  map(refs: readonly number[], writable: boolean): GrantMapping {
    const views: Uint8Array[] = [];
    const held = (gfn: number) => this.memory.heldRamPage(gfn) !== undefined;
    return this.table.locked(() => {
      for (let i = 0; i < refs.length; i++) {
        const granted = this.table.pin(refs[i], this.grantee, writable, 'map', held);
        // An entry pinned before names the frame it named then, which the guest may have given back since.
        const page = typeof granted === 'number' ? undefined : this.memory.heldRamPage(granted.gfn);
        if (page === undefined) {
          for (let j = 0; j < (typeof granted === 'number' ? i : i + 1); j++) this.table.unpin(refs[j], writable);
          throw new GrantMapError(refs[i], typeof granted === 'number' ? granted : GNTST.bad_page);
        }
        views.push(this.memory.ramPage(page));
      }
      return new GrantMapping(this.table, [...refs], writable, views);
    });
  }
}

// Domain 0's view of what the guest grants, for the backends: maps through
// the guest's grant table, a failure being the device's (DeviceError, with
// Xen's status in its message), on whichever thread the backend runs.
import type { GuestMemory } from '../memory/guest-memory.js';
import { GrantMapError, GrantMapper } from '../xen/gnttab/mapper.js';
import type { GrantTable } from '../xen/gnttab/table.js';
import { DeviceError, type GrantedPages } from './xenbus.js';

export function guestGrants(table: GrantTable, memory: GuestMemory, guestDomid: number): GrantedPages {
  const mapper = new GrantMapper(table, memory);
  return {
    map: (domid, refs, writable) => {
      if (domid !== guestDomid) throw new DeviceError(`domain ${domid} grants nothing: the only guest is domain ${guestDomid}`);
      try {
        return mapper.map(refs, writable);
      } catch (e) {
        if (e instanceof GrantMapError) throw new DeviceError(e.message);
        throw e;
      }
    },
  };
}

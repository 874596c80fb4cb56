// For the unit tests of KVM's fast paths: a domain of two vCPUs over 2 MiB of
// guest memory (shared_info's overlay among its pages), whose memslots go
// nowhere, with its event-channel port table.
import { GuestMemory } from '../memory/guest-memory.js';
import { MemoryMap } from '../memory/memory-map.js';
import { DomainState } from '../xen/domain-state.js';
import { PortTable } from '../xen/evtchn/ports.js';

export function fastPathDomain(t: { after(fn: () => void): void }) {
  const memory = GuestMemory.create([{ gpa: 0, size: 1 << 21 }], 4);
  t.after(() => memory.dispose());
  const memoryMap = new MemoryMap({ setUserMemoryRegion: () => {} }, memory, 32);
  return { memory, memoryMap, state: DomainState.create(2), ports: PortTable.create(64) };
}

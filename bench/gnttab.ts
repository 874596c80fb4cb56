// Grant-table operations, each per operation against the bare hypercall round
// trip measured in the same run: the guest's GNTTABOP_copy of a whole page and
// of 64 bytes from a grant of its own (guests/tests/bench-gnttab.c; forwarded
// to the main thread, as every grant-table op) against its null hypercall
// (xen_version, served on its vCPU thread), by its own TSC; and a backend's map
// and unmap of one granted page and of 16 (src/xen/gnttab/mapper.ts, in this
// process, timed with the host's clock) against that round trip in time.
// No target: the issue asks for the costs, reported here as ratios.
import { GuestMemory } from '../src/memory/guest-memory.js';
import { GTF } from '../src/xen/abi/grant-table.js';
import { GrantMapper } from '../src/xen/gnttab/mapper.js';
import { GrantTable, grantTablePages } from '../src/xen/gnttab/table.js';
import { medians, micros, root, ROUNDS, runXenkvm } from './common.js';
import { floorExits } from './exit-runs.js';

const CALLS = Number(process.env.BENCH_GNTTAB_CALLS ?? 5000);
const MAPS = Number(process.env.BENCH_GNTTAB_MAPS ?? 20000);

/** One run of the guest: TSC ticks per null hypercall, per 4 KiB copy and per 64-byte copy. */
function guestRun(): { nul: number; copy: number; copy64: number } {
  const out = runXenkvm(['--kernel', `${root}guests/build/bench-gnttab.elf`, '--cmdline', `n=${CALLS}`]);
  const m = /KIT-BENCH gnttab n=(\d+) null-tsc=(\d+) copy-tsc=(\d+) copy64-tsc=(\d+)/.exec(out);
  if (!m || Number(m[1]) !== CALLS) throw new Error(`the grant-table guest printed no result: ${out}`);
  return { nul: Number(m[2]) / CALLS, copy: Number(m[3]) / CALLS, copy64: Number(m[4]) / CALLS };
}

/** Nanoseconds per map + unmap of `refs` granted pages through a backend's mapper. */
function mapUnmap(refs: number): number {
  const memory = GuestMemory.create([{ gpa: 0, size: 64 << 20 }], grantTablePages(4));
  try {
    const table = GrantTable.create(memory, 0, 4);
    const entries = new DataView(memory.overlayPage(table.sharedPage(0)).buffer, memory.overlayPage(table.sharedPage(0)).byteOffset);
    const list = Array.from({ length: refs }, (_, i) => 8 + i);
    for (const ref of list) {
      entries.setUint16(ref * 8, GTF.permit_access, true);
      entries.setUint32(ref * 8 + 4, 0x100 + ref, true);
    }
    const mapper = new GrantMapper(table, memory);
    for (let i = 0; i < 2000; i++) mapper.map(list, true).unmap();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < MAPS; i++) mapper.map(list, true).unmap();
    return Number(process.hrtime.bigint() - t0) / MAPS;
  } finally {
    memory.dispose();
  }
}

const samples = { nul: [] as number[], copy: [] as number[], copy64: [] as number[], map1: [] as number[], map16: [] as number[] };
let khz = 0;
for (let i = 0; i < ROUNDS; i++) {
  khz = floorExits('io', 1000).khz;
  const g = guestRun();
  samples.nul.push(g.nul);
  samples.copy.push(g.copy);
  samples.copy64.push(g.copy64);
  samples.map1.push(mapUnmap(1));
  samples.map16.push(mapUnmap(16));
}
const m = medians(samples);
const us = micros(khz);
const nullNs = (m.nul / khz) * 1e6;
console.log(`grant-table operations, ${CALLS} guest calls / ${MAPS} backend maps × ${ROUNDS} rounds, medians per operation`);
console.log(`  null hypercall (xen_version) round trip:  ${us(m.nul)}`);
console.log(`  GNTTABOP_copy, 4 KiB from a grant:        ${us(m.copy)}   ${(m.copy / m.nul).toFixed(3)} × the null hypercall`);
console.log(`  GNTTABOP_copy, 64 bytes from a grant:     ${us(m.copy64)}   ${(m.copy64 / m.nul).toFixed(3)} ×`);
console.log(`  backend map + unmap of 1 page:            ${(m.map1 / 1000).toFixed(2)} µs   ${(m.map1 / nullNs).toFixed(3)} ×`);
console.log(`  backend map + unmap of 16 pages:          ${(m.map16 / 1000).toFixed(2)} µs   ${(m.map16 / nullNs).toFixed(3)} × (${(m.map16 / 16 / nullNs).toFixed(3)} × per page)`);

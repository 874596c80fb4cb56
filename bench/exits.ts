// Exit round trips, each compared in the same run with a floor: a minimal C
// VMM (bench/floor.c) around the same guest loop (guests/tests/bench-exits.c),
// alternating runs and comparing the guest's own TSC count per exit.
//
//   io         an `outb` to port 0x80 per iteration, xenkvm vs the C floor.      Target ≤ 1.3.
//   hypercall  a null hypercall (xen_version) per iteration through the hypercall
//              page, xenkvm vs the bare I/O floor (target ≤ 1.3) and vs the C floor
//              serving the same hypercall loop (which isolates the VMM's share
//              from the hypercall loop's few extra guest instructions).
import { medians, micros, ROUNDS } from './common.js';
import { floorExits, xenkvmExits, type ExitMode } from './exit-runs.js';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 20000);
const TARGET = 1.3;
const floor = (mode: ExitMode) => floorExits(mode, ITERATIONS);
const xenkvm = (mode: ExitMode) => xenkvmExits(mode, ITERATIONS);

const samples = { floorIo: [] as number[], floorHypercall: [] as number[], io: [] as number[], hypercall: [] as number[] };
let khz = 0;
for (let i = 0; i < ROUNDS; i++) {
  const f = floor('io');
  khz = f.khz;
  samples.floorIo.push(f.ticks);
  samples.io.push(xenkvm('io'));
  samples.floorHypercall.push(floor('hypercall').ticks);
  samples.hypercall.push(xenkvm('hypercall'));
}
const us = micros(khz);
const m = medians(samples);
let pass = true;
const ratio = (name: string, ours: number, base: number, target?: number) => {
  const r = ours / base;
  const verdict = target === undefined ? '' : r <= target ? ` (target ≤ ${target}) PASS` : ` (target ≤ ${target}) FAIL`;
  if (target !== undefined && r > target) pass = false;
  console.log(`  ${name}: ${r.toFixed(3)}${verdict}`);
};
console.log(`exit round trips, ${ITERATIONS} iterations × ${ROUNDS} rounds, median per iteration`);
console.log(`  floor, I/O exit (C):          ${us(m.floorIo)}`);
console.log(`  xenkvm, I/O exit:             ${us(m.io)}`);
console.log(`  floor, null hypercall (C):    ${us(m.floorHypercall)}`);
console.log(`  xenkvm, null hypercall:       ${us(m.hypercall)}`);
ratio('I/O exit, xenkvm / floor', m.io, m.floorIo, TARGET);
ratio('null hypercall, xenkvm / bare I/O floor', m.hypercall, m.floorIo, TARGET);
ratio('null hypercall, xenkvm / C hypercall floor', m.hypercall, m.floorHypercall, TARGET);
process.exitCode = pass ? 0 : 1;

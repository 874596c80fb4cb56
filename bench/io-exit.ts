// I/O exit round trip: a guest loop of `outb` to port 0x80 (guests/tests/bench32.c),
// each write a VM exit to the VMM and back. Run under xenkvm and under a
// minimal C VMM (bench/floor.c, the floor) in the same run, alternating, and
// compared by the guest's own TSC count per exit. Target: ratio ≤ 1.3.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const EXITS = Number(process.env.BENCH_EXITS ?? 20000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TARGET = 1.3;

function floor(): { tsc: number; khz: number } {
  const out = execFileSync(`${root}bench/build/floor`, ['-n', String(EXITS), `${root}guests/build/bench32.elf`], { encoding: 'utf8' });
  const m = /floor: exits=(\d+) tsc=(\d+) tsc_khz=(\d+)/.exec(out);
  if (!m || Number(m[1]) !== EXITS) throw new Error(`floor printed no result: ${out}`);
  return { tsc: Number(m[2]), khz: Number(m[3]) };
}

function xenkvm(): number {
  const out = execFileSync(process.execPath, [`${root}dist/src/cli/main.js`, 'run', '--kernel', `${root}guests/build/bench32.elf`, '--cmdline', `n=${EXITS}`], { encoding: 'utf8' });
  const m = /KIT-BENCH exits=(\d+) tsc=(\d+)/.exec(out);
  if (!m || Number(m[1]) !== EXITS) throw new Error(`xenkvm printed no result: ${out}`);
  return Number(m[2]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const floors: number[] = [];
const ours: number[] = [];
let khz = 0;
for (let i = 0; i < ROUNDS; i++) {
  const f = floor();
  khz = f.khz;
  floors.push(f.tsc / EXITS);
  ours.push(xenkvm() / EXITS);
}
const us = (ticks: number) => (ticks / khz) * 1000;
const ratio = median(ours) / median(floors);
console.log(`io-exit round trip, ${EXITS} exits × ${ROUNDS} rounds (median per exit)`);
console.log(`  floor (C, bench/floor.c): ${us(median(floors)).toFixed(2)} µs`);
console.log(`  xenkvm:                   ${us(median(ours)).toFixed(2)} µs`);
console.log(`  ratio: ${ratio.toFixed(3)} (target ≤ ${TARGET}) ${ratio <= TARGET ? 'PASS' : 'FAIL'}`);
process.exitCode = ratio <= TARGET ? 0 : 1;

// Event-channel IPI: latency as a round trip on vCPU 0's own clock, from
// EVTCHNOP_send to seeing vCPU 1's upcall handler's ack (the vCPUs' TSCs need
// not be in step), and events per second back to back, each
// compared in the same run with a floor: a minimal C VMM (bench/floor.c -m
// ipi) that answers an `outb $0x81` exit by injecting a bare MSI
// (KVM_SIGNAL_MSI) at vCPU 1 with the same vector. The guest is the same
// program for both (guests/tests/bench-ipi.c, mode=xen / mode=floor); runs
// alternate, and each figure is the median over the rounds of the guest's
// own TSC measurements (per-run latency medians, per-run totals).
//
//   latency   xenkvm / floor, target ≤ 1.5.
//   events/s  xenkvm and floor, with their ratio (reported, no target).
// Also reported, as bench/exits.ts does for the null hypercall: the C floor
// serving the guest's very send path (EVTCHNOP_send through a hypercall page
// with xenkvm's stubs, answered with the same bare MSI; floor -m
// ipi-hypercall): xenkvm against that floor is the VMM's own share, the
// stub's few extra guest instructions being in both.
import { medians, micros, ROUNDS } from './common.js';
import { floorIpi, xenkvmIpi } from './ipi-runs.js';

const EVENTS = Number(process.env.BENCH_IPI_EVENTS ?? 300);
const TARGET = 1.5;
const floor = (mode: 'ipi' | 'ipi-hypercall') => floorIpi(mode, EVENTS);
const xenkvm = () => xenkvmIpi(EVENTS);

const samples = {
  floorLatency: [] as number[], floorTotal: [] as number[],
  hcallLatency: [] as number[], hcallTotal: [] as number[],
  latency: [] as number[], total: [] as number[],
};
let khz = 0;
for (let i = 0; i < ROUNDS; i++) {
  const f = floor('ipi');
  khz = f.khz;
  samples.floorLatency.push(f.latency);
  samples.floorTotal.push(f.total);
  const x = xenkvm();
  samples.latency.push(x.latency);
  samples.total.push(x.total);
  const h = floor('ipi-hypercall');
  samples.hcallLatency.push(h.latency);
  samples.hcallTotal.push(h.total);
}
const m = medians(samples);
const us = micros(khz);
const perSecond = (total: number) => (EVENTS * khz * 1000) / total;
const latencyRatio = m.latency / m.floorLatency;
const pass = latencyRatio <= TARGET;
console.log(`event-channel IPI, vCPU 0 → vCPU 1, ${EVENTS} events × ${ROUNDS} rounds, medians`);
const line = (name: string, latency: number, total: number) =>
  console.log(`  ${name.padEnd(38)} latency ${us(latency)}, ${perSecond(total).toFixed(0)} events/s`);
line('floor, I/O exit + bare MSI (C):', m.floorLatency, m.floorTotal);
line('xenkvm, EVTCHNOP_send:', m.latency, m.total);
line('floor, hypercall-page send + MSI (C):', m.hcallLatency, m.hcallTotal);
console.log(`  latency, xenkvm / floor: ${latencyRatio.toFixed(3)} (target ≤ ${TARGET}) ${pass ? 'PASS' : 'FAIL'}`);
console.log(`  events/s, xenkvm / floor: ${(perSecond(m.total) / perSecond(m.floorTotal)).toFixed(3)}`);
console.log(`  latency, xenkvm / C hypercall floor: ${(m.latency / m.hcallLatency).toFixed(3)}`);
console.log(`  events/s, xenkvm / C hypercall floor: ${(perSecond(m.total) / perSecond(m.hcallTotal)).toFixed(3)}`);
process.exitCode = pass ? 0 : 1;

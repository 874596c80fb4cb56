// Where a hypercall is served, where KVM has Xen support (CONFIG_KVM_XEN): the
// null hypercall (xen_version through the hypercall page, whose stubs are then
// VMCALL/VMMCALL) answered in the kernel by KVM's version fast path, against the
// same call handed to xenkvm as a KVM_EXIT_XEN exit (--kvm-fast-paths none),
// against xenkvm's userspace exit path (the `outb` exit that the hypercall
// page's stubs use where KVM has no Xen support) and the C floor's bare I/O
// exit; and the event-channel IPI round trip through KVM_EXIT_XEN against the
// C floor's I/O exit + bare MSI. Runs alternate; medians over the rounds of the
// guests' own TSC counts.
//
//   in-kernel / KVM_EXIT_XEN   target < 1: the fast path must be faster than the exit it saves.
// Where this host's KVM lacks Xen support, the benchmark runs in the nested VM that has it.
import { medians, micros, ROUNDS, whereKvmHasXen } from './common.js';
import { floorExits, xenkvmExits } from './exit-runs.js';
import { floorIpi, xenkvmIpi } from './ipi-runs.js';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 20000);
const EVENTS = Number(process.env.BENCH_IPI_EVENTS ?? 300);

function measure(): void {
  const samples = {
    floorIo: [] as number[], io: [] as number[], exitXen: [] as number[], inKernel: [] as number[],
    floorIpi: [] as number[], ipi: [] as number[],
  };
  let khz = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const f = floorExits('io', ITERATIONS);
    khz = f.khz;
    samples.floorIo.push(f.ticks);
    samples.io.push(xenkvmExits('io', ITERATIONS));
    samples.exitXen.push(xenkvmExits('hypercall', ITERATIONS, ['--kvm-fast-paths', 'none']));
    samples.inKernel.push(xenkvmExits('hypercall', ITERATIONS, ['--kvm-fast-paths', 'version']));
    samples.floorIpi.push(floorIpi('ipi', EVENTS).latency);
    samples.ipi.push(xenkvmIpi(EVENTS).latency);
  }
  const m = medians(samples);
  const us = micros(khz);
  const ratio = (a: number, b: number) => (a / b).toFixed(3);
  const pass = m.inKernel < m.exitXen;
  console.log(`hypercall paths where KVM has Xen support, ${ITERATIONS} iterations / ${EVENTS} IPIs × ${ROUNDS} rounds, medians`);
  console.log(`  floor, I/O exit (C):                        ${us(m.floorIo)}`);
  console.log(`  xenkvm, I/O exit (the userspace path):      ${us(m.io)}`);
  console.log(`  xenkvm, null hypercall via KVM_EXIT_XEN:    ${us(m.exitXen)}`);
  console.log(`  null hypercall in the kernel (fast path):   ${us(m.inKernel)}`);
  console.log(`  floor, IPI round trip, I/O exit + MSI (C):  ${us(m.floorIpi)}`);
  console.log(`  xenkvm, IPI round trip via KVM_EXIT_XEN:    ${us(m.ipi)}`);
  console.log(`  null hypercall, KVM_EXIT_XEN / xenkvm I/O exit: ${ratio(m.exitXen, m.io)}`);
  console.log(`  null hypercall, KVM_EXIT_XEN / C I/O floor: ${ratio(m.exitXen, m.floorIo)}`);
  console.log(`  null hypercall, in-kernel / KVM_EXIT_XEN: ${ratio(m.inKernel, m.exitXen)} (target < 1) ${pass ? 'met' : 'MISSED'}`);
  console.log(`  IPI round trip, KVM_EXIT_XEN / C floor: ${ratio(m.ipi, m.floorIpi)}`);
  process.exitCode = pass ? 0 : 1;
}

await whereKvmHasXen('kvm-xen-paths', measure);

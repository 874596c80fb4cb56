// Where a hypercall is served, where KVM has Xen support (CONFIG_KVM_XEN): the
// null hypercall (xen_version through the hypercall page, whose stubs are then
// VMCALL/VMMCALL) answered in the kernel by KVM's version fast path, against the
// same call handed to xenkvm as a KVM_EXIT_XEN exit (--kvm-fast-paths none),
// against xenkvm's userspace exit path (the `outb` exit that the hypercall
// page's stubs use where KVM has no Xen support) and the C floor's bare I/O
// exit; the event-channel IPI round trip with KVM raising the events itself
// (the evtchn fast path: EVTCHNOP_send served in the kernel) against the same
// send through KVM_EXIT_XEN and the C floor's I/O exit + bare MSI; and
// VCPUOP_set_singleshot_timer kept by KVM
// (the timer fast path) against the same call served by xenkvm through
// KVM_EXIT_XEN; and a move of shared_info (XENMAPSPACE_shared_info) with KVM
// holding the page by host address (the shinfo-hva fast path, where KVM has it:
// Linux 6.9 and later) against by guest frame, told again after every move.
// Runs alternate; medians over the rounds of the guests' own TSC counts.
//
//   in-kernel / KVM_EXIT_XEN   target < 1: each fast path must be faster than the exit it saves.
// Where this host's KVM lacks Xen support, the benchmark runs in the nested VM that has it.
import { xenHvmConfig } from '../src/kvm/abi.js';
import { hostKvmXenSupport } from '../src/kvm/system.js';
import { medians, micros, root, ROUNDS, runXenkvm, whereKvmHasXen } from './common.js';
import { floorExits, xenkvmExits } from './exit-runs.js';
import { floorIpi, xenkvmIpi } from './ipi-runs.js';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 20000);
const EVENTS = Number(process.env.BENCH_IPI_EVENTS ?? 300);
const MOVES = Number(process.env.BENCH_SHINFO_MOVES ?? 2000);

/** guests/tests/bench-timer.c under xenkvm, with `args` added: ticks per set_singleshot_timer call (its last timer must fire). */
function xenkvmTimerSets(iterations: number, args: string[]): number {
  const out = runXenkvm(['--kernel', `${root}guests/build/bench-timer.elf`, '--cmdline', `n=${iterations}`, ...args]);
  const m = /KIT-BENCH timers=(\d+) tsc=(\d+) fired=(\d+)/.exec(out);
  if (!m || Number(m[1]) !== iterations || Number(m[3]) !== 1) throw new Error(`xenkvm's timer guest printed no result, or its timer never fired: ${out}`);
  return Number(m[2]) / iterations;
}

/** guests/tests/bench-shinfo.c under xenkvm, with `args` added: ticks per move of shared_info (its timer must fire after). */
function xenkvmSharedInfoMoves(moves: number, args: string[]): number {
  const out = runXenkvm(['--kernel', `${root}guests/build/bench-shinfo.elf`, '--cmdline', `n=${moves}`, ...args]);
  const m = /KIT-BENCH moves=(\d+) tsc=(\d+) fired=(\d+)/.exec(out);
  if (!m || Number(m[1]) !== moves || Number(m[3]) !== 1) throw new Error(`xenkvm's shared_info guest printed no result, or its timer never fired: ${out}`);
  return Number(m[2]) / moves;
}

function measure(hostFlags: number): void {
  const hva = (hostFlags & xenHvmConfig.SHARED_INFO_HVA) !== 0;
  const samples = {
    floorIo: [] as number[], io: [] as number[], exitXen: [] as number[], inKernel: [] as number[],
    floorIpi: [] as number[], ipi: [] as number[], ipiInKernel: [] as number[], timerExitXen: [] as number[], timerInKernel: [] as number[], movesByFrame: [] as number[], movesByHva: [] as number[],
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
    samples.ipi.push(xenkvmIpi(EVENTS, ['--kvm-fast-paths', 'time']).latency);
    samples.ipiInKernel.push(xenkvmIpi(EVENTS, ['--kvm-fast-paths', 'evtchn']).latency);
    samples.timerExitXen.push(xenkvmTimerSets(ITERATIONS, ['--kvm-fast-paths', 'time']));
    samples.timerInKernel.push(xenkvmTimerSets(ITERATIONS, ['--kvm-fast-paths', 'timer']));
    samples.movesByFrame.push(xenkvmSharedInfoMoves(MOVES, ['--kvm-fast-paths', 'evtchn']));
    if (hva) samples.movesByHva.push(xenkvmSharedInfoMoves(MOVES, ['--kvm-fast-paths', 'evtchn,shinfo-hva']));
  }
  const m = medians(samples);
  const us = micros(khz);
  const ratio = (a: number, b: number) => (a / b).toFixed(3);
  const pass = m.inKernel < m.exitXen && m.ipiInKernel < m.ipi && m.timerInKernel < m.timerExitXen;
  console.log(`hypercall paths where KVM has Xen support, ${ITERATIONS} iterations / ${EVENTS} IPIs × ${ROUNDS} rounds, medians`);
  console.log(`  floor, I/O exit (C):                        ${us(m.floorIo)}`);
  console.log(`  xenkvm, I/O exit (the userspace path):      ${us(m.io)}`);
  console.log(`  xenkvm, null hypercall via KVM_EXIT_XEN:    ${us(m.exitXen)}`);
  console.log(`  null hypercall in the kernel (fast path):   ${us(m.inKernel)}`);
  console.log(`  floor, IPI round trip, I/O exit + MSI (C):  ${us(m.floorIpi)}`);
  console.log(`  xenkvm, IPI round trip via KVM_EXIT_XEN:    ${us(m.ipi)}`);
  console.log(`  IPI round trip in the kernel (fast path):   ${us(m.ipiInKernel)}`);
  console.log(`  xenkvm, singleshot timer via KVM_EXIT_XEN:  ${us(m.timerExitXen)}`);
  console.log(`  singleshot timer in the kernel (fast path): ${us(m.timerInKernel)}`);
  console.log(`  shared_info move, KVM told its frame:       ${us(m.movesByFrame)}`);
  if (hva) console.log(`  shared_info move, KVM holds it by address:  ${us(m.movesByHva)}`);
  console.log(`  null hypercall, KVM_EXIT_XEN / xenkvm I/O exit: ${ratio(m.exitXen, m.io)}`);
  console.log(`  null hypercall, KVM_EXIT_XEN / C I/O floor: ${ratio(m.exitXen, m.floorIo)}`);
  console.log(`  null hypercall, in-kernel / KVM_EXIT_XEN: ${ratio(m.inKernel, m.exitXen)} (target < 1) ${m.inKernel < m.exitXen ? 'met' : 'MISSED'}`);
  console.log(`  IPI round trip, KVM_EXIT_XEN / C floor: ${ratio(m.ipi, m.floorIpi)}`);
  console.log(`  IPI round trip, in-kernel / KVM_EXIT_XEN: ${ratio(m.ipiInKernel, m.ipi)} (target < 1) ${m.ipiInKernel < m.ipi ? 'met' : 'MISSED'}`);
  console.log(`  IPI round trip, in-kernel / C floor: ${ratio(m.ipiInKernel, m.floorIpi)}`);
  console.log(`  singleshot timer, in-kernel / KVM_EXIT_XEN: ${ratio(m.timerInKernel, m.timerExitXen)} (target < 1) ${m.timerInKernel < m.timerExitXen ? 'met' : 'MISSED'}`);
  // No target: a move's cost is xenkvm's memory-slot update with every vCPU held; by host address saves KVM only
  // being told the page again (once on the main thread, once per vCPU at its next entry).
  if (hva) console.log(`  shared_info move, by host address / by frame: ${ratio(m.movesByHva, m.movesByFrame)}`);
  else console.log("  shared_info by host address: this host's KVM lacks it (KVM_XEN_HVM_CONFIG_SHARED_INFO_HVA, Linux 6.9)");
  process.exitCode = pass ? 0 : 1;
}

await whereKvmHasXen('kvm-xen-paths', () => measure(hostKvmXenSupport()));

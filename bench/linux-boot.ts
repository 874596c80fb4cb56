// Linux's boot: Debian's cloud kernel and the test tier's initramfs (test/linux-guest.ts),
// from process start to the line its /init prints, on xenkvm (a PVH Xen guest) against
// QEMU under KVM booting the same kernel and initramfs (PVH too, as a KVM guest), in
// turns, in the same environment. Target: xenkvm ≤ 1.2 × QEMU. xenkvm as it starts by default:
// on this host, whose KVM raises events itself, it offers no FIFO event channels, so Linux
// keeps the 2-level ABI and KVM its timers and IPIs. Also reported: xenkvm with
// `--evtchn-fifo on`, where Linux switches to FIFO and its timers and IPIs are xenkvm's.
//
// Linux reaches xenkvm only through KVM's Xen support (CONFIG_KVM_XEN): where this host's
// KVM lacks it, the benchmark runs itself in the nested VM whose KVM has it.
import { spawn } from 'node:child_process';
import { INIT_MARKER, linuxGuest } from '../test/linux-guest.js';
import { median, root, ROUNDS, whereKvmHasXen } from './common.js';

const TARGET = 1.2;
const VCPUS = 2;
const MEMORY_MIB = 512;
const TIMEOUT_MS = 900_000;

/** Seconds from spawning `file` to `marker` on its stdout (the /init line), and to its exit (status 0 wanted). */
function boot(what: string, file: string, args: string[], marker = INIT_MARKER): Promise<{ init: number; exit: number }> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let init: number | undefined;
    const fail = (why: string) => {
      process.stderr.write(`bench: ${what} ${why}; its last output:\n${out.slice(-2000)}\n`);
      process.exit(1);
    };
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('latin1');
      if (init === undefined && out.includes(marker)) init = seconds();
    });
    child.stderr.on('data', (b: Buffer) => (out += b.toString('latin1')));
    child.on('error', (e) => fail(`could not start: ${e.message}`));
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (init === undefined) fail(`never printed ${marker} (status ${status ?? signal})`);
      else if (status !== 0) fail(`printed ${marker} but ended with status ${status ?? signal}`);
      else resolve({ init, exit: seconds() });
    });
  });
}

async function measure(): Promise<void> {
  const guest = linuxGuest(root);
  const xenkvm = (...args: string[]) =>
    boot('xenkvm', `${root}bin/xenkvm`, ['run', '--kernel', guest.vmlinux, '--initrd', guest.initrd, '--memory', String(MEMORY_MIB), '--vcpus', String(VCPUS), '--cmdline', 'console=hvc0', ...args]);
  const qemu = () =>
    boot('QEMU', 'qemu-system-x86_64', [
      '-accel', 'kvm', '-cpu', 'host', '-m', String(MEMORY_MIB), '-smp', String(VCPUS), '-nodefaults', '-no-user-config', '-display', 'none',
      '-no-reboot', '-serial', 'stdio', '-kernel', guest.vmlinux, '-initrd', guest.initrd, '-append', 'console=ttyS0',
    ]);
  // xenkvm's own start and stop around a guest that powers off at once: node's start-up, which the
  // nested VM magnifies far more than a C program's.
  const idle = () => boot('xenkvm (idle guest)', `${root}bin/xenkvm`, ['run', '--kernel', `${root}guests/build/power.elf`], 'KIT-POWER');
  const samples = { xenkvm: [] as number[], qemu: [] as number[], xenkvmExit: [] as number[], qemuExit: [] as number[], fifo: [] as number[], idle: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    const q = await qemu();
    const x = await xenkvm();
    samples.qemu.push(q.init);
    samples.qemuExit.push(q.exit);
    samples.xenkvm.push(x.init);
    samples.xenkvmExit.push(x.exit);
    samples.fifo.push((await xenkvm('--evtchn-fifo', 'on')).init);
    samples.idle.push((await idle()).exit);
  }
  const ratio = median(samples.xenkvm) / median(samples.qemu);
  const s = (xs: number[]) => `${median(xs).toFixed(1)} s`;
  const runs = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  console.log(`Linux boot (${guest.package}, PVH, ${VCPUS} vCPUs, ${MEMORY_MIB} MiB), start to /init, median of ${ROUNDS}`);
  console.log(`  xenkvm (2-level events) ${s(samples.xenkvm)} (exit ${s(samples.xenkvmExit)}), QEMU under KVM ${s(samples.qemu)} (exit ${s(samples.qemuExit)}): ratio ${ratio.toFixed(2)} (target ≤ ${TARGET}) ${ratio <= TARGET ? 'met' : 'MISSED'}`);
  console.log(`  xenkvm with --evtchn-fifo on (Linux on FIFO events: its timers and IPIs are xenkvm's) ${s(samples.fifo)}: ratio ${(median(samples.fifo) / median(samples.qemu)).toFixed(2)}`);
  console.log(`  runs to /init: xenkvm ${runs(samples.xenkvm)} s; with FIFO ${runs(samples.fifo)} s; QEMU ${runs(samples.qemu)} s`);
  console.log(`  xenkvm's own start and stop, around a guest that powers off at once: ${s(samples.idle)} (runs ${runs(samples.idle)} s)`);
  process.exitCode = ratio <= TARGET ? 0 : 1;
}

await whereKvmHasXen('linux-boot', measure, () => linuxGuest(root)); // built here: the VM has no network to fetch the kernel

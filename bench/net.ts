// PV network throughput, guest to host: Debian's cloud kernel (test/linux-guest.ts) with its
// netfront sends over TCP, then a stream of small UDP datagrams, to a receiver on the host
// (bench/net-sink.c), with the same sender (guests/linux/net-send.c) that runs the floor:
//
//   floor  the sender in a network namespace, on one of a pair of TAP devices that a host
//          process joins (bench/net-relay.c): host to host, over two TAP devices and a copy
//          between them, the host side of xenkvm's path without the guest and its rings;
//   TAP    the guest on xenkvm's TAP device (`--vif vifname=…`);
//   user   the guest on user-mode networking (libslirp, `--vif net=user`), to the host's loopback.
//
// Each round runs the floor, then the guest on each link; ratios are guest / floor per round,
// reported as medians: TCP in MB/s, UDP in datagrams a second (what reached the receiver: a
// sender faster than its path loses some, which the rate does not count). There is no target.
//
// Linux reaches xenkvm only through KVM's Xen support (CONFIG_KVM_XEN): where this host's KVM
// lacks it, the benchmark runs itself in the nested VM whose KVM has it.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { linuxGuest, NETBENCH_MARKER, type LinuxGuest } from '../test/linux-guest.js';
import { medians, root, ROUNDS, whereKvmHasXen } from './common.js';

const TCP_MIB = Number(process.env.BENCH_NET_MIB ?? 64);
const UDP_COUNT = Number(process.env.BENCH_NET_UDP ?? 100000);
const UDP_BYTES = Number(process.env.BENCH_NET_UDP_BYTES ?? 64);
const PORT = 5201;
const TIMEOUT_MS = 900_000;
const NAMESPACE = 'xkbench';

interface Figures {
  tcpMBps: number;
  udpPps: number;
}

function fail(why: string): never {
  process.stderr.write(`bench: ${why}\n`);
  process.exit(1);
}

/** A program that runs until it ends or is killed: its output so far, and its end. */
function start(file: string, args: string[]) {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('latin1')));
  child.stderr.on('data', (b: Buffer) => (out += b.toString('latin1')));
  const ended = new Promise<number | string>((resolve) => {
    child.on('error', (e) => resolve(e.message));
    child.on('close', (status, signal) => resolve(status ?? signal ?? 'unknown'));
  });
  const output = () => out;
  /** Resolves once it has printed `line`; fails the benchmark if it ends first. */
  const printed = async (line: string) => {
    let done = false;
    void ended.then(() => (done = true));
    for (let waited = 0; !out.includes(line); waited += 20) {
      if (done || waited > TIMEOUT_MS) fail(`${file} ${args.join(' ')} never printed "${line}": ${out.trim().split('\n').pop()}`);
      await sleep(20);
    }
  };
  return { child, output, ended, printed };
}

/** The two receivers, TCP on PORT and UDP on PORT + 1, listening on `address`. */
async function sinks(address: string) {
  const tcp = start(`${root}bench/build/net-sink`, ['tcp', address, String(PORT)]);
  const udp = start(`${root}bench/build/net-sink`, ['udp', address, String(PORT + 1)]);
  await Promise.all([tcp.printed('net-sink ready'), udp.printed('net-sink ready')]);
  return {
    kill: () => [tcp.child, udp.child].forEach((c: ChildProcess) => c.kill('SIGKILL')),
    /** What they received, once both have ended. */
    async figures(who: string): Promise<Figures> {
      await Promise.all([tcp.ended, udp.ended]);
      const t = /net-sink tcp bytes=(\d+) ns=(\d+)/.exec(tcp.output());
      const u = /net-sink udp packets=(\d+) bytes=(\d+) ns=(\d+)/.exec(udp.output());
      if (!t || Number(t[1]) !== TCP_MIB * 2 ** 20) fail(`${who}: the TCP receiver did not get ${TCP_MIB} MiB: ${tcp.output().trim()}`);
      if (!u || Number(u[1]) < 2) fail(`${who}: the UDP receiver got no datagrams: ${udp.output().trim()}`);
      return { tcpMBps: Number(t[1]) / 1e6 / (Number(t[2]) / 1e9), udpPps: (Number(u[1]) - 1) / (Number(u[3]) / 1e9) };
    },
  };
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** The sender in a network namespace at 10.0.9.2, on net-relay's second TAP device; the receivers at 10.0.9.1 on its first. */
async function floorRun(): Promise<Figures> {
  try {
    ip('netns', 'del', NAMESPACE);
  } catch {
    // None was left over.
  }
  const relay = start(`${root}bench/build/net-relay`, ['xkbfloor0', 'xkbfloor1']);
  try {
    await relay.printed('net-relay ready');
    ip('netns', 'add', NAMESPACE);
    ip('link', 'set', 'xkbfloor1', 'netns', NAMESPACE);
    ip('-n', NAMESPACE, 'addr', 'add', '10.0.9.2/24', 'dev', 'xkbfloor1');
    ip('-n', NAMESPACE, 'link', 'set', 'xkbfloor1', 'up');
    ip('addr', 'add', '10.0.9.1/24', 'dev', 'xkbfloor0');
    ip('link', 'set', 'xkbfloor0', 'up');
    const s = await sinks('10.0.9.1');
    try {
      const send = (...args: string[]) => execFileSync('ip', ['netns', 'exec', NAMESPACE, `${root}guests/build/linux/net-send`, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      send('tcp', '10.0.9.1', String(PORT), String(TCP_MIB));
      send('udp', '10.0.9.1', String(PORT + 1), String(UDP_COUNT), String(UDP_BYTES));
      return await s.figures('the floor');
    } finally {
      s.kill();
    }
  } finally {
    relay.child.kill('SIGKILL');
    await relay.ended;
    ip('netns', 'del', NAMESPACE);
  }
}

const links = {
  tap: { guest: '10.0.8.2', host: '10.0.8.1', listen: '10.0.8.1', vif: 'vifname=xkbvif0', tap: 'xkbvif0' },
  // Slirp's host is 10.0.2.2 to the guest, the host's loopback to the host.
  user: { guest: '10.0.2.15', host: '10.0.2.2', listen: '127.0.0.1', vif: 'net=user', tap: undefined },
} as const;

async function guestRun(guest: LinuxGuest, kind: keyof typeof links): Promise<Figures> {
  const link = links[kind];
  const s = link.tap ? undefined : await sinks(link.listen);
  const bench = [`${link.guest}/24`, link.host, PORT, TCP_MIB, UDP_COUNT, UDP_BYTES].join(',');
  const run = start(`${root}bin/xenkvm`, [
    'run', '--kernel', guest.vmlinux, '--initrd', guest.initrd, '--memory', '512', '--vcpus', '2',
    '--cmdline', `console=hvc0 xenkvm_netbench=${bench}`, '--vif', link.vif,
  ]);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), TIMEOUT_MS);
  try {
    let receivers = s;
    if (link.tap) {
      // The host's side, once xenkvm has made the interface (long before the guest's /init runs).
      for (let i = 0; i < 600 && !existsSync(`/sys/class/net/${link.tap}`); i++) await sleep(100);
      ip('addr', 'add', `${link.host}/24`, 'dev', link.tap);
      receivers = await sinks(link.listen);
    }
    const status = await run.ended;
    if (status !== 0 || !run.output().includes(`${NETBENCH_MARKER} ok`)) {
      receivers?.kill();
      fail(`the Linux guest on ${kind} networking did not send its traffic (status ${status}); its last output:\n${run.output().slice(-2000)}`);
    }
    return await receivers!.figures(`the guest on ${kind} networking`);
  } finally {
    clearTimeout(timer);
  }
}

async function measure(): Promise<void> {
  const guest = linuxGuest(root);
  const samples = {
    floorTcp: [] as number[], floorUdp: [] as number[],
    tapTcp: [] as number[], tapUdp: [] as number[], tapTcpRatio: [] as number[], tapUdpRatio: [] as number[],
    userTcp: [] as number[], userUdp: [] as number[], userTcpRatio: [] as number[], userUdpRatio: [] as number[],
  };
  for (let round = 0; round < ROUNDS; round++) {
    const floor = await floorRun();
    const tap = await guestRun(guest, 'tap');
    const user = await guestRun(guest, 'user');
    samples.floorTcp.push(floor.tcpMBps);
    samples.floorUdp.push(floor.udpPps);
    samples.tapTcp.push(tap.tcpMBps);
    samples.tapUdp.push(tap.udpPps);
    samples.tapTcpRatio.push(tap.tcpMBps / floor.tcpMBps);
    samples.tapUdpRatio.push(tap.udpPps / floor.udpPps);
    samples.userTcp.push(user.tcpMBps);
    samples.userUdp.push(user.udpPps);
    samples.userTcpRatio.push(user.tcpMBps / floor.tcpMBps);
    samples.userUdpRatio.push(user.udpPps / floor.udpPps);
  }
  const m = medians(samples);
  const mbps = (x: number) => `${x.toFixed(1)} MB/s`;
  const pps = (x: number) => `${Math.round(x)}/s`;
  console.log(`PV network, guest to host (Debian's cloud kernel, 2 vCPUs): ${TCP_MIB} MiB over TCP, ${UDP_COUNT} UDP datagrams of ${UDP_BYTES} bytes; against host to host over a TAP pair; ${ROUNDS} rounds, medians`);
  console.log(`  floor (TAP pair):       TCP ${mbps(m.floorTcp)}, UDP ${pps(m.floorUdp)}`);
  console.log(`  guest over TAP:         TCP ${mbps(m.tapTcp)} (${m.tapTcpRatio.toFixed(3)} of the floor), UDP ${pps(m.tapUdp)} (${m.tapUdpRatio.toFixed(3)})`);
  console.log(`  guest over libslirp:    TCP ${mbps(m.userTcp)} (${m.userTcpRatio.toFixed(3)} of the floor), UDP ${pps(m.userUdp)} (${m.userUdpRatio.toFixed(3)})`);
}

await whereKvmHasXen('net', measure, () => linuxGuest(root)); // built here: the VM has no network to fetch the kernel

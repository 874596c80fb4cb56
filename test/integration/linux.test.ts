// The slow tier: Debian's unmodified cloud kernel boots as a PVH guest, and its generic
// kernel as an HVM guest (bzImage, direct boot), to a marker their /init prints, and
// powers off cleanly. Linux makes its hypercalls with VMCALL/VMMCALL,
// which reach xenkvm only through KVM's Xen support (CONFIG_KVM_XEN): `npm test` runs
// this file where the host's KVM has it, or in the nested VM whose KVM does.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { describe, requireKvm, vcpuExits, xenkvm } from '../guest-runner.js';
import { BALLOON_MARKER, INIT_MARKER, linuxGuest, NET_MARKER, ROOT_MARKER, rootImage, TTYS0_MARKER } from '../linux-guest.js';

requireKvm();

const root = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
const guest = linuxGuest(root);

const kernels = [
  { what: "Debian's cloud kernel boots as PVH", file: guest.vmlinux, mode: 'PVH' },
  { what: "Debian's generic kernel boots as HVM (its bzImage, direct boot)", file: guest.bzImage, mode: 'HVM' },
];

for (const kernel of kernels) {
  for (const vcpus of [1, 2]) {
    test(`${kernel.what} on ${vcpus} vCPU${vcpus > 1 ? 's' : ''} to its /init, which sees Xen, and powers off`, async () => {
      const r = await xenkvm(['run', '--kernel', kernel.file, '--initrd', guest.initrd, '--memory', '512', '--vcpus', String(vcpus), '--cmdline', 'console=hvc0'], { timeoutMs: 600_000 });
      assert.equal(r.status, 0, describe(r));
      assert.match(r.stdout, new RegExp(`^${INIT_MARKER} cpus=${vcpus} hypervisor=xen\\r?$`, 'm'), describe(r));
      assert.match(r.stdout, new RegExp(`^${TTYS0_MARKER} from user space\\r?$`, 'm'), describe(r));
      const balloon = balloonOf(r.stdout);
      assert.equal(balloon.current, balloon.target, describe(r));
      // Linux takes a guest with no RTC for PVH whichever way it booted: an HVM guest has Xen's RTC.
      assert.match(r.stdout, new RegExp(`Booting (paravirtualized )?kernel on Xen ${kernel.mode}\\r?$`, 'm'), describe(r));
      if (kernel.mode === 'HVM') {
        const rtc = /rtc_cmos \S+: setting system clock to \S+ UTC \((\d+)\)/.exec(r.stdout);
        assert.ok(rtc, describe(r));
        assert.ok(Math.abs(Number(rtc[1]) - Date.now() / 1000) < 900, `the RTC's time ${rtc[1]} is the host's`);
      }
    });
  }
}

/** Debian's cloud kernel on 2 vCPUs with `args`, to /init, logging each vCPU's exits; the Linux events ABI it chose. */
async function bootWithEvents(args: string[]): Promise<{ r: Awaited<ReturnType<typeof xenkvm>>; abi: string }> {
  const r = await xenkvm(['run', '--kernel', guest.vmlinux, '--initrd', guest.initrd, '--memory', '512', '--vcpus', '2', '--cmdline', 'console=hvc0', '--log-level', 'info', ...args], { timeoutMs: 600_000 });
  assert.equal(r.status, 0, describe(r));
  assert.match(r.stdout, new RegExp(`^${INIT_MARKER} cpus=2 hypervisor=xen\\r?$`, 'm'), describe(r));
  const abi = /Using (2-level|FIFO-based) ABI\r?$/m.exec(r.stdout);
  assert.ok(abi, describe(r));
  return { r, abi: abi[1] };
}

test("Debian's cloud kernel on 2 vCPUs, FIFO event channels not offered (the default where KVM raises events): it keeps the 2-level ABI, and KVM its timers", async () => {
  const { r, abi } = await bootWithEvents([]);
  assert.equal(abi, '2-level', describe(r));
  // With FIFO (the next test) some 1,600 timer calls per vCPU reach xenkvm; here KVM answers them.
  for (const vcpu of [0, 1]) {
    const calls = vcpuExits(r, vcpu).hypercalls.vcpu_op ?? 0;
    assert.ok(calls < 100, `vCPU ${vcpu}: ${calls} vcpu_op calls reached xenkvm\n${describe(r)}`);
  }
});

test("Debian's cloud kernel on 2 vCPUs with FIFO event channels offered (--evtchn-fifo on): it switches to them, its timers are xenkvm's, and it boots and powers off", async () => {
  const { r, abi } = await bootWithEvents(['--evtchn-fifo', 'on']);
  assert.equal(abi, 'FIFO-based', describe(r));
  for (const vcpu of [0, 1]) {
    const calls = vcpuExits(r, vcpu).hypercalls.vcpu_op ?? 0;
    assert.ok(calls >= 100, `vCPU ${vcpu}: only ${calls} vcpu_op calls reached xenkvm: KVM kept a timer it cannot raise under FIFO\n${describe(r)}`);
  }
});

test("Linux's balloon driver gives back what is above XenStore's memory/target (--memory-target) and reaches it", async () => {
  const r = await xenkvm(['run', '--kernel', guest.vmlinux, '--initrd', guest.initrd, '--memory', '512', '--memory-target', '384', '--cmdline', 'console=hvc0'], { timeoutMs: 600_000 });
  assert.equal(r.status, 0, describe(r));
  // Linux aims at memory/target less what its own count of RAM falls short of static-max (the legacy hole).
  const balloon = balloonOf(r.stdout);
  assert.equal(balloon.current, balloon.target, describe(r));
  assert.ok(balloon.target <= 384 * 1024 && balloon.target > 382 * 1024, describe(r));
});

test("Debian's cloud kernel on 2 vCPUs with its root filesystem on xvda, an ext4 image through its blkfront (2 queues, 4-page rings, persistent grants): it reads what the host wrote, and the host reads what it wrote", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-linux-root-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const image = join(dir, 'root.img');
  const data = randomBytes(8 << 20);
  rootImage(image, 64, data);
  const r = await xenkvm(['run', '--kernel', guest.vmlinux, '--initrd', guest.initrd, '--memory', '512', '--vcpus', '2', '--cmdline', 'console=hvc0 xenkvm_root=xvda', '--disk', `format=raw, vdev=xvda, access=rw, target=${image}`, '--log-level', 'info'], { timeoutMs: 600_000 });
  assert.equal(r.status, 0, describe(r));
  const said = new RegExp(`^${ROOT_MARKER} root=(\\S+) queues=(\\d+) data=(\\w+) written=(\\w+)\\r?$`, 'm').exec(r.stdout);
  assert.ok(said, describe(r));
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  assert.deepEqual(said.slice(1, 4), ['/dev/xvda', '2', md5(data)], describe(r));
  const connected = r.stderr.split('\n').filter((l) => l.includes('"vbd connected"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(connected.length, 1, describe(r));
  assert.deepEqual([connected[0].queues, connected[0].ringPages, connected[0].persistent], [2, 4, true], describe(r));
  // The guest's file, as the image holds it; and the filesystem is clean.
  const written = execFileSync('/usr/sbin/debugfs', ['-R', 'cat /written', image], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20 });
  assert.equal(written.length, 4 << 20);
  assert.equal(md5(written), said[4]);
  execFileSync('/usr/sbin/e2fsck', ['-fn', image], { stdio: 'pipe' });
});

const links = [
  { what: 'a TAP device (2 queues)', queues: '2', host: '10.0.4.1', guest: '10.0.4.2', listen: '10.0.4.1', vif: 'vifname=xkvmlinux0', tap: 'xkvmlinux0' },
  // Slirp's host is 10.0.2.2 to the guest, the host's loopback to the host.
  { what: 'user-mode networking (1 queue)', queues: '1', host: '10.0.2.2', guest: '10.0.2.15', listen: '127.0.0.1', vif: 'net=user', tap: undefined },
];

for (const link of links) {
  test(`Debian's cloud kernel on 2 vCPUs with its netfront on ${link.what}: it pings the host, fetches 8 MiB from it over HTTP and sends it 4 MiB over TCP, both intact`, async (t) => {
    const run = xenkvm(['run', '--kernel', guest.vmlinux, '--initrd', guest.initrd, '--memory', '512', '--vcpus', '2', '--cmdline', `console=hvc0 xenkvm_net=${link.guest}/24,${link.host},8080`, '--vif', link.vif], { timeoutMs: 600_000 });
    if (link.tap) {
      // The host's side, once xenkvm has made the interface (long before the guest's /init runs).
      for (let i = 0; i < 600 && !existsSync(`/sys/class/net/${link.tap}`); i++) await sleep(100);
      execFileSync('ip', ['addr', 'add', `${link.host}/24`, 'dev', link.tap]);
    }
    const blob = randomBytes(8 << 20);
    const http = createHttpServer((_req, res) => res.end(blob));
    t.after(() => http.close());
    await new Promise<void>((resolve) => http.listen(8080, link.listen, resolve));
    const received = new Promise<Buffer>((resolve) => {
      const tcp = createTcpServer((socket) => {
        const chunks: Buffer[] = [];
        let length = 0;
        socket.on('data', (d: Buffer) => {
          chunks.push(d);
          length += d.length;
          // The guest's nc ends when the host closes: once the 4 MiB are in.
          if (length >= 4 << 20) socket.end();
        });
        socket.on('close', () => resolve(Buffer.concat(chunks)));
      });
      t.after(() => tcp.close());
      tcp.listen(8081, link.listen);
    });
    const r = await run;
    assert.equal(r.status, 0, describe(r));
    const uploaded = await Promise.race([received, sleep(5000).then(() => Buffer.alloc(0))]);
    const said = new RegExp(`^${NET_MARKER} ping=(\\w+) queues=(\\d+) download=(\\w+) upload=(\\w+)\\r?$`, 'm').exec(r.stdout);
    assert.ok(said, describe(r));
    const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
    assert.equal(uploaded.length, 4 << 20, describe(r));
    assert.deepEqual(said.slice(1, 5), ['ok', link.queues, md5(blob), md5(uploaded)], describe(r));
  });
}

/** What /init's balloon line says, in KiB. */
function balloonOf(stdout: string): { current: number; target: number } {
  const m = new RegExp(`^${BALLOON_MARKER} current_kb=(\\d+) target_kb=(\\d+)\\r?$`, 'm').exec(stdout);
  assert.ok(m, `no ${BALLOON_MARKER} line`);
  return { current: Number(m[1]), target: Number(m[2]) };
}

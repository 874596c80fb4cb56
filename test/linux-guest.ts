// The Linux guests of the slow test tier: Debian's own kernels, unmodified (their
// packages fetched with `apt-get download` and unpacked, never installed): the cloud
// kernel as the ELF vmlinux its bzImage carries, which has the PVH note, and the
// generic kernel (the nested VM's) as its bzImage, for HVM direct boot; and a busybox
// initramfs whose /init says where it is and powers off; or, given xenkvm_root=xvdX on
// the command line, loads the cloud kernel's blkfront and makes that disk its root
// (rootImage builds one); or, given xenkvm_net=ADDRESS/PREFIX,HOST,PORT, loads its
// netfront and talks to the host over it; or, given xenkvm_netbench=, sends the network benchmark's
// traffic to the host (bench/net.ts). Built once on the host under build/linux-guest/ (the nested
// VM has no network) and rebuilt when an input changes.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { downloadKernelPackage, genericKernelPackage } from '../src/nested/image.js';

const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
const BUSYBOX = '/bin/busybox';
/** What /init prints, then it powers the guest off. */
export const INIT_MARKER = 'XENKVM-LINUX-INIT';
/**
 * What /init writes to /dev/ttyS0: the UART works from user space (its IRQ from the DSDT). The write returns
 * once the line is queued; /init waits until the UART has sent it (tx in /proc/tty/driver/serial) before it
 * powers off.
 */
export const TTYS0_MARKER = 'XENKVM-LINUX-TTYS0';
/** What /init prints once Linux's balloon driver has reached its target (or 60 s have passed): where it is and the target. */
export const BALLOON_MARKER = 'XENKVM-LINUX-BALLOON';
/** Where the root filesystem's /sbin/init says what it found; ROOT_FAILED if the initramfs could not switch to it. */
export const ROOT_MARKER = 'XENKVM-LINUX-ROOT';
export const ROOT_FAILED = 'XENKVM-LINUX-NO-ROOT';
/**
 * What /init says after its network test: whether the host answered its pings, eth0's transmit queues, the
 * MD5 sum of what it fetched from http://HOST:PORT/blob and of the 4 MiB it sent to HOST:PORT+1.
 */
export const NET_MARKER = 'XENKVM-LINUX-NET';
/**
 * What /init says once the network benchmark's sender (guests/linux/net-send.c, its /bin/net-send) is
 * done, given xenkvm_netbench=ADDRESS/PREFIX,HOST,PORT,MIB,COUNT,SIZE: MIB MiB over TCP to HOST:PORT, then
 * COUNT datagrams of SIZE bytes to HOST:PORT+1; `ok` or `failed`.
 */
export const NETBENCH_MARKER = 'XENKVM-LINUX-NETBENCH';
/** The blkfront options the initramfs loads it with: rings of 4 pages (Linux's default is one). */
export const BLKFRONT_OPTIONS = 'max_ring_page_order=2';
// Arguments of the kernel's command line that it does not know and that have no dot reach /init in its environment.
const INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
if [ -n "$xenkvm_root" ]; then
  /bin/busybox insmod /lib/xen-blkfront.ko ${BLKFRONT_OPTIONS}
  i=0
  until [ -b /dev/$xenkvm_root ] || [ $i -ge 600 ]; do /bin/busybox sleep 0.1; i=$((i + 1)); done
  /bin/busybox mkdir /root
  /bin/busybox mount -t ext4 /dev/$xenkvm_root /root && /bin/busybox umount /proc /sys && /bin/busybox mount --move /dev /root/dev && exec /bin/busybox switch_root /root /sbin/init
  echo "${ROOT_FAILED} $xenkvm_root"
  /bin/busybox poweroff -f
fi
# eth0 through Linux's netfront, at address $1.
net_up() {
  /bin/busybox insmod /lib/xen-netfront.ko
  i=0
  until [ -e /sys/class/net/eth0 ] || [ $i -ge 600 ]; do /bin/busybox sleep 0.1; i=$((i + 1)); done
  /bin/busybox ip addr add $1 dev eth0
  /bin/busybox ip link set eth0 up
}
if [ -n "$xenkvm_netbench" ]; then
  set -- $(echo "$xenkvm_netbench" | /bin/busybox tr , ' ')
  net_up $1
  /bin/net-send tcp $2 $3 $4 && /bin/net-send udp $2 $(($3 + 1)) $5 $6 && sent=ok || sent=failed
  echo "${NETBENCH_MARKER} $sent"
  /bin/busybox poweroff -f
fi
if [ -n "$xenkvm_net" ]; then
  set -- $(echo "$xenkvm_net" | /bin/busybox tr , ' ')
  net_up $1
  /bin/busybox ping -c 3 -W 10 $2 >/dev/null && ping=ok || ping=failed
  download=$(/bin/busybox wget -q -O - http://$2:$3/blob | /bin/busybox md5sum | /bin/busybox cut -d' ' -f1)
  /bin/busybox dd if=/dev/urandom of=/upload bs=64k count=64 2>/dev/null
  /bin/busybox nc $2 $(($3 + 1)) < /upload
  echo "${NET_MARKER} ping=$ping queues=$(/bin/busybox ls -d /sys/class/net/eth0/queues/tx-* | /bin/busybox wc -l) download=$download upload=$(/bin/busybox md5sum /upload | /bin/busybox cut -d' ' -f1)"
  /bin/busybox poweroff -f
fi
/bin/busybox timeout 30 /bin/busybox sh -c 'echo "${TTYS0_MARKER} from user space" > /dev/ttyS0; until /bin/busybox awk "/^0:/ { split(\\$5, tx, \\":\\"); exit tx[2] < 35 }" /proc/tty/driver/serial; do /bin/busybox sleep 0.1; done'
echo "${INIT_MARKER} cpus=$(/bin/busybox grep -c ^processor /proc/cpuinfo) hypervisor=$(/bin/busybox cat /sys/hypervisor/type)"
b=/sys/devices/system/xen_memory/xen_memory0
i=0
while [ "$(/bin/busybox cat $b/info/current_kb)" -gt "$(/bin/busybox cat $b/target_kb)" ] && [ $i -lt 600 ]; do /bin/busybox sleep 0.1; i=$((i + 1)); done
echo "${BALLOON_MARKER} current_kb=$(/bin/busybox cat $b/info/current_kb) target_kb=$(/bin/busybox cat $b/target_kb)"
/bin/busybox poweroff -f
`;
/** Debian's cloud kernels compress their payload with LZ4 (legacy frame format). */
const LZ4_LEGACY_MAGIC = 0x184c2102;
/**
 * A root filesystem's /sbin/init: it says what its root is, how many hardware queues the disk has, and
 * the MD5 sums of a file the host wrote and of one it writes itself, then remounts the root read-only
 * (so the image is clean on the host) and powers off.
 */
const ROOT_INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox dd if=/dev/urandom of=/written bs=64k count=64 2>/dev/null
/bin/busybox sync
echo "${ROOT_MARKER} root=$(/bin/busybox awk '$2 == "/" { d = $1 } END { print d }' /proc/mounts) queues=$(/bin/busybox ls /sys/block/xvda/mq | /bin/busybox wc -l) data=$(/bin/busybox md5sum /data | /bin/busybox cut -d' ' -f1) written=$(/bin/busybox md5sum /written | /bin/busybox cut -d' ' -f1)"
/bin/busybox umount /proc /sys
/bin/busybox mount -o remount,ro /
/bin/busybox poweroff -f
`;

export interface LinuxGuest {
  /** Debian's package the kernel came from, e.g. linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb. */
  package: string;
  vmlinux: string;
  /** The generic kernel's bzImage. */
  bzImage: string;
  initrd: string;
}

/** An ext4 image at `path` (`sizeMiB` big) to boot as the root on xvda: busybox, ROOT_INIT as /sbin/init, and `data` as /data. */
export function rootImage(path: string, sizeMiB: number, data: Buffer): void {
  const tree = mkdtempSync(`${path}.tree-`);
  try {
    for (const d of ['bin', 'sbin', 'proc', 'sys', 'dev']) mkdirSync(join(tree, d));
    copyFileSync(BUSYBOX, join(tree, 'bin', 'busybox'));
    chmodSync(join(tree, 'bin', 'busybox'), 0o755);
    writeFileSync(join(tree, 'sbin', 'init'), ROOT_INIT, { mode: 0o755 });
    writeFileSync(join(tree, 'data'), data);
    run('/usr/sbin/mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, path, `${sizeMiB}M`]);
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

function run(file: string, args: string[], cwd?: string): string {
  return execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The guest for the checkout at `root`, fetched and built first where it is missing or stale. */
export function linuxGuest(root: string): LinuxGuest {
  const dir = join(root, 'build', 'linux-guest');
  mkdirSync(dir, { recursive: true });
  const deb = readdirSync(dir).find((f) => /^linux-image-.*-cloud-amd64_.*\.deb$/.test(f)) ?? basename(downloadKernelPackage(dir, KERNEL_META_PACKAGE));
  const generic = genericKernelPackage(root);
  const netSend = join(root, 'guests', 'build', 'linux', 'net-send');
  if (!existsSync(netSend)) throw new Error(`${netSend} is missing: build the guests first (make -C guests)`);
  const key = createHash('sha256').update(deb).update(basename(generic)).update(readFileSync(BUSYBOX)).update(readFileSync(netSend)).update(INIT).digest('hex').slice(0, 16);
  const guest = { package: deb, vmlinux: join(dir, `vmlinux-${key}`), bzImage: join(dir, `vmlinuz-${key}`), initrd: join(dir, `initrd-${key}.cpio`) };
  if (existsSync(guest.vmlinux) && existsSync(guest.bzImage) && existsSync(guest.initrd)) return guest;
  const work = mkdtempSync(join(dir, 'build-'));
  try {
    writeFileSync(join(work, 'vmlinux'), vmlinuxOf(readFileSync(kernelIn(join(dir, deb), join(work, 'cloud')))));
    copyFileSync(kernelIn(generic, join(work, 'generic')), join(work, 'vmlinuz'));
    const initramfs = join(work, 'initramfs');
    for (const d of ['bin', 'proc', 'sys', 'dev', 'lib']) mkdirSync(join(initramfs, d), { recursive: true });
    copyFileSync(moduleIn(join(work, 'cloud'), 'drivers/block/xen-blkfront.ko'), join(initramfs, 'lib', 'xen-blkfront.ko'));
    copyFileSync(moduleIn(join(work, 'cloud'), 'drivers/net/xen-netfront.ko'), join(initramfs, 'lib', 'xen-netfront.ko'));
    copyFileSync(BUSYBOX, join(initramfs, 'bin', 'busybox'));
    chmodSync(join(initramfs, 'bin', 'busybox'), 0o755);
    copyFileSync(netSend, join(initramfs, 'bin', 'net-send'));
    chmodSync(join(initramfs, 'bin', 'net-send'), 0o755);
    writeFileSync(join(initramfs, 'init'), INIT, { mode: 0o755 });
    const files = run('find', ['.'], initramfs);
    writeFileSync(join(work, 'initrd'), execFileSync('cpio', ['--quiet', '-o', '-H', 'newc'], { cwd: initramfs, input: files, maxBuffer: 64 * 1024 * 1024 }));
    // Renamed into place: a concurrent build never sees half a file.
    renameSync(join(work, 'vmlinux'), guest.vmlinux);
    renameSync(join(work, 'vmlinuz'), guest.bzImage);
    renameSync(join(work, 'initrd'), guest.initrd);
    for (const old of readdirSync(dir)) {
      if (/^(vmlinux|vmlinuz|initrd)-[0-9a-f]{16}/.test(old) && ![guest.vmlinux, guest.bzImage, guest.initrd].some((f) => f.endsWith(old))) rmSync(join(dir, old));
    }
    return guest;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The bzImage a kernel package holds (boot/vmlinuz-*), unpacked under `work`. */
function kernelIn(deb: string, work: string): string {
  run('dpkg-deb', ['-x', deb, work]);
  const boot = join(work, 'boot');
  const bzImage = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
  if (!bzImage) throw new Error(`${basename(deb)} holds no kernel`);
  return join(boot, bzImage);
}

/** A module of an unpacked kernel package, by its path under kernel/. */
function moduleIn(unpacked: string, path: string): string {
  const modules = join(unpacked, 'lib', 'modules');
  const [release] = readdirSync(modules);
  const file = join(modules, release, 'kernel', path);
  if (!existsSync(file)) throw new Error(`the kernel package has no ${path}`);
  return file;
}

/** The ELF kernel inside a bzImage: its protected-mode payload (boot protocol 2.08+), decompressed with lz4. */
export function vmlinuxOf(bzImage: Buffer): Buffer {
  if (bzImage.toString('latin1', 0x202, 0x206) !== 'HdrS' || bzImage.readUInt16LE(0x206) < 0x208) {
    throw new Error('not a bzImage of boot protocol 2.08 or later');
  }
  const setupSectors = bzImage[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + bzImage.readUInt32LE(0x248);
  const end = start + bzImage.readUInt32LE(0x24c);
  // The build appends the decompressed size to the compressed stream.
  const payload = bzImage.subarray(start, end - 4);
  const size = bzImage.readUInt32LE(end - 4);
  if (payload.readUInt32LE(0) !== LZ4_LEGACY_MAGIC) throw new Error(`the kernel's payload is not LZ4 (it starts ${payload.subarray(0, 4).toString('hex')})`);
  const vmlinux = execFileSync('lz4', ['-dc'], { input: payload, maxBuffer: size + 1 });
  if (vmlinux.length !== size) throw new Error(`the kernel's payload unpacked to ${vmlinux.length} bytes, not the ${size} its bzImage says`);
  return vmlinux;
}

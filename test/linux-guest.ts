// The Linux guest of the slow test tier: Debian's own cloud kernel, unmodified (its
// package fetched with `apt-get download` and unpacked, never installed), as the ELF
// vmlinux its bzImage carries, which has the PVH note; and a busybox initramfs
// whose /init says where it is and powers off. Built once on the host under
// build/linux-guest/ (the nested VM has no network) and rebuilt when an input changes.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { downloadKernelPackage } from '../src/nested/image.js';

const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
const BUSYBOX = '/bin/busybox';
/** What /init prints, then it powers the guest off. */
export const INIT_MARKER = 'XENKVM-LINUX-INIT';
/** What /init writes to /dev/ttyS0: the UART works from user space (its IRQ from the DSDT). */
export const TTYS0_MARKER = 'XENKVM-LINUX-TTYS0';
const INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox timeout 30 /bin/busybox sh -c 'echo "${TTYS0_MARKER} from user space" > /dev/ttyS0'
echo "${INIT_MARKER} cpus=$(/bin/busybox grep -c ^processor /proc/cpuinfo) hypervisor=$(/bin/busybox cat /sys/hypervisor/type)"
/bin/busybox poweroff -f
`;
/** Debian's cloud kernels compress their payload with LZ4 (legacy frame format). */
const LZ4_LEGACY_MAGIC = 0x184c2102;

export interface LinuxGuest {
  /** Debian's package the kernel came from, e.g. linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb. */
  package: string;
  vmlinux: string;
  initrd: string;
}

function run(file: string, args: string[], cwd?: string): string {
  return execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The guest for the checkout at `root`, fetched and built first where it is missing or stale. */
export function linuxGuest(root: string): LinuxGuest {
  const dir = join(root, 'build', 'linux-guest');
  mkdirSync(dir, { recursive: true });
  const deb = readdirSync(dir).find((f) => /^linux-image-.*-cloud-amd64_.*\.deb$/.test(f)) ?? basename(downloadKernelPackage(dir, KERNEL_META_PACKAGE));
  const key = createHash('sha256').update(deb).update(readFileSync(BUSYBOX)).update(INIT).digest('hex').slice(0, 16);
  const guest = { package: deb, vmlinux: join(dir, `vmlinux-${key}`), initrd: join(dir, `initrd-${key}.cpio`) };
  if (existsSync(guest.vmlinux) && existsSync(guest.initrd)) return guest;
  const work = mkdtempSync(join(dir, 'build-'));
  try {
    run('dpkg-deb', ['-x', join(dir, deb), join(work, 'package')]);
    const boot = join(work, 'package', 'boot');
    const bzImage = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
    if (!bzImage) throw new Error(`${deb} holds no kernel`);
    writeFileSync(join(work, 'vmlinux'), vmlinuxOf(readFileSync(join(boot, bzImage))));
    const initramfs = join(work, 'initramfs');
    for (const d of ['bin', 'proc', 'sys', 'dev']) mkdirSync(join(initramfs, d), { recursive: true });
    copyFileSync(BUSYBOX, join(initramfs, 'bin', 'busybox'));
    chmodSync(join(initramfs, 'bin', 'busybox'), 0o755);
    writeFileSync(join(initramfs, 'init'), INIT, { mode: 0o755 });
    const files = run('find', ['.'], initramfs);
    writeFileSync(join(work, 'initrd'), execFileSync('cpio', ['--quiet', '-o', '-H', 'newc'], { cwd: initramfs, input: files, maxBuffer: 64 * 1024 * 1024 }));
    // Renamed into place: a concurrent build never sees half a file.
    renameSync(join(work, 'vmlinux'), guest.vmlinux);
    renameSync(join(work, 'initrd'), guest.initrd);
    for (const old of readdirSync(dir)) {
      if (/^(vmlinux|initrd)-[0-9a-f]{16}/.test(old) && !guest.vmlinux.endsWith(old) && !guest.initrd.endsWith(old)) rmSync(join(dir, old));
    }
    return guest;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
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

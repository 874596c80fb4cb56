// Debian's GRUB for Xen PVH guests (package grub-xen-host, the image a Xen host
// boots as a PVH domU to find a kernel on the guest's own disks): fetched with
// `apt-get download` and unpacked under build/grub-xen/ on the host (the nested
// VM has no network), once. Its built-in configuration reads /boot/grub/grub.cfg
// or /grub/grub.cfg from the first disk holding one.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { downloadPackage } from '../src/nested/image.js';

const PACKAGE = 'grub-xen-host';
const IMAGE = 'usr/lib/grub-xen/grub-i386-xen_pvh.bin';

/** The PVH GRUB image for the checkout at `root`, fetched first where it is missing. */
export function grubPvh(root: string): string {
  const dir = join(root, 'build', 'grub-xen');
  const image = join(dir, 'grub-i386-xen_pvh.bin');
  if (existsSync(image)) return image;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, 'build-'));
  try {
    const deb = readdirSync(dir).find((f) => f.startsWith(`${PACKAGE}_`) && f.endsWith('.deb'));
    execFileSync('dpkg-deb', ['-x', deb ? join(dir, deb) : downloadPackage(dir, PACKAGE), work], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (!existsSync(join(work, IMAGE))) throw new Error(`${PACKAGE} holds no ${IMAGE}`);
    renameSync(join(work, IMAGE), image);
    return image;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

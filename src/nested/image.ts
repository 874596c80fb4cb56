// The nested VM's boot image: Debian's generic kernel (its package fetched with
// `apt-get download` and unpacked, never installed) and a busybox initramfs
// holding the modules the VM needs and src/nested/init.sh. Built once under
// build/nested/ and rebuilt when any input changes (the kernel package, busybox,
// the init script, the module list).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export class NestedUnavailableError extends Error {}

/** What the VM's init loads: the 9p root, the overlay, the control port, and KVM (SVM under `-cpu max`). */
const MODULES = ['virtio_pci', 'virtio_console', '9pnet_virtio', '9p', 'overlay', 'kvm_amd'];
const KERNEL_META_PACKAGE = 'linux-image-amd64';
const BUSYBOX = '/bin/busybox';
/** What building the initramfs runs, and the Debian package each comes in. */
const BUILD_TOOLS = [['/usr/bin/dpkg-deb', 'dpkg'], ['/usr/bin/cpio', 'cpio'], ['/usr/sbin/depmod', 'kmod'], ['/usr/sbin/modprobe', 'kmod']] as const;

export interface BootImage {
  kernel: string;
  initrd: string;
}

/** The image for the checkout at `root`, built or rebuilt first when its inputs changed. */
export function bootImage(root: string): BootImage {
  const dir = join(root, 'build', 'nested');
  mkdirSync(dir, { recursive: true });
  const deb = kernelPackage(dir);
  const init = readFileSync(join(root, 'src', 'nested', 'init.sh'));
  requireTool(BUSYBOX, 'busybox-static');
  const key = createHash('sha256')
    .update(JSON.stringify({ deb: basename(deb), size: statSync(deb).size, modules: MODULES }))
    .update(readFileSync(BUSYBOX))
    .update(init)
    .digest('hex')
    .slice(0, 16);
  const image = { kernel: join(dir, `vmlinuz-${key}`), initrd: join(dir, `initrd-${key}.gz`) };
  if (existsSync(image.kernel) && existsSync(image.initrd)) return image;
  build(dir, deb, init, image);
  return image;
}

function requireTool(path: string, pkg: string): void {
  if (!existsSync(path)) throw new NestedUnavailableError(`${path} not found: install ${pkg} (Debian: apt-get install ${pkg}; npm run setup does it as root)`);
}

function run(file: string, args: string[], options: { cwd?: string; input?: Buffer } = {}): string {
  try {
    return execFileSync(file, args, { cwd: options.cwd, input: options.input, encoding: 'utf8', stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const detail = (err.stderr ?? '').trim().split('\n').pop() || err.message;
    throw new NestedUnavailableError(`${file} ${args.join(' ')} failed: ${detail}`);
  }
}

/** The kernel package in `dir`, fetched with `apt-get download` when there is none. */
function kernelPackage(dir: string): string {
  const present = readdirSync(dir).find((f) => /^linux-image-.*\.deb$/.test(f));
  if (present) return join(dir, present);
  requireTool('/usr/bin/apt-get', 'apt');
  const dependsOn = () => /Depends: (linux-image-\S+)/.exec(run('apt-cache', ['depends', KERNEL_META_PACKAGE]))?.[1];
  let name = dependsOn();
  if (!name && process.getuid?.() === 0) {
    run('apt-get', ['update', '-qq']);
    name = dependsOn();
  }
  if (!name) throw new NestedUnavailableError(`cannot find Debian's ${KERNEL_META_PACKAGE} package: run apt-get update, then try again`);
  const tmp = mkdtempSync(join(dir, 'download-'));
  try {
    run('apt-get', ['download', '-qq', name], { cwd: tmp });
    const file = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (!file) throw new NestedUnavailableError(`apt-get download ${name} left no package`);
    renameSync(join(tmp, file), join(dir, file));
    return join(dir, file);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function build(dir: string, deb: string, init: Buffer, image: BootImage): void {
  for (const [tool, pkg] of BUILD_TOOLS) requireTool(tool, pkg);
  const work = mkdtempSync(join(dir, 'build-'));
  try {
    const unpacked = join(work, 'package');
    run('dpkg-deb', ['-x', deb, unpacked]);
    const release = readdirSync(join(unpacked, 'lib', 'modules'))[0];
    if (!release) throw new NestedUnavailableError(`${basename(deb)} holds no kernel modules`);
    run('depmod', ['-b', unpacked, release]);
    // Each module after those it needs, once.
    const order: string[] = [];
    for (const m of MODULES) {
      for (const line of run('modprobe', ['-d', unpacked, '-S', release, '--show-depends', m]).split('\n')) {
        const file = /^insmod (\S+)/.exec(line)?.[1];
        if (file && !order.includes(file)) order.push(file);
      }
    }
    const initramfs = join(work, 'initramfs');
    for (const d of ['bin', 'modules', 'proc', 'sys', 'dev', 'lower', 'rw', 'root']) mkdirSync(join(initramfs, d), { recursive: true });
    copyFileSync(BUSYBOX, join(initramfs, 'bin', 'busybox'));
    chmodSync(join(initramfs, 'bin', 'busybox'), 0o755);
    order.forEach((file, i) => copyFileSync(file, join(initramfs, 'modules', `${String(i).padStart(2, '0')}-${basename(file)}`)));
    writeFileSync(join(initramfs, 'init'), init, { mode: 0o755 });
    const files = run('find', ['.'], { cwd: initramfs });
    const cpio = execFileSync('cpio', ['--quiet', '-o', '-H', 'newc'], { cwd: initramfs, input: files, maxBuffer: 512 * 1024 * 1024 });
    const gz = execFileSync('gzip', ['-1'], { input: cpio, maxBuffer: 512 * 1024 * 1024 });
    // Written under temporary names and renamed: a concurrent build never sees half an image.
    const kernelSrc = join(unpacked, 'boot', `vmlinuz-${release}`);
    copyFileSync(kernelSrc, join(work, 'vmlinuz'));
    writeFileSync(join(work, 'initrd.gz'), gz);
    renameSync(join(work, 'vmlinuz'), image.kernel);
    renameSync(join(work, 'initrd.gz'), image.initrd);
    for (const old of readdirSync(dir)) {
      if (/^(vmlinuz|initrd)-/.test(old) && ![basename(image.kernel), basename(image.initrd)].includes(old)) rmSync(join(dir, old), { force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// The nested VM's boot image: Debian's generic kernel (its package fetched with
// `apt-get download` and unpacked, never installed) and a busybox initramfs
// holding the modules the VM needs and src/nested/init.sh. Built once under
// build/nested/ and rebuilt when any input changes (the kernel package, busybox,
// the init script, the module list). The 'kvm-xen' variant boots the newest
// kernel series Debian 12 carries (its security updates' 6.12), with KVM's
// modules rebuilt with CONFIG_KVM_XEN from Debian's source of the same kernel
// (only arch/x86/kvm, against the kernel's own headers package), so that KVM's
// Xen support, which Debian's kernels leave out, can be tested too, all of it
// (shared_info by host address needs Linux 6.9).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';

export class NestedUnavailableError extends Error {}

/** What the VM's init loads: the 9p root, the overlay, the control port, KVM (SVM under `-cpu max`), FUSE (for QEMU's storage daemon's exports), loop devices (for a disk of 4096-byte sectors) and TAP devices. */
const MODULES = ['virtio_pci', 'virtio_console', '9pnet_virtio', '9p', 'overlay', 'kvm_amd', 'fuse', 'loop', 'tun'];
/** The kernel each variant boots, by the Debian package that depends on its newest build. */
const KERNEL_META_PACKAGES: Record<KernelVariant, string> = { debian: 'linux-image-amd64', 'kvm-xen': 'linux-image-6.12-amd64' };
const BUSYBOX = '/bin/busybox';
/** What building the initramfs runs, and the Debian package each comes in. */
const BUILD_TOOLS = [['/usr/bin/dpkg-deb', 'dpkg'], ['/usr/bin/cpio', 'cpio'], ['/usr/sbin/depmod', 'kmod'], ['/usr/sbin/modprobe', 'kmod'], ['/usr/bin/xz', 'xz-utils']] as const;

export interface BootImage {
  kernel: string;
  initrd: string;
}

/** Debian's kernel as it is, or with KVM's modules rebuilt with CONFIG_KVM_XEN. */
export type KernelVariant = 'debian' | 'kvm-xen';

/** The image for the checkout at `root`, built or rebuilt first when its inputs changed. */
export function bootImage(root: string, variant: KernelVariant = 'debian'): BootImage {
  const dir = join(root, 'build', 'nested');
  // Each variant's kernel package in a folder of its own.
  const packages = variant === 'debian' ? dir : join(dir, variant);
  mkdirSync(packages, { recursive: true });
  const deb = kernelPackage(packages, KERNEL_META_PACKAGES[variant]);
  const init = readFileSync(join(root, 'src', 'nested', 'init.sh'));
  requireTool(BUSYBOX, 'busybox-static');
  const key = createHash('sha256')
    .update(JSON.stringify({ deb: basename(deb), size: statSync(deb).size, modules: MODULES, ...(variant === 'kvm-xen' ? { kvmXen: KVM_XEN_BUILD } : {}) }))
    .update(readFileSync(BUSYBOX))
    .update(init)
    .digest('hex')
    .slice(0, 16);
  const prefix = variant === 'debian' ? '' : `${variant}-`;
  const image = { kernel: join(dir, `${prefix}vmlinuz-${key}`), initrd: join(dir, `${prefix}initrd-${key}.gz`) };
  if (existsSync(image.kernel) && existsSync(image.initrd)) return image;
  build(dir, deb, init, image, variant, new RegExp(`^${prefix}(vmlinuz|initrd)-[0-9a-f]{16}`));
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

/** Debian's generic kernel package the nested VM boots (the Linux test tier boots it too, as an HVM guest). */
export function genericKernelPackage(root: string): string {
  const dir = join(root, 'build', 'nested');
  mkdirSync(dir, { recursive: true });
  return kernelPackage(dir, KERNEL_META_PACKAGES.debian);
}

/** The kernel package in `dir`, fetched with `apt-get download` of what `metaPackage` depends on when there is none. */
function kernelPackage(dir: string, metaPackage: string): string {
  const present = readdirSync(dir).find((f) => /^linux-image-.*\.deb$/.test(f));
  return present ? join(dir, present) : downloadKernelPackage(dir, metaPackage);
}

/** Fetches into `dir` the kernel package Debian's `metaPackage` (e.g. linux-image-amd64) depends on now; its path. */
export function downloadKernelPackage(dir: string, metaPackage: string): string {
  requireTool('/usr/bin/apt-get', 'apt');
  const dependsOn = () => /Depends: (linux-image-\S+)/.exec(run('apt-cache', ['depends', metaPackage]))?.[1];
  let name = dependsOn();
  if (!name && process.getuid?.() === 0) {
    run('apt-get', ['update', '-qq']);
    name = dependsOn();
  }
  if (!name) throw new NestedUnavailableError(`cannot find Debian's ${metaPackage} package: run apt-get update, then try again`);
  return downloadPackage(dir, name);
}

/** Fetches Debian's package `name` into `dir` with `apt-get download`; its path. */
export function downloadPackage(dir: string, name: string): string {
  requireTool('/usr/bin/apt-get', 'apt');
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

function build(dir: string, deb: string, init: Buffer, image: BootImage, variant: KernelVariant, oldImages: RegExp): void {
  for (const [tool, pkg] of BUILD_TOOLS) requireTool(tool, pkg);
  const work = mkdtempSync(join(dir, 'build-'));
  try {
    const unpacked = join(work, 'package');
    run('dpkg-deb', ['-x', deb, unpacked]);
    const release = readdirSync(join(unpacked, 'lib', 'modules'))[0];
    if (!release) throw new NestedUnavailableError(`${basename(deb)} holds no kernel modules`);
    if (variant === 'kvm-xen') {
      const kvmDir = join(unpacked, 'lib', 'modules', release, 'kernel', 'arch', 'x86', 'kvm');
      for (const m of kvmXenModules(dir, deb, release)) {
        // In place of the package's own, compressed (6.12's) or not (6.1's).
        rmSync(join(kvmDir, `${basename(m)}.xz`), { force: true });
        copyFileSync(m, join(kvmDir, basename(m)));
      }
    }
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
    // Uncompressed, for busybox's insmod: Debian compresses 6.12's modules with xz.
    order.forEach((file, i) => {
      const target = join(initramfs, 'modules', `${String(i).padStart(2, '0')}-${basename(file).replace(/\.xz$/, '')}`);
      if (file.endsWith('.xz')) writeFileSync(target, execFileSync('xz', ['-dc', file], { maxBuffer: 256 * 1024 * 1024 }));
      else copyFileSync(file, target);
    });
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
      if (oldImages.test(old) && ![basename(image.kernel), basename(image.initrd)].includes(old)) rmSync(join(dir, old), { force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What the kvm-xen modules are built with: a change rebuilds them and the image. */
const KVM_XEN_BUILD = { config: 'CONFIG_KVM_XEN=y', modules: ['kvm.ko', 'kvm-amd.ko'], noBtf: 'CONFIG_DEBUG_INFO_BTF_MODULES=' };

/**
 * kvm.ko and kvm-amd.ko of the kernel in `deb` rebuilt with CONFIG_KVM_XEN, cached in `dir`: Debian's
 * source, headers and kbuild packages of the same version are fetched with `apt-get download` and
 * unpacked (never installed), KVM's sources go into the headers' tree, and only they are built.
 */
function kvmXenModules(dir: string, deb: string, release: string): string[] {
  const version = run('dpkg-deb', ['-f', deb, 'Version']).trim();
  const cache = join(dir, `kvm-xen-${release}-${version}`);
  const modules = KVM_XEN_BUILD.modules.map((m) => join(cache, m));
  if (modules.every((m) => existsSync(m))) return modules;
  for (const [tool, pkg] of [['/usr/bin/make', 'make'], ['/usr/bin/xz', 'xz-utils'], ['/usr/bin/strip', 'binutils'], ['/usr/bin/gcc', 'gcc']]) requireTool(tool, pkg);
  const series = /^(\d+\.\d+)/.exec(release)?.[1];
  const common = release.replace(/-[a-z0-9]+$/, '-common');
  if (!series || common === release) throw new NestedUnavailableError(`cannot tell the source package of kernel ${release}`);
  const work = mkdtempSync(join(dir, 'kvm-xen-build-'));
  try {
    const packages = [`linux-source-${series}`, `linux-headers-${release}`, `linux-headers-${common}`, `linux-kbuild-${series}`];
    run('apt-get', ['download', '-qq', ...packages.map((p) => `${p}=${version}`)], { cwd: work });
    const root = join(work, 'root');
    for (const f of readdirSync(work).filter((f) => f.endsWith('.deb') && !f.startsWith('linux-source-'))) run('dpkg-deb', ['-x', join(work, f), root]);
    const headers = join(root, 'usr', 'src', `linux-headers-${release}`);
    const tree = join(root, 'usr', 'src', `linux-headers-${common}`);
    // The headers' Makefile includes the common tree by its installed path.
    const makefile = join(headers, 'Makefile');
    writeFileSync(makefile, readFileSync(makefile, 'utf8').replaceAll('/usr/src/', `${join(root, 'usr', 'src')}/`));
    const source = readdirSync(work).find((f) => f.startsWith(`linux-source-${series}_`));
    if (!source) throw new NestedUnavailableError(`apt-get download linux-source-${series} left no package`);
    const tarball = run('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" ./usr/src/linux-source-${series}.tar.xz && echo "$2/usr/src/linux-source-${series}.tar.xz"`, 'sh', join(work, source), work]).trim();
    rmSync(join(tree, 'arch', 'x86', 'kvm'), { recursive: true, force: true });
    run('tar', ['-xJf', tarball, '-C', tree, '--strip-components=1', `linux-source-${series}/arch/x86/kvm`, `linux-source-${series}/virt/kvm`]);
    const kvmSrc = join(tree, 'arch', 'x86', 'kvm');
    // IS_ENABLED(CONFIG_KVM_XEN) in the code needs the define; the Makefile's kvm-$(CONFIG_KVM_XEN) the variable.
    // No kvm-intel: QEMU's TCG emulates AMD's SVM only. No BTF, which needs pahole, and which nothing here reads.
    run('make', ['-C', headers, `M=${kvmSrc}`, KVM_XEN_BUILD.config, 'KCFLAGS=-DCONFIG_KVM_XEN=1', 'CONFIG_KVM_INTEL=', KVM_XEN_BUILD.noBtf, `-j${availableParallelism()}`, 'modules']);
    mkdirSync(cache, { recursive: true });
    // Stripped as Debian's are, and renamed in: a concurrent build never sees half a module.
    for (const m of KVM_XEN_BUILD.modules) {
      run('strip', ['--strip-debug', '-o', join(work, m), join(kvmSrc, m)]);
      renameSync(join(work, m), join(cache, m));
    }
    return modules;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

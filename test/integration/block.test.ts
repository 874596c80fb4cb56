// The PV block device end to end: the guest kit's frontend
// (guests/tests/xen-blkfront.c) reads what the host wrote into a raw image,
// writes its own pattern, flushes, discards, and hits the backend with
// malformed requests, on 2 queues of 2-page rings; the image is checked on the
// host afterwards. Run on both kernels in the nested VM, on 1 and 2 vCPUs;
// again with a loop device of 4096-byte sectors, and with qcow2 images. And
// Debian's PVH GRUB finds its grub.cfg on an ext2 disk through its own
// blkfront and reads a file from it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { grubPvh } from '../grub-guest.js';
import { assertKitPassed, describe, requireKvm, root, runGuest, xenkvm } from '../guest-runner.js';

requireKvm();

const SECTORS = 16384;
const CASES = ['probe', 'connect', 'read', 'write', 'flush', 'discard', 'indirect', 'queues', 'errors', 'readonly', 'close'];
/** What the host writes and the guest expects (xen-blkfront.c's pattern), and what the guest writes. */
const hostPattern = (sector: number, byte: number) => (sector * 7 + byte * 13 + 1) & 0xff;
const guestPattern = (sector: number, byte: number) => (sector * 3 + byte * 5 + 0x40) & 0xff;

function image(dir: string, name: string, sectors: number): string {
  const bytes = Buffer.alloc(sectors * 512);
  for (let s = 0; s < sectors; s++) for (let b = 0; b < 512; b++) bytes[s * 512 + b] = hostPattern(s, b);
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** The sectors [first, first+count) of an image hold `pattern`. */
function holds(bytes: Buffer, first: number, count: number, pattern: (sector: number, byte: number) => number): boolean {
  for (let s = first; s < first + count; s++) for (let b = 0; b < 512; b++) if (bytes[s * 512 + b] !== pattern(s, b)) return false;
  return true;
}

/** What the kit's frontend leaves in xvda's image (`after`, its raw bytes); discarded sectors read as zeros where `discardZeroes`. */
function assertImageAfterKit(after: Buffer, discardZeroes: boolean, r: Parameters<typeof describe>[0]): void {
  assert.ok(holds(after, 0, 64, hostPattern), 'untouched sectors keep the host\'s pattern');
  assert.ok(holds(after, 64, 64, guestPattern), 'the write case\'s sectors');
  assert.ok(holds(after, 200, 8, guestPattern), 'the barrier write\'s page');
  if (discardZeroes) assert.ok(after.subarray(256 * 512, 264 * 512).every((b) => b === 0), 'the discarded sectors');
  assert.ok(holds(after, 264, 248, hostPattern));
  assert.ok(holds(after, 512, 256, guestPattern), 'the indirect write\'s 32 pages');
  assert.ok(holds(after, 768, 256, hostPattern));
  assert.ok(holds(after, 1024, 64, guestPattern), 'what queue 1 wrote');
  assert.ok(holds(after, 1088, SECTORS - 1088, hostPattern), describe(r));
}

for (const vcpus of [1, 2]) {
  test(`a PV disk from a raw image on ${vcpus} vCPU${vcpus > 1 ? 's' : ''}: the kit's frontend reads, writes, flushes, discards and is refused what it may not do; the image holds what it wrote`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'xenkvm-block-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const disk = image(dir, 'xvda.img', SECTORS);
    const readOnly = image(dir, 'xvdb.img', 64);
    const r = await runGuest('xen-blkfront', { vcpus, cmdline: `sectors=${SECTORS}`, args: ['--disk', `format=raw, vdev=xvda, access=rw, target=${disk}`, '--disk', `${readOnly},raw,xvdb,ro`] });
    assertKitPassed(r, CASES);
    assertImageAfterKit(readFileSync(disk), true, r);
    assert.ok(holds(readFileSync(readOnly), 0, 64, hostPattern), 'the read-only disk is unchanged');
  });
}

test('a PV disk from a block device of 4096-byte logical sectors (a loop device; needs root): whole sectors read and written, anything else refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-block-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = image(dir, 'xvdc.img', 1024);
  const loop = execFileSync('losetup', ['--find', '--show', '--sector-size', '4096', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let attached = true;
  const detach = () => {
    if (attached) execFileSync('losetup', ['--detach', loop]);
    attached = false;
  };
  t.after(detach);
  const r = await runGuest('xen-blkfront', {
    cmdline: `sectors=${SECTORS} large-sectors=1`,
    args: ['--disk', `${image(dir, 'xvda.img', SECTORS)},raw,xvda`, '--disk', `${image(dir, 'xvdb.img', 64)},raw,xvdb,ro`, '--disk', `${loop},raw,xvdc`],
  });
  assertKitPassed(r, [...CASES, 'sector4k']);
  detach();
  const after = readFileSync(file);
  assert.ok(holds(after, 0, 16, hostPattern) && holds(after, 24, 1000, hostPattern), 'only sectors 16..23 written');
  assert.ok(holds(after, 16, 8, guestPattern), describe(r));
});

test("PV disks from qcow2 images (QEMU's storage daemon serves them): the kit's frontend on 2 vCPUs; the images hold what it wrote, the read-only one nothing", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-block-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const qcow2 = (raw: string) => {
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, `${raw}.qcow2`]);
    return `${raw}.qcow2`;
  };
  const asRaw = (image: string) => {
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, `${image}.raw`]);
    return readFileSync(`${image}.raw`);
  };
  const disk = qcow2(image(dir, 'xvda.img', SECTORS));
  const readOnly = qcow2(image(dir, 'xvdb.img', 64));
  const r = await runGuest('xen-blkfront', { vcpus: 2, cmdline: `sectors=${SECTORS} discard-zeroes=0`, args: ['--disk', `format=qcow2, vdev=xvda, access=rw, target=${disk}`, '--disk', `${readOnly},qcow2,xvdb,ro`] });
  assertKitPassed(r, CASES);
  assertImageAfterKit(asRaw(disk), false, r);
  assert.ok(holds(asRaw(readOnly), 0, 64, hostPattern), 'the read-only disk is unchanged');
});

test("Debian's PVH GRUB (grub-xen-host) finds /boot/grub/grub.cfg on an ext2 disk through its blkfront, runs it, reads a file from the disk and powers off", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-grub-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'boot', 'grub'), { recursive: true });
  writeFileSync(join(tree, 'boot', 'grub', 'grub.cfg'), 'echo "XENKVM-GRUB found its configuration on ${root}"\ncat /hello.txt\nhalt\n');
  writeFileSync(join(tree, 'hello.txt'), 'XENKVM-GRUB read this from the disk\n');
  const disk = join(dir, 'boot.img');
  execFileSync('/usr/sbin/mke2fs', ['-q', '-F', '-t', 'ext2', '-d', tree, disk, '8M'], { stdio: 'pipe' });
  const r = await xenkvm(['run', '--kernel', grubPvh(root.replace(/\/$/, '')), '--memory', '128', '--disk', `${disk},raw,xvda,rw`]);
  assert.equal(r.status, 0, describe(r));
  assert.match(r.stdout, /XENKVM-GRUB found its configuration on xen\/xvda/, describe(r));
  assert.match(r.stdout, /XENKVM-GRUB read this from the disk/, describe(r));
});

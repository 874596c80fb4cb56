import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { closeRawDisk, DiskError, openRawDisk, RawDisk } from './disk.js';
import { parseDiskSpec } from './disk-spec.js';
import { exportImage } from './qemu-export.js';

function qcow2(t: { after(fn: () => void): void }, bytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-qcow2-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(bytes)]);
  return path;
}

const CLUSTER = 65536;
const isMounted = (path: string) => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${path} `);

test('a qcow2 image through qemu-storage-daemon: its disk as a raw file, written, flushed, discarded; the data is in the image after the daemon stops', async (t) => {
  const image = qcow2(t, 1 << 20);
  const served = exportImage({ ...parseDiskSpec(`format=qcow2, vdev=xvdb, target=${image}`), format: 'qcow2' });
  let stopped = false;
  t.after(() => stopped || served.stop());
  assert.ok(isMounted(served.path));
  const h = openRawDisk(served.path, false, true);
  assert.equal(h.sectors, 2048);
  const disk = new RawDisk(h);
  // Two of qcow2's 64 KiB clusters written, the second discarded: QEMU frees a whole cluster (and leaves a part of one).
  await disk.writev([Buffer.alloc(CLUSTER, 0x5a), Buffer.alloc(CLUSTER, 0xa5)], CLUSTER);
  await disk.flush();
  await disk.discardRange(2 * CLUSTER, CLUSTER);
  const back = new Uint8Array(2 * CLUSTER);
  await disk.readv([back], CLUSTER);
  assert.ok(back.subarray(0, CLUSTER).every((b) => b === 0x5a) && back.subarray(CLUSTER).every((b) => b === 0), 'written, then the second cluster discarded');
  closeRawDisk(h);
  served.stop();
  stopped = true;
  assert.ok(!isMounted(served.path) && !existsSync(dirname(served.path)), 'the export and its directory are gone');
  const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', image], { encoding: 'utf8' })) as { start: number; length: number; data: boolean }[];
  const at = (offset: number) => map.find((m) => m.start <= offset && offset < m.start + m.length);
  assert.deepEqual([at(0)?.data, at(CLUSTER)?.data, at(2 * CLUSTER)?.data], [false, true, false], 'only the written cluster holds data');
  const raw = join(dirname(image), 'disk.raw');
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]);
  assert.ok(readFileSync(raw).subarray(CLUSTER, 2 * CLUSTER).every((b) => b === 0x5a), 'the image holds what was written');
});

test('a read-only qcow2 disk is exported read-only', (t) => {
  const image = qcow2(t, 1 << 20);
  const served = exportImage({ ...parseDiskSpec(`${image},qcow2,xvdc,ro`), format: 'qcow2' });
  t.after(() => served.stop());
  assert.equal(statSync(served.path).mode & 0o222, 0, 'no write permission');
  // Root may open it for writing all the same; the write is refused.
  let fd: number;
  try {
    fd = openSync(served.path, 'r+');
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'EACCES');
    return;
  }
  try {
    assert.throws(() => writeSync(fd, Buffer.alloc(512), 0, 512, 0), /EACCES/);
  } finally {
    closeSync(fd);
  }
});

test('an image that is not what its format says, a missing one, and no qemu-storage-daemon: one line each', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-qcow2-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const raw = join(dir, 'raw.img');
  writeFileSync(raw, Buffer.alloc(65536));
  const spec = (target: string) => ({ ...parseDiskSpec(`format=qcow2, vdev=xvda, target=${target}`), format: 'qcow2' as const });
  assert.throws(() => exportImage(spec(raw)), (e: Error) => e instanceof DiskError && /^disk xvda: cannot open .*raw\.img as qcow2: Image is not in qcow2 format$/.test(e.message));
  assert.throws(() => exportImage(spec(join(dir, 'missing.qcow2'))), (e: Error) => e instanceof DiskError && /^disk xvda: cannot open .*missing\.qcow2 as qcow2: .*No such file or directory$/.test(e.message));
  const path = process.env.PATH;
  process.env.PATH = dir;
  t.after(() => (process.env.PATH = path));
  assert.throws(() => exportImage(spec(raw)), /^DiskError: disk xvda: a qcow2 image needs qemu-storage-daemon \(Debian: apt-get install qemu-system-common\)$/);
});

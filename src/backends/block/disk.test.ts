import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { closeRawDisk, DiskError, openRawDisk, RawDisk } from './disk.js';

function image(t: { after(fn: () => void): void }, bytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'xenkvm-disk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.img');
  writeFileSync(path, Buffer.alloc(bytes, 0x33));
  return path;
}

test('a raw image file: whole sectors, scatter-gather reads and writes at byte offsets, flush, discard as a hole', async (t) => {
  const path = image(t, 64 * 1024 + 100);
  const h = openRawDisk(path, false, true);
  t.after(() => closeRawDisk(h));
  assert.equal(h.sectors, 128, 'the partial sector at the end is not offered');
  assert.equal(h.sectorSize, 512);
  const disk = new RawDisk(h);
  await disk.writev([Buffer.alloc(512, 1), Buffer.alloc(1024, 2)], 4096);
  const a = new Uint8Array(1000);
  const b = new Uint8Array(536);
  await disk.readv([a, b], 4096);
  assert.ok(a.subarray(0, 512).every((x) => x === 1) && a.subarray(512).every((x) => x === 2) && b.every((x) => x === 2));
  await disk.flush();
  await disk.discardRange(8192, 8192);
  const file = readFileSync(path);
  assert.ok(file.subarray(8192, 16384).every((x) => x === 0), 'discarded bytes read as zeros');
  assert.equal(file[16384], 0x33);
  assert.equal(statSync(path).size, 64 * 1024 + 100, 'the file keeps its size');
  await assert.rejects(disk.readv([new Uint8Array(512)], 64 * 1024 + 100), /the image ended/);
  // A read across the end moves what is there, asks again for the rest, and then fails where the file ends.
  const across = new Uint8Array(1024);
  await assert.rejects(disk.readv([across], 64 * 1024 - 412), new RegExp(`reading ${path} at byte ${64 * 1024 + 100}: the image ended`));
  assert.ok(across.subarray(0, 512).every((x) => x === 0x33) && across.subarray(512).every((x) => x === 0));
});

test('images that cannot be used are one clear error', (t) => {
  assert.throws(() => openRawDisk('/nonexistent/disk.img', false, true), (e: unknown) => e instanceof DiskError && /cannot open disk image \/nonexistent\/disk.img: ENOENT$/.test(e.message));
  assert.throws(() => openRawDisk('/dev/null', true, false), (e: unknown) => e instanceof DiskError && /neither a regular file nor a block device/.test(e.message));
  if (process.getuid?.() !== 0) {
    const path = image(t, 4096);
    chmodSync(path, 0o444);
    assert.throws(() => openRawDisk(path, false, true), /EACCES \(give it access=ro to use it read-only\)/);
    const h = openRawDisk(path, true, false);
    closeRawDisk(h);
  }
});

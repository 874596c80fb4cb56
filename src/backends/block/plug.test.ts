import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiskPlug, MAX_MERGED_BUFFERS } from './plug.js';
import type { BlockDisk } from './queue.js';

/** A disk that records each call as `read|write@offset:bytes/buffers` and fails calls that touch `bad`. */
function recordingDisk(bad?: number) {
  const calls: string[] = [];
  const call = (what: string) => async (buffers: Uint8Array[], offset: number) => {
    const bytes = buffers.reduce((n, b) => n + b.length, 0);
    calls.push(`${what}@${offset}:${bytes}/${buffers.length}`);
    if (bad !== undefined && bad >= offset && bad < offset + bytes) throw new Error(`EIO at ${bad}`);
  };
  const disk: BlockDisk = {
    sectors: 1 << 20, sectorSize: 512, readOnly: false, discard: false,
    readv: call('read'), writev: call('write'),
    flush: async () => {}, discardRange: async () => {},
  };
  return { disk, calls };
}

const pages = (n: number) => Array.from({ length: n }, () => new Uint8Array(4096));
const settle = (p: Promise<void>) => p.then(() => 'ok', (e: Error) => e.message);

test('reads and writes wait for the end of the pass; those that follow on from one another on the disk go as one call', async () => {
  const { disk, calls } = recordingDisk();
  const plug = new DiskPlug(disk, 1);
  plug.plug();
  const done = [
    plug.readv(pages(1), 0),
    plug.readv(pages(2), 4096), // follows the first
    plug.writev(pages(1), 12288), // follows on, but the other way
    plug.readv(pages(1), 16384),
    plug.readv(pages(1), 24576), // a gap before it
    plug.readv(pages(1), 28672),
  ];
  assert.deepEqual(calls, [], 'nothing reaches the disk before unplug');
  plug.unplug();
  assert.deepEqual(await Promise.all(done.map(settle)), ['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
  assert.deepEqual(calls, ['read@0:12288/3', 'write@12288:4096/1', 'read@16384:4096/1', 'read@24576:8192/2']);
});

test('unplugged, each call goes straight to the disk', async () => {
  const { disk, calls } = recordingDisk();
  const plug = new DiskPlug(disk, 1);
  const a = plug.readv(pages(1), 0);
  const b = plug.readv(pages(1), 4096);
  assert.deepEqual(calls, ['read@0:4096/1', 'read@4096:4096/1']);
  await Promise.all([a, b]);
  plug.unplug(); // nothing held: nothing happens
  assert.equal(calls.length, 2);
});

test('a run is split into as many calls as there are threads to move it, at request boundaries', async () => {
  const { disk, calls } = recordingDisk();
  const plug = new DiskPlug(disk, 4);
  plug.plug();
  const done = Array.from({ length: 8 }, (_, i) => plug.writev(pages(2), i * 8192));
  // Three requests in four ways: one each.
  done.push(...[0, 1, 2].map((i) => plug.readv(pages(1), 2 ** 20 + i * 4096)));
  plug.unplug();
  await Promise.all(done);
  assert.deepEqual(calls, [
    'write@0:16384/4', 'write@16384:16384/4', 'write@32768:16384/4', 'write@49152:16384/4',
    `read@${2 ** 20}:4096/1`, `read@${2 ** 20 + 4096}:4096/1`, `read@${2 ** 20 + 8192}:4096/1`,
  ]);
});

test('a merged call takes at most IOV_MAX buffers', async () => {
  const { disk, calls } = recordingDisk();
  const plug = new DiskPlug(disk, 1);
  const half = MAX_MERGED_BUFFERS / 2;
  plug.plug();
  const done = [0, 1, 2].map((i) => plug.readv(Array.from({ length: half + (i === 0 ? 1 : 0) }, () => new Uint8Array(512)), i === 0 ? 0 : (half + 1) * 512 + (i - 1) * half * 512));
  plug.unplug();
  await Promise.all(done);
  // The first has one buffer more than half: the second cannot join it, the third joins the second.
  assert.deepEqual(calls, [`read@0:${(half + 1) * 512}/${half + 1}`, `read@${(half + 1) * 512}:${2 * half * 512}/${MAX_MERGED_BUFFERS}`]);
});

test('a merged call that fails is repeated request by request: only the request that fails again gets the error', async () => {
  const { disk, calls } = recordingDisk(8192 + 100);
  const plug = new DiskPlug(disk, 1);
  plug.plug();
  const done = [0, 1, 2].map((i) => plug.writev(pages(1), i * 4096));
  plug.unplug();
  assert.deepEqual(await Promise.all(done.map(settle)), ['ok', 'ok', 'EIO at 8292']);
  assert.deepEqual(calls, ['write@0:12288/3', 'write@0:4096/1', 'write@4096:4096/1', 'write@8192:4096/1']);
});

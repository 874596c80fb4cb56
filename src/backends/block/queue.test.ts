import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../../common/captured-logger.js';
import { RateLimitedLog } from '../../common/log.js';
import { BLKIF_OP, BLKIF_RING_ENTRY_SIZE, BLKIF_RSP, blkifRequest, blkifRequestDiscard, blkifRequestIndirect, blkifResponse, SRING_INDEX, SRING_RING_OFFSET } from '../../xen/abi/blkif.js';
import type { Abi } from '../../xen/abi/layout.js';
import { BackRing } from '../ring.js';
import { FRONT, fakeGrants } from '../fake-grants.js';
import { BlockQueue, type BlockDisk } from './queue.js';


/** An in-memory disk whose operations can be held, to see their order. */
function memoryDisk(sectors: number, options: { sectorSize?: number; readOnly?: boolean; discard?: boolean } = {}) {
  const bytes = new Uint8Array(sectors * 512);
  const log: string[] = [];
  /** How many buffers each read or write was given. */
  const buffers: number[] = [];
  let hold: Promise<void> | undefined;
  const disk: BlockDisk = {
    sectors,
    sectorSize: options.sectorSize ?? 512,
    readOnly: options.readOnly ?? false,
    discard: options.discard ?? true,
    async readv(views, offset) {
      await hold;
      buffers.push(views.length);
      for (const b of views) {
        b.set(bytes.subarray(offset, offset + b.length));
        offset += b.length;
      }
      log.push('read');
    },
    async writev(views, offset) {
      await hold;
      buffers.push(views.length);
      for (const b of views) {
        bytes.set(b, offset);
        offset += b.length;
      }
      log.push('write');
    },
    async flush() {
      log.push('flush');
    },
    async discardRange(offset, length) {
      bytes.fill(0, offset, offset + length);
      log.push('discard');
    },
  };
  return { disk, bytes, log, buffers, holdUntil: (p: Promise<void>) => (hold = p) };
}

/** The guest's side: granted pages (some read-only), a ring page, requests in `abi`'s layout. */
function frontend(abi: Abi, options: { persistent?: boolean; disk?: ReturnType<typeof memoryDisk>; maxIndirectSegments?: number; maxPersistentGrants?: number } = {}) {
  const { grants, mapped, grant } = fakeGrants();
  const ringPage = new Uint8Array(4096);
  const header = new DataView(ringPage.buffer);
  const size = BLKIF_RING_ENTRY_SIZE[abi];
  const ring = new BackRing([ringPage], size);
  const d = options.disk ?? memoryDisk(2048);
  const { logger, warns, errors } = capturedLogger();
  let notifications = 0;
  const queue = new BlockQueue(ring, grants, d.disk, {
    abi, frontDomid: FRONT, maxIndirectSegments: options.maxIndirectSegments ?? 64, persistent: options.persistent ?? false, maxPersistentGrants: options.maxPersistentGrants ?? 4, ioThreads: 1,
  }, () => notifications++, new RateLimitedLog(logger), 'vbd-test');
  let prod = 0;
  let cons = 0;
  return {
    d, queue, mapped, warns, errors, notifications: () => notifications,
    grant: (ref: number, readonly = false, page?: Uint8Array) => grant(ref, undefined, readonly, page),
    push(bytes: Uint8Array) {
      ringPage.set(bytes, SRING_RING_OFFSET + (prod % ring.size) * size);
      prod++;
      header.setUint32(SRING_INDEX.req_prod, prod, true);
    },
    rw(op: number, id: number, sector: number | bigint, segs: [gref: number, first: number, last: number][]) {
      const seg = new Uint8Array(88);
      const v = new DataView(seg.buffer);
      segs.forEach(([gref, first, last], i) => {
        v.setUint32(i * 8, gref, true);
        seg[i * 8 + 4] = first;
        seg[i * 8 + 5] = last;
      });
      const def = blkifRequest[abi];
      const bytes = def.encode({ operation: op, nr_segments: segs.length, handle: 0, id: BigInt(id), sector_number: BigInt(sector) });
      bytes.set(seg, def.offsets.seg);
      this.push(bytes);
    },
    /** Answers published so far that the frontend has not taken, by id (they come in the order requests complete): [id, operation, status]. */
    responses(): [number, number, number][] {
      const out: [number, number, number][] = [];
      const rspProd = header.getUint32(SRING_INDEX.rsp_prod, true);
      for (; cons < rspProd; cons++) {
        const at = SRING_RING_OFFSET + (cons % ring.size) * size;
        const r = blkifResponse[abi].decode(ringPage.subarray(at, at + blkifResponse[abi].size));
        out.push([Number(r.id), r.operation, r.status]);
      }
      return out.sort((x, y) => x[0] - y[0]);
    },
    async serve() {
      queue.service();
      await queue.drain();
    },
    header,
  };
}

test('segments that follow one another in memory reach the disk as one buffer; the bytes are the same either way', async () => {
  const f = frontend('native');
  const memory = new Uint8Array(4 * 4096);
  memory.forEach((_, i) => (memory[i] = (i * 7) & 0xff));
  // Pages 0 and 1 of one memory are adjacent, page 3 is not; refs 21 and 22 hold the same page.
  f.grant(20, false, memory.subarray(0, 4096));
  f.grant(21, false, memory.subarray(4096, 8192));
  f.grant(22, false, memory.subarray(12288, 16384));
  f.rw(BLKIF_OP.WRITE, 1, 0, [[20, 0, 7], [21, 0, 7], [22, 0, 3]]);
  // Sectors 0–3 of page 0 end mid-page: sectors 0–7 of page 1 do not follow them.
  f.rw(BLKIF_OP.WRITE, 2, 64, [[20, 0, 3], [21, 0, 7]]);
  // Sectors 4–7 of page 0, then page 1 from its start: adjacent.
  f.rw(BLKIF_OP.WRITE, 3, 128, [[20, 4, 7], [21, 0, 1]]);
  await f.serve();
  assert.deepEqual(f.responses().map((r) => r[2]), [BLKIF_RSP.OKAY, BLKIF_RSP.OKAY, BLKIF_RSP.OKAY]);
  assert.deepEqual(f.d.buffers, [2, 2, 1]);
  assert.deepEqual(f.d.bytes.subarray(0, 8192), memory.subarray(0, 8192));
  assert.deepEqual(f.d.bytes.subarray(8192, 10240), memory.subarray(12288, 14336));
  assert.deepEqual(f.d.bytes.subarray(64 * 512, 64 * 512 + 2048), memory.subarray(0, 2048));
  assert.deepEqual(f.d.bytes.subarray(64 * 512 + 2048, 64 * 512 + 6144), memory.subarray(4096, 8192));
  assert.deepEqual(f.d.bytes.subarray(128 * 512, 128 * 512 + 3072), memory.subarray(2048, 5120));
  // Read back into the same pages, zeroed first.
  memory.fill(0);
  f.rw(BLKIF_OP.READ, 4, 0, [[20, 0, 7], [21, 0, 7], [22, 0, 3]]);
  await f.serve();
  assert.deepEqual(f.d.buffers.at(-1), 2);
  assert.deepEqual(memory.subarray(0, 8192), f.d.bytes.subarray(0, 8192));
  assert.deepEqual(memory.subarray(12288, 14336), f.d.bytes.subarray(8192, 10240));
});

for (const abi of ['native', 'compat'] as const) {
  test(`reads and writes (${abi}): sectors within segments, scatter-gather across pages, answered with their ids`, async () => {
    const f = frontend(abi);
    const a = f.grant(10);
    const b = f.grant(11);
    a.fill(0x11);
    b.fill(0x22);
    f.header.setUint32(SRING_INDEX.rsp_event, 1, true);
    // Sectors 7 of page a, then 0–2 of page b: 4 sectors at disk sector 100.
    f.rw(BLKIF_OP.WRITE, 1, 100, [[10, 7, 7], [11, 0, 2]]);
    await f.serve();
    assert.deepEqual(f.responses(), [[1, BLKIF_OP.WRITE, BLKIF_RSP.OKAY]]);
    assert.ok(f.d.bytes.subarray(100 * 512, 101 * 512).every((x) => x === 0x11));
    assert.ok(f.d.bytes.subarray(101 * 512, 104 * 512).every((x) => x === 0x22));
    assert.equal(f.d.bytes[104 * 512], 0);
    const c = f.grant(12);
    f.rw(BLKIF_OP.READ, 2, 101, [[12, 4, 6]]);
    await f.serve();
    assert.deepEqual(f.responses(), [[2, BLKIF_OP.READ, BLKIF_RSP.OKAY]]);
    assert.ok(c.subarray(4 * 512, 7 * 512).every((x) => x === 0x22));
    assert.ok(c.subarray(0, 4 * 512).every((x) => x === 0) && c.subarray(7 * 512).every((x) => x === 0), 'nothing outside the segment');
    assert.ok(f.notifications() >= 1);
    assert.deepEqual([...f.mapped.values()].filter((n) => n !== 0), [], 'every grant unmapped after its request');
  });

  test(`malformed requests (${abi}) get BLKIF_RSP_ERROR or EOPNOTSUPP and a line; nothing is touched`, async () => {
    const disk = memoryDisk(64, { readOnly: false });
    const f = frontend(abi, { disk });
    const page = f.grant(20);
    page.fill(0x5a);
    f.grant(21, true);
    const cases: [string, () => void, number][] = [
      ['bad gref', () => f.rw(BLKIF_OP.WRITE, 1, 0, [[99, 0, 7]]), BLKIF_RSP.ERROR],
      ['last_sect past the page', () => f.rw(BLKIF_OP.WRITE, 2, 0, [[20, 0, 8]]), BLKIF_RSP.ERROR],
      ['first after last', () => f.rw(BLKIF_OP.WRITE, 3, 0, [[20, 5, 4]]), BLKIF_RSP.ERROR],
      ['past the end', () => f.rw(BLKIF_OP.WRITE, 4, 60, [[20, 0, 7]]), BLKIF_RSP.ERROR],
      ['no segments', () => f.rw(BLKIF_OP.READ, 5, 0, []), BLKIF_RSP.ERROR],
      ['read into a read-only grant', () => f.rw(BLKIF_OP.READ, 6, 0, [[21, 0, 0]]), BLKIF_RSP.ERROR],
      ['reserved operation', () => f.rw(BLKIF_OP.RESERVED_1, 7, 0, []), BLKIF_RSP.EOPNOTSUPP],
      ['unknown operation', () => f.rw(99, 8, 0, []), BLKIF_RSP.EOPNOTSUPP],
      ['a sector number past 2^53', () => f.rw(BLKIF_OP.WRITE, 9, 2n ** 64n - 8n, [[20, 0, 7]]), BLKIF_RSP.ERROR],
      ['sectors that wrap past 2^64 to the start', () => f.rw(BLKIF_OP.WRITE, 10, 2n ** 64n - 1n, [[20, 0, 7]]), BLKIF_RSP.ERROR],
    ];
    for (const [, push] of cases) push();
    const twelve = blkifRequest[abi].encode({ operation: BLKIF_OP.WRITE, nr_segments: 12, id: 11n });
    f.push(twelve);
    await f.serve();
    assert.deepEqual(f.responses().map((r) => [r[0], r[2]]), [...cases.map(([, , status], i) => [i + 1, status]), [11, BLKIF_RSP.ERROR]]);
    assert.ok(disk.bytes.every((x) => x === 0), 'the disk is untouched');
    assert.ok(f.warns().length >= 5);
    assert.deepEqual(f.errors(), []);
  });
}

test('a read-only disk refuses writes and discards; a 4096-byte-sector disk refuses unaligned requests', async () => {
  const ro = frontend('native', { disk: memoryDisk(64, { readOnly: true }) });
  ro.grant(1);
  ro.rw(BLKIF_OP.WRITE, 1, 0, [[1, 0, 7]]);
  ro.rw(BLKIF_OP.READ, 2, 0, [[1, 0, 7]]);
  ro.push(blkifRequestDiscard.native.encode({ operation: BLKIF_OP.DISCARD, id: 3n, sector_number: 0n, nr_sectors: 8n }));
  await ro.serve();
  assert.deepEqual(ro.responses().map((r) => r[2]), [BLKIF_RSP.ERROR, BLKIF_RSP.OKAY, BLKIF_RSP.ERROR]);
  const big = frontend('native', { disk: memoryDisk(64, { sectorSize: 4096 }) });
  big.grant(1);
  big.rw(BLKIF_OP.READ, 1, 8, [[1, 0, 7]]);
  big.rw(BLKIF_OP.READ, 2, 4, [[1, 0, 7]]);
  big.rw(BLKIF_OP.READ, 3, 8, [[1, 0, 3]]);
  await big.serve();
  assert.deepEqual(big.responses().map((r) => r[2]), [BLKIF_RSP.OKAY, BLKIF_RSP.ERROR, BLKIF_RSP.ERROR]);
});

test('discard frees the range, or is EOPNOTSUPP where not offered', async () => {
  const disk = memoryDisk(64);
  disk.bytes.fill(0xff);
  const f = frontend('native', { disk });
  f.push(blkifRequestDiscard.native.encode({ operation: BLKIF_OP.DISCARD, id: 1n, sector_number: 8n, nr_sectors: 16n }));
  f.push(blkifRequestDiscard.native.encode({ operation: BLKIF_OP.DISCARD, id: 2n, sector_number: 60n, nr_sectors: 8n }));
  await f.serve();
  assert.deepEqual(f.responses().map((r) => r[2]), [BLKIF_RSP.OKAY, BLKIF_RSP.ERROR]);
  assert.ok(disk.bytes.subarray(8 * 512, 24 * 512).every((x) => x === 0));
  assert.equal(disk.bytes[24 * 512], 0xff);
  const off = frontend('native', { disk: memoryDisk(64, { discard: false }) });
  off.push(blkifRequestDiscard.native.encode({ operation: BLKIF_OP.DISCARD, id: 1n, sector_number: 0n, nr_sectors: 8n }));
  await off.serve();
  assert.deepEqual(off.responses().map((r) => r[2]), [BLKIF_RSP.EOPNOTSUPP]);
});

test('indirect requests: segments from a granted page of segments, up to feature-max-indirect-segments, answered as their indirect_op', async () => {
  for (const abi of ['native', 'compat'] as const) {
    const f = frontend(abi, { maxIndirectSegments: 32 });
    const list = f.grant(50, true);
    const lv = new DataView(list.buffer);
    for (let i = 0; i < 20; i++) {
      const p = f.grant(100 + i);
      p.fill(i + 1);
      lv.setUint32(i * 8, 100 + i, true);
      list[i * 8 + 4] = 0;
      list[i * 8 + 5] = 7;
    }
    const req = (id: number, nr: number) => {
      const bytes = blkifRequestIndirect[abi].encode({ operation: BLKIF_OP.INDIRECT, indirect_op: BLKIF_OP.WRITE, nr_segments: nr, id: BigInt(id), sector_number: 0n });
      new DataView(bytes.buffer).setUint32(blkifRequestIndirect[abi].offsets.indirect_grefs, 50, true);
      return bytes;
    };
    f.push(req(1, 20));
    f.push(req(2, 33));
    f.push(req(3, 0));
    await f.serve();
    assert.deepEqual(f.responses().map((r) => [r[0], r[1], r[2]]), [[1, BLKIF_OP.WRITE, BLKIF_RSP.OKAY], [2, BLKIF_OP.WRITE, BLKIF_RSP.ERROR], [3, BLKIF_OP.WRITE, BLKIF_RSP.ERROR]]);
    for (let i = 0; i < 20; i++) assert.equal(f.d.bytes[i * 4096 + 17], i + 1, `${abi} segment ${i}`);
  }
});

test('a flush waits for the writes before it, and the reads after it wait for the flush', async () => {
  const disk = memoryDisk(64);
  const f = frontend('native', { disk });
  f.grant(1);
  let release!: () => void;
  disk.holdUntil(new Promise<void>((r) => (release = r)));
  f.rw(BLKIF_OP.WRITE, 1, 0, [[1, 0, 7]]);
  f.rw(BLKIF_OP.FLUSH_DISKCACHE, 2, 0, []);
  f.rw(BLKIF_OP.READ, 3, 0, [[1, 0, 7]]);
  f.queue.service();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(disk.log, [], 'everything waits on the held write');
  release();
  await f.queue.drain();
  assert.deepEqual(disk.log, ['write', 'flush', 'read']);
  assert.deepEqual(f.responses().map((r) => r[0]), [1, 2, 3]);
});

test('requests in flight together each move their own segments: the queue reuses one list for all', async () => {
  const disk = memoryDisk(64);
  const f = frontend('native', { disk, persistent: true, maxIndirectSegments: 8 });
  for (let ref = 31; ref <= 33; ref++) f.grant(ref).fill(ref);
  const list = f.grant(40, true);
  new DataView(list.buffer).setUint32(0, 33, true);
  list[5] = 7;
  let release!: () => void;
  disk.holdUntil(new Promise<void>((r) => (release = r)));
  // Requests 1 and 2 start in one pass; the barrier's segments are read after the flush that waits for them.
  f.rw(BLKIF_OP.WRITE, 1, 0, [[31, 0, 7]]);
  const indirect = blkifRequestIndirect.native.encode({ operation: BLKIF_OP.INDIRECT, indirect_op: BLKIF_OP.WRITE, nr_segments: 1, id: 2n, sector_number: 16n });
  new DataView(indirect.buffer).setUint32(blkifRequestIndirect.native.offsets.indirect_grefs, 40, true);
  f.push(indirect);
  f.rw(BLKIF_OP.WRITE_BARRIER, 3, 8, [[32, 0, 7]]);
  f.queue.service();
  await new Promise((r) => setImmediate(r));
  release();
  await f.queue.drain();
  assert.deepEqual(f.responses().map((r) => r[2]), [BLKIF_RSP.OKAY, BLKIF_RSP.OKAY, BLKIF_RSP.OKAY]);
  assert.deepEqual(disk.log, ['write', 'write', 'flush', 'write', 'flush']);
  for (const [sector, ref] of [[0, 31], [8, 32], [16, 33]]) assert.ok(disk.bytes.subarray(sector * 512, sector * 512 + 4096).every((b) => b === ref), `sector ${sector} holds ref ${ref}'s page`);
});


test('requests taken in one pass that follow on from one another on the disk reach it as one call, each answered', async () => {
  const f = frontend('native');
  // Three one-page reads at sectors 0, 8, 16, then one at 32 (a gap), each into its own page.
  const ids = [1, 2, 3, 4];
  const sectors = [0, 8, 16, 32];
  const views = ids.map((id) => f.grant(50 + id));
  for (let s = 0; s < 40; s++) f.d.bytes.fill(s, s * 512, s * 512 + 512);
  ids.forEach((id, i) => f.rw(BLKIF_OP.READ, id, sectors[i], [[50 + id, 0, 7]]));
  await f.serve();
  assert.deepEqual(f.responses(), ids.map((id) => [id, BLKIF_OP.READ, BLKIF_RSP.OKAY]));
  assert.deepEqual(f.d.log, ['read', 'read'], 'the first three merged, the fourth alone');
  assert.deepEqual(f.d.buffers, [3, 1]);
  views.forEach((v, i) => assert.equal(v[4095], sectors[i] + 7, `request ${ids[i]}'s page holds its own sectors`));
});
test('persistent grants stay mapped between requests, up to the limit, and go at stop', async () => {
  const f = frontend('native', { persistent: true });
  for (let ref = 1; ref <= 6; ref++) f.grant(ref);
  f.rw(BLKIF_OP.WRITE, 1, 0, [[1, 0, 7], [2, 0, 7], [3, 0, 7], [4, 0, 7], [5, 0, 7], [6, 0, 7]]);
  await f.serve();
  f.rw(BLKIF_OP.READ, 2, 0, [[1, 0, 7]]);
  await f.serve();
  assert.deepEqual(f.responses().map((r) => r[2]), [BLKIF_RSP.OKAY, BLKIF_RSP.OKAY]);
  assert.deepEqual([...f.mapped].filter(([, n]) => n > 0).map(([ref]) => ref), [1, 2, 3, 4], 'four kept, the rest let go');
  await f.queue.stop();
  assert.deepEqual([...f.mapped].filter(([, n]) => n > 0), []);
});

test('kept grants move the right bytes on later requests, direct and indirect; one kept read-only serves writes, and a read into it is refused', async () => {
  const f = frontend('native', { persistent: true, maxIndirectSegments: 16, maxPersistentGrants: 16 });
  const memory = new Uint8Array(4 * 4096);
  for (let i = 0; i < 4; i++) f.grant(10 + i, false, memory.subarray(i * 4096, (i + 1) * 4096));
  const source = f.grant(20, true);
  source.forEach((_, i) => (source[i] = (i * 3 + 1) & 0xff));
  // The first requests keep the grants; the same refs again go the kept way.
  for (let round = 0; round < 2; round++) {
    f.rw(BLKIF_OP.WRITE, 1, 8, [[20, 0, 7]]);
    await f.serve();
    memory.fill(0);
    f.rw(BLKIF_OP.READ, 2, 8, [[10, 2, 7], [11, 0, 1]]);
    await f.serve();
    assert.deepEqual(memory.subarray(1024, 4096), source.subarray(0, 3072), `round ${round}: sectors 2-7 of ref 10`);
    assert.deepEqual(memory.subarray(4096, 5120), source.subarray(3072, 4096), `round ${round}: then sectors 0-1 of ref 11`);
    assert.equal(memory[5120], 0);
    assert.deepEqual(f.responses(), [[1, BLKIF_OP.WRITE, BLKIF_RSP.OKAY], [2, BLKIF_OP.READ, BLKIF_RSP.OKAY]]);
  }
  const list = f.grant(30, true);
  const lv = new DataView(list.buffer, list.byteOffset);
  [12, 13].forEach((gref, i) => {
    lv.setUint32(i * 8, gref, true);
    list[i * 8 + 4] = 0;
    list[i * 8 + 5] = 7;
  });
  for (let round = 0; round < 2; round++) {
    memory.fill(0);
    const def = blkifRequestIndirect.native;
    const bytes = def.encode({ operation: BLKIF_OP.INDIRECT, indirect_op: BLKIF_OP.READ, nr_segments: 2, id: 3n, sector_number: 0n, indirect_grefs: [30, 0, 0, 0, 0, 0, 0, 0], handle: 0 });
    f.push(bytes);
    await f.serve();
    assert.deepEqual(f.responses(), [[3, BLKIF_OP.READ, BLKIF_RSP.OKAY]]);
    assert.deepEqual(memory.subarray(2 * 4096 + 4096, 4 * 4096), source, `round ${round}: sectors 8-15 in ref 13`);
  }
  assert.deepEqual([10, 11, 12, 13, 20, 30].map((ref) => f.mapped.get(ref)), [1, 1, 1, 1, 1, 1], 'each mapped once, and kept');
  f.rw(BLKIF_OP.READ, 4, 8, [[20, 0, 7]]);
  await f.serve();
  assert.deepEqual(f.responses(), [[4, BLKIF_OP.READ, BLKIF_RSP.ERROR]]);
  assert.equal(source[0], 1, 'the read-only page untouched');
});

test('a frontend that overruns its ring stops the queue, with one line', async () => {
  const f = frontend('native');
  f.header.setUint32(SRING_INDEX.req_prod, 1000, true);
  await f.serve();
  f.queue.service();
  assert.deepEqual(f.responses(), []);
  assert.equal(f.warns().length, 1);
});

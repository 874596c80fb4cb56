// PV block throughput: the kit's frontend (guests/tests/bench-block.c: one
// queue, 32 requests in flight, persistent grants, each 1 MiB request an
// indirect one of 256 pages, halted between responses until its upcall) on xvda, against the same pattern run by a host
// process on the same image file in the same run (bench/block-floor.c:
// pread/pwrite from as many threads as libuv's pool has, 4, whose threads do
// the backend's reads and writes). Each round runs the floor, then the guest,
// on one image filled once (so both find it in the page cache); ratios are
// guest / host per round, reported as medians.
//
//   4 KiB random reads       IOPS, reported.
//   1 MiB sequential writes  MB/s, target ≥ 0.8.
//   1 MiB sequential reads   MB/s, target ≥ 0.8.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { medians, root, ROUNDS, runXenkvm } from './common.js';

const IMAGE_MIB = Number(process.env.BENCH_BLOCK_MIB ?? 256);
const RAND_OPS = Number(process.env.BENCH_BLOCK_RAND ?? 10000);
const SEQ_OPS = Number(process.env.BENCH_BLOCK_SEQ ?? 256);
const THREADS = Number(process.env.BENCH_BLOCK_THREADS ?? 4);
const TARGET = 0.8;

interface Figures {
  /** 4 KiB random reads a second. */
  iops: number;
  /** 1 MiB sequential writes and reads, in MB/s. */
  writeMBps: number;
  readMBps: number;
}

/** The figures from a `rand4k-ops=… seqr-ns=…` line, checked to be the run asked for. */
function figures(who: string, out: string, line: RegExp): Figures {
  const m = line.exec(out);
  const seqBytes = SEQ_OPS * 2 ** 20;
  if (!m || Number(m[1]) !== RAND_OPS || Number(m[3]) !== seqBytes || Number(m[5]) !== seqBytes) throw new Error(`${who} printed no result: ${out}`);
  const [, ops, randNs, writeBytes, writeNs, readBytes, readNs] = m.map(Number);
  return { iops: ops / (randNs / 1e9), writeMBps: writeBytes / 1e6 / (writeNs / 1e9), readMBps: readBytes / 1e6 / (readNs / 1e9) };
}

/** What the floor printed; when it fails, the benchmark stops with its one line. */
function floorOutput(image: string): string {
  const args = ['-r', String(RAND_OPS), '-s', String(SEQ_OPS), '-t', String(THREADS), image];
  try {
    return execFileSync(`${root}bench/build/block-floor`, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    process.stderr.write(`bench: block-floor ${args.join(' ')} failed: ${(err.stderr ?? '').trim().split('\n').pop() || err.message}\n`);
    process.exit(1);
  }
}

const floorRun = (image: string) =>
  figures(
    'block-floor',
    floorOutput(image),
    /block-floor rand4k-ops=(\d+) rand4k-ns=(\d+) seqw-bytes=(\d+) seqw-ns=(\d+) seqr-bytes=(\d+) seqr-ns=(\d+)/,
  );

const guestRun = (image: string) =>
  figures(
    'the block guest',
    runXenkvm(['--kernel', `${root}guests/build/bench-block.elf`, '--cmdline', `rand=${RAND_OPS} seq=${SEQ_OPS}`, '--disk', `format=raw, vdev=xvda, access=rw, target=${image}`]),
    /KIT-BENCH block rand4k-ops=(\d+) rand4k-ns=(\d+) seqw-bytes=(\d+) seqw-ns=(\d+) seqr-bytes=(\d+) seqr-ns=(\d+)/,
  );

/** A raw image of IMAGE_MIB MiB, every byte written (no holes, so reads move real pages). */
function createImage(path: string): void {
  const chunk = Buffer.alloc(2 ** 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7 + 1) & 0xff;
  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < IMAGE_MIB; i++) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'xenkvm-bench-'));
try {
  const image = join(dir, 'xvda.img');
  createImage(image);
  const samples = {
    hostIops: [] as number[], guestIops: [] as number[], iopsRatio: [] as number[],
    hostWrite: [] as number[], guestWrite: [] as number[], writeRatio: [] as number[],
    hostRead: [] as number[], guestRead: [] as number[], readRatio: [] as number[],
  };
  for (let i = 0; i < ROUNDS; i++) {
    const host = floorRun(image);
    const guest = guestRun(image);
    samples.hostIops.push(host.iops);
    samples.guestIops.push(guest.iops);
    samples.iopsRatio.push(guest.iops / host.iops);
    samples.hostWrite.push(host.writeMBps);
    samples.guestWrite.push(guest.writeMBps);
    samples.writeRatio.push(guest.writeMBps / host.writeMBps);
    samples.hostRead.push(host.readMBps);
    samples.guestRead.push(guest.readMBps);
    samples.readRatio.push(guest.readMBps / host.readMBps);
  }
  const m = medians(samples);
  let pass = true;
  const ratio = (r: number, target?: number) => {
    if (target === undefined) return r.toFixed(3);
    pass &&= r >= target;
    return `${r.toFixed(3)} (target ≥ ${target}) ${r >= target ? 'PASS' : 'FAIL'}`;
  };
  console.log(`PV block I/O, queue depth 32, on a ${IMAGE_MIB} MiB image: the kit's frontend against a host process (${THREADS} threads) on the same file, ${ROUNDS} rounds, medians`);
  console.log(`  4 KiB random reads (${RAND_OPS}):     host ${Math.round(m.hostIops)} IOPS, guest ${Math.round(m.guestIops)} IOPS   guest / host ${ratio(m.iopsRatio)}`);
  console.log(`  1 MiB sequential writes (${SEQ_OPS}):  host ${m.hostWrite.toFixed(1)} MB/s, guest ${m.guestWrite.toFixed(1)} MB/s   guest / host ${ratio(m.writeRatio, TARGET)}`);
  console.log(`  1 MiB sequential reads (${SEQ_OPS}):   host ${m.hostRead.toFixed(1)} MB/s, guest ${m.guestRead.toFixed(1)} MB/s   guest / host ${ratio(m.readRatio, TARGET)}`);
  process.exitCode = pass ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}

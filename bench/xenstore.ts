// XenStore operations per second over the socket: one client (bench/xs-bench
// drive, C) runs a mix of transactions, reads, writes and directory listings
// against xenkvm's store, and in the same run against the transport floor, a
// C server (xs-bench serve) that answers every request at once with a fixed
// reply over the same socket and wire format. Rounds alternate; medians. Each
// server is driven once unmeasured first: what is compared is the steady state,
// not node's JIT warming up (which takes thousands of requests in the nested VM).
//
//   ops/s   xenkvm / floor, target ≥ 0.5.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, root, ROUNDS } from './common.js';

const MIX_ROUNDS = Number(process.env.BENCH_XS_ROUNDS ?? 3000);
const TARGET = 0.5;
const xsBench = `${root}bench/build/xs-bench`;

async function waitFor(what: string, ready: () => boolean, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600 && !ready(); i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited before it was ready`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!ready()) throw new Error(`${what} did not get ready`);
}

function drive(path: string): number {
  const out = execFileSync(xsBench, ['drive', path, String(MIX_ROUNDS)], { encoding: 'utf8' });
  const m = /ops=(\d+) ns=(\d+)/.exec(out);
  if (!m) throw new Error(`xs-bench printed no result: ${out}`);
  return Number(m[1]) / (Number(m[2]) / 1e9);
}

async function against(what: string, command: string, args: string[], path: string): Promise<number> {
  // Its stderr is shown only if it fails: stopping it at the end is not news.
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  try {
    await waitFor(what, () => existsSync(path), child);
    drive(path);
    return drive(path);
  } catch (e) {
    process.stderr.write(stderr);
    throw e;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
  }
}

const dir = mkdtempSync(join(tmpdir(), 'xenkvm-bench-'));
try {
  const floor: number[] = [];
  const xenkvm: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    floor.push(await against('the floor server', xsBench, ['serve', join(dir, `floor-${i}`)], join(dir, `floor-${i}`)));
    const path = join(dir, `xenkvm-${i}`);
    // An idle guest (halted with interrupts on) keeps the VM up while the store is measured.
    xenkvm.push(await against('xenkvm', `${root}bin/xenkvm`, ['run', '--kernel', `${root}guests/build/power.elf`, '--cmdline', 'action=halt', '--xenstore-socket', path], path));
  }
  const f = median(floor);
  const x = median(xenkvm);
  const ratio = x / f;
  console.log(`XenStore over its socket, one client, ${MIX_ROUNDS * 7} operations × ${ROUNDS} rounds, medians`);
  console.log(`  floor, C server with a fixed reply:  ${Math.round(f)} ops/s`);
  console.log(`  xenkvm's store:                      ${Math.round(x)} ops/s`);
  console.log(`  xenkvm / floor: ${ratio.toFixed(3)} (target ≥ ${TARGET}) ${ratio >= TARGET ? 'PASS' : 'FAIL'}`);
  process.exitCode = ratio >= TARGET ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}

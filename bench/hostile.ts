// Memory under the resource-growth attacks a guest could mount on the VMM's
// own state (issue 10), each against a benign twin that does the same amount
// of work in the same run: the heap (after a full GC) and the RSS that each
// leaves behind, measured in a fresh node process per run so nothing carries
// over. No KVM: these are the VMM's pure modules driven as a guest drives them.
//
//   hypercalls  a million calls, each a new unimplemented number  vs  one number a million times
//   history     with a transaction open, write and remove a new node a million times  vs  none open
//   events      a million watch events for a guest that never reads its ring  vs  one that reads
//
//   Target: an attack keeps at most 16 MiB more heap than its twin.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { HypercallDispatcher } from '../src/xen/hypercall.js';
import { XS, xenstoreDomainInterface } from '../src/xen/abi/xenstore.js';
import { evtchnTestDomain } from '../src/xen/evtchn/fake-domain.js';
import { RateLimitedLog } from '../src/common/log.js';
import { XenStore } from '../src/xenstore/store.js';
import { XenStoreRing } from '../src/xenstore/ring.js';
import { encodeMessage, stringsPayload } from '../src/xenstore/wire.js';

const N = Number(process.env.BENCH_HOSTILE_N ?? 1_000_000);
const TARGET_MIB = 16;
const MiB = 1024 * 1024;
const silent = pino({ level: 'silent' });

type Run = 'attack' | 'twin';
/** Each attack or twin returns what it built, kept alive while its memory is measured. */
const attacks: Record<string, (run: Run) => unknown> = {
  hypercalls(run) {
    const d = new HypercallDispatcher(silent);
    const ctx = { vcpu: 0, abi: 'native' as const, guest: {} as never };
    for (let i = 0; i < N; i++) d.dispatch(ctx, 0, run === 'attack' ? 1000 + i : 1000, [0n, 0n, 0n, 0n, 0n]);
    return d;
  },
  history(run) {
    const store = new XenStore();
    store.introduce(1);
    store.mkdir('/local/domain/1/data');
    store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'n' }]);
    const dom0 = store.connect(0, () => {});
    if (run === 'attack') store.handle(dom0, { type: XS.TRANSACTION_START, reqId: 0, txId: 0, payload: stringsPayload('') });
    const guest = store.connect(1, () => {});
    for (let i = 0; i < N; i++) {
      store.handle(guest, { type: XS.WRITE, reqId: i, txId: 0, payload: Buffer.from(`data/x${i}\0v`) });
      store.handle(guest, { type: XS.RM, reqId: i, txId: 0, payload: stringsPayload(`data/x${i}`) });
    }
    return store;
  },
  events(run) {
    const d = evtchnTestDomain({ after: () => {} });
    const store = new XenStore();
    store.introduce(1);
    store.mkdir('/local/domain/1/data');
    store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'n' }]);
    const page = new Uint8Array(4096);
    const view = new DataView(page.buffer);
    const ring = new XenStoreRing(page, d.d.backends.create(), store, 1, new RateLimitedLog(silent));
    const at = xenstoreDomainInterface.native.offsets;
    const watch = encodeMessage({ type: XS.WATCH, reqId: 1, txId: 0, payload: stringsPayload('data', 't') });
    page.set(watch, at.req);
    view.setUint32(at.req_prod, watch.length, true);
    ring.service();
    for (let i = 0; i < N; i++) {
      store.write(`/local/domain/1/data/d${i % 1000}/n${i}`, '');
      // The reading guest takes everything at once: rsp_cons catches up with rsp_prod.
      if (run === 'twin') {
        view.setUint32(at.rsp_cons, view.getUint32(at.rsp_prod, true), true);
        ring.service();
      }
    }
    return { store, ring };
  },
};

/** Heap and RSS a run leaves, what it built still alive, after a full collection, in a process of its own. */
function measure(name: string, run: Run): { heap: number; rss: number } {
  const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), name, run], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(out) as { heap: number; rss: number };
}

const [child, run] = process.argv.slice(2);
if (child) {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const built = attacks[child](run as Run);
  gc();
  process.stdout.write(JSON.stringify({ heap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss, kept: built !== undefined }));
} else {
  let pass = true;
  console.log(`memory under resource-growth attacks, ${N} operations each, against a benign twin (heap after GC / RSS)`);
  for (const name of Object.keys(attacks)) {
    const twin = measure(name, 'twin');
    const attack = measure(name, 'attack');
    const extra = (attack.heap - twin.heap) / MiB;
    const ok = extra <= TARGET_MIB;
    pass &&= ok;
    const mib = (v: number) => `${(v / MiB).toFixed(1)} MiB`;
    console.log(`  ${name.padEnd(10)} attack ${mib(attack.heap)} / ${mib(attack.rss)}, twin ${mib(twin.heap)} / ${mib(twin.rss)}: ${extra.toFixed(1)} MiB more heap (target ≤ ${TARGET_MIB}) ${ok ? 'PASS' : 'FAIL'}`);
  }
  process.exitCode = pass ? 0 : 1;
}

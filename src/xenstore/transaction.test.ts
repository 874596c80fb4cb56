import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XS } from '../xen/abi/xenstore.js';
import { FakeClient } from './fake-client.js';
import { XenStore } from './store.js';

function setup() {
  const store = new XenStore();
  const [a, b] = [new FakeClient(store, 0), new FakeClient(store, 0)];
  a!.write('/t/a', '1');
  a!.write('/t/b', '1');
  return { store, a: a!, b: b! };
}

test('a transaction reads the store as it was at its start, sees its own changes, and makes them visible at commit', () => {
  const { a, b } = setup();
  const tx = a.start();
  assert.equal(b.write('/t/b', 'outside'), 'OK\0');
  assert.equal(b.write('/t/new', 'outside'), 'OK\0');
  assert.equal(a.read('/t/new', tx), '!ENOENT', 'created after the start');
  assert.deepEqual(a.dir('/t', tx), ['a', 'b']);
  assert.equal(a.write('/t/c', '3', tx), 'OK\0');
  assert.equal(a.read('/t/c', tx), '3');
  assert.deepEqual(a.dir('/t', tx), ['a', 'b', 'c']);
  assert.equal(b.read('/t/c'), '!ENOENT', 'not before the commit');
  assert.equal(a.read('/t/c'), '!ENOENT', 'not even to its own connection outside the transaction');
  assert.equal(a.end(tx, true), '!EAGAIN', 'it listed /t, which changed since');
  const tx2 = a.start();
  assert.equal(a.write('/t/c', '3', tx2), 'OK\0');
  assert.equal(b.write('/t/a', 'unrelated'), 'OK\0');
  assert.equal(a.end(tx2, true), 'OK\0');
  assert.equal(b.read('/t/c'), '3');
  assert.deepEqual(b.dir('/t'), ['a', 'b', 'new', 'c']);
  assert.equal(a.read('/t/c', tx2), '!ENOENT', 'the id is gone after TRANSACTION_END');
});

test('snapshot reads: a node changed after the start reads as it was, and the commit then fails', () => {
  const { a, b } = setup();
  const tx = a.start();
  b.write('/t/a', '2');
  assert.equal(a.read('/t/a', tx), '1');
  assert.equal(a.write('/t/b', 'x', tx), 'OK\0');
  assert.equal(a.end(tx, true), '!EAGAIN');
  assert.equal(b.read('/t/b'), '1', 'nothing of it landed');
});

test('conflicts: a node read or written in the transaction changed, deleted, created, or deleted and created again', () => {
  const cases: [string, (a: FakeClient, tx: number) => void, (b: FakeClient) => void][] = [
    ['read, then changed', (a, tx) => a.read('/t/a', tx), (b) => b.write('/t/a', '1')],
    ['written, then changed', (a, tx) => a.write('/t/a', 'mine', tx), (b) => b.write('/t/a', 'theirs')],
    ['read, then deleted', (a, tx) => a.read('/t/a', tx), (b) => b.rm('/t/a')],
    ['read as missing, then created', (a, tx) => a.read('/t/m', tx), (b) => b.write('/t/m', '')],
    ['resurrected: deleted and created again with the same value', (a, tx) => a.read('/t/a', tx), (b) => { b.rm('/t/a'); b.write('/t/a', '1'); }],
    ['deleted here, a node created below it meanwhile', (a, tx) => a.rm('/t', tx), (b) => b.write('/t/a/deep', '')],
    ['listed, then a child added', (a, tx) => a.dir('/t', tx), (b) => b.mkdir('/t/z')],
    ['permissions read, then changed', (a, tx) => a.getPerms('/t/a', tx), (b) => b.setPerms('/t/a', ['r0'])],
  ];
  for (const [name, inside, outside] of cases) {
    const { a, b, store } = setup();
    const before = JSON.stringify(store.serialize().nodes);
    const tx = a.start();
    inside(a, tx);
    outside(b);
    const after = JSON.stringify(store.serialize().nodes);
    assert.equal(a.end(tx, true), '!EAGAIN', name);
    assert.equal(JSON.stringify(store.serialize().nodes), after, `${name}: the failed commit changed nothing`);
    assert.notEqual(before, after);
  }
});

test('no conflict: changes to nodes the transaction never looked at, or a node created and deleted again outside', () => {
  const { a, b } = setup();
  const tx = a.start();
  a.read('/t/a', tx);
  a.write('/t/b', 'mine', tx);
  b.write('/elsewhere', '');
  b.write('/t/a/child', '');
  b.write('/t/tmp', '');
  b.rm('/t/tmp');
  assert.equal(a.end(tx, true), '!EAGAIN', 'oops: /t/a gained a child, its generation moved');
  const tx2 = a.start();
  a.read('/t/a', tx2);
  a.read('/t/never', tx2);
  a.write('/t/b', 'mine', tx2);
  b.write('/elsewhere', 'again');
  b.write('/t/never', '');
  b.rm('/t/never');
  assert.equal(a.end(tx2, true), 'OK\0', '/t/never is missing again, as the transaction saw it');
  assert.equal(b.read('/t/b'), 'mine');
});

test('two transactions on the same node: the first to commit wins', () => {
  const { a, b } = setup();
  const ta = a.start();
  const tb = b.start();
  a.write('/t/a', 'A', ta);
  b.write('/t/a', 'B', tb);
  assert.equal(b.end(tb, true), 'OK\0');
  assert.equal(a.end(ta, true), '!EAGAIN');
  assert.equal(a.read('/t/a'), 'B');
});

test('TRANSACTION_END F discards everything; no watch fires', () => {
  const { a, b } = setup();
  b.watch('/t', 'w');
  b.takeEvents();
  const tx = a.start();
  a.write('/t/a', 'x', tx);
  a.rm('/t/b', tx);
  assert.equal(a.end(tx, false), 'OK\0');
  assert.equal(b.read('/t/a'), '1');
  assert.equal(b.read('/t/b'), '1');
  assert.deepEqual(b.takeEvents(), []);
});

test('watch events of a transaction fire at commit: once per changed node, exact ones widened to subtree ones', () => {
  const { a, b } = setup();
  a.write('/t/b/c', '');
  for (const [p, t] of [['/t', 't'], ['/t/b/c', 'c'], ['/t/b', 'b']] as const) b.watch(p, t);
  b.takeEvents();
  const tx = a.start();
  a.write('/t/a', 'x', tx);
  a.write('/t/a', 'y', tx);
  a.rm('/t/b', tx);
  a.write('/t/b/c', 'again', tx);
  a.write('/t/gone', '', tx);
  a.rm('/t/gone', tx);
  assert.deepEqual(b.takeEvents(), [], 'nothing before the commit');
  assert.equal(a.end(tx, true), 'OK\0');
  assert.deepEqual(b.takeEvents(), [
    ['/t/a', 't'],
    ['/t/b', 't'], ['/t/b', 'b'],
    ['/t/b/c', 't'], ['/t/b/c', 'c'], ['/t/b/c', 'b'],
  ], 'in the order the transaction first touched the nodes; /t/gone never existed outside it: nobody may read it');
});

test('events at commit reach a domain that could read the node in the snapshot or can read it now', () => {
  const store = new XenStore();
  const dom0 = new FakeClient(store, 0);
  const u = new FakeClient(store, 1);
  store.write('/pub/x', '');
  store.setPerms('/pub', [{ domid: 0, access: 'n' }]);
  store.setPerms('/pub/x', [{ domid: 0, access: 'r' }]);
  u.watch('/pub', 'w');
  u.takeEvents();
  const tx = dom0.start();
  dom0.setPerms('/pub/x', ['n0'], tx);
  dom0.write('/pub/hidden', '', tx);
  assert.equal(dom0.end(tx, true), 'OK\0');
  assert.deepEqual(u.takeEvents(), [['/pub/x', 'w']]);
});

test('transaction ids: from 1 per connection, never 0 nor one in use when the counter wraps', () => {
  const store = new XenStore();
  const c = new FakeClient(store, 0);
  assert.equal(c.start(), 1);
  const saved = store.serialize();
  saved.connections[0]!.nextTransactionId = 0xffffffff;
  const restored = XenStore.restore(JSON.parse(JSON.stringify(saved)));
  const r = FakeClient.reattach(restored, c.conn.id, 0);
  assert.equal(r.start(), 0xffffffff);
  assert.equal(r.start(), 2, '0 is skipped, 1 is open');
});

test('domain node quota at commit, as xenstored checks it: a transaction that creates nodes may not leave the domain at its quota', () => {
  const store = new XenStore({ quotas: { nodesPerDomain: 3 } });
  store.mkdir('/local/domain/1/data');
  store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'n' }]);
  const u = new FakeClient(store, 1);
  let tx = u.start();
  assert.equal(u.write('data/a', '', tx), 'OK\0');
  assert.equal(u.end(tx, true), 'OK\0', '2 of 3');
  tx = u.start();
  assert.equal(u.write('data/b', '', tx), 'OK\0', 'the request itself is within the quota');
  assert.equal(u.write('data/c', '', tx), '!ENOSPC', 'counting the transaction\'s own nodes');
  assert.equal(u.end(tx, true), '!ENOSPC', '3 of 3 at commit');
  assert.equal(u.write('data/b', ''), 'OK\0', 'outside a transaction the last node is allowed');
  tx = u.start();
  assert.equal(u.rm('data/b', tx), 'OK\0');
  assert.equal(u.end(tx, true), 'OK\0', 'a transaction that only deletes is not checked');
});

test('DIRECTORY_PART inside a transaction: the generation of the transaction\'s own version', () => {
  const { a } = setup();
  const outside = a.req(XS.DIRECTORY_PART, ['/t', '0']);
  const tx = a.start();
  assert.equal(a.req(XS.DIRECTORY_PART, ['/t', '0'], tx), outside);
  a.write('/t/c', '', tx);
  const inside = a.req(XS.DIRECTORY_PART, ['/t', '0'], tx);
  assert.notEqual(inside.split('\0')[0], outside.split('\0')[0]);
  assert.equal(inside.slice(inside.indexOf('\0')), '\0a\0b\0c\0\0');
});

test('an open transaction keeps one old version per node, not one per change; all goes when it ends', () => {
  const { store, a, b } = setup();
  const tx = a.start();
  for (let i = 0; i < 1000; i++) b.write('/t/a', String(i));
  for (let i = 0; i < 100; i++) b.write(`/t/n${i}`, '');
  const history = store.serialize().history;
  assert.equal(history.find(([p]) => p === '/t/a')![1].length, 1);
  assert.equal(history.find(([p]) => p === '/t')![1].length, 1);
  assert.equal(a.read('/t/a', tx), '1');
  a.end(tx, false);
  assert.deepEqual(store.serialize().history, []);
});

// ---- Transactions against a model.
//
// The model keeps values per path and a version per path, bumped whenever the
// engine gives the node a new generation (or removes it). A transaction reads
// from a copy taken at its start plus its own changes and remembers the
// paths it looked at: READ and DIRECTORY the path, WRITE the path (and the
// parent when it creates the node), RM the path and the parent. It commits
// exactly when none of those versions moved, and then its operations apply
// as if run at that moment.

type Op = { kind: 'read' | 'dir' | 'rm'; path: string } | { kind: 'write'; path: string; value: string };

const PARENTS = ['/p/a', '/p/b'];
const LEAVES = ['/p/a/x', '/p/a/y', '/p/a/z', '/p/b/x', '/p/b/y'];
const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/'));

class Model {
  values = new Map<string, string>();
  versions = new Map<string, number>();
  private clock = 0;

  constructor() {
    for (const p of ['/p', ...PARENTS]) this.values.set(p, '');
  }

  version(p: string): number {
    return this.versions.get(p) ?? 0;
  }

  bump(p: string): void {
    this.versions.set(p, ++this.clock);
  }

  /** Runs an op on `values`; returns the reply and the paths whose node it rewrote or removed. */
  static run(values: Map<string, string>, op: Op): { reply: string; wrote: string[] } {
    switch (op.kind) {
      case 'read':
        return { reply: values.has(op.path) ? values.get(op.path)! : '!ENOENT', wrote: [] };
      case 'dir':
        return { reply: [...values.keys()].filter((k) => parentOf(k) === op.path).map((k) => `${k.slice(op.path.length + 1)}\0`).join(''), wrote: [] };
      case 'write': {
        const created = !values.has(op.path);
        values.set(op.path, op.value);
        return { reply: 'OK\0', wrote: created ? [op.path, parentOf(op.path)] : [op.path] };
      }
      case 'rm':
        if (!values.has(op.path)) return { reply: 'OK\0', wrote: [] };
        values.delete(op.path);
        return { reply: 'OK\0', wrote: [op.path, parentOf(op.path)] };
    }
  }

  static looksAt(values: Map<string, string>, op: Op): string[] {
    if (op.kind === 'rm' || (op.kind === 'write' && !values.has(op.path))) return [op.path, parentOf(op.path)];
    return [op.path];
  }

  /** A plain request outside any transaction. */
  apply(op: Op): string {
    const before = new Map(this.values);
    const { reply, wrote } = Model.run(this.values, op);
    for (const p of new Set(wrote)) if (before.has(p) || this.values.has(p)) this.bump(p);
    return reply;
  }
}

interface ModelTransaction {
  id: number;
  local: Map<string, string>;
  versionsAtStart: Map<string, number>;
  /** Paths looked at, with their version at the start. */
  seen: Map<string, number>;
  ops: Op[];
}

function randomOp(rand: (n: number) => number, inTransaction: boolean): Op {
  const leaf = LEAVES[rand(LEAVES.length)]!;
  const pick = rand(inTransaction ? 5 : 3);
  if (pick === 0 || pick === 3) return { kind: 'write', path: leaf, value: String(rand(100)) };
  if (pick === 1) return { kind: 'rm', path: leaf };
  if (pick === 2) return { kind: 'read', path: leaf };
  return { kind: 'dir', path: PARENTS[rand(PARENTS.length)]! };
}

function engineOp(c: FakeClient, op: Op, tx: number): string {
  switch (op.kind) {
    case 'read':
      return c.read(op.path, tx);
    case 'dir':
      return c.req(XS.DIRECTORY, [op.path], tx);
    case 'write':
      return c.write(op.path, op.value, tx);
    case 'rm':
      return c.rm(op.path, tx);
  }
}

test('property: interleaved transactions and plain writes behave as the model says, commits included', () => {
  let seed = 20240601;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % n;
  };
  let commits = 0;
  let conflicts = 0;
  for (let run = 0; run < 250; run++) {
    const store = new XenStore();
    const model = new Model();
    const clients = [0, 1, 2].map(() => new FakeClient(store, 0));
    for (const p of PARENTS) clients[0]!.mkdir(p);
    const open: (ModelTransaction | undefined)[] = [undefined, undefined, undefined];
    for (let step = 0; step < 50; step++) {
      const i = rand(3);
      const c = clients[i]!;
      const t = open[i];
      if (t === undefined) {
        if (rand(3) === 0) {
          open[i] = { id: c.start(), local: new Map(model.values), versionsAtStart: new Map(model.versions), seen: new Map(), ops: [] };
        } else {
          const op = randomOp(rand, false);
          assert.equal(engineOp(c, op, 0), model.apply(op), `run ${run} step ${step}: plain ${JSON.stringify(op)}`);
        }
      } else if (rand(5) === 0) {
        const commit = rand(4) !== 0;
        const conflict = [...t.seen].some(([p, v]) => model.version(p) !== v);
        const expected = !commit ? 'OK\0' : conflict ? '!EAGAIN' : 'OK\0';
        assert.equal(c.end(t.id, commit), expected, `run ${run} step ${step}: end ${commit}`);
        if (commit && !conflict) {
          commits++;
          const before = new Map(model.values);
          const wrote = new Set<string>();
          for (const op of t.ops) for (const p of Model.run(model.values, op).wrote) wrote.add(p);
          for (const p of wrote) if (before.has(p) || model.values.has(p)) model.bump(p);
          for (const p of t.seen.keys()) assert.equal(model.values.get(p), t.local.get(p), 'applied at commit, the operations give what the transaction saw');
        } else if (commit) conflicts++;
        open[i] = undefined;
      } else {
        const op = randomOp(rand, true);
        for (const p of Model.looksAt(t.local, op)) if (!t.seen.has(p)) t.seen.set(p, t.versionsAtStart.get(p) ?? 0);
        t.ops.push(op);
        assert.equal(engineOp(c, op, t.id), Model.run(t.local, op).reply, `run ${run} step ${step}: in transaction ${JSON.stringify(op)}`);
      }
      for (const p of [...PARENTS, ...LEAVES]) {
        assert.equal(store.exists(p) ? store.read(p) : undefined, model.values.get(p), `run ${run} step ${step}: ${p}`);
      }
      for (const p of PARENTS) assert.deepEqual(store.directory(p), [...model.values.keys()].filter((k) => parentOf(k) === p).map((k) => k.slice(p.length + 1)));
    }
  }
  assert.ok(commits > 200 && conflicts > 50, `commits ${commits}, conflicts ${conflicts}`);
});

test('with a transaction open, a domain writing and removing ever new nodes is stopped at the hard memory quota with ENOMEM; the history it can pin is bounded, and goes with the transaction', () => {
  const quota = 64 * 1024;
  const store = new XenStore({ quotas: { historyBytesPerDomain: quota } });
  store.mkdir('/local/domain/1/data');
  store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'n' }]);
  const toolstack = new FakeClient(store, 0);
  const guest = new FakeClient(store, 1);
  const tx = toolstack.start();
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    const w = guest.write(`data/x${i}`, 'v');
    const r = guest.rm(`data/x${i}`);
    if (w === '!ENOMEM' || r === '!ENOMEM') refused++;
    else assert.deepEqual([w, r], ['OK\0', 'OK\0']);
  }
  assert.ok(refused > 15_000, `${refused} of 20000 refused`);
  const kept = store.serialize().history.reduce((n, [path, past]) => n + past.length * (64 + path.length), 0);
  assert.ok(kept <= quota + 1024, `${kept} bytes of history kept`);
  assert.equal(guest.read('data'), '', 'reads still work');
  // Domain 0 is not held to it.
  assert.equal(toolstack.write('/local/domain/1/data/y', '1'), 'OK\0');
  assert.equal(toolstack.end(tx, false), 'OK\0');
  assert.equal(store.serialize().history.length, 0);
  assert.equal(guest.write('data/after', '1'), 'OK\0', 'the domain writes again once the history is gone');
});

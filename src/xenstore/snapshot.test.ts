import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XS } from '../xen/abi/xenstore.js';
import { bytes, FakeClient, text } from './fake-client.js';
import { type StoreSnapshot, XenStore } from './store.js';

// A scenario over several connections. After every step the store is saved,
// passed through JSON and restored, its connections re-attached; the copy
// must then answer every remaining step exactly as the original did: replies,
// watch events, generation counts, transaction ids and outcomes.

interface World {
  store: XenStore;
  clients: Map<string, FakeClient>;
  /** Transaction ids and the like, carried from step to step. */
  vars: Map<string, number>;
}

type Step = (w: World) => string[];

const QUOTAS = { watchesPerDomain: 3, nodesPerDomain: 20 };

/** Every client's pending events after a step, by name. */
function events(w: World): string[] {
  return [...w.clients].flatMap(([name, c]) => c.takeEvents().map(([p, t]) => `${name} event ${p} ${t}`));
}

function step(f: (w: World, c: (name: string) => FakeClient) => string | string[]): Step {
  return (w) => {
    const r = f(w, (name) => w.clients.get(name)!);
    return [...(Array.isArray(r) ? r : [r]), ...events(w)];
  };
}

const steps: Step[] = [
  step((w) => {
    w.clients.set('tool', new FakeClient(w.store, 0));
    w.store.mkdir('/local/domain/1');
    w.store.setPerms('/local/domain/1', [{ domid: 0, access: 'n' }, { domid: 1, access: 'r' }]);
    w.store.mkdir('/local/domain/1/data');
    w.store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'n' }]);
    w.store.introduce(1);
    w.clients.set('guest', new FakeClient(w.store, 1));
    return 'setup';
  }),
  step((_, c) => [c('tool').watch('@introduceDomain', 'intro'), c('tool').watch('@releaseDomain', 'rel'), c('guest').watch('data', 'mine')]),
  step((_, c) => [c('guest').write('data/a', 'x\0binary\xff'), c('guest').write('data/b/c', '')]),
  step((w, c) => {
    w.vars.set('gt', c('guest').start());
    return String(w.vars.get('gt'));
  }),
  step((w, c) => [c('guest').read('data/a', w.vars.get('gt')), c('guest').write('data/a', 'in tx', w.vars.get('gt'))]),
  step((_, c) => [c('tool').write('/local/domain/1/data/b/c', 'outside'), c('tool').write('/local/domain/1/data/z', 'new')]),
  step((w, c) => [
    c('guest').read('data/b/c', w.vars.get('gt')), c('guest').req(XS.DIRECTORY_PART, ['data', '0'], w.vars.get('gt')),
    c('guest').req(XS.DIRECTORY_PART, ['data', '0']),
  ]),
  step((w, c) => {
    w.vars.set('tt', c('tool').start());
    return [String(w.vars.get('tt')), c('tool').write('/local/domain/1/data/q', 'tool tx', w.vars.get('tt'))];
  }),
  step((w, c) => c('guest').end(w.vars.get('gt')!, true)),
  step((w, c) => [c('tool').end(w.vars.get('tt')!, true), c('guest').read('data/q')]),
  step((w, c) => {
    w.vars.set('gt2', c('guest').start());
    return [c('guest').rm('data/b', w.vars.get('gt2')), c('guest').write('data/n', '1', w.vars.get('gt2'))];
  }),
  step((_, c) => [c('tool').setPerms('/local/domain/1/data/a', ['n1', 'r0']), String(c('guest').getPerms('data/a'))]),
  step((w) => {
    w.store.introduce(2);
    w.clients.set('stub', new FakeClient(w.store, 2));
    return [w.clients.get('tool')!.req(XS.SET_TARGET, ['2', '1'])];
  }),
  step((_, c) => [c('stub').read('/local/domain/1/data/a'), c('stub').watch('/local/domain/1/data', 'stub')]),
  step((w, c) => [c('guest').end(w.vars.get('gt2')!, true), String(c('guest').dir('data'))]),
  step((_, c) => [c('guest').watch('data', 'two'), c('guest').watch('data', 'three'), c('guest').watch('data', 'four')]),
  step((_, c) => [c('guest').unwatch('data', 'two'), text(c('guest').call(XS.READ, bytes('data/a')))]),
  step((_, c) => c('tool').req(XS.RELEASE, ['2'])),
  step((w, c) => {
    w.store.domainShutDown(1);
    return [c('tool').req(XS.IS_DOMAIN_INTRODUCED, ['1']), c('tool').req(XS.RESUME, ['1'])];
  }),
  step((_, c) => [c('guest').write('data/last', 'end'), c('guest').req(XS.RESET_WATCHES, []), c('guest').write('data/last', 'quiet')]),
];

function restoreWorld(saved: string, names: Map<string, { id: number; domid: number }>, vars: Map<string, number>): World {
  const store = XenStore.restore(JSON.parse(saved) as StoreSnapshot, { quotas: QUOTAS });
  const clients = new Map<string, FakeClient>();
  for (const [name, { id, domid }] of names) clients.set(name, FakeClient.reattach(store, id, domid));
  return { store, clients, vars: new Map(vars) };
}

test('save/restore after every step of a scenario: the restored store answers the rest exactly as the original', () => {
  const original: World = { store: new XenStore({ quotas: QUOTAS }), clients: new Map(), vars: new Map() };
  const outputs: string[][] = [];
  const saves: { saved: string; names: Map<string, { id: number; domid: number }>; vars: Map<string, number> }[] = [];
  for (const s of steps) {
    outputs.push(s(original));
    const saved = JSON.stringify(original.store.serialize());
    const names = new Map([...original.clients].map(([n, c]) => [n, { id: c.conn.id, domid: c.domid }]));
    saves.push({ saved, names, vars: new Map(original.vars) });
    assert.equal(JSON.stringify(XenStore.restore(JSON.parse(saved) as StoreSnapshot, { quotas: QUOTAS }).serialize()), saved, 'restore then save gives the same snapshot');
  }
  assert.equal(outputs[8]![0], '!EAGAIN', 'the guest\'s first transaction read a node changed meanwhile');
  assert.equal(outputs[14]![0], 'OK\0', 'its second one commits');
  for (let i = 0; i < steps.length; i++) {
    const copy = restoreWorld(saves[i]!.saved, saves[i]!.names, saves[i]!.vars);
    for (let j = i + 1; j < steps.length; j++) {
      assert.deepEqual(steps[j]!(copy), outputs[j], `restored after step ${i}, step ${j}`);
    }
    assert.equal(JSON.stringify(copy.store.serialize()), JSON.stringify(original.store.serialize()), `restored after step ${i}: same end state`);
  }
});

test('a restored connection holds what is sent to it until its transport re-attaches; reconnect checks the id and domain', () => {
  const store = new XenStore();
  store.mkdir('/local/domain/1');
  store.setPerms('/local/domain/1', [{ domid: 1, access: 'n' }]);
  const tool = new FakeClient(store, 0);
  const guest = new FakeClient(store, 1);
  guest.watch('/local/domain/1', 'w');
  guest.takeEvents();
  const copy = XenStore.restore(JSON.parse(JSON.stringify(store.serialize())) as StoreSnapshot);
  copy.write('/local/domain/1/x', 'while detached');
  assert.throws(() => copy.reconnect(guest.conn.id, 2, () => {}), { code: 'EINVAL' });
  assert.throws(() => copy.reconnect(99, 1, () => {}), { code: 'ENOENT' });
  const back = FakeClient.reattach(copy, guest.conn.id, 1);
  assert.deepEqual(back.takeEvents(), [['/local/domain/1/x', 'w']]);
  assert.throws(() => copy.reconnect(guest.conn.id, 1, () => {}), { code: 'EISCONN' });
  const next = new FakeClient(copy, 0);
  assert.ok(next.conn.id > tool.conn.id && next.conn.id > guest.conn.id, 'new connections do not reuse saved ids');
  assert.throws(() => XenStore.restore({ format: 'other' } as unknown as StoreSnapshot), /unknown format/);
});

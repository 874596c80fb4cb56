import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DOMID } from '../xen/abi/xen.js';
import { XENSTORE_PAYLOAD_MAX, XS, XSD_ERRORS } from '../xen/abi/xenstore.js';
import { bytes, FakeClient, text } from './fake-client.js';
import { latin1 } from './payload.js';
import { DEFAULT_QUOTAS, type Quotas, XenStore, XsError } from './store.js';

/** A domain as libxl lays it out: its home readable by it, data/device/control its own; introduced. */
function addDomain(store: XenStore, domid: number): FakeClient {
  const home = `/local/domain/${domid}`;
  store.mkdir(home);
  store.setPerms(home, [{ domid: 0, access: 'n' }, { domid, access: 'r' }]);
  for (const sub of ['data', 'device', 'control']) {
    store.mkdir(`${home}/${sub}`);
    store.setPerms(`${home}/${sub}`, [{ domid, access: 'n' }]);
  }
  store.introduce(domid);
  return new FakeClient(store, domid);
}

function setup(quotas?: Partial<Quotas>) {
  const store = new XenStore({ quotas });
  const dom0 = new FakeClient(store, 0);
  return { store, dom0 };
}

function throwsXs(f: () => unknown, code: string): void {
  assert.throws(f, (e: unknown) => e instanceof XsError && e.code === code);
}

test('the initial tree is xenstored\'s: /, /tool, /tool/xenstored, domain 0\'s and unreadable to others', () => {
  const { store, dom0 } = setup();
  assert.deepEqual(dom0.dir('/'), ['tool']);
  assert.deepEqual(dom0.dir('/tool'), ['xenstored']);
  assert.deepEqual(dom0.dir('/tool/xenstored'), []);
  assert.deepEqual(dom0.getPerms('/'), ['n0']);
  assert.equal(dom0.read('/local'), '!ENOENT', 'the toolstack (here the VMM) creates /local/domain');
  assert.equal(store.exists('/tool/xenstored'), true);
  assert.deepEqual(DEFAULT_QUOTAS, {
    nodesPerDomain: 1000, entrySize: 2048, watchesPerDomain: 128, transactionsPerDomain: 10, permsPerNode: 5,
    pathLength: 2048, nodesPerTransaction: 1024, historyBytesPerDomain: 2.5 * 1024 * 1024,
  });
});

test('WRITE creates missing parents with empty values; READ, MKDIR, DIRECTORY in creation order', () => {
  const { dom0 } = setup();
  assert.equal(dom0.write('/a/b/c', 'v'), 'OK\0');
  assert.equal(dom0.read('/a/b/c'), 'v');
  assert.equal(dom0.read('/a/b'), '');
  assert.equal(dom0.write('/a/b', 'kept'), 'OK\0');
  assert.equal(dom0.mkdir('/a/b'), 'OK\0', 'MKDIR of an existing node is fine');
  assert.equal(dom0.read('/a/b'), 'kept', 'and leaves its value');
  assert.equal(dom0.mkdir('/a/z/y'), 'OK\0');
  assert.equal(dom0.write('/a/m', ''), 'OK\0');
  assert.deepEqual(dom0.dir('/a'), ['b', 'z', 'm']);
  assert.deepEqual(dom0.dir('/'), ['tool', 'a']);
  assert.equal(dom0.req(XS.DIRECTORY, ['/a/b/c']), '', 'no children: an empty payload');
});

test('RM removes a subtree; a missing node is fine if its parent exists; / cannot go', () => {
  const { dom0 } = setup();
  dom0.write('/a/b/c', '1');
  dom0.write('/a/d', '2');
  assert.equal(dom0.rm('/a/b'), 'OK\0');
  assert.equal(dom0.read('/a/b/c'), '!ENOENT');
  assert.equal(dom0.read('/a/b'), '!ENOENT');
  assert.deepEqual(dom0.dir('/a'), ['d']);
  assert.equal(dom0.rm('/a/b'), 'OK\0', 'already gone, parent exists');
  assert.equal(dom0.rm('/a/b/c'), '!ENOENT', 'parent missing too');
  assert.equal(dom0.rm('/'), '!EINVAL');
  dom0.write('/a/b', 'again');
  assert.deepEqual(dom0.dir('/a'), ['d', 'b'], 'a node created again goes to the end of the list');
});

test('values are bytes: every byte value, NULs included, round-trips through the wire and the VMM API', () => {
  const { store, dom0 } = setup();
  const all = latin1(Uint8Array.from({ length: 256 }, (_, i) => i));
  assert.equal(dom0.write('/bin', all), 'OK\0');
  assert.equal(dom0.read('/bin'), all);
  assert.equal(store.read('/bin'), all, 'read() returns the bytes as a latin1 string');
  assert.deepEqual(store.readBytes('/bin'), bytes(all));
  store.write('/bin2', Uint8Array.of(0, 0xff, 0));
  assert.equal(dom0.read('/bin2'), '\0\xff\0');
  store.write('/bin3', '\u00e9\0');
  assert.deepEqual(store.readBytes('/bin3'), Uint8Array.of(0xe9, 0));
  throwsXs(() => store.write('/bin4', '\u20ac'), 'EINVAL');
  const returned = store.readBytes('/bin');
  returned[0] = 0x55;
  assert.equal(store.read('/bin'), all, 'readBytes hands out a copy');
});

test('GET_PERMS and SET_PERMS: letters n/r/w/b and domids as xenstored parses them (strtol base 0, unsigned)', () => {
  const { dom0 } = setup();
  dom0.write('/p', '');
  assert.equal(dom0.setPerms('/p', ['b0x10', 'r-1', 'w010', 'n 7']), 'OK\0');
  assert.deepEqual(dom0.getPerms('/p'), ['b16', 'r4294967295', 'w8', 'n7']);
  for (const bad of [['x1'], ['r'], ['r1x'], ['1'], ['']]) assert.equal(dom0.setPerms('/p', bad), '!EINVAL', bad.join());
  assert.equal(dom0.req(XS.SET_PERMS, ['/p']), '!EINVAL', 'no permission at all');
  assert.equal(dom0.setPerms('/nope', ['n0']), '!ENOENT');
  assert.equal(dom0.getPerms('@introduceDomain'), '!EINVAL', 'xenstored 4.17 has no node for it');
});

test('paths: relative ones resolve against /local/domain/<domid>; bad ones are EINVAL for every operation', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  assert.equal(u.write('data/x', 'rel'), 'OK\0');
  assert.equal(dom0.read('/local/domain/1/data/x'), 'rel');
  assert.equal(dom0.write('here', '0'), 'OK\0', 'domain 0 is /local/domain/0');
  assert.equal(dom0.read('/local/domain/0/here'), '0');
  for (const bad of ['', '/a/', '//a', '/a//b', '/a b', '@introduceDomain', '/\xe9', 'data/x/']) {
    for (const op of [XS.READ, XS.MKDIR, XS.RM, XS.DIRECTORY, XS.GET_PERMS]) assert.equal(u.req(op, [bad]), '!EINVAL', `${op} ${bad}`);
    assert.equal(u.write(bad, 'v'), '!EINVAL');
    assert.equal(u.setPerms(bad, ['n1']), bad[0] === '@' ? '!EACCES' : '!EINVAL', bad);
  }
  assert.equal(dom0.req(XS.GET_DOMAIN_PATH, ['7']), '/local/domain/7\0');
  assert.equal(u.req(XS.GET_DOMAIN_PATH, ['-1']), '/local/domain/4294967295\0', 'atoi into an unsigned, as xenstored');
  assert.equal(u.req(XS.GET_DOMAIN_PATH, ['x']), '/local/domain/0\0');
});

test('path length quota: counted after the /local/domain/<domid>/ prefix, for domain 0 too', () => {
  const { store, dom0 } = setup({ pathLength: 16 });
  const u = addDomain(store, 1);
  assert.equal(u.write(`data/${'x'.repeat(11)}`, ''), 'OK\0', '16 characters after the prefix');
  assert.equal(u.write(`data/${'x'.repeat(12)}`, ''), '!EINVAL');
  assert.equal(dom0.write(`/${'x'.repeat(15)}`, ''), 'OK\0');
  assert.equal(dom0.write(`/${'x'.repeat(16)}`, ''), '!EINVAL');
  assert.equal(dom0.mkdir('/local/domain/123'), '!EINVAL', 'no prefix without the slash after the domid');
  const big = setup();
  assert.equal(big.dom0.write(`/${'x'.repeat(2047)}`, ''), 'OK\0');
  assert.equal(big.dom0.write(`/${'x'.repeat(2048)}`, ''), '!EINVAL');
  assert.equal(big.dom0.write(`/local/domain/5/${'x'.repeat(2048)}`, ''), 'OK\0', 'longer than XENSTORE_ABS_PATH_MAX allows, as in xenstored 4.17');
});

test('DIRECTORY_PART: generation count, then the list from a byte offset, an extra NUL at its end', () => {
  const { dom0 } = setup();
  dom0.mkdir('/d');
  const gen0 = dom0.req(XS.DIRECTORY_PART, ['/d', '0']);
  assert.match(gen0, /^\d+\0\0$/, 'no children: generation and an empty list');
  dom0.write('/d/one', '1');
  dom0.write('/d/two', '2');
  const all = dom0.req(XS.DIRECTORY_PART, ['/d', '0']);
  const gen = all.slice(0, all.indexOf('\0'));
  assert.equal(all, `${gen}\0one\0two\0\0`);
  assert.notEqual(`${gen}\0\0`, gen0, 'adding children changes the generation');
  assert.equal(dom0.req(XS.DIRECTORY_PART, ['/d', '4']), `${gen}\0two\0\0`);
  assert.equal(dom0.req(XS.DIRECTORY_PART, ['/d', '5']), `${gen}\0wo\0\0`, 'an offset inside a name, as xenstored');
  assert.equal(dom0.req(XS.DIRECTORY_PART, ['/d', '8']), `${gen}\0\0`, 'at the end');
  assert.equal(dom0.req(XS.DIRECTORY_PART, ['/d', '-1']), `${gen}\0\0`, 'atoi into an unsigned');
  dom0.write('/d/one', 'changed');
  assert.equal(dom0.req(XS.DIRECTORY_PART, ['/d', '0']), all, 'a child\'s value is not the directory\'s generation');
  for (const bad of [['/d'], ['/d', '0', 'x']]) assert.equal(dom0.req(XS.DIRECTORY_PART, bad), '!EINVAL');
  assert.equal(text(dom0.call(XS.DIRECTORY_PART, bytes('/d\0' + '0\0' + 'junk'))), all, 'exactly two NULs; trailing bytes ignored');
});

test('a child list longer than a payload: DIRECTORY is E2BIG, DIRECTORY_PART hands it out in parts', () => {
  const { dom0 } = setup();
  const names = Array.from({ length: 130 }, (_, i) => `child-${String(i).padStart(3, '0')}-${'x'.repeat(30)}`);
  for (const n of names) dom0.mkdir(`/big/${n}`);
  assert.equal(dom0.req(XS.DIRECTORY, ['/big']), '!E2BIG');
  let offset = 0;
  let got = '';
  let generation: string | undefined;
  let parts = 0;
  for (;;) {
    const r = dom0.req(XS.DIRECTORY_PART, ['/big', String(offset)]);
    assert.ok(r.length <= XENSTORE_PAYLOAD_MAX);
    const nul = r.indexOf('\0');
    generation ??= r.slice(0, nul);
    assert.equal(r.slice(0, nul), generation, 'the same generation in every part');
    const chunk = r.slice(nul + 1);
    parts++;
    if (chunk.endsWith('\0\0') || chunk === '\0') {
      got += chunk.slice(0, -1);
      break;
    }
    got += chunk;
    offset += chunk.length;
  }
  assert.equal(parts, 2);
  assert.equal(got, names.map((n) => `${n}\0`).join(''));
});

test('a reply over 4096 bytes is E2BIG', () => {
  const { store, dom0 } = setup();
  store.write('/huge', 'v'.repeat(5000));
  assert.equal(dom0.read('/huge'), '!E2BIG');
  assert.equal(store.read('/huge').length, 5000, 'the VMM reads it whole');
});

test('permissions: domain 0 may do anything; others get the first entry naming them, else the first entry\'s access', () => {
  const { store, dom0 } = setup();
  const [d5, d6, d7] = [5, 6, 7].map((d) => new FakeClient(store, d));
  store.write('/s', 'x');
  store.setPerms('/s', [{ domid: 5, access: 'n' }]);
  assert.equal(d5!.read('/s'), 'x', 'the owner has every right, whatever its entry says');
  assert.equal(d5!.write('/s', 'y'), 'OK\0');
  assert.equal(d6!.read('/s'), '!EACCES');
  assert.equal(d6!.write('/s', 'z'), '!EACCES');
  store.setPerms('/s', [{ domid: 5, access: 'r' }, { domid: 6, access: 'w' }, { domid: 6, access: 'b' }, { domid: 7, access: 'n' }]);
  assert.equal(d6!.read('/s'), '!EACCES', 'w6 comes first: write only');
  assert.equal(d6!.write('/s', 'by6'), 'OK\0');
  assert.equal(d7!.read('/s'), '!EACCES', 'listed with n');
  assert.equal(new FakeClient(store, 8).read('/s'), 'by6', 'not listed: the owner entry\'s r');
  assert.equal(dom0.read('/s'), 'by6');
  assert.equal(d6!.setPerms('/s', ['b6']), '!EACCES', 'only the owner (or domain 0) sets permissions');
  assert.equal(d5!.setPerms('/s', ['b6']), '!EPERM', 'and an unprivileged owner may not give the node away');
  assert.equal(d5!.setPerms('/s', ['b5', 'r6']), 'OK\0');
  assert.equal(dom0.setPerms('/s', ['n9']), 'OK\0', 'domain 0 may');
  assert.deepEqual(store.getPerms('/s'), [{ domid: 9, access: 'n' }]);
});

test('a missing node is ENOENT only to those the nearest existing ancestor lets in; EACCES says nothing to others', () => {
  const { store } = setup();
  const u = addDomain(store, 1);
  assert.equal(u.read('/tool'), '!EACCES');
  assert.equal(u.read('/nothing/here'), '!EACCES', '/ is n0');
  assert.equal(u.read('/local/domain/1/nothing'), '!ENOENT', 'home is readable');
  assert.equal(u.write('/local/domain/1/nothing', 'x'), '!EACCES', 'but not writable: no creating there');
  assert.equal(u.rm('/local/domain/1/nothing'), '!EACCES');
  assert.equal(u.mkdir('/local/domain/1/nothing'), '!EACCES');
  assert.equal(u.read('data/a/b'), '!ENOENT');
  assert.equal(u.rm('data/a/b'), '!ENOENT', 'its parent is missing too');
  assert.equal(u.rm('data/a'), 'OK\0');
  assert.equal(u.setPerms('data/a', ['n1']), '!ENOENT');
});

test('created nodes inherit the nearest ancestor\'s permissions; an unprivileged creator owns them', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  store.setPerms('/local/domain/1/data', [{ domid: 1, access: 'r' }, { domid: 2, access: 'b' }]);
  assert.equal(u.write('data/a/b', 'v'), 'OK\0');
  assert.deepEqual(dom0.getPerms('/local/domain/1/data/a'), ['r1', 'b2']);
  assert.deepEqual(dom0.getPerms('/local/domain/1/data/a/b'), ['r1', 'b2']);
  const d2 = new FakeClient(store, 2);
  assert.equal(d2.write('/local/domain/1/data/c', 'by2'), 'OK\0');
  assert.deepEqual(dom0.getPerms('/local/domain/1/data/c'), ['r2', 'b2'], 'owner replaced, access bits kept');
  dom0.write('/local/domain/1/data/by0', '');
  assert.deepEqual(dom0.getPerms('/local/domain/1/data/by0'), ['r1', 'b2'], 'domain 0 keeps the inherited owner');
  assert.equal(u.rm('data'), 'OK\0', 'RM needs write on the node only, not on what is below');
});

test('SET_TARGET: a domain acts as the owner of its target\'s nodes and inherits the entries naming the target', () => {
  const { store, dom0 } = setup();
  addDomain(store, 2);
  const stub = addDomain(store, 3);
  assert.equal(stub.read('/local/domain/2/data'), '!EACCES');
  assert.equal(stub.req(XS.SET_TARGET, ['3', '2']), '!EACCES', 'domain 0 only');
  assert.equal(dom0.req(XS.SET_TARGET, ['3']), '!EINVAL');
  assert.equal(dom0.req(XS.SET_TARGET, ['3', '9']), '!ENOENT', 'both must be introduced');
  assert.equal(dom0.req(XS.SET_TARGET, ['3', '2']), 'OK\0');
  assert.equal(stub.write('/local/domain/2/data/x', 'from 3'), 'OK\0', 'owner rights on nodes 2 owns');
  assert.deepEqual(dom0.getPerms('/local/domain/2/data/x'), ['n3'], 'what it creates is its own');
  assert.equal(stub.read('/local/domain/2'), '', 'r2 on the home applies to it');
  assert.equal(stub.write('/local/domain/2', 'no'), '!EACCES', 'but only as r');
  assert.equal(stub.setPerms('/local/domain/2/data', ['b2']), 'OK\0');
  assert.equal(stub.setPerms('/local/domain/2/data', ['b3']), '!EPERM', 'still unprivileged: owner stays');
});

test('watches: a registration event, then one for every change at or below the path; relative watches get relative paths', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  assert.equal(u.watch('data', 'rel'), 'OK\0');
  assert.equal(dom0.watch('/local/domain/1/data', 'abs'), 'OK\0');
  assert.deepEqual(u.takeEvents(), [['data', 'rel']]);
  assert.deepEqual(dom0.takeEvents(), [['/local/domain/1/data', 'abs']]);
  u.write('data/a/b', '1');
  assert.deepEqual(u.takeEvents(), [['data/a/b', 'rel']], 'one event for the written node, none for the parents it created');
  assert.deepEqual(dom0.takeEvents(), [['/local/domain/1/data/a/b', 'abs']]);
  dom0.write('/local/domain/1', 'above');
  assert.deepEqual(u.takeEvents(), [], 'a change above the watch is not below it');
  dom0.mkdir('/local/domain/1/data/a');
  assert.deepEqual(u.takeEvents(), [], 'MKDIR of an existing node changes nothing');
  dom0.setPerms('/local/domain/1/data/a', ['n1']);
  assert.deepEqual(u.takeEvents(), [['data/a', 'rel']], 'permission changes fire');
  assert.equal(u.watch('data', 'rel'), '!EEXIST');
  assert.equal(u.watch('/local/domain/1/data', 'rel'), '!EEXIST', 'the same watch, written absolutely');
  assert.equal(u.watch('data', 'other'), 'OK\0', 'another token is another watch');
  u.takeEvents();
  u.write('data/x', '');
  assert.deepEqual(u.takeEvents(), [['data/x', 'rel'], ['data/x', 'other']], 'in the order they were set');
  assert.equal(u.unwatch('/local/domain/1/data', 'rel'), 'OK\0', 'UNWATCH takes either form');
  assert.equal(u.unwatch('data', 'rel'), '!ENOENT');
  u.write('data/y', '');
  assert.deepEqual(u.takeEvents(), [['data/y', 'other']]);
  assert.equal(u.req(XS.RESET_WATCHES, []), 'OK\0');
  u.write('data/z', '');
  assert.deepEqual(u.takeEvents(), []);
});

test('watch requests: exactly two strings, a valid path or an @ name up to XENSTORE_REL_PATH_MAX', () => {
  const { dom0 } = setup();
  assert.equal(dom0.req(XS.WATCH, ['/a']), '!EINVAL');
  assert.equal(dom0.req(XS.WATCH, ['/a', 't', '']), '!EINVAL');
  assert.equal(dom0.req(XS.UNWATCH, ['/a']), '!EINVAL');
  assert.equal(dom0.watch('/a/', 't'), '!EINVAL');
  assert.equal(dom0.watch(`@${'x'.repeat(2047)}`, 't'), 'OK\0', 'any @ name may be watched');
  assert.equal(dom0.watch(`@${'x'.repeat(2048)}`, 't'), '!EINVAL');
  assert.equal(dom0.watch('/never/created', 't'), 'OK\0', 'a missing path may be watched');
  dom0.takeEvents();
  assert.equal(dom0.call(XS.WATCH, bytes('/a\0t\0'), 99).type, XS.WATCH, 'the transaction id of WATCH is ignored');
  assert.equal(dom0.call(XS.UNWATCH, bytes('/a\0t\0'), 99).type, XS.UNWATCH);
});

test('RM fires the watches on each removed node (children first, exactly) and on the removed node and above', () => {
  const { dom0 } = setup();
  dom0.write('/r/a/b', '');
  dom0.write('/r/a/c', '');
  dom0.write('/r/d', '');
  for (const [path, token] of [['/r', 'r'], ['/r/a/b', 'b'], ['/r/a/b/x', 'below-b'], ['/r/a', 'a'], ['/r/d', 'd']] as const) dom0.watch(path, token);
  dom0.takeEvents();
  dom0.rm('/r/a');
  assert.deepEqual(dom0.takeEvents(), [['/r/a/b', 'b'], ['/r/a', 'r'], ['/r/a', 'a']]);
});

test('a domain hears of changes to nodes it may read, or whose parent it may read, or that it could read before', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  u.watch('/', 'all');
  u.takeEvents();
  dom0.write('/tool/secret', 'x');
  assert.deepEqual(u.takeEvents(), [], 'neither /tool/secret nor /tool is readable');
  dom0.write('/local/domain/1/name', 'guest');
  assert.deepEqual(u.takeEvents(), [['/local/domain/1/name', 'all']]);
  store.write('/pub', '');
  store.setPerms('/pub', [{ domid: 0, access: 'r' }]);
  u.takeEvents();
  dom0.setPerms('/pub', ['n0']);
  assert.deepEqual(u.takeEvents(), [['/pub', 'all']], 'it could read /pub before the change');
  dom0.write('/pub', 'x');
  assert.deepEqual(u.takeEvents(), [], 'and not after');
  dom0.write('/pub/child', 'x');
  assert.deepEqual(u.takeEvents(), [], 'a child inherits n0, its parent is n0');
  store.setPerms('/local/domain/1/data', [{ domid: 0, access: 'n' }]);
  u.takeEvents();
  dom0.write('/local/domain/1/data/hidden', 'x');
  assert.deepEqual(u.takeEvents(), [], 'node and parent unreadable');
  dom0.write('/local/domain/1/visible', 'x');
  store.setPerms('/local/domain/1/visible', [{ domid: 0, access: 'n' }]);
  u.takeEvents();
  dom0.write('/local/domain/1/visible', 'y');
  assert.deepEqual(u.takeEvents(), [['/local/domain/1/visible', 'all']], 'its parent is readable');
});

test('@introduceDomain and @releaseDomain: for domain 0, and for others once domain 0 grants read on them', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  dom0.watch('@introduceDomain', 'in');
  dom0.watch('@releaseDomain', 'out');
  dom0.watch('/', 'root');
  u.watch('@introduceDomain', 'in');
  assert.deepEqual(u.takeEvents(), [['@introduceDomain', 'in']], 'the registration event always comes');
  dom0.takeEvents();
  store.introduce(5);
  assert.deepEqual(dom0.takeEvents(), [['@introduceDomain', 'in'], ['@introduceDomain', 'root']], 'a watch on / matches every event');
  assert.deepEqual(u.takeEvents(), []);
  assert.equal(u.setPerms('@introduceDomain', ['r1']), '!EACCES');
  assert.equal(dom0.setPerms('@nonsense', ['n0']), '!EINVAL');
  assert.equal(dom0.setPerms('@introduceDomain', ['n0', 'r1']), 'OK\0');
  assert.deepEqual(store.getPerms('@introduceDomain'), [{ domid: 0, access: 'n' }, { domid: 1, access: 'r' }]);
  store.introduce(5);
  assert.deepEqual(dom0.takeEvents(), [], 'introducing an introduced domain again announces nothing');
  store.introduce(6);
  assert.deepEqual(u.takeEvents(), [['@introduceDomain', 'in']]);
  dom0.takeEvents();
  store.domainShutDown(6);
  assert.deepEqual(dom0.takeEvents(), [['@releaseDomain', 'out'], ['@releaseDomain', 'root']]);
  store.domainShutDown(6);
  assert.deepEqual(dom0.takeEvents(), [], 'once per shutdown');
  assert.equal(dom0.req(XS.RESUME, ['6']), 'OK\0');
  store.domainShutDown(6);
  assert.equal(dom0.takeEvents().length, 2, 'RESUME re-arms it');
  store.release(6);
  assert.deepEqual(dom0.takeEvents(), [['@releaseDomain', 'out'], ['@releaseDomain', 'root']]);
});

test('INTRODUCE, IS_DOMAIN_INTRODUCED, RELEASE, RESUME: domain 0 only, with xenstored\'s argument checks', () => {
  const calls: string[] = [];
  const store = new XenStore({
    hooks: {
      introduce: (domid, gfn, port) => {
        if (domid === 13) throw new XsError('ENOSPC');
        calls.push(`introduce ${domid} ${gfn} ${port}`);
      },
      release: (domid) => calls.push(`release ${domid}`),
    },
  });
  const dom0 = new FakeClient(store, 0);
  const u = new FakeClient(store, 9);
  for (const op of [XS.INTRODUCE, XS.RELEASE, XS.RESUME, XS.IS_DOMAIN_INTRODUCED, XS.SET_TARGET, XS.CONTROL]) {
    assert.equal(u.req(op, ['1', '2', '3']), '!EACCES', `op ${op}`);
  }
  assert.equal(dom0.req(XS.IS_DOMAIN_INTRODUCED, ['4']), 'F\0');
  assert.equal(dom0.req(XS.IS_DOMAIN_INTRODUCED, ['0']), 'T\0');
  assert.equal(dom0.req(XS.IS_DOMAIN_INTRODUCED, [String(DOMID.SELF)]), 'T\0');
  assert.equal(dom0.req(XS.IS_DOMAIN_INTRODUCED, []), '!EINVAL');
  assert.equal(dom0.req(XS.INTRODUCE, ['4', '1234']), '!EINVAL');
  assert.equal(dom0.req(XS.INTRODUCE, ['4', '1234', '0']), '!EINVAL', 'port 0');
  assert.equal(dom0.req(XS.INTRODUCE, [String(DOMID.FIRST_RESERVED), '1', '2']), '!EINVAL');
  assert.equal(dom0.req(XS.INTRODUCE, ['13', '1', '2']), '!ENOSPC', 'the hook refused');
  assert.equal(store.isIntroduced(13), false);
  assert.equal(dom0.req(XS.INTRODUCE, ['4', '18446744073709551615', '7', 'extra']), 'OK\0');
  assert.equal(dom0.req(XS.INTRODUCE, ['5', '-1', '8']), 'OK\0');
  assert.deepEqual(calls, ['introduce 4 18446744073709551615 7', 'introduce 5 18446744073709551615 8']);
  assert.equal(dom0.req(XS.IS_DOMAIN_INTRODUCED, ['4']), 'T\0');
  assert.equal(store.isIntroduced(4), true);
  assert.equal(dom0.req(XS.RELEASE, ['0']), '!EINVAL');
  assert.equal(dom0.req(XS.RELEASE, ['8']), '!ENOENT');
  assert.equal(dom0.req(XS.RELEASE, []), '!EINVAL');
  assert.equal(dom0.req(XS.RESUME, ['0']), '!EINVAL');
  assert.equal(dom0.req(XS.RESUME, ['8']), '!ENOENT');
  assert.equal(dom0.req(XS.RELEASE, ['4']), 'OK\0');
  assert.equal(calls.at(-1), 'release 4');
  assert.equal(store.isIntroduced(4), false);
  assert.equal(dom0.req(XS.CONTROL, ['help']), '!EINVAL', 'no control commands; xenstored\'s answer to an unknown one');
  assert.equal(dom0.req(XS.CONTROL, []), '!EINVAL');
});

test('introducing a domain again resets its connections: watches and transactions go', () => {
  const { store } = setup();
  const u = addDomain(store, 1);
  u.watch('data', 't');
  const tx = u.start();
  u.takeEvents();
  store.introduce(1);
  assert.equal(u.read('data', tx), '!ENOENT', 'the transaction is gone');
  u.write('data/x', '');
  assert.deepEqual(u.takeEvents(), []);
});

test('RELEASE drops the domain\'s watches and transactions, deletes the nodes it owns, and forgets it in the special permissions', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  u.write('data/x', '1');
  u.watch('data', 'mine');
  const tx = u.start();
  dom0.watch('/local/domain/1', 'home');
  store.setPerms('@releaseDomain', [{ domid: 1, access: 'n' }, { domid: 2, access: 'r' }, { domid: 1, access: 'r' }]);
  store.write('/other/by1', '');
  store.setPerms('/other/by1', [{ domid: 1, access: 'n' }]);
  store.write('/other/by1/deeper', '');
  store.setPerms('/other/by1/deeper', [{ domid: 0, access: 'n' }]);
  u.takeEvents();
  dom0.takeEvents();
  assert.equal(dom0.req(XS.RELEASE, ['1']), 'OK\0');
  assert.deepEqual(u.takeEvents(), [], 'its own watches went first');
  assert.deepEqual(
    dom0.takeEvents(),
    [['/local/domain/1/data', 'home'], ['/local/domain/1/device', 'home'], ['/local/domain/1/control', 'home']],
    'as RM: data/x fires only watches on exactly its path',
  );
  assert.deepEqual(store.directory('/local/domain/1'), [], 'its nodes are gone; the home is domain 0\'s');
  assert.equal(store.exists('/other/by1'), false, 'with everything below them');
  assert.deepEqual(store.getPerms('@releaseDomain'), [{ domid: 0, access: 'n' }, { domid: 2, access: 'r' }]);
  assert.equal(u.read('/local/domain/1', tx), '!ENOENT', 'its transaction is gone');
  assert.equal(u.write('/local/domain/1/data/x', 'y'), '!EACCES', 'the home stays; writing there needs domain 0 again');
});

test('quota: nodes a domain owns (ENOSPC before anything is created); domain 0 is exempt', () => {
  const { store, dom0 } = setup({ nodesPerDomain: 5 });
  const u = addDomain(store, 1); // owns data, device, control
  assert.equal(u.write('data/a', ''), 'OK\0');
  assert.equal(u.mkdir('data/x/y'), '!ENOSPC', 'two more would be six');
  assert.equal(store.exists('/local/domain/1/data/x'), false);
  assert.equal(u.write('data/b', ''), 'OK\0');
  assert.equal(u.write('data/c', ''), '!ENOSPC');
  assert.equal(u.write('data/a', 'rewriting is fine'), 'OK\0');
  assert.equal(dom0.write('/local/domain/1/data/by0', ''), 'OK\0', 'domain 0 creates it (owned by 1, inherited) anyway');
  assert.equal(u.rm('data/by0'), 'OK\0');
  assert.equal(u.rm('data/b'), 'OK\0');
  assert.equal(u.write('data/c', ''), 'OK\0', 'room again');
  for (let i = 0; i < 20; i++) assert.equal(dom0.write(`/mine/${i}`, ''), 'OK\0');
});

test('quota: entry size, 24 bytes + 8 per permission + value + child names, below 2048 for unprivileged writers', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  assert.equal(u.write('data/v', 'x'.repeat(2015)), 'OK\0', '24 + 8 + 2015 = 2047');
  assert.equal(u.write('data/v', 'x'.repeat(2016)), '!ENOSPC');
  assert.equal(u.write('data/w', 'x'.repeat(2016)), '!ENOSPC', 'new nodes too');
  assert.equal(store.exists('/local/domain/1/data/w'), false);
  assert.equal(dom0.write('/local/domain/1/data/v', 'x'.repeat(3000)), 'OK\0', 'domain 0 is exempt');
  assert.equal(u.setPerms('data/v', ['n1', 'r2']), '!ENOSPC', 'permissions count too');
  const small = setup({ entrySize: 100 });
  const s = addDomain(small.store, 1);
  for (let i = 0; i < 16; i++) assert.equal(s.write(`data/n${String(i).padStart(2, '0')}`, ''), 'OK\0');
  assert.equal(s.write('data/n16', ''), '!ENOSPC', 'the parent\'s child list: 24 + 8 + 17 * 4 = 100');
  assert.equal(small.dom0.write('/local/domain/1/data/n16', ''), 'OK\0');
});

test('quota: watches per domain (xenstored lets the count reach one more); domain 0 is exempt', () => {
  const { store, dom0 } = setup({ watchesPerDomain: 2 });
  const u = addDomain(store, 1);
  const u2 = new FakeClient(store, 1);
  assert.equal(u.watch('data', '1'), 'OK\0');
  assert.equal(u2.watch('data', '2'), 'OK\0', 'counted per domain across its connections');
  assert.equal(u.watch('data', '3'), 'OK\0');
  assert.equal(u2.watch('data', '4'), '!E2BIG');
  assert.equal(u.unwatch('data', '1'), 'OK\0');
  assert.equal(u2.watch('data', '4'), 'OK\0');
  for (let i = 0; i < 10; i++) assert.equal(dom0.watch('/', String(i)), 'OK\0');
});

test('quota: open transactions per connection (one more than the quota, as xenstored); domain 0 is exempt', () => {
  const { store, dom0 } = setup({ transactionsPerDomain: 2 });
  const u = addDomain(store, 1);
  const ids = [u.start(), u.start(), u.start()];
  assert.deepEqual(ids, [1, 2, 3], 'ids count up from 1');
  assert.equal(u.req(XS.TRANSACTION_START, ['']), '!ENOSPC');
  assert.equal(new FakeClient(store, 1).start(), 1, 'another connection has its own');
  assert.equal(u.end(ids[1]!, false), 'OK\0');
  assert.equal(u.start(), 4);
  for (let i = 0; i < 10; i++) dom0.start();
});

test('quota: permissions per node in SET_PERMS; domain 0 is exempt', () => {
  const { store, dom0 } = setup();
  const u = addDomain(store, 1);
  u.write('data/p', '');
  assert.equal(u.setPerms('data/p', ['n1', 'r2', 'r3', 'r4', 'r5']), 'OK\0');
  assert.equal(u.setPerms('data/p', ['n1', 'r2', 'r3', 'r4', 'r5', 'r6']), '!ENOSPC');
  assert.equal(u.setPerms('data/p', ['n1', 'r2', 'r3', 'r4', 'r5', 'x']), '!ENOSPC', 'counted before they are parsed');
  assert.equal(dom0.setPerms('/local/domain/1/data/p', ['n1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7']), 'OK\0');
});

test('quota: nodes one transaction touches; beyond, ENOSPC and the transaction cannot commit', () => {
  const { store, dom0 } = setup({ nodesPerTransaction: 3 });
  const u = addDomain(store, 1);
  for (const n of ['a', 'b', 'c', 'd']) u.write(`data/${n}`, n);
  const tx = u.start();
  assert.equal(u.read('data/a', tx), 'a');
  assert.equal(u.read('data/b', tx), 'b');
  assert.equal(u.read('data/a', tx), 'a', 'the same node again is no new one');
  assert.equal(u.read('data/c', tx), 'c');
  assert.equal(u.read('data/d', tx), '!ENOSPC');
  assert.equal(u.end(tx, true), '!ENOMEM', 'xenstored\'s answer for a failed transaction');
  const tx2 = u.start();
  for (const n of ['a', 'b', 'c']) u.read(`data/${n}`, tx2);
  u.read('data/d', tx2);
  assert.equal(u.end(tx2, false), 'OK\0', 'aborting is fine');
  const t0 = dom0.start();
  for (const n of ['a', 'b', 'c', 'd']) assert.equal(dom0.read(`/local/domain/1/data/${n}`, t0), n);
  assert.equal(dom0.end(t0, true), 'OK\0');
});

test('malformed requests: each gets exactly one reply with xenstored\'s error', () => {
  const { dom0 } = setup();
  dom0.write('/a', 'v');
  for (const type of [XS.WATCH_EVENT, XS.ERROR, 20, XS.TYPE_COUNT, 0xffff, 0x7fffffff, 0xffffffff]) {
    assert.equal(text(dom0.call(type, bytes('/a\0'))), '!ENOSYS', `type ${type}`);
  }
  for (const [type, payload] of [
    [XS.READ, '/a'], [XS.READ, ''], [XS.READ, '/a\0\0'], [XS.READ, '/a\0x'], [XS.WRITE, '/a'], [XS.WRITE, ''],
    [XS.MKDIR, '/b'], [XS.RM, '/a'], [XS.DIRECTORY, '/a'], [XS.GET_PERMS, '/a'], [XS.SET_PERMS, '/a\0'],
    [XS.SET_PERMS, '/a'], [XS.TRANSACTION_END, 'T'], [XS.TRANSACTION_END, 'X\0'], [XS.TRANSACTION_END, 'TT\0'],
    [XS.GET_DOMAIN_PATH, '1'], [XS.RELEASE, '1'], [XS.INTRODUCE, '1\x002\x00'], [XS.DIRECTORY_PART, '/a\0'],
  ] as const) {
    assert.equal(text(dom0.call(type, bytes(payload))), '!EINVAL', `${type} ${JSON.stringify(payload)}`);
  }
  assert.equal(text(dom0.call(XS.WRITE, bytes('/a\0'))), 'OK\0', 'WRITE of an empty value');
  assert.equal(dom0.read('/a'), '');
  assert.equal(dom0.read('/a', 77), '!ENOENT', 'an unknown transaction id');
  assert.equal(dom0.req(XS.TRANSACTION_END, ['T']), '!ENOENT', 'no transaction');
  const tx = dom0.start();
  assert.equal(dom0.req(XS.TRANSACTION_START, [''], tx), '!EBUSY', 'no nesting');
  assert.equal(dom0.req(XS.TRANSACTION_START, [''], tx + 1), '!ENOENT');
  assert.equal(dom0.req(XS.GET_DOMAIN_PATH, ['3'], tx + 1), '!ENOENT', 'every request but WATCH and UNWATCH checks the id');
  assert.equal(text(dom0.call(XS.WRITE, new Uint8Array(8000).fill(0x41))), '!EINVAL', 'an oversized payload from a broken transport');
});

test('random garbage from domain 0 and a guest never escapes the engine: one reply each, and the store still saves and restores', () => {
  const { store } = setup();
  const clients = [new FakeClient(store, 0), addDomain(store, 1)];
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const alphabet = [0, 0, 0, 0x2f, 0x2f, 0x61, 0x62, 0x40, 0x54, 0x46, 0x30, 0x31, 0x2d, 0x78, 0xff, 0x20];
  const prefixes = ['', '/', '/a', 'data/', '@', '/local/domain/1/'];
  for (let i = 0; i < 4000; i++) {
    const c = clients[rand(2)]!;
    const prefix = bytes(prefixes[rand(prefixes.length)]!);
    const tail = Uint8Array.from({ length: rand(24) }, () => alphabet[rand(alphabet.length)]!);
    const payload = new Uint8Array([...prefix, ...tail]);
    const txId = [0, 0, 1, 2, rand(0x100000000)][rand(5)]!;
    const reply = c.call(rand(26), payload, txId);
    if (reply.type === XS.ERROR) assert.ok((XSD_ERRORS as readonly string[]).includes(text(reply).slice(1)));
    c.takeEvents();
  }
  const copy = XenStore.restore(JSON.parse(JSON.stringify(store.serialize())));
  assert.deepEqual(copy.serialize(), store.serialize());
});

test('the VMM API: domain 0 without a connection; errors as XsError; its watches fire on registration and changes', () => {
  const { store } = setup();
  const u = addDomain(store, 1);
  throwsXs(() => store.read('/nope'), 'ENOENT');
  throwsXs(() => store.read('/bad/'), 'EINVAL');
  throwsXs(() => store.exists('bad path'), 'EINVAL');
  throwsXs(() => store.rm('/'), 'EINVAL');
  throwsXs(() => store.rm('/x/y'), 'ENOENT');
  throwsXs(() => store.setPerms('/tool', []), 'EINVAL');
  throwsXs(() => store.setPerms('/tool', [{ domid: -1, access: 'r' }]), 'EINVAL');
  throwsXs(() => store.setPerms('/tool', [{ domid: 1, access: 'x' as 'r' }]), 'EINVAL');
  throwsXs(() => store.setPerms('@other', [{ domid: 0, access: 'n' }]), 'EINVAL');
  throwsXs(() => store.introduce(DOMID.FIRST_RESERVED), 'EINVAL');
  throwsXs(() => store.release(0), 'EINVAL');
  throwsXs(() => store.release(9), 'ENOENT');
  throwsXs(() => store.connect(-1, () => {}), 'EINVAL');
  const perms = store.getPerms('/tool');
  perms[0]!.access = 'b';
  assert.deepEqual(store.getPerms('/tool'), [{ domid: 0, access: 'n' }], 'getPerms hands out copies');
  const seen: string[] = [];
  const stop = store.watch('/local/domain/1/data', 'vmm', (path, token) => seen.push(`${path} ${token}`));
  const stopRelative = store.watch('rel', 'r', (path, token) => seen.push(`${path} ${token}`));
  throwsXs(() => store.watch('/local/domain/1/data', 'vmm', () => {}), 'EEXIST');
  assert.deepEqual(seen, ['/local/domain/1/data vmm', 'rel r'], 'on registration, synchronously');
  u.write('data/x', '1');
  store.write('/local/domain/0/rel/y', '');
  assert.deepEqual(seen.slice(2), ['/local/domain/1/data/x vmm', 'rel/y r']);
  stop();
  stopRelative();
  stop();
  u.write('data/x', '2');
  assert.equal(seen.length, 4);
});

test('a VMM watch callback may write: the events it causes follow the ones already queued', () => {
  const { store, dom0 } = setup();
  dom0.watch('/a', 'a');
  dom0.watch('/b', 'b');
  dom0.takeEvents();
  store.watch('/a', 'vmm', (path) => {
    if (path === '/a/x') store.write('/b/y', 'echo');
  });
  dom0.write('/a/x', '');
  assert.deepEqual(dom0.takeEvents(), [['/a/x', 'a'], ['/b/y', 'b']]);
});

test('a watch event longer than a payload is dropped', () => {
  const { dom0 } = setup();
  const token = 't'.repeat(XENSTORE_PAYLOAD_MAX - 4);
  dom0.watch('/a', token);
  assert.deepEqual(dom0.takeEvents(), [['/a', token]], '/a|token| is exactly 4096 bytes');
  dom0.write('/a/b', '');
  assert.deepEqual(dom0.takeEvents(), []);
});

test('disconnect drops a connection\'s watches and transactions; handle refuses it afterwards', () => {
  const { store, dom0 } = setup({ watchesPerDomain: 0 });
  const u = addDomain(store, 1);
  u.watch('data', 'w');
  const tx = u.start();
  assert.equal(tx, 1);
  u.takeEvents();
  store.disconnect(u.conn);
  store.disconnect(u.conn);
  const again = new FakeClient(store, 1);
  assert.equal(again.watch('data', 'w'), 'OK\0', 'the domain\'s watch count went back to 0');
  assert.throws(() => u.read('data'), /not connected/);
  dom0.write('/local/domain/1/data/x', '');
  assert.deepEqual(u.takeEvents(), [], 'nothing more for it');
});

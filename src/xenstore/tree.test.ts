import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeNode, type Node, NodeTree } from './tree.js';

function put(t: NodeTree, path: string, v: string): Node {
  const node = makeNode(t.nextGeneration(), Uint8Array.from(v, (c) => c.charCodeAt(0)), [{ domid: 0, access: 'n' }], []);
  t.set(path, node);
  return node;
}
const value = (n: Node | undefined) => (n === undefined ? undefined : String.fromCharCode(...n.value));

test('a snapshot sees the tree as it was: changes, deletions and creations after it are invisible', () => {
  const t = new NodeTree();
  put(t, '/a', '1');
  put(t, '/gone', 'x');
  const s = t.openSnapshot();
  put(t, '/a', '2');
  put(t, '/a', '3');
  t.delete('/gone');
  put(t, '/new', 'n');
  assert.equal(value(t.at('/a', s)), '1');
  assert.equal(value(t.at('/gone', s)), 'x');
  assert.equal(t.at('/new', s), undefined);
  assert.equal(value(t.get('/a')), '3');
  assert.equal(t.get('/gone'), undefined);
  const s2 = t.openSnapshot();
  put(t, '/a', '4');
  assert.equal(value(t.at('/a', s)), '1');
  assert.equal(value(t.at('/a', s2)), '3');
  assert.equal(value(t.at('/new', s2)), 'n');
});

test('history keeps one version per open snapshot and goes with the last one', () => {
  const t = new NodeTree();
  put(t, '/a', '0');
  const s = t.openSnapshot();
  for (let i = 1; i <= 100; i++) put(t, '/a', String(i));
  const past = [...t.pastVersions()];
  assert.equal(past.length, 1);
  assert.equal(past[0]![1].length, 1, 'versions no snapshot sees are dropped');
  assert.equal(value(t.at('/a', s)), '0');
  t.closeSnapshot(s);
  assert.equal([...t.pastVersions()].length, 0);
  put(t, '/a', 'x');
  assert.equal([...t.pastVersions()].length, 0, 'no transaction open: no history at all');
});

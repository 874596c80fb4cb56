import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalize, isValidNodePath, parentOf, watchPathsMatching } from './paths.js';

test('node path shape: absolute, [A-Za-z0-9-/_@], no empty component, no trailing slash but the root', () => {
  for (const ok of ['/', '/a', '/a/b-c_d@e/0', '/local/domain/1/device']) assert.ok(isValidNodePath(ok, 2048), ok);
  for (const bad of ['', 'a', '/a/', '//', '/a//b', '/a b', '/a.b', '/a\0', '/\u00e9', '@introduceDomain', '/a/./b']) {
    assert.ok(!isValidNodePath(bad, 2048), JSON.stringify(bad));
  }
});

test('path length: at most the quota after a /local/domain/<domid>/ prefix of up to 5 characters', () => {
  const tail = (n: number) => 'x'.repeat(n);
  assert.ok(isValidNodePath(`/${tail(2047)}`, 2048));
  assert.ok(!isValidNodePath(`/${tail(2048)}`, 2048));
  assert.ok(isValidNodePath(`/local/domain/12345/${tail(2048)}`, 2048));
  assert.ok(!isValidNodePath(`/local/domain/12345/${tail(2049)}`, 2048));
  assert.ok(!isValidNodePath(`/local/domain/123456/${tail(2048)}`, 2048), 'six digits: no prefix, the whole path counts');
  assert.ok(isValidNodePath(`/local/domain/-1/${tail(2048)}`, 2048), 'sscanf %u takes a sign');
  assert.ok(isValidNodePath(`/local/domain/7/${tail(10)}`, 10));
});

test('relative paths resolve against the domain path; absolute and @ names stay', () => {
  assert.equal(canonicalize(3, 'x/y'), '/local/domain/3/x/y');
  assert.equal(canonicalize(3, '/x'), '/x');
  assert.equal(canonicalize(3, '@releaseDomain'), '@releaseDomain');
  assert.equal(canonicalize(3, ''), '/local/domain/3/', 'and then fails validation');
});

test('parents, and the watch paths an event matches', () => {
  assert.equal(parentOf('/a/b'), '/a');
  assert.equal(parentOf('/a'), '/');
  assert.equal(parentOf('/'), '/');
  assert.deepEqual(watchPathsMatching('/a/b'), ['/a/b', '/a', '/']);
  assert.deepEqual(watchPathsMatching('/'), ['/']);
  assert.deepEqual(watchPathsMatching('@introduceDomain'), ['@introduceDomain', '/'], 'xenstored matches a watch on / with every event');
});

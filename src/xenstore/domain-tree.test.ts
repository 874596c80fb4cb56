// The toolstack's nodes for a domain, read back from a real store: the ones that depend on how it was configured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeDomainTree, type DomainInfo } from './domain-tree.js';
import { XenStore } from './store.js';

const INFO: DomainInfo = {
  domid: 1, name: 'guest', uuid: '00000000-0000-0000-0000-000000000001', memoryKiB: 524288, targetKiB: 393216, type: 'hvm', vcpus: 2,
  store: { gfn: 0xfeffc, port: 1 }, console: { gfn: 0xfefff, port: 2 }, startTime: 1_700_000_000.25,
};

test('memory/static-max is the RAM and memory/target the balloon target; libxl names the type; a node per vCPU', () => {
  const store = new XenStore();
  writeDomainTree(store, INFO);
  assert.equal(store.read('/local/domain/1/memory/static-max'), '524288');
  assert.equal(store.read('/local/domain/1/memory/target'), '393216');
  assert.equal(store.read('/libxl/1/type'), 'hvm');
  assert.deepEqual([0, 1].map((v) => store.read(`/local/domain/1/cpu/${v}/availability`)), ['online', 'online']);
  const pvh = new XenStore();
  writeDomainTree(pvh, { ...INFO, type: 'pvh' });
  assert.equal(pvh.read('/libxl/1/type'), 'pvh');
});

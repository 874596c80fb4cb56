import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import { RateLimitedLog } from '../common/log.js';
import { XS } from '../xen/abi/xenstore.js';
import { XenbusState } from '../xen/abi/xenbus.js';
import { xenconsInterface } from '../xen/abi/console.js';
import { EVTCHNOP } from '../xen/abi/event-channel.js';
import { evtchnTestDomain } from '../xen/evtchn/fake-domain.js';
import { FakeClient } from '../xenstore/fake-client.js';
import { XenStore } from '../xenstore/store.js';
import { SecondaryConsole } from './console.js';
import { DeviceError, XenbusDevice, type DeviceHooks } from './xenbus.js';

const GUEST = 1;
const FRONT = '/local/domain/1/device/console/1';
const BACK = '/local/domain/0/backend/console/1/1';

function setup(hooks: DeviceHooks) {
  const store = new XenStore();
  store.write('/local/domain/1', '');
  store.setPerms('/local/domain/1', [{ domid: 0, access: 'n' }, { domid: GUEST, access: 'r' }]);
  store.introduce(GUEST);
  const log = capturedLogger();
  let removed = 0;
  const device = new XenbusDevice(store, { type: 'console', devid: 1, frontDomid: GUEST, backendNodes: { protocol: 'vt100' }, frontendNodes: { type: 'xenconsoled' } }, hooks, new RateLimitedLog(log.logger), () => removed++);
  device.plug();
  const guest = new FakeClient(store, GUEST);
  const setFront = (state: number) => assert.equal(guest.write(`${FRONT}/state`, String(state)), 'OK\0');
  return { store, device, guest, setFront, log, removed: () => removed };
}

const recording = () => {
  const calls: string[] = [];
  return { calls, hooks: { connect: () => void calls.push('connect'), disconnect: () => void calls.push('disconnect') } satisfies DeviceHooks };
};

test('plug: both directories with their cross-references and permissions, and the backend waiting', () => {
  const r = recording();
  const s = setup(r.hooks);
  assert.equal(s.store.read(`${FRONT}/backend`), BACK);
  assert.equal(s.store.read(`${FRONT}/backend-id`), '0');
  assert.equal(s.store.read(`${FRONT}/type`), 'xenconsoled');
  assert.equal(s.store.read(`${BACK}/frontend`), FRONT);
  assert.equal(s.store.read(`${BACK}/frontend-id`), '1');
  assert.equal(s.store.read(`${BACK}/online`), '1');
  assert.equal(s.store.read(`${BACK}/protocol`), 'vt100');
  assert.equal(s.device.state, XenbusState.InitWait);
  assert.equal(s.device.frontendState(), XenbusState.Initialising);
  assert.deepEqual(s.store.getPerms(FRONT), [{ domid: GUEST, access: 'n' }, { domid: 0, access: 'r' }]);
  assert.deepEqual(s.store.getPerms(BACK), [{ domid: 0, access: 'n' }, { domid: GUEST, access: 'r' }]);
  // The guest may write its own directory and read the backend's, not write it.
  assert.equal(s.guest.write(`${FRONT}/ring-ref`, '8'), 'OK\0');
  assert.equal(s.guest.read(`${BACK}/state`), String(XenbusState.InitWait));
  assert.equal(s.guest.write(`${BACK}/state`, '4'), '!EACCES');
  assert.deepEqual(r.calls, []);
});

test('the handshake: connect at Initialised, close with the frontend, wait again when it restarts', () => {
  const r = recording();
  const s = setup(r.hooks);
  s.setFront(XenbusState.Initialised);
  assert.equal(s.device.state, XenbusState.Connected);
  s.setFront(XenbusState.Connected);
  assert.deepEqual(r.calls, ['connect'], 'connected once');
  s.setFront(XenbusState.Closing);
  assert.equal(s.device.state, XenbusState.Closing);
  s.setFront(XenbusState.Closed);
  assert.equal(s.device.state, XenbusState.Closed);
  assert.deepEqual(r.calls, ['connect', 'disconnect']);
  s.setFront(XenbusState.Initialising);
  assert.equal(s.device.state, XenbusState.InitWait);
  s.setFront(XenbusState.Connected);
  assert.equal(s.device.state, XenbusState.Connected);
  assert.deepEqual(r.calls, ['connect', 'disconnect', 'connect']);
  assert.equal(s.store.exists(FRONT), true, 'still plugged');
});

test('a frontend that cannot be connected fails the device with its reason under error/', () => {
  const s = setup({ connect: () => { throw new DeviceError('ring-ref is missing'); }, disconnect: () => assert.fail('never connected') });
  s.setFront(XenbusState.Initialised);
  assert.equal(s.device.state, XenbusState.Closing);
  assert.equal(s.store.read('/local/domain/0/error/backend/console/1/1/error'), 'ring-ref is missing');
  assert.equal(s.log.warns().length, 1);
});

/** Hooks whose connections the test settles: each connect returns a promise, as a device with its own thread's does. */
const deferred = () => {
  const calls: string[] = [];
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const hooks: DeviceHooks = {
    connect: () => {
      calls.push('connect');
      return new Promise<void>((resolve, reject) => void pending.push({ resolve, reject }));
    },
    disconnect: () => void calls.push('disconnect'),
  };
  return { calls, pending, hooks };
};
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

test('a backend with its own thread says Connected once that thread serves the rings, however often the frontend says it is ready meanwhile', async () => {
  const d = deferred();
  const s = setup(d.hooks);
  s.setFront(XenbusState.Initialised);
  s.setFront(XenbusState.Connected);
  await settled();
  assert.equal(s.device.state, XenbusState.InitWait, 'not Connected before the thread serves');
  assert.deepEqual(d.calls, ['connect'], 'connected once');
  d.pending[0].resolve();
  await settled();
  assert.equal(s.device.state, XenbusState.Connected);
});

test('a connection the frontend closes before its thread serves never says Connected; the next one does', async () => {
  const d = deferred();
  const s = setup(d.hooks);
  s.setFront(XenbusState.Connected);
  s.setFront(XenbusState.Closing);
  s.setFront(XenbusState.Closed);
  assert.equal(s.device.state, XenbusState.Closed);
  d.pending[0].resolve();
  await settled();
  assert.equal(s.device.state, XenbusState.Closed, 'the first connection ended');
  s.setFront(XenbusState.Initialising);
  s.setFront(XenbusState.Connected);
  d.pending[1].resolve();
  await settled();
  assert.equal(s.device.state, XenbusState.Connected);
  assert.deepEqual(d.calls, ['connect', 'disconnect', 'connect']);
});

test("a device whose thread cannot serve the rings fails with the thread's reason", async () => {
  const d = deferred();
  const s = setup(d.hooks);
  s.setFront(XenbusState.Connected);
  d.pending[0].reject(new DeviceError('grant 8 was taken back'));
  await settled();
  assert.equal(s.device.state, XenbusState.Closing);
  assert.equal(s.store.read('/local/domain/0/error/backend/console/1/1/error'), 'grant 8 was taken back');
  assert.deepEqual(d.calls, ['connect', 'disconnect']);
});

test('unplug: online 0, Closing, and the device is removed once the frontend has closed', () => {
  const r = recording();
  const s = setup(r.hooks);
  s.setFront(XenbusState.Connected);
  s.device.unplug();
  assert.equal(s.store.read(`${BACK}/online`), '0');
  assert.equal(s.device.state, XenbusState.Closing);
  assert.equal(s.removed(), 0);
  s.setFront(XenbusState.Closed);
  assert.equal(s.removed(), 1);
  assert.equal(s.store.exists(FRONT), false);
  assert.equal(s.store.exists(BACK), false);
  assert.deepEqual(r.calls, ['connect', 'disconnect']);
});

test('frontend states a guest makes up, or removes, close the device rather than confuse it', () => {
  const r = recording();
  const s = setup(r.hooks);
  s.setFront(XenbusState.Connected);
  assert.equal(s.guest.write(`${FRONT}/state`, 'garbage'), 'OK\0');
  assert.equal(s.device.state, XenbusState.Closed);
  s.setFront(XenbusState.Connected);
  assert.equal(s.device.state, XenbusState.Closed, 'Closed until the frontend starts again');
  assert.equal(s.guest.req(XS.RM, [`${FRONT}/state`]), 'OK\0');
  assert.equal(s.device.state, XenbusState.Closed);
  assert.deepEqual(r.calls, ['connect', 'disconnect']);
});

test('a secondary console: the frontend grants a page and offers a port; the backend serves the ring', async (t) => {
  const d = evtchnTestDomain(t);
  const page = new Uint8Array(4096);
  const out: number[] = [];
  const log = capturedLogger();
  const granted = new Map([[17, page]]);
  const mapped = new Set<number>();
  const console = new SecondaryConsole(d.d.backends, {
    map: (domid, refs, writable) => {
      assert.equal(domid, GUEST);
      assert.equal(writable, true);
      assert.equal(refs.length, 1);
      const p = granted.get(refs[0]);
      if (!p) throw new DeviceError(`no grant ${refs[0]}`);
      mapped.add(refs[0]);
      return { page: () => p, unmap: () => mapped.delete(refs[0]) };
    },
  }, (b) => out.push(...b), new RateLimitedLog(log.logger));
  const s = setup(console);
  const port = d.op(EVTCHNOP.alloc_unbound, 0x7ff0 | (0 << 16)).word(1);
  s.guest.write(`${FRONT}/ring-ref`, '17');
  s.guest.write(`${FRONT}/port`, String(port));
  s.setFront(XenbusState.Initialised);
  assert.equal(s.device.state, XenbusState.Connected);
  // The guest writes into its output ring and notifies.
  page.set([0x6f, 0x6b], xenconsInterface.native.offsets.out);
  new DataView(page.buffer).setUint32(xenconsInterface.native.offsets.out_prod, 2, true);
  assert.equal(d.op(EVTCHNOP.send, port).rc, 0);
  await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(out, [0x6f, 0x6b]);
  assert.deepEqual([...mapped], [17]);
  s.setFront(XenbusState.Closed);
  await console.stopped();
  await new Promise((res) => setImmediate(res));
  assert.deepEqual([...mapped], [], 'the ring page is unmapped once the ring has stopped');
  assert.equal(d.op(EVTCHNOP.status, 0x7ff0, port).word(2), 1, 'the guest port is unbound again');
  // A frontend whose grant cannot be mapped fails the device.
  s.setFront(XenbusState.Initialising);
  s.guest.write(`${FRONT}/ring-ref`, '99');
  s.setFront(XenbusState.Initialised);
  assert.equal(s.store.read('/local/domain/0/error/backend/console/1/1/error'), 'no grant 99');
});

test('a frontend that fails its device again and again, with a 1900-byte ring-ref: a few short lines, its text escaped and cut', (t) => {
  const d = evtchnTestDomain(t);
  const log = capturedLogger();
  const console = new SecondaryConsole(d.d.backends, { map: () => ({ page: () => new Uint8Array(4096), unmap: () => {} }) }, () => {}, new RateLimitedLog(log.logger));
  const s = setup(console);
  const junk = `1x\x1b[2J"${'A'.repeat(1900)}`;
  for (let cycle = 0; cycle < 100; cycle++) {
    s.setFront(XenbusState.Initialising);
    s.guest.write(`${FRONT}/ring-ref`, junk);
    s.setFront(XenbusState.Initialised);
    assert.equal(s.device.state, XenbusState.Closing);
  }
  const lines = [...s.log.warns(), ...log.warns()];
  assert.ok(lines.length >= 1 && lines.length <= 10, `${lines.length} lines for 100 failures`);
  for (const l of lines) {
    const text = JSON.stringify(l);
    assert.ok(text.length < 400, `a ${text.length}-byte line`);
    assert.ok(!text.includes('\\u001b'), 'no raw escape character');
  }
  assert.match(String(lines[0].reason), /ring-ref is "1x\\x1b\[2J\\"A+" \(and 1875 more\), not a number/);
});

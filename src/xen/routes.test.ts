import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { XEN_ERRNO } from './abi/errno.js';
import { EVTCHNOP } from './abi/event-channel.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { XENMEM } from './abi/memory.js';
import { SCHEDOP } from './abi/sched.js';
import { VCPUOP } from './abi/vcpu.js';
import { XenError } from './errors.js';
import { HypercallDispatcher, type HypercallContext } from './hypercall.js';
import { HYPERCALL_ROUTES, XEN_OPS } from './route-table.js';
import { firstArgLow32, served, serveRoutes, servedWhole, subOpRoute, wholeRoute, type HypercallRoute } from './routes.js';

const ctx: HypercallContext = { vcpu: 0, abi: 'native', guest: {} as GuestVirtual };

test('the table: one route per hypercall, every op named as in Xen and found by its number', () => {
  const hypercalls = HYPERCALL_ROUTES.map((r) => r.hypercall);
  assert.deepEqual(hypercalls, [...new Set(hypercalls)].sort((a, b) => a - b));
  assert.equal(new Set(XEN_OPS.map((o) => o.name)).size, XEN_OPS.length);
  const where = (name: string) => XEN_OPS.find((o) => o.name === name);
  assert.deepEqual(where('VCPUOP_initialise'), { hypercall: HYPERCALL.vcpu_op, op: VCPUOP.initialise, name: 'VCPUOP_initialise', thread: 'main' });
  assert.deepEqual(where('EVTCHNOP_send'), { hypercall: HYPERCALL.event_channel_op, op: EVTCHNOP.send, name: 'EVTCHNOP_send', thread: 'vcpu-first' });
  assert.equal(where('EVTCHNOP_unmask')?.thread, 'vcpu');
  assert.equal(where('SCHEDOP_shutdown')?.thread, 'vcpu-first');
  assert.equal(where('XENMEM_add_to_physmap_batch')?.thread, 'main');
  assert.deepEqual(where('set_timer_op'), { hypercall: HYPERCALL.set_timer_op, op: undefined, name: 'set_timer_op', thread: 'vcpu' });
  // Every hypercall with sub-ops decodes the one its first argument names.
  for (const r of HYPERCALL_ROUTES) {
    for (const o of r.ops.values()) if (o.op !== undefined) assert.equal(r.subOp!([BigInt(o.op), 0n, 0n, 0n, 0n]), o.op, o.name);
  }
  // memory_op's continuation bits above the sub-op, and hvm_op's whole 64 bits.
  const memoryOp = HYPERCALL_ROUTES.find((r) => r.hypercall === HYPERCALL.memory_op)!;
  assert.equal(memoryOp.subOp!([(5n << 6n) | BigInt(XENMEM.memory_map)]), XENMEM.memory_map);
  const hvmOp = HYPERCALL_ROUTES.find((r) => r.hypercall === HYPERCALL.hvm_op)!;
  assert.equal(hvmOp.subOp!([1n << 32n]), undefined);
  assert.equal(hvmOp.subOp!([(1n << 64n) - 1n]), undefined);
});

/** A made-up hypercall with one op per thread, and one served whole on the main thread. */
const OPS = { here: 0, there: 1, either: 2, nowhere: 3 } as const;
const route: HypercallRoute = subOpRoute(HYPERCALL.vcpu_op, firstArgLow32, 'OP_', OPS, { here: 'vcpu', there: 'main', either: 'vcpu-first' });
const whole = wholeRoute(HYPERCALL.sched_op, 'main');

function threads() {
  const log = capturedLogger();
  const main = new HypercallDispatcher(log.logger);
  const vcpu = new HypercallDispatcher(log.logger);
  const mainCalls: bigint[][] = [];
  const forwarded: { nr: number; args: readonly bigint[] }[] = [];
  let eitherServedHere = true;
  serveRoutes(main, 'main', [route, whole], [
    served(route, { there: (_c, args) => (mainCalls.push([...args]), 20), either: () => 30 }),
    servedWhole(whole, () => 40),
  ]);
  serveRoutes(vcpu, 'vcpu', [route, whole], [
    served(route, { here: () => 10, either: () => (eitherServedHere ? 31 : undefined) }, (_c, args) => {
      if (args[1] > 1n) throw new XenError(XEN_ERRNO.ENOENT);
    }),
  ], (c, nr, args) => {
    forwarded.push({ nr, args });
    return main.dispatch(c, 0, nr, args);
  });
  const call = (nr: number, op: number, arg = 0n) => vcpu.dispatch(ctx, 0, nr, [BigInt(op), arg, 7n, 8n, 9n]);
  return { call, mainCalls, forwarded, log, decline: () => (eitherServedHere = false) };
}

test('dispatchers from the table: each op where its route says, forwarded with its arguments intact, or -ENOSYS where it stands', () => {
  const t = threads();
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.here), 10n);
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.either), 31n);
  assert.equal(t.forwarded.length, 0);
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.there, 1n), 20n);
  assert.deepEqual(t.mainCalls, [[BigInt(OPS.there), 1n, 7n, 8n, 9n]]);
  t.decline();
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.either), 30n, 'declined on the vCPU thread: served on the main thread');
  assert.equal(t.call(HYPERCALL.sched_op, SCHEDOP.yield), 40n, 'a whole hypercall routed to the main thread');
  assert.deepEqual(t.forwarded.map((f) => f.nr), [HYPERCALL.vcpu_op, HYPERCALL.vcpu_op, HYPERCALL.sched_op]);
  // Unrouted sub-ops are answered on the vCPU thread, reported once; the check comes first, as in Xen.
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.nowhere), -BigInt(XEN_ERRNO.ENOSYS));
  assert.equal(t.call(HYPERCALL.vcpu_op, 0xffff_ffff), -BigInt(XEN_ERRNO.ENOSYS));
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.nowhere, 5n), -BigInt(XEN_ERRNO.ENOENT));
  assert.equal(t.call(HYPERCALL.vcpu_op, OPS.there, 5n), -BigInt(XEN_ERRNO.ENOENT), 'checked before it is forwarded');
  assert.equal(t.forwarded.length, 3);
  // Sub-op 3 is a constant of the hypercall's (Xen has it; xenkvm does not): reported once. Xen has no 0xffffffff.
  assert.deepEqual(t.log.warns().map((l) => l.msg), ['guest called vcpu_op OP_nowhere, which xenkvm does not implement; -ENOSYS']);
  assert.deepEqual(t.log.errors(), []);
});

test('a VM whose handlers and table disagree is refused when it is built', () => {
  const d = new HypercallDispatcher(capturedLogger().logger);
  const forward = () => 0n;
  assert.throws(() => serveRoutes(d, 'vcpu', [route], [served(route, { here: () => 1 })], forward), /OP_either: no handler on the vcpu thread/);
  assert.throws(() => serveRoutes(d, 'vcpu', [route], [served(route, { here: () => 1, either: () => 2, there: () => 3 })], forward), /OP_there: a handler on the vcpu thread, which its route does not name/);
  assert.throws(() => serveRoutes(d, 'main', [route], [served(route, { there: () => 1 })]), /OP_either: no handler on the main thread/);
  assert.throws(() => serveRoutes(d, 'vcpu', [route], [served(route, { here: () => 1, either: () => 2 })]), /forwarded, and the vCPU thread was given nowhere/);
  assert.throws(() => serveRoutes(d, 'main', [], [servedWhole(whole, () => 1)]), /a route not in the table/);
});

// SCHEDOP_shutdown's reasons through a dispatcher: which end the run, and
// which the soft reset takes instead.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { SCHEDOP, SHUTDOWN } from './abi/sched.js';
import { FakeGuest } from './fake-guest.js';
import { HypercallDispatcher } from './hypercall.js';
import { DomainState } from './domain-state.js';
import { XEN_ERRNO } from './abi/errno.js';
import { XenError } from './errors.js';
import { serveRoutes } from './routes.js';
import { SCHED_OP_ROUTE, schedOps, type ShutdownKind } from './sched.js';
import { TimerState } from './timers.js';

const ARG = 0x2000n;

/** What SCHEDOP_poll sees of the domain, changed by the tests; `sleeps` records each sleep's wake-up test and options. */
interface PollWorld {
  interruptsEnabled: boolean;
  upcall: boolean;
  pending: Set<number>;
  generation: number;
  sleeps: { done: () => boolean; options: { deadline?: bigint; once?: boolean } }[];
}

const VALID_PORTS = 64;

function setup() {
  const shutdowns: ShutdownKind[] = [];
  const softResets: { vcpu: number; args: readonly bigint[] }[] = [];
  const state = DomainState.create(1);
  const dispatcher = new HypercallDispatcher(pino({ level: 'silent' }));
  const world: PollWorld = { interruptsEnabled: false, upcall: false, pending: new Set(), generation: 0, sleeps: [] };
  serveRoutes(dispatcher, 'vcpu', [SCHED_OP_ROUTE], [schedOps({
    shutdown: (kind) => void shutdowns.push(kind),
    shutdownCode: () => state.shutdownCode,
    latchShutdownCode: (c) => state.latchShutdownCode(c),
    sleep: (done, options) => void world.sleeps.push({ done, options }),
    eventsPendingWithDeliveryEnabled: () => false,
    checkPort: (p) => {
      if (p === 0 || p >= VALID_PORTS) throw new XenError(XEN_ERRNO.EINVAL);
      return p;
    },
    isPending: (p) => world.pending.has(p),
    localEventsNeedDelivery: () => world.interruptsEnabled && world.upcall,
    upcallPending: () => world.upcall,
    portsTurnedPending: () => world.generation,
    timers: TimerState.create(1),
    systemTime: () => 0n,
  })], (ctx, nr, args) => {
    // Only a soft reset goes to the main thread.
    assert.equal(nr, HYPERCALL.sched_op);
    softResets.push({ vcpu: ctx.vcpu, args });
    return 0n;
  });
  const guest = new FakeGuest(ARG, 4096);
  const ctx = { vcpu: 1, abi: 'native' as const, guest: guest as unknown as GuestVirtual };
  const call = (cmd: number, reason: number) => {
    guest.view().setUint32(0, reason, true);
    return dispatcher.dispatch(ctx, 0, HYPERCALL.sched_op, [BigInt(cmd), ARG, 0n, 0n, 0n]);
  };
  /** SCHEDOP_poll on `ports` (its sched_poll at ARG, the ports after it); `portsAt` overrides where they are. */
  const poll = (ports: number[], timeout = 0n, portsAt = ARG + 64n) => {
    const v = guest.view();
    v.setBigUint64(0, portsAt, true);
    v.setUint32(8, ports.length, true);
    v.setBigUint64(16, timeout, true);
    ports.forEach((p, i) => v.setUint32(64 + i * 4, p, true));
    return dispatcher.dispatch(ctx, 0, HYPERCALL.sched_op, [BigInt(SCHEDOP.poll), ARG, 0n, 0n, 0n]);
  };
  return { call, poll, world, shutdowns, softResets };
}

test('SCHEDOP_shutdown soft_reset goes to the soft reset, returns its result and ends nothing', () => {
  const s = setup();
  assert.equal(s.call(SCHEDOP.shutdown, SHUTDOWN.soft_reset), 0n);
  assert.deepEqual(s.softResets, [{ vcpu: 1, args: [BigInt(SCHEDOP.shutdown), ARG, 0n, 0n, 0n] }]);
  assert.deepEqual(s.shutdowns, []);
  // Xen takes the reason as a byte.
  assert.equal(s.call(SCHEDOP.shutdown, 0x100 | SHUTDOWN.soft_reset), 0n);
  assert.equal(s.softResets.length, 2);
});

test('a shutdown code of soft_reset turns a later shutdown into a soft reset, as Xen reports the code', () => {
  const s = setup();
  assert.equal(s.call(SCHEDOP.shutdown_code, SHUTDOWN.soft_reset), 0n);
  assert.equal(s.call(SCHEDOP.shutdown, SHUTDOWN.poweroff), 0n);
  assert.equal(s.softResets.length, 1);
  assert.deepEqual(s.shutdowns, []);
});

test('the first shutdown code stays: a later SCHEDOP_shutdown_code changes nothing, and the shutdown reports the first', () => {
  const s = setup();
  assert.equal(s.call(SCHEDOP.shutdown_code, SHUTDOWN.crash), 0n);
  assert.equal(s.call(SCHEDOP.shutdown_code, SHUTDOWN.poweroff), 0n);
  assert.equal(s.call(SCHEDOP.shutdown, SHUTDOWN.poweroff), 0n);
  assert.deepEqual(s.shutdowns, ['crash']);
});

test('the other reasons end the run and never reset', () => {
  const s = setup();
  for (const reason of [SHUTDOWN.poweroff, SHUTDOWN.reboot, SHUTDOWN.suspend, SHUTDOWN.crash, SHUTDOWN.watchdog, 99]) s.call(SCHEDOP.shutdown, reason);
  assert.deepEqual(s.shutdowns, ['poweroff', 'reboot', 'suspend', 'crash', 'crash', 'crash']);
  assert.deepEqual(s.softResets, []);
});

test('SCHEDOP_poll: more than 128 ports is -EINVAL; with an interrupt deliverable it returns at once, reading no port', () => {
  const s = setup();
  assert.equal(s.poll(Array(129).fill(1)), -22n);
  s.world.interruptsEnabled = true;
  s.world.upcall = true;
  assert.equal(s.poll([1], 0n, 0xdead_0000n), 0n, 'the ports are not even read');
  assert.equal(s.world.sleeps.length, 0);
  s.world.interruptsEnabled = false;
  assert.equal(s.poll([1], 0n, 0xdead_0000n), -14n, 'with interrupts off they are, and fault');
});

test('SCHEDOP_poll: ports are taken in order: a pending one ends the call before a later invalid one, an invalid one before a later pending one', () => {
  const s = setup();
  s.world.pending.add(5);
  assert.equal(s.poll([5, 9999]), 0n);
  assert.equal(s.poll([9999, 5]), -22n);
  assert.equal(s.poll([3, 0]), -22n, 'port 0');
  assert.equal(s.world.sleeps.length, 0, 'no sleep for any of these');
});

test('SCHEDOP_poll on one port: woken by that port or an upcall turning pending, not by another port; the timeout is the deadline', () => {
  const s = setup();
  assert.equal(s.poll([7], 123_456n), 0n);
  const [{ done, options }] = s.world.sleeps;
  assert.deepEqual(options, { deadline: 123_456n });
  s.world.pending.add(8);
  s.world.generation++;
  assert.equal(done(), false, 'another port');
  s.world.upcall = true;
  assert.equal(done(), true, 'an upcall (vcpu_kick)');
  s.world.upcall = false;
  s.world.pending.add(7);
  assert.equal(done(), true, 'its port');
});

test('SCHEDOP_poll on none or several ports: any port of the domain turning pending wakes it; an upcall already pending does not', () => {
  for (const ports of [[], [7, 9]]) {
    const s = setup();
    s.world.upcall = true; // pending already, interrupts off: no kick to come
    assert.equal(s.poll(ports), 0n);
    const [{ done, options }] = s.world.sleeps;
    assert.deepEqual(options, {}, 'no timeout');
    assert.equal(done(), false);
    s.world.generation++;
    assert.equal(done(), true, `${ports.length} ports: a port turned pending anywhere`);
  }
});

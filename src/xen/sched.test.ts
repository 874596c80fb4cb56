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
import { registerSchedOp, type ShutdownKind } from './sched.js';
import { TimerState } from './timers.js';

const ARG = 0x2000n;

function setup() {
  const shutdowns: ShutdownKind[] = [];
  const softResets: { vcpu: number; args: readonly bigint[] }[] = [];
  const state = DomainState.create(1);
  const dispatcher = new HypercallDispatcher(pino({ level: 'silent' }));
  registerSchedOp(dispatcher, {
    shutdown: (kind) => void shutdowns.push(kind),
    shutdownCode: () => state.shutdownCode,
    latchShutdownCode: (c) => state.latchShutdownCode(c),
    sleep: () => {},
    eventsPendingWithDeliveryEnabled: () => false,
    checkPort: (p) => p,
    isPending: () => false,
    timers: TimerState.create(1),
    systemTime: () => 0n,
    softReset: (ctx, args) => {
      softResets.push({ vcpu: ctx.vcpu, args });
      return 0;
    },
  });
  const guest = new FakeGuest(ARG, 16);
  const call = (cmd: number, reason: number) => {
    guest.view().setUint32(0, reason, true);
    const ctx = { vcpu: 1, abi: 'native' as const, guest: guest as unknown as GuestVirtual };
    return dispatcher.dispatch(ctx, 0, HYPERCALL.sched_op, [BigInt(cmd), ARG, 0n, 0n, 0n]);
  };
  return { call, shutdowns, softResets };
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

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TimerState } from './timers.js';

test('the timer loop fires singleshot timers once and periodic ones every period, each on its vCPU', () => {
  const timers = TimerState.create(2);
  let now = 1_000n;
  const fired: [number, bigint][] = [];
  timers.setSingleshot(0, 5_000n);
  timers.setSingleshot(1, 500n); // already in the past: fires at once
  timers.setPeriodic(1, 2_000n, now); // 3000, then a period after each expiry
  timers.run(
    () => (now += 700n), // time moves on each look at the clock, so the loop never waits long
    (vcpu) => {
      fired.push([vcpu, now]);
      if (fired.length === 6) timers.stop();
    },
  );
  assert.deepEqual(fired.map(([v]) => v).sort(), [0, 1, 1, 1, 1, 1]);
  assert.equal(fired.filter(([v]) => v === 0).length, 1, 'the singleshot timer fired once');
  assert.ok(fired[0][1] <= 2_000n && fired[0][0] === 1, 'the past deadline fired first');
  assert.ok(fired.find(([v]) => v === 0)![1] >= 5_000n, 'never early');
});

test('stopping timers: a stopped singleshot or periodic timer does not fire', () => {
  const timers = TimerState.create(1);
  let now = 0n;
  let fired = 0;
  timers.setSingleshot(0, 100n);
  timers.stopSingleshot(0);
  timers.setPeriodic(0, 1_000_000n, 0n);
  timers.stopPeriodic(0);
  timers.setSingleshot(0, 10_000n); // the one that does fire, ending the test
  timers.run(
    () => (now += 1_000n),
    () => {
      fired++;
      timers.stop();
    },
  );
  assert.equal(fired, 1);
  assert.ok(now >= 10_000n);
});

test('a periodic timer set again while its tick fires keeps the new period: the timer thread does not write its old one back', () => {
  const timers = TimerState.create(1);
  let now = 0n;
  const ticks: bigint[] = [];
  timers.setPeriodic(0, 1_000n, now); // first tick at 1000
  timers.run(
    () => (now += 100n),
    () => {
      ticks.push(now);
      // The vCPU's thread, between the timer thread reading the period and writing the next expiry.
      if (ticks.length === 1) timers.setPeriodic(0, 1_000_000n, now);
      if (ticks.length === 2) timers.stop();
    },
  );
  assert.equal(ticks.length, 2);
  assert.ok(ticks[1] - ticks[0] >= 1_000_000n, `the second tick ${ticks[1] - ticks[0]} ns after the first, not a period of the new length`);
});

test('taking a singleshot timer (for KVM to keep) disarms it and says its deadline, once', () => {
  const timers = TimerState.create(2);
  assert.equal(timers.takeSingleshot(0), undefined, 'none armed');
  timers.setSingleshot(0, 5_000n);
  timers.setSingleshot(1, 6_000n);
  assert.equal(timers.takeSingleshot(0), 5_000n);
  assert.equal(timers.takeSingleshot(0), undefined, 'taken already');
  let now = 4_000n;
  const fired: number[] = [];
  timers.run(
    () => (now += 1_000n),
    (vcpu) => {
      fired.push(vcpu);
      timers.stop();
    },
  );
  assert.deepEqual(fired, [1], "only the timer not taken fires");
});

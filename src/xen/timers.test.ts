import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
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

test('on its own thread, the timer loop fires a deadline moved later while it sleeps at the later one, and one moved earlier at once', async () => {
  const timers = TimerState.create(2);
  const loop = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     import(workerData.module).then(({ TimerState }) => {
       const timers = new TimerState(workerData.buffer);
       parentPort.postMessage('running');
       timers.run(() => process.hrtime.bigint(), (vcpu) => parentPort.postMessage({ vcpu, at: process.hrtime.bigint() }));
     });`,
    { eval: true, workerData: { module: new URL('./timers.js', import.meta.url).href, buffer: timers.buffer } },
  );
  await once(loop, 'message');
  const fired: { vcpu: number; at: bigint }[] = [];
  loop.on('message', (m: { vcpu: number; at: bigint }) => fired.push(m));
  const ms = 1_000_000n;
  const start = process.hrtime.bigint();
  timers.setSingleshot(0, start + 300n * ms);
  await delay(20);
  // The thread sleeps toward vCPU 0's deadline: this one is later and does not wake it, and must still fire.
  timers.setSingleshot(0, start + 400n * ms);
  timers.setSingleshot(1, start + 1_000n * ms);
  await delay(20);
  // Earlier than what the thread sleeps toward: it wakes for it.
  timers.setSingleshot(1, start + 100n * ms);
  await delay(500);
  timers.stop();
  await once(loop, 'exit');
  assert.deepEqual(fired.map((f) => f.vcpu), [1, 0], 'each fired once, vCPU 1 first');
  assert.ok(fired[0].at >= start + 100n * ms && fired[0].at < start + 190n * ms, `vCPU 1 fired ${(fired[0].at - start) / ms} ms in, not at 100`);
  assert.ok(fired[1].at >= start + 400n * ms, `vCPU 0 fired ${(fired[1].at - start) / ms} ms in, before its deadline`);
});

test('a deadline stored while the timer loop looks, after it read that vCPU, wakes it: the loop does not sleep past it', () => {
  const timers = TimerState.create(2);
  let now = 1_000n;
  const fired: number[] = [];
  timers.setSingleshot(1, 500n); // past: fires during the first look
  // Left armed, so the loop would sleep about 10 s (real time) if it missed the deadline below.
  timers.setPeriodic(1, 10_000_000_000n, now);
  const start = Date.now();
  timers.run(
    () => (now += 700n),
    (vcpu) => {
      fired.push(vcpu);
      // vCPU 0's slot was read before vCPU 1 fired: as if its thread stored this deadline just then.
      if (vcpu === 1) timers.setSingleshot(0, now + 1_000n);
      else timers.stop();
    },
  );
  assert.deepEqual(fired, [1, 0]);
  assert.ok(Date.now() - start < 5_000, `the loop slept ${Date.now() - start} ms before the deadline it had not read`);
});

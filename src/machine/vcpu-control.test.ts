import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RekickTimer } from './vcpu-control.js';

function setup(t: { mock: { timers: { enable(o: { apis: 'setTimeout'[] }): void; tick(ms: number): void } } }) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let now = 0;
  let kicks = 0;
  const timer = new RekickTimer(() => kicks++, () => now);
  const tick = (ms: number) => {
    now += ms;
    t.mock.timers.tick(ms);
  };
  return { timer, tick, kicks: () => kicks };
}

test('rekick: requests while one is pending make one kick, and a request after the kick makes the next', (t) => {
  const { timer, tick, kicks } = setup(t);
  // A vCPU kicked by every event delivered meanwhile asks again each time: still one chain.
  for (let i = 0; i < 50; i++) timer.request(1);
  tick(1);
  assert.equal(kicks(), 1);
  tick(5);
  assert.equal(kicks(), 1);
  timer.request(1);
  timer.request(1);
  tick(1);
  assert.equal(kicks(), 2);
});

test('rekick: a request due sooner replaces the pending one; one due later waits for it', (t) => {
  const { timer, tick, kicks } = setup(t);
  timer.request(10);
  timer.request(1);
  tick(1);
  assert.equal(kicks(), 1);
  tick(20);
  assert.equal(kicks(), 1, 'the replaced 10 ms kick never comes');
  timer.request(1);
  timer.request(10);
  tick(1);
  assert.equal(kicks(), 2);
  tick(20);
  assert.equal(kicks(), 2);
});

test('rekick: cancel drops the pending kick', (t) => {
  const { timer, tick, kicks } = setup(t);
  timer.request(5);
  timer.cancel();
  tick(10);
  assert.equal(kicks(), 0);
});

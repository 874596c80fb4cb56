// The forwarded-call queue: one call at a time with the vCPUs held, an answer
// for every caller, and the queue still serving after a failure inside xenkvm.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HYPERCALL } from '../xen/abi/hypercalls.js';
import type { ForwardedHypercall } from '../xen/accelerator.js';
import { ForwardedCalls } from './forwarded-calls.js';

const call = (nr: number, vcpu = 0): ForwardedHypercall => ({ vcpu, abi: 'native', nr, args: [0n, 0n, 0n, 0n, 0n], paging: { cr0: 0n, cr3: 0n, cr4: 0n, efer: 0n } });

function host(dispatch: (c: ForwardedHypercall) => bigint, pause: () => Promise<void> = async () => {}) {
  const events: string[] = [];
  const failures: string[] = [];
  const calls = new ForwardedCalls({
    pause: async () => {
      events.push('pause');
      await pause();
    },
    resume: () => events.push('resume'),
    dispatch: (c) => {
      events.push(`dispatch ${c.nr}`);
      return dispatch(c);
    },
    fail: (message) => failures.push(message),
  });
  return { calls, events, failures };
}

test('calls are served one at a time, each between a pause and a resume, in the order they came', async () => {
  let release!: () => void;
  const firstPause = new Promise<void>((r) => (release = r));
  let pauses = 0;
  const { calls, events } = host((c) => BigInt(c.nr), () => (pauses++ === 0 ? firstPause : Promise.resolve()));
  const answers: bigint[] = [];
  const done = [calls.serve(call(HYPERCALL.memory_op), (v) => answers.push(v)), calls.serve(call(HYPERCALL.hvm_op), (v) => answers.push(v))];
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(events, ['pause'], 'the second waits for the first');
  release();
  await Promise.all(done);
  assert.deepEqual(events, ['pause', `dispatch ${HYPERCALL.memory_op}`, 'resume', 'pause', `dispatch ${HYPERCALL.hvm_op}`, 'resume']);
  assert.deepEqual(answers, [BigInt(HYPERCALL.memory_op), BigInt(HYPERCALL.hvm_op)]);
});

test('a call that fails inside xenkvm is answered -EINVAL, stops the VM with a reason, and the calls after it are still served', async () => {
  const { calls, events, failures } = host((c) => {
    if (c.nr === HYPERCALL.memory_op) throw new RangeError('Set maximum size exceeded');
    return 7n;
  });
  const answers: bigint[] = [];
  await calls.serve(call(HYPERCALL.memory_op, 1), (v) => answers.push(v));
  await calls.serve(call(HYPERCALL.hvm_op), (v) => answers.push(v));
  assert.deepEqual(answers, [-22n, 7n]);
  assert.deepEqual(failures, ['serving memory_op for vCPU 1 failed inside xenkvm: Set maximum size exceeded']);
  assert.deepEqual(events.filter((e) => e === 'resume').length, 2, 'the vCPUs are let go after the failure too');
});

test('a pause that fails still answers the caller, and the queue goes on', async () => {
  let first = true;
  const { calls, failures } = host(() => 1n, async () => {
    if (first) {
      first = false;
      throw new Error('vCPU 1 did not pause');
    }
  });
  const answers: bigint[] = [];
  await calls.serve(call(HYPERCALL.vcpu_op), (v) => answers.push(v));
  await calls.serve(call(HYPERCALL.vcpu_op), (v) => answers.push(v));
  assert.deepEqual(answers, [-22n, 1n]);
  assert.equal(failures.length, 1);
  assert.match(failures[0], /vcpu_op for vCPU 0 failed inside xenkvm: vCPU 1 did not pause/);
});

test('work done with the vCPUs held takes its turn with the calls, and a failure in it stops the VM with its name', async () => {
  const { calls, events, failures } = host((c) => BigInt(c.nr));
  const done = [
    calls.serve(call(HYPERCALL.hvm_op), () => events.push('answered')),
    calls.whileHeld('handing KVM the event channels', () => {
      events.push('work');
      throw new Error('ioctl failed');
    }),
    calls.whileHeld('the next', () => events.push('work 2'), () => events.push('after 2')),
  ];
  await Promise.all(done);
  assert.deepEqual(events, ['pause', `dispatch ${HYPERCALL.hvm_op}`, 'resume', 'answered', 'pause', 'work', 'resume', 'pause', 'work 2', 'resume', 'after 2']);
  assert.deepEqual(failures, ['handing KVM the event channels failed inside xenkvm: ioctl failed']);
});

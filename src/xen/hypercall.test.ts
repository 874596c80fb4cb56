// The hypercall dispatcher: CPL check, -ENOSYS with one warning per number
// (and per sub-op), errno mapping, and no exception ever reaching the caller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capturedLogger } from '../common/captured-logger.js';
import { GuestMemoryError } from '../memory/guest-memory.js';
import { GuestFaultError, type GuestVirtual } from '../memory/guest-virtual.js';
import { XEN_ERRNO } from './abi/errno.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { NotImplementedError, XenError } from './errors.js';
import { ARGUMENT_REGISTERS, HypercallDispatcher, REPORTED_ONCE_MAX, type HypercallContext } from './hypercall.js';

const noGuest = {} as GuestVirtual;
const ctx = (abi: 'native' | 'compat' = 'native', vcpu = 0): HypercallContext => ({ vcpu, abi, guest: noGuest });
const ARGS = [0n, 0n, 0n, 0n, 0n] as const;

function setup() {
  const { logger, ...log } = capturedLogger();
  return { d: new HypercallDispatcher(logger), ...log };
}

test('ARGUMENT_REGISTERS: Xen x86 calling conventions', () => {
  assert.deepEqual([...ARGUMENT_REGISTERS.native], ['rdi', 'rsi', 'rdx', 'r10', 'r8']);
  assert.deepEqual([...ARGUMENT_REGISTERS.compat], ['rbx', 'rcx', 'rdx', 'rsi', 'rdi']);
});

test('a registered handler gets the context and arguments; its value is RAX', () => {
  const { d, lines } = setup();
  const seen: { ctx: HypercallContext; args: readonly bigint[] }[] = [];
  d.register(HYPERCALL.xen_version, (c, args) => {
    seen.push({ ctx: c, args });
    return 0x4_0011;
  });
  d.register(HYPERCALL.memory_op, () => 0xffff_ffff_ffffn);
  const c = ctx('compat', 3);
  assert.equal(d.dispatch(c, 0, HYPERCALL.xen_version, [1n, 2n, 3n, 4n, 5n]), 0x4_0011n);
  assert.equal(seen.length, 1);
  assert.equal(seen[0].ctx, c);
  assert.deepEqual([...seen[0].args], [1n, 2n, 3n, 4n, 5n]);
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.memory_op, ARGS), 0xffff_ffff_ffffn);
  assert.equal(lines.length, 0);
});

test('CPL > 0: -EPERM without calling the handler', () => {
  const { d, lines } = setup();
  let calls = 0;
  d.register(HYPERCALL.xen_version, () => ++calls);
  for (const cpl of [1, 2, 3]) assert.equal(d.dispatch(ctx(), cpl, HYPERCALL.xen_version, ARGS), -1n);
  // Even for a number nobody implements: the CPL check comes first, and nothing is logged.
  assert.equal(d.dispatch(ctx(), 3, 44, ARGS), -1n);
  assert.equal(calls, 0);
  assert.equal(lines.length, 0);
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.xen_version, ARGS), 1n);
});

test('unknown hypercall: -ENOSYS and exactly one warning per number', () => {
  const { d, warns, errors } = setup();
  for (let i = 0; i < 3; i++) {
    assert.equal(d.dispatch(ctx(), 0, HYPERCALL.hvm_op, ARGS), -38n);
    assert.equal(d.dispatch(ctx(), 0, 44, ARGS), -38n);
    assert.equal(d.dispatch(ctx('compat'), 0, 0x7f, ARGS), -38n);
  }
  assert.equal(warns().length, 3);
  assert.match(warns()[0].msg, /hvm_op/);
  assert.match(warns()[1].msg, /44/);
  assert.equal(errors().length, 0);
});

test('a guest naming ever new unimplemented numbers and sub-ops gets -ENOSYS each time; the dispatcher keeps a bounded record and logs a bounded number of lines', () => {
  const { d, warns, errors } = setup();
  d.register(HYPERCALL.memory_op, (_ctx, [cmd]) => {
    throw new NotImplementedError(`memory_op op ${cmd}`);
  });
  for (let i = 0; i < 50_000; i++) {
    assert.equal(d.dispatch(ctx(), 0, 1000 + i, ARGS), -38n);
    assert.equal(d.dispatch(ctx(), 0, HYPERCALL.memory_op, [BigInt(1000 + i), 0n, 0n, 0n, 0n]), -38n);
  }
  assert.ok(d['reported'].size <= REPORTED_ONCE_MAX, `${d['reported'].size} numbers remembered`);
  assert.ok(warns().length <= 10, `${warns().length} lines in one rate-limit window`);
  assert.equal(errors().length, 0);
});

test('XenError(e) from a handler becomes -e', () => {
  const { d, errors } = setup();
  let errno = 0;
  d.register(HYPERCALL.memory_op, () => {
    throw new XenError(errno);
  });
  for (const name of ['EPERM', 'ENOENT', 'ESRCH', 'EFAULT', 'EEXIST', 'EINVAL', 'EOPNOTSUPP'] as const) {
    errno = XEN_ERRNO[name];
    assert.equal(d.dispatch(ctx(), 0, HYPERCALL.memory_op, ARGS), BigInt(-XEN_ERRNO[name]), name);
  }
  assert.equal(errors().length, 0);
});

test('NotImplementedError: -ENOSYS and one warning per op it names; other -ENOSYS answers (Xen\'s own) are silent', () => {
  const { d, warns, errors } = setup();
  d.register(HYPERCALL.memory_op, (_ctx, [cmd]) => {
    throw new NotImplementedError(`memory_op op ${cmd}`);
  });
  d.register(HYPERCALL.hvm_op, () => {
    throw new XenError(XEN_ERRNO.ENOSYS, 'no such hvm_op in Xen either');
  });
  const call = (nr: number, op: bigint) => d.dispatch(ctx(), 0, nr, [op, 0n, 0n, 0n, 0n]);
  for (let i = 0; i < 3; i++) {
    assert.equal(call(HYPERCALL.memory_op, 6n), -38n);
    assert.equal(call(HYPERCALL.memory_op, 28n), -38n);
    assert.equal(call(HYPERCALL.hvm_op, 6n), -38n);
  }
  assert.deepEqual(warns().map((l) => l.msg), [
    'guest called memory_op op 6, which xenkvm does not implement; -ENOSYS',
    'guest called memory_op op 28, which xenkvm does not implement; -ENOSYS',
  ]);
  assert.equal(errors().length, 0);
});

test('guest faults become -EFAULT, silently', () => {
  const { d, lines } = setup();
  d.register(HYPERCALL.memory_op, () => {
    throw new GuestFaultError(0xdead_0000n, 16);
  });
  d.register(HYPERCALL.hvm_op, () => {
    throw new GuestMemoryError(0x1234_0000, 8);
  });
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.memory_op, ARGS), -14n);
  assert.equal(d.dispatch(ctx('compat'), 0, HYPERCALL.hvm_op, ARGS), -14n);
  assert.equal(lines.length, 0);
});

test('any other exception: -EINVAL and an error log, never a throw', () => {
  const { d, errors, warns } = setup();
  d.register(HYPERCALL.memory_op, () => {
    throw new TypeError('a bug in xenkvm');
  });
  d.register(HYPERCALL.hvm_op, () => {
    throw new RangeError('another bug');
  });
  // A handler that returns something that is no integer fails inside the dispatcher's conversion.
  d.register(HYPERCALL.vcpu_op, () => 1.5);
  d.register(HYPERCALL.sched_op, () => {
    throw new Error('plain');
  });
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.memory_op, ARGS), -22n);
  assert.equal(d.dispatch(ctx('compat', 2), 0, HYPERCALL.hvm_op, ARGS), -22n);
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.vcpu_op, ARGS), -22n);
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.sched_op, ARGS), -22n);
  assert.equal(errors().length, 4, 'every failure is logged');
  assert.equal(errors()[0].err, 'a bug in xenkvm');
  assert.equal(errors()[0].hypercall, 'memory_op');
  assert.equal(errors()[1].vcpu, 2);
  assert.equal(warns().length, 0);
});

test('a failure inside xenkvm that a guest can repeat is logged at a bounded rate', () => {
  const { d, errors } = setup();
  d.register(HYPERCALL.memory_op, () => {
    throw new TypeError('a bug in xenkvm');
  });
  for (let i = 0; i < 10_000; i++) assert.equal(d.dispatch(ctx(), 0, HYPERCALL.memory_op, ARGS), -22n);
  assert.ok(errors().length <= 10, `${errors().length} error lines`);
});

test('registering a number twice throws', () => {
  const { d } = setup();
  d.register(HYPERCALL.xen_version, () => 0);
  assert.throws(() => d.register(HYPERCALL.xen_version, () => 1), /twice/);
  assert.equal(d.dispatch(ctx(), 0, HYPERCALL.xen_version, ARGS), 0n, 'the first handler stays');
});

test('dispatchers are independent: reported warnings are per dispatcher', () => {
  const a = setup();
  const b = setup();
  a.d.dispatch(ctx(), 0, 44, ARGS);
  b.d.dispatch(ctx(), 0, 44, ARGS);
  assert.equal(a.warns().length, 1);
  assert.equal(b.warns().length, 1);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EVTCHNOP, EVTCHNSTAT, VIRQ } from '../abi/event-channel.js';
import { XEN_ERRNO } from '../abi/errno.js';
import { DOMID } from '../abi/xen.js';
import { evtchnTestDomain } from './fake-domain.js';
import { resetPorts } from './ops.js';
import { PortState } from './ports.js';

const setup = evtchnTestDomain;

// Struct words: alloc_unbound {dom u16, remote_dom u16 | port}, bind_interdomain {remote_dom | remote_port | local_port},
// bind_ipi {vcpu | port}, bind_virq {virq | vcpu | port}, status {dom | port | status | vcpu | u...}.
const SELF = DOMID.SELF | (DOMID.SELF << 16);

for (const abi of ['native', 'compat'] as const) {
  test(`2-level delivery (${abi}): pending, selector, upcall once; masked ports wait for unmask`, (t) => {
    const s = setup(t, abi);
    const a = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
    const b = s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, a).word(2);
    assert.deepEqual([a, b], [1, 2]);
    // bind_interdomain leaves the new port pending, as Xen does.
    assert.equal(s.pending(b), 1);
    assert.deepEqual(s.upcalls, [0]);
    assert.equal(s.op(EVTCHNOP.send, b).rc, 0);
    assert.equal(s.pending(a), 1);
    assert.equal(s.selector(0, 0), 1);
    assert.deepEqual(s.upcalls, [0], 'upcall_pending was already set: no second upcall');
    s.clearUpcall(0);
    s.setMask(3, true);
    const c = s.op(EVTCHNOP.bind_ipi, 1).word(1);
    assert.equal(c, 3);
    assert.equal(s.op(EVTCHNOP.send, c).rc, 0);
    assert.equal(s.pending(c), 1);
    assert.equal(s.upcallPending(1), 0, 'masked: no upcall');
    assert.equal(s.op(EVTCHNOP.unmask, c).rc, 0);
    assert.equal(s.upcallPending(1), 1);
    assert.deepEqual(s.upcalls, [0, 1]);
  });
}

test('status, bind_vcpu, close and reset follow Xen', (t) => {
  const s = setup(t);
  const a = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
  let st = s.op(EVTCHNOP.status, DOMID.SELF, a);
  assert.deepEqual([st.rc, st.word(2), st.word(3), st.word(4) & 0xffff], [0, EVTCHNSTAT.unbound, 0, 1]);
  const b = s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, a).word(2);
  st = s.op(EVTCHNOP.status, DOMID.SELF, b);
  assert.deepEqual([st.word(2), st.word(4) & 0xffff, st.word(5)], [EVTCHNSTAT.interdomain, 1, a]);
  assert.equal(s.op(EVTCHNOP.bind_vcpu, b, 1).rc, 0);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, b).word(3), 1);
  const ipi = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.equal(s.op(EVTCHNOP.bind_vcpu, ipi, 1).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.close, b).rc, 0);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, b).word(2), EVTCHNSTAT.closed);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, a).word(2), EVTCHNSTAT.unbound, 'the far end waits again');
  assert.equal(s.op(EVTCHNOP.close, b).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.send, b).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.close, 0).rc, -XEN_ERRNO.EINVAL, 'port 0 is reserved');
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, 0).word(2), EVTCHNSTAT.closed);
  assert.equal(s.op(EVTCHNOP.reset, DOMID.SELF).rc, 0);
  for (const p of [a, ipi]) assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, p).word(2), EVTCHNSTAT.closed);
});

test('resetPorts closes every kind of port, clears their events and frees their VIRQs', (t) => {
  const s = setup(t);
  const a = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
  const b = s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, a).word(2);
  const ipi = s.op(EVTCHNOP.bind_ipi, 1).word(1);
  const timer = s.op(EVTCHNOP.bind_virq, VIRQ.TIMER, 0).word(2);
  const spare = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
  s.setMask(ipi, true);
  assert.equal(s.op(EVTCHNOP.send, ipi).rc, 0);
  assert.deepEqual([s.pending(b), s.pending(ipi)], [1, 1]);
  resetPorts(s.d);
  for (const p of [a, b, ipi, timer, spare]) {
    assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, p).word(2), EVTCHNSTAT.closed, `port ${p}`);
    assert.equal(s.pending(p), 0, `port ${p} pending`);
  }
  assert.equal(s.d.ports.get(0).state, PortState.Reserved);
  assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.TIMER, 0).rc, 0, 'VIRQ_TIMER binds again');
  assert.equal(s.op(EVTCHNOP.bind_ipi, 0).word(1), 2, 'ports are handed out from the lowest again');
});

test('a global VIRQ whose events bind_vcpu moved to vCPU 1 is still bound on vCPU 0: once closed, it binds again', (t) => {
  const s = setup(t);
  for (let round = 0; round < 2; round++) {
    const port = s.op(EVTCHNOP.bind_virq, VIRQ.CON_RING, 0).word(2);
    assert.equal(s.op(EVTCHNOP.bind_vcpu, port, 1).rc, 0);
    assert.deepEqual([s.op(EVTCHNOP.status, DOMID.SELF, port).word(2), s.op(EVTCHNOP.status, DOMID.SELF, port).word(3)], [EVTCHNSTAT.virq, 1]);
    assert.equal(s.d.ports.virqPort(VIRQ.CON_RING, 0), port, 'kept in vCPU 0 table');
    assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.CON_RING, 0).rc, -XEN_ERRNO.EEXIST, 'bound once while open');
    assert.equal(s.op(EVTCHNOP.close, port).rc, 0);
    assert.equal(s.d.ports.virqPort(VIRQ.CON_RING, 0), undefined);
  }
  assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.CON_RING, 0).rc, 0);
});

test('binding errors are Xen errno values', (t) => {
  const s = setup(t);
  assert.equal(s.op(EVTCHNOP.bind_ipi, 2).rc, -XEN_ERRNO.ENOENT);
  assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.TIMER, 5).rc, -XEN_ERRNO.ENOENT);
  assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.CONSOLE, 1).rc, -XEN_ERRNO.EINVAL, 'global VIRQs only on vCPU 0');
  assert.equal(s.op(EVTCHNOP.bind_virq, 24, 0).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.TIMER, 1).rc, 0);
  assert.equal(s.op(EVTCHNOP.bind_virq, VIRQ.TIMER, 1).rc, -XEN_ERRNO.EEXIST);
  assert.equal(s.op(EVTCHNOP.send, 4096).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.alloc_unbound, 5 | (DOMID.SELF << 16)).rc, -XEN_ERRNO.ESRCH, 'only for itself');
  const forDom7 = s.op(EVTCHNOP.alloc_unbound, DOMID.SELF | (7 << 16));
  assert.equal(forDom7.rc, 0, 'any remote domain is recorded');
  assert.equal(s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, forDom7.word(1)).rc, -XEN_ERRNO.EINVAL, 'reserved for domain 7');
  assert.equal(s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, 7).rc, -XEN_ERRNO.EINVAL, 'not an unbound port');
  assert.equal(s.op(99).rc, -XEN_ERRNO.ENOSYS);
});

test('the compat ABI addresses 1024 ports and runs out with -ENOSPC', (t) => {
  const s = setup(t, 'compat');
  for (let i = 1; i < 1024; i++) assert.equal(s.op(EVTCHNOP.bind_ipi, 0).word(1), i);
  assert.equal(s.op(EVTCHNOP.bind_ipi, 0).rc, -XEN_ERRNO.ENOSPC);
  assert.equal(s.op(EVTCHNOP.send, 1024).rc, -XEN_ERRNO.EINVAL);
});

test('property: random binding sequences agree with a simple model of the port table', (t) => {
  const s = setup(t, 'compat');
  const model = new Map<number, { kind: 'unbound' | 'interdomain' | 'ipi'; vcpu: number; peer?: number }>();
  let seed = 12345;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const lowestFree = () => { let p = 1; while (model.has(p)) p++; return p; };
  for (let step = 0; step < 3000; step++) {
    const ports = [...model.keys()];
    switch (rand(5)) {
      case 0: {
        const { rc, word } = s.op(EVTCHNOP.alloc_unbound, SELF);
        const want = lowestFree();
        if (want < 1024) { assert.equal(rc, 0); assert.equal(word(1), want); model.set(want, { kind: 'unbound', vcpu: 0 }); }
        else assert.equal(rc, -XEN_ERRNO.ENOSPC);
        break;
      }
      case 1: {
        const vcpu = rand(3);
        const { rc, word } = s.op(EVTCHNOP.bind_ipi, vcpu);
        if (vcpu > 1) assert.equal(rc, -XEN_ERRNO.ENOENT);
        else if (lowestFree() < 1024) { assert.equal(rc, 0); model.set(word(1), { kind: 'ipi', vcpu }); }
        break;
      }
      case 2: {
        const target = ports.length ? ports[rand(ports.length)] : 1;
        const m = model.get(target);
        const { rc, word } = s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, target);
        if (m?.kind === 'unbound' && lowestFree() < 1024) {
          assert.equal(rc, 0);
          const local = word(2);
          model.set(local, { kind: 'interdomain', vcpu: 0, peer: target });
          model.set(target, { kind: 'interdomain', vcpu: m.vcpu, peer: local });
        } else if (m?.kind !== 'unbound') assert.equal(rc, -XEN_ERRNO.EINVAL);
        break;
      }
      case 3: {
        const target = rand(40);
        const m = model.get(target);
        const { rc } = s.op(EVTCHNOP.close, target);
        if (!m) assert.equal(rc, -XEN_ERRNO.EINVAL);
        else {
          assert.equal(rc, 0);
          if (m.kind === 'interdomain') model.set(m.peer!, { kind: 'unbound', vcpu: model.get(m.peer!)!.vcpu });
          model.delete(target);
        }
        break;
      }
      case 4: {
        const target = rand(40);
        const { rc, word } = s.op(EVTCHNOP.status, DOMID.SELF, target);
        assert.equal(rc, 0);
        const m = model.get(target);
        const want = !m ? EVTCHNSTAT.closed : m.kind === 'unbound' ? EVTCHNSTAT.unbound : m.kind === 'ipi' ? EVTCHNSTAT.ipi : EVTCHNSTAT.interdomain;
        assert.equal(word(2), want, `port ${target} at step ${step}`);
        if (m) assert.equal(word(3), m.vcpu);
        if (m?.kind === 'interdomain') assert.equal(word(5), m.peer);
        break;
      }
    }
  }
});

test('a smaller max_evtchn_port caps both ABIs: -ENOSPC past it, -EINVAL beyond it', (t) => {
  const s = setup(t, 'native', { portCount: 100 });
  for (let i = 1; i < 100; i++) assert.equal(s.op(EVTCHNOP.bind_ipi, 0).word(1), i);
  assert.equal(s.op(EVTCHNOP.bind_ipi, 0).rc, -XEN_ERRNO.ENOSPC);
  assert.equal(s.op(EVTCHNOP.send, 100).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.init_control, 0x10, 0, 0, 0).rc, 0);
  assert.equal(s.op(EVTCHNOP.bind_ipi, 0).rc, -XEN_ERRNO.ENOSPC, 'FIFO reaches 2^17 ports, but not past the domain\'s limit');
});

test('FIFO lets a domain allowed more ports bind past the 2-level ABI\'s 4096', (t) => {
  const s = setup(t, 'native', { portCount: 5000 });
  assert.equal(s.op(EVTCHNOP.init_control, 0x10, 0, 0, 0).rc, 0);
  let port = 0;
  for (let i = 1; i < 5000; i++) port = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.equal(port, 4999);
  assert.equal(s.op(EVTCHNOP.bind_ipi, 0).rc, -XEN_ERRNO.ENOSPC);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, 4999).word(2), EVTCHNSTAT.ipi);
});

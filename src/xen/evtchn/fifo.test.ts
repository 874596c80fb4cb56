import assert from 'node:assert/strict';
import { seededRandom } from '../../common/seeded-random.js';
import { test } from 'node:test';
import { EVTCHN_FIFO, EVTCHNOP, EVTCHNSTAT } from '../abi/event-channel.js';
import { XEN_ERRNO } from '../abi/errno.js';
import type { Abi } from '../abi/layout.js';
import { DOMID } from '../abi/xen.js';
import { evtchnTestDomain } from './fake-domain.js';
import { PortFlag, PortState } from './ports.js';
import { capturedLogger } from '../../common/captured-logger.js';

const PAGE = 4096;
const CONTROL_GFN = 0x10;
const ARRAY_GFNS = [0x20, 0x21];
const PENDING = 1 << EVTCHN_FIFO.PENDING;
const MASKED = 1 << EVTCHN_FIFO.MASKED;
const LINKED = 1 << EVTCHN_FIFO.LINKED;
const SELF = DOMID.SELF | (DOMID.SELF << 16);

/** A domain on the FIFO ABI, and a guest that consumes its queues as Linux does. */
function fifoDomain(t: { after(fn: () => void): void }, abi: Abi = 'native', options: { switchNow?: boolean; pages?: number; offered?: boolean } = {}) {
  const s = evtchnTestDomain(t, abi, { fifo: options.offered ?? true });
  const m = s.memory;
  const controlBlock = (v: number) => CONTROL_GFN * PAGE + v * 128;
  const wordAt = (port: number) => ARRAY_GFNS[port >> 10] * PAGE + (port & 1023) * 4;
  const word = (port: number) => m.readU32(wordAt(port)) | 0;
  const setWord = (port: number, w: number) => m.writeU32(wordAt(port), w >>> 0);
  /** The guest's own copy of each queue's head, as Linux keeps it. */
  const heads = [new Array(16).fill(0), new Array(16).fill(0)];
  const fifo = {
    ...s,
    word,
    setWord,
    ready: (v: number) => m.readU32(controlBlock(v)),
    head: (v: number, q: number) => m.readU32(controlBlock(v) + 8 + q * 4),
    initControl: (v: number, gfn = CONTROL_GFN, offset = v * 128) => s.op(EVTCHNOP.init_control, gfn, 0, offset, v),
    expand: (gfn: number) => s.op(EVTCHNOP.expand_array, gfn, 0).rc,
    mask: (port: number) => setWord(port, word(port) | MASKED),
    /** Linux's unmask: clear MASKED, and ask Xen to relink a pending event. */
    unmask: (port: number) => {
      setWord(port, word(port) & ~MASKED);
      if (word(port) & PENDING) assert.equal(s.op(EVTCHNOP.unmask, port).rc, 0);
    },
    /** Drains vCPU v's queues, highest priority first, one event at a time; the ports handled, in order. */
    consume: (v: number) => {
      const handled: number[] = [];
      for (let ready = fifo.ready(v); ready !== 0; ready = fifo.ready(v)) {
        const q = 31 - Math.clz32(ready & -ready);
        let port = heads[v][q] || fifo.head(v, q);
        const w = word(port);
        setWord(port, w & ~(LINKED | EVTCHN_FIFO.LINK_MASK));
        const next = w & EVTCHN_FIFO.LINK_MASK;
        if (next === 0) m.writeU32(controlBlock(v), fifo.ready(v) & ~(1 << q));
        if ((w & PENDING) !== 0 && (w & MASKED) === 0) {
          setWord(port, word(port) & ~PENDING);
          handled.push(port);
        }
        heads[v][q] = next;
        port = next;
      }
      return handled;
    },
  };
  if (options.switchNow ?? true) {
    assert.equal(fifo.initControl(0).rc, 0);
    assert.equal(fifo.initControl(1).rc, 0);
    for (let i = 0; i < (options.pages ?? 1); i++) assert.equal(fifo.expand(ARRAY_GFNS[i]), 0);
  }
  return fifo;
}

test('FIFO: init_control reports 17 link bits; ports bound before the switch keep their bindings and their pending event', (t) => {
  const s = fifoDomain(t, 'native', { switchNow: false });
  const ipi = s.op(EVTCHNOP.bind_ipi, 1).word(1);
  const a = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
  const b = s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, a).word(2);
  assert.equal(s.pending(b), 1, 'bind_interdomain leaves its port pending (2-level bitmap)');
  const upcallsBefore = s.upcalls.length;
  const init = s.initControl(0);
  assert.equal(init.rc, 0);
  assert.equal(init.word(4) & 0xff, EVTCHN_FIFO.LINK_BITS);
  assert.equal(s.initControl(1).rc, 0);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, ipi).word(2), EVTCHNSTAT.ipi);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, b).word(5), a);
  assert.equal(s.upcalls.length, upcallsBefore, 'nothing raised before an event word exists');
  assert.equal(s.expand(ARRAY_GFNS[0]), 0);
  assert.equal(s.word(b), PENDING | LINKED, 'the event waiting for its word is linked once the page arrives');
  assert.equal(s.head(0, EVTCHN_FIFO.PRIORITY_DEFAULT), b);
  assert.equal(s.ready(0), 1 << EVTCHN_FIFO.PRIORITY_DEFAULT);
  assert.deepEqual(s.consume(0), [b]);
  assert.equal(s.op(EVTCHNOP.send, ipi).rc, 0);
  assert.deepEqual(s.consume(1), [ipi], 'the IPI port still reaches vCPU 1');
  assert.equal(s.op(EVTCHNOP.send, a).rc, 0);
  assert.deepEqual(s.consume(0), [b], 'the loopback pair still works');
});

for (const abi of ['native', 'compat'] as const) {
  test(`FIFO (${abi}): queues are taken highest priority first, each in the order its events were raised`, (t) => {
    const s = fifoDomain(t, abi);
    const priorities = [7, 3, 7, 3, 0, 15];
    const ports = priorities.map((p) => {
      const port = s.op(EVTCHNOP.bind_ipi, 0).word(1);
      assert.equal(s.op(EVTCHNOP.set_priority, port, p).rc, 0);
      return port;
    });
    const upcalls = s.upcalls.length;
    for (const port of ports) assert.equal(s.op(EVTCHNOP.send, port).rc, 0);
    assert.equal(s.upcalls.length, upcalls + 1, 'one upcall: evtchn_upcall_pending stays set for the rest');
    assert.equal(s.ready(0), (1 << 7) | (1 << 3) | (1 << 0) | (1 << 15));
    assert.equal(s.head(0, 7), ports[0]);
    assert.equal(s.word(ports[0]) & EVTCHN_FIFO.LINK_MASK, ports[2], 'linked at the tail of its queue');
    assert.equal(s.op(EVTCHNOP.send, ports[0]).rc, 0, 'a second send while pending merges');
    assert.deepEqual(s.consume(0), [ports[4], ports[1], ports[3], ports[0], ports[2], ports[5]]);
    assert.equal(s.ready(0), 0);
    assert.deepEqual(s.consume(1), []);
  });
}

test('FIFO: a masked event stays pending and unlinked until unmask links it', (t) => {
  const s = fifoDomain(t);
  const port = s.op(EVTCHNOP.bind_ipi, 1).word(1);
  s.mask(port);
  assert.equal(s.op(EVTCHNOP.send, port).rc, 0);
  assert.equal(s.word(port), PENDING | MASKED);
  assert.equal(s.ready(1), 0);
  s.unmask(port);
  assert.equal(s.word(port), PENDING | LINKED);
  assert.deepEqual(s.consume(1), [port]);
  s.unmask(port);
  assert.deepEqual(s.consume(1), [], 'unmasking again raises nothing');
});

test('FIFO: an event whose priority changed while it was a tail leaves that queue empty behind it', (t) => {
  const s = fifoDomain(t);
  const x = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  const y = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  s.op(EVTCHNOP.send, x);
  assert.equal(s.op(EVTCHNOP.set_priority, x, 2).rc, 0);
  assert.deepEqual(s.consume(0), [x], 'already linked: it stays on its old queue');
  s.op(EVTCHNOP.send, x);
  assert.equal(s.head(0, 2), x);
  s.op(EVTCHNOP.send, y);
  assert.equal(s.head(0, EVTCHN_FIFO.PRIORITY_DEFAULT), y, 'not linked behind x, which is on another queue now');
  assert.deepEqual(s.consume(0), [x, y]);
});

test('FIFO: bind_vcpu moves an interdomain port to the other vCPU\'s queue', (t) => {
  const s = fifoDomain(t);
  const a = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
  const b = s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, a).word(2);
  assert.deepEqual(s.consume(0), [b]);
  assert.equal(s.op(EVTCHNOP.bind_vcpu, b, 1).rc, 0);
  s.op(EVTCHNOP.send, a);
  assert.deepEqual(s.consume(0), []);
  assert.deepEqual(s.consume(1), [b]);
});

test('FIFO: a vCPU without a control block gets the pending bit but no link', (t) => {
  const s = fifoDomain(t, 'native', { switchNow: false });
  assert.equal(s.initControl(0).rc, 0);
  assert.equal(s.expand(ARRAY_GFNS[0]), 0);
  const port = s.op(EVTCHNOP.bind_ipi, 1).word(1);
  s.op(EVTCHNOP.send, port);
  assert.equal(s.word(port), PENDING);
  assert.equal(s.ready(1), 0);
});

test('FIFO: events on ports past the event array wait for expand_array', (t) => {
  const s = fifoDomain(t);
  let port = 0;
  while (port < 1100) port = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.equal(s.op(EVTCHNOP.send, port).rc, 0);
  assert.equal(s.d.ports.hasFlag(port, PortFlag.FastPath), true);
  assert.equal(s.d.events.isPending(port), false, 'no word, nothing pending yet');
  assert.deepEqual(s.consume(0), []);
  assert.equal(s.expand(ARRAY_GFNS[1]), 0);
  assert.deepEqual(s.consume(0), [port]);
});

test('FIFO: a closed port still linked on a queue is not handed out until the guest unlinks it', (t) => {
  const s = fifoDomain(t);
  const a = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  s.op(EVTCHNOP.send, a);
  assert.equal(s.op(EVTCHNOP.close, a).rc, 0);
  assert.equal(s.word(a), LINKED, 'close clears PENDING only');
  const b = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.notEqual(b, a);
  assert.deepEqual(s.consume(0), [], 'the guest skips an event no longer pending');
  assert.equal(s.op(EVTCHNOP.bind_ipi, 0).word(1), a);
});

test('FIFO errors are Xen\'s', (t) => {
  const s = fifoDomain(t, 'native', { switchNow: false });
  const port = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.equal(s.op(EVTCHNOP.set_priority, port, 3).rc, -XEN_ERRNO.ENOSYS, '2-level has no priorities');
  assert.equal(s.expand(ARRAY_GFNS[0]), -XEN_ERRNO.EOPNOTSUPP);
  assert.equal(s.initControl(2).rc, -XEN_ERRNO.ENOENT);
  assert.equal(s.initControl(0, CONTROL_GFN, PAGE - 72 + 8).rc, -XEN_ERRNO.EINVAL, 'crosses the page');
  assert.equal(s.initControl(0, CONTROL_GFN, 4).rc, -XEN_ERRNO.EINVAL, 'not 8-byte aligned');
  assert.equal(s.initControl(0, 0x1000).rc, -XEN_ERRNO.EINVAL, 'not RAM');
  assert.equal(s.d.ports.fifoActive, false, 'a refused first init_control leaves the 2-level ABI');
  assert.equal(s.initControl(0, CONTROL_GFN, PAGE - 72).rc, 0, 'the last place that fits');
  assert.equal(s.initControl(0).rc, -XEN_ERRNO.EINVAL, 'twice for one vCPU');
  assert.equal(s.expand(0x1000), -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.set_priority, port, 16).rc, -XEN_ERRNO.EINVAL);
  assert.equal(s.op(EVTCHNOP.set_priority, 4095, 3).rc, -XEN_ERRNO.EINVAL, 'beyond the valid ports');
  for (let i = 0; i < 128; i++) assert.equal(s.expand(0x40 + i), 0);
  assert.equal(s.expand(0x40), -XEN_ERRNO.ENOSPC, 'at most 128 pages');
});

test('FIFO not offered (--evtchn-fifo off): init_control and expand_array answer EOPNOTSUPP, as Xen built without it does, and the domain keeps the 2-level ABI', (t) => {
  for (const abi of ['native', 'compat'] as const) {
    const s = fifoDomain(t, abi, { switchNow: false, offered: false });
    const port = s.op(EVTCHNOP.bind_ipi, 0).word(1);
    assert.equal(s.initControl(0).rc, -XEN_ERRNO.EOPNOTSUPP, abi);
    assert.equal(s.initControl(2).rc, -XEN_ERRNO.EOPNOTSUPP, `${abi}: refused before its vCPU is checked`);
    assert.equal(s.expand(ARRAY_GFNS[0]), -XEN_ERRNO.EOPNOTSUPP, abi);
    assert.equal(s.d.ports.fifoActive, false, abi);
    assert.equal(s.ready(0), 0, `${abi}: nothing written to the control block`);
    assert.equal(s.op(EVTCHNOP.send, port).rc, 0);
    assert.equal(s.pending(port), 1, `${abi}: the event arrives the 2-level way`);
  }
});

test('FIFO: EVTCHNOP_reset closes every port and returns to the 2-level ABI', (t) => {
  const s = fifoDomain(t);
  const port = s.op(EVTCHNOP.bind_ipi, 0).word(1);
  assert.equal(s.op(EVTCHNOP.reset, DOMID.SELF).rc, 0);
  assert.equal(s.d.ports.fifoActive, false);
  assert.equal(s.op(EVTCHNOP.status, DOMID.SELF, port).word(2), EVTCHNSTAT.closed);
  assert.equal(s.op(EVTCHNOP.set_priority, port, 3).rc, -XEN_ERRNO.ENOSYS);
  assert.equal(s.initControl(0).rc, 0, 'the control block can be set up again');
});

test('property: random sends, masks, priority and vCPU moves under FIFO lose and double nothing', (t) => {
  const s = fifoDomain(t);
  let seed = 4242;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const ports: number[] = [];
  for (let i = 0; i < 12; i++) {
    const a = s.op(EVTCHNOP.alloc_unbound, SELF).word(1);
    ports.push(s.op(EVTCHNOP.bind_interdomain, DOMID.SELF, a).word(2), a);
  }
  s.consume(0);
  /** Per port: whether an event is owed to the guest (sent since it last handled one). */
  const owed = new Map<number, boolean>();
  const handled = new Map<number, number>();
  const sent = new Map<number, number>();
  const take = (v: number) => {
    for (const p of s.consume(v)) {
      assert.equal(owed.get(p), true, `port ${p} handled without being owed`);
      owed.set(p, false);
      handled.set(p, (handled.get(p) ?? 0) + 1);
    }
  };
  const peerOf = (port: number) => s.op(EVTCHNOP.status, DOMID.SELF, port).word(5);
  for (let step = 0; step < 4000; step++) {
    const port = ports[rand(ports.length)];
    switch (rand(6)) {
      case 0:
      case 1: {
        assert.equal(s.op(EVTCHNOP.send, port).rc, 0);
        const target = peerOf(port);
        if (!owed.get(target)) sent.set(target, (sent.get(target) ?? 0) + 1);
        owed.set(target, true);
        break;
      }
      case 2:
        s.mask(port);
        break;
      case 3:
        s.unmask(port);
        break;
      case 4:
        if (rand(2)) assert.equal(s.op(EVTCHNOP.set_priority, port, rand(16)).rc, 0);
        else assert.equal(s.op(EVTCHNOP.bind_vcpu, port, rand(2)).rc, 0);
        break;
      case 5:
        take(rand(2));
        break;
    }
  }
  for (const p of ports) s.unmask(p);
  take(0);
  take(1);
  for (const p of ports) {
    assert.equal(owed.get(p) ?? false, false, `port ${p}: an event was lost`);
    assert.equal(handled.get(p) ?? 0, sent.get(p) ?? 0, `port ${p}`);
  }
});

test('fuzz: any sequence of event_channel_op calls with any arguments leaves a consistent table and no error inside xenkvm', (t) => {
  const log = capturedLogger();
  const s = evtchnTestDomain(t, 'native', { logger: log.logger, portCount: 2048 });
  const rand = seededRandom(99);
  // Mostly small values, sometimes anything: ports, vCPUs, domains, frames and offsets near their edges.
  const value = () => [rand(2), rand(8), rand(70), DOMID.SELF, 0, 0x10 + rand(0x110), rand(4097) & ~7, rand(4097), 0xffffffff, rand(0x7fffffff)][rand(10)];
  const succeeded = new Set<number>();
  let sawFifo = false;
  for (let step = 0; step < 20000; step++) {
    // Resets are rare, so bindings pile up and the FIFO ABI, once set up, lasts a while.
    const op = rand(200) === 0 ? EVTCHNOP.reset : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14][rand(14)];
    // alloc_unbound's first word holds two domains; its remote one is often the domain itself or domain 0.
    const first = op === EVTCHNOP.alloc_unbound ? value() | ([0, DOMID.SELF, value()][rand(3)] << 16) : value();
    if (s.op(op, first, value(), value(), value(), value()).rc === 0) succeeded.add(op);
    if (rand(50) === 0) s.d.events.setPending(1 + rand(200), rand(2));
    sawFifo ||= s.d.ports.fifoActive;
  }
  assert.deepEqual(log.errors(), []);
  assert.ok(sawFifo, 'the fuzz reached the FIFO ABI');
  assert.deepEqual([...succeeded].sort((a, b) => a - b), [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], 'every op but bind_pirq and 14 succeeded sometimes');
  const { ports } = s.d;
  for (let port = 1; port < ports.validLimit; port++) {
    const p = ports.get(port);
    assert.ok(p.vcpu === 0 || p.vcpu === 1, `port ${port} on vCPU ${p.vcpu}`);
    if (p.state === PortState.Interdomain && p.remoteDom === s.d.domid) {
      const peer = ports.get(p.peer);
      assert.deepEqual([peer.state, peer.peer], [PortState.Interdomain, port], `port ${port}'s peer ${p.peer} points back`);
    }
    if (p.state === PortState.Virq) assert.equal(ports.virqPort(p.peer, p.vcpu), port);
  }
});

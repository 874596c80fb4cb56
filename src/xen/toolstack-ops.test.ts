// The toolstack's hypercalls from a domU: refused as Xen 4.17 refuses them,
// check by check (copy, interface version, domain, permission), never -ENOSYS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { capturedLogger } from '../common/captured-logger.js';
import type { GuestVirtual } from '../memory/guest-virtual.js';
import { HYPERCALL } from './abi/hypercalls.js';
import type { Abi } from './abi/layout.js';
import { XEN_DOMCTL, XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMCTL_SIZE, XEN_SYSCTL_INTERFACE_VERSION, XEN_SYSCTL_SIZE, XENPF_INTERFACE_VERSION } from './abi/toolstack.js';
import { DOMID } from './abi/xen.js';
import { FakeGuest } from './fake-guest.js';
import { HypercallDispatcher } from './hypercall.js';
import { serveRoutes } from './routes.js';
import { TOOLSTACK_ROUTES, toolstackOps } from './toolstack-ops.js';

const ARG = 0x10_0000n;
const DOMU = 1;
const ABIS: Abi[] = ['native', 'compat'];

function setup() {
  const { logger, lines } = capturedLogger();
  const dispatcher = new HypercallDispatcher(logger);
  serveRoutes(dispatcher, 'vcpu', TOOLSTACK_ROUTES, toolstackOps({ domid: DOMU }));
  const guest = new FakeGuest(ARG, 4096);
  const call = (abi: Abi, nr: number, args: bigint[]) =>
    dispatcher.dispatch({ vcpu: 0, abi, guest: guest as unknown as GuestVirtual }, 0, nr, [...args, 0n, 0n, 0n, 0n, 0n].slice(0, 5));
  /** Puts cmd, interface_version and (for domctl) domain at ARG. */
  const header = (cmd: number, version: number, domain = 0) => {
    guest.bytes.fill(0);
    guest.view().setUint32(0, cmd, true);
    guest.view().setUint32(4, version, true);
    guest.view().setUint16(8, domain, true);
  };
  return { call, header, lines };
}

test('sysctl and platform_op: -EFAULT for a struct not all readable, -EACCES for another interface version, then -EPERM', () => {
  const s = setup();
  for (const abi of ABIS) {
    for (const [nr, version] of [[HYPERCALL.sysctl, XEN_SYSCTL_INTERFACE_VERSION], [HYPERCALL.platform_op, XENPF_INTERFACE_VERSION]]) {
      s.header(1, version);
      assert.equal(s.call(abi, nr, [0n]), -14n, 'NULL');
      assert.equal(s.call(abi, nr, [ARG + 4096n - BigInt(XEN_SYSCTL_SIZE[abi]) + 8n]), -14n, 'the struct runs off the mapped window');
      assert.equal(s.call(abi, nr, [ARG]), -1n, 'the current version reaches the permission check');
      s.header(1, 0);
      assert.equal(s.call(abi, nr, [ARG]), -13n, 'an all-zero struct is of another version');
      s.header(1, version + 1);
      assert.equal(s.call(abi, nr, [ARG]), -13n);
    }
  }
  assert.deepEqual(s.lines, [], 'nothing is logged: a guest may ask again and again');
});

test('domctl: copy, version, then the domain (domain 0 and itself exist; DOMID_SELF is not resolved), then -EPERM', () => {
  const s = setup();
  for (const abi of ABIS) {
    const domctl = (cmd: number, domain: number, version = XEN_DOMCTL_INTERFACE_VERSION) => {
      s.header(cmd, version, domain);
      return s.call(abi, HYPERCALL.domctl, [ARG]);
    };
    assert.equal(s.call(abi, HYPERCALL.domctl, [ARG + 4096n - BigInt(XEN_DOMCTL_SIZE[abi]) + 1n]), -14n);
    assert.equal(domctl(3, DOMU, 0x14), -13n);
    assert.equal(domctl(3, DOMU), -1n, 'pausedomain on itself');
    assert.equal(domctl(3, 0), -1n, 'on domain 0');
    assert.equal(domctl(3, 7), -3n, 'on a domain that does not exist');
    assert.equal(domctl(3, DOMID.SELF), -3n, 'DOMID_SELF means nothing to domctl');
    // Commands and ids Xen does not look up: straight to the permission check.
    assert.equal(domctl(XEN_DOMCTL.getdomaininfo, 7), -1n);
    assert.equal(domctl(XEN_DOMCTL.createdomain, 7), -1n);
    assert.equal(domctl(3, DOMID.INVALID), -1n);
    assert.equal(domctl(3, DOMID.IO), -1n);
  }
  assert.deepEqual(s.lines, []);
});

test('paging_domctl_cont: only a current-version shadow_op gets to the domain and permission checks', () => {
  const s = setup();
  const cont = (cmd: number, version: number, domain: number) => {
    s.header(cmd, version, domain);
    return s.call('native', HYPERCALL.arch_1, [ARG]);
  };
  assert.equal(s.call('native', HYPERCALL.arch_1, [0n]), -14n);
  assert.equal(cont(XEN_DOMCTL.shadow_op, 0x14, DOMU), -95n);
  assert.equal(cont(3, XEN_DOMCTL_INTERFACE_VERSION, DOMU), -95n);
  assert.equal(cont(XEN_DOMCTL.shadow_op, XEN_DOMCTL_INTERFACE_VERSION, 9), -3n);
  assert.equal(cont(XEN_DOMCTL.shadow_op, XEN_DOMCTL_INTERFACE_VERSION, DOMU), -1n);
});

test('dm_op: at most two buffers, their descriptors readable, and never for the caller itself', () => {
  const s = setup();
  for (const abi of ABIS) {
    const dm = (domid: bigint, count: bigint, bufs = ARG) => s.call(abi, HYPERCALL.dm_op, [domid, count, bufs]);
    assert.equal(dm(BigInt(DOMU), 3n), -7n, '-E2BIG before anything is read');
    assert.equal(dm(BigInt(DOMU), 3n, 0n), -7n);
    assert.equal(dm(BigInt(DOMU), 1n, 0n), -14n);
    assert.equal(dm(BigInt(DOMU), 2n), -1n, 'its own domain');
    assert.equal(dm(BigInt(DOMU), 0n, 0n), -1n, 'no buffers: nothing to read');
    assert.equal(dm(0n, 0n), -22n, 'domain 0 is no HVM domain');
    assert.equal(dm(9n, 1n), -3n);
    assert.equal(dm(BigInt(DOMID.SELF), 1n), -3n, 'DOMID_SELF is not resolved');
    assert.equal(dm((1n << 16n) | BigInt(DOMU), 0n), -1n, 'the domid is 16 bits');
  }
});

test('hypfs_op is -EPERM and xenpmu_op -EOPNOTSUPP whatever the arguments', () => {
  const s = setup();
  for (const abi of ABIS) {
    assert.equal(s.call(abi, HYPERCALL.hypfs_op, [0n, 0n, 0n]), -1n);
    assert.equal(s.call(abi, HYPERCALL.xenpmu_op, [0n, 0n]), -95n);
  }
  assert.deepEqual(s.lines, []);
});

// The domain's event-channel ports: one table in a SharedArrayBuffer that
// every thread reads. Only the main thread changes bindings, with every vCPU
// held outside KVM_RUN, so the vCPU threads' fast path (send, unmask) reads a
// table that never changes under it.
import { XEN_ERRNO } from '../abi/errno.js';
import { XenError } from '../errors.js';

/** Port states, as Xen's ECS_*. */
export const enum PortState { Free = 0, Reserved = 1, Unbound = 2, Interdomain = 3, Virq = 4, Ipi = 5 }

const FIELDS = 4; // state, notify vCPU, peer (remote domain for unbound, remote port for interdomain, virq number), remote domain
/** The most ports any ABI here addresses (the native 2-level ABI: 64 × 64). */
export const MAX_PORTS = 4096;
/** Xen makes ports valid a bucket at a time, as it first needs them; a port beyond the last bucket is -EINVAL. */
export const PORTS_PER_BUCKET = 64;
const VALID_LIMIT = MAX_PORTS * FIELDS;
/** Per vCPU and VIRQ, the bound port (0: none): timers raise VIRQ_TIMER without scanning the table. */
const VIRQ_MAP = VALID_LIMIT + 1;
const MAP_VCPUS = 64;
const MAP_VIRQS = 24;

export interface Port {
  state: PortState;
  vcpu: number;
  /** Unbound: the remote domain allowed to bind; interdomain: the remote port; virq: the VIRQ. */
  peer: number;
  /** Interdomain: the remote domain. */
  remoteDom: number;
}

export class PortTable {
  private readonly words: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
  }

  static create(): PortTable {
    const table = new PortTable(new SharedArrayBuffer((VIRQ_MAP + MAP_VCPUS * MAP_VIRQS) * 4));
    Atomics.store(table.words, VALID_LIMIT, PORTS_PER_BUCKET);
    // Port 0 is never handed out, as in Xen.
    table.set(0, { state: PortState.Reserved, vcpu: 0, peer: 0, remoteDom: 0 });
    return table;
  }

  /** Ports below this are valid (allocated buckets). */
  get validLimit(): number {
    return Atomics.load(this.words, VALID_LIMIT);
  }

  /** A port number the guest passed: in a bucket Xen has made valid and in range for the ABI, else -EINVAL. */
  check(port: number | bigint, limit: number): number {
    if (typeof port === 'bigint') port = port > BigInt(limit) ? limit : Number(port);
    if (!Number.isInteger(port) || port < 0 || port >= Math.min(limit, this.validLimit)) throw new XenError(XEN_ERRNO.EINVAL);
    return port;
  }

  get(port: number): Port {
    const b = port * FIELDS;
    return { state: Atomics.load(this.words, b), vcpu: Atomics.load(this.words, b + 1), peer: Atomics.load(this.words, b + 2), remoteDom: Atomics.load(this.words, b + 3) };
  }

  set(port: number, p: Port): void {
    const b = port * FIELDS;
    const old = this.get(port);
    if (old.state === PortState.Virq) Atomics.store(this.words, VIRQ_MAP + old.vcpu * MAP_VIRQS + old.peer, 0);
    if (p.state === PortState.Virq) Atomics.store(this.words, VIRQ_MAP + p.vcpu * MAP_VIRQS + p.peer, port);
    Atomics.store(this.words, b + 1, p.vcpu);
    Atomics.store(this.words, b + 2, p.peer);
    Atomics.store(this.words, b + 3, p.remoteDom);
    Atomics.store(this.words, b, p.state);
  }

  free(port: number): void {
    this.set(port, { state: PortState.Free, vcpu: 0, peer: 0, remoteDom: 0 });
  }

  /** The lowest free port below `limit`, making another bucket valid when the valid ones are full, or -ENOSPC. */
  allocate(limit: number): number {
    const end = Math.min(limit, MAX_PORTS);
    for (let port = 1; port < end; port++) {
      if (this.get(port).state !== PortState.Free) continue;
      if (port >= this.validLimit) Atomics.store(this.words, VALID_LIMIT, Math.min(MAX_PORTS, (Math.floor(port / PORTS_PER_BUCKET) + 1) * PORTS_PER_BUCKET));
      return port;
    }
    throw new XenError(XEN_ERRNO.ENOSPC);
  }

  /** The port bound to `virq` on `vcpu`, if any. */
  virqPort(virq: number, vcpu: number): number | undefined {
    const port = Atomics.load(this.words, VIRQ_MAP + vcpu * MAP_VIRQS + virq);
    return port === 0 ? undefined : port;
  }
}

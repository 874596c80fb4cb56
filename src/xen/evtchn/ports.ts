// The domain's event-channel state, in one SharedArrayBuffer every thread
// reads: the ports, the VIRQ map, and the FIFO ABI's registrations (control
// blocks, event array pages, queue tails). Changes to bindings and deliveries
// into the FIFO queues happen under the table's lock, so a vCPU's fast path,
// the timer thread and backend threads never act on a half-changed binding.
import { threadId } from 'node:worker_threads';
import { XEN_ERRNO } from '../abi/errno.js';
import { EVTCHN_FIFO, virqIsGlobal } from '../abi/event-channel.js';
import { XenError } from '../errors.js';

/** Port states, as Xen's ECS_*. */
export const enum PortState { Free = 0, Reserved = 1, Unbound = 2, Interdomain = 3, Virq = 4, Ipi = 5 }

/** Port flags. */
export const enum PortFlag {
  /** The VMM registered the port with the accelerator: sends on it are served on the sending thread. */
  FastPath = 1,
  /** FIFO: an event arrived while the port had no event word; raised when the array page is added. */
  PendingWithoutWord = 2,
}

// Per port: state, notify vCPU, peer (remote domain for unbound, remote port for interdomain, VIRQ number),
// remote domain, FIFO priority, flags, the FIFO queue it was last linked on, and the notification count a
// backend waits on.
const FIELDS = 8;
const enum Field { State = 0, Vcpu = 1, Peer = 2, RemoteDom = 3, Priority = 4, Flags = 5, LastQueue = 6, Notify = 7 }

/** Xen makes ports valid a bucket at a time, as it first needs them; a port beyond the last bucket is -EINVAL. */
export const PORTS_PER_BUCKET = 64;
/** Default number of ports, max_evtchn_port + 1 (xl's max_event_channels): the native 2-level ABI's 4096. */
export const DEFAULT_PORT_COUNT = 4096;
/** vCPUs the per-vCPU maps have room for. */
export const TABLE_VCPUS = 64;
const MAP_VIRQS = 24;
/** FIFO: event words per event-array page, and at most this many pages. */
export const FIFO_WORDS_PER_PAGE = 1024;
export const FIFO_MAX_PAGES = EVTCHN_FIFO.NR_CHANNELS / FIFO_WORDS_PER_PAGE;

const enum Header { ValidLimit = 0, LockOwner = 1, LockDepth = 2, FifoActive = 3, FifoPages = 4 }
const HEADER_WORDS = 5;

export interface Port {
  state: PortState;
  vcpu: number;
  /** Unbound: the remote domain allowed to bind; interdomain: the remote port; virq: the VIRQ. */
  peer: number;
  /** Interdomain: the remote domain. */
  remoteDom: number;
}

/** A control block's place: the frame and the offset in it. */
export interface ControlBlockPlace {
  gfn: number;
  offset: number;
}

export class PortTable {
  private readonly words: Int32Array;
  /** Ports this table holds: max_evtchn_port + 1. */
  readonly capacity: number;
  private readonly header: number;
  private readonly virqMap: number;
  private readonly arrayPages: number;
  private readonly controlBlocks: number;
  private readonly tails: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
    this.capacity = PortTable.capacityOf(this.words.length);
    this.header = this.capacity * FIELDS;
    this.virqMap = this.header + HEADER_WORDS;
    this.arrayPages = this.virqMap + TABLE_VCPUS * MAP_VIRQS;
    this.controlBlocks = this.arrayPages + FIFO_MAX_PAGES;
    this.tails = this.controlBlocks + TABLE_VCPUS * 2;
  }

  private static readonly fixedWords = HEADER_WORDS + TABLE_VCPUS * MAP_VIRQS + FIFO_MAX_PAGES + TABLE_VCPUS * 2 + TABLE_VCPUS * EVTCHN_FIFO.MAX_QUEUES;

  private static capacityOf(words: number): number {
    return (words - PortTable.fixedWords) / FIELDS;
  }

  /** A table for ports 0 .. portCount − 1. */
  static create(portCount = DEFAULT_PORT_COUNT): PortTable {
    if (!Number.isInteger(portCount) || portCount < 2 || portCount > EVTCHN_FIFO.NR_CHANNELS) throw new RangeError(`port count ${portCount} out of range`);
    const table = new PortTable(new SharedArrayBuffer((portCount * FIELDS + PortTable.fixedWords) * 4));
    Atomics.store(table.words, table.header + Header.ValidLimit, Math.min(PORTS_PER_BUCKET, portCount));
    // Port 0 is never handed out, as in Xen.
    table.set(0, { state: PortState.Reserved, vcpu: 0, peer: 0, remoteDom: 0 });
    return table;
  }

  /**
   * Runs `fn` holding the table's lock. The lock is per thread and re-entrant: a binding op may
   * deliver an event, which takes it again. Holders never wait for another thread inside it.
   */
  locked<T>(fn: () => T): T {
    const owner = this.header + Header.LockOwner;
    const me = threadId + 1;
    if (Atomics.load(this.words, owner) === me) {
      Atomics.add(this.words, this.header + Header.LockDepth, 1);
    } else {
      for (let spins = 0; ; spins++) {
        const held = Atomics.compareExchange(this.words, owner, 0, me);
        if (held === 0) break;
        // Holders keep it for microseconds; past a short spin, sleep until it is released.
        if (spins > 64) Atomics.wait(this.words, owner, held, 1);
      }
    }
    try {
      return fn();
    } finally {
      if (Atomics.load(this.words, this.header + Header.LockDepth) > 0) Atomics.sub(this.words, this.header + Header.LockDepth, 1);
      else {
        Atomics.store(this.words, owner, 0);
        Atomics.notify(this.words, owner, 1);
      }
    }
  }

  /** Ports below this are valid (allocated buckets). */
  get validLimit(): number {
    return Atomics.load(this.words, this.header + Header.ValidLimit);
  }

  /** A port number the guest passed: in a bucket Xen has made valid and below the ABI's `limit`, else -EINVAL. */
  check(port: number | bigint, limit: number): number {
    if (typeof port === 'bigint') port = port > BigInt(limit) ? limit : Number(port);
    if (!Number.isInteger(port) || port < 0 || port >= Math.min(limit, this.validLimit)) throw new XenError(XEN_ERRNO.EINVAL);
    return port;
  }

  private field(port: number, f: Field): number {
    return Atomics.load(this.words, port * FIELDS + f);
  }

  state(port: number): PortState {
    return this.field(port, Field.State);
  }
  vcpu(port: number): number {
    return this.field(port, Field.Vcpu);
  }
  peer(port: number): number {
    return this.field(port, Field.Peer);
  }
  remoteDom(port: number): number {
    return this.field(port, Field.RemoteDom);
  }

  get(port: number): Port {
    return { state: this.state(port), vcpu: this.vcpu(port), peer: this.peer(port), remoteDom: this.remoteDom(port) };
  }

  /** Binds a port anew: flags and priority start over, as for a fresh channel in Xen. */
  set(port: number, p: Port): void {
    this.changeBinding(port, p);
    Atomics.store(this.words, port * FIELDS + Field.Priority, EVTCHN_FIFO.PRIORITY_DEFAULT);
    Atomics.store(this.words, port * FIELDS + Field.Flags, 0);
  }

  /**
   * A port whose far end changed (bound, closed): it keeps its priority and any event waiting for its
   * FIFO word, but leaves the fast path until the VMM registers it again.
   */
  changeBinding(port: number, p: Port): void {
    const b = port * FIELDS;
    const old = this.get(port);
    Atomics.and(this.words, b + Field.Flags, ~PortFlag.FastPath);
    if (old.state === PortState.Virq) Atomics.store(this.words, this.virqSlot(old.peer, old.vcpu), 0);
    if (p.state === PortState.Virq) Atomics.store(this.words, this.virqSlot(p.peer, p.vcpu), port);
    Atomics.store(this.words, b + Field.Vcpu, p.vcpu);
    Atomics.store(this.words, b + Field.Peer, p.peer);
    Atomics.store(this.words, b + Field.RemoteDom, p.remoteDom);
    Atomics.store(this.words, b + Field.State, p.state);
  }

  /** Moves a port's events to another vCPU (EVTCHNOP_bind_vcpu), keeping the rest of its binding. */
  setVcpu(port: number, vcpu: number): void {
    Atomics.store(this.words, port * FIELDS + Field.Vcpu, vcpu);
  }

  free(port: number): void {
    this.set(port, { state: PortState.Free, vcpu: 0, peer: 0, remoteDom: 0 });
  }

  /**
   * The lowest free port below `limit`, making another bucket valid when the valid ones are full, or
   * -ENOSPC. A free port `busy` says is still in use (FIFO: still linked on a queue) is skipped, as in Xen.
   */
  allocate(limit: number, busy: (port: number) => boolean = () => false): number {
    const end = Math.min(limit, this.capacity);
    for (let port = 1; port < end; port++) {
      if (this.state(port) !== PortState.Free || busy(port)) continue;
      if (port >= this.validLimit) {
        const buckets = Math.floor(port / PORTS_PER_BUCKET) + 1;
        Atomics.store(this.words, this.header + Header.ValidLimit, Math.min(this.capacity, buckets * PORTS_PER_BUCKET));
      }
      return port;
    }
    throw new XenError(XEN_ERRNO.ENOSPC);
  }

  /** The port bound to `virq` on `vcpu`, if any; a global VIRQ's is vCPU 0's, wherever bind_vcpu moved its events. */
  virqPort(virq: number, vcpu: number): number | undefined {
    const port = Atomics.load(this.words, this.virqSlot(virq, vcpu));
    return port === 0 ? undefined : port;
  }

  private virqSlot(virq: number, vcpu: number): number {
    return this.virqMap + (virqIsGlobal(virq) ? 0 : vcpu) * MAP_VIRQS + virq;
  }

  hasFlag(port: number, flag: PortFlag): boolean {
    return (this.field(port, Field.Flags) & flag) !== 0;
  }
  setFlag(port: number, flag: PortFlag, on: boolean): void {
    if (on) Atomics.or(this.words, port * FIELDS + Field.Flags, flag);
    else Atomics.and(this.words, port * FIELDS + Field.Flags, ~flag);
  }

  priority(port: number): number {
    return this.field(port, Field.Priority);
  }
  setPriority(port: number, priority: number): void {
    Atomics.store(this.words, port * FIELDS + Field.Priority, priority);
  }

  /** FIFO: the queue (vCPU × 16 + priority) the port was last linked on. */
  lastQueue(port: number): number {
    return this.field(port, Field.LastQueue);
  }
  setLastQueue(port: number, queue: number): void {
    Atomics.store(this.words, port * FIELDS + Field.LastQueue, queue);
  }

  /** The words a backend waits on for each port's notifications (index: the port). */
  notifyWords(): { words: Int32Array; index: (port: number) => number } {
    return { words: this.words, index: (port) => port * FIELDS + Field.Notify };
  }

  // FIFO ABI registrations.

  get fifoActive(): boolean {
    return Atomics.load(this.words, this.header + Header.FifoActive) !== 0;
  }
  set fifoActive(on: boolean) {
    Atomics.store(this.words, this.header + Header.FifoActive, on ? 1 : 0);
  }

  /** Event-array pages added so far. */
  get fifoPages(): number {
    return Atomics.load(this.words, this.header + Header.FifoPages);
  }
  /** The frame of event-array page `index`. */
  fifoPage(index: number): number {
    return Atomics.load(this.words, this.arrayPages + index);
  }
  /** Adds an event-array page; its frame is stored before the count grows, so readers never see a page without one. */
  addFifoPage(gfn: number): void {
    const n = this.fifoPages;
    Atomics.store(this.words, this.arrayPages + n, gfn);
    Atomics.store(this.words, this.header + Header.FifoPages, n + 1);
  }

  controlBlock(vcpu: number): ControlBlockPlace | undefined {
    const gfn = Atomics.load(this.words, this.controlBlocks + vcpu * 2);
    return gfn === 0 ? undefined : { gfn: gfn - 1, offset: Atomics.load(this.words, this.controlBlocks + vcpu * 2 + 1) };
  }
  setControlBlock(vcpu: number, place: ControlBlockPlace): void {
    Atomics.store(this.words, this.controlBlocks + vcpu * 2 + 1, place.offset);
    Atomics.store(this.words, this.controlBlocks + vcpu * 2, place.gfn + 1);
  }

  /** A FIFO queue's tail port (0: empty), which Xen keeps to itself rather than in the guest's control block. */
  tail(queue: number): number {
    return Atomics.load(this.words, this.tails + queue);
  }
  setTail(queue: number, port: number): void {
    Atomics.store(this.words, this.tails + queue, port);
  }

  /** Back to the 2-level ABI: control blocks, array pages and queue tails forgotten. */
  dropFifo(): void {
    this.fifoActive = false;
    Atomics.store(this.words, this.header + Header.FifoPages, 0);
    this.words.fill(0, this.arrayPages, this.tails + TABLE_VCPUS * EVTCHN_FIFO.MAX_QUEUES);
  }
}

/** The FIFO queue number of a vCPU's priority. */
export const fifoQueue = (vcpu: number, priority: number) => vcpu * EVTCHN_FIFO.MAX_QUEUES + priority;

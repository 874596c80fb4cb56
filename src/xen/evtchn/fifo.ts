// Delivery in the FIFO ABI, as Xen does it. Each port has a 32-bit event word
// in pages the guest hands over (EVTCHNOP_expand_array); each vCPU has a
// control block (EVTCHNOP_init_control) with a ready bit and a queue head per
// priority. Raising an event sets PENDING; an unmasked, unlinked event is
// linked at the tail of its vCPU's queue for its priority (the tail's LINK
// field, or the head when the queue is empty) and an empty queue sets its
// ready bit, which raises the upcall. The guest consumes from the heads; the
// tails are the hypervisor's, kept in the port table. Linking runs under the
// port table's lock; the guest's own changes to the words are met with
// compare-and-swap, as on real hardware.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { XEN_ERRNO } from '../abi/errno.js';
import { EVTCHN_FIFO, evtchnFifoControlBlock } from '../abi/event-channel.js';
import { XenError } from '../errors.js';
import { FIFO_MAX_PAGES, FIFO_WORDS_PER_PAGE, fifoQueue, PortFlag, PortState, type PortTable } from './ports.js';

const PAGE_SIZE = 4096;
const PENDING = 1 << EVTCHN_FIFO.PENDING;
const MASKED = 1 << EVTCHN_FIFO.MASKED;
const LINKED = 1 << EVTCHN_FIFO.LINKED;
const BUSY = 1 << EVTCHN_FIFO.BUSY;
const CONTROL_BLOCK = evtchnFifoControlBlock.native;

/** Sets `bits` in a word and says whether they were all set already. */
function testAndSet(word: Int32Array, bits: number): boolean {
  return (Atomics.or(word, 0, bits) & bits) === bits;
}

export class Fifo {
  constructor(
    private readonly memory: GuestMemory,
    private readonly ports: PortTable,
    /** vcpu_mark_events_pending: set the vCPU's evtchn_upcall_pending and inject if it was clear. */
    private readonly markEventsPending: (vcpu: number) => void,
    /** Wakes the vCPUs sleeping in SCHEDOP_poll: a newly pending port may be theirs, masked or not. */
    private readonly wakePollers: () => void,
  ) {}

  /** The port's event word, or undefined while no array page covers it (or the page is no longer backed). */
  private word(port: number): Int32Array | undefined {
    const page = Math.floor(port / FIFO_WORDS_PER_PAGE);
    if (page >= this.ports.fifoPages) return undefined;
    return this.memory.int32At(this.ports.fifoPage(page) * PAGE_SIZE + (port % FIFO_WORDS_PER_PAGE) * 4);
  }

  /** A word of the vCPU's control block at `offset`, or undefined before init_control. */
  private controlWord(vcpu: number, offset: number): Int32Array | undefined {
    const place = this.ports.controlBlock(vcpu);
    return place && this.memory.int32At(place.gfn * PAGE_SIZE + place.offset + offset);
  }

  /** Raises the port's event for `vcpu`. The caller holds the port table's lock. */
  setPending(port: number, vcpu: number): void {
    const word = this.word(port);
    if (!word) {
      // Kept until the page arrives (expandArray raises it then), as Xen does; nothing to wake yet.
      this.ports.setFlag(port, PortFlag.PendingWithoutWord, true);
      return;
    }
    const wasPending = testAndSet(word, PENDING);
    const emptied = this.link(port, vcpu, word);
    if (emptied !== undefined) {
      const ready = this.controlWord(vcpu, CONTROL_BLOCK.offsets.ready);
      if (ready && !testAndSet(ready, 1 << emptied)) this.markEventsPending(vcpu);
    }
    if (!wasPending) this.wakePollers();
  }

  /**
   * Links a pending event onto its queue unless it is masked, already linked, or its vCPU has no
   * control block (the guest must not unmask before it has one, so Xen drops the link). Returns the
   * priority whose queue was empty, whose ready bit the caller then sets.
   */
  private link(port: number, vcpu: number, word: Int32Array): number | undefined {
    if (!this.ports.controlBlock(vcpu)) return undefined;
    if ((Atomics.load(word, 0) & MASKED) !== 0 || testAndSet(word, LINKED)) return undefined;
    const priority = this.ports.priority(port);
    const queue = fifoQueue(vcpu, priority);
    // An event that was the tail of another queue (its vCPU or priority changed) leaves that queue
    // empty: forget the tail there, so the next event on it does not link behind this one.
    const last = this.ports.lastQueue(port);
    if (this.ports.tail(last) === port) this.ports.setTail(last, 0);
    this.ports.setLastQueue(port, queue);
    const tail = this.ports.tail(queue);
    const linked = tail !== 0 && tail !== port && this.linkAfter(tail, port);
    this.ports.setTail(queue, port);
    if (linked) return undefined;
    const head = this.controlWord(vcpu, CONTROL_BLOCK.offsets.head + priority * 4);
    if (head) Atomics.store(head, 0, port);
    return priority;
  }

  /**
   * Sets the tail's LINK to `port` if the tail is still linked (else the guest consumed it: the queue
   * is empty). The guest may only mask, unmask, clear PENDING or unlink a linked word; BUSY holds off
   * its unmasking, so a few retries always get through to a well-behaved guest.
   */
  private linkAfter(tailPort: number, port: number): boolean {
    const tail = this.word(tailPort);
    if (!tail) return false;
    const attempt = (): boolean | undefined => {
      const w = Atomics.load(tail, 0);
      if ((w & LINKED) === 0) return false;
      const next = (w & ~(BUSY | EVTCHN_FIFO.LINK_MASK)) | port;
      return Atomics.compareExchange(tail, 0, w, next) === w ? true : undefined;
    };
    const first = attempt();
    if (first !== undefined) return first;
    Atomics.or(tail, 0, BUSY);
    for (let tries = 0; tries < 4; tries++) {
      const done = attempt();
      if (done === undefined) continue;
      if (!done) Atomics.and(tail, 0, ~BUSY);
      return done;
    }
    // A guest rewriting the word behind our back loses this link, as on Xen.
    Atomics.and(tail, 0, ~BUSY);
    return true;
  }

  clearPending(port: number): void {
    this.ports.setFlag(port, PortFlag.PendingWithoutWord, false);
    const word = this.word(port);
    // Only PENDING: the guest unlinks, and skips events that are no longer pending.
    if (word) Atomics.and(word, 0, ~PENDING);
  }

  /** EVTCHNOP_unmask: clears MASKED and links the event again if it is pending. */
  unmask(port: number, vcpu: number): void {
    const word = this.word(port);
    if (!word) return;
    Atomics.and(word, 0, ~MASKED);
    if ((Atomics.load(word, 0) & PENDING) !== 0) this.setPending(port, vcpu);
  }

  isPending(port: number): boolean {
    const word = this.word(port);
    return word !== undefined && (Atomics.load(word, 0) & PENDING) !== 0;
  }

  isMasked(port: number): boolean {
    const word = this.word(port);
    return word === undefined || (Atomics.load(word, 0) & MASKED) !== 0;
  }

  /** Still linked on a queue: such a port is not handed out again until the guest unlinks it. */
  isBusy(port: number): boolean {
    const word = this.word(port);
    return word !== undefined && (Atomics.load(word, 0) & LINKED) !== 0;
  }

  /**
   * EVTCHNOP_init_control for a valid vCPU. The first one switches the domain to FIFO: bound ports
   * keep their bindings, take the default priority, and an event pending in the 2-level bitmap is
   * raised again once an array page covers the port. Main thread, under the table's lock.
   */
  initControl(vcpu: number, gfn: bigint, offset: number, twoLevelPending: (port: number) => boolean): void {
    if (offset > PAGE_SIZE - CONTROL_BLOCK.size || offset % 8 !== 0) throw new XenError(XEN_ERRNO.EINVAL);
    const frame = this.guestFrame(gfn);
    if (!this.ports.fifoActive) {
      for (let port = 1; port < this.ports.validLimit; port++) {
        if (this.ports.state(port) === PortState.Free) continue;
        if (twoLevelPending(port)) this.ports.setFlag(port, PortFlag.PendingWithoutWord, true);
        this.ports.setPriority(port, EVTCHN_FIFO.PRIORITY_DEFAULT);
      }
      this.ports.fifoActive = true;
    } else if (this.ports.controlBlock(vcpu)) {
      throw new XenError(XEN_ERRNO.EINVAL);
    }
    this.ports.setControlBlock(vcpu, { gfn: frame, offset });
  }

  /** EVTCHNOP_expand_array: one more page of event words; events that waited for it are raised now. */
  expandArray(gfn: bigint): void {
    if (!this.ports.fifoActive) throw new XenError(XEN_ERRNO.EOPNOTSUPP);
    if (this.ports.fifoPages >= FIFO_MAX_PAGES) throw new XenError(XEN_ERRNO.ENOSPC);
    const first = this.ports.fifoPages * FIFO_WORDS_PER_PAGE;
    this.ports.addFifoPage(this.guestFrame(gfn));
    const end = Math.min(first + FIFO_WORDS_PER_PAGE, this.ports.validLimit);
    for (let port = first; port < end; port++) {
      if (!this.ports.hasFlag(port, PortFlag.PendingWithoutWord)) continue;
      this.ports.setFlag(port, PortFlag.PendingWithoutWord, false);
      this.setPending(port, this.ports.vcpu(port));
    }
  }

  /** A frame Xen would map for the guest: writable RAM (not an overlay, not a hole), else -EINVAL. */
  private guestFrame(gfn: bigint): number {
    const gpa = gfn * BigInt(PAGE_SIZE);
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER) || !this.memory.isRam(Number(gpa), PAGE_SIZE)) throw new XenError(XEN_ERRNO.EINVAL);
    return Number(gfn);
  }
}

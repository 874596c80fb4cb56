// Domain 0's ends of interdomain channels: the VMM's own backends (XenStore,
// console, block, network) play domain 0, as xenstored and the device
// backends do under Xen. A backend offers a port the guest binds, or binds a
// port the guest offered to domain 0, and gets a channel: a notifier it can
// wait on from any thread (the eventfd analogue) and a way to raise the
// guest's port. Domain 0's port numbers live here, on the main thread; the
// guest's side lives in the port table every thread reads.
import { XEN_ERRNO } from '../abi/errno.js';
import { XenError } from '../errors.js';
import type { EventDelivery } from './delivery.js';
import { PortFlag, PortState, type PortTable } from './ports.js';

/** The domain the VMM's backends are. */
export const BACKEND_DOMID = 0;

/** An EventNotifier as another thread attaches to it. */
export interface EventNotifierHandle {
  buffer: SharedArrayBuffer;
  index: number;
}

/** A count of notifications in shared memory, waited on like an eventfd. */
export class EventNotifier {
  constructor(
    private readonly words: Int32Array,
    private readonly index: number,
  ) {}

  static attach(h: EventNotifierHandle): EventNotifier {
    return new EventNotifier(new Int32Array(h.buffer), h.index);
  }

  /** For another thread that wakes the same waiter (a network device's reader wakes its serving thread). */
  get handle(): EventNotifierHandle {
    return { buffer: this.words.buffer as SharedArrayBuffer, index: this.index };
  }

  /** Notifications so far (wrapping); wait for it to move past a value read earlier. */
  get count(): number {
    return Atomics.load(this.words, this.index);
  }

  notify(): void {
    Atomics.add(this.words, this.index, 1);
    Atomics.notify(this.words, this.index);
  }

  /** Blocks a worker thread until the count differs from `seen` or `timeoutMs` passes; the count then. */
  wait(seen: number, timeoutMs = Infinity): number {
    Atomics.wait(this.words, this.index, seen, timeoutMs);
    return this.count;
  }

  /**
   * The main thread's wait: resolves with the count once it differs from `seen`, always on a later
   * turn of the event loop, so a guest notifying without pause cannot keep the main thread's other
   * work (forwarded hypercalls, sockets) from running.
   */
  async next(seen: number): Promise<number> {
    const w = Atomics.waitAsync(this.words, this.index, seen);
    if (w.async) await w.value;
    else await new Promise((resolve) => setImmediate(resolve));
    return this.count;
  }
}

/** The notifier of a guest port bound to domain 0, readable from any thread holding the port table. */
export function backendNotifier(ports: PortTable, guestPort: number): EventNotifier {
  const { words, index } = ports.notifyWords();
  return new EventNotifier(words, index(guestPort));
}

/**
 * A backend's serving loop on the main thread: `service()` now, then again after every
 * notification on the channel `channel()` names (it changes after a soft reset), until `stopped()`.
 * The count is read before each pass, so a notification that comes during one is never missed.
 */
export async function serveNotifications(channel: () => BackendChannel, service: () => void, stopped: () => boolean): Promise<void> {
  while (!stopped()) {
    const notifier = channel().notifier;
    const seen = notifier.count;
    service();
    await notifier.next(seen);
  }
}

/** Domain 0's end of one channel with the guest. */
export class BackendChannel {
  readonly notifier: EventNotifier;

  constructor(
    private readonly ports: PortTable,
    private readonly events: EventDelivery,
    readonly backendPort: number,
    readonly guestPort: number,
  ) {
    this.notifier = backendNotifier(ports, guestPort);
  }

  /** Whether the guest's port is still bound to this one. */
  get connected(): boolean {
    const p = this.guestPort;
    return this.ports.state(p) === PortState.Interdomain && this.ports.remoteDom(p) === BACKEND_DOMID && this.ports.peer(p) === this.backendPort;
  }

  /** EVTCHNOP_send from domain 0: raises the guest's port; dropped once the guest closed it, as in Xen. */
  notifyGuest(): void {
    this.ports.locked(() => {
      if (this.connected) this.events.setPending(this.guestPort, this.ports.vcpu(this.guestPort));
    });
  }

  /**
   * Registers the channel with the accelerator: the guest's sends then wake the notifier from the
   * sending vCPU's thread. Unregistered, they go through the VMM on the main thread.
   */
  setFastPath(on: boolean): void {
    this.ports.locked(() => {
      if (this.connected) this.ports.setFlag(this.guestPort, PortFlag.FastPath, on);
    });
  }
}

export class BackendPorts {
  /** Domain 0's ports: the channel each is bound by, or undefined while offered and unbound. */
  private readonly offered = new Map<number, BackendChannel | undefined>();
  /** Backends that follow the guest to a new port of its own bound to theirs (after it closed the old one). */
  private readonly followers = new Map<number, (channel: BackendChannel) => void>();

  constructor(
    private readonly ports: PortTable,
    private readonly events: EventDelivery,
    private readonly portLimit: () => number,
  ) {}

  private allocate(): number {
    let port = 1;
    while (this.offered.has(port)) port++;
    return port;
  }

  /** EVTCHNOP_alloc_unbound in domain 0 for the guest: the guest connects with bind_interdomain(0, port). */
  offer(): number {
    const port = this.allocate();
    this.offered.set(port, undefined);
    return port;
  }

  /** The channel on an offered port, once the guest bound it. */
  channel(backendPort: number): BackendChannel | undefined {
    return this.offered.get(backendPort);
  }

  /** EVTCHNOP_bind_interdomain from domain 0 to a guest port offered to domain 0; -EINVAL otherwise. */
  bind(guestPort: number): BackendChannel {
    return this.ports.locked(() => {
      const p = this.ports.get(this.ports.check(guestPort, this.portLimit()));
      if (p.state !== PortState.Unbound || p.peer !== BACKEND_DOMID) throw new XenError(XEN_ERRNO.EINVAL);
      const backendPort = this.allocate();
      this.ports.changeBinding(guestPort, { state: PortState.Interdomain, vcpu: p.vcpu, peer: backendPort, remoteDom: BACKEND_DOMID });
      const channel = this.connect(backendPort, guestPort);
      // As Xen does for the binding side: anything the guest sent while unbound is not lost.
      channel.notifier.notify();
      return channel;
    });
  }

  /**
   * The toolstack's setup of a channel the guest learns from a parameter (XenStore, console): a new
   * guest port, already bound to a new domain-0 port.
   */
  create(): BackendChannel {
    return this.ports.locked(() => {
      const guestPort = this.ports.allocate(this.portLimit(), (port) => this.events.isBusy(port));
      this.ports.set(guestPort, { state: PortState.Unbound, vcpu: 0, peer: BACKEND_DOMID, remoteDom: 0 });
      return this.bind(guestPort);
    });
  }

  /** EVTCHNOP_close in domain 0: the guest's end goes back to unbound, waiting for domain 0 again. */
  close(backendPort: number): void {
    this.ports.locked(() => {
      const channel = this.offered.get(backendPort);
      if (channel?.connected) {
        const p = this.ports.get(channel.guestPort);
        this.ports.changeBinding(channel.guestPort, { state: PortState.Unbound, vcpu: p.vcpu, peer: BACKEND_DOMID, remoteDom: 0 });
      }
      this.offered.delete(backendPort);
      this.followers.delete(backendPort);
    });
  }

  /**
   * Has `follow` called with the new channel whenever the guest binds `backendPort` again from a
   * port of its own, as a guest may after closing its end (xenstored keeps serving it so).
   */
  onGuestRebind(backendPort: number, follow: (channel: BackendChannel) => void): void {
    this.followers.set(backendPort, follow);
  }

  /** The guest's bind of `backendPort` is complete: its backend, if it follows, moves to the channel. */
  guestBound(backendPort: number): void {
    const channel = this.offered.get(backendPort);
    if (channel) this.followers.get(backendPort)?.(channel);
  }

  /** The guest binds an offered port (its bind_interdomain to domain 0); -EINVAL unless offered and unbound. */
  guestBinds(backendPort: number, guestPort: number): void {
    if (!this.offered.has(backendPort) || this.offered.get(backendPort) !== undefined) throw new XenError(XEN_ERRNO.EINVAL);
    this.connect(backendPort, guestPort);
  }

  /** The guest closed its end: domain 0's port is offered again, and its backend woken to see it. */
  guestClosed(backendPort: number): void {
    const channel = this.offered.get(backendPort);
    this.offered.set(backendPort, undefined);
    channel?.notifier.notify();
  }

  private connect(backendPort: number, guestPort: number): BackendChannel {
    const channel = new BackendChannel(this.ports, this.events, backendPort, guestPort);
    this.offered.set(backendPort, channel);
    return channel;
  }
}

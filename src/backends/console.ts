// The PV console's backend, the part xenconsoled plays under Xen: the console
// page holds an output ring the guest fills and an input ring the backend
// fills, each with free-running 32-bit indexes; the console event channel
// says "look again" both ways. The guest owns out_prod and in_cons, the
// backend out_cons and in_prod. The backend keeps its own copies of the
// indexes it owns, and a producer index from the guest that claims more than
// the ring holds is a guest bug: the ring is resynchronised and the bytes
// dropped, with a rate-limited log line.
import type { RateLimitedLog } from '../common/log.js';
import { xenconsInterface } from '../xen/abi/console.js';
import { serveNotifications, type BackendChannel, type BackendPorts } from '../xen/evtchn/backend.js';
import { XenError } from '../xen/errors.js';
import { DeviceError, type DeviceHooks, type GrantedPages, type MappedGrants, type XenbusDevice } from './xenbus.js';

const LAYOUT = xenconsInterface.native;
const IN_SIZE = LAYOUT.offsets.out - LAYOUT.offsets.in;
const OUT_SIZE = LAYOUT.offsets.in_cons - LAYOUT.offsets.out;

/** Console input waiting for a reader, shared by the console ring and CONSOLEIO_read. */
export class ConsoleInput {
  private queued: number[] = [];
  private readonly listeners = new Set<() => void>();

  push(bytes: Uint8Array): void {
    for (const b of bytes) this.queued.push(b);
    for (const l of this.listeners) l();
  }

  /** Up to `max` queued bytes, left queued. */
  peek(max: number): Uint8Array {
    return Uint8Array.from(this.queued.slice(0, max));
  }

  consume(count: number): void {
    this.queued = this.queued.slice(count);
  }

  /** Takes up to `max` bytes. */
  take(max: number): Uint8Array {
    const out = this.peek(max);
    this.consume(out.length);
    return out;
  }

  get length(): number {
    return this.queued.length;
  }

  onInput(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export class ConsoleRing {
  private readonly words: Uint32Array;
  private outCons: number;
  private inProd: number;
  private stopped = false;

  constructor(
    private readonly page: Uint8Array,
    private channel: BackendChannel,
    private readonly output: (bytes: Uint8Array) => void,
    private readonly input: ConsoleInput,
    private readonly guestLog: RateLimitedLog,
  ) {
    this.words = new Uint32Array(page.buffer, page.byteOffset, page.length / 4);
    this.outCons = this.index('out_cons');
    this.inProd = this.index('in_prod');
  }

  private index(name: 'in_cons' | 'in_prod' | 'out_cons' | 'out_prod'): number {
    return Atomics.load(this.words, LAYOUT.offsets[name] / 4);
  }

  private setIndex(name: 'in_prod' | 'out_cons', value: number): void {
    Atomics.store(this.words, LAYOUT.offsets[name] / 4, value >>> 0);
  }

  /** Copies what the guest wrote to the output; the number of bytes taken. */
  drainOutput(): number {
    const prod = this.index('out_prod');
    const avail = (prod - this.outCons) >>> 0;
    if (avail === 0) return 0;
    if (avail > OUT_SIZE) {
      this.guestLog.warn('console-out', { out_prod: prod, out_cons: this.outCons }, 'guest console ring: out_prod is more than a ring ahead; dropping to resynchronise');
      this.outCons = prod;
      this.setIndex('out_cons', prod);
      return 0;
    }
    const bytes = new Uint8Array(avail);
    for (let i = 0; i < avail; i++) bytes[i] = this.page[LAYOUT.offsets.out + ((this.outCons + i) % OUT_SIZE)];
    this.outCons = (this.outCons + avail) >>> 0;
    this.setIndex('out_cons', this.outCons);
    this.output(bytes);
    return avail;
  }

  /** Moves queued input into the guest's input ring, as far as it has room; the number of bytes given. */
  fillInput(): number {
    const cons = this.index('in_cons');
    const used = (this.inProd - cons) >>> 0;
    if (used > IN_SIZE) {
      this.guestLog.warn('console-in', { in_prod: this.inProd, in_cons: cons }, 'guest console ring: in_cons is ahead of in_prod; input waits');
      // Put back the in_prod the guest may have written over, so that it can catch up with it.
      this.setIndex('in_prod', this.inProd);
      return 0;
    }
    const bytes = this.input.take(IN_SIZE - used);
    for (let i = 0; i < bytes.length; i++) this.page[LAYOUT.offsets.in + ((this.inProd + i) % IN_SIZE)] = bytes[i];
    this.inProd = (this.inProd + bytes.length) >>> 0;
    this.setIndex('in_prod', this.inProd);
    return bytes.length;
  }

  /** One pass: output out, input in, and the guest told if anything moved. */
  service(): void {
    if (this.drainOutput() + this.fillInput() > 0) this.channel.notifyGuest();
  }

  /** Serves the ring whenever the guest notifies or input arrives, until stop(). */
  async run(): Promise<void> {
    const offInput = this.input.onInput(() => this.channel.notifier.notify());
    try {
      await serveNotifications(() => this.channel, () => this.service(), () => this.stopped);
      this.service();
    } finally {
      offInput();
    }
  }

  /** Serves the same page over a new channel (after a soft reset), from the indexes the page holds. */
  rebind(channel: BackendChannel): void {
    const old = this.channel;
    this.channel = channel;
    this.outCons = this.index('out_cons');
    this.inProd = this.index('in_prod');
    old.notifier.notify();
  }

  stop(): void {
    this.stopped = true;
    this.channel.notifier.notify();
  }
}

/**
 * A secondary console (device/console/N, N ≥ 1): its frontend shares a ring page by grant
 * reference and offers an unbound event channel to domain 0; the backend maps the page, binds
 * the channel and serves the ring as the primary console's. Output goes where the primary's does;
 * secondary consoles take no input.
 */
export class SecondaryConsole implements DeviceHooks {
  private ring: ConsoleRing | undefined;
  private channel: BackendChannel | undefined;
  private mapped: MappedGrants | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly backends: BackendPorts,
    private readonly grants: GrantedPages,
    private readonly output: (bytes: Uint8Array) => void,
    private readonly guestLog: RateLimitedLog,
  ) {}

  connect(device: XenbusDevice): void {
    const ref = device.frontendNumber('ring-ref');
    const port = device.frontendNumber('port');
    const mapped = this.grants.map(device.spec.frontDomid, [ref], true);
    try {
      this.channel = this.backends.bind(port);
    } catch (e) {
      mapped.unmap();
      if (!(e instanceof XenError)) throw e;
      throw new DeviceError(`cannot bind event channel ${port} of the frontend (Xen errno ${e.errno})`);
    }
    this.mapped = mapped;
    this.channel.setFastPath(true);
    this.ring = new ConsoleRing(mapped.page(0), this.channel, this.output, new ConsoleInput(), this.guestLog);
    this.running = this.ring.run();
  }

  disconnect(): void {
    this.ring?.stop();
    if (this.channel) this.backends.close(this.channel.backendPort);
    // The ring's last pass runs as it stops: the page is let go only after it.
    const mapped = this.mapped;
    void this.running?.then(() => mapped?.unmap());
    this.ring = undefined;
    this.channel = undefined;
    this.mapped = undefined;
  }

  /** Resolves once the ring has stopped serving. */
  async stopped(): Promise<void> {
    await this.running;
  }
}

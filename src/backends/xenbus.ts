// The backend half of a xenbus device, as Xen's toolstack and a backend
// driver play it together: the toolstack creates the device's frontend
// directory (the guest's, domain 0 reads it) and backend directory (domain
// 0's, the guest reads it) with their cross-references and state
// Initialising; the backend announces its features and waits (InitWait);
// when the frontend has published its rings (Initialised or Connected) the
// backend connects, and says Connected once it serves them (a device served
// by a thread of its own says so when that thread has started: a frontend
// may send its first request the moment it sees Connected, and wait for the
// answer only so long); when the frontend closes, so does
// the backend, and a device the toolstack unplugged (online = 0) is then
// removed. A device type (console, block, network) supplies only what is
// its own: extra nodes, and how to connect to and disconnect from the rings.
import { quoteGuestText, type RateLimitedLog } from '../common/log.js';
import { XenbusState } from '../xen/abi/xenbus.js';
import { domainPath } from '../xenstore/domain-tree.js';
import type { Perm } from '../xenstore/store.js';

/** What a device needs of the store: domain 0's own access. */
export interface XenbusStore {
  read(path: string): string;
  write(path: string, value: string): void;
  mkdir(path: string): void;
  rm(path: string): void;
  exists(path: string): boolean;
  setPerms(path: string, perms: Perm[]): void;
  watch(path: string, token: string, fire: (path: string, token: string) => void): () => void;
}

/** Pages a backend has mapped by grant reference, until it unmaps them. */
export interface MappedGrants {
  /** The i-th page, in the order of the refs mapped. */
  page(i: number): Uint8Array;
  unmap(): void;
}

/** Pages a guest shares with domain 0 by grant reference. */
export interface GrantedPages {
  /** Maps the pages refs of domain `domid` grant, all or none; throws DeviceError when they cannot be had. */
  map(domid: number, refs: readonly number[], writable: boolean): MappedGrants;
}

/** A device the backend cannot connect: the device fails, as xenbus_dev_fatal makes it. */
export class DeviceError extends Error {
  override name = 'DeviceError';
}

export interface DeviceHooks {
  /**
   * Attaches to what the frontend published (ring references, event channels); throws DeviceError to
   * fail. A promise: the backend serves the rings once it resolves, and fails the device if it rejects.
   */
  connect(device: XenbusDevice): void | Promise<void>;
  /** Lets go of the rings; the frontend may connect again later. */
  disconnect(device: XenbusDevice): void;
}

export interface DeviceSpec {
  /** The device class as xenbus names it: "console", "vbd", "vif". */
  type: string;
  devid: number;
  frontDomid: number;
  backDomid?: number;
  /** Nodes the backend publishes before InitWait (features, protocol). */
  backendNodes?: Record<string, string>;
  /** Nodes the toolstack puts in the frontend directory at creation. */
  frontendNodes?: Record<string, string>;
}

export const frontendPath = (s: DeviceSpec) => `${domainPath(s.frontDomid)}/device/${s.type}/${s.devid}`;
export const backendPath = (s: DeviceSpec) => `${domainPath(s.backDomid ?? 0)}/backend/${s.type}/${s.frontDomid}/${s.devid}`;

export class XenbusDevice {
  readonly frontend: string;
  readonly backend: string;
  private readonly backDomid: number;
  private unwatch: (() => void) | undefined;
  private connected = false;
  /** Counts connections, so that one which ended before its backend was serving never says Connected. */
  private connections = 0;
  private removed = false;

  constructor(
    private readonly store: XenbusStore,
    readonly spec: DeviceSpec,
    private readonly hooks: DeviceHooks,
    /** A frontend can make its device fail again and again: its lines are rate-limited. */
    private readonly guestLog: RateLimitedLog,
    /** Called once the device is gone from the store. */
    private readonly onRemoved: () => void = () => {},
  ) {
    this.frontend = frontendPath(spec);
    this.backend = backendPath(spec);
    this.backDomid = spec.backDomid ?? 0;
  }

  /** The toolstack's part, then the backend's first step: nodes, permissions, InitWait, and the watch on the frontend. */
  plug(): void {
    const { frontDomid } = this.spec;
    this.store.mkdir(this.frontend);
    this.store.setPerms(this.frontend, [{ domid: frontDomid, access: 'n' }, { domid: this.backDomid, access: 'r' }]);
    this.store.mkdir(this.backend);
    this.store.setPerms(this.backend, [{ domid: this.backDomid, access: 'n' }, { domid: frontDomid, access: 'r' }]);
    const front: Record<string, string> = { backend: this.backend, 'backend-id': String(this.backDomid), state: String(XenbusState.Initialising), ...this.spec.frontendNodes };
    const back: Record<string, string> = { frontend: this.frontend, 'frontend-id': String(frontDomid), online: '1', state: String(XenbusState.Initialising), ...this.spec.backendNodes };
    for (const [k, v] of Object.entries(front)) this.store.write(`${this.frontend}/${k}`, v);
    for (const [k, v] of Object.entries(back)) this.store.write(`${this.backend}/${k}`, v);
    this.setState(XenbusState.InitWait);
    // Fires once at registration, then on every change of the frontend's state.
    this.unwatch = this.store.watch(`${this.frontend}/state`, `xenbus:${this.backend}`, () => this.frontendChanged());
  }

  /** Hot-unplug as the toolstack asks for it: online = 0 and Closing; the device goes once the frontend has closed. */
  unplug(): void {
    if (this.removed) return;
    this.store.write(`${this.backend}/online`, '0');
    if (this.frontendState() === XenbusState.Closed || this.frontendState() === XenbusState.Unknown) this.remove();
    else this.close(XenbusState.Closing);
  }

  get state(): number {
    return this.readState(this.backend);
  }

  frontendState(): number {
    return this.readState(this.frontend);
  }

  /** A node of the frontend's directory, or undefined. */
  readFrontend(key: string): string | undefined {
    const path = `${this.frontend}/${key}`;
    return this.store.exists(path) ? this.store.read(path) : undefined;
  }

  /** A frontend node that must hold a whole number; DeviceError when it is missing or does not. */
  frontendNumber(key: string): number {
    const text = this.readFrontend(key);
    const n = text === undefined || !/^\d+$/.test(text) ? NaN : Number(text);
    if (!Number.isSafeInteger(n)) throw new DeviceError(`${this.frontend}/${key} is ${text === undefined ? 'missing' : quoteGuestText(text)}, not a number`);
    return n;
  }

  private readState(dir: string): number {
    const path = `${dir}/state`;
    const v = this.store.exists(path) ? Number.parseInt(this.store.read(path), 10) : XenbusState.Unknown;
    return Number.isInteger(v) ? v : XenbusState.Unknown;
  }

  private setState(state: number): void {
    this.store.write(`${this.backend}/state`, String(state));
  }

  private frontendChanged(): void {
    if (this.removed) return;
    const front = this.frontendState();
    const back = this.state;
    switch (front) {
      case XenbusState.Initialising:
        // A frontend starting again after a close: the backend waits for it anew.
        if (back === XenbusState.Closed) this.setState(XenbusState.InitWait);
        break;
      case XenbusState.Initialised:
      case XenbusState.Connected:
        if (!this.connected && (back === XenbusState.InitWait || back === XenbusState.Initialised)) this.connect();
        break;
      case XenbusState.Closing:
        this.close(XenbusState.Closing);
        break;
      case XenbusState.Closed:
      case XenbusState.Unknown:
        this.close(XenbusState.Closed);
        if (this.store.exists(`${this.backend}/online`) && this.store.read(`${this.backend}/online`) === '0') this.remove();
        break;
    }
  }

  private connect(): void {
    let serving: void | Promise<void>;
    try {
      serving = this.hooks.connect(this);
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      this.fail(e.message);
      return;
    }
    this.connected = true;
    const connection = ++this.connections;
    if (!serving) return this.setState(XenbusState.Connected);
    const current = () => this.connected && this.connections === connection;
    void serving.then(
      () => current() && this.setState(XenbusState.Connected),
      (e: unknown) => current() && this.fail(e instanceof Error ? e.message : String(e)),
    );
  }

  private close(state: number): void {
    if (this.connected) {
      this.hooks.disconnect(this);
      this.connected = false;
    }
    if (this.state !== state) this.setState(state);
  }

  /** Fails the device as xenbus_dev_fatal does: the reason under the backend domain's error/ tree, and Closing. */
  fail(reason: string): void {
    this.guestLog.warn('xenbus-device', { device: this.backend, reason }, 'xenbus device failed to connect');
    const relative = this.backend.slice(domainPath(this.backDomid).length + 1);
    this.store.write(`${domainPath(this.backDomid)}/error/${relative}/error`, reason);
    this.close(XenbusState.Closing);
  }

  private remove(): void {
    this.removed = true;
    this.close(XenbusState.Closed);
    this.unwatch?.();
    for (const path of [this.frontend, this.backend]) if (this.store.exists(path)) this.store.rm(path);
    this.onRemoved();
  }

  /** Drops the device at once (the VM is going away). */
  destroy(): void {
    if (!this.removed) this.remove();
  }
}

// A PV network interface (xenbus "vif"), the backend's main-thread half: the
// nodes libxl and Linux's netback write (the MAC address, the features
// offered), and on connection what the frontend published (per queue its
// transmit and receive rings and event channel; what it takes: scatter-gather,
// checksum and segmentation offloads), checked, before the device's threads
// take over: the TAP device's reader (tap-reader.ts) and the thread that
// serves the rings (net-thread.ts). Disconnecting stops both.
import { Worker } from 'node:worker_threads';
import { log, type RateLimitedLog } from '../../common/log.js';
import { check, EFD_CLOEXEC, libc } from '../../kvm/libc.js';
import type { BackendThreadInit } from '../../machine/backend-thread.js';
import type { BackendChannel, BackendPorts } from '../../xen/evtchn/backend.js';
import { XenError } from '../../xen/errors.js';
import { DeviceError, type DeviceHooks, type DeviceSpec, type GrantedPages, type XenbusDevice } from '../xenbus.js';
import type { NetThreadCommand, NetThreadInit, NetThreadMessage } from './net-thread.js';
import { PacketRing } from './packet-ring.js';
import type { NetFrontendFeatures } from './queue.js';
import type { TapReaderInit } from './tap-reader.js';
import { setTapOffloads, TUN_F, useTapQueues, type TapHandle } from './tap.js';
import type { VifSpec } from './vif-spec.js';

/** What the backend offers, as Linux's netback does (without split event channels, multicast control or the control ring). */
export const NET_LIMITS = { maxQueues: 4 } as const;
/** Frames from the host waiting for a queue's thread: about 1 MiB. */
const FROM_HOST_BYTES = 1 << 20;

/** The xenbus device for an interface whose TAP device has `queues` queues. */
export function vifSpec(vif: VifSpec, frontDomid: number, queues: number): DeviceSpec {
  return {
    type: 'vif',
    devid: vif.devid,
    frontDomid,
    frontendNodes: { handle: String(vif.devid), mac: vif.mac },
    backendNodes: {
      handle: String(vif.devid),
      mac: vif.mac,
      type: 'vif',
      ...(vif.bridge !== undefined && { bridge: vif.bridge }),
      'feature-sg': '1',
      'feature-gso-tcpv4': '1',
      'feature-gso-tcpv6': '1',
      'feature-ipv6-csum-offload': '1',
      'feature-rx-copy': '1',
      'feature-rx-flip': '0',
      'multi-queue-max-queues': String(queues),
    },
  };
}

export class VirtualNetworkDevice implements DeviceHooks {
  private threads: { worker: Worker; reader: Worker; stopFd: number } | undefined;
  private channels: BackendChannel[] = [];
  private readonly exits = new Set<Promise<void>>();

  constructor(
    private readonly tap: TapHandle,
    private readonly backends: BackendPorts,
    /** The guest's grants, to check on this thread that the rings are granted before the device's thread maps them. */
    private readonly grants: GrantedPages,
    private readonly thread: BackendThreadInit,
    private readonly guestLog: RateLimitedLog,
  ) {}

  connect(device: XenbusDevice): void {
    const flag = (key: string) => device.readFrontend(key) === '1';
    if (!flag('request-rx-copy')) throw new DeviceError(`${device.frontend} does not ask for request-rx-copy, the only receive mode offered`);
    if (!flag('feature-rx-notify')) throw new DeviceError(`${device.frontend} lacks feature-rx-notify, which the backend needs`);
    const queueCount = device.readFrontend('multi-queue-num-queues') === undefined ? 1 : device.frontendNumber('multi-queue-num-queues');
    if (queueCount < 1 || queueCount > this.tap.fds.length) throw new DeviceError(`${device.frontend} asks for ${queueCount} queues, not 1 to ${this.tap.fds.length}`);
    const frontend: NetFrontendFeatures = {
      sg: flag('feature-sg'),
      checksumIpv4: !flag('feature-no-csum-offload'),
      checksumIpv6: flag('feature-ipv6-csum-offload'),
      gso: { tcpv4: flag('feature-gso-tcpv4'), tcpv6: flag('feature-gso-tcpv6') },
    };
    const queues = Array.from({ length: queueCount }, (_, q) => {
      const dir = queueCount > 1 ? `queue-${q}/` : '';
      if (device.readFrontend(`${dir}event-channel-tx`) !== undefined) throw new DeviceError(`${device.frontend} uses split event channels, which are not offered`);
      return { txRef: device.frontendNumber(`${dir}tx-ring-ref`), rxRef: device.frontendNumber(`${dir}rx-ring-ref`), guestPort: device.frontendNumber(`${dir}event-channel`) };
    });
    // The rings are checked here, and let go again: the device's thread maps them for good.
    for (const q of queues) this.grants.map(device.spec.frontDomid, [q.txRef, q.rxRef], true).unmap();
    const channels: BackendChannel[] = [];
    try {
      for (const q of queues) channels.push(this.backends.bind(q.guestPort));
    } catch (e) {
      for (const c of channels) this.backends.close(c.backendPort);
      if (!(e instanceof XenError)) throw e;
      throw new DeviceError(`cannot bind an event channel of the frontend (Xen errno ${e.errno})`);
    }
    for (const c of channels) c.setFastPath(true);
    this.channels = channels;
    useTapQueues(this.tap, queueCount);
    const tso = (frontend.gso.tcpv4 && frontend.checksumIpv4 ? TUN_F.TSO4 : 0) | (frontend.gso.tcpv6 && frontend.checksumIpv6 ? TUN_F.TSO6 : 0);
    setTapOffloads(this.tap, frontend.checksumIpv4 ? TUN_F.CSUM | tso : 0);
    const fromHost = queues.map(() => PacketRing.create(FROM_HOST_BYTES).buffer);
    const init: NetThreadInit = {
      backend: this.thread,
      device: device.backend,
      frontend,
      queues: queues.map((q, i) => ({ ...q, backendPort: channels[i].backendPort, guestPort: channels[i].guestPort, fromHost: fromHost[i], tapFd: this.tap.fds[i] })),
    };
    log('net').info({ device: device.backend, tap: this.tap.name, queues: queueCount, ...frontend }, 'vif connected');
    const worker = new Worker(new URL('./net-thread.js', import.meta.url), { workerData: init });
    const stopFd = check('eventfd', libc().eventfd(0, EFD_CLOEXEC));
    const readerInit: TapReaderInit = { fds: this.tap.fds.slice(0, queueCount), rings: fromHost, wakes: channels.map((c) => c.notifier.handle), stopFd };
    const reader = new Worker(new URL('./tap-reader.js', import.meta.url), { workerData: readerInit });
    this.threads = { worker, reader, stopFd };
    worker.on('message', (m: NetThreadMessage) => {
      // The rings were checked above; the frontend took a grant back in between.
      if (m.type === 'failed' && this.threads?.worker === worker) device.fail(m.reason);
    });
    for (const [what, w] of [['network device thread', worker], ['TAP reader', reader]] as const) {
      w.on('error', (e) => this.guestLog.error('net-thread', { device: device.backend, err: e.message }, `${what} failed`));
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      this.exits.add(exited);
      void exited.then(() => this.exits.delete(exited));
    }
    void new Promise<void>((resolve) => reader.once('exit', () => resolve())).then(() => libc().close(stopFd));
  }

  disconnect(): void {
    if (this.threads) {
      this.threads.worker.postMessage({ type: 'stop' } satisfies NetThreadCommand);
      const one = new BigUint64Array([1n]);
      libc().write(this.threads.stopFd, new Uint8Array(one.buffer), 8);
      this.threads = undefined;
    }
    for (const c of this.channels) this.backends.close(c.backendPort);
    this.channels = [];
  }

  /** Resolves once every thread this device started has ended. */
  async stopped(): Promise<void> {
    await Promise.all([...this.exits]);
  }
}

// A PV network interface (xenbus "vif"), the backend's main-thread half: the
// nodes libxl and Linux's netback write (the MAC address, the features
// offered), and on connection what the frontend published (per queue its
// transmit and receive rings and event channel; what it takes: scatter-gather,
// checksum and segmentation offloads; the control ring, if it asked for one),
// checked, before the device's threads take over: the host side's (the TAP
// device's reader, tap-reader.ts, or user-mode networking, slirp-thread.ts)
// and the one that serves the rings (net-thread.ts). Disconnecting stops both.
import { Worker } from 'node:worker_threads';
import { log, type RateLimitedLog } from '../../common/log.js';
import { check, EFD_CLOEXEC, libc, signalEventFd } from '../../kvm/libc.js';
import type { BackendThreadInit } from '../../machine/backend-thread.js';
import type { BackendChannel, BackendPorts } from '../../xen/evtchn/backend.js';
import { XenError } from '../../xen/errors.js';
import { DeviceError, type DeviceHooks, type DeviceSpec, type GrantedPages, type XenbusDevice } from '../xenbus.js';
import { deviceThreadReady, type DeviceThreadCommand } from '../device-thread.js';
import type { NetThreadInit, QueueLinkInit } from './net-thread.js';
import { PacketRing } from './packet-ring.js';
import type { NetFrontendFeatures } from './queue.js';
import type { SlirpThreadInit } from './slirp-thread.js';
import type { TapReaderInit } from './tap-reader.js';
import { setTapOffloads, TUN_F, useTapQueues, type TapHandle } from './tap.js';
import type { PortForward, VifSpec } from './vif-spec.js';

/** What the backend offers, as Linux's netback does (without split event channels or multicast control). */
export const NET_LIMITS = { maxQueues: 4 } as const;
/** Frames from the host waiting for a queue's thread: about 1 MiB. */
const FROM_HOST_BYTES = 1 << 20;

/** Where an interface's packets go on the host: its TAP device, or user-mode networking (slirp: one queue, no segmentation offload). */
export type HostLink = { kind: 'tap'; tap: TapHandle } | { kind: 'user'; mtu: number; forwards: PortForward[] };

const linkQueues = (link: HostLink) => (link.kind === 'tap' ? link.tap.fds.length : 1);

/** The xenbus device for an interface. */
export function vifSpec(vif: VifSpec, frontDomid: number, link: HostLink): DeviceSpec {
  const gso = link.kind === 'tap' ? '1' : '0';
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
      'feature-gso-tcpv4': gso,
      'feature-gso-tcpv6': gso,
      'feature-ipv6-csum-offload': '1',
      'feature-rx-copy': '1',
      'feature-rx-flip': '0',
      'multi-queue-max-queues': String(linkQueues(link)),
      'feature-ctrl-ring': '1',
    },
  };
}

export class VirtualNetworkDevice implements DeviceHooks {
  /** The device's thread and the host side's (the TAP reader or slirp), which an eventfd wakes (with `stop` set, to end slirp's). */
  private threads: { worker: Worker; eventFd: number; stop?: Int32Array } | undefined;
  private channels: BackendChannel[] = [];
  private readonly exits = new Set<Promise<void>>();

  constructor(
    private readonly link: HostLink,
    private readonly backends: BackendPorts,
    /** The guest's grants, to check on this thread that the rings are granted before the device's thread maps them. */
    private readonly grants: GrantedPages,
    private readonly thread: BackendThreadInit,
    private readonly guestLog: RateLimitedLog,
  ) {}

  connect(device: XenbusDevice): Promise<void> {
    const flag = (key: string) => device.readFrontend(key) === '1';
    if (!flag('request-rx-copy')) throw new DeviceError(`${device.frontend} does not ask for request-rx-copy, the only receive mode offered`);
    if (!flag('feature-rx-notify')) throw new DeviceError(`${device.frontend} lacks feature-rx-notify, which the backend needs`);
    const queueCount = device.readFrontend('multi-queue-num-queues') === undefined ? 1 : device.frontendNumber('multi-queue-num-queues');
    const maxQueues = linkQueues(this.link);
    if (queueCount < 1 || queueCount > maxQueues) throw new DeviceError(`${device.frontend} asks for ${queueCount} queues, not 1 to ${maxQueues}`);
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
    // The control ring, which a frontend asks for before it connects.
    let ctrl: { ref: number; guestPort: number } | undefined;
    if (device.readFrontend('ctrl-ring-ref') !== undefined) {
      if (device.readFrontend('event-channel-ctrl') === undefined) throw new DeviceError(`${device.frontend} has a ctrl-ring-ref but no event-channel-ctrl`);
      ctrl = { ref: device.frontendNumber('ctrl-ring-ref'), guestPort: device.frontendNumber('event-channel-ctrl') };
    }
    // The rings are checked here, and let go again: the device's thread maps them for good.
    for (const q of queues) this.grants.map(device.spec.frontDomid, [q.txRef, q.rxRef], true).unmap();
    if (ctrl) this.grants.map(device.spec.frontDomid, [ctrl.ref], true).unmap();
    const channels: BackendChannel[] = [];
    try {
      for (const q of queues) channels.push(this.backends.bind(q.guestPort));
      if (ctrl) channels.push(this.backends.bind(ctrl.guestPort));
    } catch (e) {
      for (const c of channels) this.backends.close(c.backendPort);
      if (!(e instanceof XenError)) throw e;
      throw new DeviceError(`cannot bind an event channel of the frontend (Xen errno ${e.errno})`);
    }
    for (const c of channels) c.setFastPath(true);
    this.channels = channels;
    const fromHost = queues.map(() => PacketRing.create(FROM_HOST_BYTES).buffer);
    const eventFd = check('eventfd', libc().eventfd(0, EFD_CLOEXEC));
    const wakes = channels.slice(0, queueCount).map((c) => c.notifier.handle);
    let host: { worker: Worker; stop?: Int32Array };
    let links: QueueLinkInit[];
    if (this.link.kind === 'tap') {
      const { tap } = this.link;
      useTapQueues(tap, queueCount);
      const tso = (frontend.gso.tcpv4 && frontend.checksumIpv4 ? TUN_F.TSO4 : 0) | (frontend.gso.tcpv6 && frontend.checksumIpv6 ? TUN_F.TSO6 : 0);
      setTapOffloads(tap, frontend.checksumIpv4 ? TUN_F.CSUM | tso : 0);
      const readerInit: TapReaderInit = { fds: tap.fds.slice(0, queueCount), rings: fromHost, wakes, stopFd: eventFd };
      host = { worker: new Worker(new URL('./tap-reader.js', import.meta.url), { workerData: readerInit }) };
      links = tap.fds.slice(0, queueCount).map((fd) => ({ kind: 'tap', fd }));
    } else {
      const toSlirp = PacketRing.create(FROM_HOST_BYTES).buffer;
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const slirpInit: SlirpThreadInit = { toSlirp, fromSlirp: fromHost[0], wake: wakes[0], eventFd, stop: stop.buffer as SharedArrayBuffer, mtu: this.link.mtu, forwards: this.link.forwards, logLevel: this.thread.logLevel };
      host = { worker: new Worker(new URL('./slirp-thread.js', import.meta.url), { workerData: slirpInit }), stop };
      links = [{ kind: 'user', toSlirp, eventFd }];
    }
    const init: NetThreadInit = {
      backend: this.thread,
      device: device.backend,
      frontend,
      queues: queues.map((q, i) => ({ ...q, backendPort: channels[i].backendPort, guestPort: channels[i].guestPort, fromHost: fromHost[i], link: links[i] })),
      ctrl: ctrl && { ref: ctrl.ref, backendPort: channels[queueCount].backendPort, guestPort: channels[queueCount].guestPort },
    };
    log('net').info({ device: device.backend, link: this.link.kind === 'tap' ? this.link.tap.name : 'user', queues: queueCount, ctrlRing: ctrl !== undefined, ...frontend }, 'vif connected');
    const worker = new Worker(new URL('./net-thread.js', import.meta.url), { workerData: init });
    this.threads = { worker, eventFd, stop: host.stop };
    const exits = ([['network device thread', worker], [this.link.kind === 'tap' ? 'TAP reader' : 'user-mode networking thread', host.worker]] as const).map(([what, w]) => {
      w.on('error', (e) => this.guestLog.error('net-thread', { device: device.backend, err: e.message }, `${what} failed`));
      return new Promise<void>((resolve) => w.once('exit', () => resolve()));
    });
    // Closed once neither thread can write it any more.
    const exited = Promise.all(exits).then(() => void libc().close(eventFd));
    this.exits.add(exited);
    void exited.then(() => this.exits.delete(exited));
    // It fails where the frontend took a grant of the rings back after they were checked above.
    return deviceThreadReady(worker);
  }

  disconnect(): void {
    if (this.threads) {
      const { worker, eventFd, stop } = this.threads;
      worker.postMessage({ type: 'stop' } satisfies DeviceThreadCommand);
      if (stop) Atomics.store(stop, 0, 1);
      signalEventFd(eventFd);
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

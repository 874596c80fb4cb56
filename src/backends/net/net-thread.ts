// A PV network device's own thread: it maps each queue's transmit and receive
// rings, sends what the guest transmits to the host's link (a TAP queue's
// descriptor, written here, or slirp's thread), and puts what the link brought into
// the guest's receive buffers, a packet the guest has no buffers for kept
// until it posts some. It wakes on the queue's event channel, which the guest
// notifies from its vCPU thread and the reader after each batch, and raises
// the guest's port itself. Where the frontend asked for a control ring it
// serves that too (ctrl.ts), on its own channel, and steers each packet from
// the host to the queue the frontend's hash mapping names, whichever TAP queue
// it came in on (all the queues live on this thread: steering.ts). The main thread starts
// it once the frontend has published its rings and stops it when the frontend
// goes.
import { workerData } from 'node:worker_threads';
import { log, RateLimitedLog } from '../../common/log.js';
import { errno, libc, signalEventFd } from '../../kvm/libc.js';
import type { BackendThreadInit } from '../../machine/backend-thread.js';
import { NETIF_CTRL_RING_ENTRY_SIZE, NETIF_RX_RING_ENTRY_SIZE, NETIF_TX_RING_ENTRY_SIZE } from '../../xen/abi/netif.js';
import { runDeviceThread, type ServedQueue } from '../device-thread.js';
import { BackRing } from '../ring.js';
import { NetCtrl } from './ctrl.js';
import type { Packet } from './packet.js';
import { PacketRing } from './packet-ring.js';
import { NetQueue, type NetFrontendFeatures, type NetLink } from './queue.js';
import { Steering } from './steering.js';
import { packetFromTap, tapHeader } from './tap.js';

/** Where a queue's packets for the host go: a TAP queue's descriptor, or slirp's ring and the eventfd that wakes it. */
export type QueueLinkInit = { kind: 'tap'; fd: number } | { kind: 'user'; toSlirp: SharedArrayBuffer; eventFd: number };

export interface NetQueueInit {
  txRef: number;
  rxRef: number;
  backendPort: number;
  guestPort: number;
  /** Frames from the host for this queue (behind a virtio-net header from a TAP device). */
  fromHost: SharedArrayBuffer;
  link: QueueLinkInit;
}

/** The control ring, where the frontend asked for one. */
export interface NetCtrlInit {
  ref: number;
  backendPort: number;
  guestPort: number;
}

export interface NetThreadInit {
  backend: BackendThreadInit;
  /** The device's backend path, for log lines. */
  device: string;
  frontend: NetFrontendFeatures;
  queues: NetQueueInit[];
  ctrl?: NetCtrlInit;
}

/** A queue as the device's thread serves it, with the ring of frames the host's side fills for it. */
interface ServedNetQueue extends ServedQueue {
  kind: 'queue';
  queue: NetQueue;
  fromHost: PacketRing;
}
/** The control ring, served on its own channel's notifications. */
interface ServedCtrl extends ServedQueue {
  kind: 'ctrl';
}
type Served = ServedNetQueue | ServedCtrl;

/** Slirp as the guest's packets' way out: it takes whole frames, their checksums complete. */
function userLink(toSlirp: PacketRing, eventFd: number): NetLink {
  return {
    offloads: { checksum: false, gso: false },
    send(p: Packet) {
      // A full ring drops the frame: slirp is behind, and the guest's TCP sends again.
      if (!toSlirp.put([p.frame])) return false;
      signalEventFd(eventFd);
      return true;
    },
  };
}

/** A TAP queue as the guest's packets' way out: header and frame in one write. */
function tapLink(fd: number, device: string, hostLog: RateLimitedLog): NetLink {
  return {
    offloads: { checksum: true, gso: true },
    send(p: Packet) {
      const header = tapHeader(p);
      const out = new Uint8Array(header.length + p.frame.length);
      out.set(header);
      out.set(p.frame, header.length);
      if (Number(libc().write(fd, out, out.length)) === out.length) return true;
      hostLog.warn('tap-write', { device, err: libc().strerror(errno()) }, 'the TAP device did not take a packet from the guest; dropped');
      return false;
    },
  };
}

async function main(init: NetThreadInit): Promise<void> {
  const guestLog = new RateLimitedLog(log('net'));
  /** Made once the queues are: the control ring's changes re-steer what waits in them. */
  let steering: Steering | undefined;
  await runDeviceThread<Served>(
    init.backend,
    ({ thread, grants, mapRing }) => {
      // The control ring first: the queues' receive paths steer by what it sets.
      let ctrl: NetCtrl | undefined;
      const served: Served[] = [];
      if (init.ctrl) {
        const c = init.ctrl;
        const page = mapRing([c.ref]);
        const channel = thread.channel(c.backendPort, c.guestPort);
        const nc = new NetCtrl(new BackRing([page.page(0)], NETIF_CTRL_RING_ENTRY_SIZE), grants, init.backend.guestDomid, init.queues.length, () => channel.notifyGuest(), () => steering?.resteer(), guestLog, init.device);
        ctrl = nc;
        served.push({ kind: 'ctrl', channel, pass: () => nc.service() });
      }
      const rings = init.queues.map((q) => {
        const tx = mapRing([q.txRef]);
        const rx = mapRing([q.rxRef]);
        const channel = thread.channel(q.backendPort, q.guestPort);
        const queue = new NetQueue(
          new BackRing([tx.page(0)], NETIF_TX_RING_ENTRY_SIZE),
          new BackRing([rx.page(0)], NETIF_RX_RING_ENTRY_SIZE),
          grants,
          init.backend.guestDomid,
          q.link.kind === 'tap' ? tapLink(q.link.fd, init.device, guestLog) : userLink(PacketRing.attach(q.link.toSlirp), q.link.eventFd),
          init.frontend,
          () => channel.notifyGuest(),
          guestLog,
          init.device,
        );
        return { channel, queue, fromHost: PacketRing.attach(q.fromHost), tap: q.link.kind === 'tap' };
      });
      const steered = new Steering(rings.map((r) => r.queue), (packet) => ctrl?.steer(packet));
      steering = steered;
      const queues = rings.map(({ channel, queue, fromHost, tap }, index): ServedNetQueue => {
        /** The oldest frame the host's side brought for this queue, taken. */
        const next = (): Packet | undefined => {
          const bytes = fromHost.peek();
          if (!bytes) return undefined;
          const packet = tap ? packetFromTap(bytes) : { frame: bytes.slice() };
          fromHost.release(bytes);
          return packet;
        };
        const pass = () => {
          queue.serviceTx();
          steered.deliver(index, next);
        };
        return { kind: 'queue', channel, queue, fromHost, pass };
      });
      return [...served, ...queues];
    },
    async (served) => {
      // The counters, where a person looking at a device's trouble finds them.
      served.filter((s): s is ServedNetQueue => s.kind === 'queue').forEach((s, i) => {
        log('net').info({ device: init.device, queue: i, ...s.queue.stats, hostDropped: s.fromHost.dropped, steeredAway: steering?.steeredAway[i], steeredDropped: steering?.steeredDropped[i] }, 'vif queue stopped');
      });
    },
  );
}

void main(workerData as NetThreadInit);

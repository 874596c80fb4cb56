// A PV network device's own thread: it maps each queue's transmit and receive
// rings, sends what the guest transmits to the host's link (a TAP queue's
// descriptor, written here, or slirp's thread), and puts what the link brought into
// the guest's receive buffers, a packet the guest has no buffers for kept
// until it posts some. It wakes on the queue's event channel, which the guest
// notifies from its vCPU thread and the reader after each batch, and raises
// the guest's port itself. The main thread starts it once the frontend has
// published its rings and stops it when the frontend goes.
import { workerData } from 'node:worker_threads';
import { log, RateLimitedLog } from '../../common/log.js';
import { errno, libc, signalEventFd } from '../../kvm/libc.js';
import type { BackendThreadInit } from '../../machine/backend-thread.js';
import { NETIF_RX_RING_ENTRY_SIZE, NETIF_TX_RING_ENTRY_SIZE } from '../../xen/abi/netif.js';
import { runDeviceThread } from '../device-thread.js';
import { BackRing } from '../ring.js';
import type { Packet } from './packet.js';
import { PacketRing } from './packet-ring.js';
import { NetQueue, type NetFrontendFeatures, type NetLink } from './queue.js';
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

export interface NetThreadInit {
  backend: BackendThreadInit;
  /** The device's backend path, for log lines. */
  device: string;
  frontend: NetFrontendFeatures;
  queues: NetQueueInit[];
}

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
  await runDeviceThread(
    init.backend,
    ({ thread, grants, mapRing }) =>
      init.queues.map((q) => {
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
        const fromHost = PacketRing.attach(q.fromHost);
        let held: Packet | undefined;
        /** Hands the guest what the host sent, until it runs out of buffers. */
        const deliver = () => {
          for (;;) {
            if (held) {
              if (!queue.receive(held)) return;
              held = undefined;
            }
            const record = fromHost.peek();
            if (!record) return;
            const packet = q.link.kind === 'tap' ? packetFromTap(record) : { frame: record.slice() };
            fromHost.release(record);
            if (!queue.receive(packet)) held = packet;
          }
        };
        return {
          channel,
          queue,
          fromHost,
          pass: () => {
            queue.serviceTx();
            deliver();
          },
        };
      }),
    async (queues) => {
      // The counters, where a person looking at a device's trouble finds them.
      queues.forEach((q, i) => log('net').info({ device: init.device, queue: i, ...q.queue.stats, hostDropped: q.fromHost.dropped }, 'vif queue stopped'));
    },
  );
}

void main(workerData as NetThreadInit);

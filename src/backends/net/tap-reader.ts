// The thread that reads a TAP device's queues: it sleeps in poll() on their
// descriptors (and on an eventfd that ends it), and puts each frame it reads,
// virtio-net header first, into the queue's packet ring for the device's
// thread, and wakes that thread through the queue's event-channel notifier
// (which it waits on for the guest too). Reads are non-blocking, so every
// frame queued is taken before it sleeps again.
import { parentPort, workerData } from 'node:worker_threads';
import { check, EAGAIN, EINTR, errno, libc, POLL, PollFds } from '../../kvm/libc.js';
import { EventNotifier, type EventNotifierHandle } from '../../xen/evtchn/backend.js';
import { PacketRing } from './packet-ring.js';

export interface TapReaderInit {
  fds: number[];
  rings: SharedArrayBuffer[];
  /** Per queue, what the device's thread waits on. */
  wakes: EventNotifierHandle[];
  /** An eventfd: a write ends the thread. */
  stopFd: number;
}

/** The largest frame a TAP hands over (a 64 KiB GSO frame) and its virtio-net header. */
const FRAME_MAX = 65536 + 10;

function main(init: TapReaderInit): void {
  const { fds, stopFd } = init;
  const rings = init.rings.map((b) => PacketRing.attach(b));
  const wakes = init.wakes.map((h) => EventNotifier.attach(h));
  const pollfds = new PollFds(fds.length + 1);
  for (const fd of fds) pollfds.add(fd, POLL.IN);
  const stopIndex = pollfds.add(stopFd, POLL.IN);
  const frame = new Uint8Array(FRAME_MAX);
  for (;;) {
    if (pollfds.poll(-1) === -1) {
      if (errno() === EINTR) continue;
      check('poll', -1);
    }
    if (pollfds.revents(stopIndex) !== 0) break;
    fds.forEach((fd, q) => {
      if (pollfds.revents(q) === 0) return;
      for (;;) {
        const n = Number(libc().read(fd, frame, frame.length));
        if (n < 0) {
          if (errno() !== EAGAIN) check('read (TAP)', -1);
          break;
        }
        // A full ring drops the frame; it counts the drop.
        rings[q].put([frame.subarray(0, n)]);
      }
      wakes[q].notify();
    });
  }
  parentPort?.close();
}

main(workerData as TapReaderInit);

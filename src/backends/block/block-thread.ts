// A PV block device's own thread: it maps the frontend's rings, serves each
// queue whenever the guest notifies it (woken straight from the sending vCPU's
// thread, the eventfd path), does the disk I/O through libuv's pool, and
// raises the queue's event channel itself. The main thread starts it once the
// frontend has published its rings and stops it when the frontend goes: it
// then answers what is in flight, lets go of every grant, and ends.
import { parentPort, workerData } from 'node:worker_threads';
import { log, RateLimitedLog } from '../../common/log.js';
import { attachBackendThread, type BackendThreadInit } from '../../machine/backend-thread.js';
import { BLKIF_RING_ENTRY_SIZE } from '../../xen/abi/blkif.js';
import type { Abi } from '../../xen/abi/layout.js';
import { guestGrants } from '../grants.js';
import { BackRing } from '../ring.js';
import { DeviceError, type MappedGrants } from '../xenbus.js';
import { RawDisk, type RawDiskHandle } from './disk.js';
import { BlockQueue } from './queue.js';

export interface BlockQueueInit {
  ringRefs: number[];
  backendPort: number;
  guestPort: number;
}

export interface BlockThreadInit {
  backend: BackendThreadInit;
  /** The device's backend path, for log lines. */
  device: string;
  disk: RawDiskHandle;
  abi: Abi;
  persistent: boolean;
  maxIndirectSegments: number;
  maxPersistentGrants: number;
  queues: BlockQueueInit[];
}

/** To the main thread: the rings are mapped (or could not be), and later that everything is let go. */
export type BlockThreadMessage = { type: 'ready' } | { type: 'failed'; reason: string } | { type: 'stopped' };
/** From the main thread. */
export type BlockThreadCommand = { type: 'stop' };

async function main(init: BlockThreadInit): Promise<void> {
  const post = (m: BlockThreadMessage) => parentPort?.postMessage(m);
  const thread = attachBackendThread(init.backend);
  const guestLog = new RateLimitedLog(log('block'));
  const grants = guestGrants(thread.grantTable, thread.memory, init.backend.guestDomid);
  const disk = new RawDisk(init.disk);
  const rings: MappedGrants[] = [];
  let stopping = false;
  const queues: { queue: BlockQueue; wake: () => void; serve: () => Promise<void> }[] = [];
  try {
    for (const q of init.queues) {
      const ring = grants.map(init.backend.guestDomid, q.ringRefs, true);
      rings.push(ring);
      const channel = thread.channel(q.backendPort, q.guestPort);
      const queue = new BlockQueue(
        new BackRing(q.ringRefs.map((_, i) => ring.page(i)), BLKIF_RING_ENTRY_SIZE[init.abi]),
        grants,
        disk,
        { abi: init.abi, frontDomid: init.backend.guestDomid, maxIndirectSegments: init.maxIndirectSegments, persistent: init.persistent, maxPersistentGrants: init.maxPersistentGrants },
        () => channel.notifyGuest(),
        guestLog,
        init.device,
      );
      queues.push({
        queue,
        wake: () => channel.notifier.notify(),
        serve: async () => {
          while (!stopping) {
            // Read before the pass: a notification during it means another pass.
            const seen = channel.notifier.count;
            queue.service();
            await channel.notifier.next(seen);
          }
        },
      });
    }
  } catch (e) {
    if (!(e instanceof DeviceError)) throw e;
    for (const r of rings) r.unmap();
    thread.dispose();
    post({ type: 'failed', reason: e.message });
    parentPort?.close();
    return;
  }
  parentPort?.on('message', (m: BlockThreadCommand) => {
    if (m.type !== 'stop') return;
    stopping = true;
    for (const q of queues) q.wake();
  });
  post({ type: 'ready' });
  await Promise.all(queues.map((q) => q.serve()));
  await Promise.all(queues.map((q) => q.queue.stop()));
  for (const r of rings) r.unmap();
  thread.dispose();
  post({ type: 'stopped' });
  parentPort?.close();
}

void main(workerData as BlockThreadInit);

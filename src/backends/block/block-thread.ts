// A PV block device's own thread: it maps the frontend's rings, serves each
// queue whenever the guest notifies it (woken straight from the sending vCPU's
// thread, the eventfd path), does the disk I/O through libuv's pool, and
// raises the queue's event channel itself. The main thread starts it once the
// frontend has published its rings and stops it when the frontend goes: it
// then answers what is in flight, lets go of every grant, and ends.
import { workerData } from 'node:worker_threads';
import { log, RateLimitedLog } from '../../common/log.js';
import type { BackendThreadInit } from '../../machine/backend-thread.js';
import { BLKIF_RING_ENTRY_SIZE } from '../../xen/abi/blkif.js';
import type { Abi } from '../../xen/abi/layout.js';
import { runDeviceThread } from '../device-thread.js';
import { BackRing } from '../ring.js';
import { ioThreads, RawDisk, type RawDiskHandle } from './disk.js';
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

async function main(init: BlockThreadInit): Promise<void> {
  const guestLog = new RateLimitedLog(log('block'));
  const disk = new RawDisk(init.disk);
  await runDeviceThread(
    init.backend,
    ({ thread, grants, mapRing }) =>
      init.queues.map((q) => {
        const ring = mapRing(q.ringRefs);
        const channel = thread.channel(q.backendPort, q.guestPort);
        const queue = new BlockQueue(
          new BackRing(q.ringRefs.map((_, i) => ring.page(i)), BLKIF_RING_ENTRY_SIZE[init.abi]),
          grants,
          disk,
          { abi: init.abi, frontDomid: init.backend.guestDomid, maxIndirectSegments: init.maxIndirectSegments, persistent: init.persistent, maxPersistentGrants: init.maxPersistentGrants, ioThreads: ioThreads() },
          () => channel.notifyGuest(),
          guestLog,
          init.device,
        );
        return { channel, queue, pass: () => queue.service() };
      }),
    async (queues) => {
      await Promise.all(queues.map((q) => q.queue.stop()));
    },
  );
}

void main(workerData as BlockThreadInit);

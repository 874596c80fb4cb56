// The life of a PV device's own thread (block, network), the same for every
// kind: attach to the machine, map the frontend's rings and make a queue for
// each (a ring that cannot be had ends it as "failed": the frontend took a
// grant back after the main thread checked it), then serve each queue now and
// again after every notification on its event channel until the main thread
// says stop, then finish what is in flight and let go of every ring.
import { parentPort, type Worker } from 'node:worker_threads';
import { attachBackendThread, type BackendThread, type BackendThreadInit } from '../machine/backend-thread.js';
import type { BackendChannel } from '../xen/evtchn/backend.js';
import { guestGrants } from './grants.js';
import { DeviceError, type GrantedPages, type MappedGrants } from './xenbus.js';

/** To the main thread: the rings are mapped (or could not be), and later that everything is let go. */
export type DeviceThreadMessage = { type: 'ready' } | { type: 'failed'; reason: string } | { type: 'stopped' };
/** From the main thread. */
export type DeviceThreadCommand = { type: 'stop' };

/** What a device thread's setup has of the machine. */
export interface DeviceThreadContext {
  thread: BackendThread;
  grants: GrantedPages;
  /** Maps refs the frontend granted for the life of the thread (its rings): let go when the thread ends. */
  mapRing(refs: readonly number[]): MappedGrants;
}

/**
 * For the main thread: resolves once a device's thread has mapped its rings and serves them; rejects
 * with a DeviceError when it could not map them, or ended first.
 */
export function deviceThreadReady(worker: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (settled: () => void) => {
      worker.off('message', onMessage).off('exit', onExit);
      settled();
    };
    const onMessage = (m: DeviceThreadMessage) => {
      if (m.type === 'ready') settle(resolve);
      else if (m.type === 'failed') settle(() => reject(new DeviceError(m.reason)));
    };
    const onExit = () => settle(() => reject(new DeviceError('the device thread ended before it served the rings')));
    worker.on('message', onMessage).on('exit', onExit);
  });
}

/** A queue as the runner serves it: a pass over its rings whenever its channel is notified. */
export interface ServedQueue {
  channel: BackendChannel;
  pass(): void;
}

export async function runDeviceThread<Q extends ServedQueue>(
  init: BackendThreadInit,
  setup: (ctx: DeviceThreadContext) => Q[],
  /** After the last pass: waits for what the queues have in flight. */
  finish: (queues: Q[]) => Promise<void>,
): Promise<void> {
  const post = (m: DeviceThreadMessage) => parentPort?.postMessage(m);
  const thread = attachBackendThread(init);
  const grants = guestGrants(thread.grantTable, thread.memory, init.guestDomid);
  const rings: MappedGrants[] = [];
  const release = () => {
    for (const r of rings) r.unmap();
    thread.dispose();
  };
  let queues: Q[];
  try {
    queues = setup({
      thread,
      grants,
      mapRing: (refs) => {
        const ring = grants.map(init.guestDomid, refs, true);
        rings.push(ring);
        return ring;
      },
    });
  } catch (e) {
    if (!(e instanceof DeviceError)) throw e;
    release();
    post({ type: 'failed', reason: e.message });
    parentPort?.close();
    return;
  }
  let stopping = false;
  parentPort?.on('message', (m: DeviceThreadCommand) => {
    if (m.type !== 'stop') return;
    stopping = true;
    for (const q of queues) q.channel.notifier.notify();
  });
  post({ type: 'ready' });
  await Promise.all(
    queues.map(async (q) => {
      while (!stopping) {
        // Read before the pass: a notification during it means another pass.
        const seen = q.channel.notifier.count;
        q.pass();
        await q.channel.notifier.next(seen);
      }
    }),
  );
  await finish(queues);
  release();
  post({ type: 'stopped' });
  parentPort?.close();
}

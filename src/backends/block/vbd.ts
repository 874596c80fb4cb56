// A PV block device (xenbus "vbd"), the backend's main-thread half: the
// nodes libxl and a block backend write (what the disk is, the features
// offered), and on connection what the frontend published (its rings, one
// per queue, of 2^ring-page-order pages; its event channels; its ABI; whether
// it keeps grants persistently), checked, before the device's own thread
// (block-thread.ts) takes the rings over. Disconnecting stops that thread,
// which answers what is in flight and lets go of every grant first.
import { Worker } from 'node:worker_threads';
import { log, type RateLimitedLog } from '../../common/log.js';
import type { BackendThreadInit } from '../../machine/backend-thread.js';
import { VDISK } from '../../xen/abi/blkif.js';
import type { Abi } from '../../xen/abi/layout.js';
import type { BackendChannel, BackendPorts } from '../../xen/evtchn/backend.js';
import { XenError } from '../../xen/errors.js';
import { DeviceError, type DeviceHooks, type DeviceSpec, type GrantedPages, type XenbusDevice } from '../xenbus.js';
import { deviceThreadReady, type DeviceThreadCommand } from '../device-thread.js';
import type { BlockThreadInit } from './block-thread.js';
import type { RawDiskHandle } from './disk.js';
import type { DiskSpec } from './disk-spec.js';

/**
 * What the backend offers: Linux's blkback offers the same kinds. Grants kept mapped per queue: enough for
 * 32 requests of 256 segments and their indirect pages (keeping one costs a pin in the grant table, not a
 * host mapping; blkback's 1,056 had a 1 MiB request map most of its pages afresh).
 */
export const BLOCK_LIMITS = { maxRingPageOrder: 4, maxQueues: 4, maxIndirectSegments: 256, maxPersistentGrants: 32 * (256 + 1) } as const;

const PROTOCOLS: Record<string, Abi> = { 'x86_64-abi': 'native', 'x86_32-abi': 'compat' };

/** The xenbus device for a disk: its nodes in both directories. */
export function vbdSpec(disk: DiskSpec, image: RawDiskHandle, frontDomid: number): DeviceSpec {
  const deviceType = disk.cdrom ? 'cdrom' : 'disk';
  return {
    type: 'vbd',
    devid: disk.devid,
    frontDomid,
    frontendNodes: { 'virtual-device': String(disk.devid), 'device-type': deviceType },
    backendNodes: {
      params: disk.target,
      type: 'qdisk',
      mode: disk.readOnly ? 'r' : 'w',
      'device-type': deviceType,
      dev: disk.vdev,
      removable: '0',
      bootable: '1',
      sectors: String(image.sectors),
      'sector-size': String(image.sectorSize),
      'physical-sector-size': String(image.sectorSize),
      info: String((disk.readOnly ? VDISK.READONLY : 0) | (disk.cdrom ? VDISK.CDROM : 0)),
      'feature-flush-cache': '1',
      'feature-barrier': '1',
      'feature-discard': disk.discard && !disk.readOnly ? '1' : '0',
      ...(disk.discard && !disk.readOnly && { 'discard-granularity': String(image.sectorSize), 'discard-alignment': '0', 'discard-secure': '0' }),
      'feature-persistent': '1',
      'feature-max-indirect-segments': String(BLOCK_LIMITS.maxIndirectSegments),
      'max-ring-page-order': String(BLOCK_LIMITS.maxRingPageOrder),
      'multi-queue-max-queues': String(BLOCK_LIMITS.maxQueues),
    },
  };
}

export class VirtualBlockDevice implements DeviceHooks {
  private worker: Worker | undefined;
  private channels: BackendChannel[] = [];
  private readonly exits = new Set<Promise<void>>();

  constructor(
    private readonly image: RawDiskHandle,
    private readonly backends: BackendPorts,
    /** The guest's grants, to check on this thread that the rings are granted before the device's thread maps them. */
    private readonly grants: GrantedPages,
    private readonly thread: BackendThreadInit,
    private readonly guestLog: RateLimitedLog,
  ) {}

  connect(device: XenbusDevice): Promise<void> {
    const protocol = device.readFrontend('protocol');
    const abi = protocol === undefined ? 'native' : PROTOCOLS[protocol];
    if (abi === undefined) throw new DeviceError(`${device.frontend}/protocol is not x86_64-abi or x86_32-abi`);
    const queueCount = device.readFrontend('multi-queue-num-queues') === undefined ? 1 : device.frontendNumber('multi-queue-num-queues');
    if (queueCount < 1 || queueCount > BLOCK_LIMITS.maxQueues) throw new DeviceError(`${device.frontend} asks for ${queueCount} queues, not 1 to ${BLOCK_LIMITS.maxQueues}`);
    const order = device.readFrontend('ring-page-order') === undefined ? 0 : device.frontendNumber('ring-page-order');
    if (order > BLOCK_LIMITS.maxRingPageOrder) throw new DeviceError(`${device.frontend}/ring-page-order is ${order}, more than ${BLOCK_LIMITS.maxRingPageOrder}`);
    const queues = Array.from({ length: queueCount }, (_, q) => {
      const dir = queueCount > 1 ? `queue-${q}/` : '';
      const ringRefs = order === 0 && device.readFrontend(`${dir}ring-ref`) !== undefined
        ? [device.frontendNumber(`${dir}ring-ref`)]
        : Array.from({ length: 2 ** order }, (_, i) => device.frontendNumber(`${dir}ring-ref${i}`));
      return { ringRefs, guestPort: device.frontendNumber(`${dir}event-channel`) };
    });
    // Mapped here until the device's thread has them too: the frontend cannot take them back in
    // between (their entries show GTF_reading and GTF_writing), so the thread's mapping succeeds.
    const held = queues.map((q) => this.grants.map(device.spec.frontDomid, q.ringRefs, true));
    const release = () => held.splice(0).forEach((m) => m.unmap());
    const channels: BackendChannel[] = [];
    try {
      for (const q of queues) channels.push(this.backends.bind(q.guestPort));
    } catch (e) {
      for (const c of channels) this.backends.close(c.backendPort);
      release();
      if (!(e instanceof XenError)) throw e;
      throw new DeviceError(`cannot bind an event channel of the frontend (Xen errno ${e.errno})`);
    }
    for (const c of channels) c.setFastPath(true);
    this.channels = channels;
    const init: BlockThreadInit = {
      backend: this.thread,
      device: device.backend,
      disk: this.image,
      abi,
      persistent: device.readFrontend('feature-persistent') === '1',
      maxIndirectSegments: BLOCK_LIMITS.maxIndirectSegments,
      maxPersistentGrants: BLOCK_LIMITS.maxPersistentGrants,
      queues: queues.map((q, i) => ({ ringRefs: q.ringRefs, backendPort: channels[i].backendPort, guestPort: channels[i].guestPort })),
    };
    log('block').info({ device: device.backend, abi, queues: queueCount, ringPages: 2 ** order, persistent: init.persistent }, 'vbd connected');
    const worker = new Worker(new URL('./block-thread.js', import.meta.url), { workerData: init });
    this.worker = worker;
    // It fails where the frontend took a grant of the rings back after they were checked above.
    const ready = deviceThreadReady(worker);
    // This thread's hold on the rings ends once the device's thread has them, could not map them, or ended first.
    void ready.then(release, release);
    worker.on('error', (e) => this.guestLog.error('block-thread', { device: device.backend, err: e.message }, 'block device thread failed'));
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.exits.add(exited);
    void exited.then(() => this.exits.delete(exited));
    return ready;
  }

  disconnect(): void {
    this.worker?.postMessage({ type: 'stop' } satisfies DeviceThreadCommand);
    this.worker = undefined;
    for (const c of this.channels) this.backends.close(c.backendPort);
    this.channels = [];
  }

  /** Resolves once every thread this device started has answered what it had and ended. */
  async stopped(): Promise<void> {
    await Promise.all([...this.exits]);
  }
}

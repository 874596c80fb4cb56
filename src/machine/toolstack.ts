// What Xen's toolstack (libxl, xenconsoled, xenstored) does for a domU,
// done by the VMM for its one guest: the XenStore and console pages at Xen's
// special frames, their event channels bound to domain 0, the HVM parameters
// that tell the guest where they are, the store with the nodes libxl writes
// for a domU, and the backends serving the store (the guest's ring and a
// host socket for Xen's tools) and the console ring while the guest runs.
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import { ConsoleRing, SecondaryConsole, type ConsoleInput } from '../backends/console.js';
import { vbdSpec, VirtualBlockDevice } from '../backends/block/vbd.js';
import type { RawDiskHandle } from '../backends/block/disk.js';
import type { DiskSpec } from '../backends/block/disk-spec.js';
import { vifSpec, VirtualNetworkDevice, type HostLink } from '../backends/net/vif.js';
import type { VifSpec } from '../backends/net/vif-spec.js';
import { guestGrants } from '../backends/grants.js';
import type { BackendThreadInit } from './backend-thread.js';
import { XenbusDevice } from '../backends/xenbus.js';
import { RateLimitedLog } from '../common/log.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { MemoryMap } from '../memory/memory-map.js';
import { GNTTAB_RESERVED } from '../xen/abi/grant-table.js';
import { HVM_PARAM } from '../xen/abi/hvm.js';
import { seedReservedEntries } from '../xen/gnttab/ops.js';
import type { DomainState } from '../xen/domain-state.js';
import type { XenVmm } from '../xen/vmm.js';
import { CONSOLE_LIMIT, domainPath, writeDomainTree } from '../xenstore/domain-tree.js';
import type { BackendChannel } from '../xen/evtchn/backend.js';
import { XenStoreRing } from '../xenstore/ring.js';
import { XenStoreSocket } from '../xenstore/socket.js';
import { XenStore, type StoreConnection } from '../xenstore/store.js';
import { ConfigError } from './config-error.js';
import { CONSOLE_GFN, CONSOLE_OVERLAY_PAGE, XENSTORE_GFN, XENSTORE_OVERLAY_PAGE } from './layout.js';

/** How long a vif's hotplug script may take. */
const HOTPLUG_TIMEOUT_MS = 30_000;

/** Who the guest is, for the nodes the toolstack writes. */
export interface GuestIdentity {
  domid: number;
  name: string;
  uuid: string;
  memoryKiB: number;
  /** The balloon target (memory/target). */
  targetKiB: number;
  /** How it booted (libxl's type). */
  type: 'pvh' | 'hvm';
  vcpus: number;
  /** Secondary consoles to offer (device/console/1 …). */
  secondaryConsoles: number;
  /** Disks, their images open. */
  disks: { spec: DiskSpec; image: RawDiskHandle }[];
  /** Network interfaces, their TAP devices made. */
  vifs: { spec: VifSpec; link: HostLink }[];
}

export class Toolstack {
  readonly store = new XenStore();
  private readonly console: ConsoleRing;
  private readonly storeRing: XenStoreRing<StoreConnection>;
  private socket: XenStoreSocket<StoreConnection> | undefined;
  private readonly devices: XenbusDevice[] = [];
  private readonly blockDevices: VirtualBlockDevice[] = [];
  private readonly networkDevices: VirtualNetworkDevice[] = [];
  /** Each interface and its xenbus device, for its hotplug script. */
  private readonly vifs: { vif: GuestIdentity['vifs'][number]; device: XenbusDevice }[] = [];
  private running: Promise<void>[] = [];

  private storeChannel: BackendChannel;
  private consoleChannel: BackendChannel;

  constructor(
    memory: GuestMemory,
    memoryMap: MemoryMap,
    private readonly state: DomainState,
    private readonly xen: XenVmm,
    private readonly guest: GuestIdentity,
    output: (bytes: Uint8Array) => void,
    consoleInput: ConsoleInput,
    private readonly socketPath: string,
    /** What the block backends' threads need of the machine. */
    backendThread: BackendThreadInit,
    private readonly logger: Logger,
  ) {
    memoryMap.mapOverlay(XENSTORE_OVERLAY_PAGE, XENSTORE_GFN);
    memoryMap.mapOverlay(CONSOLE_OVERLAY_PAGE, CONSOLE_GFN);
    state.setParam(HVM_PARAM.STORE_PFN, BigInt(XENSTORE_GFN));
    state.setParam(HVM_PARAM.CONSOLE_PFN, BigInt(CONSOLE_GFN));
    seedReservedEntries(memory, xen.grantTable, [
      { ref: GNTTAB_RESERVED.CONSOLE, gfn: CONSOLE_GFN },
      { ref: GNTTAB_RESERVED.XENSTORE, gfn: XENSTORE_GFN },
    ]);
    const grants = guestGrants(xen.grantTable, memory, guest.domid);
    const { store, console } = this.channels();
    const guestLog = new RateLimitedLog(logger);
    this.console = new ConsoleRing(memory.overlayPage(CONSOLE_OVERLAY_PAGE), console, output, consoleInput, guestLog);
    writeDomainTree(this.store, {
      ...guest,
      store: { gfn: XENSTORE_GFN, port: store.guestPort },
      console: { gfn: CONSOLE_GFN, port: console.guestPort },
      startTime: Date.now() / 1000,
    });
    this.store.introduce(guest.domid);
    this.storeChannel = store;
    this.consoleChannel = console;
    this.storeRing = new XenStoreRing(memory.overlayPage(XENSTORE_OVERLAY_PAGE), store, this.store, guest.domid, guestLog);
    this.followRebinds();
    xen.onSoftReset(() => this.rebuildAfterSoftReset());
    for (let devid = 1; devid <= guest.secondaryConsoles; devid++) {
      const device = new XenbusDevice(
        this.store,
        { type: 'console', devid, frontDomid: guest.domid, backendNodes: { protocol: 'vt100' }, frontendNodes: { type: 'xenconsoled', limit: String(CONSOLE_LIMIT) } },
        new SecondaryConsole(xen.backends, grants, output, guestLog),
        guestLog,
      );
      device.plug();
      this.devices.push(device);
    }
    for (const disk of guest.disks) {
      const vbd = new VirtualBlockDevice(disk.image, xen.backends, grants, backendThread, guestLog);
      const device = new XenbusDevice(this.store, vbdSpec(disk.spec, disk.image, guest.domid), vbd, guestLog);
      device.plug();
      this.devices.push(device);
      this.blockDevices.push(vbd);
    }
    for (const vif of guest.vifs) {
      const net = new VirtualNetworkDevice(vif.link, xen.backends, grants, backendThread, guestLog);
      const device = new XenbusDevice(this.store, vifSpec(vif.spec, guest.domid, vif.link), net, guestLog);
      device.plug();
      this.devices.push(device);
      this.networkDevices.push(net);
      this.vifs.push({ vif, device });
    }
  }

  /**
   * The store's and the console's event channels, bound to domain 0, registered for the fast path
   * (guest sends wake their backends straight from the vCPU thread) and named in the HVM parameters.
   */
  private channels(): { store: BackendChannel; console: BackendChannel } {
    const store = this.xen.backends.create();
    const console = this.xen.backends.create();
    store.setFastPath(true);
    console.setFastPath(true);
    this.state.setParam(HVM_PARAM.STORE_EVTCHN, BigInt(store.guestPort));
    this.state.setParam(HVM_PARAM.CONSOLE_EVTCHN, BigInt(console.guestPort));
    return { store, console };
  }

  /**
   * After a soft reset, as libxl does: the reset closed every port, so the store and the console get
   * new channels, their nodes say so, and the domain is introduced again (a fresh store session).
   */
  private rebuildAfterSoftReset(): void {
    const { store, console } = this.channels();
    this.xen.backends.close(this.storeChannel.backendPort);
    this.xen.backends.close(this.consoleChannel.backendPort);
    this.storeChannel = store;
    this.consoleChannel = console;
    const dom = domainPath(this.guest.domid);
    this.store.write(`${dom}/store/port`, String(store.guestPort));
    this.store.write(`${dom}/console/port`, String(console.guestPort));
    this.storeRing.rebind(store);
    this.console.rebind(console);
    this.followRebinds();
    this.store.introduce(this.guest.domid);
  }

  /** A guest that closes its store or console port and binds domain 0's port again from another is served there. */
  private followRebinds(): void {
    this.xen.backends.onGuestRebind(this.storeChannel.backendPort, (channel) => {
      channel.setFastPath(true);
      this.storeChannel = channel;
      this.storeRing.follow(channel);
    });
    this.xen.backends.onGuestRebind(this.consoleChannel.backendPort, (channel) => {
      channel.setFastPath(true);
      this.consoleChannel = channel;
      this.console.rebind(channel);
    });
  }

  /** Starts the backends and the store's socket, and runs the interfaces' hotplug scripts; they serve until stop(). */
  async start(): Promise<void> {
    this.socket = await XenStoreSocket.listen(this.socketPath, this.store, this.logger);
    this.running = [this.console.run(), this.storeRing.run()];
    for (const v of this.vifs) await this.hotplug(v, 'online');
  }

  /**
   * A vif's script, as libxl runs a hotplug script: `script online` once the device is in the store
   * (`offline` when it goes), told the interface (vif), its backend directory (XENBUS_PATH) and the
   * store's socket (XENSTORED_PATH, for xenstore-read). A script that fails going online stops the start.
   */
  private async hotplug({ vif, device }: (typeof this.vifs)[number], action: 'online' | 'offline'): Promise<void> {
    if (vif.spec.script === undefined || vif.link.kind !== 'tap') return;
    const env = { ...process.env, vif: vif.link.tap.name, XENBUS_PATH: device.backend, XENSTORED_PATH: this.socketPath, script: vif.spec.script };
    const r = await new Promise<{ status: number | null; stderr: string; error?: Error }>((resolve) => {
      execFile(vif.spec.script!, [action], { env, timeout: HOTPLUG_TIMEOUT_MS }, (error, _stdout, stderr) => resolve({ status: error ? ((error as { code?: number }).code ?? null) : 0, stderr, error: error ?? undefined }));
    });
    if (r.status === 0) return;
    const why = r.stderr.trim().split('\n').pop() || r.error?.message || `status ${r.status}`;
    if (action === 'online') throw new ConfigError(`vif ${vif.spec.devid}: its script ${vif.spec.script} online failed: ${why}`);
    this.logger.warn({ vif: vif.spec.devid, script: vif.spec.script, why }, 'a vif script failed going offline');
  }

  async stop(): Promise<void> {
    for (const v of this.vifs) await this.hotplug(v, 'offline');
    for (const d of this.devices) d.destroy();
    this.console.stop();
    this.storeRing.stop();
    await Promise.all([...this.running, ...this.blockDevices.map((b) => b.stopped()), ...this.networkDevices.map((n) => n.stopped())]);
    await this.socket?.close();
  }
}

// The nodes Xen's toolstack writes for a new domU (libxl's domain_make and
// build_post, the primary console's entries, and xen-init-dom0's for domain
// 0), so a guest finds in its store what it would find on Xen: its name,
// domid and vm path, memory and vCPU availability, the control nodes it
// answers shutdown requests through, its store and console rings, and the
// directories it may write (data, drivers, feature, attr, error).
import type { Perm } from './store.js';

/** What the tree writer needs of the store: domain 0's own access. */
export interface TreeWriter {
  write(path: string, value: string): void;
  mkdir(path: string): void;
  setPerms(path: string, perms: Perm[]): void;
}

export interface DomainInfo {
  domid: number;
  name: string;
  /** The domain's handle as a UUID string. */
  uuid: string;
  memoryKiB: number;
  /** The balloon target (memory/target). */
  targetKiB: number;
  /** How it booted (libxl's type). */
  type: 'pvh' | 'hvm';
  vcpus: number;
  store: { gfn: number; port: number };
  console: { gfn: number; port: number };
  /** Seconds since the epoch, when the domain was built. */
  startTime: number;
}

/** xenconsoled's default cap on buffered console output (libxl's console limit). */
export const CONSOLE_LIMIT = 1048576;

export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

export function writeDomainTree(store: TreeWriter, d: DomainInfo): void {
  const dom = domainPath(d.domid);
  const vm = `/vm/${d.uuid}`;
  const libxl = `/libxl/${d.domid}`;
  // Owned by domain 0: the guest reads (ro), the guest owns and so reads and writes (rw), or nobody else (none).
  const ro: Perm[] = [{ domid: 0, access: 'n' }, { domid: d.domid, access: 'r' }];
  const rw: Perm[] = [{ domid: d.domid, access: 'n' }];
  const none: Perm[] = [{ domid: 0, access: 'n' }];
  const node = (path: string, perms: Perm[], value?: string) => {
    if (value === undefined) store.mkdir(path);
    else store.write(path, value);
    store.setPerms(path, perms);
  };

  store.write(`${domainPath(0)}/name`, 'Domain-0');
  store.write(`${domainPath(0)}/domid`, '0');

  node(dom, ro);
  node(vm, ro);
  node(libxl, none);
  node(`${libxl}/device`, none);
  store.write(`${libxl}/type`, d.type);
  store.write(`${dom}/vm`, vm);
  store.write(`${dom}/name`, d.name);
  store.write(`${vm}/name`, d.name);
  store.write(`${vm}/uuid`, d.uuid);
  store.write(`${vm}/start_time`, `${Math.floor(d.startTime)}.${String(Math.floor((d.startTime % 1) * 100)).padStart(2, '0')}`);
  for (const dir of ['cpu', 'memory', 'device', 'control']) node(`${dom}/${dir}`, ro);
  node(`${dom}/device/suspend/event-channel`, rw);
  for (const f of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq']) node(`${dom}/control/${f}`, rw);
  for (const dir of ['data', 'drivers', 'feature', 'attr', 'error']) node(`${dom}/${dir}`, rw);
  store.write(`${dom}/control/platform-feature-multiprocessor-suspend`, '1');
  store.write(`${dom}/control/platform-feature-xs_reset_watches`, '1');

  store.write(`${dom}/memory/static-max`, String(d.memoryKiB));
  store.write(`${dom}/memory/target`, String(d.targetKiB));
  store.write(`${dom}/memory/videoram`, '0');
  store.write(`${dom}/domid`, String(d.domid));
  store.write(`${dom}/store/port`, String(d.store.port));
  store.write(`${dom}/store/ring-ref`, String(d.store.gfn));
  for (let v = 0; v < d.vcpus; v++) store.write(`${dom}/cpu/${v}/availability`, 'online');

  // The primary console's frontend directory belongs to the guest; its backend, domain 0, reads it.
  node(`${dom}/console`, [{ domid: d.domid, access: 'n' }, { domid: 0, access: 'r' }]);
  store.write(`${dom}/console/port`, String(d.console.port));
  store.write(`${dom}/console/ring-ref`, String(d.console.gfn));
  store.write(`${dom}/console/limit`, String(CONSOLE_LIMIT));
  store.write(`${dom}/console/type`, 'xenconsoled');
  store.write(`${dom}/console/output`, 'pty');
}

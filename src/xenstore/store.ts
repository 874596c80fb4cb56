// The XenStore engine: xenstored 4.17's semantics without its I/O. A
// transport hands it one request at a time for a connection and gets back,
// through that connection's `send`, exactly one reply (or XS_ERROR) and then
// the watch events the request caused. The VMM reads and writes the store as
// domain 0 through the methods below. Nothing here blocks, times out or
// touches a guest: rings, sockets and event channels are the transports'.
import { DOMID } from '../xen/abi/xen.js';
import { XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XS, type XsdError } from '../xen/abi/xenstore.js';
import { fail, XsError } from './errors.js';
import { getNode, mkdir, type OpContext, removeSubtree, rm, setPerms, write } from './ops.js';
import {
  canonicalize,
  childPath,
  domainPath,
  isValidNodePath,
  parentOf,
  SPECIAL_INTRODUCE,
  SPECIAL_RELEASE,
} from './paths.js';
import { atoiUnsigned, countStrings, latin1, latin1Bytes, nulTerminated, oneArg, strtoull, terminatedStrings } from './payload.js';
import {
  type Actor,
  canRead,
  isPrivileged,
  parsePerm,
  type Perm,
  PERM_OWNER,
  PERM_READ,
  PERM_WRITE,
  permFor,
  permString,
  validPerms,
  VMM_ACTOR,
} from './perms.js';
import { DEFAULT_QUOTAS, type Quotas } from './quotas.js';
import {
  loadNode,
  loadPerms,
  type SavedConnection,
  type SavedTransaction,
  saveNode,
  savePerms,
  type StoreSnapshot,
} from './snapshot.js';
import { Transaction } from './transaction.js';
import { makeNode, type Node, NodeTree } from './tree.js';
import type { NodeView, WatchMatch } from './view.js';
import { type IndexedWatch, WatchIndex } from './watches.js';
import type { XsMessage } from './wire.js';

export { XsError } from './errors.js';
export type { Perm } from './perms.js';
export { DEFAULT_QUOTAS, type Quotas } from './quotas.js';
export type { StoreSnapshot } from './snapshot.js';

export interface StoreConnection {
  readonly id: number;
  readonly domid: number;
}

/** What the VMM does when the toolstack introduces or releases a domain over the wire; throwing an XsError refuses the request with that error. */
export interface StoreHooks {
  introduce?(domid: number, gfn: bigint, port: number): void;
  release?(domid: number): void;
}

export interface StoreOptions {
  quotas?: Partial<Quotas>;
  hooks?: StoreHooks;
}

type Send = (m: XsMessage) => void;

class Connection implements StoreConnection {
  readonly watches: Watch[] = [];
  readonly transactions = new Map<number, Transaction>();
  nextTransactionId = 1;
  /** Messages for a restored connection whose transport has not re-attached yet. */
  readonly held: XsMessage[] = [];

  constructor(
    readonly id: number,
    readonly domid: number,
    public send: Send | undefined,
  ) {}
}

interface Watch extends IndexedWatch {
  /** Undefined: one of the VMM's own watches. */
  readonly owner: Connection | undefined;
  readonly token: string;
  /** Set with a relative path: its events carry paths relative to the owner's domain path. */
  readonly relative: boolean;
  readonly fire: ((path: string, token: string) => void) | undefined;
}

interface Event {
  readonly watch: Watch;
  readonly path: string;
}

// Every request type xenstored 4.17 serves; the rest are ENOSYS.
const REQUESTS: ReadonlySet<number> = new Set([
  XS.CONTROL, XS.DIRECTORY, XS.READ, XS.GET_PERMS, XS.WATCH, XS.UNWATCH, XS.TRANSACTION_START, XS.TRANSACTION_END,
  XS.INTRODUCE, XS.RELEASE, XS.GET_DOMAIN_PATH, XS.WRITE, XS.MKDIR, XS.RM, XS.SET_PERMS, XS.IS_DOMAIN_INTRODUCED,
  XS.RESUME, XS.SET_TARGET, XS.RESET_WATCHES, XS.DIRECTORY_PART,
]);
// Domain 0 only (xenstored's XS_FLAG_PRIV): EACCES for anyone else.
const PRIVILEGED: ReadonlySet<number> = new Set([
  XS.CONTROL, XS.INTRODUCE, XS.RELEASE, XS.IS_DOMAIN_INTRODUCED, XS.RESUME, XS.SET_TARGET,
]);
// Requests that change the live tree (not TRANSACTION_END: ending a transaction must stay possible, and frees history).
const CHANGES: ReadonlySet<number> = new Set([XS.WRITE, XS.MKDIR, XS.RM, XS.SET_PERMS]);
// Requests whose transaction id is ignored (XS_FLAG_NOTID).
const IGNORE_TRANSACTION: ReadonlySet<number> = new Set([XS.WATCH, XS.UNWATCH]);

const OK = nulTerminated(['OK']);
const ERROR_PAYLOADS = new Map<XsdError, Uint8Array>();
const EMPTY = new Uint8Array(0);
/** Owned by domain 0, no access for anyone else: the initial nodes, and the special ones until domain 0 sets others. */
const DOMAIN0_ONLY: readonly Perm[] = [{ domid: 0, access: 'n' }];

function errorPayload(code: XsdError): Uint8Array {
  let p = ERROR_PAYLOADS.get(code);
  if (p === undefined) ERROR_PAYLOADS.set(code, (p = nulTerminated([code])));
  return p;
}

function isDomid(domid: number): boolean {
  return Number.isInteger(domid) && domid >= 0 && domid <= 0xffffffff;
}

export class XenStore {
  private readonly quotas: Quotas;
  private readonly hooks: StoreHooks;
  private tree = new NodeTree();
  private readonly connections = new Map<number, Connection>();
  private nextConnectionId = 1;
  private nextWatchSeq = 1;
  private readonly watchIndex = new WatchIndex<Watch>();
  private readonly vmmWatches = new Set<Watch>();
  private readonly watchesByDomain = new Map<number, number>();
  private readonly owned = new Map<number, number>();
  private readonly introduced = new Map<number, { shutDown: boolean }>();
  private readonly targets = new Map<number, number>();
  private readonly specialPerms = new Map<string, readonly Perm[]>([
    [SPECIAL_INTRODUCE, DOMAIN0_ONLY],
    [SPECIAL_RELEASE, DOMAIN0_ONLY],
  ]);
  private outbox: Event[] = [];
  private flushing = false;

  /** The store itself as operations see it outside a transaction. */
  private readonly live: NodeView = {
    get: (path) => this.tree.get(path),
    set: (path, node) => this.tree.set(path, node),
    delete: (path) => this.tree.delete(path),
    nextGeneration: () => this.tree.nextGeneration(),
    nodesOwnedBy: (domid) => this.owned.get(domid) ?? 0,
    addOwnedNodes: (domid, delta) => this.addOwned(domid, delta),
    changed: (path, match, node, oldPerms) => this.fire(path, match, node, oldPerms),
  };

  constructor(options: StoreOptions = {}) {
    this.quotas = { ...DEFAULT_QUOTAS, ...options.quotas };
    this.hooks = options.hooks ?? {};
    // xenstored's initial tree (setup_structure): /, /tool and /tool/xenstored.
    const made: [string, string[]][] = [['/', ['tool']], ['/tool', ['xenstored']], ['/tool/xenstored', []]];
    for (const [path, children] of made) {
      this.tree.set(path, makeNode(this.tree.nextGeneration(), EMPTY, DOMAIN0_ONLY, children));
    }
    this.owned.set(0, made.length);
  }

  /** A new client; `send` receives every reply and watch event for it, in order. Domain 0 is privileged (the toolstack's socket). */
  connect(domid: number, send: Send): StoreConnection {
    if (!isDomid(domid)) throw new XsError('EINVAL');
    const c = new Connection(this.nextConnectionId++, domid, send);
    this.connections.set(c.id, c);
    return c;
  }

  /** Drops the connection's watches and open transactions. */
  disconnect(conn: StoreConnection): void {
    const c = this.connections.get(conn.id);
    if (c === undefined) return;
    this.resetConnection(c);
    this.connections.delete(c.id);
  }

  /** After restore, a transport re-attaches its connection (same id) and gets its watches and transactions back. */
  reconnect(id: number, domid: number, send: Send): StoreConnection {
    const c = this.connections.get(id);
    if (c === undefined) throw new XsError('ENOENT');
    if (c.domid !== domid) throw new XsError('EINVAL');
    if (c.send !== undefined) throw new XsError('EISCONN');
    c.send = send;
    for (const m of c.held.splice(0)) send(m);
    return c;
  }

  /**
   * Serves one request synchronously: exactly one reply (or XS_ERROR) through
   * send, then any watch events it caused, to every connection whose watch
   * matches. Reply payloads may be shared with the store: read-only.
   */
  handle(conn: StoreConnection, m: XsMessage): void {
    const c = this.connections.get(conn.id);
    if (c === undefined || c !== conn) throw new Error(`XenStore.handle: connection ${conn.id} is not connected`);
    let type = m.type;
    let payload: Uint8Array;
    try {
      payload = this.serveCharged(c, m);
      if (payload.length > XENSTORE_PAYLOAD_MAX) fail('E2BIG');
    } catch (e) {
      if (!(e instanceof XsError)) throw e;
      type = XS.ERROR;
      payload = errorPayload(e.code);
    }
    this.send(c, { type, reqId: m.reqId, txId: m.txId, payload });
    this.flushEvents();
  }

  // ---- The VMM's own access, as domain 0. Values are bytes; as strings they are latin1: one char per byte.

  /** The value at `path` as a latin1 string (exactly its bytes); readBytes gives the bytes. */
  read(path: string): string {
    return latin1(this.readBytes(path));
  }

  readBytes(path: string): Uint8Array {
    return this.asVmm((ctx) => getNode(ctx, this.resolve(0, path), PERM_READ).value.slice());
  }

  /** Writes bytes, or a latin1 string (EINVAL if a char is above U+00FF); creates missing parents. */
  write(path: string, value: string | Uint8Array): void {
    this.asVmm((ctx) => {
      const bytes = typeof value === 'string' ? (latin1Bytes(value) ?? fail('EINVAL')) : value.slice();
      write(ctx, this.resolve(0, path), bytes);
    });
  }

  mkdir(path: string): void {
    this.asVmm((ctx) => mkdir(ctx, this.resolve(0, path)));
  }

  rm(path: string): void {
    this.asVmm((ctx) => rm(ctx, this.resolve(0, path)));
  }

  directory(path: string): string[] {
    return this.asVmm((ctx) => [...getNode(ctx, this.resolve(0, path), PERM_READ).children]);
  }

  exists(path: string): boolean {
    return this.asVmm(() => this.tree.get(this.resolve(0, path)) !== undefined);
  }

  /** Permissions of a node, or of @introduceDomain / @releaseDomain. */
  getPerms(path: string): Perm[] {
    const perms = this.specialPerms.get(path) ?? this.asVmm((ctx) => getNode(ctx, this.resolve(0, path), PERM_READ).perms);
    return perms.map((p) => ({ ...p }));
  }

  /** Sets a node's permissions (firing its watches), or those of @introduceDomain / @releaseDomain (which decide who hears those events). */
  setPerms(path: string, perms: Perm[]): void {
    this.asVmm((ctx) => {
      const checked = validPerms(perms) ?? fail('EINVAL');
      if (path[0] === '@') this.setSpecialPerms(VMM_ACTOR, path, checked);
      else setPerms(ctx, this.resolve(0, path), checked);
    });
  }

  /** A VMM-side watch (fires on registration, like any watch); returns its removal. */
  watch(path: string, token: string, fire: (path: string, token: string) => void): () => void {
    const w = this.asVmm((): Watch => {
      const { path: abs, relative } = this.watchPath(0, path);
      for (const x of this.vmmWatches) if (x.path === abs && x.token === token) fail('EEXIST');
      const added: Watch = { owner: undefined, path: abs, token, relative, fire, ownerOrder: 0, seq: this.nextWatchSeq++ };
      this.vmmWatches.add(added);
      this.watchIndex.add(added);
      this.queueEvent(added, abs);
      return added;
    });
    return () => {
      if (this.vmmWatches.delete(w)) this.watchIndex.remove(w);
    };
  }

  /** As XS_INTRODUCE from the toolstack (without the hook): marks the domain introduced and fires @introduceDomain; introducing it again resets its connections. */
  introduce(domid: number): void {
    this.asVmm(() => {
      if (!isDomid(domid) || domid >= DOMID.FIRST_RESERVED) fail('EINVAL');
      this.introduceDomain(domid);
    });
  }

  /** As XS_RELEASE (without the hook): drops the domain's watches and transactions, removes the nodes it owns, fires @releaseDomain. */
  release(domid: number): void {
    this.asVmm(() => {
      if (domid === 0) fail('EINVAL');
      if (!this.introduced.has(domid)) fail('ENOENT');
      this.releaseDomain(domid);
    });
  }

  isIntroduced(domid: number): boolean {
    return domid === 0 || this.introduced.has(domid);
  }

  /**
   * The domain shut down or crashed: fires @releaseDomain once, as xenstored
   * does when VIRQ_DOM_EXC shows it; XS_RESUME re-arms that.
   */
  domainShutDown(domid: number): void {
    this.asVmm(() => {
      const d = this.introduced.get(domid);
      if (d === undefined || d.shutDown) return;
      d.shutDown = true;
      this.fireSpecial(SPECIAL_RELEASE);
    });
  }

  // ---- Save and restore.

  /** JSON-safe state: the tree with perms and generations, per-domain accounting, introduced domains, targets, and each connection's watches and open transactions keyed by connection id. */
  serialize(): StoreSnapshot {
    return {
      format: 'xenkvm-xenstore-1',
      generation: this.tree.generation,
      nodes: [...this.tree.walk()].map(([path, node]) => [path, saveNode(node)]),
      history: [...this.tree.pastVersions()].map(([path, past]) => [
        path,
        past.map((v) => ({ node: v.node && saveNode(v.node), until: v.until })),
      ]),
      specialPerms: [...this.specialPerms].map(([name, perms]) => [name, savePerms(perms)]),
      introduced: [...this.introduced].map(([domid, d]) => [domid, d.shutDown]),
      targets: [...this.targets],
      ownedNodes: [...this.owned],
      nextConnectionId: this.nextConnectionId,
      nextWatchSeq: this.nextWatchSeq,
      connections: [...this.connections.values()].map(
        (c): SavedConnection => ({
          id: c.id,
          domid: c.domid,
          nextTransactionId: c.nextTransactionId,
          watches: c.watches.map((w) => ({ path: w.path, token: w.token, relative: w.relative, seq: w.seq })),
          transactions: [...c.transactions.values()].map(saveTransaction),
        }),
      ),
    };
  }

  /** A store in the saved state; its connections wait for reconnect, holding what is sent to them meanwhile. The VMM's own watches are not saved: set them again. */
  static restore(snapshot: StoreSnapshot, options: StoreOptions = {}): XenStore {
    if (snapshot.format !== 'xenkvm-xenstore-1') throw new Error(`XenStore.restore: unknown format ${String(snapshot.format)}`);
    const store = new XenStore(options);
    store.load(snapshot);
    return store;
  }

  private load(s: StoreSnapshot): void {
    this.tree = new NodeTree(s.generation);
    for (const [path, node] of s.nodes) this.tree.restoreNode(path, loadNode(node));
    for (const [path, past] of s.history) {
      this.tree.restorePast(path, past.map((v) => ({ node: v.node && loadNode(v.node), until: v.until })));
    }
    for (const [name, perms] of s.specialPerms) this.specialPerms.set(name, loadPerms(perms));
    for (const [domid, shutDown] of s.introduced) this.introduced.set(domid, { shutDown });
    for (const [domid, target] of s.targets) this.targets.set(domid, target);
    this.owned.clear();
    for (const [domid, n] of s.ownedNodes) this.owned.set(domid, n);
    this.nextConnectionId = s.nextConnectionId;
    this.nextWatchSeq = s.nextWatchSeq;
    for (const sc of s.connections) {
      const c = new Connection(sc.id, sc.domid, undefined);
      c.nextTransactionId = sc.nextTransactionId;
      for (const sw of sc.watches) {
        this.addWatch({ owner: c, path: sw.path, token: sw.token, relative: sw.relative, fire: undefined, ownerOrder: c.id, seq: sw.seq });
      }
      for (const st of sc.transactions) {
        const t = this.newTransaction(c, st.id, st.snapshot);
        t.failed = st.failed;
        t.createdNodes = st.createdNodes;
        for (const [path, base, fire] of st.accessed) {
          t.restoreAccess(path, { base: base === null ? undefined : loadNode(base), fire: fire ?? undefined });
        }
        for (const [path, node] of st.writes) t.writes.set(path, node && loadNode(node));
        for (const [domid, delta] of st.ownedDelta) t.ownedDelta.set(domid, delta);
        this.tree.restoreSnapshot(st.snapshot);
        c.transactions.set(t.id, t);
      }
      this.connections.set(c.id, c);
    }
  }

  // ---- Requests.

  /**
   * serve(), with the old versions its changes leave for open transactions charged to an unprivileged
   * caller: past xenstored's hard memory quota, a change is ENOMEM (an outside write and remove of
   * ever new nodes, with a transaction open, used to grow the store without bound).
   */
  private serveCharged(c: Connection, m: XsMessage): Uint8Array {
    if (isPrivileged(c.domid)) return this.serve(c, m);
    if (CHANGES.has(m.type) && this.tree.historyBytes(c.domid) >= this.quotas.historyBytesPerDomain) fail('ENOMEM');
    this.tree.chargeTo = c.domid;
    try {
      return this.serve(c, m);
    } finally {
      this.tree.chargeTo = undefined;
    }
  }

  private serve(c: Connection, m: XsMessage): Uint8Array {
    if (!REQUESTS.has(m.type)) fail('ENOSYS');
    if (PRIVILEGED.has(m.type) && !isPrivileged(c.domid)) fail('EACCES');
    let tx: Transaction | undefined;
    if (m.txId !== 0 && !IGNORE_TRANSACTION.has(m.type)) tx = c.transactions.get(m.txId) ?? fail('ENOENT');
    const ctx: OpContext = { actor: this.actorOf(c.domid), view: tx ?? this.live, quotas: this.quotas };
    const p = m.payload;
    switch (m.type) {
      case XS.READ:
        return getNode(ctx, this.pathArg(c, p), PERM_READ).value;
      case XS.WRITE: {
        const nul = p.indexOf(0);
        if (nul < 0) fail('EINVAL');
        write(ctx, this.resolve(c.domid, latin1(p, 0, nul)), p.slice(nul + 1));
        return OK;
      }
      case XS.MKDIR:
        mkdir(ctx, this.pathArg(c, p));
        return OK;
      case XS.RM:
        rm(ctx, this.pathArg(c, p));
        return OK;
      case XS.DIRECTORY:
        return nulTerminated(getNode(ctx, this.pathArg(c, p), PERM_READ).children);
      case XS.DIRECTORY_PART:
        return this.directoryPart(ctx, c, p);
      case XS.GET_PERMS:
        return nulTerminated(getNode(ctx, this.pathArg(c, p), PERM_READ).perms.map(permString));
      case XS.SET_PERMS:
        this.setPermsRequest(ctx, c, p);
        return OK;
      case XS.WATCH:
        this.watchRequest(c, p);
        return OK;
      case XS.UNWATCH:
        this.unwatchRequest(c, p);
        return OK;
      case XS.RESET_WATCHES:
        this.resetConnection(c);
        return OK;
      case XS.TRANSACTION_START:
        return this.startTransaction(c, tx);
      case XS.TRANSACTION_END: {
        const arg = oneArg(p);
        if (arg !== 'T' && arg !== 'F') fail('EINVAL');
        if (tx === undefined) fail('ENOENT');
        this.endTransaction(c, tx, arg === 'T');
        return OK;
      }
      case XS.GET_DOMAIN_PATH:
        return nulTerminated([domainPath(atoiUnsigned(oneArg(p) ?? fail('EINVAL')))]);
      case XS.INTRODUCE:
        this.introduceRequest(p);
        return OK;
      case XS.RELEASE: {
        const domid = this.domainArg(p);
        this.hooks.release?.(domid);
        this.releaseDomain(domid);
        return OK;
      }
      case XS.RESUME:
        this.introduced.get(this.domainArg(p))!.shutDown = false;
        return OK;
      case XS.IS_DOMAIN_INTRODUCED: {
        const domid = atoiUnsigned(oneArg(p) ?? fail('EINVAL'));
        return nulTerminated([domid === DOMID.SELF || this.isIntroduced(domid) ? 'T' : 'F']);
      }
      case XS.SET_TARGET: {
        const args = terminatedStrings(p);
        if (args.length < 2) fail('EINVAL');
        const [domid, target] = [atoiUnsigned(args[0]!), atoiUnsigned(args[1]!)];
        if (!this.isIntroduced(domid) || !this.isIntroduced(target)) fail('ENOENT');
        this.targets.set(domid, target);
        return OK;
      }
      default:
        // XS_CONTROL: xenkvm implements none of xenstored's control commands, and xenstored answers an unknown one with EINVAL.
        return fail('EINVAL');
    }
  }

  private actorOf(domid: number): Actor {
    return { domid, target: this.targets.get(domid) };
  }

  /** A node path from a domain: absolute, or relative to its domain path; EINVAL unless valid. */
  private resolve(domid: number, raw: string): string {
    const path = canonicalize(domid, raw);
    if (!isValidNodePath(path, this.quotas.pathLength)) fail('EINVAL');
    return path;
  }

  /** The path of a request whose payload is exactly one string. */
  private pathArg(c: Connection, payload: Uint8Array): string {
    return this.resolve(c.domid, oneArg(payload) ?? fail('EINVAL'));
  }

  /** The domain a RELEASE or RESUME names: not domain 0 (EINVAL), and introduced (ENOENT). */
  private domainArg(payload: Uint8Array): number {
    const domid = atoiUnsigned(oneArg(payload) ?? fail('EINVAL'));
    if (domid === 0) fail('EINVAL');
    if (!this.introduced.has(domid)) fail('ENOENT');
    return domid;
  }

  /**
   * DIRECTORY_PART <path>|<offset>|: the node's generation count, then the
   * child list (names each with its NUL) from byte `offset`, as much as fits
   * in a payload; a final extra NUL marks the end of the list.
   */
  private directoryPart(ctx: OpContext, c: Connection, p: Uint8Array): Uint8Array {
    if (countStrings(p) !== 2) fail('EINVAL');
    const [path, offsetArg] = terminatedStrings(p) as [string, string];
    const node = getNode(ctx, this.resolve(c.domid, path), PERM_READ);
    const children = nulTerminated(node.children);
    const generation = nulTerminated([String(node.generation)]);
    const offset = atoiUnsigned(offsetArg);
    if (offset >= children.length) return nulTerminated([String(node.generation), '']);
    const room = XENSTORE_PAYLOAD_MAX - generation.length - 1;
    let length = 0;
    for (;;) {
      const nameLength = children.indexOf(0, offset + length) - (offset + length);
      if (length + nameLength >= room) break;
      length += nameLength + 1;
      if (offset + length === children.length) break;
    }
    const last = offset + length === children.length;
    const out = new Uint8Array(generation.length + length + (last ? 1 : 0));
    out.set(generation);
    out.set(children.subarray(offset, offset + length), generation.length);
    return out;
  }

  /** SET_PERMS <path>|<perm>|+: checked in xenstored's order (count, quota, syntax, then the node). */
  private setPermsRequest(ctx: OpContext, c: Connection, p: Uint8Array): void {
    const count = countStrings(p) - 1;
    if (count < 1) fail('EINVAL');
    if (!isPrivileged(c.domid) && count > this.quotas.permsPerNode) fail('ENOSPC');
    const [path, ...entries] = terminatedStrings(p) as [string, ...string[]];
    const perms = entries.map((s) => parsePerm(s) ?? fail('EINVAL'));
    if (path[0] === '@') this.setSpecialPerms(ctx.actor, path, perms);
    else setPerms(ctx, this.resolve(c.domid, path), perms);
  }

  /** The permissions of @introduceDomain or @releaseDomain: who hears those events. Only their owner (domain 0 at first) may change them. */
  private setSpecialPerms(actor: Actor, name: string, perms: readonly Perm[]): void {
    const current = this.specialPerms.get(name) ?? fail('EINVAL');
    const need = PERM_WRITE | PERM_OWNER;
    if ((permFor(actor, current) & need) !== need) fail('EACCES');
    this.specialPerms.set(name, perms);
  }

  private introduceRequest(p: Uint8Array): void {
    const args = terminatedStrings(p);
    if (args.length < 3) fail('EINVAL');
    const domid = atoiUnsigned(args[0]!);
    const gfn = strtoull(args[1]!);
    const port = atoiUnsigned(args[2]!);
    // xenstored cannot map the ring of a domain that does not exist: here, a domid Xen reserves.
    if (port === 0 || domid >= DOMID.FIRST_RESERVED) fail('EINVAL');
    this.hooks.introduce?.(domid, gfn, port);
    this.introduceDomain(domid);
  }

  // ---- Watches.

  /** A watch path: an @ name (at most XENSTORE_REL_PATH_MAX long) or a node path; whether it was relative. */
  private watchPath(domid: number, raw: string): { path: string; relative: boolean } {
    if (raw[0] === '@') {
      if (raw.length > XENSTORE_REL_PATH_MAX) fail('EINVAL');
      return { path: raw, relative: false };
    }
    return { path: this.resolve(domid, raw), relative: raw[0] !== '/' };
  }

  private watchRequest(c: Connection, p: Uint8Array): void {
    const args = terminatedStrings(p);
    if (args.length !== 2) fail('EINVAL');
    const token = args[1]!;
    const { path, relative } = this.watchPath(c.domid, args[0]!);
    if (c.watches.some((w) => w.path === path && w.token === token)) fail('EEXIST');
    // xenstored compares the count before this watch with the quota, so a domain may set one more.
    if (!isPrivileged(c.domid) && (this.watchesByDomain.get(c.domid) ?? 0) > this.quotas.watchesPerDomain) fail('E2BIG');
    const w: Watch = { owner: c, path, token, relative, fire: undefined, ownerOrder: c.id, seq: this.nextWatchSeq++ };
    this.addWatch(w);
    // Fired once on registration, whoever may read the path: it follows the reply.
    this.queueEvent(w, path);
  }

  private unwatchRequest(c: Connection, p: Uint8Array): void {
    const args = terminatedStrings(p);
    if (args.length !== 2) fail('EINVAL');
    const path = canonicalize(c.domid, args[0]!);
    const w = c.watches.find((x) => x.path === path && x.token === args[1]);
    if (w === undefined) fail('ENOENT');
    this.removeWatch(w);
  }

  private addWatch(w: Watch): void {
    const c = w.owner!;
    c.watches.push(w);
    this.watchIndex.add(w);
    this.watchesByDomain.set(c.domid, (this.watchesByDomain.get(c.domid) ?? 0) + 1);
  }

  private removeWatch(w: Watch): void {
    const c = w.owner!;
    c.watches.splice(c.watches.indexOf(w), 1);
    this.watchIndex.remove(w);
    this.watchesByDomain.set(c.domid, this.watchesByDomain.get(c.domid)! - 1);
  }

  /** RESET_WATCHES, and what introducing a domain again or releasing it does to its connections: no watches, no transactions. */
  private resetConnection(c: Connection): void {
    for (const w of [...c.watches]) this.removeWatch(w);
    for (const t of c.transactions.values()) this.tree.closeSnapshot(t.snapshot);
    c.transactions.clear();
  }

  /**
   * A change at `path`: events for the watches it matches whose owner may
   * read the node, its parent, or the node under its old permissions
   * (xenstored's watch_permitted), decided now, delivered after the reply.
   */
  private fire(path: string, match: WatchMatch, node: Node | undefined, oldPerms: readonly Perm[] | undefined): void {
    const watches = this.watchIndex.matching(path, match);
    if (watches.length === 0) return;
    const allowed = new Map<Connection, boolean>();
    for (const w of watches) {
      const owner = w.owner;
      if (owner !== undefined) {
        let ok = allowed.get(owner);
        if (ok === undefined) allowed.set(owner, (ok = this.mayHear(this.actorOf(owner.domid), path, node, oldPerms)));
        if (!ok) continue;
      }
      this.queueEvent(w, path);
    }
  }

  private mayHear(actor: Actor, path: string, node: Node | undefined, oldPerms: readonly Perm[] | undefined): boolean {
    if (oldPerms !== undefined && canRead(actor, oldPerms)) return true;
    const current = node ?? this.tree.get(path);
    if (current === undefined) return false;
    if (canRead(actor, current.perms)) return true;
    const parent = this.tree.get(parentOf(path));
    return parent !== undefined && canRead(actor, parent.perms);
  }

  /** @introduceDomain or @releaseDomain: to the watches on it (and on "/", which matches every event) whose owner may read its permissions. */
  private fireSpecial(name: string): void {
    const perms = this.specialPerms.get(name)!;
    for (const w of this.watchIndex.matching(name, 'subtree')) {
      if (w.owner === undefined || canRead(this.actorOf(w.owner.domid), perms)) this.queueEvent(w, name);
    }
  }

  private queueEvent(w: Watch, path: string): void {
    const eventPath = w.relative ? path.slice(domainPath(w.owner?.domid ?? 0).length + 1) : path;
    // xenstored drops an event too long for one message.
    if (eventPath.length + w.token.length + 2 > XENSTORE_PAYLOAD_MAX) return;
    this.outbox.push({ watch: w, path: eventPath });
  }

  /** Delivers queued events in order; events queued meanwhile (by a VMM watch callback writing) go out in the same pass. */
  private flushEvents(): void {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (let i = 0; i < this.outbox.length; i++) {
        const { watch, path } = this.outbox[i]!;
        const owner = watch.owner;
        if (owner === undefined) {
          if (this.vmmWatches.has(watch)) watch.fire!(path, watch.token);
        } else if (this.connections.get(owner.id) === owner) {
          this.send(owner, { type: XS.WATCH_EVENT, reqId: 0, txId: 0, payload: nulTerminated([path, watch.token]) });
        }
      }
    } finally {
      this.outbox = [];
      this.flushing = false;
    }
  }

  private send(c: Connection, m: XsMessage): void {
    if (c.send === undefined) c.held.push(m);
    else c.send(m);
  }

  // ---- Transactions.

  private newTransaction(c: Connection, id: number, snapshot: number): Transaction {
    const limit = isPrivileged(c.domid) ? undefined : this.quotas.nodesPerTransaction;
    return new Transaction(id, snapshot, this.tree, (domid) => this.owned.get(domid) ?? 0, limit);
  }

  private startTransaction(c: Connection, current: Transaction | undefined): Uint8Array {
    if (current !== undefined) fail('EBUSY');
    // As for watches, xenstored lets a connection open one more than the quota.
    if (!isPrivileged(c.domid) && c.transactions.size > this.quotas.transactionsPerDomain) fail('ENOSPC');
    let id: number;
    do {
      id = c.nextTransactionId;
      c.nextTransactionId = (c.nextTransactionId + 1) >>> 0;
    } while (id === 0 || c.transactions.has(id));
    const t = this.newTransaction(c, id, this.tree.openSnapshot());
    c.transactions.set(id, t);
    return nulTerminated([String(id)]);
  }

  /** TRANSACTION_END: the transaction is gone whatever the outcome; committing may still fail. */
  private endTransaction(c: Connection, t: Transaction, commit: boolean): void {
    c.transactions.delete(t.id);
    this.tree.closeSnapshot(t.snapshot);
    if (!commit) return;
    if (t.failed) fail('ENOMEM');
    if (t.createdNodes && !isPrivileged(c.domid)) {
      // xenstored's commit check (acc_fix_domains): a domain may not end at its quota or above.
      for (const [domid, delta] of t.ownedDelta) {
        if (!isPrivileged(domid) && Math.max(0, (this.owned.get(domid) ?? 0) + delta) >= this.quotas.nodesPerDomain) fail('ENOSPC');
      }
    }
    if (t.conflict() !== undefined) fail('EAGAIN');
    for (const path of t.accessed.keys()) {
      const node = t.writes.get(path);
      if (node === null) this.tree.delete(path);
      else if (node !== undefined) this.tree.set(path, makeNode(this.tree.nextGeneration(), node.value, node.perms, node.children));
    }
    for (const [domid, delta] of t.ownedDelta) this.addOwned(domid, delta);
    for (const [path, access] of t.accessed) {
      if (access.fire !== undefined) this.fire(path, access.fire, undefined, access.base?.perms);
    }
  }

  // ---- Domains.

  private introduceDomain(domid: number): void {
    // Domain 0 is xenstored's own: always introduced, never announced, its connections (the toolstack's) never reset.
    if (domid === 0) return;
    if (!this.introduced.has(domid)) {
      this.introduced.set(domid, { shutDown: false });
      this.fireSpecial(SPECIAL_INTRODUCE);
    }
    for (const c of this.connections.values()) if (c.domid === domid) this.resetConnection(c);
  }

  private releaseDomain(domid: number): void {
    // Its watches go first, so that removing its nodes does not notify it.
    for (const c of this.connections.values()) if (c.domid === domid) this.resetConnection(c);
    this.targets.delete(domid);
    this.removeNodesOwnedBy(domid);
    for (const [name, perms] of this.specialPerms) {
      const kept = perms.filter((p, i) => i === 0 || p.domid !== domid);
      if (kept[0]!.domid === domid) kept[0] = { ...kept[0]!, domid: 0 };
      this.specialPerms.set(name, kept);
    }
    this.introduced.delete(domid);
    this.fireSpecial(SPECIAL_RELEASE);
  }

  /** xenstored 4.17 deletes a released domain's nodes with everything below them (domain_tree_remove), so a later domain with its id finds none. */
  private removeNodesOwnedBy(domid: number): void {
    const visit = (path: string, node: Node): void => {
      for (const name of node.children) {
        if ((this.owned.get(domid) ?? 0) === 0) return;
        const p = childPath(path, name);
        const child = this.tree.get(p);
        if (child === undefined) continue;
        if (child.perms[0]!.domid === domid) removeSubtree(this.live, p);
        else visit(p, child);
      }
    };
    visit('/', this.tree.get('/')!);
  }

  private addOwned(domid: number, delta: number): void {
    this.owned.set(domid, (this.owned.get(domid) ?? 0) + delta);
  }

  /** Runs a VMM call as domain 0 on the live store: events it causes are delivered before it returns, its errors are XsErrors of its own. */
  private asVmm<T>(op: (ctx: OpContext) => T): T {
    try {
      return op({ actor: VMM_ACTOR, view: this.live, quotas: this.quotas });
    } catch (e) {
      throw e instanceof XsError ? new XsError(e.code) : e;
    } finally {
      this.flushEvents();
    }
  }
}

function saveTransaction(t: Transaction): SavedTransaction {
  return {
    id: t.id,
    snapshot: t.snapshot,
    failed: t.failed,
    createdNodes: t.createdNodes,
    accessed: [...t.accessed].map(([path, a]) => [path, a.base === undefined ? null : saveNode(a.base), a.fire ?? null]),
    writes: [...t.writes].map(([path, node]) => [path, node && saveNode(node)]),
    ownedDelta: [...t.ownedDelta],
  };
}

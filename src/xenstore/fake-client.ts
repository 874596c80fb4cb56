// A XenStore client for tests: sends requests through XenStore.handle, checks
// the engine's promise (exactly one reply, first, echoing type or XS_ERROR,
// req_id and tx_id), and keeps the watch events that follow.
import assert from 'node:assert/strict';
import { XS } from '../xen/abi/xenstore.js';
import { latin1, nulTerminated } from './payload.js';
import type { StoreConnection, XenStore } from './store.js';
import type { XsMessage } from './wire.js';

/** Wire bytes of a latin1 string, unterminated. */
export function bytes(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

export class FakeClient {
  readonly conn: StoreConnection;
  /** Watch events received and not yet taken: [path, token]. */
  private events: [string, string][] = [];
  private inbox: XsMessage[] = [];
  private nextReqId = 1;
  /** Between sending a request and its reply: an event now would break the reply-first promise. */
  private awaitingReply = false;

  constructor(
    readonly store: XenStore,
    readonly domid: number,
    conn?: StoreConnection,
  ) {
    this.conn = conn ?? store.connect(domid, (m) => this.receive(m));
  }

  /** For a connection restored from a snapshot: re-attaches it to a fresh client. */
  static reattach(store: XenStore, id: number, domid: number): FakeClient {
    let client: FakeClient | undefined;
    const held: XsMessage[] = [];
    const conn = store.reconnect(id, domid, (m) => (client === undefined ? held.push(m) : client.receive(m)));
    client = new FakeClient(store, domid, conn);
    for (const m of held) client.receive(m);
    return client;
  }

  receive(m: XsMessage): void {
    if (m.type === XS.WATCH_EVENT) {
      assert.equal(this.awaitingReply, false, 'a watch event before the reply');
      assert.equal(m.reqId, 0);
      assert.equal(m.txId, 0);
      const parts = latin1(m.payload).split('\0');
      assert.equal(parts.length, 3, 'a watch event is <path>|<token>|');
      assert.equal(parts[2], '');
      this.events.push([parts[0]!, parts[1]!]);
    } else {
      this.awaitingReply = false;
      this.inbox.push(m);
    }
  }

  /** Sends a raw request; returns the reply. */
  call(type: number, payload: Uint8Array, txId = 0): XsMessage {
    const reqId = this.nextReqId++;
    this.awaitingReply = true;
    this.store.handle(this.conn, { type, reqId, txId, payload });
    assert.equal(this.inbox.length, 1, 'exactly one reply');
    const reply = this.inbox.pop()!;
    assert.ok(reply.type === type || reply.type === XS.ERROR, `reply type ${reply.type} to ${type}`);
    assert.equal(reply.reqId, reqId);
    assert.equal(reply.txId, txId);
    return reply;
  }

  /** A request of NUL-terminated strings; the reply payload as latin1 text, or "!CODE" for an error. */
  req(type: number, args: string[], txId = 0): string {
    return text(this.call(type, nulTerminated(args), txId));
  }

  read(path: string, txId = 0): string {
    return this.req(XS.READ, [path], txId);
  }

  /** WRITE <path>|<value> (the value unterminated, as clients send it). */
  write(path: string, value: string, txId = 0): string {
    return text(this.call(XS.WRITE, bytes(`${path}\0${value}`), txId));
  }

  mkdir(path: string, txId = 0): string {
    return this.req(XS.MKDIR, [path], txId);
  }

  rm(path: string, txId = 0): string {
    return this.req(XS.RM, [path], txId);
  }

  /** The child names, or "!CODE". */
  dir(path: string, txId = 0): string[] | string {
    const r = this.req(XS.DIRECTORY, [path], txId);
    return r.startsWith('!') ? r : r.split('\0').slice(0, -1);
  }

  getPerms(path: string, txId = 0): string[] | string {
    const r = this.req(XS.GET_PERMS, [path], txId);
    return r.startsWith('!') ? r : r.split('\0').slice(0, -1);
  }

  setPerms(path: string, perms: string[], txId = 0): string {
    return this.req(XS.SET_PERMS, [path, ...perms], txId);
  }

  watch(path: string, token: string): string {
    return this.req(XS.WATCH, [path, token]);
  }

  unwatch(path: string, token: string): string {
    return this.req(XS.UNWATCH, [path, token]);
  }

  /** TRANSACTION_START; the new id (fails the test on an error). */
  start(): number {
    const r = this.req(XS.TRANSACTION_START, ['']);
    assert.match(r, /^\d+\0$/, `TRANSACTION_START: ${r}`);
    return Number(r.slice(0, -1));
  }

  end(txId: number, commit: boolean): string {
    return this.req(XS.TRANSACTION_END, [commit ? 'T' : 'F'], txId);
  }

  /** The events received since the last call. */
  takeEvents(): [string, string][] {
    const e = this.events;
    this.events = [];
    return e;
  }
}

export function text(m: XsMessage): string {
  return m.type === XS.ERROR ? `!${latin1(m.payload).replace(/\0$/, '')}` : latin1(m.payload);
}

// XenStore messages as they travel over a socket or a ring: a 16-byte header
// (type, request id, transaction id, payload length) and the payload, mostly
// NUL-terminated strings. Both transports frame a byte stream with this.
import { XENSTORE_PAYLOAD_MAX, xsdSockmsg } from '../xen/abi/xenstore.js';

export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

export const HEADER_BYTES = xsdSockmsg.native.size;

export function encodeMessage(m: XsMessage): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + m.payload.length);
  out.set(xsdSockmsg.native.encode({ type: m.type, req_id: m.reqId, tx_id: m.txId, len: m.payload.length }));
  out.set(m.payload, HEADER_BYTES);
  return out;
}

/**
 * Cuts a byte stream into messages, holding a partial one until the rest arrives. A header that
 * breaks the protocol (a payload longer than XENSTORE_PAYLOAD_MAX) ends the stream there: the
 * messages before it are still handed out, as xenstored serves each request before reading the
 * next header, and `broken` says why nothing more will be.
 */
export class MessageFramer {
  private pending = new Uint8Array(0);
  private why: string | null = null;

  /** The messages the stream completes with `bytes`, up to a header that breaks the protocol. */
  push(bytes: Uint8Array): XsMessage[] {
    if (this.why !== null) return [];
    const buf = new Uint8Array(this.pending.length + bytes.length);
    buf.set(this.pending);
    buf.set(bytes, this.pending.length);
    const out: XsMessage[] = [];
    let at = 0;
    while (buf.length - at >= HEADER_BYTES) {
      const h = xsdSockmsg.native.decode(buf.subarray(at, at + HEADER_BYTES));
      if (h.len > XENSTORE_PAYLOAD_MAX) {
        this.why = `payload of ${h.len} bytes (at most ${XENSTORE_PAYLOAD_MAX})`;
        break;
      }
      if (buf.length - at < HEADER_BYTES + h.len) break;
      out.push({ type: h.type, reqId: h.req_id, txId: h.tx_id, payload: buf.slice(at + HEADER_BYTES, at + HEADER_BYTES + h.len) });
      at += HEADER_BYTES + h.len;
    }
    this.pending = this.why === null ? buf.slice(at) : new Uint8Array(0);
    return out;
  }

  /** Why the stream broke the protocol, or null while it has not: the connection cannot go on. */
  get broken(): string | null {
    return this.why;
  }

  /** Bytes of a message not yet complete. */
  get buffered(): number {
    return this.pending.length;
  }
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** A payload of strings, each NUL-terminated. */
export function stringsPayload(...parts: string[]): Uint8Array {
  return utf8.encode(parts.map((p) => `${p}\0`).join(''));
}

/** The NUL-separated strings of a payload; a final unterminated string counts too. */
export function payloadStrings(payload: Uint8Array): string[] {
  const parts = text.decode(payload).split('\0');
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

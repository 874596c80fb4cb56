// A backend's end of a shared I/O ring (io/ring.h), over the pages it mapped:
// the frontend produces requests and consumes responses, the backend the other
// way round, each through free-running 32-bit indexes in the ring's header and
// slots of a fixed size after it (a request or a response, whichever is
// larger). The backend keeps its own copies of the indexes it owns, copies
// each request out of its slot before looking at it (the frontend may change
// the slot meanwhile), and takes a producer index more than a ring ahead as a
// broken or hostile frontend: RingOverflowError, and the ring stops.
import { PAGE_SIZE } from '../memory/guest-memory.js';
import { SRING_INDEX, SRING_RING_OFFSET } from '../xen/abi/blkif.js';

/** The frontend's req_prod claims more requests than the ring can hold. */
export class RingOverflowError extends Error {
  override name = 'RingOverflowError';
}

/** The largest power of two ≤ n (n ≥ 1), as ring.h's __RD32 rounds a ring's size. */
const roundDownPow2 = (n: number) => 2 ** Math.floor(Math.log2(n));

/** Slots in a ring of `pages` pages whose slot is `entrySize` bytes. */
export const ringSize = (pages: number, entrySize: number) => roundDownPow2(Math.floor((pages * PAGE_SIZE - SRING_RING_OFFSET) / entrySize));

export class BackRing {
  readonly size: number;
  private readonly header: Int32Array;
  private reqCons: number;
  private rspProdPvt: number;

  constructor(
    private readonly pages: readonly Uint8Array[],
    readonly entrySize: number,
  ) {
    this.size = ringSize(pages.length, entrySize);
    this.header = new Int32Array(pages[0].buffer, pages[0].byteOffset, SRING_RING_OFFSET / 4);
    // A frontend attaches its ring at zero (FRONT_RING_INIT); the backend starts from what the header says.
    this.reqCons = this.load('rsp_prod');
    this.rspProdPvt = this.reqCons;
  }

  private load(index: keyof typeof SRING_INDEX): number {
    return Atomics.load(this.header, SRING_INDEX[index] / 4) >>> 0;
  }

  private store(index: keyof typeof SRING_INDEX, value: number): void {
    Atomics.store(this.header, SRING_INDEX[index] / 4, value | 0);
  }

  /**
   * Requests produced and not yet taken, at most as many as the ring has room for responses to;
   * RingOverflowError when req_prod is more than a ring ahead of what the backend took.
   */
  unconsumed(): number {
    const produced = (this.load('req_prod') - this.reqCons) >>> 0;
    if (produced > this.size) throw new RingOverflowError(`the frontend's req_prod is ${produced} requests ahead of the backend, in a ring of ${this.size}`);
    return Math.min(produced, this.size - ((this.reqCons - this.rspProdPvt) >>> 0));
  }

  /** Requests taken and not yet answered. */
  get inFlight(): number {
    return (this.reqCons - this.rspProdPvt) >>> 0;
  }

  /** Copies the next request out of its slot and takes it. */
  takeRequest(): Uint8Array {
    const out = this.copySlot(this.reqCons);
    this.reqCons = (this.reqCons + 1) >>> 0;
    return out;
  }

  /** Writes the next response into its slot; the frontend sees it after pushResponses(). */
  putResponse(bytes: Uint8Array): void {
    if (bytes.length > this.entrySize) throw new RangeError(`a ${bytes.length}-byte response in a ${this.entrySize}-byte slot`);
    if (this.inFlight === 0) throw new RangeError('a response with no request taken to answer');
    this.eachPiece(this.rspProdPvt, bytes.length, (page, at, done, n) => page.set(bytes.subarray(done, done + n), at));
    this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
  }

  /** Publishes the responses written; whether the frontend asked to be notified of them (rsp_event among them). */
  pushResponses(): boolean {
    const old = this.load('rsp_prod');
    const now = this.rspProdPvt;
    this.store('rsp_prod', now);
    return ((now - this.load('rsp_event')) >>> 0) < ((now - old) >>> 0);
  }

  /**
   * Whether requests are waiting, having asked (req_event) to be notified of the next one if none is:
   * a request produced in between is seen by the second look, never lost.
   */
  finalCheckForRequests(): boolean {
    if (this.unconsumed() > 0) return true;
    this.store('req_event', (this.reqCons + 1) >>> 0);
    return this.unconsumed() > 0;
  }

  private slotOffset(index: number): number {
    return SRING_RING_OFFSET + (index & (this.size - 1)) * this.entrySize;
  }

  /** A slot's bytes, copied. */
  private copySlot(index: number): Uint8Array {
    const out = new Uint8Array(this.entrySize);
    this.eachPiece(index, this.entrySize, (page, at, done, n) => out.set(page.subarray(at, at + n), done));
    return out;
  }

  /** Visits the first `length` bytes of slot `index` page by page: a slot of a multi-page ring may straddle two. */
  private eachPiece(index: number, length: number, visit: (page: Uint8Array, at: number, done: number, n: number) => void): void {
    let offset = this.slotOffset(index);
    for (let done = 0; done < length; ) {
      const at = offset % PAGE_SIZE;
      const n = Math.min(length - done, PAGE_SIZE - at);
      visit(this.pages[Math.floor(offset / PAGE_SIZE)], at, done, n);
      done += n;
      offset += n;
    }
  }
}

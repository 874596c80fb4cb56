// A synchronous call from a vCPU thread to the main thread, as a KVM exit to
// user space is for an in-kernel hypervisor: the vCPU thread posts the
// request and sleeps until the main thread has written the result.
const STATE = 0;
const IDLE = 0;
const PENDING = 1;

export class VmmChannel {
  private readonly state: Int32Array;
  private readonly result: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(16)) {
    this.state = new Int32Array(buffer, 0, 2);
    this.result = new BigInt64Array(buffer, 8, 1);
  }

  /** vCPU thread: sends the request and waits for the answer. */
  call(send: () => void): bigint {
    Atomics.store(this.state, STATE, PENDING);
    send();
    while (Atomics.load(this.state, STATE) === PENDING) Atomics.wait(this.state, STATE, PENDING);
    return this.result[0];
  }

  /** Main thread. */
  reply(value: bigint): void {
    this.result[0] = value;
    Atomics.store(this.state, STATE, IDLE);
    Atomics.notify(this.state, STATE);
  }
}

// The control block one vCPU thread shares with the main thread: a command
// the main thread sets, the state the vCPU thread reports, and the thread id
// a kick is sent to. A kick is a signal blocked in the vCPU thread except
// inside KVM_RUN (KVM_SET_SIGNAL_MASK): it makes KVM_RUN return EINTR, or, if
// it arrives outside KVM_RUN, stays pending so the next KVM_RUN returns at
// once. Either way the thread then reads the command.
import { gettid, libc, SIG_BLOCK, SIGSET_BYTES, sigset } from '../kvm/libc.js';

/** Down: held out of KVM_RUN by the guest (VCPUOP_down) until it is run again; pause and resume leave it alone. */
export const enum Command { Run = 0, Pause = 1, Stop = 2, Down = 3 }
export const enum VcpuState { Starting = 0, Running = 1, Paused = 2, Exited = 3 }

const COMMAND = 0;
const STATE = 1;
const TID = 2;
/** Bumped whenever a vCPU thread sleeping outside KVM_RUN (SCHEDOP_block, poll) should look again. */
const WAKE = 3;
const WORDS = 4;

/** A real-time signal nothing else in Node uses. */
export const KICK_SIGNAL = 40;

export class VcpuControl {
  private readonly words: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(WORDS * 4)) {
    this.words = new Int32Array(buffer);
  }

  get command(): Command {
    return Atomics.load(this.words, COMMAND);
  }

  get state(): VcpuState {
    return Atomics.load(this.words, STATE);
  }

  /** Main thread: sets the command and kicks the thread out of KVM_RUN (or out of a block or poll). */
  order(command: Command): void {
    Atomics.store(this.words, COMMAND, command);
    Atomics.notify(this.words, COMMAND);
    this.wake();
    // A thread that has not published its tid has not yet read the command either.
    this.kick();
  }

  /** Any thread: wakes the vCPU thread if it sleeps in SCHEDOP_block or poll. */
  wake(): void {
    Atomics.add(this.words, WAKE, 1);
    Atomics.notify(this.words, WAKE);
  }

  /** vCPU thread: the wake count to sleep on, read before checking the condition. */
  get wakeCount(): number {
    return Atomics.load(this.words, WAKE);
  }

  /** vCPU thread: sleeps until woken after `count` was read, or `timeoutMs`. */
  sleep(count: number, timeoutMs: number): void {
    Atomics.wait(this.words, WAKE, count, timeoutMs);
  }

  /** Any thread: brings the vCPU thread out of KVM_RUN without changing its command. */
  kick(): void {
    const tid = Atomics.load(this.words, TID);
    if (tid !== 0 && this.state !== VcpuState.Exited) libc().tgkill(process.pid, tid, KICK_SIGNAL);
  }

  /** Main thread: resolves once the vCPU thread reports `state` (or has exited). */
  async waitFor(state: VcpuState): Promise<void> {
    for (;;) {
      const now = this.state;
      if (now === state || now === VcpuState.Exited) return;
      await Atomics.waitAsync(this.words, STATE, now).value;
    }
  }

  /** vCPU thread: holds itself down (as VCPUOP_down would) until the main thread runs it again. */
  holdSelf(): void {
    Atomics.compareExchange(this.words, COMMAND, Command.Run, Command.Down);
  }

  /** vCPU thread: publishes its tid; from here on kicks reach it. */
  publishThread(): void {
    Atomics.store(this.words, TID, gettid());
  }

  /** vCPU thread: about to enter KVM_RUN (cheap when nothing changed: this is on every exit). */
  running(): void {
    if (Atomics.load(this.words, STATE) !== VcpuState.Running) this.report(VcpuState.Running);
  }

  /** vCPU thread. */
  report(state: VcpuState): void {
    Atomics.store(this.words, STATE, state);
    Atomics.notify(this.words, STATE);
  }

  /** vCPU thread: sleeps while the command is Pause or Down. */
  waitWhileHeld(): void {
    for (let c = this.command; c === Command.Pause || c === Command.Down; c = this.command) Atomics.wait(this.words, COMMAND, c);
  }
}

const ZERO_TIMESPEC = new Uint8Array(16);
const KICK_SET = sigset(KICK_SIGNAL);

/** vCPU thread: blocks the kick signal and returns the mask to use inside KVM_RUN (the thread's mask without it). */
export function blockKickSignal(): Uint8Array {
  const old = new Uint8Array(SIGSET_BYTES);
  if (libc().pthread_sigmask(SIG_BLOCK, KICK_SET, old) !== 0) throw new Error('pthread_sigmask failed');
  const bit = KICK_SIGNAL - 1;
  old[bit >> 3] &= ~(1 << (bit & 7));
  return old;
}

/** vCPU thread: consumes a pending kick so the next KVM_RUN does not return at once. */
export function consumeKick(): void {
  libc().sigtimedwait(KICK_SET, null, ZERO_TIMESPEC);
}

/**
 * Main thread: a vCPU's "kick me again soon" requests, at most one pending. Each kick lets the vCPU
 * ask again, so a second timer would start a second chain of kicks, and every event delivered meanwhile
 * another: a guest that keeps interrupts off for long (Linux printing to its console) would be kicked
 * thousands of times a second. A request due sooner than the pending one replaces it.
 */
export class RekickTimer {
  private pending: { timer: NodeJS.Timeout; due: number } | undefined;

  constructor(
    private readonly kick: () => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  request(afterMs: number): void {
    const due = this.now() + afterMs;
    if (this.pending && this.pending.due <= due) return;
    if (this.pending) clearTimeout(this.pending.timer);
    const timer = setTimeout(() => {
      this.pending = undefined;
      this.kick();
    }, afterMs);
    this.pending = { timer, due };
  }

  cancel(): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
  }
}

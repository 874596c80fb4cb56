// Xen's per-vCPU timers: the singleshot timer (VCPUOP_set_singleshot_timer,
// set_timer_op) and the periodic timer (VCPUOP_set_periodic_timer), each
// raising VIRQ_TIMER on its vCPU when it expires. The deadlines live in a
// SharedArrayBuffer the vCPU threads write; one timer thread sleeps until the
// earliest (Atomics.wait, finer than Node's millisecond timers) and fires.
// A change wakes the timer thread only when it moves a deadline before the one
// the thread sleeps toward: Linux re-arms its timer several times per tick,
// mostly later, and each wake-up costs a switch to that thread.

const WORDS = 3; // singleshot deadline (0: none), period (0: none), next periodic expiry
const GENERATION = 0;
const STOP = 1;
/** The timer thread's wake-up deadline while it sleeps; NEVER while it looks, so that every change wakes it. */
const NEVER = (1n << 63n) - 1n;
/** SCHEDOP_watchdog: the domain's watchdog timers, after the vCPUs' words (deadline, 0: not in use). */
export const WATCHDOGS = 2;

export class TimerState {
  private readonly header: Int32Array;
  private readonly wakeAt: BigInt64Array;
  private readonly timers: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.header = new Int32Array(buffer, 0, 2);
    this.wakeAt = new BigInt64Array(buffer, 8, 1);
    this.timers = new BigInt64Array(buffer, 16);
  }

  static create(vcpus: number): TimerState {
    return new TimerState(new SharedArrayBuffer(16 + (vcpus * WORDS + WATCHDOGS) * 8));
  }

  get vcpuCount(): number {
    return (this.timers.length - WATCHDOGS) / WORDS;
  }

  private watchdogIndex(id: number): number {
    return this.vcpuCount * WORDS + id;
  }

  /** Claims a free watchdog and arms it; its index, or undefined when all are in use. */
  claimWatchdog(deadline: bigint): number | undefined {
    for (let id = 0; id < WATCHDOGS; id++) {
      if (Atomics.compareExchange(this.timers, this.watchdogIndex(id), 0n, deadline) === 0n) {
        this.armed(deadline);
        return id;
      }
    }
    return undefined;
  }

  watchdogInUse(id: number): boolean {
    return Atomics.load(this.timers, this.watchdogIndex(id)) !== 0n;
  }

  /** Re-arms a watchdog in use, or frees it (deadline undefined). */
  setWatchdog(id: number, deadline: bigint | undefined): void {
    Atomics.store(this.timers, this.watchdogIndex(id), deadline ?? 0n);
    if (deadline !== undefined) this.armed(deadline);
  }

  private changed(): void {
    Atomics.add(this.header, GENERATION, 1);
    Atomics.notify(this.header, GENERATION);
  }

  /**
   * After a deadline is stored: wakes the timer thread if it sleeps toward a later one. A timer
   * disarmed or moved later needs no wake-up: the thread finds it so when it wakes, and looks again.
   */
  private armed(deadline: bigint): void {
    if (deadline < Atomics.load(this.wakeAt, 0)) this.changed();
  }

  /** What is armed on `vcpu`: the singleshot deadline and the period (0n: none), and the next periodic expiry. */
  vcpuTimers(vcpu: number): { singleshot: bigint; period: bigint; next: bigint } {
    const at = vcpu * WORDS;
    return { singleshot: Atomics.load(this.timers, at), period: Atomics.load(this.timers, at + 1), next: Atomics.load(this.timers, at + 2) };
  }

  setSingleshot(vcpu: number, deadline: bigint): void {
    Atomics.store(this.timers, vcpu * WORDS, deadline);
    if (deadline !== 0n) this.armed(deadline);
  }

  stopSingleshot(vcpu: number): void {
    this.setSingleshot(vcpu, 0n);
  }

  /** Disarms the singleshot timer and says what it was armed for, unless it fired first (undefined: not armed). */
  takeSingleshot(vcpu: number): bigint | undefined {
    const deadline = Atomics.exchange(this.timers, vcpu * WORDS, 0n);
    return deadline === 0n ? undefined : deadline;
  }

  setPeriodic(vcpu: number, period: bigint, now: bigint): void {
    Atomics.store(this.timers, vcpu * WORDS + 2, now + period);
    Atomics.store(this.timers, vcpu * WORDS + 1, period);
    this.armed(now + period);
  }

  stopPeriodic(vcpu: number): void {
    Atomics.store(this.timers, vcpu * WORDS + 1, 0n);
  }

  stop(): void {
    Atomics.store(this.header, STOP, 1);
    this.changed();
  }

  /**
   * The timer thread's loop: fires every expired timer, then sleeps until the
   * next deadline or a change, until stop().
   */
  run(now: () => bigint, fire: (vcpu: number) => void, expired: (watchdog: number) => void = () => {}): void {
    while (Atomics.load(this.header, STOP) === 0) {
      // NEVER before the deadlines are read, the wake-up deadline after: a deadline stored
      // meanwhile either was seen or finds NEVER or that wake-up deadline (armed()).
      Atomics.store(this.wakeAt, 0, NEVER);
      const generation = Atomics.load(this.header, GENERATION);
      const t = now();
      let earliest: bigint | undefined;
      for (let v = 0; v < this.vcpuCount; v++) {
        const single = Atomics.load(this.timers, v * WORDS);
        if (single !== 0n && single <= t && Atomics.compareExchange(this.timers, v * WORDS, single, 0n) === single) fire(v);
        else if (single !== 0n && (earliest === undefined || single < earliest)) earliest = single;
        const period = Atomics.load(this.timers, v * WORDS + 1);
        if (period === 0n) continue;
        let next = Atomics.load(this.timers, v * WORDS + 2);
        if (next <= t) {
          fire(v);
          // Missed periods are not made up, as in Xen: the next one is a period from now. Unless the
          // vCPU set the timer again meanwhile: then its expiry stands, not one from the old period.
          const seen = Atomics.compareExchange(this.timers, v * WORDS + 2, next, t + period);
          next = seen === next ? t + period : seen;
        }
        if (earliest === undefined || next < earliest) earliest = next;
      }
      for (let id = 0; id < WATCHDOGS; id++) {
        const at = Atomics.load(this.timers, this.watchdogIndex(id));
        if (at !== 0n && at <= t) {
          if (Atomics.compareExchange(this.timers, this.watchdogIndex(id), at, 0n) === at) expired(id);
        } else if (at !== 0n && (earliest === undefined || at < earliest)) earliest = at;
      }
      // Sleep right up to the deadline: a thread spinning on the clock instead competes with the
      // vCPU threads for the cores and, preempted, fires a whole scheduler slice late.
      Atomics.store(this.wakeAt, 0, earliest ?? NEVER);
      const waitMs = earliest === undefined ? Infinity : Number(earliest - now()) / 1e6;
      if (waitMs > 0) Atomics.wait(this.header, GENERATION, generation, waitMs);
    }
  }
}

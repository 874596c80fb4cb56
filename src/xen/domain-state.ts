// Xen state of the domain that every thread reads: the shared_info layout in
// force, VM assists, HVM parameters, and per-vCPU upcall vectors, vcpu_info
// placement and runstate. It lives in one SharedArrayBuffer; each field has
// one writer at a time (the main thread for domain-wide fields, a vCPU's own
// thread for its per-vCPU fields, or the main thread with every vCPU held), and
// readers use Atomics.
import { HVM_NR_PARAMS } from './abi/hvm.js';
import type { Abi } from './abi/layout.js';

const HEADER_WORDS = 8; // shinfo ABI, vm_assist bits, vCPU count, shutdown code + 1 (0: none), vCPUs polling, asserted callback GSI (0: none), ports turned pending, KVM delivers events
const RUNSTATE_WORDS = 7; // sequence, state, state_entry_time, time[4]
const POWER_WORDS = 8; // up, initialised, start pending, context ABI, HVM callback vector pending, upcall vector KVM was told, upcall vector the LAPIC took, KVM raises its events
/** Room for a vcpu_hvm_context in either ABI. */
export const CONTEXT_BYTES = 128;
const AREA_WORDS = 6; // sequence (odd while written), layout (-1 none, 0 native, 1 compat), then up to two guest-physical pieces (address, length)

/** Guest areas Xen updates on a vCPU's behalf, registered by guest-virtual address and kept as guest-physical pieces. */
export const enum AreaKind { Runstate = 0, Time = 1 }
const AREA_KINDS = 2;

export interface AreaRegistration {
  abi: Abi;
  pieces: { gpa: number; length: number }[];
}

export class DomainState {
  private readonly header: Int32Array;
  private readonly params: BigInt64Array;
  private readonly upcallVectors: Int32Array;
  /** Guest-physical address of each vCPU's registered vcpu_info, or -1 while it lives in shared_info. */
  private readonly vcpuInfoGpa: Float64Array;
  private readonly runstates: BigInt64Array;
  private readonly areas: BigInt64Array;
  private readonly power: Int32Array;
  private readonly contexts: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    const vcpus = new Int32Array(buffer, 0, HEADER_WORDS)[2];
    let off = HEADER_WORDS * 4;
    this.header = new Int32Array(buffer, 0, HEADER_WORDS);
    this.params = new BigInt64Array(buffer, off, HVM_NR_PARAMS);
    off += HVM_NR_PARAMS * 8;
    this.runstates = new BigInt64Array(buffer, off, vcpus * RUNSTATE_WORDS);
    off += vcpus * RUNSTATE_WORDS * 8;
    this.vcpuInfoGpa = new Float64Array(buffer, off, vcpus);
    off += vcpus * 8;
    this.areas = new BigInt64Array(buffer, off, vcpus * AREA_KINDS * AREA_WORDS);
    off += vcpus * AREA_KINDS * AREA_WORDS * 8;
    this.upcallVectors = new Int32Array(buffer, off, vcpus);
    off += vcpus * 4;
    this.power = new Int32Array(buffer, off, vcpus * POWER_WORDS);
    off += vcpus * POWER_WORDS * 4;
    this.contexts = new Uint8Array(buffer, off, vcpus * CONTEXT_BYTES);
  }

  static create(vcpus: number): DomainState {
    const bytes = HEADER_WORDS * 4 + HVM_NR_PARAMS * 8 + vcpus * (RUNSTATE_WORDS * 8 + 8 + AREA_KINDS * AREA_WORDS * 8 + 4 + POWER_WORDS * 4 + CONTEXT_BYTES);
    const buffer = new SharedArrayBuffer(Math.ceil(bytes / 8) * 8);
    new Int32Array(buffer, 0, HEADER_WORDS)[2] = vcpus;
    const state = new DomainState(buffer);
    state.vcpuInfoGpa.fill(-1);
    for (let v = 0; v < vcpus; v++) for (let k = 0; k < AREA_KINDS; k++) state.areas[(v * AREA_KINDS + k) * AREA_WORDS + 1] = -1n;
    return state;
  }

  get vcpuCount(): number {
    return this.header[2];
  }

  /** The shared_info layout Xen latched from the guest's mode (native until a 32-bit guest latches compat). */
  get sharedInfoAbi(): Abi {
    return Atomics.load(this.header, 0) === 1 ? 'compat' : 'native';
  }
  set sharedInfoAbi(abi: Abi) {
    Atomics.store(this.header, 0, abi === 'compat' ? 1 : 0);
  }

  /** Marks the callback GSI asserted; false if it already was. */
  claimCallbackGsi(gsi: number): boolean {
    return Atomics.compareExchange(this.header, 5, 0, gsi) === 0;
  }
  /** The asserted callback GSI, or undefined. */
  get callbackGsiHeld(): number | undefined {
    const gsi = Atomics.load(this.header, 5);
    return gsi === 0 ? undefined : gsi;
  }
  /** The asserted callback GSI, taken (so it is lowered once), or undefined. */
  releaseCallbackGsi(): number | undefined {
    const gsi = Atomics.exchange(this.header, 5, 0);
    return gsi === 0 ? undefined : gsi;
  }

  /** How many vCPUs sleep in SCHEDOP_poll. */
  get pollers(): number {
    return Atomics.load(this.header, 4);
  }
  setPolling(on: boolean): void {
    Atomics.add(this.header, 4, on ? 1 : -1);
  }

  /** How many times a port of the domain has turned pending (wrapping): what wakes a SCHEDOP_poll on other than one port. */
  get portsTurnedPending(): number {
    return Atomics.load(this.header, 6);
  }
  notePortTurnedPending(): void {
    Atomics.add(this.header, 6, 1);
  }

  /** The code SCHEDOP_shutdown_code set, if any. */
  get shutdownCode(): number | undefined {
    const v = Atomics.load(this.header, 3);
    return v === 0 ? undefined : v - 1;
  }
  set shutdownCode(code: number | undefined) {
    Atomics.store(this.header, 3, code === undefined ? 0 : code + 1);
  }

  /** Sets the shutdown code unless one is set already: as in Xen, the first code a guest gives stays. */
  latchShutdownCode(code: number): void {
    Atomics.compareExchange(this.header, 3, 0, code + 1);
  }

  vmAssistEnabled(type: number): boolean {
    return (Atomics.load(this.header, 1) & (1 << type)) !== 0;
  }
  setVmAssist(type: number, on: boolean): void {
    if (on) Atomics.or(this.header, 1, 1 << type);
    else Atomics.and(this.header, 1, ~(1 << type));
  }

  param(index: number): bigint {
    return Atomics.load(this.params, index);
  }
  setParam(index: number, value: bigint): void {
    Atomics.store(this.params, index, BigInt.asIntN(64, value));
  }

  upcallVector(vcpu: number): number {
    return Atomics.load(this.upcallVectors, vcpu);
  }
  /** A vector set anew (the same one again included) has not been taken yet: the guest may have reset its LAPIC. */
  setUpcallVector(vcpu: number, vector: number): void {
    Atomics.store(this.upcallVectors, vcpu, vector);
    this.forgetUpcallTaken(vcpu);
  }

  /** The vCPU's upcall vector as its thread last told KVM (0: none), for KVM to inject with the events it raises. */
  kvmUpcallVector(vcpu: number): number {
    return Atomics.load(this.power, vcpu * POWER_WORDS + 5);
  }
  setKvmUpcallVector(vcpu: number, vector: number): void {
    Atomics.store(this.power, vcpu * POWER_WORDS + 5, vector);
  }

  /**
   * The upcall vector the vCPU's LAPIC last took (0: none since it was set): KVM drops a vector at a
   * software-disabled LAPIC, where Xen's holds it, so KVM raises events only for LAPICs known to take them.
   */
  upcallTaken(vcpu: number): number {
    return Atomics.load(this.power, vcpu * POWER_WORDS + 6);
  }
  /** True where that is news. */
  noteUpcallTaken(vcpu: number, vector: number): boolean {
    if (Atomics.load(this.power, vcpu * POWER_WORDS + 6) === vector) return false;
    Atomics.store(this.power, vcpu * POWER_WORDS + 6, vector);
    return true;
  }
  /** The guest may have reset its LAPIC (a soft reset): its vector counts as taken only once taken again. */
  forgetUpcallTaken(vcpu: number): void {
    Atomics.store(this.power, vcpu * POWER_WORDS + 6, 0);
  }

  /**
   * Whether KVM may raise this vCPU's events (the `evtchn` fast path): its thread has told KVM the
   * vector the guest set, and its LAPIC has taken that vector.
   */
  kvmMayRaiseEventsFor(vcpu: number): boolean {
    const vector = this.upcallVector(vcpu);
    return vector !== 0 && this.kvmUpcallVector(vcpu) === vector && this.upcallTaken(vcpu) === vector;
  }

  /** While kvmDeliversEvents: whether KVM raises this vCPU's events, as the main thread last decided. */
  kvmRaisesEventsFor(vcpu: number): boolean {
    return Atomics.load(this.power, vcpu * POWER_WORDS + 7) === 1;
  }
  setKvmRaisesEventsFor(vcpu: number, on: boolean): void {
    Atomics.store(this.power, vcpu * POWER_WORDS + 7, on ? 1 : 0);
  }

  /**
   * Whether KVM raises the domain's 2-level events (the `evtchn` fast path): every thread then hands KVM
   * its own for the vCPUs KVM raises them for, and wakes the vCPUs polling in KVM for the others.
   */
  get kvmDeliversEvents(): boolean {
    return Atomics.load(this.header, 7) === 1;
  }
  set kvmDeliversEvents(on: boolean) {
    Atomics.store(this.header, 7, on ? 1 : 0);
  }

  /** Where vCPU `vcpu`'s vcpu_info is, when registered outside shared_info. */
  vcpuInfoAddress(vcpu: number): number | undefined {
    const gpa = this.vcpuInfoGpa[vcpu];
    return gpa >= 0 ? gpa : undefined;
  }
  /** Undefined puts it back in shared_info (or nowhere, for vCPUs beyond shared_info's 32). */
  setVcpuInfoAddress(vcpu: number, gpa: number | undefined): void {
    this.vcpuInfoGpa[vcpu] = gpa ?? -1;
  }

  /** Whether Xen would call the vCPU up (VCPUOP_is_up): started, and not brought down. */
  isUp(vcpu: number): boolean {
    return Atomics.load(this.power, vcpu * POWER_WORDS) === 1;
  }
  setUp(vcpu: number, up: boolean): void {
    Atomics.store(this.power, vcpu * POWER_WORDS, up ? 1 : 0);
  }

  /** Whether the vCPU has a context: it was started (by SIPI or VCPUOP_up) or given one by VCPUOP_initialise. */
  isInitialised(vcpu: number): boolean {
    return Atomics.load(this.power, vcpu * POWER_WORDS + 1) === 1;
  }
  setInitialised(vcpu: number): void {
    Atomics.store(this.power, vcpu * POWER_WORDS + 1, 1);
  }

  /**
   * The event upcall is owed to this vCPU: its thread injects the HVM callback vector once the guest
   * can take it, or signals the per-vCPU vector again until the LAPIC takes it.
   */
  setUpcallOwed(vcpu: number, owed: boolean): void {
    Atomics.store(this.power, vcpu * POWER_WORDS + 4, owed ? 1 : 0);
  }
  upcallOwed(vcpu: number): boolean {
    return Atomics.load(this.power, vcpu * POWER_WORDS + 4) === 1;
  }

  /** Stores the context VCPUOP_initialise gave, for the vCPU's thread to load when it is brought up. */
  setStartContext(vcpu: number, abi: Abi, context: Uint8Array): void {
    this.contexts.fill(0, vcpu * CONTEXT_BYTES, (vcpu + 1) * CONTEXT_BYTES);
    this.contexts.set(context.subarray(0, CONTEXT_BYTES), vcpu * CONTEXT_BYTES);
    Atomics.store(this.power, vcpu * POWER_WORDS + 3, abi === 'compat' ? 1 : 0);
  }
  requestStart(vcpu: number): void {
    Atomics.store(this.power, vcpu * POWER_WORDS + 2, 1);
  }
  /** The vCPU's thread takes a pending start context, once. */
  takeStartContext(vcpu: number): { abi: Abi; context: Uint8Array } | undefined {
    // Asked on every exit: a plain load first, the exchange (a locked instruction) only when a start is pending.
    if (Atomics.load(this.power, vcpu * POWER_WORDS + 2) !== 1) return undefined;
    if (Atomics.exchange(this.power, vcpu * POWER_WORDS + 2, 0) !== 1) return undefined;
    const abi = Atomics.load(this.power, vcpu * POWER_WORDS + 3) === 1 ? 'compat' : 'native';
    return { abi, context: this.contexts.slice(vcpu * CONTEXT_BYTES, (vcpu + 1) * CONTEXT_BYTES) };
  }

  /**
   * Registered by the vCPU threads, for their own vCPU or another (the last one wins, as in Xen),
   * and read by the owning vCPU's thread as it publishes; a soft reset clears them on the main
   * thread while every vCPU is held. A sequence count, odd while a writer holds the record, keeps
   * readers from a torn one and two writers from interleaving.
   */
  area(vcpu: number, kind: AreaKind): AreaRegistration | undefined {
    const [layout, ...pieceWords] = readRecord(this.areas, (vcpu * AREA_KINDS + kind) * AREA_WORDS, AREA_WORDS - 1);
    if (layout < 0n) return undefined;
    const pieces = [];
    for (let i = 0; i < 2; i++) {
      const length = Number(pieceWords[2 * i + 1]);
      if (length > 0) pieces.push({ gpa: Number(pieceWords[2 * i]), length });
    }
    return { abi: layout === 1n ? 'compat' : 'native', pieces };
  }
  /** The registration's sequence count: it changes whenever the area is registered, moved or dropped. */
  areaSequence(vcpu: number, kind: AreaKind): bigint {
    return Atomics.load(this.areas, (vcpu * AREA_KINDS + kind) * AREA_WORDS);
  }
  setArea(vcpu: number, kind: AreaKind, reg: AreaRegistration | undefined): void {
    if (reg && reg.pieces.length > 2) throw new Error('a guest area spans at most two pages');
    const layout = reg === undefined ? -1n : reg.abi === 'compat' ? 1n : 0n;
    const pieces = [0, 1].flatMap((i) => [BigInt(reg?.pieces[i]?.gpa ?? 0), BigInt(reg?.pieces[i]?.length ?? 0)]);
    writeRecord(this.areas, (vcpu * AREA_KINDS + kind) * AREA_WORDS, [layout, ...pieces]);
  }

  /**
   * Runstate of a vCPU as last accounted: [state, state_entry_time, running,
   * runnable, blocked, offline]. A sequence count (odd while its thread
   * writes) keeps readers on other threads from seeing a torn record.
   */
  runstate(vcpu: number): bigint[] {
    return readRecord(this.runstates, vcpu * RUNSTATE_WORDS, RUNSTATE_WORDS - 1);
  }
  setRunstate(vcpu: number, words: readonly bigint[]): void {
    writeRecord(this.runstates, vcpu * RUNSTATE_WORDS, words);
  }
}

/** The `count` words after the sequence count at `base`, all from one write: retried while a writer holds the record or ended one meanwhile. */
function readRecord(words: BigInt64Array, base: number, count: number): bigint[] {
  for (;;) {
    const seq = Atomics.load(words, base);
    if (seq & 1n) continue;
    const record = Array.from({ length: count }, (_, i) => Atomics.load(words, base + 1 + i));
    if (Atomics.load(words, base) === seq) return record;
  }
}

/** Writes the words after the sequence count at `base`; the count, made odd by compare-and-swap, keeps two writers from interleaving. */
function writeRecord(words: BigInt64Array, base: number, record: readonly bigint[]): void {
  for (;;) {
    const seq = Atomics.load(words, base);
    if (!(seq & 1n) && Atomics.compareExchange(words, base, seq, seq + 1n) === seq) break;
  }
  record.forEach((w, i) => Atomics.store(words, base + 1 + i, w));
  Atomics.add(words, base, 1n);
}

// The Xen half that runs on a vCPU's own thread: the hypercall MSR, the
// hypercall entry from the hypercall page's port exit, and the hypercalls
// served in place. Everything else is forwarded to the VMM on the main
// thread, synchronously, as a KVM exit to user space would be.
import type { Logger } from 'pino';
import type { GuestMemory } from '../memory/guest-memory.js';
import { GuestVirtual } from '../memory/guest-virtual.js';
import type { PagingState } from '../memory/page-walker.js';
import type { Abi } from './abi/layout.js';
import type { XenConfig } from './config.js';
import { ARGUMENT_REGISTERS, HypercallDispatcher, type HypercallContext } from './hypercall.js';
import { HYPERCALL_MSR, hypercallPage, hypercallPageTarget } from './hypercall-page.js';
import { HYPERCALL_ROUTES } from './route-table.js';
import { HYPERCALL } from './abi/hypercalls.js';
import { serveRoutes } from './routes.js';
import { grantTableVcpuOps } from './gnttab/ops.js';
import { GrantTable } from './gnttab/table.js';
import { toolstackOps } from './toolstack-ops.js';
import { versionOps } from './version.js';
import { CONSOLEIO_WRITE_MAX, consoleWriteOps } from './console-io.js';
import { RateLimitedLog } from '../common/log.js';
import type { DomainState } from './domain-state.js';
import { RunstateAccount } from './runstate.js';
import { systemTimeClock, VcpuClock, type VcpuClockSource } from './time.js';
import { rewriteVcpuTime, vcpuOps } from './vcpu.js';
import { schedOps, type SchedDomain } from './sched.js';
import { RUNSTATE } from './abi/vcpu.js';
import type { TimerState } from './timers.js';
import type { EventDelivery } from './evtchn/delivery.js';
import { evtchnVcpuOps, portLimit } from './evtchn/ops.js';
import type { PortTable } from './evtchn/ports.js';
import { makeEventDelivery, type UpcallHost } from './evtchn/upcall.js';

/** The registers of the current exit, as KVM's synced register area gives them. */
export interface ExitRegisters {
  reg(name: 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'r8' | 'r10'): bigint;
  setRax(value: bigint): void;
  cpl(): number;
  /** Whether the vCPU is in 64-bit mode (long mode with a 64-bit code segment). */
  long64(): boolean;
  /** RFLAGS.IF. */
  interruptsEnabled(): boolean;
  paging(): PagingState;
}

/** A hypercall the VMM serves, as forwarded from a vCPU thread. */
export interface ForwardedHypercall {
  vcpu: number;
  abi: Abi;
  nr: number;
  args: bigint[];
  paging: PagingState;
}

/** Hypercall numbers counted one by one; every number above is counted together. */
const KNOWN_HYPERCALLS = 64;
const HYPERCALL_NAMES: Record<number, string> = Object.fromEntries(Object.entries(HYPERCALL).map(([name, nr]) => [nr, name]));

export class XenAccelerator {
  private readonly dispatcher: HypercallDispatcher;
  /** Hypercalls served from this vCPU, by number (the last slot: every larger number). */
  private readonly callCounts = new Float64Array(KNOWN_HYPERCALLS + 1);
  private readonly page: Uint8Array;

  readonly runstate: RunstateAccount;
  readonly events: EventDelivery;
  private readonly state: DomainState;
  private readonly clock: VcpuClock;
  private readonly config: XenConfig;

  constructor(
    readonly vcpu: number,
    private readonly memory: GuestMemory,
    config: XenConfig,
    state: DomainState,
    ports: PortTable,
    upcall: UpcallHost,
    shutdown: SchedDomain['shutdown'],
    timers: TimerState,
    thread: VcpuSleep,
    /** Cumulative ns KVM has held this vCPU halted. */
    haltedNs: () => bigint,
    /** This vCPU's TSC and KVM's word on whether the TSCs are in step. */
    clockSource: VcpuClockSource,
    logger: Logger,
    /** Guest console output (console_io writes), to the same place as the guest's other consoles. */
    consoleOutput: (bytes: Uint8Array) => void,
    forward: (call: ForwardedHypercall) => bigint,
  ) {
    this.dispatcher = new HypercallDispatcher(logger);
    this.state = state;
    this.config = config;
    this.page = hypercallPage(config.hypercallEntry);
    this.clock = new VcpuClock(config.pvclock, config.tscStable, clockSource);
    const systemTime = systemTimeClock(config.bootMonotonicNs);
    this.runstate = new RunstateAccount(vcpu, state, memory, systemTime, haltedNs);
    this.events = makeEventDelivery(memory, state, ports, upcall);
    const guestLog = new RateLimitedLog(logger);
    serveRoutes(this.dispatcher, 'vcpu', HYPERCALL_ROUTES, [
      versionOps(config),
      ...toolstackOps({ domid: config.domid }),
      ...vcpuOps({
        config, state, memory, self: { vcpu, runstate: this.runstate }, systemTime, clock: this.clock,
        markEventsPending: (v) => this.events.markEventsPending(v),
        timeRecordsMoved: (v) => v !== vcpu && upcall.kick(v),
        timers,
      }),
      consoleWriteOps({
        write: consoleOutput,
        truncated: (count) => guestLog.warn('console_io', { vcpu, count }, `guest console_io write of ${count} bytes cut at ${CONSOLEIO_WRITE_MAX}`),
      }),
      schedOps({
        shutdown,
        shutdownCode: () => state.shutdownCode,
        latchShutdownCode: (code) => state.latchShutdownCode(code),
        sleep: (done, options) => this.sleep(thread, systemTime, done, options),
        eventsPendingWithDeliveryEnabled: () => this.events.enableDeliveryAndCheck(vcpu),
        checkPort: (port) => ports.check(port, portLimit(ports, state)),
        isPending: (port) => this.events.isPending(port),
        localEventsNeedDelivery: (ctx) => (ctx as ExitContext).interruptsEnabled() && this.events.upcallPending(vcpu),
        upcallPending: () => this.events.upcallPending(vcpu),
        portsTurnedPending: () => state.portsTurnedPending,
        timers,
        systemTime,
      }),
      evtchnVcpuOps({ domid: config.domid, state, ports, events: this.events }),
      grantTableVcpuOps({ domid: config.domid, memory, grantTable: GrantTable.attach(config.grantTable, memory), guestLog }),
    ], (ctx, nr, args) => forward({ vcpu, abi: ctx.abi, nr, args: [...args], paging: (ctx as LocalContext).paging }));
  }

  /** SCHEDOP_block and poll: the vCPU thread sleeps outside KVM_RUN, its runstate blocked, until woken. */
  private sleep(thread: VcpuSleep, now: () => bigint, done: () => boolean, options: { deadline?: bigint; once?: boolean }): void {
    // SCHEDOP_poll (not once) wants waking by any newly pending port, masked or not.
    const polling = !options.once;
    thread.sleeping();
    if (polling) this.state.setPolling(true);
    this.runstate.transition(RUNSTATE.blocked);
    try {
      for (let slices = 0; ; slices++) {
        const count = thread.wakeCount();
        if (done() || thread.needed() || (options.once && slices > 0)) return;
        let ms = options.once || this.state.kvmDeliversEvents ? SLEEP_SLICE_MS : Infinity;
        if (options.deadline !== undefined) {
          const left = options.deadline - now();
          if (left <= 0n) return;
          ms = Math.min(ms, Number(left) / 1e6);
        }
        thread.sleep(count, ms);
      }
    } finally {
      if (polling) this.state.setPolling(false);
      this.runstate.transition(RUNSTATE.running);
    }
  }

  /** A hypercall through the page's `out` stub: number in EAX, arguments in the ABI's registers, the result to RAX. */
  hypercall(regs: ExitRegisters): void {
    const abi: Abi = regs.long64() ? 'native' : 'compat';
    const args: bigint[] = [];
    for (const name of ARGUMENT_REGISTERS[abi]) args.push(abi === 'native' ? regs.reg(name) : BigInt.asUintN(32, regs.reg(name)));
    regs.setRax(this.serve(regs, abi, regs.cpl(), regs.reg('rax'), args));
  }

  /** A hypercall KVM intercepted (VMCALL/VMMCALL): KVM read the number and arguments; the result is for KVM to put in RAX. */
  xenHypercall(regs: ExitRegisters, call: { longMode: boolean; cpl: number; input: bigint; params: readonly bigint[] }): bigint {
    const abi: Abi = call.longMode ? 'native' : 'compat';
    return this.serve(regs, abi, call.cpl, call.input, abi === 'native' ? call.params : call.params.map((p) => BigInt.asUintN(32, p)));
  }

  /** The hypercalls that reached this thread, by name (numbers Xen has no hypercall for as `other`). */
  hypercallsByName(): Record<string, number> {
    const out: Record<string, number> = {};
    this.callCounts.forEach((n, nr) => {
      if (n > 0) out[nr < KNOWN_HYPERCALLS ? (HYPERCALL_NAMES[nr] ?? String(nr)) : 'other'] = n;
    });
    return out;
  }

  private serve(regs: ExitRegisters, abi: Abi, cpl: number, input: bigint, args: readonly bigint[]): bigint {
    const nr = Number(input & 0xffffffffn);
    this.callCounts[Math.min(nr, KNOWN_HYPERCALLS)]++;
    // As Xen recalibrates, once a second: whether the TSCs are still in step is asked again, and this
    // vCPU's records say so before its guest runs again.
    if (this.clock.recheck()) rewriteVcpuTime({ config: this.config, state: this.state, memory: this.memory, clock: this.clock }, this.vcpu);
    return this.dispatcher.dispatch(new ExitContext(this.vcpu, abi, this.memory, regs), cpl, nr, args);
  }

  /** The Xen MSRs: a write to the hypercall MSR fills the page it names; nothing else is readable or writable (#GP). */
  readonly msrs = {
    read: (): bigint | undefined => undefined,
    write: (_vcpu: number, index: number, value: bigint): boolean => {
      if (index !== HYPERCALL_MSR) return false;
      const gpa = hypercallPageTarget(value);
      // Only ordinary RAM: the page must not land on shared_info or another overlay.
      if (gpa === undefined || !this.memory.isRam(gpa, this.page.length)) return false;
      this.memory.write(gpa, this.page);
      return true;
    },
  };
}

/** How the vCPU thread sleeps in SCHEDOP_block and poll. */
export interface VcpuSleep {
  wakeCount(): number;
  sleep(count: number, timeoutMs: number): void;
  /** Whether the VMM needs the thread back (pause, stop, down). */
  needed(): boolean;
  /** The thread is about to sleep: whatever must wake it has to reach it outside KVM_RUN. */
  sleeping(): void;
}

/**
 * A blocked vCPU looks again at least this often: a LAPIC interrupt may be waiting for it in KVM. So does a
 * polling one while KVM raises some of the domain's events itself (the `evtchn` fast path), which wakes no
 * thread out of KVM_RUN; every event xenkvm raises wakes its pollers, so otherwise a poll sleeps until one
 * does (or its timeout): the looks cost a quiet vCPU's thread CPU time for nothing.
 */
const SLEEP_SLICE_MS = 10;

interface LocalContext extends HypercallContext {
  readonly paging: PagingState;
}

/**
 * A hypercall served on the vCPU thread. Most hot hypercalls take no pointer: the paging state is read,
 * and the guest-virtual view made, only when an argument is dereferenced. A class rather than an object
 * literal with getters, which V8 builds slowly and anew on every call.
 */
class ExitContext implements LocalContext {
  private view: GuestVirtual | undefined;

  constructor(
    readonly vcpu: number,
    readonly abi: Abi,
    private readonly memory: GuestMemory,
    private readonly regs: ExitRegisters,
  ) {}

  get paging(): PagingState {
    return this.regs.paging();
  }

  get guest(): GuestVirtual {
    return (this.view ??= new GuestVirtual(this.memory, this.regs.paging()));
  }

  interruptsEnabled(): boolean {
    return this.regs.interruptsEnabled();
  }
}

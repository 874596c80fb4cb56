// A vCPU worker thread: configures its vCPU, then runs KVM_RUN and handles
// exits until told to stop or the guest ends the run.
import { parentPort, workerData } from 'node:worker_threads';
import { configureLogging, log, RateLimitedLog, type LogLevel } from '../common/log.js';
import { caps, mpStates } from '../kvm/abi.js';
import { hvmContextToStart } from '../xen/vcpu-context.js';
import { cpuVendor, hostKvmIsPvm, type CpuidEntry, type CpuVendor } from '../kvm/system.js';
import { INTERRUPTED, MSR_IA32_TSC, Vcpu, vcpuFd, type Regs, type Sregs } from '../kvm/vcpu.js';
import { VcpuStats } from '../kvm/stats.js';
import { RUNSTATE } from '../xen/abi/vcpu.js';
import { DomainState } from '../xen/domain-state.js';
import { Vm } from '../kvm/vm.js';
import { GuestMemory, type GuestMemoryHandle } from '../memory/guest-memory.js';
import { AcpiPm } from './devices/acpi-pm.js';
import { DebugConsole } from './devices/debug-console.js';
import { ConsoleStream } from './console-stream.js';
import { CmosRtc } from './devices/cmos-rtc.js';
import { IoBus } from './devices/io-bus.js';
import { ECAM_BUS_SIZE, PciConfigSpace } from './devices/pci.js';
import type { Platform, StopReason } from './devices/platform.js';
import { PostCode } from './devices/post-code.js';
import { Uart16550 } from './devices/uart16550.js';
import { XEN_UNPLUG_PORTS, XenUnplugPorts } from './devices/xen-platform.js';
import { ExitHandler } from './exit-handler.js';
import { VmmChannel } from './vmm-channel.js';
import { CallbackLineRaiser } from './callback-lines.js';
import { KvmTimeRecords } from './kvm-time-records.js';
import { KvmTimer } from './kvm-timer.js';
import { KvmUpcallVector } from './kvm-upcall-vector.js';
import { upcallHost } from './msi.js';
import { PortTable } from '../xen/evtchn/ports.js';
import { callbackVector } from '../xen/evtchn/upcall.js';
import type { ShutdownKind } from '../xen/sched.js';
import { TimerState } from '../xen/timers.js';
import { XenAccelerator, type ExitRegisters, type ForwardedHypercall } from '../xen/accelerator.js';
import type { XenConfig } from '../xen/config.js';
import { HYPERCALL_PORT } from '../xen/hypercall-page.js';
import { PCI_ECAM_BASE, pciFunctions, ports, S5_SLEEP_TYPE, UART_IRQ } from './layout.js';
import { blockKickSignal, Command, consumeKick, VcpuControl, VcpuState } from './vcpu-control.js';

export interface VcpuThreadInit {
  id: number;
  vcpuFd: number;
  vmFd: number;
  runSize: number;
  memory: GuestMemoryHandle;
  control: SharedArrayBuffer;
  /** Every vCPU's control block, for kicking another vCPU when an event needs its thread. */
  controls: SharedArrayBuffer[];
  uartState: SharedArrayBuffer;
  /** The console ports' bytes, in order (ConsoleStream). */
  console: SharedArrayBuffer;
  /** The CMOS RTC (an HVM guest's only). */
  rtcState?: SharedArrayBuffer;
  /** PCI bus 0's configuration space (PciConfigSpace). */
  pciState: SharedArrayBuffer;
  cpuid: CpuidEntry[];
  /** Register state for the boot vCPU; APs wait for INIT/SIPI in KVM. */
  boot?: { regs: Partial<Regs>; sregs: Partial<Sregs> };
  xen: XenConfig;
  domainState: SharedArrayBuffer;
  ports: SharedArrayBuffer;
  timers: SharedArrayBuffer;
  /** Where this vCPU thread waits for hypercalls the main thread serves. */
  vmmChannel: SharedArrayBuffer;
  /** The callback lines' eventfds (CallbackLines.buffer). */
  callbackLines: SharedArrayBuffer;
  /** Whether KVM keeps the vCPU's singleshot timer where it can deliver its event (the `timer` fast path). */
  kvmTimer: boolean;
  /** Whether KVM may raise the domain's events (the `evtchn` fast path). */
  kvmEvents: boolean;
  /** shared_info's host address in the main thread's mapping, where KVM takes it by host address (the `shinfo-hva` fast path). */
  kvmSharedInfoHva?: bigint;
  logLevel: LogLevel;
}

export type VcpuMessage =
  | { type: 'stop'; reason: StopReason; message: string }
  | { type: 'hypercall'; call: ForwardedHypercall }
  /** Kick me again soon: I owe the guest an interrupt it cannot take yet. */
  | { type: 'rekick'; afterMs: number }
  /** KVM could now raise this vCPU's events: look again whether it may raise the domain's. */
  | { type: 'kvm-events' };

const EFER_LMA = 1n << 10n;
const RFLAGS_IF = 1n << 9n;
/** How soon a vCPU that could not take the HVM callback vector is kicked to try again. */
const INTERRUPT_WINDOW_RETRY_MS = 1;
/** How soon an upcall vector a software-disabled LAPIC refused is signalled again: a guest may leave it off. */
const LAPIC_RETRY_MS = 10;

/** The accelerator's view of the exit registers, from KVM's synced register area; `vendor` says whose paging rules apply. */
function exitRegisters(vcpu: Vcpu, vendor: CpuVendor): ExitRegisters {
  return {
    reg: (name) => vcpu.syncedReg(name),
    setRax: (value) => vcpu.setSyncedReg('rax', value),
    cpl: () => vcpu.syncedCpl(),
    long64: () => vcpu.syncedCodeIs64() && (vcpu.syncedControl('efer') & EFER_LMA) !== 0n,
    interruptsEnabled: () => (vcpu.syncedReg('rflags') & RFLAGS_IF) !== 0n,
    paging: () => ({ cr0: vcpu.syncedControl('cr0'), cr3: vcpu.syncedControl('cr3'), cr4: vcpu.syncedControl('cr4'), efer: vcpu.syncedControl('efer'), vendor }),
  };
}


function main(init: VcpuThreadInit): void {
  configureLogging(init.logLevel);
  const logger = log(`vcpu${init.id}`);
  const control = new VcpuControl(init.control);
  const post = (m: VcpuMessage) => parentPort!.postMessage(m);

  const consoleStream = new ConsoleStream(init.console);
  let stop: { reason: StopReason; message: string } | undefined;
  const vm = new Vm(init.vmFd);
  const platform: Platform = {
    requestStop: (reason, message) => (stop ??= { reason, message: message ?? reason }),
    consoleOutput: (bytes) => consoleStream.write(bytes),
    setIrqLevel: (irq, level) => vm.irqLine(irq, level),
  };

  const bus = new IoBus();
  const pm = new AcpiPm(platform, S5_SLEEP_TYPE);
  bus.register(ports.debugConsole, 1, new DebugConsole(platform));
  bus.register(ports.postCode, 1, new PostCode());
  bus.register(ports.uart, 8, new Uart16550(init.uartState, platform, UART_IRQ));
  bus.register(ports.sleepControl, 1, pm.sleepControl);
  bus.register(ports.sleepStatus, 1, pm.sleepStatus);
  bus.register(ports.pm1aEvent, 4, pm.pm1aEvent);
  bus.register(ports.pm1aControl, 2, pm.pm1aControl);
  bus.register(ports.reset, 1, pm.reset);
  bus.register(ports.keyboardController, 1, pm.keyboardController);
  if (init.rtcState) bus.register(ports.cmosRtc, 2, new CmosRtc(init.rtcState));
  const pci = new PciConfigSpace(init.pciState, pciFunctions());
  bus.register(ports.pciConfigAddress, 1, pci.ports.address);
  // The address register's other bytes (0xcf9 is the reset control): a byte there is no configuration access.
  bus.register(ports.pciConfigAddress + 2, 2, pci.ports.address);
  bus.register(ports.pciConfigData, 4, pci.ports.data);
  bus.registerMmio(PCI_ECAM_BASE, ECAM_BUS_SIZE, { read: (at, size) => pci.ecamRead(at, size), write: (at, size, v) => pci.ecamWrite(at, size, v) });
  bus.register(ports.xenUnplug, XEN_UNPLUG_PORTS, new XenUnplugPorts(new RateLimitedLog(logger)));

  const kvmRunMask = blockKickSignal();
  control.publishThread();
  const memory = GuestMemory.attach(init.memory);
  const vcpu = new Vcpu(init.vcpuFd, init.id, init.runSize);
  let stats: VcpuStats | undefined;
  let handler: ExitHandler | undefined;
  let hypercalls: (() => Record<string, number>) | undefined;
  try {
    const haltStats = (stats = VcpuStats.open(init.vcpuFd));
    const halted = haltStats.sum(['halt_wait_ns', 'halt_poll_success_ns', 'halt_poll_fail_ns']);
    vcpu.setSignalMask(kvmRunMask);
    vcpu.setCpuid(init.cpuid);
    // KVM's own paravirtual MSRs must #GP like on Xen: no KVM feature leaves are advertised.
    vcpu.enableCap(caps.KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 1);
    if (init.boot) {
      vcpu.setSregs(init.boot.sregs);
      vcpu.setRegs(init.boot.regs);
    }
    const channel = new VmmChannel(init.vmmChannel);
    const domain = new DomainState(init.domainState);
    const controls = init.controls.map((b) => new VcpuControl(b));
    const upcall = upcallHost(vm, controls, new CallbackLineRaiser(init.callbackLines));
    const kvmTime = init.xen.kvmTime ? new KvmTimeRecords(vcpu, init.id, domain, memory, init.kvmSharedInfoHva) : undefined;
    const ports = new PortTable(init.ports);
    const timers = new TimerState(init.timers);
    const kvmVector = (init.kvmTimer || init.kvmEvents) && kvmTime ? new KvmUpcallVector(vcpu, init.id, domain) : undefined;
    const kvmTimer = init.kvmTimer && kvmTime && kvmVector ? new KvmTimer(vcpu, init.id, kvmVector, ports, timers, memory, () => kvmTime.holdsVcpuInfo) : undefined;
    /** Whether this vCPU last said KVM could raise its events (the `evtchn` fast path). */
    let kvmEventsReady = false;
    const shutdown = (kind: ShutdownKind, message: string) =>
      platform.requestStop(kind === 'reboot' ? 'reset' : kind === 'suspend' ? 'suspended' : kind, message);
    const xen = new XenAccelerator(init.id, memory, init.xen, domain, ports, upcall, shutdown, timers, {
      wakeCount: () => control.wakeCount,
      sleep: (count, ms) => control.sleep(count, ms),
      needed: () => control.command !== Command.Run,
      sleeping: () => kvmTimer?.release(),
    }, halted, {
      // On this thread, with the vCPU out of KVM_RUN: the TSC its guest last saw, or later.
      tsc: () => vcpuFd.readMsr(init.vcpuFd, MSR_IA32_TSC),
      tscStable: () => vm.tscStable(),
      ...(kvmTime && { kvmRecord: () => kvmTime.current() }),
    }, logger, platform.consoleOutput, (call: ForwardedHypercall) =>
      channel.call(() => {
        // Outside KVM_RUN while the main thread works: a pause must not wait for this vCPU.
        control.report(VcpuState.Paused);
        post({ type: 'hypercall', call });
      }),
    );
    hypercalls = () => xen.hypercallsByName();
    // The host's vendor (KVM passes leaf 0 through): AMD's and Intel's processors walk PAE page tables differently.
    const vendor = cpuVendor(init.cpuid);
    const regs = exitRegisters(vcpu, vendor);
    handler = new ExitHandler(vcpu, bus, memory, { vendor, pvm: hostKvmIsPvm() }, logger, xen.msrs, { port: HYPERCALL_PORT, call: () => xen.hypercall(regs), xen: (exit) => xen.xenHypercall(regs, exit) });
    const requestRekick = (afterMs: number) => {
      if (!rekickRequested) post({ type: 'rekick', afterMs });
      rekickRequested = true;
    };
    // The upcall is owed while evtchn_upcall_pending is set, as Xen re-evaluates it at every VM entry. The
    // HVM callback vector stays asserted like a level-triggered line outside the LAPIC, injected directly
    // whenever the guest can take an interrupt; a per-vCPU vector is signalled until the LAPIC takes it.
    const deliverOwedUpcall = () => {
      // Cleared before upcall_pending is read, so an event raised meanwhile sets it again and is never missed;
      // set again while upcall_pending stays set, so the vector is re-injected as a level-triggered line would be.
      domain.setUpcallOwed(init.id, false);
      if (!xen.events.upcallPending(init.id)) return;
      const upcallVector = domain.upcallVector(init.id);
      if (upcallVector !== 0) {
        if (upcall.signalMsi(init.id, upcallVector)) return void domain.noteUpcallTaken(init.id, upcallVector);
        // The LAPIC is software-disabled, and enabling it gives no exit: try again shortly.
        domain.setUpcallOwed(init.id, true);
        return requestRekick(LAPIC_RETRY_MS);
      }
      const vector = callbackVector(domain);
      if (vector === undefined) return;
      domain.setUpcallOwed(init.id, true);
      const e = vcpu.interruptsEnabled ? vcpu.getEvents() : undefined;
      if (!e || e.interrupt_injected || e.interrupt_shadow || e.exception_injected || e.nmi_injected) {
        // Not now: KVM gives no exit when the guest re-enables interrupts, so ask to be kicked again shortly.
        return requestRekick(INTERRUPT_WINDOW_RETRY_MS);
      }
      vcpu.setEvents({ interrupt_injected: 1, interrupt_nr: vector, interrupt_soft: 0 });
      // KVM wakes a halted vCPU for its LAPIC's interrupts, not for one injected this way: end the HLT here,
      // as the interrupt would. A vCPU halts only inside KVM_RUN, so only a kicked one can be halted now.
      if (kicked && vcpu.getMpState() === mpStates.HALTED) vcpu.setMpState(mpStates.RUNNABLE);
    };
    let rekickRequested = false;
    /** Whether the last KVM_RUN ended by a kick rather than an exit. */
    let kicked = false;
    // The boot vCPU runs from the start; an AP is offline until it shows it runs (its first exit after SIPI).
    let started = false;
    const start = () => {
      started = true;
      domain.setUp(init.id, true);
      domain.setInitialised(init.id);
      xen.runstate.transition(RUNSTATE.running);
    };
    if (init.boot) start();
    for (;;) {
      const command = control.command;
      if (command === Command.Stop) break;
      if (command === Command.Pause || command === Command.Down) {
        if (started) xen.runstate.transition(command === Command.Down ? RUNSTATE.offline : RUNSTATE.runnable);
        control.report(VcpuState.Paused);
        control.waitWhileHeld();
        if (started && control.command === Command.Run) xen.runstate.transition(RUNSTATE.running);
        continue;
      }
      // Brought up by VCPUOP_up with a VCPUOP_initialise context: load it and leave the wait for SIPI.
      const startContext = domain.isUp(init.id) ? domain.takeStartContext(init.id) : undefined;
      if (startContext) {
        try {
          const state = hvmContextToStart(startContext.abi, startContext.context, init.xen.cpuPolicy);
          vcpu.setSregs(state.sregs);
          vcpu.setRegs(state.regs);
          vcpu.setMpState(mpStates.RUNNABLE);
          if (!started) start();
        } catch (e) {
          // A context Xen's checks let through but KVM refuses: the vCPU stays down rather than the VM stopping.
          logger.warn({ vcpu: init.id, err: (e as Error).message }, 'KVM refused the VCPUOP_initialise context; vCPU stays down');
          domain.setUp(init.id, false);
          control.holdSelf();
          continue;
        }
      }
      if (domain.upcallOwed(init.id)) deliverOwedUpcall();
      kvmTime?.sync();
      kvmVector?.sync();
      kvmTimer?.sync();
      if (init.kvmEvents && domain.kvmMayRaiseEventsFor(init.id) !== kvmEventsReady) {
        kvmEventsReady = !kvmEventsReady;
        if (kvmEventsReady) post({ type: 'kvm-events' });
      }
      control.running();
      const reason = vcpu.enter();
      kicked = reason === INTERRUPTED;
      if (kicked) {
        // The kick asked for may be this one: ask again if still owed. (Other exits leave the request standing.)
        rekickRequested = false;
        consumeKick();
        continue;
      }
      if (!started) start();
      const action = handler.handleRun(reason);
      if (action) platform.requestStop(action.stop, action.message);
      if (stop) break;
    }
  } catch (e) {
    platform.requestStop('vmm-error', `vCPU ${init.id}: ${(e as Error).message}`);
  } finally {
    // For a person inspecting a guest (XENKVM_LOG=info): the exits that reached xenkvm against all KVM saw,
    // those it served itself included (its fast paths' hypercalls among them).
    if (handler && stats && hypercalls) {
      logger.info({ vcpu: init.id, toXenkvm: handler.exitsByReason(), hypercalls: hypercalls(), kvm: { exits: Number(stats.read('exits')) } }, 'vCPU exits');
    }
    if (stop) post({ type: 'stop', ...stop });
    stats?.close();
    vcpu.unmap();
    memory.dispose();
    control.report(VcpuState.Exited);
  }
}

main(workerData as VcpuThreadInit);

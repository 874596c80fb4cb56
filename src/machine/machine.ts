// Composition: builds a VM from a config (KVM, memory, the loaded kernel,
// ACPI tables and start_info), runs one worker thread per vCPU, and tears
// everything down when the guest ends the run or the caller stops it.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { buildAcpiTables } from '../boot/acpi.js';
import { log, type LogLevel } from '../common/log.js';
import type { Logger } from 'pino';
import { caps, msrExit, msrFilter, xenHvmAttrTypes, xenHvmConfig } from '../kvm/abi.js';
import { libc } from '../kvm/libc.js';
import { cpuVendor, Kvm, type CpuidEntry } from '../kvm/system.js';
import { MSR_IA32_TSC, vcpuFd } from '../kvm/vcpu.js';
import { DomainState } from '../xen/domain-state.js';
import { DEFAULT_PORT_COUNT, PortTable } from '../xen/evtchn/ports.js';
import { EVTCHN_FIFO } from '../xen/abi/event-channel.js';
import { TimerState } from '../xen/timers.js';
import { ConsoleInput } from '../backends/console.js';
import { Toolstack } from './toolstack.js';
import { defaultSocketPath } from '../xenstore/socket.js';
import { basename } from 'node:path';
import type { TimerMessage, TimerThreadInit } from './timer-thread.js';
import { signalFixedMsi, upcallHost } from './msi.js';
import { monotonicNs, realtimeNs, tscScale } from '../xen/time.js';
import type { ForwardedHypercall } from '../xen/accelerator.js';
import { DEFAULT_XEN_VERSION, DOMU_ID, type XenConfig } from '../xen/config.js';
import { HYPERCALL_MSR, type HypercallEntry } from '../xen/hypercall-page.js';
import { xenCpuidLeaves } from '../xen/cpuid.js';
import { XenVmm } from '../xen/vmm.js';
import { guestCpuPolicy } from '../xen/vcpu-context.js';
import { randomUUID } from 'node:crypto';
import { VmmChannel } from './vmm-channel.js';
import { ForwardedCalls } from './forwarded-calls.js';
import { KvmEventChannels } from './kvm-event-channels.js';
import { KvmSharedInfo } from './kvm-shared-info.js';
import { SHARED_INFO_PAGE, writeWallclock } from '../xen/shared-info.js';
import type { Vm } from '../kvm/vm.js';
import { GuestMemory, PAGE_SIZE } from '../memory/guest-memory.js';
import { MemoryMap } from '../memory/memory-map.js';
import { planBoot } from './boot-plan.js';
import { ConfigError } from './config-error.js';
import { vcpuCpuid } from './cpuid.js';
import { ConsoleStream } from './console-stream.js';
import { CallbackLineRaiser, CallbackLines } from './callback-lines.js';
import { ALL_KVM_FAST_PATHS, kvmFastPathsOn, kvmRaisesEvents, type KvmFastPath } from './kvm-fast-paths.js';
import { CmosRtc } from './devices/cmos-rtc.js';
import { PciConfigSpace } from './devices/pci.js';
import type { StopReason } from './devices/platform.js';
import { Uart16550 } from './devices/uart16550.js';
import { exitStatus } from './exit-status.js';
import {
  ACPI_BASE, ACPI_SIZE, DEFAULT_MAX_GRANT_FRAMES, GRANT_TABLE_FIRST_PAGE, guestMemmap, IOAPIC_ADDRESS, IOAPIC_ID, KVM_IDENTITY_MAP_ADDRESS,
  KVM_RESERVED_FRAMES, KVM_TSS_ADDRESS, LAPIC_ADDRESS, MAX_GRANT_FRAMES, MAX_MEMORY_MIB, MAX_VCPUS, MiB, MIN_MEMORY_MIB, overlayPoolPages, ports, RESET_VALUE,
  pcGsiRoutes, PCI_ECAM_BASE, PCI_MEMORY_WINDOWS, pciFunctions, pciIntxGsi, PIT_GSI, PIT_IRQ, S5_SLEEP_TYPE, SCI_IRQ,
  UART_IRQ, RTC_IRQ, ramRanges,
} from './layout.js';
import { Command, RekickTimer, VcpuControl, VcpuState } from './vcpu-control.js';
import type { BackendThreadInit } from './backend-thread.js';
import { closeRawDisk, DiskError, openRawDisk, type RawDiskHandle } from '../backends/block/disk.js';
import { exportImage } from '../backends/block/qemu-export.js';
import { closeTap, createTap, TapError } from '../backends/net/tap.js';
import { NET_LIMITS, type HostLink } from '../backends/net/vif.js';
import { parseVifSpec, VifSpecError, type VifSpec } from '../backends/net/vif-spec.js';
import { DiskSpecError, parseDiskSpec, type DiskSpec } from '../backends/block/disk-spec.js';
import { GrantTable } from '../xen/gnttab/table.js';
import type { VcpuMessage, VcpuThreadInit } from './vcpu-thread.js';

export interface MachineConfig {
  kernel: string;
  /** An initial ramdisk, handed to the kernel as start_info's first module. */
  initrd?: string;
  cmdline: string;
  memoryMiB: number;
  /** The balloon target written to XenStore (memory/target), at most memoryMiB; default memoryMiB. */
  targetMiB?: number;
  vcpus: number;
  logLevel?: LogLevel;
  /** Guest console bytes; stdout when not given. */
  output?: (bytes: Uint8Array) => void;
  /** The Xen version the guest sees (default 4.17). */
  xenVersion?: { major: number; minor: number };
  /** The highest event-channel port the guest may bind (xl's max_event_channels; default 4095). */
  maxEvtchnPort?: number;
  /** Serve IPI and loopback sends on the sending vCPU's thread (default); off, every send goes through the main thread. */
  evtchnFastPath?: boolean;
  /** What KVM serves in the kernel where its Xen support can (default: all it can); see kvm-fast-paths.ts. */
  kvmFastPaths?: readonly KvmFastPath[];
  /** Whether the guest may switch to FIFO event channels (default auto: where KVM raises no events itself). */
  evtchnFifo?: EvtchnFifoChoice;
  /** The guest's name in XenStore (default: the kernel file's name without its extension). */
  name?: string;
  /** Where the XenStore socket goes (default: defaultSocketPath()). */
  xenstoreSocket?: string;
  /** Secondary PV consoles offered to the guest (xenbus devices console/1 …); default none. */
  secondaryConsoles?: number;
  /** The most frames the guest's grant table may grow to (xl's max_grant_frames; default 64). */
  maxGrantFrames?: number;
  /** PV disks, each in xl's disk specification (target=…, vdev=…, access=…, format=…). */
  disks?: readonly string[];
  /** PV network interfaces, each in xl's vif specification (mac=…, bridge=…, net=tap|user, …). */
  vifs?: readonly string[];
}

export interface RunOutcome {
  reason: StopReason;
  status: number;
  message: string;
}

const writeStdout = (bytes: Uint8Array) => void process.stdout.write(bytes);

/** 16 bytes as a UUID string (8-4-4-4-12 hex digits). */
function uuidString(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const MAX_SECONDARY_CONSOLES = 16;

/** MSR ranges whose guest accesses exit to the VMM: Xen's (and Hyper-V's) at 0x40000000, KVM's own at 0x4b564d00. */
const FILTERED_MSRS = [
  { base: 0x40000000, count: 0x3000 },
  { base: 0x4b564d00, count: 0x100 },
];

function validateConfig(c: Pick<MachineConfig, 'memoryMiB' | 'targetMiB' | 'vcpus' | 'maxEvtchnPort' | 'secondaryConsoles' | 'maxGrantFrames'>): void {
  if (!Number.isInteger(c.memoryMiB) || c.memoryMiB < MIN_MEMORY_MIB || c.memoryMiB > MAX_MEMORY_MIB) {
    throw new ConfigError(`memory must be a whole number of MiB from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}, not ${c.memoryMiB}`);
  }
  const target = c.targetMiB ?? c.memoryMiB;
  if (!Number.isInteger(target) || target < MIN_MEMORY_MIB || target > c.memoryMiB) {
    throw new ConfigError(`the memory target must be a whole number of MiB from ${MIN_MEMORY_MIB} to the guest's memory (${c.memoryMiB}), not ${target}`);
  }
  if (!Number.isInteger(c.vcpus) || c.vcpus < 1 || c.vcpus > MAX_VCPUS) {
    throw new ConfigError(`vCPU count must be a whole number from 1 to ${MAX_VCPUS}, not ${c.vcpus}`);
  }
  const consoles = c.secondaryConsoles ?? 0;
  if (!Number.isInteger(consoles) || consoles < 0 || consoles > MAX_SECONDARY_CONSOLES) {
    throw new ConfigError(`secondary console count must be a whole number from 0 to ${MAX_SECONDARY_CONSOLES}, not ${consoles}`);
  }
  const grantFrames = c.maxGrantFrames ?? DEFAULT_MAX_GRANT_FRAMES;
  if (!Number.isInteger(grantFrames) || grantFrames < 1 || grantFrames > MAX_GRANT_FRAMES) {
    throw new ConfigError(`the most grant-table frames must be a whole number from 1 to ${MAX_GRANT_FRAMES}, not ${grantFrames}`);
  }
  const maxPort = c.maxEvtchnPort ?? DEFAULT_PORT_COUNT - 1;
  if (!Number.isInteger(maxPort) || maxPort < 1 || maxPort >= EVTCHN_FIFO.NR_CHANNELS) {
    throw new ConfigError(`the highest event-channel port must be a whole number from 1 to ${EVTCHN_FIFO.NR_CHANNELS - 1}, not ${maxPort}`);
  }
}

/** The disks' specifications parsed and their images opened; ConfigError says which cannot be used, and why. */
function openDisks(texts: readonly string[], resources: Resources): { spec: DiskSpec; image: RawDiskHandle }[] {
  const disks = texts.map((text) => {
    try {
      return parseDiskSpec(text);
    } catch (e) {
      if (e instanceof DiskSpecError) throw new ConfigError(e.message);
      throw e;
    }
  });
  for (const [i, d] of disks.entries()) {
    if (disks.findIndex((o) => o.devid === d.devid) !== i) throw new ConfigError(`two disks are ${d.vdev}: each needs its own vdev`);
  }
  return disks.map((spec) => {
    try {
      let path = spec.target;
      if (spec.format !== 'raw') {
        const served = exportImage({ ...spec, format: spec.format });
        resources.add(() => served.stop());
        path = served.path;
      }
      const image = openRawDisk(path, spec.readOnly, spec.discard);
      resources.add(() => closeRawDisk(image));
      return { spec, image };
    } catch (e) {
      if (e instanceof DiskError) throw new ConfigError(e.message);
      throw e;
    }
  });
}

/**
 * The interfaces' specifications parsed and their links to the host made: a TAP device of `queues` queues
 * where the spec asks for one, or leaves it open and xenkvm may create one; user-mode networking where it
 * asks for that, or leaves it open and xenkvm may not. ConfigError says which cannot be had, and why.
 */
function openVifs(texts: readonly string[], queues: number, resources: Resources, logger: Logger): { spec: VifSpec; link: HostLink }[] {
  return texts.map((text, devid) => {
    try {
      const spec = parseVifSpec(text, devid);
      if (spec.net === 'user') return { spec, link: { kind: 'user', mtu: spec.mtu, forwards: spec.forwards } };
      try {
        const tap = createTap(spec, queues);
        resources.add(() => closeTap(tap));
        return { spec, link: { kind: 'tap', tap } };
      } catch (e) {
        if (!(e instanceof TapError && e.notPermitted && spec.net === undefined)) throw e;
        logger.info({ vif: devid }, 'no permission to create a TAP device: the interface uses user-mode networking (give it net=tap to insist)');
        return { spec, link: { kind: 'user', mtu: spec.mtu, forwards: spec.forwards } };
      }
    } catch (e) {
      if (e instanceof VifSpecError || e instanceof TapError) throw new ConfigError(e.message);
      throw e;
    }
  });
}

function readGuestFile(what: 'kernel' | 'initrd', path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EISDIR' ? 'it is a directory' : err.message;
    throw new ConfigError(`cannot read ${what} ${path}: ${why}`);
  }
}

/**
 * The host clock at the TSC reading that anchors the domain's pvclock: system time 0 is that
 * moment. The TSC is read between two host clock readings and paired with the later one, so the
 * VMM's system time (runstates, timers, get_time) never runs ahead of the guest's pvclock; the
 * narrowest of a few windows keeps the two close.
 */
function readTscAnchor(bootVcpuFd: number): { tsc: bigint; ns: bigint } {
  let best: { tsc: bigint; ns: bigint; window: bigint } | undefined;
  for (let i = 0; i < 8; i++) {
    const before = monotonicNs();
    const tsc = vcpuFd.readMsr(bootVcpuFd, MSR_IA32_TSC);
    const after = monotonicNs();
    if (!best || after - before < best.window) best = { tsc, ns: after, window: after - before };
  }
  return best!;
}

/**
 * The domain's Xen view of itself. Its pvclock follows the line KVM keeps every vCPU's TSC on:
 * 0 when KVM_CREATE_VCPU made the boot vCPU (`bootVcpuCreated`, the host clock read just after it),
 * advancing at the TSC frequency. Where KVM keeps the TSCs in step, a read of the boot vCPU's TSC
 * pins that line more closely. Where it does not (a host TSC it deems unstable), it rewinds a
 * vCPU's TSC to the last value its guest saw on every vCPU ioctl and catches it up to the line
 * only when the vCPU runs: a read before the boot vCPU ever ran returns its creation value, so
 * the creation itself is the anchor there.
 */
function xenConfig(
  config: MachineConfig,
  vm: Vm,
  bootVcpuFd: number,
  bootVcpuCreated: bigint,
  guestCpuid: readonly CpuidEntry[],
  hypercallEntry: HypercallEntry,
  fastPaths: readonly KvmFastPath[],
): XenConfig {
  const kvmTime = fastPaths.includes('time');
  const tscKhz = vcpuFd.tscKhz(bootVcpuFd);
  // KVM decides whether it keeps the TSCs in step (its master clock) when a vCPU first runs or
  // the VM's clock is set: setting kvmclock to its own value has it decide now, with every vCPU
  // made. The guest never sees kvmclock (no KVM leaves), so the step back of a few µs is unseen.
  vm.setClock(vm.getClock().clock);
  const tscStable = vm.tscStable();
  const anchor = tscStable ? readTscAnchor(bootVcpuFd) : { tsc: 0n, ns: bootVcpuCreated };
  if (kvmTime) {
    // KVM writes the guest's time records from kvmclock: set to system time, so that they and xenkvm's
    // own reckoning (timers, runstates, the wallclock) share one time base: a hair ahead, never behind.
    vm.setClockFollowing(() => monotonicNs() - anchor.ns, realtimeNs);
  }
  return {
    version: config.xenVersion ?? DEFAULT_XEN_VERSION,
    domid: DOMU_ID,
    handle: Uint8Array.from(Buffer.from(randomUUID().replaceAll('-', ''), 'hex')),
    tscKhz,
    pvclock: { tscTimestamp: anchor.tsc, systemTime: 0n, ...tscScale(tscKhz * 1000) },
    tscStable,
    bootWallNs: realtimeNs() - (monotonicNs() - anchor.ns),
    bootMonotonicNs: anchor.ns,
    kvmTime,
    evtchnFastPath: config.evtchnFastPath ?? true,
    evtchnFifo: evtchnFifoOffered(config.evtchnFifo ?? 'auto', fastPaths),
    grantTable: GrantTable.createHandle(GRANT_TABLE_FIRST_PAGE, config.maxGrantFrames ?? DEFAULT_MAX_GRANT_FRAMES),
    cpuPolicy: guestCpuPolicy(guestCpuid),
    hypercallEntry,
  };
}

export type EvtchnFifoChoice = 'auto' | 'on' | 'off';

/**
 * Whether the guest is offered the FIFO event-channel ABI. By default not where KVM raises events
 * itself (the `timer` and `evtchn` fast paths): KVM knows only the 2-level ABI, and a guest that
 * switched to FIFO (Linux does where it can) would have every timer and IPI served by xenkvm instead.
 * A guest then finds what Xen built without CONFIG_EVTCHN_FIFO answers, and keeps the 2-level ABI.
 */
function evtchnFifoOffered(choice: EvtchnFifoChoice, fastPaths: readonly KvmFastPath[]): boolean {
  const offered = choice === 'on' || (choice === 'auto' && !kvmRaisesEvents(fastPaths));
  log('machine').info({ choice, offered }, 'FIFO event channels');
  return offered;
}

/** The fast paths asked for (default: all) that the host's KVM has; one line names those it lacks, when asked for. */
function kvmFastPaths(asked: readonly KvmFastPath[] | undefined, xenSupport: number): KvmFastPath[] {
  const { on, unavailable } = kvmFastPathsOn(asked ?? ALL_KVM_FAST_PATHS, xenSupport);
  log('machine').info({ on }, 'KVM fast paths');
  if (unavailable.length && asked) {
    const why = (xenSupport & xenHvmConfig.INTERCEPT_HCALL) === 0 ? 'it has no Xen support (CONFIG_KVM_XEN)' : 'its Xen support lacks them';
    log('machine').warn(`this host's KVM cannot serve the fast paths ${unavailable.join(', ')} itself (${why}); xenkvm serves those`);
  }
  return on;
}

/** Hands KVM the VM-wide state its fast paths need (the vCPUs' threads tell it theirs). */
function startKvmFastPaths(vm: Vm, xen: XenConfig, on: readonly KvmFastPath[]): void {
  // The value xen_version(XENVER_version) returns, as versionOps answers it.
  if (on.includes('version')) vm.setXenAttr(xenHvmAttrTypes.XEN_VERSION, BigInt(((xen.version.major << 16) | xen.version.minor) >>> 0));
}

/** Owned resources, released in reverse order of acquisition. */
class Resources {
  private readonly items: (() => void)[] = [];
  add(release: () => void): void {
    this.items.push(release);
  }
  dispose(): void {
    while (this.items.length) this.items.pop()!();
  }
}

export class Machine {
  private readonly logger = log('machine');
  private outcome: { reason: StopReason; message: string } | undefined;
  private running: Promise<RunOutcome> | undefined;
  private readonly forwardedCalls = new ForwardedCalls({
    pause: () => this.pause(),
    resume: () => this.resume(),
    dispatch: (call) => {
      this.kvmEvents?.suspend();
      const value = this.xen.dispatch(call);
      // Still with every vCPU held: KVM is told where shared_info went before any delivers into it.
      this.kvmSharedInfo?.sync();
      this.kvmEvents?.sync();
      return value;
    },
    fail: (message) => this.stop('vmm-error', message),
  });

  private constructor(
    private readonly config: MachineConfig,
    private readonly resources: Resources,
    private readonly vm: Vm,
    readonly memory: GuestMemory,
    readonly memoryMap: MemoryMap,
    private readonly vcpus: { control: VcpuControl; init: VcpuThreadInit; channel: VmmChannel }[],
    private readonly xen: XenVmm,
    private readonly timers: { state: TimerState; init: TimerThreadInit },
    private readonly toolstack: Toolstack,
    private readonly consoleInput: ConsoleInput,
    private readonly callbackLines: CallbackLines,
    private readonly consoleStream: ConsoleStream,
    /** Where KVM raises events itself (the `timer` and `evtchn` fast paths): its view of shared_info. */
    private readonly kvmSharedInfo: KvmSharedInfo | undefined,
    /** Where KVM may raise the domain's events (the `evtchn` fast path). */
    private readonly kvmEvents: KvmEventChannels | undefined,
  ) {}

  static create(config: MachineConfig): Machine {
    validateConfig(config);
    const file = readGuestFile('kernel', config.kernel);
    const ramBytes = config.memoryMiB * MiB;
    const initrd = config.initrd === undefined ? undefined : readGuestFile('initrd', config.initrd);
    const memmap = guestMemmap(ramBytes);
    const boot = planBoot(file, config.cmdline, memmap, initrd);

    const resources = new Resources();
    try {
      const disks = openDisks(config.disks ?? [], resources);
      const vifs = openVifs(config.vifs ?? [], Math.min(config.vcpus, NET_LIMITS.maxQueues), resources, log('machine'));
      const kvm = Kvm.open();
      resources.add(() => kvm.close());
      kvm.requireExtensions();
      const maxVcpus = kvm.checkExtension(caps.KVM_CAP_MAX_VCPUS) || kvm.checkExtension(caps.KVM_CAP_NR_VCPUS);
      if (config.vcpus > maxVcpus) throw new ConfigError(`this host's KVM allows at most ${maxVcpus} vCPUs per VM, not ${config.vcpus}`);

      const vm = kvm.createVm();
      resources.add(() => vm.close());
      vm.setTssAddr(KVM_TSS_ADDRESS);
      vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDRESS);
      vm.createIrqchip();
      // KVM's own PIT answers early TSC calibration (channel 2 through port 0x61) with no exits to xenkvm.
      if (vm.checkExtension(caps.KVM_CAP_PIT2) && vm.checkExtension(caps.KVM_CAP_IRQ_ROUTING)) {
        vm.setGsiRouting(pcGsiRoutes());
        vm.createPit();
      }
      vm.enableCap(caps.KVM_CAP_X86_USER_SPACE_MSR, msrExit.FILTER);
      vm.setMsrFilter(
        msrFilter.DEFAULT_ALLOW,
        FILTERED_MSRS.map((r) => ({ flags: msrFilter.READ | msrFilter.WRITE, base: r.base, bitmap: new Uint8Array(r.count / 8) })),
      );
      // Where the host's KVM can hand Xen hypercalls over (CONFIG_KVM_XEN), a VMCALL/VMMCALL reaches xenkvm:
      // modern Linux makes its hypercalls that way, and elsewhere KVM would answer them itself. After the
      // filter, which keeps the hypercall MSR's writes for xenkvm.
      const xenSupport = kvm.xenSupport();
      const interceptsXen = (xenSupport & xenHvmConfig.INTERCEPT_HCALL) !== 0;
      if (interceptsXen) vm.configureXenHvm(xenHvmConfig.INTERCEPT_HCALL, HYPERCALL_MSR);
      else if (boot.guestOs?.toLowerCase() === 'linux') {
        log('machine').warn(
          "this host's KVM has no Xen support (its kernel lacks CONFIG_KVM_XEN): Linux since its XSA-466 fixes makes its hypercalls with VMCALL/VMMCALL, which KVM then answers itself, and stops early in boot; run Linux on a host kernel with CONFIG_KVM_XEN",
        );
      }
      if (vm.checkExtension(caps.KVM_CAP_EXIT_ON_EMULATION_FAILURE)) vm.enableCap(caps.KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1);

      const memory = GuestMemory.create(ramRanges(ramBytes), overlayPoolPages(config.maxGrantFrames ?? DEFAULT_MAX_GRANT_FRAMES));
      resources.add(() => memory.dispose());
      const memoryMap = new MemoryMap(vm, memory, kvm.checkExtension(caps.KVM_CAP_NR_MEMSLOTS) || 32, new Set(KVM_RESERVED_FRAMES));

      for (const c of boot.chunks) {
        memory.write(c.gpa, c.bytes);
        memory.fill(c.gpa + c.bytes.length, c.zeroFill);
      }
      const acpi = buildAcpiTables({
        base: ACPI_BASE,
        maxBytes: ACPI_SIZE,
        cpus: config.vcpus,
        lapicAddress: LAPIC_ADDRESS,
        ioapic: { id: IOAPIC_ID, address: IOAPIC_ADDRESS, gsiBase: 0 },
        // The PIT's IRQ 0 is wired to GSI 2 on a PC, and the SCI is level-triggered, active low.
        interruptOverrides: [
          { source: PIT_IRQ, gsi: PIT_GSI, flags: 0 },
          { source: SCI_IRQ, gsi: SCI_IRQ, flags: 0xf },
        ],
        sciInterrupt: SCI_IRQ,
        uart: { port: ports.uart, irq: UART_IRQ },
        // Xen gives an HVM guest an RTC, and a PVH guest none: Linux tells the two apart by it.
        cmosRtc: boot.protocol === 'hvm' ? { port: ports.cmosRtc, irq: RTC_IRQ } : undefined,
        pci: { ecamBase: PCI_ECAM_BASE, configPorts: ports.pciConfigAddress, memoryWindows: PCI_MEMORY_WINDOWS, intxGsi: pciIntxGsi },
        sleepControlPort: ports.sleepControl,
        sleepStatusPort: ports.sleepStatus,
        pm1aEventPort: ports.pm1aEvent,
        pm1aControlPort: ports.pm1aControl,
        resetPort: ports.reset,
        resetValue: RESET_VALUE,
        s5SleepType: S5_SLEEP_TYPE,
        hardwareReduced: true,
        oemId: 'XENKVM',
        oemTableId: 'XENKVM01',
      });
      memory.write(ACPI_BASE, acpi.bytes);
      if (boot.initrd) memory.write(boot.initrd.paddr, boot.initrd.bytes);
      for (const d of boot.bootData(acpi.rsdpPaddr)) memory.write(d.gpa, d.bytes);

      const supported = kvm.supportedCpuid();
      const runSize = kvm.vcpuMmapSize();
      const uartState = Uart16550.createState();
      const consoleStream = ConsoleStream.create();
      const rtcState = boot.protocol === 'hvm' ? CmosRtc.createState() : undefined;
      const pciState = PciConfigSpace.createState(pciFunctions());
      // Read once first, so that the reading after the boot vCPU's creation does not bind clock_gettime.
      let bootVcpuCreated = monotonicNs();
      const fds = Array.from({ length: config.vcpus }, (_, id) => {
        const fd = vm.createVcpu(id);
        // KVM set the new vCPU's TSC to 0 as the ioctl ended: the domain's pvclock may be anchored here.
        if (id === 0) bootVcpuCreated = monotonicNs();
        resources.add(() => libc().close(fd));
        return fd;
      });
      // The features every vCPU shows (its own Xen leaves aside) decide what a VCPUOP_initialise context may hold.
      const hypercallEntry = !interceptsXen ? 'out' : cpuVendor(supported) === 'amd' ? 'vmmcall' : 'vmcall';
      const fastPaths = kvmFastPaths(config.kvmFastPaths, xenSupport);
      // In the mapping KVM's memory slots use, which lives as long as the VM.
      const kvmSharedInfoHva = fastPaths.includes('shinfo-hva') ? memory.overlays.hostAddress + BigInt(SHARED_INFO_PAGE * PAGE_SIZE) : undefined;
      const xen = xenConfig(config, vm, fds[0], bootVcpuCreated, vcpuCpuid(supported, 0, config.vcpus, []), hypercallEntry, fastPaths);
      startKvmFastPaths(vm, xen, fastPaths);
      const domainState = DomainState.create(config.vcpus);
      const evtchnPorts = PortTable.create((config.maxEvtchnPort ?? DEFAULT_PORT_COUNT - 1) + 1);
      const timers = TimerState.create(config.vcpus);
      // The boot vCPU is up from the start; the others until SIPI or VCPUOP_up reach them.
      domainState.setUp(0, true);
      domainState.setInitialised(0);
      const controls = fds.map(() => new VcpuControl());
      const callbackLines = new CallbackLines(vm);
      resources.add(() => callbackLines.close());
      const vcpus = fds.map((fd, id) => {
        const control = controls[id];
        // Held until every vCPU thread is up, so the boot vCPU's INIT/SIPI never races a thread still starting.
        control.order(Command.Pause);
        const init: VcpuThreadInit = {
          id,
          vcpuFd: fd,
          vmFd: vm.fd,
          runSize,
          memory: memory.handle,
          control: control.buffer,
          controls: controls.map((c) => c.buffer),
          uartState,
          console: consoleStream.buffer,
          rtcState,
          pciState,
          cpuid: vcpuCpuid(supported, id, config.vcpus, xenCpuidLeaves(xen, id)),
          boot: id === 0 ? boot.state : undefined,
          xen,
          domainState: domainState.buffer,
          ports: evtchnPorts.buffer,
          timers: timers.buffer,
          vmmChannel: new VmmChannel().buffer,
          callbackLines: callbackLines.buffer,
          kvmTimer: fastPaths.includes('timer'),
          kvmEvents: fastPaths.includes('evtchn'),
          kvmSharedInfoHva,
          logLevel: config.logLevel ?? 'warn',
        };
        return { control, init, channel: new VmmChannel(init.vmmChannel) };
      });
      const power = { run: (id: number) => vcpus[id].control.order(Command.Run), down: (id: number) => vcpus[id].control.order(Command.Down) };
      const consoleInput = new ConsoleInput();
      const xenVmm = new XenVmm(xen, memory, memoryMap, domainState, memmap, power, evtchnPorts, upcallHost(vm, controls, new CallbackLineRaiser(callbackLines.buffer)), (gsi) => callbackLines.lower(gsi), consoleInput, log('xen'));
      const guest = {
        domid: xen.domid,
        name: config.name ?? basename(config.kernel).replace(/\.[^.]*$/, ''),
        uuid: uuidString(xen.handle),
        memoryKiB: config.memoryMiB * 1024,
        targetKiB: (config.targetMiB ?? config.memoryMiB) * 1024,
        type: boot.protocol,
        vcpus: config.vcpus,
        secondaryConsoles: config.secondaryConsoles ?? 0,
        disks,
        vifs,
      };
      const backendThread: BackendThreadInit = {
        memory: memory.handle, grantTable: xen.grantTable, domainState: domainState.buffer, ports: evtchnPorts.buffer, controls: controls.map((c) => c.buffer),
        callbackLines: callbackLines.buffer, vmFd: vm.fd, guestDomid: xen.domid, logLevel: config.logLevel ?? 'warn',
      };
      const socketPath = config.xenstoreSocket ?? defaultSocketPath();
      const toolstack = new Toolstack(memory, memoryMap, domainState, xenVmm, guest, config.output ?? writeStdout, consoleInput, socketPath, backendThread, log('toolstack'));
      const timerInit: TimerThreadInit = {
        memory: memory.handle, domainState: domainState.buffer, ports: evtchnPorts.buffer, timers: timers.buffer,
        controls: controls.map((c) => c.buffer), callbackLines: callbackLines.buffer, vmFd: vm.fd, bootMonotonicNs: xen.bootMonotonicNs, logLevel: config.logLevel ?? 'warn',
      };
      const rewriteWallclock = () => writeWallclock(memory.overlayPage(SHARED_INFO_PAGE), domainState.sharedInfoAbi, xen.bootWallNs);
      const kvmSharedInfo = kvmRaisesEvents(fastPaths) ? new KvmSharedInfo(vm, memory, domainState, rewriteWallclock, kvmSharedInfoHva) : undefined;
      const kvmEvents = fastPaths.includes('evtchn') ? new KvmEventChannels(vm, HYPERCALL_MSR, xen.domid, domainState, evtchnPorts, memory) : undefined;
      return new Machine(config, resources, vm, memory, memoryMap, vcpus, xenVmm, { state: timers, init: timerInit }, toolstack, consoleInput, callbackLines, consoleStream, kvmSharedInfo, kvmEvents);
    } catch (e) {
      resources.dispose();
      throw e;
    }
  }

  /** Runs the guest until it powers off, resets or fails, or stop() is called; resolves after teardown. */
  run(): Promise<RunOutcome> {
    this.running ??= this.runWorkers();
    return this.running;
  }

  /** Bytes typed at the guest's console: its PV console ring, or CONSOLEIO_read. */
  consoleIn(bytes: Uint8Array): void {
    this.consoleInput.push(bytes);
  }

  /** Ends the run from outside (for example on SIGINT). */
  stop(reason: StopReason = 'stopped', message = 'stopped by the host'): void {
    this.outcome ??= { reason, message };
    for (const v of this.vcpus) v.control.order(Command.Stop);
  }

  /** Injects a fixed, edge-triggered MSI with `vector` at the LAPIC whose id is `apicId`; false if no LAPIC accepted it. */
  signalMsi(apicId: number, vector: number): boolean {
    return signalFixedMsi(this.vm, apicId, vector);
  }

  /** Holds every vCPU outside KVM_RUN, e.g. while memslots change; resolves when all are paused. */
  async pause(): Promise<void> {
    // A vCPU told to stop, or brought down by the guest, is already held: its command stays.
    for (const v of this.vcpus) if (v.control.command === Command.Run) v.control.order(Command.Pause);
    await Promise.all(this.vcpus.map((v) => v.control.waitFor(VcpuState.Paused)));
  }

  resume(): void {
    for (const v of this.vcpus) if (v.control.command === Command.Pause) v.control.order(Command.Run);
  }

  private async runWorkers(): Promise<RunOutcome> {
    const output = this.config.output ?? writeStdout;
    try {
      await this.toolstack.start();
    } catch (e) {
      this.resources.dispose();
      throw e;
    }
    // Only a machine that runs watches its callback lines: one never run closes them at once.
    this.callbackLines.watch(() => this.xen.callbackLineLowered());
    // The console ports' bytes, drained as the vCPU threads write them.
    let pumping = true;
    const pump = (async () => {
      while (pumping) {
        await this.consoleStream.written();
        const bytes = this.consoleStream.drain();
        if (bytes.length) output(bytes);
      }
    })();
    const exited = this.vcpus.map(({ init, channel, control }) => {
      const worker = new Worker(new URL('./vcpu-thread.js', import.meta.url), { workerData: init });
      const rekick = new RekickTimer(() => control.kick());
      worker.on('message', (m: VcpuMessage) => {
        if (m.type === 'hypercall') void this.forwardedCalls.serve(m.call, (value) => channel.reply(value));
        else if (m.type === 'rekick') rekick.request(m.afterMs);
        else if (m.type === 'kvm-events') void this.forwardedCalls.whileHeld('handing KVM the event channels', () => this.kvmEvents?.sync());
        else this.stop(m.reason, m.message);
      });
      worker.on('error', (e) => this.stop('vmm-error', `vCPU ${init.id} thread failed: ${e.message}`));
      return new Promise<void>((resolve) =>
        worker.once('exit', () => {
          rekick.cancel();
          resolve();
        }),
      );
    });
    const timerThread = new Worker(new URL('./timer-thread.js', import.meta.url), { workerData: this.timers.init });
    timerThread.on('error', (e) => this.stop('vmm-error', `timer thread failed: ${e.message}`));
    timerThread.on('message', (m: TimerMessage) => this.stop('crash', `the guest's watchdog ${m.id} expired (SCHEDOP_watchdog)`));
    const timerExited = new Promise<void>((resolve) => timerThread.once('exit', () => resolve()));
    await Promise.race([Promise.all(this.vcpus.map((v) => v.control.waitFor(VcpuState.Paused))), Promise.all(exited)]);
    if (!this.outcome) this.resume();
    await Promise.all(exited);
    pumping = false;
    this.consoleStream.interrupt();
    await pump;
    const rest = this.consoleStream.drain();
    if (rest.length) output(rest);
    this.timers.state.stop();
    await timerExited;
    await this.toolstack.stop();
    this.resources.dispose();
    const { reason, message } = this.outcome ?? { reason: 'vmm-error' as const, message: 'every vCPU thread ended without a reason' };
    this.logger.debug({ reason }, message);
    return { reason, status: exitStatus[reason], message };
  }

  /** Releases everything of a machine that was created but never run. */
  dispose(): void {
    if (!this.running) this.resources.dispose();
  }
}

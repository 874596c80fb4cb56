// The xenkvm command.
import { Command, InvalidArgumentError, Option } from 'commander';
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BootError } from '../boot/elf.js';
import { projectRoot } from '../common/project-root.js';
import { configureLogging, log, LOG_LEVELS, RateLimitedLog, type LogLevel } from '../common/log.js';
import { inForeground, SystemCallError } from '../kvm/libc.js';
import { KVM_DEVICE, KvmUnavailableError } from '../kvm/system.js';
import { exitStatus } from '../machine/exit-status.js';
import { ConfigError } from '../machine/config-error.js';
import { ALL_KVM_FAST_PATHS, parseKvmFastPaths, type KvmFastPath } from '../machine/kvm-fast-paths.js';
import { DEFAULT_MAX_GRANT_FRAMES } from '../machine/layout.js';
import { Machine, type EvtchnFifoChoice } from '../machine/machine.js';
import { DEFAULT_XEN_VERSION, parseXenVersion } from '../xen/config.js';
import { runNested, TERMINAL_CONSOLE_ENV } from './nested-run.js';
import { DEFAULT_PORT_COUNT } from '../xen/evtchn/ports.js';
import { SocketPathError } from '../common/unix-socket.js';
import { defaultSocketPath } from '../xenstore/socket.js';

const pkg = JSON.parse(readFileSync(join(projectRoot(import.meta.url), 'package.json'), 'utf8')) as { version: string };

function wholeNumber(what: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${what} must be a whole number, not "${value}"`);
    return Number(value);
  };
}

function kvmFastPaths(value: string): KvmFastPath[] {
  const paths = parseKvmFastPaths(value);
  if (!paths) throw new InvalidArgumentError(`KVM fast paths are all, none, or a comma-separated list of ${ALL_KVM_FAST_PATHS.join(', ')}; not "${value}"`);
  return paths;
}

function xenVersion(value: string): { major: number; minor: number } {
  const v = parseXenVersion(value);
  if (!v) throw new InvalidArgumentError(`Xen version must look like 4.17, not "${value}"`);
  return v;
}

async function run(opts: {
  kernel: string;
  initrd?: string;
  cmdline: string;
  memory: number;
  memoryTarget?: number;
  vcpus: number;
  xenVersion: { major: number; minor: number };
  maxEvtchnPort: number;
  evtchnFastPath: boolean;
  evtchnFifo: EvtchnFifoChoice;
  kvmFastPaths?: KvmFastPath[];
  name?: string;
  xenstoreSocket?: string;
  secondaryConsoles: number;
  maxGrantFrames: number;
  disk: string[];
  vif: string[];
  consoleLog?: string;
  logLevel: LogLevel;
}): Promise<number> {
  configureLogging(opts.logLevel);
  const output = consoleOutput(opts.consoleLog);
  const machine = Machine.create({
    kernel: opts.kernel,
    initrd: opts.initrd,
    cmdline: opts.cmdline,
    memoryMiB: opts.memory,
    targetMiB: opts.memoryTarget,
    vcpus: opts.vcpus,
    xenVersion: opts.xenVersion,
    maxEvtchnPort: opts.maxEvtchnPort,
    evtchnFastPath: opts.evtchnFastPath,
    evtchnFifo: opts.evtchnFifo,
    kvmFastPaths: opts.kvmFastPaths,
    name: opts.name,
    xenstoreSocket: opts.xenstoreSocket,
    secondaryConsoles: opts.secondaryConsoles,
    maxGrantFrames: opts.maxGrantFrames,
    disks: opts.disk,
    vifs: opts.vif,
    output: output.write,
    logLevel: opts.logLevel,
  });
  const onSignal = (signal: string) => machine.stop('stopped', `stopped by ${signal}`);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // An exception that escaped every handler is a bug: the VM stops with a clear reason rather than
  // running on half-served or taking node's stack trace with it.
  const onEscaped = (e: unknown) => machine.stop('vmm-error', `internal error: ${(e as Error)?.message ?? String(e)} (please report this; XENKVM_LOG=debug shows more)`);
  process.on('uncaughtException', onEscaped);
  process.on('unhandledRejection', onEscaped);
  const detach = attachConsole(machine);
  let outcome: Awaited<ReturnType<Machine['run']>>;
  try {
    outcome = await machine.run();
  } finally {
    // Also when the run fails to start: the terminal must not stay raw.
    detach();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('uncaughtException', onEscaped);
    process.off('unhandledRejection', onEscaped);
    output.close();
  }
  if (outcome.reason !== 'poweroff') process.stderr.write(`xenkvm: ${outcome.message} (exit status ${outcome.status})\n`);
  return outcome.status;
}

/**
 * Bytes of guest output stdout may hold unwritten: a reader that stops (a paused pager, a full pipe)
 * must not let a guest that keeps printing grow xenkvm's memory without bound.
 */
const STDOUT_BACKLOG_MAX = 4 * 1024 * 1024;

/** Guest console output to stdout and, with --console-log, appended to that file too. */
function consoleOutput(logFile: string | undefined): { write: (bytes: Uint8Array) => void; close: () => void } {
  let fd: number | undefined;
  if (logFile !== undefined) {
    try {
      fd = openSync(logFile, 'a');
    } catch (e) {
      throw new ConfigError(`cannot open console log ${logFile}: ${(e as Error).message}`);
    }
  }
  const dropped = new RateLimitedLog(log('console'));
  return {
    write: (bytes) => {
      if (process.stdout.writableLength < STDOUT_BACKLOG_MAX) process.stdout.write(bytes);
      else dropped.warn('stdout', { bytes: bytes.length }, 'guest console output dropped: nothing is reading stdout');
      if (fd !== undefined) writeSync(fd, bytes);
    },
    close: () => {
      if (fd !== undefined) closeSync(fd);
    },
  };
}

/** Ctrl-]: what `xl console` uses to let go of a guest's console; here it stops the guest. */
const CONSOLE_ESCAPE = 0x1d;

/**
 * The terminal becomes the guest's console when xenkvm runs in its foreground: keystrokes go to the
 * guest raw (Ctrl-C included), and Ctrl-] stops it. Input from a pipe or file is passed on as it
 * is. Returns the undoing.
 */
function attachConsole(machine: Machine): () => void {
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  // A background job (`xenkvm run … &`) leaves the terminal alone: reading it would stop the job.
  if (tty && !inForeground(0)) return () => {};
  if (tty) stdin.setRawMode(true);
  // In the nested VM, a terminal's raw keystrokes arrive through a pipe.
  const terminal = tty || process.env[TERMINAL_CONSOLE_ENV] === '1';
  if (terminal) process.stderr.write('xenkvm: the terminal is the guest console; Ctrl-] stops the guest\n');
  const onData = (chunk: Buffer) => {
    const escape = terminal ? chunk.indexOf(CONSOLE_ESCAPE) : -1;
    if (escape >= 0) {
      machine.consoleIn(chunk.subarray(0, escape));
      machine.stop('stopped', 'stopped from the console (Ctrl-])');
    } else machine.consoleIn(chunk);
  };
  stdin.on('data', onData);
  return () => {
    stdin.off('data', onData);
    if (tty) stdin.setRawMode(false);
    stdin.destroy();
  };
}

function fail(message: string): number {
  process.stderr.write(`xenkvm: ${message}\n`);
  return exitStatus['vmm-error'];
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('xenkvm')
    .description('Run unmodified Xen PVH and HVM guests on a Linux KVM host')
    .version(pkg.version, '-V, --version')
    .showHelpAfterError('(run xenkvm --help for usage)');
  let status = 0;
  program
    .command('run')
    .description('boot a PVH or HVM kernel and run it until it powers off, resets or fails')
    .requiredOption('-k, --kernel <file>', 'ELF kernel with a Xen PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), or a Linux bzImage (HVM direct boot)')
    .option('-c, --cmdline <string>', 'kernel command line', '')
    .option('--initrd <file>', "initial ramdisk: the kernel's first start_info module (PVH), or boot_params' ramdisk (bzImage)")
    .option('-m, --memory <MiB>', 'guest RAM in MiB', wholeNumber('memory'), 256)
    .option('--memory-target <MiB>', "the balloon target in XenStore's memory/target (xl: mem-set; default --memory): a guest's balloon driver gives the rest back", wholeNumber('memory target'))
    .option('-n, --vcpus <count>', 'number of vCPUs', wholeNumber('vCPU count'), 1)
    .option('--xen-version <major.minor>', 'Xen version the guest sees', xenVersion, DEFAULT_XEN_VERSION)
    .option('--max-evtchn-port <port>', 'highest event-channel port the guest may bind (xl: max_event_channels)', wholeNumber('highest event-channel port'), DEFAULT_PORT_COUNT - 1)
    .option('--name <name>', "the guest's name in XenStore (default: the kernel file's name)")
    .option('--xenstore-socket <path>', `Unix socket for Xen's xenstore tools (XENSTORED_PATH); default ${defaultSocketPath(process.env, 0).replace('xenkvm-0', 'xenkvm-<pid>')}`)
    .option('--console-log <file>', 'also append everything the guest writes to its consoles to this file')
    .option('--secondary-consoles <count>', 'secondary PV consoles to offer (xenbus console devices 1 …)', wholeNumber('secondary console count'), 0)
    .option('--disk <spec>', "a PV disk, in xl's disk specification (e.g. vdev=xvda,access=rw,target=disk.img); again for more", (spec: string, all: string[]) => [...all, spec], [] as string[])
    .option('--vif <spec>', "a PV network interface, in xl's vif specification (e.g. mac=00:16:3e:00:00:01,bridge=br0) with net=tap; again for more", (spec: string, all: string[]) => [...all, spec], [] as string[])
    .option('--max-grant-frames <count>', "the most frames the guest's grant table may grow to (xl: max_grant_frames)", wholeNumber('grant-table frame count'), DEFAULT_MAX_GRANT_FRAMES)
    .option('--no-evtchn-fast-path', 'send every event through the main thread instead of serving IPI and loopback sends on the vCPU thread')
    .addOption(
      new Option('--evtchn-fifo <when>', "offer the FIFO event-channel ABI: on, off (guests keep the 2-level ABI), or auto: off where KVM's Xen support raises events itself (it knows only the 2-level ABI), on elsewhere")
        .choices(['auto', 'on', 'off'])
        .default('auto'),
    )
    .option('--kvm-fast-paths <list>', `what KVM serves in the kernel where its Xen support can: all (the default), none, or some of ${ALL_KVM_FAST_PATHS.join(', ')}`, kvmFastPaths)
    .addOption(new Option('--log-level <level>', 'log detail on stderr').choices(LOG_LEVELS).default('warn').env('XENKVM_LOG'))
    .addOption(new Option('--accel <accel>', 'kvm: /dev/kvm here; nested: inside a throwaway VM that has it (QEMU, slow); auto: kvm where /dev/kvm exists, else nested').choices(['auto', 'kvm', 'nested']).default('auto'))
    .addHelpText(
      'after',
      '\nExit status: 0 guest powered off, 1 xenkvm failed, 2 guest reset or rebooted, 3 guest triple-faulted,\n4 a vCPU stopped on an error KVM reported, 5 stopped from the host (SIGINT/SIGTERM, Ctrl-] at the console),\n6 guest crashed, 7 guest suspended itself.',
    )
    .action(async (opts) => {
      if (opts.accel === 'nested' || (opts.accel === 'auto' && !existsSync(KVM_DEVICE))) {
        const why = opts.accel === 'nested' ? '--accel nested' : `${KVM_DEVICE} does not exist here`;
        status = await runNested(argv.slice(argv.indexOf('run') + 1), { consoleLog: opts.consoleLog, xenstoreSocket: opts.xenstoreSocket, why });
      } else status = await run(opts);
    });
  try {
    await program.parseAsync(argv);
    return status;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof BootError || e instanceof KvmUnavailableError || e instanceof SystemCallError || e instanceof SocketPathError) return fail(e.message);
    return fail(`internal error: ${(e as Error).message} (please report this; XENKVM_LOG=debug shows more)`);
  }
}

process.exitCode = await main(process.argv);

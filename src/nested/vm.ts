// A throwaway Linux VM with a working /dev/kvm, for hosts that have none: QEMU
// under TCG with `-cpu max` emulates AMD SVM with nested paging, so upstream KVM
// runs inside it. The host's root is the VM's root (virtio-9p, read-only, under a
// tmpfs overlay); the checkout and any other shares are mounted read-write at
// their host paths, so build products and output come back. There is no network.
// Commands and socket connections travel over one virtio-serial port (protocol.ts),
// many at once, each on its own stream; the VM's console is kept apart for
// diagnosis.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { constants, tmpdir, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { bootImage, NestedUnavailableError, type KernelVariant } from './image.js';
import { humanMonitor } from './qmp.js';
import { CONTROL_PORT_NAME, Frame, FrameReader, dataFrames, encodeFrame, jsonFrame, parseJson, type DecodedFrame, type ExitReport } from './protocol.js';

export { NestedUnavailableError };

export const QEMU = process.env.XENKVM_QEMU || 'qemu-system-x86_64';

/** util-linux's: QEMU gets SIGKILL when the process that started it dies, however it dies, instead of running on unowned. */
const PARENT_DEATH_WRAPPER = ['setpriv', '--pdeathsig', 'KILL', '--'];

/** Where `command` is found (as the shell would look it up), so that a missing QEMU is reported as such rather than by the wrapper. */
function executablePath(command: string): string {
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  let why = 'ENOENT';
  for (const path of candidates) {
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') why = (e as NodeJS.ErrnoException).code ?? why;
    }
  }
  throw new NestedUnavailableError(`cannot run ${command}: ${why === 'ENOENT' ? 'not found' : 'not executable'} (${why}) (Debian: apt-get install qemu-system-x86; npm run setup does it as root)`);
}

export interface NestedVmOptions {
  /** The checkout: shared read-write, and where the agent and the boot image come from. */
  root: string;
  /** More directories shared read-write at their own paths. */
  shares?: string[];
  memoryMiB?: number;
  /** Debian's kernel as it is (the default), or with KVM's Xen support built in (see image.ts). */
  kernel?: KernelVariant;
  /** How long the VM may take to boot and start its agent. */
  bootTimeoutMs?: number;
}

/** Memory for the VM: a third of the host's, between 2 and 8 GiB (its tmpfs root lives in it too). */
export function defaultMemoryMiB(): number {
  return Math.max(2048, Math.min(8192, Math.floor(totalmem() / 3 / 2 ** 20)));
}

/** Reports of VMs whose agent did not come up, in build/nested/ (test/run.ts shows new ones). */
export const BOOT_TIMEOUT_REPORT_PREFIX = 'boot-timeout-';

/** The VM's last console lines: what a person needs when it does not come up. */
const CONSOLE_KEPT = 64 * 1024;
/** How long diagnose() gives the kernel to print what SysRq asked of it (TCG is slow). */
const KERNEL_REPORT_WAIT_MS = 10_000;
/**
 * How often the VM's CPU is sent an interrupt, whatever it is doing. QEMU 7.2's emulated VMRUN
 * updates the vCPU's pending-interrupt word without its lock; an interrupt raised by another QEMU
 * thread at that moment (the VM kernel's timer, a virtio completion) is lost, and an idle VM then
 * sleeps until some other interrupt makes QEMU look at the APIC again (docs/testing.md, "Nudges").
 */
const NUDGE_INTERVAL_MS = 1000;

export class NestedVm {
  private readonly streams = new Map<number, StreamHandler>();
  private nextStream = 1;
  private exited = false;
  private readonly stopped: Promise<void>;

  private constructor(
    private readonly qemu: ChildProcess,
    private readonly control: Socket,
    private readonly dir: string,
    private readonly consoleTail: ConsoleTail,
    private readonly monitorPath: string,
  ) {
    this.stopped = new Promise((resolve) => qemu.once('exit', () => resolve()));
    control.on('error', () => {});
    const nudge = setInterval(() => this.send(encodeFrame(Frame.Nudge, 0)), NUDGE_INTERVAL_MS).unref();
    qemu.once('exit', (code, signal) => {
      clearInterval(nudge);
      this.exited = true;
      const why = new NestedVmStoppedError(`the nested VM stopped (${signal ? `QEMU killed by ${signal}` : `QEMU exit status ${code}`})${consoleTail.lastLine()}`);
      for (const handler of this.streams.values()) handler.onFailed(why);
      this.streams.clear();
      rmSync(dir, { recursive: true, force: true });
    });
  }

  /** Boots the VM; fails with NestedUnavailableError when it cannot, or when it has no usable /dev/kvm. */
  static async start(opts: NestedVmOptions): Promise<NestedVm> {
    const image = bootImage(opts.root, opts.kernel);
    const qemuPath = executablePath(QEMU);
    const shares = [opts.root, ...(opts.shares ?? [])].filter((p, i, all) => all.indexOf(p) === i && !all.some((q, j) => j !== i && p.startsWith(`${q}/`)));
    for (const p of shares) {
      if (/[\s:]/.test(p)) throw new NestedUnavailableError(`cannot share ${p} with the nested VM: its path holds a space or a colon`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'xenkvm-nested-'));
    const controlPath = join(dir, 'control.sock');
    const monitorPath = join(dir, 'qmp.sock');
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(controlPath, resolve));
    // sysrq_always_enabled: diagnose() asks the kernel for backtraces through the keyboard.
    const append = ['console=ttyS0', 'quiet', 'panic=-1', 'sysrq_always_enabled', `xenkvm.node=${process.execPath}`, `xenkvm.agent=${join(opts.root, 'dist', 'src', 'nested', 'agent.js')}`, `xenkvm.shares=${shares.join(':')}`];
    // thread=single: with QEMU's multi-threaded TCG (7.2 and 10.0 alike), a nested guest's vCPU
    // now and then resumes with the VM kernel's own registers (RIP in one of its modules, stack at a VM
    // physical address), seen as a triple fault or a vCPU that never runs again: about 1 in
    // 100,000 injected interrupts. One TCG thread for all vCPUs has not shown it (docs/testing.md).
    // -smp 1: that thread gains nothing from more vCPUs, and its switches between them re-deliver an
    // interrupt KVM injects into a nested guest now and then (docs/testing.md, "One vCPU").
    const args = [
      '-accel', 'tcg,thread=single', '-cpu', 'max', '-smp', '1', '-m', String(opts.memoryMiB ?? defaultMemoryMiB()),
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-nic', 'none',
      '-kernel', image.kernel, '-initrd', image.initrd, '-append', append.join(' '),
      '-serial', 'stdio', '-qmp', `unix:${monitorPath},server=on,wait=off`,
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      ...shares.flatMap((p, i) => ['-virtfs', `local,path=${p},mount_tag=share${i},security_model=none,multidevs=remap`]),
      '-device', 'virtio-serial-pci', '-chardev', `socket,id=control,path=${controlPath}`, '-device', `virtserialport,chardev=control,name=${CONTROL_PORT_NAME}`,
    ];
    const [wrapper, ...wrapperArgs] = PARENT_DEATH_WRAPPER;
    const qemu = spawn(wrapper, [...wrapperArgs, qemuPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const console = new ConsoleTail(qemu);
    try {
      const { control, reader, early, ready } = await waitForAgent(server, qemu, opts.bootTimeoutMs ?? 180_000, console);
      // The VM is there for its KVM: without it nothing it could run would mean anything.
      if (ready.kvm !== null) throw new NestedUnavailableError(`the nested VM has no usable /dev/kvm (${ready.kvm}): QEMU must emulate SVM (-cpu max)`);
      const vm = new NestedVm(qemu, control, dir, console, monitorPath);
      reader.onFrame = (f) => vm.dispatch(f);
      for (const f of early) vm.dispatch(f);
      return vm;
    } catch (e) {
      const failure = e instanceof BootTimeoutError ? await reportBootTimeout(e, opts.root, monitorPath, console) : e;
      qemu.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw failure;
    } finally {
      server.close();
    }
  }

  /** Frames from the agent, once it is ready. */
  private dispatch({ kind, stream, payload }: DecodedFrame): void {
    const handler = this.streams.get(stream);
    if (!handler) return;
    switch (kind) {
      case Frame.Stdout:
      case Frame.Data:
        return handler.onData(payload, 'stdout');
      case Frame.Stderr:
        return handler.onData(payload, 'stderr');
      case Frame.End:
        return handler.onEnd();
      case Frame.Exit:
      case Frame.Closed:
        this.streams.delete(stream);
        return handler.onExit(kind === Frame.Exit ? parseJson<ExitReport>(payload) : { code: 0, signal: null });
      case Frame.Failed:
        this.streams.delete(stream);
        return handler.onFailed(new Error(parseJson<{ message: string }>(payload).message));
    }
  }

  private send(frames: Buffer | Buffer[]): void {
    if (this.exited) return;
    for (const f of Array.isArray(frames) ? frames : [frames]) this.control.write(f);
  }

  /** Holds the VM's output back while `into` is full, so a slow reader slows the command instead of growing memory. */
  private deliver(into: Writable, bytes: Buffer): void {
    if (!into.write(bytes)) {
      this.control.pause();
      into.once('drain', () => this.control.resume());
    }
  }

  /**
   * Runs `argv` in the VM in `cwd` (a path the VM sees: under a share or the read-only root), its
   * output written to `stdout` and `stderr`. The result settles with the exit status, or rejects when
   * the command cannot start or the VM stops under it.
   */
  exec(argv: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; stdout: Writable; stderr: Writable; stdin?: boolean }): RemoteCommand {
    const stream = this.nextStream++;
    const env = Object.fromEntries(Object.entries(opts.env).filter((e): e is [string, string] => e[1] !== undefined && !HOST_ONLY_ENV.has(e[0])));
    let settle!: { resolve: (r: ExitReport) => void; reject: (e: Error) => void };
    const exit = new Promise<ExitReport>((resolve, reject) => (settle = { resolve, reject }));
    this.streams.set(stream, {
      onData: (bytes, which) => this.deliver(which === 'stdout' ? opts.stdout : opts.stderr, bytes),
      onEnd: () => {},
      onExit: (r) => settle.resolve(r),
      onFailed: (e) => settle.reject(e),
    });
    if (this.exited) settle.reject(new NestedVmStoppedError(`the nested VM has stopped${this.consoleTail.lastLine()}`));
    this.send(jsonFrame(Frame.Exec, stream, { argv, cwd: opts.cwd, env, stdin: opts.stdin ?? false }));
    return {
      exit,
      write: (bytes) => this.send(dataFrames(Frame.Data, stream, bytes)),
      end: () => this.send(encodeFrame(Frame.End, stream)),
      signal: (signal) => this.send(jsonFrame(Frame.Signal, stream, { signal })),
    };
  }

  /**
   * Joins `local` (a host socket) to the Unix socket at `path` inside the VM, retrying for `waitMs`
   * while nothing listens there yet. A failure ends `local` and is reported through `onError`.
   */
  forward(local: Socket, path: string, waitMs: number, onError: (e: Error) => void): void {
    const stream = this.nextStream++;
    this.streams.set(stream, {
      onData: (bytes) => this.deliver(local, bytes),
      onEnd: () => local.end(),
      onExit: () => local.destroy(),
      onFailed: (e) => {
        local.destroy();
        onError(e);
      },
    });
    this.send(jsonFrame(Frame.Connect, stream, { path, waitMs }));
    local.on('data', (d: Buffer) => this.send(dataFrames(Frame.Data, stream, d)));
    local.on('end', () => this.send(encodeFrame(Frame.End, stream)));
    local.on('close', () => {
      if (this.streams.delete(stream)) this.send(encodeFrame(Frame.Closed, stream));
    });
    local.on('error', () => {});
  }

  /** Powers the VM off (its commands are killed) and waits for QEMU to exit. */
  async shutdown(graceMs = 30_000): Promise<void> {
    if (this.exited) return this.stopped;
    this.send(encodeFrame(Frame.Shutdown, 0));
    const timer = setTimeout(() => this.qemu.kill('SIGKILL'), graceMs);
    await this.stopped;
    clearTimeout(timer);
  }

  /** Stops the VM at once. */
  kill(): void {
    this.qemu.kill('SIGKILL');
  }

  /**
   * What the VM is doing, for a report when it stops making progress: QEMU's view of each vCPU,
   * then the kernel's (SysRq backtraces of every CPU and of blocked tasks, asked through the
   * emulated keyboard, which the kernel serves even when no process gets to run).
   */
  async diagnose(): Promise<string> {
    if (this.exited) return 'the nested VM has stopped';
    return diagnoseVm(this.monitorPath, this.consoleTail);
  }

  /** The VM's console so far (its last CONSOLE_KEPT bytes), for a failure report. */
  console(): string {
    return this.consoleTail.text;
  }
}

export class NestedVmStoppedError extends Error {}

/** The agent did not come up in time: the VM is still there to be asked why. */
class BootTimeoutError extends NestedUnavailableError {}

/** Writes what the VM is doing to a file under build/nested/; the error it returns says where. */
async function reportBootTimeout(e: BootTimeoutError, root: string, monitorPath: string, consoleTail: ConsoleTail): Promise<NestedUnavailableError> {
  const file = join(root, 'build', 'nested', `${BOOT_TIMEOUT_REPORT_PREFIX}${new Date().toISOString().replace(/[:.]/g, '-')}.txt`);
  try {
    writeFileSync(file, `${e.message}\n${await diagnoseVm(monitorPath, consoleTail)}\n\nThe console:\n${consoleTail.text}\n`);
    return new NestedUnavailableError(`${e.message}; what it was doing is in ${file}`);
  } catch {
    return e;
  }
}

/** The exit status a shell gives a command: its own, or 128 + the signal that ended it. */
export function shellStatus(report: ExitReport): number {
  if (report.code !== null) return report.code;
  return 128 + (constants.signals[report.signal as NodeJS.Signals] ?? 0);
}

/** Variables that name the host's own per-session places, which the VM does not have. */
const HOST_ONLY_ENV = new Set(['XDG_RUNTIME_DIR', 'TMPDIR', 'DBUS_SESSION_BUS_ADDRESS']);

interface StreamHandler {
  onData(bytes: Buffer, which: 'stdout' | 'stderr'): void;
  onEnd(): void;
  onExit(report: ExitReport): void;
  onFailed(e: Error): void;
}

export interface RemoteCommand {
  exit: Promise<ExitReport>;
  write(bytes: Uint8Array): void;
  end(): void;
  signal(signal: NodeJS.Signals): void;
}

/**
 * Gives a command in the VM what a local child would get: `input`'s bytes and its end (when given),
 * and these signals sent to this process. Returns the undoing, which also lets go of `input`.
 */
export function attachCommand(cmd: RemoteCommand, input: Readable | undefined, signals: NodeJS.Signals[]): () => void {
  const onInput = (d: Buffer) => cmd.write(d);
  const onEnd = () => cmd.end();
  input?.on('data', onInput).on('end', onEnd).on('error', onEnd);
  const passSignal = (signal: NodeJS.Signals) => cmd.signal(signal);
  for (const s of signals) process.on(s, passSignal);
  return () => {
    input?.off('data', onInput).off('end', onEnd).off('error', onEnd);
    input?.destroy();
    for (const s of signals) process.off(s, passSignal);
  };
}

/** The VM's console (QEMU's stdout and stderr), its last CONSOLE_KEPT bytes. */
class ConsoleTail {
  text = '';
  /** Characters seen so far, kept or not. */
  received = 0;

  constructor(qemu: ChildProcess) {
    const keep = (d: Buffer) => {
      const s = d.toString('utf8');
      this.received += s.length;
      this.text = (this.text + s).slice(-CONSOLE_KEPT);
    };
    qemu.stdout!.on('data', keep);
    qemu.stderr!.on('data', keep);
  }

  /** What came after `mark` (a past value of `received`), as far as it is still kept. */
  since(mark: number): string {
    const n = Math.min(this.received - mark, this.text.length);
    return n > 0 ? this.text.slice(-n) : '';
  }

  /** "; its console last said: …", or nothing when it said nothing. */
  lastLine(): string {
    const lines = this.text.split('\n').map((l) => l.trim()).filter(Boolean);
    return lines.length ? `; its console last said: ${lines[lines.length - 1]}` : '';
  }
}

/** What the agent says when it is up: null, or what went wrong. */
interface AgentReady {
  kvm: string | null;
}

/** See NestedVm.diagnose(); also for a VM whose agent never came up. */
async function diagnoseVm(monitorPath: string, consoleTail: ConsoleTail): Promise<string> {
  const consoleMark = consoleTail.received;
  const sysrq = ['9', 'l', 'w'].map((key) => `sendkey alt-sysrq-${key}`);
  let cpus: string, registers: string, lapic: string;
  try {
    // The local APIC before the keys: a key's interrupt wakes a vCPU that sleeps on one lost.
    [cpus, registers, lapic] = await humanMonitor(monitorPath, ['info cpus', 'info registers -a', 'info lapic', ...sysrq], 10_000);
  } catch (e) {
    return (e as Error).message; // nor was SysRq asked for
  }
  // The FPU and vector registers say nothing about where a vCPU is stuck.
  const registersShown = registers.split(/\r?\n/).filter((l) => !/^(FCW|FPR|XMM|YMM|ZMM)/.test(l)).join('\n');
  const qemuView = `QEMU's vCPUs:\n${cpus.replace(/\r\n/g, '\n')}\n${registersShown}\n${lapic.replace(/\r\n/g, '\n').trim()}`;
  await new Promise((resolve) => setTimeout(resolve, KERNEL_REPORT_WAIT_MS));
  const kernelView = consoleTail.since(consoleMark);
  return `${qemuView.trimEnd()}\nThe kernel's console after SysRq l and w:\n${kernelView.trimEnd() || '(nothing)'}`;
}

/** Waits for QEMU to connect the control port and the agent to say it is up. */
function waitForAgent(server: Server, qemu: ChildProcess, timeoutMs: number, console: ConsoleTail): Promise<{ control: Socket; reader: FrameReader; early: DecodedFrame[]; ready: AgentReady }> {
  return new Promise((resolve, reject) => {
    let control: Socket | undefined;
    const done = () => {
      clearTimeout(timer);
      qemu.off('error', onError);
      qemu.off('exit', onExit);
    };
    const fail = (message: string, kind = NestedUnavailableError) => {
      done();
      control?.destroy();
      reject(new kind(message));
    };
    const timer = setTimeout(() => fail(`the nested VM did not start its agent in ${Math.round(timeoutMs / 1000)} s${console.lastLine()}`, BootTimeoutError), timeoutMs);
    const onError = (e: Error) => fail(`cannot run ${PARENT_DEATH_WRAPPER[0]} (util-linux) to start QEMU: ${e.message}`);
    const onExit = (code: number | null, signal: string | null) => fail(`the nested VM stopped before its agent started (${signal ?? `QEMU exit status ${code}`})${console.lastLine()}`);
    qemu.once('error', onError);
    qemu.once('exit', onExit);
    server.once('connection', (socket) => {
      control = socket;
      const reader = new FrameReader((f) => {
        done();
        if (f.kind !== Frame.Ready) return fail(`the nested VM's agent sent frame ${f.kind} before it was ready`);
        const early: DecodedFrame[] = [];
        reader.onFrame = (g) => early.push(g); // until the VM takes over
        resolve({ control: socket, reader, early, ready: parseJson<AgentReady>(f.payload) });
      });
      socket.on('data', (d: Buffer) => {
        try {
          reader.push(d);
        } catch (e) {
          fail(`the nested VM's agent sent garbage: ${(e as Error).message}`);
        }
      });
    });
  });
}

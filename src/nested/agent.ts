// The agent inside the nested VM: started by the VM's init once the host's files
// are mounted, it runs the commands the host-side runner sends over the control
// port and forwards connections to Unix sockets in the VM. It exits (and init
// powers the VM off) when the host asks, or when the host end goes away.
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, openSync, readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { Kvm } from '../kvm/system.js';
import { CONTROL_PORT_NAME, Frame, FrameReader, dataFrames, jsonFrame, encodeFrame, parseJson, type ConnectRequest, type DecodedFrame, type ExecRequest } from './protocol.js';

function controlPortDevice(): string {
  const dir = '/sys/class/virtio-ports';
  for (const port of readdirSync(dir)) {
    if (readFileSync(`${dir}/${port}/name`, 'utf8').trim() === CONTROL_PORT_NAME) return `/dev/${port}`;
  }
  throw new Error(`no virtio-serial port named ${CONTROL_PORT_NAME}`);
}

/**
 * Opens KVM and creates one idle VM with a vCPU, held for the VM's whole life; says what is
 * wrong when it cannot. KVM flips kernel static keys when the first VM or vCPU of its kind comes
 * or the last goes (the scheduler's preempt notifiers, the LAPIC software-disabled key), and the
 * kernel rewrites its code for each flip through a temporary int3. QEMU 7.2's TCG can go on
 * running a stale translation of such a site after the int3 is gone: the kernel then backs up
 * over what it takes for a removed breakpoint and runs into it again, for ever (seen: both vCPUs
 * looping on __schedule's preempt-notifier site with interrupts off, a whole test run stalled).
 * With this VM holding those keys on, the tests' VMs coming and going flip none of them. That was
 * seen with two vCPUs; the VM now has one, whose own code changes TCG does see, and the hold stays
 * because it costs one idle vCPU and spares every test VM the flips.
 */
function holdKvm(): string | null {
  try {
    const vm = Kvm.open().createVm();
    vm.createIrqchip(); // before the vCPU, which then gets a LAPIC (software-disabled until a guest enables it)
    vm.createVcpu(0);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

// One descriptor for both directions: a virtio port may be open only once.
const fd = openSync(controlPortDevice(), 'r+');
const input = createReadStream('', { fd, autoClose: false, highWaterMark: 64 * 1024 });
const output = createWriteStream('', { fd, autoClose: false });

/** Everything that produces output toward the host, paused while the port is backed up. */
const sources = new Set<Readable>();
function send(frames: Buffer | Buffer[]): void {
  let ok = true;
  for (const f of Array.isArray(frames) ? frames : [frames]) ok = output.write(f) && ok;
  if (!ok) for (const s of sources) s.pause();
}
output.on('drain', () => {
  for (const s of sources) s.resume();
});

function pipeOut(stream: number, kind: Frame, from: Readable): void {
  sources.add(from);
  from.on('data', (chunk: Buffer) => send(dataFrames(kind, stream, chunk)));
  from.on('close', () => sources.delete(from));
}

const commands = new Map<number, ChildProcess>();
/** Forwarded sockets; bytes the host sends before the connection is made wait in `early`. */
const sockets = new Map<number, { socket?: Socket; early: (Buffer | null)[] }>();

function exec(stream: number, req: ExecRequest): void {
  let child: ChildProcess;
  try {
    // Its own process group, so a signal reaches the command's children as a terminal's would.
    child = spawn(req.argv[0], req.argv.slice(1), { cwd: req.cwd, env: req.env, stdio: [req.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
  } catch (e) {
    send(jsonFrame(Frame.Failed, stream, { message: (e as Error).message }));
    return;
  }
  commands.set(stream, child);
  child.stdin?.on('error', () => {}); // a command that exits without reading its input
  pipeOut(stream, Frame.Stdout, child.stdout!);
  pipeOut(stream, Frame.Stderr, child.stderr!);
  let failed = false;
  child.on('error', (e) => {
    failed = true;
    commands.delete(stream);
    send(jsonFrame(Frame.Failed, stream, { message: `cannot run ${req.argv[0]}: ${e.message}` }));
  });
  child.on('close', (code, signal) => {
    commands.delete(stream);
    if (!failed) send(jsonFrame(Frame.Exit, stream, { code, signal }));
  });
}

function openSocket(stream: number, req: ConnectRequest): void {
  const deadline = Date.now() + req.waitMs;
  const entry: { socket?: Socket; early: (Buffer | null)[] } = { early: [] };
  sockets.set(stream, entry);
  const attempt = () => {
    if (!sockets.has(stream)) return; // the host closed it meanwhile
    const socket = connect(req.path);
    let connected = false;
    socket.on('connect', () => {
      connected = true;
      entry.socket = socket;
      for (const bytes of entry.early) {
        if (bytes) socket.write(bytes);
        else socket.end();
      }
      entry.early = [];
      pipeOut(stream, Frame.Data, socket);
      socket.on('end', () => send(encodeFrame(Frame.End, stream)));
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (connected) return;
      if ((e.code === 'ENOENT' || e.code === 'ECONNREFUSED') && Date.now() < deadline) setTimeout(attempt, 200);
      else {
        sockets.delete(stream);
        send(jsonFrame(Frame.Failed, stream, { message: `cannot connect to ${req.path} in the nested VM: ${e.message}` }));
      }
    });
    socket.on('close', () => {
      if (!connected) return;
      sockets.delete(stream);
      send(encodeFrame(Frame.Closed, stream));
    });
  };
  attempt();
}

function onFrame({ kind, stream, payload }: DecodedFrame): void {
  switch (kind) {
    case Frame.Exec:
      return exec(stream, parseJson<ExecRequest>(payload));
    case Frame.Connect:
      return openSocket(stream, parseJson<ConnectRequest>(payload));
    case Frame.Data:
    case Frame.End: {
      const bytes = kind === Frame.Data ? Buffer.from(payload) : null;
      const child = commands.get(stream);
      if (child) bytes ? child.stdin?.write(bytes) : child.stdin?.end();
      const entry = sockets.get(stream);
      if (entry?.socket) bytes ? entry.socket.write(bytes) : entry.socket.end();
      else entry?.early.push(bytes);
      return;
    }
    case Frame.Closed:
      sockets.get(stream)?.socket?.destroy();
      sockets.delete(stream);
      return;
    case Frame.Signal: {
      const child = commands.get(stream);
      const { signal } = parseJson<{ signal: NodeJS.Signals }>(payload);
      if (child?.pid !== undefined) {
        try {
          process.kill(-child.pid, signal);
        } catch {
          // Already gone: its Exit frame is on its way.
        }
      }
      return;
    }
    case Frame.Shutdown:
      return shutdown();
    case Frame.Nudge:
      return;
  }
}

function shutdown(): void {
  for (const child of commands.values()) if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  output.end(() => process.exit(0));
}

const reader = new FrameReader(onFrame);
input.on('data', (chunk) => reader.push(chunk as Buffer));
// The host end went away: nothing can reach the commands' output any more.
input.on('end', shutdown);
const kvm = holdKvm(); // first: see holdKvm
send(jsonFrame(Frame.Ready, 0, { kvm }));

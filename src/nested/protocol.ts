// The wire between the host-side runner and the agent inside the nested VM: one
// virtio-serial port carries many streams (commands and forwarded sockets), each
// frame tagged with its stream, so a command's stdout, stderr and exit status
// stay apart from each other and from every other command's.

/** Frame kinds. Host → VM: EXEC … NUDGE; VM → host: READY … FAILED. */
export const enum Frame {
  /** Start a command: JSON {argv, cwd, env, stdin}. */
  Exec = 1,
  /** Open a stream to a Unix socket in the VM: JSON {path, waitMs}. */
  Connect = 2,
  /** Bytes for a command's stdin, or for a forwarded socket, in either direction. */
  Data = 3,
  /** No more bytes in this direction (stdin closed, socket half-closed). */
  End = 4,
  /** Send a signal to a command: JSON {signal}. */
  Signal = 5,
  /** Power the VM off. */
  Shutdown = 6,
  /** Nothing to do: its interrupt is what counts (NestedVm's nudge). */
  Nudge = 7,
  /** The agent is up: JSON {kvm}, null or why /dev/kvm is unusable. */
  Ready = 16,
  /** A command's stdout. */
  Stdout = 17,
  /** A command's stderr. */
  Stderr = 18,
  /** A command ended: JSON {code, signal}. */
  Exit = 19,
  /** A command could not start, or a socket could not be reached: JSON {message}. */
  Failed = 20,
  /** A forwarded socket closed. */
  Closed = 21,
}

/** The name the control port has in the VM (/sys/class/virtio-ports/NAME). */
export const CONTROL_PORT_NAME = 'xenkvm.ctl';

const HEADER = 9;
/** Larger payloads are split: a frame must never hold up other streams for long. */
export const MAX_PAYLOAD = 64 * 1024;

export function encodeFrame(kind: Frame, stream: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  const frame = Buffer.allocUnsafe(HEADER + payload.length);
  frame.writeUInt8(kind, 0);
  frame.writeUInt32LE(stream, 1);
  frame.writeUInt32LE(payload.length, 5);
  frame.set(payload, HEADER);
  return frame;
}

export function jsonFrame(kind: Frame, stream: number, value: unknown): Buffer {
  return encodeFrame(kind, stream, Buffer.from(JSON.stringify(value)));
}

/** Frames of `bytes`, each at most MAX_PAYLOAD long. */
export function dataFrames(kind: Frame, stream: number, bytes: Uint8Array): Buffer[] {
  const frames: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += MAX_PAYLOAD) frames.push(encodeFrame(kind, stream, bytes.subarray(at, at + MAX_PAYLOAD)));
  return frames;
}

export interface DecodedFrame {
  kind: Frame;
  stream: number;
  payload: Buffer;
}

/** Reassembles frames from a byte stream cut anywhere. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(public onFrame: (frame: DecodedFrame) => void) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= HEADER) {
      const length = this.pending.readUInt32LE(5);
      if (length > MAX_PAYLOAD) throw new RangeError(`frame payload of ${length} bytes exceeds ${MAX_PAYLOAD}: the stream is corrupt`);
      if (this.pending.length < HEADER + length) break;
      const frame = { kind: this.pending.readUInt8(0) as Frame, stream: this.pending.readUInt32LE(1), payload: this.pending.subarray(HEADER, HEADER + length) };
      this.pending = this.pending.subarray(HEADER + length);
      this.onFrame(frame);
    }
  }
}

export function parseJson<T>(payload: Buffer): T {
  return JSON.parse(payload.toString('utf8')) as T;
}

export interface ExecRequest {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  stdin: boolean;
}

export interface ConnectRequest {
  path: string;
  /** How long to retry while nothing listens there yet. */
  waitMs: number;
}

export interface ExitReport {
  code: number | null;
  signal: string | null;
}

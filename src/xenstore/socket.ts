// The host side of the store: a Unix socket speaking xenstored's wire
// protocol, so that Xen's own tools (xenstore-read, -write, -ls, -watch, with
// XENSTORED_PATH naming the socket) work against the guest's store. Every
// client is domain 0, as on a Xen host where only root reaches the socket.
// A client that breaks the framing is disconnected; nothing it sends can
// take the store down.
import { existsSync, lstatSync, mkdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { StoreService } from './ring.js';
import { encodeMessage, MessageFramer, XsProtocolError } from './wire.js';

/** Where the socket goes without --xenstore-socket: one per xenkvm process. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, pid = process.pid): string {
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `xenkvm-${pid}`, 'xenstored.sock');
}

/** Whether something listens on the socket at `path`. */
export function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** A socket path a person must fix (exists and is not a socket, or cannot be created). */
export class SocketPathError extends Error {
  override name = 'SocketPathError';
}

export class XenStoreSocket<C> {
  private readonly clients = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly createdDir: string | undefined,
  ) {}

  static async listen<C>(path: string, store: StoreService<C>, logger: Logger): Promise<XenStoreSocket<C>> {
    let createdDir: string | undefined;
    const dir = dirname(path);
    if (!existsSync(dir)) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw new SocketPathError(`cannot create ${dir} for the XenStore socket: ${(e as Error).message}`);
      }
      createdDir = dir;
    }
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new SocketPathError(`${path} exists and is not a socket; choose another --xenstore-socket`);
      if (await answers(path)) throw new SocketPathError(`${path} is in use by another XenStore server; choose another --xenstore-socket`);
      unlinkSync(path); // a socket left by a run that did not clean up
    }
    const server = createServer();
    const s = new XenStoreSocket<C>(server, path, createdDir);
    server.on('connection', (socket) => s.serve(socket, store, logger));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new SocketPathError(`cannot listen on ${path}: ${e.message}`)));
      server.listen(path, () => resolve());
    });
    logger.info({ path }, 'XenStore socket listening (XENSTORED_PATH for the xenstore tools)');
    return s;
  }

  private serve(socket: Socket, store: StoreService<C>, logger: Logger): void {
    this.clients.add(socket);
    const conn = store.connect(0, (m) => {
      if (!socket.write(encodeMessage(m))) socket.pause();
    });
    socket.on('drain', () => socket.resume());
    const framer = new MessageFramer();
    socket.on('data', (bytes: Buffer) => {
      try {
        for (const m of framer.push(bytes)) store.handle(conn, m);
      } catch (e) {
        if (!(e instanceof XsProtocolError)) throw e;
        logger.warn({ why: e.message }, 'XenStore socket client broke the protocol; disconnected');
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.clients.delete(socket);
      store.disconnect(conn);
    });
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (existsSync(this.path)) unlinkSync(this.path);
    if (this.createdDir) {
      try {
        rmdirSync(this.createdDir);
      } catch {
        // Not empty: someone put something else there meanwhile, and it stays.
      }
    }
  }
}

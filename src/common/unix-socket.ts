// A Unix socket server at a path a person chose (the XenStore socket, and its
// forwarder when xenkvm runs in the nested VM): its directory is made when
// missing and removed again at close, a stale socket is replaced, and a path in
// use or not a socket is one clear error.
import { existsSync, lstatSync, mkdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';

/** A socket path a person must fix (exists and is not a socket, is in use, or cannot be created). */
export class SocketPathError extends Error {
  override name = 'SocketPathError';
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

export class UnixSocketServer {
  private readonly clients = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly createdDir: string | undefined,
  ) {}

  /** Listens at `path` for `what` (e.g. "XenStore"); `option` is the option that chose the path, for error lines. */
  static async listen(path: string, what: string, option: string, onConnection: (socket: Socket) => void): Promise<UnixSocketServer> {
    let createdDir: string | undefined;
    const dir = dirname(path);
    if (!existsSync(dir)) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw new SocketPathError(`cannot create ${dir} for the ${what} socket: ${(e as Error).message}`);
      }
      createdDir = dir;
    }
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new SocketPathError(`${path} exists and is not a socket; choose another ${option}`);
      if (await answers(path)) throw new SocketPathError(`${path} is in use by another ${what} server; choose another ${option}`);
      unlinkSync(path); // a socket left by a run that did not clean up
    }
    const server = createServer();
    const s = new UnixSocketServer(server, path, createdDir);
    server.on('connection', (socket) => {
      s.clients.add(socket);
      socket.on('close', () => s.clients.delete(socket));
      onConnection(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new SocketPathError(`cannot listen on ${path}: ${e.message}`)));
      server.listen(path, () => resolve());
    });
    return s;
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

// The host side of the store: a Unix socket speaking xenstored's wire
// protocol, so that Xen's own tools (xenstore-read, -write, -ls, -watch, with
// XENSTORED_PATH naming the socket) work against the guest's store. Every
// client is domain 0, as on a Xen host where only root reaches the socket.
// A client that breaks the framing is disconnected; nothing it sends can
// take the store down.
import { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { UnixSocketServer } from '../common/unix-socket.js';
import type { StoreService } from './ring.js';
import { encodeMessage, MessageFramer } from './wire.js';

/** Where the socket goes without --xenstore-socket: one per xenkvm process. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, pid = process.pid): string {
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `xenkvm-${pid}`, 'xenstored.sock');
}

export class XenStoreSocket<C> {
  private constructor(private readonly server: UnixSocketServer) {}

  static async listen<C>(path: string, store: StoreService<C>, logger: Logger): Promise<XenStoreSocket<C>> {
    const server = await UnixSocketServer.listen(path, 'XenStore', '--xenstore-socket', (socket) => XenStoreSocket.serve(socket, store, logger));
    logger.info({ path }, 'XenStore socket listening (XENSTORED_PATH for the xenstore tools)');
    return new XenStoreSocket<C>(server);
  }

  private static serve<C>(socket: Socket, store: StoreService<C>, logger: Logger): void {
    const conn = store.connect(0, (m) => {
      if (!socket.write(encodeMessage(m))) socket.pause();
    });
    socket.on('drain', () => socket.resume());
    const framer = new MessageFramer();
    socket.on('data', (bytes: Buffer) => {
      for (const m of framer.push(bytes)) store.handle(conn, m);
      if (framer.broken !== null) {
        logger.warn({ why: framer.broken }, 'XenStore socket client broke the protocol; disconnected');
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => store.disconnect(conn));
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

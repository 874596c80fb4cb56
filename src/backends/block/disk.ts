// A raw disk image, a regular file or a block device, as a block queue uses
// it: opened once on the main thread (so a missing or unreadable image is one
// clear error at start), then read and written by its descriptor from the
// backend's own thread through libuv's thread pool, scatter-gather into the
// guest's pages. Discard punches holes in a file and asks a block device to
// discard. A regular file's size is rounded down to whole 512-byte sectors.
import { closeSync, fdatasync, fstatSync, openSync, readv, writev, constants } from 'node:fs';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { check, libc, punchHole } from '../../kvm/libc.js';
import type { BlockDisk } from './queue.js';

const fdatasyncAsync = promisify(fdatasync);

// linux/fs.h
const BLKSSZGET = 0x1268;
const BLKGETSIZE64 = 0x80081272;
const BLKDISCARD = 0x1277;

/** An image that cannot be used: one line, what and why. */
export class DiskError extends Error {
  override name = 'DiskError';
}

/** What the worker thread needs to use an image the main thread opened. */
export interface RawDiskHandle {
  fd: number;
  path: string;
  sectors: number;
  sectorSize: number;
  readOnly: boolean;
  discard: boolean;
  blockDevice: boolean;
}

/** Opens an image for a disk; DiskError says why it cannot be used. */
export function openRawDisk(path: string, readOnly: boolean, discard: boolean): RawDiskHandle {
  let fd: number;
  try {
    // Node opens every descriptor close-on-exec.
    fd = openSync(path, readOnly ? constants.O_RDONLY : constants.O_RDWR);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new DiskError(`cannot open disk image ${path}: ${err.code ?? err.message}${err.code === 'EACCES' || err.code === 'EROFS' ? (readOnly ? '' : ' (give it access=ro to use it read-only)') : ''}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isFile()) return { fd, path, sectors: Math.floor(st.size / 512), sectorSize: 512, readOnly, discard, blockDevice: false };
    if (!st.isBlockDevice()) throw new DiskError(`disk image ${path} is neither a regular file nor a block device`);
    const size = new BigUint64Array(1);
    check('ioctl BLKGETSIZE64', libc().ioctlPtr(fd, BLKGETSIZE64, new Uint8Array(size.buffer)), path);
    const sectorSize = new Int32Array(1);
    check('ioctl BLKSSZGET', libc().ioctlPtr(fd, BLKSSZGET, new Uint8Array(sectorSize.buffer)), path);
    return { fd, path, sectors: Number(size[0] / 512n), sectorSize: sectorSize[0], readOnly, discard, blockDevice: true };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Threads that can move an image's bytes at once: the CPUs, at most libuv's pool (UV_THREADPOOL_SIZE, 4 unless set). */
export function ioThreads(): number {
  return Math.max(1, Math.min(availableParallelism(), Number(process.env.UV_THREADPOOL_SIZE) || 4));
}

export function closeRawDisk(h: RawDiskHandle): void {
  closeSync(h.fd);
}

/**
 * A whole scatter-gather transfer: readv and writev may move fewer bytes than asked, and are called again
 * for the rest. One promise for the lot, on the calls' callbacks: a request's I/O is the backend's
 * hottest path.
 */
function transferAll(call: typeof readv | typeof writev, fd: number, buffers: Uint8Array[], offset: number, what: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let rest = buffers;
    let position = offset;
    const done = (err: NodeJS.ErrnoException | null, n: number) => {
      if (err) return reject(err);
      if (n === 0) return reject(new Error(`${what()} at byte ${position}: the image ended`));
      position += n;
      let skip = n;
      while (rest.length > 0 && skip >= rest[0].length) {
        skip -= rest[0].length;
        rest = rest.slice(1);
      }
      if (skip > 0) rest = [rest[0].subarray(skip), ...rest.slice(1)];
      if (rest.length === 0) resolve();
      else call(fd, rest, position, done);
    };
    call(fd, rest, position, done);
  });
}

export class RawDisk implements BlockDisk {
  readonly sectors: number;
  readonly sectorSize: number;
  readonly readOnly: boolean;
  readonly discard: boolean;

  constructor(private readonly h: RawDiskHandle) {
    this.sectors = h.sectors;
    this.sectorSize = h.sectorSize;
    this.readOnly = h.readOnly;
    this.discard = h.discard;
  }

  readv(buffers: Uint8Array[], offset: number): Promise<void> {
    return transferAll(readv, this.h.fd, buffers, offset, () => `reading ${this.h.path}`);
  }

  writev(buffers: Uint8Array[], offset: number): Promise<void> {
    return transferAll(writev, this.h.fd, buffers, offset, () => `writing ${this.h.path}`);
  }

  flush(): Promise<void> {
    return fdatasyncAsync(this.h.fd);
  }

  async discardRange(offset: number, length: number): Promise<void> {
    if (!this.h.blockDevice) return punchHole(this.h.fd, offset, length, this.h.path);
    const range = new BigUint64Array([BigInt(offset), BigInt(length)]);
    check('ioctl BLKDISCARD', libc().ioctlPtr(this.h.fd, BLKDISCARD, new Uint8Array(range.buffer)), this.h.path);
  }
}

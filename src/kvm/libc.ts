// The libc calls the KVM layer and guest memory need (and the CLI's terminal check), through koffi. Loaded
// once per thread (koffi binds per isolate). Every failure becomes a
// SystemCallError carrying the call and errno; nothing here is guest-visible.
import koffi from 'koffi';
import os from 'node:os';

export class SystemCallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${call}${detail ? ` (${detail})` : ''} failed: ${libc().strerror(errno)} (${errnoName(errno)})`);
    this.name = 'SystemCallError';
  }
}

const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([k, v]) => [v, k]));
function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

export const EINTR = os.constants.errno.EINTR;
export const EAGAIN = os.constants.errno.EAGAIN;
export const ENOENT = os.constants.errno.ENOENT;
export const EACCES = os.constants.errno.EACCES;
export const EPERM = os.constants.errno.EPERM;

export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_NORESERVE = 0x4000;
export const MFD_CLOEXEC = 1;
export const EFD_CLOEXEC = O_CLOEXEC;
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
export const SIG_BLOCK = 0;
const SYS_gettid = 186;
/** glibc's sigset_t; the kernel's is its first 8 bytes. */
export const SIGSET_BYTES = 128;

/** koffi represents native pointers as bigint addresses. */
export type Pointer = bigint;

interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctlPtr(fd: number, req: number, arg: Uint8Array | null): number;
  ioctlInt(fd: number, req: number, arg: number | bigint): number;
  mmap(addr: null, len: number | bigint, prot: number, flags: number, fd: number, off: number | bigint): Pointer;
  munmap(ptr: Pointer, len: number | bigint): number;
  memfd_create(name: string, flags: number): number;
  eventfd(initval: number, flags: number): number;
  ftruncate(fd: number, len: number | bigint): number;
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  pread(fd: number, buf: Uint8Array, count: number, offset: number): number;
  syscall0(nr: number): number | bigint;
  getpid(): number;
  tgkill(tgid: number, tid: number, sig: number): number;
  pthread_sigmask(how: number, set: Uint8Array | null, old: Uint8Array | null): number;
  sigtimedwait(set: Uint8Array, info: Uint8Array | null, timeout: Uint8Array): number;
  strerror(errno: number): string;
  tcgetpgrp(fd: number): number;
  getpgrp(): number;
  socket(domain: number, type: number, protocol: number): number;
  poll(fds: Uint8Array, count: number, timeoutMs: number): number;
  read(fd: number, buf: Uint8Array, count: number): number;
  write(fd: number, buf: Uint8Array, count: number): number;
}

let bound: Libc | undefined;

export function libc(): Libc {
  if (bound) return bound;
  const lib = koffi.load('libc.so.6');
  bound = {
    open: lib.func('int open(const char *path, int flags)'),
    close: lib.func('int close(int fd)'),
    ioctlPtr: lib.func('ioctl', 'int', ['int', 'unsigned long', 'void *']),
    ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']),
    mmap: lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
    munmap: lib.func('int munmap(void *addr, size_t len)'),
    memfd_create: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    ftruncate: lib.func('int ftruncate(int fd, int64_t len)'),
    fallocate: lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
    pread: lib.func('pread', 'intptr_t', ['int', 'void *', 'size_t', 'int64_t']),
    syscall0: lib.func('syscall', 'long', ['long']),
    getpid: lib.func('int getpid()'),
    tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
    pthread_sigmask: lib.func('int pthread_sigmask(int how, const void *set, void *old)'),
    sigtimedwait: lib.func('int sigtimedwait(const void *set, void *info, const void *timeout)'),
    strerror: lib.func('const char *strerror(int errnum)'),
    tcgetpgrp: lib.func('int tcgetpgrp(int fd)'),
    getpgrp: lib.func('int getpgrp()'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    poll: lib.func('poll', 'int', ['void *', 'unsigned long', 'int']),
    read: lib.func('read', 'intptr_t', ['int', 'void *', 'size_t']),
    write: lib.func('write', 'intptr_t', ['int', 'const void *', 'size_t']),
  };
  return bound;
}

export function errno(): number {
  return koffi.errno();
}

/** Runs a libc call that returns -1 on failure, turning failure into SystemCallError. */
export function check(call: string, result: number, detail?: string): number {
  if (result === -1) throw new SystemCallError(call, errno(), detail);
  return result;
}

export function gettid(): number {
  return Number(libc().syscall0(SYS_gettid));
}

export function mmapShared(fd: number, length: number, what: string): Pointer {
  const ptr = libc().mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  // MAP_FAILED is (void *)-1
  if (ptr === null || ptr === 0xffffffffffffffffn) throw new SystemCallError('mmap', errno(), what);
  return ptr;
}

export function munmap(ptr: Pointer, length: number): void {
  check('munmap', libc().munmap(ptr, length));
}

/** Gives [offset, offset+length) of a memfd back to the host: it reads as zeros until written again. */
export function punchHole(fd: number, offset: number, length: number, what: string): void {
  check('fallocate', libc().fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length), what);
}

export function viewOf(ptr: Pointer, length: number): ArrayBuffer {
  return koffi.view(ptr, length);
}

/** The address of a typed array's backing store, valid until the next GC can move it (use within one call). */
export function addressOf(bytes: Uint8Array): bigint {
  return koffi.address(bytes);
}

export function sigset(...signals: number[]): Uint8Array {
  const set = new Uint8Array(SIGSET_BYTES);
  for (const s of signals) set[(s - 1) >> 3] |= 1 << ((s - 1) & 7);
  return set;
}

/** Whether this process is in the foreground of the terminal on `fd` (a background job that reads it is stopped). */
export function inForeground(fd: number): boolean {
  return libc().tcgetpgrp(fd) === libc().getpgrp();
}

const EVENTFD_ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

/** Adds 1 to an eventfd's counter: wakes whoever polls or reads it. */
export function signalEventFd(fd: number): void {
  check('write (eventfd)', Number(libc().write(fd, EVENTFD_ONE, 8)));
}

/** poll()'s events and revents bits. */
export const POLL = { IN: 0x1, PRI: 0x2, OUT: 0x4, ERR: 0x8, HUP: 0x10 } as const;
const POLLFD_BYTES = 8;

/** An array of struct pollfd (int fd; short events; short revents) for poll(), grown as entries are added. */
export class PollFds {
  private bytes: Uint8Array;
  private view: DataView;
  private used = 0;

  constructor(capacity = 8) {
    this.bytes = new Uint8Array(Math.max(1, capacity) * POLLFD_BYTES);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Forgets every entry. */
  clear(): void {
    this.used = 0;
  }

  /** Adds `fd` waiting for `events`; its index. */
  add(fd: number, events: number): number {
    if ((this.used + 1) * POLLFD_BYTES > this.bytes.length) {
      const grown = new Uint8Array(this.bytes.length * 2);
      grown.set(this.bytes);
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.used * POLLFD_BYTES;
    this.view.setInt32(at, fd, true);
    this.view.setInt16(at + 4, events, true);
    this.view.setInt16(at + 6, 0, true);
    return this.used++;
  }

  /** What poll() said of entry `index`. */
  revents(index: number): number {
    return this.view.getInt16(index * POLLFD_BYTES + 6, true);
  }

  /** poll() over the entries: its result (-1 with errno set on failure). */
  poll(timeoutMs: number): number {
    return libc().poll(this.bytes, this.used, timeoutMs);
  }
}

// A TAP device on the host for a network interface of the guest, created at
// start on the main thread (so a missing permission is one clear line then):
// one descriptor per queue (IFF_MULTI_QUEUE), each frame preceded by a
// virtio-net header (IFF_VNET_HDR) that carries the checksum and segmentation
// offloads both ways; brought up with the interface's MTU, and added to a
// bridge where the spec names one. The device's threads read and write the
// descriptors; the offloads the kernel may hand them are set once the
// frontend has said what it takes, and the queues it does not use detached.
import { closeSync, constants, openSync } from 'node:fs';
import { constants as os } from 'node:os';
import { check, errno, libc, SystemCallError } from '../../kvm/libc.js';
import type { Packet } from './packet.js';
import type { VifSpec } from './vif-spec.js';

// linux/if_tun.h, linux/if.h, linux/sockios.h
const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETQUEUE = 0x400454d9;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_ATTACH_QUEUE = 0x0200;
const IFF_DETACH_QUEUE = 0x0400;
const IFF_UP = 0x1;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCSIFMTU = 0x8922;
const SIOCGIFINDEX = 0x8933;
const SIOCBRADDIF = 0x89a2;
const AF_INET = 2;
/** asm-generic/errno.h (node's os.constants leaves it out). */
const ENOPKG = 65;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;
/** The offloads the kernel may hand the reader (linux/if_tun.h TUN_F_*). */
export const TUN_F = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04 } as const;
/** The kernel picks the first free number. */
const NAME_TEMPLATE = 'xenkvm%d';

/** A TAP device that cannot be had: one line, what and what to do; `notPermitted` where the process lacks CAP_NET_ADMIN. */
export class TapError extends Error {
  override name = 'TapError';
  constructor(
    message: string,
    readonly notPermitted = false,
  ) {
    super(message);
  }
}

/** What the device's threads need: the interface's name and a descriptor per queue. */
export interface TapHandle {
  name: string;
  fds: number[];
}

function ifreq(name: string): Uint8Array {
  const req = new Uint8Array(IFREQ_SIZE);
  req.set(Buffer.from(name, 'latin1').subarray(0, IFNAMSIZ - 1));
  return req;
}

const nameOf = (req: Uint8Array) => Buffer.from(req.subarray(0, IFNAMSIZ)).toString('latin1').replace(/\0.*$/s, '');

/** Runs `fn` with an AF_INET datagram socket, which the interface ioctls go through. */
function withSocket<T>(fn: (fd: number) => T): T {
  const fd = check('socket', libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  try {
    return fn(fd);
  } finally {
    libc().close(fd);
  }
}

/** An ioctl on the socket about interface `name` with `fill` written into the ifreq's union; the ifreq after. */
function interfaceIoctl(fd: number, request: number, name: string, what: string, fill?: (v: DataView) => void): Uint8Array {
  const req = ifreq(name);
  fill?.(new DataView(req.buffer, IFNAMSIZ));
  check(what, libc().ioctlPtr(fd, request, req), name);
  return req;
}

/** Creates the TAP device for `spec` with `queues` queues, up, with its MTU, on its bridge; TapError says why it cannot. */
export function createTap(spec: VifSpec, queues: number): TapHandle {
  const fds: number[] = [];
  let name = spec.vifname ?? NAME_TEMPLATE;
  try {
    for (let q = 0; q < queues; q++) {
      try {
        fds.push(openSync('/dev/net/tun', constants.O_RDWR | constants.O_NONBLOCK));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') throw new TapError('no /dev/net/tun on this host: load the tun module (modprobe tun), or give the vif net=user');
        throw new TapError(`cannot open /dev/net/tun: ${code} (a TAP device needs CAP_NET_ADMIN: run as root, or give the vif net=user)`, code === 'EACCES' || code === 'EPERM');
      }
      const req = ifreq(name);
      new DataView(req.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE, true);
      if (libc().ioctlPtr(fds[q], TUNSETIFF, req) === -1) {
        const err = errno();
        if (err === os.errno.EPERM) throw new TapError('creating a TAP device needs CAP_NET_ADMIN: run as root, or give the vif net=user', true);
        if (err === os.errno.EBUSY) throw new TapError(`TAP device ${name} is in use: give the vif another vifname`);
        throw new SystemCallError('ioctl TUNSETIFF', err, name);
      }
      name = nameOf(req);
    }
    withSocket((sock) => {
      interfaceIoctl(sock, SIOCSIFMTU, name, 'ioctl SIOCSIFMTU', (v) => v.setInt32(0, spec.mtu, true));
      if (spec.bridge !== undefined) {
        const index = new DataView(interfaceIoctl(sock, SIOCGIFINDEX, name, 'ioctl SIOCGIFINDEX').buffer, IFNAMSIZ).getInt32(0, true);
        const bridge = ifreq(spec.bridge);
        new DataView(bridge.buffer, IFNAMSIZ).setInt32(0, index, true);
        if (libc().ioctlPtr(sock, SIOCBRADDIF, bridge) === -1) {
          const err = errno();
          if (err === os.errno.ENODEV || err === os.errno.EOPNOTSUPP) throw new TapError(`bridge ${spec.bridge} does not exist: create it (ip link add ${spec.bridge} type bridge) or leave bridge= out`);
          // Without the bridge module the kernel has no bridge ioctls at all.
          if (err === ENOPKG) throw new TapError(`this host's kernel has no bridges loaded, so there is no bridge ${spec.bridge}: load them (modprobe bridge) and create it, or leave bridge= out`);
          throw new TapError(`cannot add ${name} to bridge ${spec.bridge}: ${libc().strerror(err)}`);
        }
      }
      const flags = new DataView(interfaceIoctl(sock, SIOCGIFFLAGS, name, 'ioctl SIOCGIFFLAGS').buffer, IFNAMSIZ).getInt16(0, true);
      interfaceIoctl(sock, SIOCSIFFLAGS, name, 'ioctl SIOCSIFFLAGS', (v) => v.setInt16(0, flags | IFF_UP, true));
    });
    return { name, fds };
  } catch (e) {
    for (const fd of fds) closeSync(fd);
    throw e;
  }
}

export function closeTap(tap: TapHandle): void {
  for (const fd of tap.fds) closeSync(fd);
}

/** The offloads (TUN_F_*) the kernel may hand the device's readers: what the frontend takes. */
export function setTapOffloads(tap: TapHandle, offloads: number): void {
  check('ioctl TUNSETOFFLOAD', libc().ioctlInt(tap.fds[0], TUNSETOFFLOAD, offloads), tap.name);
}

/** Attaches the first `count` queues and detaches the rest: the kernel steers packets only to the queues read. */
export function useTapQueues(tap: TapHandle, count: number): void {
  tap.fds.forEach((fd, q) => {
    const req = new Uint8Array(IFREQ_SIZE);
    new DataView(req.buffer).setUint16(IFNAMSIZ, q < count ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE, true);
    const r = libc().ioctlPtr(fd, TUNSETQUEUE, req);
    // Attaching an attached queue, or detaching a detached one, is EINVAL: already as asked.
    if (r === -1 && errno() !== os.errno.EINVAL) check('ioctl TUNSETQUEUE', r, tap.name);
  });
}

// linux/virtio_net.h: the header before each frame on a TAP device with IFF_VNET_HDR.
export const VNET_HDR_BYTES = 10;
const VNET_F_NEEDS_CSUM = 1;
const VNET_F_DATA_VALID = 2;
const VNET_GSO = { none: 0, tcpv4: 1, tcpv6: 4 } as const;

/** A frame the TAP device handed over (header first) as a packet for the guest; its bytes copied. */
export function packetFromTap(record: Uint8Array): Packet {
  const v = new DataView(record.buffer, record.byteOffset, VNET_HDR_BYTES);
  const flags = record[0];
  const gsoType = record[1] & 0x7f; // without VIRTIO_NET_HDR_GSO_ECN
  const packet: Packet = { frame: record.slice(VNET_HDR_BYTES) };
  if (flags & VNET_F_NEEDS_CSUM) packet.partialChecksum = { start: v.getUint16(6, true), offset: v.getUint16(8, true) };
  if (flags & VNET_F_DATA_VALID) packet.validated = true;
  if (gsoType === VNET_GSO.tcpv4 || gsoType === VNET_GSO.tcpv6) packet.gso = { type: gsoType === VNET_GSO.tcpv4 ? 'tcpv4' : 'tcpv6', size: v.getUint16(4, true) };
  return packet;
}

/** The header a packet from the guest goes to the TAP device with. */
export function tapHeader(p: Packet): Uint8Array {
  const header = new Uint8Array(VNET_HDR_BYTES);
  const v = new DataView(header.buffer);
  if (p.partialChecksum) {
    header[0] = VNET_F_NEEDS_CSUM;
    v.setUint16(6, p.partialChecksum.start, true);
    v.setUint16(8, p.partialChecksum.offset, true);
  } else if (p.validated) header[0] = VNET_F_DATA_VALID;
  if (p.gso) {
    header[1] = VNET_GSO[p.gso.type];
    v.setUint16(4, p.gso.size, true);
  }
  return header;
}

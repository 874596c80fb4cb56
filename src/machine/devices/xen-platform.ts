// The Xen platform PCI device (vendor 0x5853, device 0x0001) an HVM guest's PV
// drivers look for, as Xen's device model presents it: class 0xff80, an I/O BAR
// of 256 bytes and a prefetchable memory BAR of 16 MiB (where a guest maps its
// grant frames), INTA; and at fixed ports 0x10–0x13 the emulated-device unplug
// protocol (docs/misc/hvm-emulated-unplug.pandoc in Xen): the magic 0x49d2,
// protocol version 1, the product and build numbers the drivers report (no
// driver is ever blacklisted), the unplug mask (xenkvm emulates no disk or NIC
// to unplug), and the drivers' log messages, a byte at a time, logged per line.
import type { RateLimitedLog } from '../../common/log.js';
import { quoteGuestText } from '../../common/log.js';
import { allOnes, type PortDevice } from './io-bus.js';
import type { PciBar, PciFunction } from './pci.js';

export const XEN_PLATFORM_VENDOR = 0x5853;
export const XEN_PLATFORM_DEVICE = 0x0001;
const XEN_PLATFORM_CLASS = 0xff8000;
const XEN_PLATFORM_REVISION = 1;
export const XEN_PLATFORM_IO_SIZE = 0x100;
export const XEN_PLATFORM_MMIO_SIZE = 16 << 20;

/** The unplug protocol's ports, from 0x10. */
export const XEN_UNPLUG_PORT = 0x10;
export const XEN_UNPLUG_PORTS = 4;
export const XEN_UNPLUG_MAGIC = 0x49d2;
const XEN_UNPLUG_PROTOCOL_VERSION = 1;
/** A driver's log line is cut at this many bytes. */
const LOG_LINE_MAX = 256;

export function xenPlatformFunction(slot: number, io: number, mmio: number, gsi: number): PciFunction {
  const bars: PciBar[] = [
    { kind: 'io', size: XEN_PLATFORM_IO_SIZE, address: io },
    { kind: 'mem32', size: XEN_PLATFORM_MMIO_SIZE, address: mmio, prefetchable: true },
  ];
  return {
    slot, vendor: XEN_PLATFORM_VENDOR, device: XEN_PLATFORM_DEVICE, revision: XEN_PLATFORM_REVISION, classCode: XEN_PLATFORM_CLASS,
    subsystemVendor: XEN_PLATFORM_VENDOR, subsystemId: XEN_PLATFORM_DEVICE, bars, interruptPin: 1, interruptLine: gsi,
  };
}

/** Ports 0x10–0x13, one per vCPU thread: the protocol keeps no state but a half-written log line. */
export class XenUnplugPorts implements PortDevice {
  private line: number[] = [];

  constructor(private readonly guestLog: RateLimitedLog) {}

  read(offset: number, size: number): number {
    if (offset === 0 && size === 2) return XEN_UNPLUG_MAGIC;
    if (offset === 0 && size === 1) return 0; // platform flags
    if (offset === 2 && size === 1) return XEN_UNPLUG_PROTOCOL_VERSION;
    return allOnes(size);
  }

  write(offset: number, size: number, value: number): void {
    if (offset === 0 && size === 2) {
      this.guestLog.info('xen-unplug', { mask: `0x${value.toString(16)}` }, 'guest unplugged emulated devices through the Xen platform device (xenkvm has none)');
    } else if (offset === 0 && size === 4) {
      this.guestLog.info('xen-unplug-build', { build: value }, 'guest PV drivers reported their build number');
    } else if (offset === 2 && size === 2) {
      this.guestLog.info('xen-unplug-product', { product: value }, 'guest PV drivers reported their product number');
    } else if (offset === 2 && size === 1) {
      this.logByte(value & 0xff);
    }
  }

  private logByte(byte: number): void {
    if (byte !== 0x0a && this.line.length < LOG_LINE_MAX) {
      this.line.push(byte);
      return;
    }
    if (byte !== 0x0a) return; // past the limit: the rest of the line is dropped
    const text = String.fromCharCode(...this.line);
    this.line = [];
    this.guestLog.info('xen-driver-log', {}, `guest PV driver: ${quoteGuestText(text)}`);
  }
}

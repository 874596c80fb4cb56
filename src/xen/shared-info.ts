// The shared_info page (overlay page 0, at a fixed host address wherever the
// guest maps it) and the vcpu_time_info records Xen keeps in vcpu_info and
// secondary time areas. Records are written with Xen's version protocol: the
// version is odd while the record changes, so a guest retries its read.
import { sharedInfoLayout, vcpuInfo, vcpuTimeInfo, XEN_PVCLOCK_TSC_STABLE_BIT } from './abi/shared-info.js';
import type { Abi } from './abi/layout.js';
import type { PvclockParams } from './time.js';

/** The overlay page that holds shared_info. */
export const SHARED_INFO_PAGE = 0;

/** Offset of the vcpu_time_info inside a vcpu_info: the same in both ABIs. */
export const VCPU_INFO_TIME_OFFSET = vcpuInfo.native.offsets.time;
if (VCPU_INFO_TIME_OFFSET !== vcpuInfo.compat.offsets.time) throw new Error('vcpu_info.time differs between ABIs');

/** Somewhere a record is written: a host page, or a guest area that may span two pages. */
export interface ByteArea {
  read(offset: number, length: number): Uint8Array | undefined;
  write(offset: number, bytes: Uint8Array): boolean | void;
}

export function bytesArea(bytes: Uint8Array): ByteArea {
  return {
    read: (offset, length) => bytes.slice(offset, offset + length),
    write: (offset, data) => bytes.set(data, offset),
  };
}

const u32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
};

/**
 * Writes `body` at `bodyOffset` under the version word at `versionOffset`:
 * the version goes odd first and even (two higher) after, so a reader that
 * sees the same even version before and after its read saw a whole record.
 * x86 keeps these stores in order for the guest.
 */
function versioned(area: ByteArea, versionOffset: number, bodyOffset: number, body: Uint8Array): void {
  const old = area.read(versionOffset, 4);
  if (!old) return;
  const version = (new DataView(old.buffer).getUint32(0, true) + 1) | 1;
  area.write(versionOffset, u32(version));
  area.write(bodyOffset, body);
  area.write(versionOffset, u32(version + 1));
}

/** Writes a vcpu_time_info at `offset` of `area`; XEN_PVCLOCK_TSC_STABLE_BIT only when KVM keeps the vCPUs' TSCs in step. */
export function writeVcpuTime(area: ByteArea, offset: number, p: PvclockParams, tscStable: boolean): void {
  const def = vcpuTimeInfo.native;
  const record = def.encode({
    tsc_timestamp: BigInt.asUintN(64, p.tscTimestamp),
    system_time: BigInt.asUintN(64, p.systemTime),
    tsc_to_system_mul: p.mul >>> 0,
    tsc_shift: p.shift,
    flags: tscStable ? XEN_PVCLOCK_TSC_STABLE_BIT : 0,
  });
  const body = record.subarray(def.offsets.tsc_timestamp);
  versioned(area, offset + def.offsets.version, offset + def.offsets.tsc_timestamp, body);
}

/** Writes the wallclock (host real time at system time 0) in the given shared_info layout. */
export function writeWallclock(page: Uint8Array, abi: Abi, bootWallNs: bigint): void {
  const l = sharedInfoLayout[abi];
  const sec = bootWallNs / 1_000_000_000n;
  const area = bytesArea(page);
  // wc_sec and wc_nsec follow wc_version; wc_sec_hi is elsewhere, written inside the same version window.
  const body = new Uint8Array(8);
  new DataView(body.buffer).setUint32(0, Number(sec & 0xffffffffn), true);
  new DataView(body.buffer).setUint32(4, Number(bootWallNs % 1_000_000_000n), true);
  const version = (new DataView(page.buffer, page.byteOffset).getUint32(l.wcVersion, true) + 1) | 1;
  area.write(l.wcVersion, u32(version));
  area.write(l.wcSec, body);
  area.write(l.wcSecHi, u32(Number(sec >> 32n)));
  area.write(l.wcVersion, u32(version + 1));
}

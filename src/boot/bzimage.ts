// HVM direct boot of a Linux bzImage through the x86 boot protocol
// (Documentation/arch/x86/boot.rst): the protected-mode kernel at 1 MiB, the
// zero page (boot_params) with the kernel's own setup header, the memory map,
// the command line and the initrd, and a 32-bit entry at code32_start, the way
// the protocol lets a boot loader skip the real-mode setup. The file is
// untrusted: every field read is checked, and a bad one is a BootError.
import { struct } from '../common/struct.js';
import { BootError } from './elf.js';

/** The setup header's fields a loader reads or writes (offsets in the file and in boot_params alike). */
export const SETUP_HEADER = {
  setup_sects: 0x1f1, vid_mode: 0x1fa, boot_flag: 0x1fe, jump: 0x200, header: 0x202, version: 0x206,
  type_of_loader: 0x210, loadflags: 0x211, code32_start: 0x214, ramdisk_image: 0x218, ramdisk_size: 0x21c,
  cmd_line_ptr: 0x228, initrd_addr_max: 0x22c, kernel_alignment: 0x230, relocatable_kernel: 0x234, xloadflags: 0x236,
  cmdline_size: 0x238, hardware_subarch: 0x23c, init_size: 0x260,
} as const;
/** boot_params outside the setup header. */
export const BOOT_PARAMS = { acpi_rsdp_addr: 0x070, e820_entries: 0x1e8, sentinel: 0x1ef, e820_table: 0x2d0 } as const;
export const BOOT_PARAMS_SIZE = 4096;
export const E820_MAX_ENTRIES = 128;
const E820Entry = struct('boot_e820_entry', { addr: 'u64', size: 'u64', type: 'u32' }, { packed: true });

const BOOT_FLAG = 0xaa55;
const HDRS = 0x53726448; // "HdrS"
const LOADED_HIGH = 0x01;
/** 2.06: cmdline_size; older kernels are older than any a Xen guest runs. */
const MIN_VERSION = 0x0206;
/** 2.10: init_size, the memory the kernel needs from where it is loaded; 2.14: acpi_rsdp_addr. */
const VERSION_INIT_SIZE = 0x020a;
const VERSION_RSDP = 0x020e;
/** The protocol's load address for a bzImage's protected-mode part. */
export const BZIMAGE_LOAD_ADDRESS = 0x100000;
const TYPE_OF_LOADER_UNDEFINED = 0xff;
const VID_MODE_NORMAL = 0xffff;

export interface BzImage {
  version: number;
  /** The protected-mode kernel, loaded at BZIMAGE_LOAD_ADDRESS. */
  kernel: Uint8Array;
  /** Bytes the kernel needs from its load address (it decompresses itself there). */
  initSize: number;
  /** The highest address the initrd may end at (exclusive). */
  initrdEnd: number;
  /** The longest command line, without its NUL. */
  cmdlineMax: number;
  /** The setup header as the file has it, to copy into boot_params. */
  header: Uint8Array;
}

export function isBzImage(file: Uint8Array): boolean {
  if (file.length < SETUP_HEADER.header + 4) return false;
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  return v.getUint16(SETUP_HEADER.boot_flag, true) === BOOT_FLAG && v.getUint32(SETUP_HEADER.header, true) === HDRS;
}

export function parseBzImage(file: Uint8Array): BzImage {
  if (!isBzImage(file)) throw new BootError('kernel is not a bzImage (no 0xAA55 boot flag and "HdrS" header)');
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const version = v.getUint16(SETUP_HEADER.version, true);
  const hex = (n: number) => `0x${n.toString(16)}`;
  if (version < MIN_VERSION) throw new BootError(`bzImage boot protocol ${version >> 8}.${version & 0xff} is too old (2.06 or later is needed)`);
  if (!(file[SETUP_HEADER.loadflags] & LOADED_HIGH)) throw new BootError('kernel is a zImage, not a bzImage: it does not load at 1 MiB');
  // The header ends where the jump at 0x200 lands.
  const headerEnd = SETUP_HEADER.jump + 2 + file[SETUP_HEADER.jump + 1];
  if (headerEnd > file.length || headerEnd <= SETUP_HEADER.header) throw new BootError(`bzImage setup header runs past the file (to ${hex(headerEnd)})`);
  const setupSects = file[SETUP_HEADER.setup_sects] || 4;
  const kernelStart = (setupSects + 1) * 512;
  if (kernelStart >= file.length) throw new BootError(`bzImage has no protected-mode kernel after its ${setupSects} setup sectors`);
  const kernel = file.subarray(kernelStart);
  const field = (off: number, size: 1 | 2 | 4) => (off + size > headerEnd ? 0 : size === 1 ? file[off] : size === 2 ? v.getUint16(off, true) : v.getUint32(off, true));
  // A kernel older than 2.10 does not say how much room it needs: its compressed size, tripled, as loaders have assumed.
  const initSize = Math.max(version >= VERSION_INIT_SIZE ? field(SETUP_HEADER.init_size, 4) : 3 * kernel.length, kernel.length);
  return {
    version,
    kernel,
    initSize,
    initrdEnd: field(SETUP_HEADER.initrd_addr_max, 4) + 1,
    cmdlineMax: field(SETUP_HEADER.cmdline_size, 4),
    header: file.slice(SETUP_HEADER.setup_sects, headerEnd),
  };
}

export interface BootParamsOptions {
  cmdlinePaddr: number;
  initrd?: { paddr: number; size: number };
  rsdpPaddr: number;
  memmap: readonly { addr: number; size: number; type: number }[];
}

/** The zero page for `image`: its setup header with what the loader fills in, and the memory map. */
export function encodeBootParams(image: BzImage, opts: BootParamsOptions): Uint8Array {
  if (opts.memmap.length > E820_MAX_ENTRIES) throw new BootError(`the memory map has ${opts.memmap.length} entries; boot_params holds ${E820_MAX_ENTRIES}`);
  const out = new Uint8Array(BOOT_PARAMS_SIZE);
  const v = new DataView(out.buffer);
  out.set(image.header, SETUP_HEADER.setup_sects);
  v.setUint16(SETUP_HEADER.vid_mode, VID_MODE_NORMAL, true);
  v.setUint8(SETUP_HEADER.type_of_loader, TYPE_OF_LOADER_UNDEFINED);
  v.setUint32(SETUP_HEADER.code32_start, BZIMAGE_LOAD_ADDRESS, true);
  v.setUint32(SETUP_HEADER.cmd_line_ptr, opts.cmdlinePaddr, true);
  v.setUint32(SETUP_HEADER.ramdisk_image, opts.initrd?.paddr ?? 0, true);
  v.setUint32(SETUP_HEADER.ramdisk_size, opts.initrd?.size ?? 0, true);
  v.setUint32(SETUP_HEADER.hardware_subarch, 0, true); // a PC
  if (image.version >= VERSION_RSDP) v.setBigUint64(BOOT_PARAMS.acpi_rsdp_addr, BigInt(opts.rsdpPaddr), true);
  v.setUint8(BOOT_PARAMS.e820_entries, opts.memmap.length);
  opts.memmap.forEach((e, i) => out.set(E820Entry.encode({ addr: BigInt(e.addr), size: BigInt(e.size), type: e.type }), BOOT_PARAMS.e820_table + i * E820Entry.size));
  return out;
}

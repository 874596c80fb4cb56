// How a kernel file boots: an ELF through Xen's PVH entry (start_info after the
// image and the initrd, as Xen's domain builder lays them out), or a Linux
// bzImage by HVM direct boot (the x86 boot protocol's 32-bit entry, boot_params
// and the command line in low memory, the initrd at the top of the RAM below
// 4 GiB that the kernel allows, as boot loaders put it).
import { BZIMAGE_LOAD_ADDRESS, encodeBootParams, isBzImage, parseBzImage } from '../boot/bzimage.js';
import { loadPvhKernel, type KernelChunk } from '../boot/elf.js';
import { bzImageBootState, pvhBootState, type BootState } from '../boot/pvh-state.js';
import { encodeBootInfo, MEMMAP_TYPE_RAM, type MemmapEntry } from '../boot/start-info.js';
import { ConfigError } from './config-error.js';
import { BOOT_INFO_SIZE, placeAfterKernel } from './layout.js';

/** Where a bzImage's boot_params and command line go: low RAM the kernel copies them out of before using it. */
export const BZIMAGE_BOOT_PARAMS = 0x7000;
export const BZIMAGE_CMDLINE = 0x8000;
const PAGE = 0x1000;

export interface BootPlan {
  protocol: 'pvh' | 'hvm';
  /** The kernel's bytes, at their guest-physical addresses. */
  chunks: KernelChunk[];
  /** What the kernel says it is, if it says. */
  guestOs: string | undefined;
  initrd?: { paddr: number; bytes: Uint8Array };
  /** The rest of what the boot vCPU finds in memory, once the ACPI tables' RSDP is known. */
  bootData(rsdpPaddr: number): { gpa: number; bytes: Uint8Array }[];
  state: BootState;
}

const hex = (n: number) => `0x${n.toString(16)}`;

export function planBoot(file: Uint8Array, cmdline: string, memmap: readonly MemmapEntry[], initrd: Uint8Array | undefined): BootPlan {
  const ram = memmap.filter((e) => e.type === MEMMAP_TYPE_RAM).map((e) => ({ start: e.addr, end: e.addr + e.size }));
  return isBzImage(file) ? planBzImage(file, cmdline, memmap, ram, initrd) : planPvh(file, cmdline, memmap, ram, initrd);
}

function planPvh(file: Uint8Array, cmdline: string, memmap: readonly MemmapEntry[], ram: { start: number; end: number }[], initrd: Uint8Array | undefined): BootPlan {
  const kernel = loadPvhKernel(file, ram);
  // After the kernel, as Xen's domain builder puts them: the initrd (start_info's one module), then start_info.
  const placed = placeAfterKernel(kernel.highest, ram, initrd ? [initrd.length, BOOT_INFO_SIZE] : [BOOT_INFO_SIZE]);
  if (!placed) {
    const what = initrd ? `the initrd (${initrd.length} bytes) and start_info` : 'start_info';
    throw new ConfigError(`no room in guest RAM after the kernel (which ends at ${hex(kernel.highest)}) for ${what}: give the guest more memory (--memory)`);
  }
  const base = placed[placed.length - 1];
  const modules = initrd ? [{ paddr: placed[0], size: initrd.length }] : [];
  return {
    protocol: 'pvh',
    chunks: kernel.chunks,
    guestOs: kernel.guestOs,
    initrd: initrd && { paddr: placed[0], bytes: initrd },
    bootData: (rsdpPaddr) => [{ gpa: base, bytes: encodeBootInfo({ base, cmdline, rsdpPaddr, memmap: [...memmap], maxBytes: BOOT_INFO_SIZE, modules }).bytes }],
    state: pvhBootState(kernel.entry, base),
  };
}

function planBzImage(file: Uint8Array, cmdline: string, memmap: readonly MemmapEntry[], ram: { start: number; end: number }[], initrd: Uint8Array | undefined): BootPlan {
  const image = parseBzImage(file);
  const kernelEnd = BZIMAGE_LOAD_ADDRESS + image.initSize;
  const low = ram.find((r) => r.start <= BZIMAGE_LOAD_ADDRESS && BZIMAGE_LOAD_ADDRESS < r.end);
  if (!low || kernelEnd > low.end) throw new ConfigError(`the kernel needs RAM up to ${hex(kernelEnd)} to decompress itself: give the guest more memory (--memory)`);
  const cmd = new TextEncoder().encode(cmdline);
  if (cmd.includes(0)) throw new ConfigError('the kernel command line contains a NUL byte');
  if (cmd.length > image.cmdlineMax) throw new ConfigError(`the command line is ${cmd.length} bytes; this kernel takes at most ${image.cmdlineMax}`);
  if (BZIMAGE_CMDLINE + cmd.length + 1 > BZIMAGE_LOAD_ADDRESS) throw new ConfigError(`the command line is ${cmd.length} bytes, too long for low memory`);
  let initrdAt: number | undefined;
  if (initrd) {
    // As boot loaders do: as high as the kernel allows, below 4 GiB, page-aligned, clear of the decompressing kernel.
    const top = Math.min(low.end, image.initrdEnd);
    initrdAt = Math.floor((top - initrd.length) / PAGE) * PAGE;
    if (initrdAt < kernelEnd) {
      throw new ConfigError(`no room in guest RAM between the kernel (which needs up to ${hex(kernelEnd)}) and ${hex(top)} for the initrd (${initrd.length} bytes): give the guest more memory (--memory)`);
    }
  }
  return {
    protocol: 'hvm',
    chunks: [{ gpa: BZIMAGE_LOAD_ADDRESS, bytes: image.kernel, zeroFill: 0 }],
    guestOs: 'linux',
    initrd: initrd && initrdAt !== undefined ? { paddr: initrdAt, bytes: initrd } : undefined,
    bootData: (rsdpPaddr) => [
      {
        gpa: BZIMAGE_BOOT_PARAMS,
        bytes: encodeBootParams(image, {
          cmdlinePaddr: BZIMAGE_CMDLINE, rsdpPaddr, memmap,
          initrd: initrd && initrdAt !== undefined ? { paddr: initrdAt, size: initrd.length } : undefined,
        }),
      },
      { gpa: BZIMAGE_CMDLINE, bytes: Uint8Array.from([...cmd, 0]) },
    ],
    state: bzImageBootState(BZIMAGE_LOAD_ADDRESS, BZIMAGE_BOOT_PARAMS),
  };
}

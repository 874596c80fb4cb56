// Where things live in the guest-physical address space and I/O space of a
// xenkvm machine. The guest learns all of it from start_info and ACPI.
import { MEMMAP_TYPE_RAM, MEMMAP_TYPE_RESERVED } from '../boot/start-info.js';
import { irqchips, KVM_IOAPIC_NUM_PINS } from '../kvm/abi.js';
import type { IrqchipRoute } from '../kvm/vm.js';
import { ECAM_BUS_SIZE, type PciFunction } from './devices/pci.js';
import { xenPlatformFunction } from './devices/xen-platform.js';
import { grantTablePages } from '../xen/gnttab/table.js';

export const MiB = 1 << 20;
export const GiB = 1 << 30;

/** RAM above this goes above 4 GiB, leaving the hole for the IOAPIC, LAPIC and KVM's private pages. */
export const LOW_RAM_END = 3 * GiB;
export const HIGH_RAM_START = 4 * GiB;

/** The room start_info, the memory map and the command line may take: one page-aligned block after the kernel and modules. */
export const BOOT_INFO_SIZE = 0x2000;
/** ACPI tables in the legacy BIOS area, reported reserved. */
export const ACPI_BASE = 0xe0000;
export const ACPI_SIZE = 0x20000;
export const LOW_MEMORY_END = 0xa0000;

export const IOAPIC_ADDRESS = 0xfec00000;
export const IOAPIC_ID = 0;
export const LAPIC_ADDRESS = 0xfee00000;
/** KVM needs three pages for the real-mode TSS and one for the identity map (Intel only); below the LAPIC, outside RAM. */
export const KVM_TSS_ADDRESS = 0xfffbd000;
export const KVM_IDENTITY_MAP_ADDRESS = 0xfffbc000;
/** Frames no overlay page may take: KVM's TSS and identity map, and the LAPIC's (KVM's APIC access page on Intel). */
export const KVM_RESERVED_FRAMES: readonly number[] = [LAPIC_ADDRESS, KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS, KVM_TSS_ADDRESS + 0x1000, KVM_TSS_ADDRESS + 0x2000].map((a) => a / 0x1000);

/** I/O ports of the platform devices. */
export const ports = {
  debugConsole: 0xe9,
  postCode: 0x80,
  uart: 0x3f8,
  keyboardController: 0x64,
  /** The CMOS RTC's index and data ports, an HVM guest's only. */
  cmosRtc: 0x70,
  /** The Xen platform device's unplug protocol (fixed, as in Xen's device model). */
  xenUnplug: 0x10,
  /** PCI configuration mechanism #1: the address register (a dword) and the data window. */
  pciConfigAddress: 0xcf8,
  pciConfigData: 0xcfc,
  sleepControl: 0x600,
  sleepStatus: 0x601,
  pm1aEvent: 0x604,
  pm1aControl: 0x608,
  reset: 0xcf9,
} as const;
export const RESET_VALUE = 0x06;
export const SCI_IRQ = 9;
export const UART_IRQ = 4;
export const RTC_IRQ = 8;
/** The PIT's ISA IRQ, and the IOAPIC pin it is wired to on a PC (the MADT says so with an override). */
export const PIT_IRQ = 0;
export const PIT_GSI = 2;

/** The master PIC's input the slave PIC is cascaded into: no device has IRQ 2. */
const PIC_CASCADE_IRQ = 2;

/**
 * KVM's GSI routing as a PC wires it: ISA IRQs 0–15 to the two PICs (0–7 master, 8–15 slave) and to the
 * IOAPIC pin of the same number, 16–23 to the IOAPIC only; but IRQ 0, which KVM's PIT raises, reaches
 * IOAPIC pin 2, as the MADT's override tells the guest, and IRQ 2 (the cascade) goes nowhere. Pin 2 must
 * have that one GSI: KVM tells the PIT of an EOI there through the pin's GSI, and until it hears of one
 * it injects no further tick.
 */
export function pcGsiRoutes(): IrqchipRoute[] {
  const routes: IrqchipRoute[] = [];
  for (let gsi = 0; gsi < KVM_IOAPIC_NUM_PINS; gsi++) {
    if (gsi === PIC_CASCADE_IRQ) continue;
    if (gsi < 16) routes.push({ gsi, irqchip: gsi < 8 ? irqchips.PIC_MASTER : irqchips.PIC_SLAVE, pin: gsi % 8 });
    routes.push({ gsi, irqchip: irqchips.IOAPIC, pin: gsi === PIT_IRQ ? PIT_GSI : gsi });
  }
  return routes;
}

/** The GSI, in pcGsiRoutes' table, that drives IOAPIC pin `pin` (1–23; no GSI drives pin 0). */
export const gsiOfIoapicPin = (pin: number) => (pin === PIT_GSI ? PIT_IRQ : pin);
/**
 * PCI bus 0: its ECAM window (reserved in the memory map and named by the MCFG), the ranges its BARs may
 * take (the DSDT's host bridge windows: below the ECAM window, and from the Xen platform device's memory
 * BAR up to the IOAPIC), and the devices on it.
 */
export const PCI_ECAM_BASE = 0xe0000000;
export const PCI_MEMORY_WINDOWS: readonly { start: number; end: number }[] = [
  { start: LOW_RAM_END, end: PCI_ECAM_BASE - 1 },
  { start: 0xf0000000, end: IOAPIC_ADDRESS - 1 },
];
export const PCI_HOST_BRIDGE_SLOT = 0;
export const XEN_PLATFORM_SLOT = 2;
export const XEN_PLATFORM_IO_BAR = 0xc000;
export const XEN_PLATFORM_MMIO_BAR = 0xf0000000;

/** The GSI a PCI slot's INTx pin (0 = INTA) is wired to: 16–23, swizzled by slot, as the DSDT's _PRT says. */
export const pciIntxGsi = (slot: number, pin: number) => 16 + ((slot + pin) & 7);

/** What answers on bus 0: the host bridge (the ids Xen's device model gives its i440FX) and the Xen platform device. */
export function pciFunctions(): PciFunction[] {
  return [
    { slot: PCI_HOST_BRIDGE_SLOT, vendor: 0x8086, device: 0x1237, revision: 2, classCode: 0x060000 },
    xenPlatformFunction(XEN_PLATFORM_SLOT, XEN_PLATFORM_IO_BAR, XEN_PLATFORM_MMIO_BAR, pciIntxGsi(XEN_PLATFORM_SLOT, 0)),
  ];
}

/** SLP_TYP of \_S5 in the DSDT. */
export const S5_SLEEP_TYPE = 5;

/** Overlay pages the toolstack places for the guest; page 0 is shared_info (src/xen/shared-info.ts). */
export const XENSTORE_OVERLAY_PAGE = 1;
export const CONSOLE_OVERLAY_PAGE = 2;
/** The grant table's shared frames, then its status frames, take the pages from here on. */
export const GRANT_TABLE_FIRST_PAGE = 3;

/** The overlay pool of a machine whose grant table may grow to `maxGrantFrames` frames. */
export const overlayPoolPages = (maxGrantFrames: number) => GRANT_TABLE_FIRST_PAGE + grantTablePages(maxGrantFrames);

/** xl's default max_grant_frames (and Xen's gnttab_max_frames), and the most xenkvm allows. */
export const DEFAULT_MAX_GRANT_FRAMES = 64;
export const MAX_GRANT_FRAMES = 1024;

/**
 * Xen's special pages for an HVM or PVH domU: eight frames ending at 0xff000000 (libxc's special
 * region), the XenStore ring fifth and the console ring last, reserved in the memory map.
 */
export const SPECIAL_PAGES_GFN = 0xfeff8;
export const SPECIAL_PAGES = 8;
export const XENSTORE_GFN = SPECIAL_PAGES_GFN + 4;
export const CONSOLE_GFN = SPECIAL_PAGES_GFN + 7;

export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 64 * 1024;
export const MAX_VCPUS = 64;

export interface MemmapEntry {
  addr: number;
  size: number;
  type: number;
}

/** Guest-physical RAM ranges for a machine with `bytes` of RAM. */
export function ramRanges(bytes: number): { gpa: number; size: number }[] {
  const low = Math.min(bytes, LOW_RAM_END);
  const ranges = [{ gpa: 0, size: low }];
  if (bytes > low) ranges.push({ gpa: HIGH_RAM_START, size: bytes - low });
  return ranges;
}

/** The memory map the guest is given (hvm_start_info memmap, Xen's e820 for the guest). */
export function guestMemmap(bytes: number): MemmapEntry[] {
  const map: MemmapEntry[] = [
    { addr: 0, size: LOW_MEMORY_END, type: MEMMAP_TYPE_RAM },
    { addr: ACPI_BASE, size: ACPI_SIZE, type: MEMMAP_TYPE_RESERVED },
  ];
  const low = Math.min(bytes, LOW_RAM_END);
  map.push({ addr: 0x100000, size: low - 0x100000, type: MEMMAP_TYPE_RAM });
  map.push({ addr: PCI_ECAM_BASE, size: ECAM_BUS_SIZE, type: MEMMAP_TYPE_RESERVED });
  map.push({ addr: IOAPIC_ADDRESS, size: 0x1000, type: MEMMAP_TYPE_RESERVED });
  map.push({ addr: LAPIC_ADDRESS, size: 0x1000, type: MEMMAP_TYPE_RESERVED });
  map.push({ addr: SPECIAL_PAGES_GFN * 0x1000, size: SPECIAL_PAGES * 0x1000, type: MEMMAP_TYPE_RESERVED });
  if (bytes > low) map.push({ addr: HIGH_RAM_START, size: bytes - low, type: MEMMAP_TYPE_RAM });
  return map;
}

const PAGE = 0x1000;
const pageUp = (addr: number) => Math.ceil(addr / PAGE) * PAGE;

/**
 * Where blocks of `sizes` bytes go after a kernel image ending (exclusive) at `kernelEnd`, as Xen's
 * domain builder lays out the modules and then start_info: each page-aligned, one after another, from
 * the first page past the image, in the first of the `ram` ranges ([start, end)) with room for all
 * of them. Undefined when none has.
 */
export function placeAfterKernel(kernelEnd: number, ram: readonly { start: number; end: number }[], sizes: readonly number[]): number[] | undefined {
  for (const r of ram) {
    if (r.end <= kernelEnd) continue;
    const placed: number[] = [];
    let end = Math.max(kernelEnd, r.start);
    for (const size of sizes) {
      const at = pageUp(end);
      placed.push(at);
      end = at + size;
    }
    if (end <= r.end) return placed;
  }
  return undefined;
}

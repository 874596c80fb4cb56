/* PCI bus 0 as a kernel probes it: configuration mechanism #1 (Linux's type-1
 * check and a scan), the MCFG's ECAM window (reserved in the memory map, the
 * same registers as through 0xcf8), BAR sizing, and the Xen platform device's
 * unplug protocol at ports 0x10-0x13, whose log line the host checks. */
#include "../kit/kit.h"

#define CONFIG_ADDRESS 0xcf8
#define CONFIG_DATA 0xcfc
#define UNPLUG 0x10
#define UNPLUG_LOG 0x12
#define MAGIC 0x49d2

static volatile uint8_t *ecam;

static uint32_t cf8_read(unsigned int slot, unsigned int reg)
{
	outl(CONFIG_ADDRESS, 0x80000000u | slot << 11 | (reg & 0xfc));
	return inl(CONFIG_DATA);
}

static void cf8_write(unsigned int slot, unsigned int reg, uint32_t v)
{
	outl(CONFIG_ADDRESS, 0x80000000u | slot << 11 | (reg & 0xfc));
	outl(CONFIG_DATA, v);
}

static uint32_t ecam_read(unsigned int slot, unsigned int reg)
{
	return *(volatile uint32_t *)(ecam + (slot << 15) + reg);
}

static void type1_case(void)
{
	/* Linux's pci_check_type1(). */
	outb(0xcfb, 0x01);
	uint32_t saved = inl(CONFIG_ADDRESS);
	outl(CONFIG_ADDRESS, 0x80000000u);
	uint32_t back = inl(CONFIG_ADDRESS);
	outl(CONFIG_ADDRESS, saved);
	KIT_CHECK(back == 0x80000000u, "the address register reads back 0x%x", back);
}

static void scan_case(void)
{
	unsigned int found = 0;
	for (unsigned int slot = 0; slot < 32; slot++) {
		uint32_t id = cf8_read(slot, 0);
		if (id == 0xffffffffu)
			continue;
		uint32_t class = cf8_read(slot, 8);
		kit_printf("KIT-PCI 00:%02x.0 %04x:%04x class %06x rev %u\n", slot, id & 0xffff, id >> 16, class >> 8, class & 0xff);
		found |= 1u << slot;
	}
	KIT_CHECK(found == 0x5, "devices at slots 0x%x, expected 0 and 2", found);
	KIT_CHECK(cf8_read(0, 0) == 0x12378086u && cf8_read(0, 8) >> 8 == 0x060000, "00:00.0 is not a host bridge");
	KIT_CHECK(cf8_read(2, 0) == 0x00015853u, "00:02.0 is 0x%x, not the Xen platform device", cf8_read(2, 0));
	KIT_CHECK(cf8_read(2, 8) == 0xff800001u, "00:02.0 class/revision 0x%x", cf8_read(2, 8));
	KIT_CHECK(cf8_read(2, 0x2c) == 0x00015853u, "00:02.0 subsystem 0x%x", cf8_read(2, 0x2c));
	KIT_CHECK(((cf8_read(2, 0x3c) >> 8) & 0xff) == 1, "00:02.0 has no INTA");
	KIT_CHECK(((cf8_read(2, 0x0c) >> 16) & 0xff) == 0, "00:02.0 header type");
}

static void ecam_case(void)
{
	const uint8_t *mcfg = kit_acpi_find("MCFG");
	KIT_CHECK(mcfg, "no MCFG");
	uint64_t base;
	memcpy(&base, mcfg + 44, 8);
	uint16_t segment;
	memcpy(&segment, mcfg + 52, 2);
	kit_printf("KIT-PCI mcfg base=0x%llx segment=%u buses=%u-%u\n", (unsigned long long)base, segment, mcfg[54], mcfg[55]);
	KIT_CHECK(segment == 0 && mcfg[54] == 0 && mcfg[55] == 0, "MCFG is not segment 0, bus 0");
	bool reserved = false;
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		reserved |= e[i].type == 2 && e[i].addr <= base && base + (1 << 20) <= e[i].addr + e[i].size;
	KIT_CHECK(reserved, "the ECAM window is not reserved in the memory map");
	ecam = kit_phys(base);
	for (unsigned int slot = 0; slot < 32; slot++)
		for (unsigned int reg = 0; reg < 0x40; reg += 4)
			KIT_CHECK(ecam_read(slot, reg) == cf8_read(slot, reg), "00:%02x.0 register 0x%x: ECAM 0x%x, 0xcf8 0x%x",
				  slot, reg, ecam_read(slot, reg), cf8_read(slot, reg));
	KIT_CHECK(ecam_read(2, 0x100) == 0, "extended space 0x%x", ecam_read(2, 0x100));
	ecam[(2 << 15) + 0x3c] = 0x0b;
	KIT_CHECK((cf8_read(2, 0x3c) & 0xff) == 0x0b, "an ECAM write to the interrupt line is not seen at 0xcf8");
	ecam[(2 << 15) + 0x3d] = 0x04;
	KIT_CHECK(((cf8_read(2, 0x3c) >> 8) & 0xff) == 1, "the interrupt pin changed");
}

static void bars_case(void)
{
	uint32_t bar0 = cf8_read(2, 0x10), bar1 = cf8_read(2, 0x14);
	kit_printf("KIT-PCI 00:02.0 bar0=0x%x bar1=0x%x command=0x%x\n", bar0, bar1, cf8_read(2, 4) & 0xffff);
	KIT_CHECK((bar0 & 3) == 1 && (bar1 & 0xf) == 8, "BAR 0 is not I/O or BAR 1 not prefetchable memory");
	cf8_write(2, 0x10, 0xffffffffu);
	cf8_write(2, 0x14, 0xffffffffu);
	uint32_t size0 = cf8_read(2, 0x10), size1 = cf8_read(2, 0x14);
	cf8_write(2, 0x10, bar0);
	cf8_write(2, 0x14, bar1);
	KIT_CHECK(size0 == 0xffffff01u, "BAR 0 sizes as 0x%x, expected 256 bytes of I/O", size0);
	KIT_CHECK(size1 == 0xff000008u, "BAR 1 sizes as 0x%x, expected 16 MiB", size1);
	KIT_CHECK(cf8_read(2, 0x10) == bar0 && cf8_read(2, 0x14) == bar1, "BARs not restored");
	cf8_write(2, 0x18, 0xffffffffu);
	KIT_CHECK(cf8_read(2, 0x18) == 0, "BAR 2 is implemented: 0x%x", cf8_read(2, 0x18));
}

static void unplug_case(void)
{
	/* Linux's check_platform_magic(), then an unplug of everything and a log line. */
	uint16_t magic = inw(UNPLUG);
	KIT_CHECK(magic == MAGIC, "magic 0x%x", magic);
	uint8_t version = inb(UNPLUG_LOG);
	KIT_CHECK(version == 1, "protocol version %u", version);
	outw(UNPLUG_LOG, 3);
	outl(UNPLUG, 0x12345);
	KIT_CHECK(inw(UNPLUG) == MAGIC, "blacklisted (magic 0x%x)", inw(UNPLUG));
	outw(UNPLUG, 0x3);
	for (const char *p = "kit pci says hello\n"; *p; p++)
		outb(UNPLUG_LOG, (uint8_t)*p);
}

void kit_main(void)
{
	kit_case("type1", type1_case);
	kit_case("scan", scan_case);
	kit_case("ecam", ecam_case);
	kit_case("bars", bars_case);
	kit_case("unplug", unplug_case);
}

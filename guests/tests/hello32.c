/* 32-bit polling guest: start_info, cmdline and memmap as handed over by PVH boot. */
#include "../kit32/kit32.h"

static void start_info_case(void)
{
	KIT_CHECK(kit_start_info, "no start_info");
	KIT_CHECK(kit_start_info->magic == HVM_START_MAGIC, "magic 0x%x", kit_start_info->magic);
	KIT_CHECK(kit_start_info->version >= 1, "version %u", kit_start_info->version);
}

static void cmdline_case(void)
{
	KIT_CHECK(kit_start_info->cmdline_paddr, "cmdline_paddr is 0");
	KIT_CHECK(strlen(kit_cmdline) < 4096, "cmdline not terminated");
	kit_printf("KIT-CMDLINE %s\n", kit_cmdline);
}

static void memmap_case(void)
{
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	KIT_CHECK(kit_start_info->memmap_paddr && kit_start_info->memmap_entries, "no memmap");
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		if (e[i].type == 1 && e[i].addr <= 0x100000 && e[i].addr + e[i].size > 0x100000)
			return;
	kit_fail("no RAM entry covers 1 MiB");
}

void kit_main(void)
{
	kit_printf("KIT-HELLO 32-bit\n");
	kit_case("start-info", start_info_case);
	if (kit_start_info->magic != HVM_START_MAGIC)
		kit_finish();
	kit_case("cmdline", cmdline_case);
	kit_case("memmap-ram-1m", memmap_case);
}

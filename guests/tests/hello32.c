/* 32-bit polling guest: start_info, cmdline, memmap and modules as handed over by PVH boot. */
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

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "modlist layout");

extern char kit_image_end[];

static uint32_t fnv1a(const uint8_t *p, uint64_t n)
{
	uint32_t h = 2166136261u;
	for (uint64_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* Where Xen's domain builder puts them: the modules, then start_info, each
 * page-aligned after the kernel image. Prints each module's FNV-1a hash. */
static void modules_case(void)
{
	uint32_t si = (uint32_t)(uintptr_t)kit_start_info;
	uint32_t image_end = (uint32_t)(uintptr_t)kit_image_end;
	KIT_CHECK(si % 4096 == 0 && si >= image_end, "start_info at 0x%x, not page-aligned after the image (ends 0x%x)", si,
		  image_end);
	KIT_CHECK((kit_start_info->nr_modules == 0) == (kit_start_info->modlist_paddr == 0),
		  "nr_modules %u with modlist_paddr 0x%llx", kit_start_info->nr_modules,
		  (unsigned long long)kit_start_info->modlist_paddr);
	kit_printf("KIT-MODULES n=%u\n", kit_start_info->nr_modules);
	const struct hvm_modlist_entry *m = kit_phys(kit_start_info->modlist_paddr);
	for (uint32_t i = 0; i < kit_start_info->nr_modules; i++) {
		KIT_CHECK(m[i].paddr % 4096 == 0 && m[i].paddr >= image_end && m[i].paddr + m[i].size <= si,
			  "module %u at 0x%llx (%llu bytes) is not between the image and start_info", i,
			  (unsigned long long)m[i].paddr, (unsigned long long)m[i].size);
		kit_printf("KIT-MODULE %u size=%llu fnv1a=0x%08x cmdline=%s\n", i, (unsigned long long)m[i].size,
			   fnv1a(kit_phys(m[i].paddr), m[i].size), m[i].cmdline_paddr ? "yes" : "none");
	}
}

void kit_main(void)
{
	kit_printf("KIT-HELLO 32-bit\n");
	kit_case("start-info", start_info_case);
	if (kit_start_info->magic != HVM_START_MAGIC)
		kit_finish();
	kit_case("cmdline", cmdline_case);
	kit_case("memmap-ram-1m", memmap_case);
	kit_case("modules", modules_case);
}

/* Friendly boot report for `npm start`. */
#include "../kit/kit.h"

static volatile int checked_in[KIT_MAX_CPUS];

static void ap_hello(int cpu)
{
	kit_printf("  cpu %d (APIC id %u) checking in\n", cpu, kit_lapic_id());
	checked_in[cpu] = 1;
}

void kit_main(void)
{
	kit_printf("\nHello from a PVH guest kernel running on xenkvm!\n\n");
	kit_printf("command line: \"%s\"\n", kit_cmdline);

	kit_printf("memory map (%u entries):\n", kit_start_info->memmap_entries);
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		kit_printf("  0x%012llx - 0x%012llx  %-8s (%llu KiB)\n", (unsigned long long)e[i].addr,
			   (unsigned long long)(e[i].addr + e[i].size - 1), kit_memtype_name(e[i].type),
			   (unsigned long long)(e[i].size >> 10));

	int n = kit_ncpus();
	kit_printf("CPUs in the ACPI MADT: %d\n", n);
	kit_printf("  cpu 0 (APIC id %u) is the boot CPU\n", kit_lapic_id());
	checked_in[0] = 1;
	int online = kit_smp_start(ap_hello);
	for (int i = 1; i < online; i++)
		kit_wait_flag(&checked_in[i], 2000);
	kit_printf("%d of %d CPUs online. Powering off.\n\n", online, n);
	kit_case_result("all-cpus-online", online == n, "some CPUs did not start");
}

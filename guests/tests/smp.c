/* Every CPU in the MADT comes up and reports its APIC id. */
#include "../kit/kit.h"

static volatile uint32_t ap_apic[KIT_MAX_CPUS];
static volatile int ap_done[KIT_MAX_CPUS];
static int online;

static void ap_report(int cpu)
{
	ap_apic[cpu] = kit_lapic_id();
	kit_printf("KIT-SMP cpu=%d apic=%u\n", cpu, ap_apic[cpu]);
	ap_done[cpu] = 1;
}

static void madt_case(void)
{
	KIT_CHECK(kit_acpi.madt, "no MADT: %s", kit_acpi_error);
	KIT_CHECK(kit_acpi.ncpus >= 1, "no enabled Local APIC entries");
	uint32_t me = kit_lapic_id();
	bool bsp_listed = false;
	for (int i = 0; i < kit_acpi.ncpus; i++)
		bsp_listed |= kit_acpi.apic_id[i] == me;
	kit_printf("KIT-SMP cpus=%d bsp-apic=%u\n", kit_acpi.ncpus, me);
	KIT_CHECK(bsp_listed, "BSP APIC id %u not in MADT", me);
}

static void bringup_case(void)
{
	online = kit_smp_start(ap_report);
	KIT_CHECK(online == kit_ncpus(), "%d of %d CPUs online", online, kit_ncpus());
}

static void apic_ids_case(void)
{
	uint32_t me = kit_lapic_id();
	for (int cpu = 1; cpu < online; cpu++) {
		KIT_CHECK(kit_wait_flag(&ap_done[cpu], 2000), "cpu %d did not report", cpu);
		uint32_t id = ap_apic[cpu];
		bool listed = false;
		for (int i = 0; i < kit_acpi.ncpus; i++)
			listed |= kit_acpi.apic_id[i] == id;
		KIT_CHECK(listed, "cpu %d APIC id %u not in MADT", cpu, id);
		KIT_CHECK(id != me, "cpu %d has the BSP's APIC id", cpu);
		for (int j = 1; j < cpu; j++)
			KIT_CHECK(ap_apic[j] != id, "cpus %d and %d share APIC id %u", j, cpu, id);
	}
}

void kit_main(void)
{
	kit_case("madt-cpus", madt_case);
	kit_case("all-cpus-up", bringup_case);
	kit_case("ap-apic-ids", apic_ids_case);
}

/* Fixed IPIs both ways between the BSP and the first AP. */
#include "../kit/kit.h"

#define IPI_VECTOR 0x40

static volatile int count[KIT_MAX_CPUS], ap_ready;
static int online;

static void on_ipi(struct kit_frame *f)
{
	(void)f;
	count[kit_cpu_index()]++;
}

static void ap_main(int cpu)
{
	if (cpu != 1)
		return;
	kit_lapic_enable();
	ap_ready = 1;
	while (!count[1])
		sti_hlt(); /* woken by the BSP's IPI */
	kit_lapic_send_ipi(kit_cpu_apic[0], IPI_VECTOR);
}

static void to_ap_case(void)
{
	KIT_CHECK(online >= 2, "needs 2 vCPUs, %d online", online);
	KIT_CHECK(kit_wait_flag(&ap_ready, 2000), "AP not ready");
	kit_lapic_send_ipi(kit_cpu_apic[1], IPI_VECTOR);
	KIT_CHECK(kit_wait_flag(&count[1], 2000), "AP got no IPI");
}

static void to_bsp_case(void)
{
	KIT_CHECK(online >= 2, "needs 2 vCPUs, %d online", online);
	KIT_CHECK(kit_wait_flag(&count[0], 2000), "BSP got no IPI");
	kit_delay_ms(10); /* let a duplicate show up */
	KIT_CHECK(count[0] == 1 && count[1] == 1, "counts bsp=%d ap=%d, want 1 and 1", count[0], count[1]);
}

void kit_main(void)
{
	kit_set_irq_handler(IPI_VECTOR, on_ipi);
	kit_lapic_enable();
	sti();
	online = kit_smp_start(ap_main);
	kit_case("ipi-to-ap", to_ap_case);
	kit_case("ipi-to-bsp", to_bsp_case);
	cli();
}

/* An MSI injected by the host reaches the guest: prints
 * "KIT-MSI ready cpu=0 vector=0xV", then waits (hlt) for the host to inject
 * vector V at APIC id 0. */
#include "../kit/kit.h"

#define MSI_VECTOR 0x52

static volatile int hits;

static void on_msi(struct kit_frame *f)
{
	(void)f;
	hits++;
}

static void wait_case(void)
{
	hits = 0;
	kit_printf("KIT-MSI ready cpu=0 vector=0x%x\n", MSI_VECTOR);
	KIT_HALT_UNTIL(hits, 2000);
	KIT_CHECK(hits == 1, "%d MSIs arrived", hits);
}

void kit_main(void)
{
	kit_set_irq_handler(MSI_VECTOR, on_msi);
	kit_lapic_enable();
	kit_case("msi-delivered", wait_case);
}

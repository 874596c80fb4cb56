/* HVM_PARAM_CALLBACK_IRQ of type GSI: events reach the guest as a
 * level-triggered IOAPIC line held while vCPU 0's evtchn_upcall_pending is
 * set. The guest routes the pin itself (IOAPIC redirection entry: vector,
 * level, active high, to APIC 0), as a kernel does from its ACPI tables. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define GSI 20 /* above the legacy PIC's 16 lines */
#define VECTOR 0x60
#define EVENTS 20
#define IOAPIC ((volatile uint32_t *)(uintptr_t)0xfec00000)

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static volatile uint32_t irqs, got;
static evtchn_port_t a, b;

static void ioapic_write(uint32_t reg, uint32_t value)
{
	IOAPIC[0] = reg;
	IOAPIC[4] = value; /* IOWIN at +0x10 */
}

static void on_gsi(struct kit_frame *f)
{
	(void)f;
	irqs++;
	volatile struct vcpu_info *vi = &sh->vcpu_info[0];
	vi->evtchn_upcall_pending = 0;
	__atomic_exchange_n((xen_ulong_t *)&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
	for (evtchn_port_t p = 1; p < 64; p++) {
		if (!xen_evtchn_test(sh->evtchn_pending, p) || xen_evtchn_test(sh->evtchn_mask, p))
			continue;
		xen_evtchn_clear(sh->evtchn_pending, p);
		if (p == a)
			got++;
	}
}

static void setup_case(void)
{
	KIT_CHECK(xen_map_shared_info(shinfo_page) == 0, "map shared_info");
	sh = (volatile struct shared_info *)shinfo_page;
	outb(0x21, 0xff); /* legacy PIC fully masked, as a kernel using the IOAPIC leaves it */
	outb(0xa1, 0xff);
	ioapic_write(0x11 + 2 * GSI, 0);                       /* destination APIC 0 */
	ioapic_write(0x10 + 2 * GSI, VECTOR | (1u << 15));    /* fixed, physical, active high, level, unmasked */
	long rc = xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ, GSI); /* type 0: GSI */
	KIT_CHECK(rc == 0, "set CALLBACK_IRQ to GSI %d: %ld", GSI, rc);
	KIT_CHECK(xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &b) == 0, "alloc_unbound");
	KIT_CHECK(xen_evtchn_bind_interdomain(DOMID_SELF, b, &a) == 0, "bind_interdomain");
}

static void events_case(void)
{
	/* bind_interdomain left port a pending: that first event arrives too. */
	for (int i = 0; i < 1000 && got < 1; i++)
		sti_hlt();
	cli();
	KIT_CHECK(got == 1, "the event from binding did not arrive (got %u, irqs %u)", got, irqs);
	for (uint32_t n = 2; n <= EVENTS + 1; n++) {
		KIT_CHECK(xen_evtchn_send(b) == 0, "send");
		for (int i = 0; i < 1000 && got < n; i++)
			sti_hlt();
		cli();
		KIT_CHECK(got == n, "event %u did not arrive (got %u, irqs %u)", n, got, irqs);
	}
	kit_printf("KIT-XEN gsi events=%u interrupts=%u\n", got, irqs);
	KIT_CHECK(irqs >= got, "fewer interrupts (%u) than events (%u)", irqs, got);
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(VECTOR, on_gsi);
	kit_lapic_enable();
	kit_case("setup", setup_case);
	kit_case("events", events_case);
}

/* An upcall owed before the guest can take it: Linux sets its per-vCPU upcall
 * vector (HVMOP_set_evtchn_upcall_vector) while its LAPIC is still
 * software-disabled, and an event is pending already. Xen keeps that vector
 * pending in the vLAPIC; the guest takes it once it enables the LAPIC, and
 * every later event arrives too. Run with --vcpus 1. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xe0
#define TIMER_VECTOR 0xd0
#define EVENTS 10

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static volatile uint32_t upcalls;
/* Events taken, by port. */
static volatile uint32_t got_by_port[XEN_EVTCHN_2L_PORTS];
static evtchn_port_t a, b;

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	upcalls++;
	xen_evtchn_2l_scan(sh, &sh->vcpu_info[0], xen_evtchn_all_ports, got_by_port);
}

static void on_timer(struct kit_frame *f)
{
	(void)f;
}

/* Waits with interrupts on for `n` events on port a, a LAPIC timer ending
 * each halt so that a missing event fails the case instead of hanging it. */
static void await_events(uint32_t n)
{
	for (int i = 0; i < 1000 && got_by_port[a] < n; i++) {
		kit_lapic_timer_oneshot(TIMER_VECTOR, 1000000);
		sti_hlt();
	}
	cli();
}

static void before_lapic_case(void)
{
	KIT_CHECK((kit_lapic_read(LAPIC_SVR) & 0x100) == 0, "the LAPIC is enabled before the guest enabled it (SVR 0x%x)",
		  kit_lapic_read(LAPIC_SVR));
	KIT_CHECK(xen_map_shared_info(shinfo_page) == 0, "map shared_info");
	sh = (volatile struct shared_info *)shinfo_page;
	long rc = xen_set_upcall_vector(0, UPCALL_VECTOR);
	KIT_CHECK(rc == 0, "set_evtchn_upcall_vector = %ld", rc);
	KIT_CHECK(xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &b) == 0, "alloc_unbound");
	/* Binding leaves port a pending: its upcall is raised now, with the LAPIC off. */
	KIT_CHECK(xen_evtchn_bind_interdomain(DOMID_SELF, b, &a) == 0, "bind_interdomain");
	KIT_CHECK(sh->vcpu_info[0].evtchn_upcall_pending == 1, "upcall_pending not set by the bind");
	kit_lapic_enable();
	await_events(1);
	KIT_CHECK(got_by_port[a] == 1, "the event owed from before the LAPIC was enabled never arrived (upcalls %u)", upcalls);
}

static void after_case(void)
{
	for (uint32_t n = 2; n <= EVENTS + 1; n++) {
		KIT_CHECK(xen_evtchn_send(b) == 0, "send");
		await_events(n);
		KIT_CHECK(got_by_port[a] == n, "event %u did not arrive (got %u, upcalls %u)", n, got_by_port[a], upcalls);
	}
	kit_printf("KIT-XEN early-upcall events=%u upcalls=%u\n", got_by_port[a], upcalls);
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	kit_set_irq_handler(TIMER_VECTOR, on_timer);
	kit_case("before-lapic", before_lapic_case);
	kit_case("after", after_case);
}

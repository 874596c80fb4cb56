/* The PV console ring and console_io, as a kernel's early console uses them.
 * Run with input on stdin: 1024 bytes of 'i' and then "CONSOLEIO!" (the
 * integration test writes them).
 *
 * The guest finds its console page and event channel in
 * HVM_PARAM_CONSOLE_PFN / _EVTCHN, writes lines into the output ring (more
 * than the ring holds in all, so the indexes wrap), notifies, and waits for
 * the backend to consume them; the host checks every line on stdout. The
 * input ring fills to the brim with the first 1024 bytes of input; what does
 * not fit stays queued for CONSOLEIO_read. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define LINES 120
#define INPUT_RING 1024

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct xencons_interface *cons;
static evtchn_port_t port;

static void setup_case(void)
{
	uint64_t pfn = 0, evtchn = 0;
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_CONSOLE_PFN, &pfn), 0, "get CONSOLE_PFN");
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &evtchn), 0, "get CONSOLE_EVTCHN");
	KIT_CHECK(pfn != 0 && evtchn != 0, "console pfn 0x%llx evtchn %llu", U64(pfn), U64(evtchn));
	XEN_EXPECT_RC(xen_map_shared_info(shinfo_page), 0, "map shared_info");
	struct evtchn_status st;
	KIT_CHECK(xen_evtchn_status_is((evtchn_port_t)evtchn, EVTCHNSTAT_interdomain, &st) && st.u.interdomain.dom == 0,
		  "console port %llu is not bound to domain 0", U64(evtchn));
	cons = (volatile struct xencons_interface *)(uintptr_t)(pfn << 12);
	port = (evtchn_port_t)evtchn;
	kit_printf("KIT-XEN console pfn=0x%llx port=%u backend port=%u\n", U64(pfn), port, st.u.interdomain.port);
}

/* Copies a string into the output ring as room allows, notifying the backend as it goes. */
static bool ring_write(const char *s)
{
	size_t n = strlen(s);
	for (size_t done = 0; done < n;) {
		XENCONS_RING_IDX prod = cons->out_prod;
		if (!KIT_WAIT_FOR(prod - cons->out_cons < sizeof cons->out, 2000))
			return false;
		while (done < n && prod - cons->out_cons < sizeof cons->out)
			cons->out[MASK_XENCONS_IDX(prod++, cons->out)] = s[done++];
		__atomic_thread_fence(__ATOMIC_SEQ_CST); /* the bytes before the index */
		cons->out_prod = prod;
		xen_evtchn_send(port);
	}
	return true;
}

static void output_case(void)
{
	KIT_CHECK(cons, "setup failed");
	volatile struct shared_info *sh = (volatile struct shared_info *)shinfo_page;
	xen_evtchn_clear(sh->evtchn_pending, port);
	char line[64];
	for (int i = 0; i < LINES; i++) {
		kit_snprintf(line, sizeof line, "KIT-CONSOLE ring line %d of %d\n", i + 1, LINES);
		KIT_CHECK(ring_write(line), "the backend stopped consuming at line %d (out_cons %u, out_prod %u)", i,
			  cons->out_cons, cons->out_prod);
	}
	KIT_CHECK(KIT_WAIT_FOR(cons->out_cons == cons->out_prod, 2000), "out_cons %u stuck behind out_prod %u",
		  cons->out_cons, cons->out_prod);
	KIT_CHECK(cons->out_prod > sizeof cons->out, "the output never wrapped (%u bytes)", cons->out_prod);
	KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, port), "the backend never notified the console port");
}

static void console_io_case(void)
{
	static const char msg[] = "KIT-CONSOLE console_io line\n";
	XEN_EXPECT_RC(HYPERVISOR_console_io(CONSOLEIO_write, sizeof msg - 1, (void *)msg), 0, "CONSOLEIO_write");
	XEN_EXPECT_RC(HYPERVISOR_console_io(CONSOLEIO_write, 16, (void *)0xdead00000000ull), -XEN_EFAULT, "CONSOLEIO_write(bad buffer)");
	XEN_EXPECT_RC(HYPERVISOR_console_io(CONSOLEIO_read, 0x80000000u, (void *)msg), -XEN_E2BIG, "CONSOLEIO_read(2^31)");
	XEN_EXPECT_RC(HYPERVISOR_console_io(7, 0, NULL), -XEN_ENOSYS, "console_io(7)");
}

static void input_case(void)
{
	KIT_CHECK(cons, "setup failed");
	KIT_CHECK(KIT_WAIT_FOR(cons->in_prod - cons->in_cons == INPUT_RING, 5000), "input ring holds %u bytes, expected %d",
		  cons->in_prod - cons->in_cons, INPUT_RING);
	for (XENCONS_RING_IDX i = cons->in_cons; i != cons->in_prod; i++)
		KIT_CHECK(cons->in[MASK_XENCONS_IDX(i, cons->in)] == 'i', "input byte %u is 0x%x", i,
			  cons->in[MASK_XENCONS_IDX(i, cons->in)]);
	char buf[32];
	memset(buf, 0, sizeof buf);
	XEN_EXPECT_RC(HYPERVISOR_console_io(CONSOLEIO_read, 16, (void *)0xdead00000000ull), -XEN_EFAULT, "CONSOLEIO_read(bad buffer)");
	long n = HYPERVISOR_console_io(CONSOLEIO_read, sizeof buf - 1, buf);
	KIT_CHECK(n == 10 && !strcmp(buf, "CONSOLEIO!"), "CONSOLEIO_read = %ld \"%s\"", n, buf);
	XEN_EXPECT_RC(HYPERVISOR_console_io(CONSOLEIO_read, sizeof buf, buf), 0, "CONSOLEIO_read with nothing queued");
	/* The guest takes its input; the ring is empty again and nothing else is owed to it. */
	cons->in_cons = cons->in_prod;
	xen_evtchn_send(port);
	kit_delay_ms(20);
	KIT_CHECK(cons->in_prod == cons->in_cons, "%u more input bytes appeared", cons->in_prod - cons->in_cons);
}

void kit_main(void)
{
	xen_require();
	kit_case("setup", setup_case);
	kit_case("output", output_case);
	kit_case("console-io", console_io_case);
	kit_case("input", input_case);
}

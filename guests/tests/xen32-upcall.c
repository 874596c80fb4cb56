/* Event channels as a 32-bit kernel takes them: compat ABI, 2-level, on 2
 * vCPUs, delivered through interrupts to an upcall handler that scans the
 * compat bitmaps (32-bit words and selector) as a kernel does. Run with
 * --vcpus 2. The kit runs with PAE paging, so every hypercall argument goes
 * through the VMM's PAE page walk; `pae-walk` checks that walk on its own.
 *
 * The delivery cases are xen-evtchn's (common/evtchn-test.c), built for the
 * compat ABI. Every port they use sits above 31 (unbound filler ports hold
 * 1..31), so its word and selector bit differ from the native layout's. */
#include "../kit32/kit32.h"
#include "../common/evtchn-test.h"

_Static_assert(sizeof(xen_ulong_t) == 4, "compat xen_ulong_t");
_Static_assert(offsetof(struct shared_info, evtchn_pending) == 0x800, "compat evtchn_pending");
_Static_assert(offsetof(struct vcpu_info, evtchn_pending_sel) == 4, "compat evtchn_pending_sel");

#define MIN_PORT 32
#define MAX_FILLERS 48

static uint8_t frames[3][4096] __attribute__((aligned(4096)));
static evtchn_port_t fillers[MAX_FILLERS];
static int nfillers;

/* ---- cases ---- */
extern uint64_t kit_pdpt[4];

/* PAE paging is on, and hypercall arguments are read and written through
 * it: at a virtual address backed by a frame elsewhere, across a page
 * boundary between two non-adjacent frames, and (-EFAULT) where nothing is
 * mapped. On AMD the CPU's own walks set the Accessed bit in the PDPTEs
 * first: the VMM's walk must take them as they are. */
static void pae_walk_case(void)
{
	uint64_t efer = rdmsr(0xc0000080);
	uintptr_t cr0 = read_cr0(), cr4 = read_cr4(), cr3 = read_cr3();
	KIT_CHECK((cr0 & 0x80000001u) == 0x80000001u && (cr4 & 0x20) && !(efer & 0x400),
		  "CR0 0x%x CR4 0x%x EFER 0x%llx: expected PG, PE, PAE and not long mode", cr0, cr4, U64(efer));
	KIT_CHECK(cr3 == (uintptr_t)kit_pdpt, "CR3 0x%x, the kit's PDPT is at %p", cr3, (void *)kit_pdpt);

	/* frames[2] then frames[0] at two adjacent pages of the kit's window. */
	uint32_t va = KIT_MAP_BASE + 0x1000, boundary = va + 0x1000;
	KIT_CHECK(kit_map_page(va, (uintptr_t)frames[2]) && kit_map_page(boundary, (uintptr_t)frames[0]),
		  "kit_map_page failed");
	memset(frames, 0xc5, sizeof frames);
	/* A written argument: 16 bytes of extraversion, 8 on each side. */
	xen_extraversion_t want;
	memset(&want, 0, sizeof want);
	XEN_EXPECT_RC(HYPERVISOR_xen_version(XENVER_extraversion, &want), 0, "xen_version(extraversion)");
	XEN_EXPECT_RC(HYPERVISOR_xen_version(XENVER_extraversion, (void *)(uintptr_t)(boundary - 8)), 0,
		      "xen_version(extraversion at 0x%x)", boundary - 8);
	KIT_CHECK(!memcmp(frames[2] + 4088, want, 8) && !memcmp(frames[0], want + 8, 8),
		  "extraversion written across the boundary did not land at the ends of the two frames");
	KIT_CHECK(frames[2][4087] == 0xc5 && frames[0][8] == 0xc5 && xen_find_not(frames[1], 4096, 0xc5) < 0,
		  "bytes written around the argument");
	/* A read and written argument: alloc_unbound's dom and remote_dom in the
	 * first frame, the port it returns in the second. */
	struct evtchn_alloc_unbound *a = (void *)(uintptr_t)(boundary - 4);
	a->dom = DOMID_SELF;
	a->remote_dom = DOMID_SELF;
	a->port = 0;
	XEN_EXPECT_RC(HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, a), 0, "alloc_unbound(argument at 0x%x)",
		      boundary - 4);
	evtchn_port_t port;
	memcpy(&port, frames[0], 4);
	kit_printf("KIT-XEN pae-walk: alloc_unbound across the boundary gave port %u; PDPTEs 0x%llx 0x%llx 0x%llx 0x%llx\n",
		   port, U64(kit_pdpt[0]), U64(kit_pdpt[1]), U64(kit_pdpt[2]), U64(kit_pdpt[3]));
	struct evtchn_status st;
	KIT_CHECK(port != 0 && xen_evtchn_status_is(port, EVTCHNSTAT_unbound, &st), "port %u from alloc_unbound", port);
	xen_evtchn_close(port);
	/* Nothing mapped: the whole argument, or its second half. */
	XEN_EXPECT_RC(HYPERVISOR_xen_version(XENVER_extraversion, (void *)KIT_UNMAPPED_VA), -XEN_EFAULT,
		      "xen_version(extraversion at unmapped 0x%x)", KIT_UNMAPPED_VA);
	XEN_EXPECT_RC(HYPERVISOR_xen_version(XENVER_extraversion, (void *)(KIT_UNMAPPED_VA - 8)), -XEN_EFAULT,
		      "xen_version(extraversion at 0x%x, half unmapped)", KIT_UNMAPPED_VA - 8);
	XEN_EXPECT_RC(HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, (void *)KIT_UNMAPPED_VA), -XEN_EFAULT,
		      "alloc_unbound(unmapped 0x%x)", KIT_UNMAPPED_VA);
	kit_unmap_page(boundary);
	XEN_EXPECT_RC(HYPERVISOR_xen_version(XENVER_extraversion, (void *)(uintptr_t)(boundary - 8)), -XEN_EFAULT,
		      "xen_version(extraversion at 0x%x after unmapping 0x%x)", boundary - 8, boundary);
	kit_unmap_page(va);
}

/* The kit's IDT takes exceptions with and without an error code. */
static void exceptions_case(void)
{
	kit_expect_exception(6, 2);
	__asm__ volatile("ud2");
	int n = kit_expect_done();
	KIT_CHECK(n == 1, "ud2: %d #UD taken, expected 1", n);
	uint32_t v = 0x600d;
	kit_expect_exception(14, 2);
	__asm__ volatile("movl (%1), %0" : "+r"(v) : "r"(KIT_UNMAPPED_VA) : "memory"); /* 8b /r, 2 bytes */
	n = kit_expect_done();
	KIT_CHECK(n == 1, "read of unmapped 0x%x: %d #PF taken, expected 1", KIT_UNMAPPED_VA, n);
	KIT_CHECK(kit_last_exception.cr2 == KIT_UNMAPPED_VA && kit_last_exception.error == 0 && v == 0x600d,
		  "#PF cr2 0x%llx error 0x%llx, expected 0x%x and 0 (not present, read, supervisor)",
		  U64(kit_last_exception.cr2), U64(kit_last_exception.error), KIT_UNMAPPED_VA);
}

static void shinfo_case(void)
{
	evt_map_shared_info_case();
	if (!evt_sh)
		return;
	/* Unbound filler ports hold 1..31 for the whole run. */
	evtchn_port_t p = 0;
	while (nfillers < MAX_FILLERS) {
		long rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p);
		KIT_CHECK(rc == 0, "alloc_unbound(DOMID_SELF, DOMID_SELF) = %ld %s", XEN_ERR(rc));
		fillers[nfillers++] = p;
		if (p >= MIN_PORT - 1)
			break;
	}
	KIT_CHECK(p >= MIN_PORT - 1, "filler ports only reached %u", p);
	kit_printf("KIT-XEN own domid %ld, %d filler ports\n", evt_own_domid, nfillers);
}

void kit_main(void)
{
	xen_require();
	evt_setup(MIN_PORT, 100 /* storm */);
	kit_case("pae-walk", pae_walk_case);
	kit_case("exceptions", exceptions_case);
	kit_case("map-shared-info", shinfo_case);
	kit_case("start-vcpus", evt_start_case);
	sti();
	kit_case("callback-vector", evt_callback_case);
	kit_case("upcall-vector", evt_upcall_vector_case);
	kit_case("loopback", evt_loopback_case);
	kit_case("bind-ipi", evt_ipi_case);
	kit_case("masked", evt_masked_case);
	kit_case("storm", evt_storm_case);
	cli();
	for (int i = 0; i < nfillers; i++)
		xen_evtchn_close(fillers[i]);
	kit_printf("KIT-XEN upcalls: LAPIC %u,%u callback %u,%u\n", evt_upcalls[0], evt_upcalls[1], evt_callbacks[0],
		   evt_callbacks[1]);
}

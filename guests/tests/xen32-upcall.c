/* Event channels as a 32-bit kernel takes them: compat ABI, 2-level, on 2
 * vCPUs, delivered through interrupts to an upcall handler that scans the
 * compat bitmaps (32-bit words and selector) as a kernel does. Run with
 * --vcpus 2. The kit runs with PAE paging, so every hypercall argument goes
 * through the VMM's PAE page walk; `pae-walk` checks that walk on its own.
 *
 * As in xen-evtchn (the native cases), upcalls come two ways: first the
 * HVM-wide callback vector (HVM_PARAM_CALLBACK_IRQ type 2), injected directly,
 * through an IDT stub of ours that never EOIs; then the per-vCPU vector
 * (HVMOP_set_evtchn_upcall_vector), a LAPIC interrupt the kit EOIs, which
 * can't be unset and takes precedence over the callback, hence the order.
 * Each vCPU handles only the ports bound to it (`mine`).
 *
 * Every port used sits above 31 (unbound filler ports hold 1..31), so its
 * word and selector bit differ from the native layout's. */
#include "../kit32/kit32.h"
#include "../common/xen.h"

_Static_assert(sizeof(xen_ulong_t) == 4, "compat xen_ulong_t");
_Static_assert(offsetof(struct shared_info, evtchn_pending) == 0x800, "compat evtchn_pending");
_Static_assert(offsetof(struct vcpu_info, evtchn_pending_sel) == 4, "compat evtchn_pending_sel");

#define UPCALL_VECTOR 0xe0   /* per-vCPU: LAPIC, EOI'd by the kit */
#define CALLBACK_VECTOR 0xf3 /* HVM_PARAM_CALLBACK_IRQ: not through the LAPIC, no EOI */
#define TIMER_VECTOR 0x40    /* below both: blocked if either stays in service */
#define NCPU 2
#define NPORTS XEN_EVTCHN_2L_PORTS
#define NWORDS XEN_EVTCHN_WORD_BITS
#define MIN_PORT 32
#define MAX_FILLERS 48
#define CALLBACK_EVENTS 20
#define STORM 100
#define SETTLE_MS 10 /* time for a duplicate or a stray event to show up */

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t frames[3][4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static int online;
static evtchn_port_t fillers[MAX_FILLERS];
static int nfillers;

static volatile uint32_t got[NCPU][NPORTS];
static volatile uint32_t upcalls[NCPU], callbacks[NCPU], ticks[NCPU];
static volatile xen_ulong_t mine[NCPU][NWORDS];

/* ---- upcall handling ---- */
static void scan(int cpu)
{
	if (sh && cpu < NCPU)
		xen_evtchn_2l_scan(sh, &sh->vcpu_info[cpu], mine[cpu], got[cpu]);
}

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu < NCPU)
		upcalls[cpu]++;
	scan(cpu);
}

/* The callback vector's IDT entry: no kit_trap, so no EOI. */
void kit_evtchn_callback_stub(void);
void kit_evtchn_on_callback(void);
void kit_evtchn_on_callback(void)
{
	int cpu = kit_cpu_index();
	if (cpu < NCPU)
		callbacks[cpu]++;
	scan(cpu);
}
__asm__(".text\n"
	".p2align 4\n"
	".globl kit_evtchn_callback_stub\n"
	"kit_evtchn_callback_stub:\n"
	"push %eax\npush %ecx\npush %edx\n"
	"cld\n"
	"call kit_evtchn_on_callback\n"
	"pop %edx\npop %ecx\npop %eax\n"
	"iret\n");

static void on_timer(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu < NCPU)
		ticks[cpu]++;
}

/* ---- port bookkeeping (IF=0 while binding, so an event that arrives with
 * the hypercall's return waits until the port is marked as ours) ---- */
static void own(evtchn_port_t p, int cpu)
{
	if (p >= NPORTS)
		return;
	for (int c = 0; c < NCPU; c++) {
		if (c == cpu)
			xen_evtchn_set(mine[c], p);
		else
			xen_evtchn_clear(mine[c], p);
	}
}

static void disown(evtchn_port_t p)
{
	if (p < NPORTS)
		for (int c = 0; c < NCPU; c++)
			xen_evtchn_clear(mine[c], p);
}

static void zero_counts(evtchn_port_t p)
{
	if (p < NPORTS)
		for (int c = 0; c < NCPU; c++)
			got[c][p] = 0;
}

static bool high_port(evtchn_port_t p, const char *what)
{
	if (p >= MIN_PORT && p < NPORTS)
		return true;
	kit_fail("%s gave port %u, expected %u..%u (the fillers hold the ports below)", what, p, MIN_PORT, NPORTS - 1);
	return false;
}

static long bind_ipi_on(uint32_t vcpu, evtchn_port_t *p)
{
	cli();
	long rc = xen_evtchn_bind_ipi(vcpu, p);
	if (rc == 0) {
		own(*p, (int)vcpu);
		zero_counts(*p);
	}
	sti();
	return rc;
}

/* An IPI port on each vCPU; a failure fails the case. */
static bool bind_ipi_pair(evtchn_port_t *p0, evtchn_port_t *p1)
{
	for (uint32_t cpu = 0; cpu < 2; cpu++) {
		evtchn_port_t *p = cpu ? p1 : p0;
		long rc = bind_ipi_on(cpu, p);
		if (rc) {
			kit_fail("bind_ipi(vcpu %u) = %ld %s", cpu, XEN_ERR(rc));
			return false;
		}
		if (!high_port(*p, "bind_ipi"))
			return false;
	}
	return true;
}

static long close_port(evtchn_port_t p)
{
	long rc = xen_evtchn_close(p);
	disown(p);
	return rc;
}

/* A case's cleanup: unmasks and closes every port it bound (0: none). */
static void close_ports(const evtchn_port_t *ports, int n)
{
	for (int i = 0; i < n; i++)
		if (ports[i]) {
			xen_evtchn_clear(sh->evtchn_mask, ports[i]);
			close_port(ports[i]);
		}
}

static long ap_send(long port) { return xen_evtchn_send((evtchn_port_t)port); }

static long ap_set_upcall_vector(long vector)
{
	return xen_set_upcall_vector(1, (uint8_t)vector);
}

/* Arms this vCPU's LAPIC timer; 1 if it fired, 2 if also the callback vector
 * was in service before, 0 if it didn't fire. */
static long timer_check(long cpu)
{
	bool stuck = kit_lapic_in_service(CALLBACK_VECTOR);
	uint32_t before = ticks[cpu];
	kit_lapic_timer_oneshot(TIMER_VECTOR, 100000);
	bool fired = KIT_WAIT_FOR(ticks[cpu] != before, 1000);
	return fired ? (stuck ? 2 : 1) : 0;
}

/* An event made pending while no upcall is configured: pending, selector
 * bit port/32 and upcall_pending set in shared_info, nothing injected. */
static bool pend_quietly(evtchn_port_t p, int cpu)
{
	long rc = xen_evtchn_send(p);
	if (rc) {
		kit_fail("send(%u) = %ld %s", p, XEN_ERR(rc));
		return false;
	}
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	if (!xen_evtchn_test(sh->evtchn_pending, p) || !((vi->evtchn_pending_sel >> (p / NWORDS)) & 1) ||
	    !vi->evtchn_upcall_pending) {
		kit_fail("no upcall configured: send(%u) left pending %d, selector 0x%x, upcall_pending %u on vCPU %d", p,
			 xen_evtchn_test(sh->evtchn_pending, p), (unsigned)vi->evtchn_pending_sel,
			 vi->evtchn_upcall_pending, cpu);
		return false;
	}
	return true;
}

/* Takes an event the upcall never came for, as a polling guest would. */
static void take_by_hand(evtchn_port_t p, int cpu)
{
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	vi->evtchn_upcall_pending = 0;
	vi->evtchn_pending_sel = 0;
	xen_evtchn_clear(sh->evtchn_pending, p);
}

/* Once an upcall route is set: waits for the event each vCPU had pending
 * before (*e0, *e1: whether it came), taking one that never came by hand. */
static void take_early_events(evtchn_port_t p0, evtchn_port_t p1, bool *e0, bool *e1)
{
	*e0 = KIT_WAIT_FOR(got[0][p0] >= 1, 500);
	*e1 = KIT_WAIT_FOR(got[1][p1] >= 1, 500);
	if (!*e0)
		take_by_hand(p0, 0);
	if (!*e1)
		take_by_hand(p1, 1);
	kit_delay_ms(SETTLE_MS);
}

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
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", XEN_ERR(rc));
	sh = (volatile struct shared_info *)shinfo_page;
	/* Unbound filler ports hold 1..31 for the whole run. */
	evtchn_port_t p = 0;
	while (nfillers < MAX_FILLERS) {
		rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p);
		KIT_CHECK(rc == 0, "alloc_unbound(DOMID_SELF, DOMID_SELF) = %ld %s", XEN_ERR(rc));
		fillers[nfillers++] = p;
		if (p >= MIN_PORT - 1)
			break;
	}
	KIT_CHECK(p >= MIN_PORT - 1, "filler ports only reached %u", p);
	kit_printf("KIT-XEN own domid %ld, %d filler ports\n", xen_own_domid(), nfillers);
}

static void start_case(void)
{
	online = kit_smp_start(kit_ap_serve_interruptible);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	KIT_CHECK(kit_ap_serving(3000), "vCPU 1 did not get ready");
}

static void callback_body(evtchn_port_t *p0, evtchn_port_t *p1)
{
	if (!bind_ipi_pair(p0, p1))
		return;
	/* One event each, pending before the callback exists: Xen checks
	 * evtchn_upcall_pending at every VM entry, so setting it delivers them. */
	if (!pend_quietly(*p0, 0) || !pend_quietly(*p1, 1))
		return;
	long rc = xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
				    ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | CALLBACK_VECTOR);
	KIT_CHECK(rc == 0, "set HVM_PARAM_CALLBACK_IRQ vector 0x%x = %ld %s", CALLBACK_VECTOR, XEN_ERR(rc));
	bool e0, e1;
	take_early_events(*p0, *p1, &e0, &e1);
	KIT_CHECK(e0 && e1,
		  "event pending before HVM_PARAM_CALLBACK_IRQ was set never delivered (vCPU 0 %s, vCPU 1 %s); Xen injects the callback whenever evtchn_upcall_pending is set",
		  e0 ? "ok" : "lost", e1 ? "ok" : "lost");
	KIT_CHECK(got[0][*p0] == 1 && got[1][*p1] == 1, "pending before: counts %u,%u, expected 1,1", got[0][*p0],
		  got[1][*p1]);
	zero_counts(*p0);
	zero_counts(*p1);
	uint32_t cb0 = callbacks[0], cb1 = callbacks[1];
	for (int cpu = 0; cpu < NCPU; cpu++) {
		evtchn_port_t p = cpu ? *p1 : *p0;
		for (uint32_t i = 1; i <= CALLBACK_EVENTS; i++) {
			rc = xen_evtchn_send(p);
			KIT_CHECK(rc == 0, "send(%u) #%u = %ld %s", p, i, XEN_ERR(rc));
			KIT_CHECK(KIT_WAIT_FOR(got[cpu][p] >= i, 1000),
				  "vCPU %d: event %u of %u (port %u) not delivered; %u callback upcalls, pending %d, sel 0x%x, upcall_pending %u",
				  cpu, i, CALLBACK_EVENTS, p, callbacks[cpu], xen_evtchn_test(sh->evtchn_pending, p),
				  (unsigned)sh->vcpu_info[cpu].evtchn_pending_sel, sh->vcpu_info[cpu].evtchn_upcall_pending);
		}
	}
	kit_delay_ms(SETTLE_MS);
	kit_printf("KIT-XEN callback vector: ports %u,%u got %u,%u; callback upcalls %u,%u, LAPIC upcalls %u,%u\n", *p0,
		   *p1, got[0][*p0], got[1][*p1], callbacks[0] - cb0, callbacks[1] - cb1, upcalls[0], upcalls[1]);
	KIT_CHECK(got[0][*p0] == CALLBACK_EVENTS && got[1][*p1] == CALLBACK_EVENTS && got[1][*p0] == 0 && got[0][*p1] == 0,
		  "counts %u and %u (crossed %u,%u), expected %u each", got[0][*p0], got[1][*p1], got[1][*p0], got[0][*p1],
		  CALLBACK_EVENTS);
	KIT_CHECK(callbacks[0] != cb0 && callbacks[1] != cb1, "no upcalls through vector 0x%x (%u, %u)", CALLBACK_VECTOR,
		  callbacks[0] - cb0, callbacks[1] - cb1);
	KIT_CHECK(upcalls[0] == 0 && upcalls[1] == 0, "%u,%u upcalls at vector 0x%x, which was never set", upcalls[0],
		  upcalls[1], UPCALL_VECTOR);
	long t = timer_check(0);
	KIT_CHECK(t != 2, "vCPU 0: vector 0x%x in the LAPIC ISR after the callbacks (injected through the LAPIC?)",
		  CALLBACK_VECTOR);
	KIT_CHECK(t == 1, "vCPU 0: LAPIC timer at vector 0x%x blocked after the callbacks", TIMER_VECTOR);
	KIT_CHECK(kit_ap_call(timer_check, 1, &t), "vCPU 1 did not answer");
	KIT_CHECK(t != 2, "vCPU 1: vector 0x%x in the LAPIC ISR after the callbacks (injected through the LAPIC?)",
		  CALLBACK_VECTOR);
	KIT_CHECK(t == 1, "vCPU 1: LAPIC timer at vector 0x%x blocked after the callbacks", TIMER_VECTOR);
}

static void callback_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	evtchn_port_t p0 = 0, p1 = 0;
	callback_body(&p0, &p1);
	long rc = xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ, 0);
	close_ports((evtchn_port_t[]){ p0, p1 }, 2);
	KIT_CHECK(rc == 0, "set HVM_PARAM_CALLBACK_IRQ 0 = %ld %s", XEN_ERR(rc));
}

/* Each vCPU sets its own vector (as Linux does). An event already pending
 * then arrives at once: Xen asserts the upcall when the vector is set. */
static bool vectors_set;

static long set_both_vectors(void)
{
	long rc = xen_set_upcall_vector(0, UPCALL_VECTOR);
	if (rc) {
		kit_fail("set_evtchn_upcall_vector(vcpu 0, 0x%x) = %ld %s", UPCALL_VECTOR, XEN_ERR(rc));
		return rc;
	}
	if (!kit_ap_call(ap_set_upcall_vector, UPCALL_VECTOR, &rc)) {
		kit_fail("vCPU 1 did not answer");
		return -1;
	}
	if (rc) {
		kit_fail("vCPU 1: set_evtchn_upcall_vector(vcpu 1, 0x%x) = %ld %s", UPCALL_VECTOR, XEN_ERR(rc));
		return rc;
	}
	vectors_set = true;
	return 0;
}

static void upcall_vector_body(evtchn_port_t *p0, evtchn_port_t *p1)
{
	if (!bind_ipi_pair(p0, p1) || !pend_quietly(*p0, 0) || !pend_quietly(*p1, 1))
		return;
	if (set_both_vectors())
		return;
	bool e0, e1;
	take_early_events(*p0, *p1, &e0, &e1);
	KIT_CHECK(e0 && e1,
		  "event pending when the vector was set never delivered (vCPU 0 %s, vCPU 1 %s); Xen asserts the upcall in set_evtchn_upcall_vector",
		  e0 ? "ok" : "lost", e1 ? "ok" : "lost");
	KIT_CHECK(got[0][*p0] == 1 && got[1][*p1] == 1 && got[1][*p0] == 0 && got[0][*p1] == 0,
		  "counts %u,%u (crossed %u,%u), expected 1,1", got[0][*p0], got[1][*p1], got[1][*p0], got[0][*p1]);
	KIT_CHECK(upcalls[0] >= 1 && upcalls[1] >= 1 && !kit_lapic_in_service(UPCALL_VECTOR),
		  "LAPIC upcalls %u,%u, vector 0x%x in service %d", upcalls[0], upcalls[1], UPCALL_VECTOR,
		  kit_lapic_in_service(UPCALL_VECTOR));
}

static void upcall_vector_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	evtchn_port_t p0 = 0, p1 = 0;
	upcall_vector_body(&p0, &p1);
	if (!vectors_set)
		set_both_vectors();
	close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

/* alloc_unbound(DOMID_SELF) + bind_interdomain, both ends on vCPU 0. */
static void loopback_body(evtchn_port_t *a, evtchn_port_t *b)
{
	cli();
	long rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, a);
	if (rc == 0) {
		own(*a, 0);
		zero_counts(*a);
		rc = xen_evtchn_bind_interdomain(DOMID_SELF, *a, b);
		if (rc == 0) {
			own(*b, 0);
			zero_counts(*b);
		}
	}
	sti();
	KIT_CHECK(rc == 0, "alloc_unbound + bind_interdomain(DOMID_SELF) = %ld %s", XEN_ERR(rc));
	kit_printf("KIT-XEN loopback ports a=%u b=%u\n", *a, *b);
	if (!high_port(*a, "alloc_unbound") || !high_port(*b, "bind_interdomain"))
		return;
	/* Xen marks the new port pending at bind: one event through the interrupt. */
	KIT_WAIT_FOR(got[0][*b] >= 1, 1000);
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[0][*b] == 1 && got[1][*b] == 0,
		  "bind_interdomain: %u event(s) on the new port on vCPU 0, %u on vCPU 1; Xen marks it pending once", got[0][*b],
		  got[1][*b]);
	zero_counts(*b);
	XEN_EXPECT_RC(xen_evtchn_send(*a), 0, "send(a=%u)", *a);
	KIT_CHECK(KIT_WAIT_FOR(got[0][*b] >= 1, 1000), "send on a: nothing arrived on b (pending %d, sel 0x%x)",
		  xen_evtchn_test(sh->evtchn_pending, *b), (unsigned)sh->vcpu_info[0].evtchn_pending_sel);
	XEN_EXPECT_RC(xen_evtchn_send(*b), 0, "send(b=%u)", *b);
	KIT_CHECK(KIT_WAIT_FOR(got[0][*a] >= 1, 1000), "send on b: nothing arrived on a (pending %d)",
		  xen_evtchn_test(sh->evtchn_pending, *a));
	/* From vCPU 1: still arrives on vCPU 0, the port's. */
	long r = 0;
	KIT_CHECK(kit_ap_call(ap_send, *a, &r), "vCPU 1 did not answer");
	KIT_CHECK(r == 0, "vCPU 1: send(a) = %ld %s", XEN_ERR(r));
	KIT_CHECK(KIT_WAIT_FOR(got[0][*b] >= 2, 1000), "vCPU 1's send on a: nothing arrived on b (vCPU 0)");
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[0][*a] == 1 && got[0][*b] == 2 && got[1][*a] == 0 && got[1][*b] == 0,
		  "counts vCPU0 a=%u b=%u, vCPU1 a=%u b=%u; expected 1, 2, 0, 0", got[0][*a], got[0][*b], got[1][*a],
		  got[1][*b]);
}

static void loopback_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	evtchn_port_t a = 0, b = 0;
	loopback_body(&a, &b);
	close_ports((evtchn_port_t[]){ a, b }, 2);
}

static void ipi_body(evtchn_port_t *p0, evtchn_port_t *p1)
{
	if (!bind_ipi_pair(p0, p1))
		return;
	kit_printf("KIT-XEN ipi ports %u (vCPU 0), %u (vCPU 1)\n", *p0, *p1);
	XEN_EXPECT_RC(xen_evtchn_send(*p1), 0, "send(%u)", *p1);
	KIT_CHECK(KIT_WAIT_FOR(got[1][*p1] >= 1, 1000), "BSP -> AP: nothing arrived on vCPU 1 (pending %d, got on vCPU 0 %u)",
		  xen_evtchn_test(sh->evtchn_pending, *p1), got[0][*p1]);
	long rc = -1;
	KIT_CHECK(kit_ap_call(ap_send, *p0, &rc), "vCPU 1 did not answer");
	KIT_CHECK(rc == 0, "vCPU 1: send(%u) = %ld %s", *p0, XEN_ERR(rc));
	KIT_CHECK(KIT_WAIT_FOR(got[0][*p0] >= 1, 1000), "AP -> BSP: nothing arrived on vCPU 0 (pending %d)",
		  xen_evtchn_test(sh->evtchn_pending, *p0));
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[1][*p1] == 1 && got[0][*p0] == 1 && got[0][*p1] == 0 && got[1][*p0] == 0,
		  "counts: vCPU1 got %u on its port, vCPU0 %u on its; crossed %u,%u", got[1][*p1], got[0][*p0],
		  got[0][*p1], got[1][*p0]);
}

static void ipi_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	evtchn_port_t p0 = 0, p1 = 0;
	ipi_body(&p0, &p1);
	close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

/* Masked: pending set, nothing else, no interrupt; unmask delivers once, to
 * the port's vCPU (the BSP unmasks both). */
static void masked_one(evtchn_port_t p, int cpu)
{
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	unsigned int w = p / NWORDS;
	xen_evtchn_set(sh->evtchn_mask, p);
	uint32_t u0 = upcalls[cpu];
	XEN_EXPECT_RC(xen_evtchn_send(p), 0, "send(masked %u)", p);
	kit_delay_ms(20);
	bool selbit = (vi->evtchn_pending_sel >> w) & 1;
	KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, p), "masked port %u: pending bit not set by send", p);
	KIT_CHECK(got[cpu][p] == 0 && upcalls[cpu] == u0, "masked port %u: %u upcall(s) on vCPU %d", p,
		  upcalls[cpu] - u0, cpu);
	KIT_CHECK(!selbit && !vi->evtchn_upcall_pending,
		  "masked port %u: selector bit %u = %d, upcall_pending %u on vCPU %d; Xen leaves both alone", p, w, selbit,
		  vi->evtchn_upcall_pending, cpu);
	XEN_EXPECT_RC(xen_evtchn_unmask(p), 0, "unmask(%u)", p);
	KIT_CHECK(KIT_WAIT_FOR(got[cpu][p] >= 1, 1000), "unmask(%u): no upcall on vCPU %d (pending %d, mask %d)", p, cpu,
		  xen_evtchn_test(sh->evtchn_pending, p), xen_evtchn_test(sh->evtchn_mask, p));
	XEN_EXPECT_RC(xen_evtchn_unmask(p), 0, "second unmask(%u)", p);
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[cpu][p] == 1 && got[1 - cpu][p] == 0, "port %u: vCPU %d got %u, vCPU %d got %u; expected 1 and 0",
		  p, cpu, got[cpu][p], 1 - cpu, got[1 - cpu][p]);
}

static void masked_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	evtchn_port_t p0 = 0, p1 = 0;
	if (bind_ipi_pair(&p0, &p1)) {
		masked_one(p0, 0);
		masked_one(p1, 1);
	}
	close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

/* Each side sends STORM events to the other's IPI port, each once the
 * previous one is no longer pending, then waits for its own STORM. */
static evtchn_port_t storm_port[NCPU];
static volatile uint32_t storm_sent[NCPU];
static volatile long storm_err[NCPU];

static long storm_side(long cpu)
{
	evtchn_port_t to = storm_port[1 - cpu], me = storm_port[cpu];
	for (int i = 0; i < STORM; i++) {
		if (!KIT_WAIT_FOR(!xen_evtchn_test(sh->evtchn_pending, to), 2000)) {
			storm_err[cpu] = 1;
			break;
		}
		long rc = xen_evtchn_send(to);
		if (rc) {
			storm_err[cpu] = rc;
			break;
		}
		storm_sent[cpu]++;
	}
	KIT_WAIT_FOR(got[cpu][me] >= STORM, 5000);
	return 0;
}

static void storm_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	if (!bind_ipi_pair(&storm_port[0], &storm_port[1])) {
		close_ports(storm_port, 2);
		return;
	}
	evtchn_port_t p0 = storm_port[0], p1 = storm_port[1];
	bool started = kit_ap_start(storm_side, 1);
	storm_side(0);
	bool finished = started && kit_ap_wait(15000, NULL);
	kit_delay_ms(SETTLE_MS);
	kit_printf("KIT-XEN storm: vCPU0 sent %u got %u, vCPU1 sent %u got %u, crossed %u,%u, errors %ld,%ld\n",
		   storm_sent[0], got[0][p0], storm_sent[1], got[1][p1], got[1][p0], got[0][p1], storm_err[0],
		   storm_err[1]);
	close_ports(storm_port, 2);
	KIT_CHECK(started && finished, "vCPU 1 did not finish");
	KIT_CHECK(storm_err[0] == 0 && storm_err[1] == 0,
		  "senders stopped: vCPU0 %ld, vCPU1 %ld (1: the previous event stayed pending)", storm_err[0],
		  storm_err[1]);
	KIT_CHECK(storm_sent[0] == STORM && storm_sent[1] == STORM, "sent %u and %u", storm_sent[0], storm_sent[1]);
	KIT_CHECK(got[1][p1] == storm_sent[0] && got[0][p0] == storm_sent[1], "vCPU1 got %u of %u, vCPU0 got %u of %u",
		  got[1][p1], storm_sent[0], got[0][p0], storm_sent[1]);
	KIT_CHECK(got[1][p0] == 0 && got[0][p1] == 0, "events on the wrong vCPU: %u, %u", got[1][p0], got[0][p1]);
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	kit_set_irq_handler(TIMER_VECTOR, on_timer);
	kit_set_idt_gate(CALLBACK_VECTOR, kit_evtchn_callback_stub);
	kit_case("pae-walk", pae_walk_case);
	kit_case("exceptions", exceptions_case);
	kit_case("map-shared-info", shinfo_case);
	kit_case("start-vcpus", start_case);
	sti();
	kit_case("callback-vector", callback_case);
	kit_case("upcall-vector", upcall_vector_case);
	kit_case("loopback", loopback_case);
	kit_case("bind-ipi", ipi_case);
	kit_case("masked", masked_case);
	kit_case("storm", storm_case);
	cli();
	for (int i = 0; i < nfillers; i++)
		xen_evtchn_close(fillers[i]);
	kit_printf("KIT-XEN upcalls: LAPIC %u,%u callback %u,%u\n", upcalls[0], upcalls[1], callbacks[0], callbacks[1]);
}

/* The event-channel delivery cases xen-evtchn and xen32-upcall share
 * (evtchn-test.h). */
#include "evtchn-test.h"

#define UPCALL_VECTOR 0xe0   /* per-vCPU: LAPIC, EOI'd by the kit */
#define CALLBACK_VECTOR 0xf3 /* HVM_PARAM_CALLBACK_IRQ: not through the LAPIC, no EOI */
#define TIMER_VECTOR 0x40    /* below both: blocked if either stays in service */

volatile struct shared_info *evt_sh;
int evt_online;
long evt_own_domid = -1;
volatile uint32_t evt_got[EVT_NCPU][EVT_NPORTS];
volatile uint32_t evt_upcalls[EVT_NCPU], evt_callbacks[EVT_NCPU];
volatile xen_ulong_t evt_mine[EVT_NCPU][EVT_NPORTS / XEN_EVTCHN_WORD_BITS];

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile uint32_t ticks[EVT_NCPU];
static evtchn_port_t min_port;
static uint32_t storm_events;
static uint32_t callback_events = 20; /* cmdline callback-events= */
static bool vectors_set;

/* ---- upcall handling ---- */
static void scan(int cpu)
{
	if (evt_sh && cpu < EVT_NCPU)
		xen_evtchn_2l_scan(evt_sh, &evt_sh->vcpu_info[cpu], evt_mine[cpu], evt_got[cpu]);
}

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu < EVT_NCPU)
		evt_upcalls[cpu]++;
	scan(cpu);
}

/* The callback vector's IDT entry: no kit_trap, so no EOI. It saves the
 * registers a C call may clobber. */
void evt_callback_stub(void);
void evt_on_callback(void);
void evt_on_callback(void)
{
	int cpu = kit_cpu_index();
	if (cpu < EVT_NCPU)
		evt_callbacks[cpu]++;
	scan(cpu);
}
#ifdef __x86_64__
__asm__(".text\n"
	".p2align 4\n"
	".globl evt_callback_stub\n"
	"evt_callback_stub:\n"
	"push %rax\npush %rcx\npush %rdx\npush %rsi\npush %rdi\n"
	"push %r8\npush %r9\npush %r10\npush %r11\n"
	"cld\n"
	"call evt_on_callback\n"
	"pop %r11\npop %r10\npop %r9\npop %r8\n"
	"pop %rdi\npop %rsi\npop %rdx\npop %rcx\npop %rax\n"
	"iretq\n");
#else
__asm__(".text\n"
	".p2align 4\n"
	".globl evt_callback_stub\n"
	"evt_callback_stub:\n"
	"push %eax\npush %ecx\npush %edx\n"
	"cld\n"
	"call evt_on_callback\n"
	"pop %edx\npop %ecx\npop %eax\n"
	"iret\n");
#endif

static void on_timer(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu < EVT_NCPU)
		ticks[cpu]++;
}

void evt_setup(evtchn_port_t min, uint32_t storm)
{
	min_port = min;
	storm_events = storm;
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	kit_set_irq_handler(TIMER_VECTOR, on_timer);
	kit_set_idt_gate(CALLBACK_VECTOR, evt_callback_stub);
	uint64_t n;
	if (kit_cmdline_u64("callback-events", &n) && n >= 1 && n <= 100000)
		callback_events = (uint32_t)n;
}

/* ---- port bookkeeping ---- */
void evt_own(evtchn_port_t p, int cpu)
{
	if (p >= EVT_NPORTS)
		return;
	for (int c = 0; c < EVT_NCPU; c++) {
		if (c == cpu)
			xen_evtchn_set(evt_mine[c], p);
		else
			xen_evtchn_clear(evt_mine[c], p);
	}
}

void evt_disown(evtchn_port_t p)
{
	if (p < EVT_NPORTS)
		for (int c = 0; c < EVT_NCPU; c++)
			xen_evtchn_clear(evt_mine[c], p);
}

void evt_zero_counts(evtchn_port_t p)
{
	if (p < EVT_NPORTS)
		for (int c = 0; c < EVT_NCPU; c++)
			evt_got[c][p] = 0;
}

static bool port_in_range(evtchn_port_t p, const char *what)
{
	if (p >= min_port && p < EVT_NPORTS)
		return true;
	kit_fail("%s gave port %u, expected %u..%u", what, p, min_port, EVT_NPORTS - 1);
	return false;
}

long evt_bind_ipi_on(uint32_t vcpu, evtchn_port_t *p)
{
	cli();
	long rc = xen_evtchn_bind_ipi(vcpu, p);
	if (rc == 0) {
		evt_own(*p, (int)vcpu);
		evt_zero_counts(*p);
	}
	sti();
	return rc;
}

/* An IPI port on each vCPU; a failure fails the case. */
static bool bind_ipi_pair(evtchn_port_t *p0, evtchn_port_t *p1)
{
	for (uint32_t cpu = 0; cpu < 2; cpu++) {
		evtchn_port_t *p = cpu ? p1 : p0;
		long rc = evt_bind_ipi_on(cpu, p);
		if (rc) {
			kit_fail("bind_ipi(vcpu %u) = %ld %s", cpu, XEN_ERR(rc));
			return false;
		}
		if (!port_in_range(*p, "bind_ipi"))
			return false;
	}
	return true;
}

/* Xen marks b pending when binding (a notification may have been lost on
 * the unbound end). */
long evt_loopback(evtchn_port_t *a, evtchn_port_t *b, uint32_t *bind_events, const char **what)
{
	cli();
	long rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, a);
	if (rc) {
		sti();
		*what = "alloc_unbound(DOMID_SELF, remote DOMID_SELF)";
		return rc;
	}
	evt_own(*a, 0);
	evt_zero_counts(*a);
	rc = xen_evtchn_bind_interdomain(DOMID_SELF, *a, b);
	if (rc == 0) {
		evt_own(*b, 0);
		evt_zero_counts(*b);
	}
	sti();
	if (rc) {
		*what = "bind_interdomain(DOMID_SELF, a)";
		xen_evtchn_close(*a);
		evt_disown(*a);
		return rc;
	}
	KIT_WAIT_FOR(evt_got[0][*b] >= 1, 300);
	kit_delay_ms(EVT_SETTLE_MS);
	if (bind_events)
		*bind_events = evt_got[0][*b] + evt_got[1][*b];
	evt_zero_counts(*a);
	evt_zero_counts(*b);
	return 0;
}

long evt_close_port(evtchn_port_t p)
{
	long rc = xen_evtchn_close(p);
	evt_disown(p);
	return rc;
}

/* So that the next case starts clean. */
void evt_close_ports(const evtchn_port_t *ports, int n)
{
	for (int i = 0; i < n; i++)
		if (ports[i]) {
			xen_evtchn_clear(evt_sh->evtchn_mask, ports[i]);
			evt_close_port(ports[i]);
		}
}

long evt_ap_send(long port) { return xen_evtchn_send((evtchn_port_t)port); }

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

bool evt_own_domid_is(uint16_t dom, const char *what)
{
	if (evt_own_domid >= 0 && dom != evt_own_domid) {
		kit_fail("%s dom %u, expected our own domid %ld", what, dom, evt_own_domid);
		return false;
	}
	if (dom == DOMID_SELF) {
		kit_fail("%s dom DOMID_SELF: Xen reports the real domid", what);
		return false;
	}
	return true;
}

/* An event made pending while no upcall is configured: pending, selector
 * and upcall_pending set in shared_info, nothing injected. */
static bool pend_quietly(evtchn_port_t p, int cpu)
{
	long rc = xen_evtchn_send(p);
	if (rc) {
		kit_fail("send(%u) = %ld %s", p, XEN_ERR(rc));
		return false;
	}
	volatile struct vcpu_info *vi = &evt_sh->vcpu_info[cpu];
	if (!xen_evtchn_test(evt_sh->evtchn_pending, p) || !((vi->evtchn_pending_sel >> (p / XEN_EVTCHN_WORD_BITS)) & 1) ||
	    !vi->evtchn_upcall_pending) {
		kit_fail("no upcall configured: send(%u) left pending %d, selector 0x%llx, upcall_pending %u on vCPU %d", p,
			 xen_evtchn_test(evt_sh->evtchn_pending, p), U64(vi->evtchn_pending_sel), vi->evtchn_upcall_pending,
			 cpu);
		return false;
	}
	return true;
}

/* Takes an event the upcall never came for, as a polling guest would. */
static void take_by_hand(evtchn_port_t p, int cpu)
{
	volatile struct vcpu_info *vi = &evt_sh->vcpu_info[cpu];
	vi->evtchn_upcall_pending = 0;
	vi->evtchn_pending_sel = 0;
	xen_evtchn_clear(evt_sh->evtchn_pending, p);
}

/* Once an upcall route is set: waits for the event each vCPU had pending
 * before (*e0, *e1: whether it came), taking one that never came by hand. */
static void take_early_events(evtchn_port_t p0, evtchn_port_t p1, bool *e0, bool *e1)
{
	*e0 = KIT_WAIT_FOR(evt_got[0][p0] >= 1, 500);
	*e1 = KIT_WAIT_FOR(evt_got[1][p1] >= 1, 500);
	if (!*e0)
		take_by_hand(p0, 0);
	if (!*e1)
		take_by_hand(p1, 1);
	kit_delay_ms(EVT_SETTLE_MS);
}

/* ---- cases ---- */
void evt_map_shared_info_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", XEN_ERR(rc));
	evt_sh = (volatile struct shared_info *)shinfo_page;
	evt_own_domid = xen_own_domid();
}

void evt_start_case(void)
{
	evt_online = kit_smp_start(kit_ap_serve_interruptible);
	KIT_CHECK(evt_online >= 2, "only %d vCPU(s) online: run with --vcpus 2", evt_online);
	KIT_CHECK(kit_ap_serving(3000), "vCPU 1 did not get ready");
}

/* vCPU 1, 20 ms after the call: one event to vCPU 0's port. */
static long send_later(long port)
{
	kit_delay_ms(20);
	return xen_evtchn_send((evtchn_port_t)port);
}

#define HALT_FALLBACK_MS 500
/* vCPU 0 halts (sti; hlt) until vCPU 1's event on p0 arrives, with its LAPIC
 * timer armed to end the wait: true when the event woke it, not the timer. A
 * halted CPU takes the callback vector as any interrupt (Linux idles so). */
static bool halted_wakes(evtchn_port_t p0)
{
	uint32_t want = evt_got[0][p0] + 1, tick = ticks[0];
	kit_lapic_timer_oneshot(TIMER_VECTOR, HALT_FALLBACK_MS * 1000000u); /* 1 GHz: KVM's LAPIC bus clock */
	if (!kit_ap_start(send_later, p0))
		return false;
	cli(); /* checked with interrupts off, so none comes between the check and the hlt */
	while (evt_got[0][p0] < want && ticks[0] == tick) {
		sti_hlt();
		cli();
	}
	sti(); /* as the case runs */
	bool woke = evt_got[0][p0] >= want && ticks[0] == tick;
	kit_lapic_write(LAPIC_TIMER_INIT, 0);
	long rc = -1;
	return kit_ap_wait(1000, &rc) && rc == 0 && woke;
}

static void callback_body(evtchn_port_t *p0, evtchn_port_t *p1)
{
	if (!bind_ipi_pair(p0, p1))
		return;
	/* One event each, pending before the callback exists: the callback is
	 * level-triggered on evtchn_upcall_pending (Xen checks it at every VM
	 * entry), so setting it delivers them. */
	if (!pend_quietly(*p0, 0) || !pend_quietly(*p1, 1))
		return;
	long rc = xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
				    ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | CALLBACK_VECTOR);
	KIT_CHECK(rc == 0, "set HVM_PARAM_CALLBACK_IRQ vector 0x%x = %ld %s", CALLBACK_VECTOR, XEN_ERR(rc));
	bool e0, e1;
	take_early_events(*p0, *p1, &e0, &e1);
	uint32_t early0 = evt_got[0][*p0], early1 = evt_got[1][*p1];
	evt_zero_counts(*p0);
	evt_zero_counts(*p1);
	uint32_t cb0 = evt_callbacks[0], cb1 = evt_callbacks[1];
	for (int cpu = 0; cpu < EVT_NCPU; cpu++) {
		evtchn_port_t p = cpu ? *p1 : *p0;
		for (uint32_t i = 1; i <= callback_events; i++) {
			rc = xen_evtchn_send(p);
			KIT_CHECK(rc == 0, "send(%u) #%u = %ld %s", p, i, XEN_ERR(rc));
			KIT_CHECK(KIT_WAIT_FOR(evt_got[cpu][p] >= i, 1000),
				  "vCPU %d: event %u of %u (port %u) not delivered; %u callback upcalls, pending %d, sel 0x%llx, upcall_pending %u",
				  cpu, i, callback_events, p, evt_callbacks[cpu], xen_evtchn_test(evt_sh->evtchn_pending, p),
				  U64(evt_sh->vcpu_info[cpu].evtchn_pending_sel), evt_sh->vcpu_info[cpu].evtchn_upcall_pending);
		}
	}
	kit_delay_ms(EVT_SETTLE_MS);
	kit_printf("KIT-XEN callback vector: ports %u,%u got %u,%u; callback upcalls %u,%u, LAPIC upcalls %u,%u; pending before: %s,%s\n",
		   *p0, *p1, evt_got[0][*p0], evt_got[1][*p1], evt_callbacks[0] - cb0, evt_callbacks[1] - cb1,
		   evt_upcalls[0], evt_upcalls[1], e0 ? "delivered" : "lost", e1 ? "delivered" : "lost");
	KIT_CHECK(evt_got[0][*p0] == callback_events && evt_got[1][*p1] == callback_events && evt_got[1][*p0] == 0 &&
			  evt_got[0][*p1] == 0,
		  "counts %u and %u (crossed %u,%u), expected %u each", evt_got[0][*p0], evt_got[1][*p1], evt_got[1][*p0],
		  evt_got[0][*p1], callback_events);
	KIT_CHECK(halted_wakes(*p0), "vCPU 0 halted: vCPU 1's event did not wake it before its LAPIC timer (%u ms)",
		  HALT_FALLBACK_MS);
	/* A handler may take the next event in the same upcall (it rescans while
	 * upcall_pending is set again), so fewer upcalls than events is fine. */
	KIT_CHECK(evt_callbacks[0] != cb0 && evt_callbacks[1] != cb1, "no upcalls through vector 0x%x (%u, %u)",
		  CALLBACK_VECTOR, evt_callbacks[0] - cb0, evt_callbacks[1] - cb1);
	KIT_CHECK(evt_upcalls[0] == 0 && evt_upcalls[1] == 0, "%u,%u upcalls at vector 0x%x, which was never set",
		  evt_upcalls[0], evt_upcalls[1], UPCALL_VECTOR);
	long t = timer_check(0);
	KIT_CHECK(t != 2, "vCPU 0: vector 0x%x in the LAPIC ISR after the callbacks (injected through the LAPIC?)",
		  CALLBACK_VECTOR);
	KIT_CHECK(t == 1, "vCPU 0: LAPIC timer at vector 0x%x blocked after the callbacks", TIMER_VECTOR);
	KIT_CHECK(kit_ap_call(timer_check, 1, &t), "vCPU 1 did not answer");
	KIT_CHECK(t != 2, "vCPU 1: vector 0x%x in the LAPIC ISR after the callbacks (injected through the LAPIC?)",
		  CALLBACK_VECTOR);
	KIT_CHECK(t == 1, "vCPU 1: LAPIC timer at vector 0x%x blocked after the callbacks", TIMER_VECTOR);
	/* Last, so that a lost early event doesn't hide the checks above. */
	KIT_CHECK(e0 && e1,
		  "event pending before HVM_PARAM_CALLBACK_IRQ was set never delivered (vCPU 0 %s, vCPU 1 %s); Xen injects the callback whenever evtchn_upcall_pending is set",
		  e0 ? "ok" : "lost", e1 ? "ok" : "lost");
	KIT_CHECK(early0 == 1 && early1 == 1, "pending before: counts %u,%u, expected 1,1", early0, early1);
}

void evt_callback_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(evt_online >= 2, "needs 2 vCPUs");
	evtchn_port_t p0 = 0, p1 = 0;
	callback_body(&p0, &p1);
	long rc = xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ, 0);
	evt_close_ports((evtchn_port_t[]){ p0, p1 }, 2);
	KIT_CHECK(rc == 0, "set HVM_PARAM_CALLBACK_IRQ 0 = %ld %s", XEN_ERR(rc));
}

/* Each vCPU sets its own vector (as Linux does). An event already pending
 * then arrives at once: Xen asserts the upcall when the vector is set. */
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
	KIT_CHECK(evt_got[0][*p0] == 1 && evt_got[1][*p1] == 1 && evt_got[1][*p0] == 0 && evt_got[0][*p1] == 0,
		  "counts %u,%u (crossed %u,%u), expected 1,1", evt_got[0][*p0], evt_got[1][*p1], evt_got[1][*p0], evt_got[0][*p1]);
	KIT_CHECK(evt_upcalls[0] >= 1 && evt_upcalls[1] >= 1 && !kit_lapic_in_service(UPCALL_VECTOR),
		  "LAPIC upcalls %u,%u, vector 0x%x in service %d", evt_upcalls[0], evt_upcalls[1], UPCALL_VECTOR,
		  kit_lapic_in_service(UPCALL_VECTOR));
}

void evt_upcall_vector_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(evt_online >= 2, "needs 2 vCPUs");
	evtchn_port_t p0 = 0, p1 = 0;
	upcall_vector_body(&p0, &p1);
	if (!vectors_set)
		set_both_vectors();
	evt_close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

static void loopback_body(evtchn_port_t *a, evtchn_port_t *b)
{
	uint32_t bind_events = 0;
	const char *what = "";
	struct evtchn_status st;
	long rc = evt_loopback(a, b, &bind_events, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	kit_printf("KIT-XEN loopback ports a=%u b=%u, %u event(s) at bind\n", *a, *b, bind_events);
	if (!port_in_range(*a, "alloc_unbound") || !port_in_range(*b, "bind_interdomain"))
		return;
	KIT_CHECK(*a != *b, "both ends got port %u", *a);
	if (!xen_evtchn_status_is(*a, EVTCHNSTAT_interdomain, &st) ||
	    !evt_own_domid_is(st.u.interdomain.dom, "status(a) interdomain"))
		return;
	KIT_CHECK(st.u.interdomain.port == *b && st.vcpu == 0, "status(a): peer port %u vcpu %u, expected %u and 0",
		  st.u.interdomain.port, st.vcpu, *b);
	if (!xen_evtchn_status_is(*b, EVTCHNSTAT_interdomain, &st) ||
	    !evt_own_domid_is(st.u.interdomain.dom, "status(b) interdomain"))
		return;
	KIT_CHECK(st.u.interdomain.port == *a && st.vcpu == 0, "status(b): peer port %u vcpu %u, expected %u and 0",
		  st.u.interdomain.port, st.vcpu, *a);
	/* a is connected now: it can't be bound to again. */
	evtchn_port_t c;
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, *a, &c), -XEN_EINVAL, "bind_interdomain to connected port %u",
		      *a);

	XEN_EXPECT_RC(xen_evtchn_send(*a), 0, "send(a=%u)", *a);
	KIT_CHECK(KIT_WAIT_FOR(evt_got[0][*b] >= 1, 1000), "send on a: nothing arrived on b (vCPU 0); pending %d, sel 0x%llx",
		  xen_evtchn_test(evt_sh->evtchn_pending, *b), U64(evt_sh->vcpu_info[0].evtchn_pending_sel));
	XEN_EXPECT_RC(xen_evtchn_send(*b), 0, "send(b=%u)", *b);
	KIT_CHECK(KIT_WAIT_FOR(evt_got[0][*a] >= 1, 1000), "send on b: nothing arrived on a (vCPU 0); pending %d",
		  xen_evtchn_test(evt_sh->evtchn_pending, *a));
	/* The other direction from vCPU 1: still arrives on vCPU 0 (the port's). */
	long r = 0;
	KIT_CHECK(kit_ap_call(evt_ap_send, *a, &r), "vCPU 1 did not answer");
	KIT_CHECK(r == 0, "vCPU 1: send(a) = %ld %s", XEN_ERR(r));
	KIT_CHECK(KIT_WAIT_FOR(evt_got[0][*b] >= 2, 1000), "vCPU 1's send on a: nothing arrived on b (vCPU 0)");
	kit_delay_ms(EVT_SETTLE_MS);
	KIT_CHECK(evt_got[0][*a] == 1 && evt_got[0][*b] == 2 && evt_got[1][*a] == 0 && evt_got[1][*b] == 0,
		  "counts vCPU0 a=%u b=%u, vCPU1 a=%u b=%u; expected 1, 2, 0, 0", evt_got[0][*a], evt_got[0][*b], evt_got[1][*a],
		  evt_got[1][*b]);
	KIT_CHECK(bind_events == 1,
		  "bind_interdomain: %u event(s) on the new port; Xen marks it pending once (a notification may have been lost while unbound)",
		  bind_events);
}

void evt_loopback_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	evtchn_port_t a = 0, b = 0;
	loopback_body(&a, &b);
	evt_close_ports((evtchn_port_t[]){ a, b }, 2);
}

static void ipi_body(evtchn_port_t *p0, evtchn_port_t *p1)
{
	struct evtchn_status st;
	if (!bind_ipi_pair(p0, p1))
		return;
	kit_printf("KIT-XEN ipi ports %u (vCPU 0), %u (vCPU 1)\n", *p0, *p1);
	if (!xen_evtchn_status_is(*p0, EVTCHNSTAT_ipi, &st))
		return;
	KIT_CHECK(st.vcpu == 0, "status(%u).vcpu %u, expected 0", *p0, st.vcpu);
	if (!xen_evtchn_status_is(*p1, EVTCHNSTAT_ipi, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "status(%u).vcpu %u, expected 1", *p1, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_send(*p1), 0, "send(%u)", *p1);
	KIT_CHECK(KIT_WAIT_FOR(evt_got[1][*p1] >= 1, 1000),
		  "BSP -> AP: nothing arrived on vCPU 1 (pending %d, got on vCPU 0 %u)",
		  xen_evtchn_test(evt_sh->evtchn_pending, *p1), evt_got[0][*p1]);
	long rc = -1;
	KIT_CHECK(kit_ap_call(evt_ap_send, *p0, &rc), "vCPU 1 did not answer");
	KIT_CHECK(rc == 0, "vCPU 1: send(%u) = %ld %s", *p0, XEN_ERR(rc));
	KIT_CHECK(KIT_WAIT_FOR(evt_got[0][*p0] >= 1, 1000), "AP -> BSP: nothing arrived on vCPU 0 (pending %d)",
		  xen_evtchn_test(evt_sh->evtchn_pending, *p0));
	kit_delay_ms(EVT_SETTLE_MS);
	KIT_CHECK(evt_got[1][*p1] == 1 && evt_got[0][*p0] == 1 && evt_got[0][*p1] == 0 && evt_got[1][*p0] == 0,
		  "counts: vCPU1 got %u on its port, vCPU0 %u on its; crossed %u,%u", evt_got[1][*p1], evt_got[0][*p0],
		  evt_got[0][*p1], evt_got[1][*p0]);
}

void evt_ipi_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	evtchn_port_t p0 = 0, p1 = 0;
	ipi_body(&p0, &p1);
	evt_close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

/* Masked: pending set, nothing else, no interrupt; unmask delivers once, to
 * the port's vCPU (the BSP unmasks both). */
static void masked_one(evtchn_port_t p, int cpu)
{
	volatile struct vcpu_info *vi = &evt_sh->vcpu_info[cpu];
	unsigned int w = p / XEN_EVTCHN_WORD_BITS;
	xen_evtchn_set(evt_sh->evtchn_mask, p);
	uint32_t u0 = evt_upcalls[cpu];
	XEN_EXPECT_RC(xen_evtchn_send(p), 0, "send(masked %u)", p);
	kit_delay_ms(20);
	bool selbit = (vi->evtchn_pending_sel >> w) & 1;
	KIT_CHECK(xen_evtchn_test(evt_sh->evtchn_pending, p), "masked port %u: pending bit not set by send", p);
	KIT_CHECK(evt_got[cpu][p] == 0 && evt_upcalls[cpu] == u0, "masked port %u: %u upcall(s) on vCPU %d", p,
		  evt_upcalls[cpu] - u0, cpu);
	KIT_CHECK(!selbit && !vi->evtchn_upcall_pending,
		  "masked port %u: selector bit %u = %d, upcall_pending %u on vCPU %d; Xen leaves both alone", p, w, selbit,
		  vi->evtchn_upcall_pending, cpu);
	XEN_EXPECT_RC(xen_evtchn_unmask(p), 0, "unmask(%u)", p);
	KIT_CHECK(KIT_WAIT_FOR(evt_got[cpu][p] >= 1, 1000), "unmask(%u): no upcall on vCPU %d (pending %d, mask %d)", p, cpu,
		  xen_evtchn_test(evt_sh->evtchn_pending, p), xen_evtchn_test(evt_sh->evtchn_mask, p));
	KIT_CHECK(!xen_evtchn_test(evt_sh->evtchn_mask, p), "unmask(%u) left the mask bit set", p);
	/* Unmasking an unmasked port delivers nothing. */
	XEN_EXPECT_RC(xen_evtchn_unmask(p), 0, "second unmask(%u)", p);
	kit_delay_ms(EVT_SETTLE_MS);
	KIT_CHECK(evt_got[cpu][p] == 1 && evt_got[1 - cpu][p] == 0,
		  "port %u: vCPU %d got %u, vCPU %d got %u; expected 1 and 0", p, cpu, evt_got[cpu][p], 1 - cpu,
		  evt_got[1 - cpu][p]);
}

void evt_masked_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	evtchn_port_t p0 = 0, p1 = 0;
	if (bind_ipi_pair(&p0, &p1)) {
		masked_one(p0, 0);
		masked_one(p1, 1);
	}
	evt_close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

/* Storm: each side sends storm_events events to the other's IPI port, each
 * time as soon as the previous one has been taken (its pending bit clear: a
 * send on a pending port merges with it, as Xen's 2-level ABI does), then
 * waits for its own. */
static evtchn_port_t storm_port[EVT_NCPU];
static volatile uint32_t storm_sent[EVT_NCPU];
static volatile long storm_err[EVT_NCPU];

static long storm_side(long cpu)
{
	evtchn_port_t to = storm_port[1 - cpu], me = storm_port[cpu];
	for (uint32_t i = 0; i < storm_events; i++) {
		if (!KIT_WAIT_FOR(!xen_evtchn_test(evt_sh->evtchn_pending, to), 2000)) {
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
	KIT_WAIT_FOR(evt_got[cpu][me] >= storm_events, 5000);
	return 0;
}

void evt_storm_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(vectors_set, "no upcall vectors");
	if (!bind_ipi_pair(&storm_port[0], &storm_port[1])) {
		evt_close_ports(storm_port, 2);
		return;
	}
	evtchn_port_t p0 = storm_port[0], p1 = storm_port[1];
	uint64_t t0 = rdtsc();
	bool started = kit_ap_start(storm_side, 1);
	storm_side(0);
	bool finished = started && kit_ap_wait(15000, NULL);
	uint64_t t1 = rdtsc();
	kit_delay_ms(EVT_SETTLE_MS);
	kit_printf("KIT-XEN storm: vCPU0 sent %u got %u, vCPU1 sent %u got %u, crossed %u,%u, errors %ld,%ld, %llu cycles\n",
		   storm_sent[0], evt_got[0][p0], storm_sent[1], evt_got[1][p1], evt_got[1][p0], evt_got[0][p1], storm_err[0],
		   storm_err[1], U64(t1 - t0));
	evt_close_ports(storm_port, 2);
	KIT_CHECK(started && finished, "vCPU 1 did not finish");
	KIT_CHECK(storm_err[0] == 0 && storm_err[1] == 0,
		  "senders stopped: vCPU0 %ld, vCPU1 %ld (1: the previous event stayed pending)", storm_err[0],
		  storm_err[1]);
	KIT_CHECK(storm_sent[0] == storm_events && storm_sent[1] == storm_events, "sent %u and %u", storm_sent[0],
		  storm_sent[1]);
	KIT_CHECK(evt_got[1][p1] == storm_sent[0] && evt_got[0][p0] == storm_sent[1], "vCPU1 got %u of %u, vCPU0 got %u of %u",
		  evt_got[1][p1], storm_sent[0], evt_got[0][p0], storm_sent[1]);
	KIT_CHECK(evt_got[1][p0] == 0 && evt_got[0][p1] == 0, "events on the wrong vCPU: %u, %u", evt_got[1][p0],
		  evt_got[0][p1]);
}

/* Event channels, 2-level ABI, native layout, on 2 vCPUs: EVTCHNOP_* with
 * good and bad arguments, and delivery through shared_info to an upcall
 * handler that scans the bitmaps as a guest kernel does. Run with --vcpus 2.
 *
 * Upcalls come two ways. First the HVM-wide callback vector
 * (HVM_PARAM_CALLBACK_IRQ type 2): injected directly, so its IDT entry is a
 * stub of ours that never EOIs (the kit's handlers always do). Then, once the
 * callback is off, the per-vCPU vector (HVMOP_set_evtchn_upcall_vector): a
 * LAPIC fixed interrupt the kit EOIs. The order is forced by Xen: a per-vCPU
 * vector takes precedence over the callback via (hvm_op.h) and can't be
 * unset (vectors below 0x10 are refused), so the callback case runs first.
 *
 * Each vCPU handles only the ports bound to it (`mine`, as Linux's per-CPU
 * evtchn mask), so a pending bit is counted by the vCPU its selector and
 * upcall went to. The handler: clear evtchn_upcall_pending, xchg the
 * selector, then for each selected word the bits pending & ~mask & mine,
 * clearing each pending bit atomically and counting it per port per vCPU. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xe0   /* per-vCPU: LAPIC, EOI'd by the kit */
#define CALLBACK_VECTOR 0xf3 /* HVM_PARAM_CALLBACK_IRQ: not through the LAPIC, no EOI */
#define TIMER_VECTOR 0x40    /* below both: blocked if either stays in service */
#define NCPU 2
#define NPORTS XEN_EVTCHN_2L_PORTS
#define NWORDS XEN_EVTCHN_WORD_BITS
#define CALLBACK_EVENTS callback_events
#define STORM 200
#define SETTLE_MS 10 /* time for a duplicate or a stray event to show up */

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static long own_domid = -1;
static domid_t other_domid = 5; /* no such domain */
static int online;
static uint32_t callback_events = 20; /* cmdline callback-events= */

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
	"push %rax\npush %rcx\npush %rdx\npush %rsi\npush %rdi\n"
	"push %r8\npush %r9\npush %r10\npush %r11\n"
	"cld\n"
	"call kit_evtchn_on_callback\n"
	"pop %r11\npop %r10\npop %r9\npop %r8\n"
	"pop %rdi\npop %rsi\npop %rdx\npop %rcx\npop %rax\n"
	"iretq\n");

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
		long rc = bind_ipi_on(cpu, cpu ? p1 : p0);
		if (rc) {
			kit_fail("bind_ipi(vcpu %u) = %ld %s", cpu, XEN_ERR(rc));
			return false;
		}
	}
	return true;
}

/* alloc_unbound(remote DOMID_SELF) + bind_interdomain to it: a on vCPU 0,
 * b on vCPU 0. Xen marks b pending when binding (a notification may have
 * been lost on the unbound end); *bind_events gets how many arrived. */
static long loopback(evtchn_port_t *a, evtchn_port_t *b, uint32_t *bind_events, const char **what)
{
	cli();
	long rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, a);
	if (rc) {
		sti();
		*what = "alloc_unbound(DOMID_SELF, remote DOMID_SELF)";
		return rc;
	}
	own(*a, 0);
	zero_counts(*a);
	rc = xen_evtchn_bind_interdomain(DOMID_SELF, *a, b);
	if (rc == 0) {
		own(*b, 0);
		zero_counts(*b);
	}
	sti();
	if (rc) {
		*what = "bind_interdomain(DOMID_SELF, a)";
		xen_evtchn_close(*a);
		disown(*a);
		return rc;
	}
	KIT_WAIT_FOR(got[0][*b] >= 1, 300);
	kit_delay_ms(SETTLE_MS);
	if (bind_events)
		*bind_events = got[0][*b] + got[1][*b];
	zero_counts(*a);
	zero_counts(*b);
	return 0;
}

static long close_port(evtchn_port_t p)
{
	long rc = xen_evtchn_close(p);
	disown(p);
	return rc;
}

/* A case's cleanup: unmasks and closes every port it bound (0: none), so the next case starts clean. */
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

/* ---- checks ---- */
static bool own_domid_is(uint16_t dom, const char *what)
{
	if (own_domid >= 0 && dom != own_domid) {
		kit_fail("%s dom %u, expected our own domid %ld", what, dom, own_domid);
		return false;
	}
	if (dom == DOMID_SELF) {
		kit_fail("%s dom DOMID_SELF: Xen reports the real domid", what);
		return false;
	}
	return true;
}

/* ---- cases ---- */
static void shinfo_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", XEN_ERR(rc));
	sh = (volatile struct shared_info *)shinfo_page;
	own_domid = xen_own_domid();
	if (own_domid == other_domid)
		other_domid++;
	kit_printf("KIT-XEN own domid %ld, nonexistent domid %u, %u ports of %u bits\n", own_domid, other_domid,
		   NPORTS, NWORDS);
}

static void start_case(void)
{
	online = kit_smp_start(kit_ap_serve_interruptible);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	KIT_CHECK(kit_ap_serving(3000), "vCPU 1 did not get ready");
}

static void alloc_unbound_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t p = 0, q = 0, r = 0;
	struct evtchn_status st;
	/* remote DOMID_SELF is stored as the caller's own id (Xen). */
	long rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p);
	KIT_CHECK(rc == 0, "alloc_unbound(DOMID_SELF, remote DOMID_SELF) = %ld %s", XEN_ERR(rc));
	kit_printf("KIT-XEN alloc_unbound port %u\n", p);
	if (p < 1 || p >= NPORTS) {
		kit_fail("alloc_unbound gave port %u, expected 1..%u (port 0 is reserved)", p, NPORTS - 1);
		goto out;
	}
	if (!xen_evtchn_status_is(p, EVTCHNSTAT_unbound, &st) || !own_domid_is(st.u.unbound.dom, "unbound remote"))
		goto out;
	if (st.vcpu != 0) {
		kit_fail("status(%u).vcpu %u, expected 0", p, st.vcpu);
		goto out;
	}
	/* dom may be our own id instead of DOMID_SELF. */
	if (own_domid >= 0) {
		rc = xen_evtchn_alloc_unbound((domid_t)own_domid, DOMID_SELF, &q);
		if (rc) {
			kit_fail("alloc_unbound(dom %ld = own id, remote DOMID_SELF) = %ld %s", own_domid, XEN_ERR(rc));
			goto out;
		}
		if (q == p || q < 1 || q >= NPORTS) {
			kit_fail("second alloc_unbound gave port %u (first %u)", q, p);
			goto out;
		}
		if (!xen_evtchn_status_is(q, EVTCHNSTAT_unbound, &st) || !own_domid_is(st.u.unbound.dom, "unbound remote"))
			goto out;
	}
	/* Xen doesn't look the remote domain up: a port may be offered to a
	 * domain that doesn't exist yet, e.g. to dom0 for a backend. */
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, 0, &r);
	if (rc) {
		kit_fail("alloc_unbound(DOMID_SELF, remote 0) = %ld %s, expected 0 (Xen doesn't check remote_dom)", XEN_ERR(rc));
		goto out;
	}
	if (xen_evtchn_status_is(r, EVTCHNSTAT_unbound, &st) && st.u.unbound.dom != 0)
		kit_fail("status(%u): unbound dom %u, expected 0", r, st.u.unbound.dom);
out:
	if (p)
		xen_evtchn_close(p);
	if (q)
		xen_evtchn_close(q);
	if (r)
		xen_evtchn_close(r);
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
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	if (!xen_evtchn_test(sh->evtchn_pending, p) || !((vi->evtchn_pending_sel >> (p / NWORDS)) & 1) ||
	    !vi->evtchn_upcall_pending) {
		kit_fail("no upcall configured: send(%u) left pending %d, selector 0x%llx, upcall_pending %u on vCPU %d", p,
			 xen_evtchn_test(sh->evtchn_pending, p), U64(vi->evtchn_pending_sel), vi->evtchn_upcall_pending,
			 cpu);
		return false;
	}
	return true;
}

/* Takes an event the upcall never came for, as a polling guest would, so
 * that the next checks start clean. */
static void take_by_hand(evtchn_port_t p, int cpu)
{
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	vi->evtchn_upcall_pending = 0;
	vi->evtchn_pending_sel = 0;
	xen_evtchn_clear(sh->evtchn_pending, p);
}

/* Once an upcall route is set: waits for the event each vCPU had pending before (*e0, *e1: whether it
 * came), taking one that never came by hand so that the next checks start clean. */
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
	zero_counts(*p0);
	zero_counts(*p1);
	uint32_t cb0 = callbacks[0], cb1 = callbacks[1];
	for (int cpu = 0; cpu < NCPU; cpu++) {
		evtchn_port_t p = cpu ? *p1 : *p0;
		for (uint32_t i = 1; i <= CALLBACK_EVENTS; i++) {
			rc = xen_evtchn_send(p);
			KIT_CHECK(rc == 0, "send(%u) #%u = %ld %s", p, i, XEN_ERR(rc));
			KIT_CHECK(KIT_WAIT_FOR(got[cpu][p] >= i, 1000),
				  "vCPU %d: event %u of %u (port %u) not delivered; %u callback upcalls, pending %d, sel 0x%llx, upcall_pending %u",
				  cpu, i, CALLBACK_EVENTS, p, callbacks[cpu], xen_evtchn_test(sh->evtchn_pending, p),
				  U64(sh->vcpu_info[cpu].evtchn_pending_sel), sh->vcpu_info[cpu].evtchn_upcall_pending);
		}
	}
	kit_delay_ms(SETTLE_MS);
	kit_printf("KIT-XEN callback vector: ports %u,%u got %u,%u; callback upcalls %u,%u, LAPIC upcalls %u,%u; pending before: %s,%s\n",
		   *p0, *p1, got[0][*p0], got[1][*p1], callbacks[0] - cb0, callbacks[1] - cb1, upcalls[0], upcalls[1],
		   e0 ? "delivered" : "lost", e1 ? "delivered" : "lost");
	KIT_CHECK(got[0][*p0] == CALLBACK_EVENTS && got[1][*p1] == CALLBACK_EVENTS,
		  "counts %u and %u, expected %u each", got[0][*p0], got[1][*p1], CALLBACK_EVENTS);
	/* A handler may take the next event in the same upcall (it rescans while
	 * upcall_pending is set again), so fewer upcalls than events is fine. */
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
	KIT_CHECK(e0 && e1,
		  "event pending before HVM_PARAM_CALLBACK_IRQ was set never delivered (vCPU 0 %s, vCPU 1 %s); Xen injects the callback whenever evtchn_upcall_pending is set",
		  e0 ? "ok" : "lost", e1 ? "ok" : "lost");
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

static void loopback_body(evtchn_port_t *a, evtchn_port_t *b)
{
	uint32_t bind_events = 0;
	const char *what = "";
	struct evtchn_status st;
	long rc = loopback(a, b, &bind_events, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	kit_printf("KIT-XEN loopback ports a=%u b=%u, %u event(s) at bind\n", *a, *b, bind_events);
	KIT_CHECK(*a != *b && *b >= 1 && *b < NPORTS, "ports %u and %u", *a, *b);
	if (!xen_evtchn_status_is(*a, EVTCHNSTAT_interdomain, &st) || !own_domid_is(st.u.interdomain.dom, "status(a) interdomain"))
		return;
	KIT_CHECK(st.u.interdomain.port == *b && st.vcpu == 0, "status(a): peer port %u vcpu %u, expected %u and 0",
		  st.u.interdomain.port, st.vcpu, *b);
	if (!xen_evtchn_status_is(*b, EVTCHNSTAT_interdomain, &st) || !own_domid_is(st.u.interdomain.dom, "status(b) interdomain"))
		return;
	KIT_CHECK(st.u.interdomain.port == *a && st.vcpu == 0, "status(b): peer port %u vcpu %u, expected %u and 0",
		  st.u.interdomain.port, st.vcpu, *a);
	/* a is connected now: it can't be bound to again. */
	evtchn_port_t c;
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, *a, &c), -XEN_EINVAL, "bind_interdomain to connected port %u",
		  *a);

	XEN_EXPECT_RC(xen_evtchn_send(*a), 0, "send(a=%u)", *a);
	KIT_CHECK(KIT_WAIT_FOR(got[0][*b] >= 1, 1000), "send on a: nothing arrived on b (vCPU 0); pending %d",
		  xen_evtchn_test(sh->evtchn_pending, *b));
	XEN_EXPECT_RC(xen_evtchn_send(*b), 0, "send(b=%u)", *b);
	KIT_CHECK(KIT_WAIT_FOR(got[0][*a] >= 1, 1000), "send on b: nothing arrived on a (vCPU 0); pending %d",
		  xen_evtchn_test(sh->evtchn_pending, *a));
	/* The other direction from vCPU 1: still arrives on vCPU 0 (the port's). */
	long r = 0;
	KIT_CHECK(kit_ap_call(ap_send, *a, &r), "vCPU 1 did not answer");
	KIT_CHECK(r == 0, "vCPU 1: send(a) = %ld %s", XEN_ERR(r));
	KIT_CHECK(KIT_WAIT_FOR(got[0][*b] >= 2, 1000), "vCPU 1's send on a: nothing arrived on b (vCPU 0)");
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[0][*a] == 1 && got[0][*b] == 2 && got[1][*a] == 0 && got[1][*b] == 0,
		  "counts vCPU0 a=%u b=%u, vCPU1 a=%u b=%u; expected 1, 2, 0, 0", got[0][*a], got[0][*b], got[1][*a],
		  got[1][*b]);
	KIT_CHECK(bind_events == 1,
		  "bind_interdomain: %u event(s) on the new port; Xen marks it pending once (a notification may have been lost while unbound)",
		  bind_events);
}

static void loopback_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t a = 0, b = 0;
	loopback_body(&a, &b);
	close_ports((evtchn_port_t[]){ a, b }, 2);
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
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	evtchn_port_t p0 = 0, p1 = 0;
	ipi_body(&p0, &p1);
	close_ports((evtchn_port_t[]){ p0, p1 }, 2);
}

/* Masked: pending set, nothing else; unmask delivers to the port's vCPU. */
static void masked_one(evtchn_port_t p, int cpu)
{
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	unsigned int w = p / NWORDS;
	xen_evtchn_set(sh->evtchn_mask, p);
	uint32_t u0 = upcalls[cpu];
	XEN_EXPECT_RC(xen_evtchn_send(p), 0, "send(masked %u)", p);
	kit_delay_ms(20);
	bool pend = xen_evtchn_test(sh->evtchn_pending, p);
	bool selbit = (vi->evtchn_pending_sel >> w) & 1;
	KIT_CHECK(pend, "masked port %u: pending bit not set by send", p);
	KIT_CHECK(got[cpu][p] == 0 && upcalls[cpu] == u0, "masked port %u: %u upcall(s) on vCPU %d", p,
		  upcalls[cpu] - u0, cpu);
	KIT_CHECK(!selbit && !vi->evtchn_upcall_pending,
		  "masked port %u: selector bit %u = %d, upcall_pending %u on vCPU %d; Xen leaves both alone", p, w, selbit,
		  vi->evtchn_upcall_pending, cpu);
	XEN_EXPECT_RC(xen_evtchn_unmask(p), 0, "unmask(%u)", p);
	KIT_CHECK(KIT_WAIT_FOR(got[cpu][p] >= 1, 1000), "unmask(%u): no upcall on vCPU %d (pending %d, mask %d)", p, cpu,
		  xen_evtchn_test(sh->evtchn_pending, p), xen_evtchn_test(sh->evtchn_mask, p));
	KIT_CHECK(!xen_evtchn_test(sh->evtchn_mask, p), "unmask(%u) left the mask bit set", p);
	/* Unmasking an unmasked port delivers nothing. */
	XEN_EXPECT_RC(xen_evtchn_unmask(p), 0, "second unmask(%u)", p);
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[cpu][p] == 1 && got[1 - cpu][p] == 0, "port %u: vCPU %d got %u, vCPU %d got %u; expected 1 and 0",
		  p, cpu, got[cpu][p], 1 - cpu, got[1 - cpu][p]);
}

static void masked_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t p = 0, q = 0;
	long rc = bind_ipi_on(0, &p);
	if (rc == 0)
		masked_one(p, 0);
	else
		kit_fail("bind_ipi(vcpu 0) = %ld %s", XEN_ERR(rc));
	/* The BSP unmasks a port of vCPU 1: the upcall goes to vCPU 1. */
	if (online >= 2 && rc == 0) {
		rc = bind_ipi_on(1, &q);
		if (rc == 0)
			masked_one(q, 1);
		else
			kit_fail("bind_ipi(vcpu 1) = %ld %s", XEN_ERR(rc));
	}
	close_ports((evtchn_port_t[]){ p, q }, 2);
}

static void bind_vcpu_body(evtchn_port_t *ports)
{
	evtchn_port_t *a = &ports[0], *b = &ports[1], *ipi = &ports[2], *u = &ports[3];
	const char *what = "";
	struct evtchn_status st;
	long rc = loopback(a, b, NULL, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	/* Move b to vCPU 1: both vCPUs may take it for a moment. */
	xen_evtchn_set(mine[1], *b);
	rc = xen_evtchn_bind_vcpu(*b, 1);
	KIT_CHECK(rc == 0, "bind_vcpu(loopback port %u, 1) = %ld %s", *b, XEN_ERR(rc));
	own(*b, 1);
	if (!xen_evtchn_status_is(*b, EVTCHNSTAT_interdomain, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "status(%u).vcpu %u after bind_vcpu 1", *b, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_send(*a), 0, "send(%u)", *a);
	KIT_CHECK(KIT_WAIT_FOR(got[1][*b] >= 1, 1000), "event on %u did not arrive on vCPU 1 (vCPU 0 got %u, pending %d)", *b,
		  got[0][*b], xen_evtchn_test(sh->evtchn_pending, *b));
	KIT_CHECK(kit_ap_call(ap_send, *b, &rc), "vCPU 1 did not answer");
	KIT_CHECK(rc == 0, "vCPU 1: send(%u) = %ld %s", *b, XEN_ERR(rc));
	KIT_CHECK(KIT_WAIT_FOR(got[0][*a] >= 1, 1000), "event on %u (still vCPU 0) did not arrive", *a);
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[1][*b] == 1 && got[0][*b] == 0 && got[0][*a] == 1 && got[1][*a] == 0,
		  "counts b: vCPU1 %u vCPU0 %u, a: vCPU0 %u vCPU1 %u; expected 1 0 1 0", got[1][*b], got[0][*b],
		  got[0][*a], got[1][*a]);
	/* An IPI port stays on its vCPU. */
	rc = bind_ipi_on(0, ipi);
	KIT_CHECK(rc == 0, "bind_ipi(vcpu 0) = %ld %s", XEN_ERR(rc));
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*ipi, 1), -XEN_EINVAL, "bind_vcpu(IPI port %u, 1)", *ipi);
	if (!xen_evtchn_status_is(*ipi, EVTCHNSTAT_ipi, &st))
		return;
	KIT_CHECK(st.vcpu == 0, "IPI port %u moved to vCPU %u by a refused bind_vcpu", *ipi, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*a, 99), -XEN_ENOENT, "bind_vcpu(%u, vcpu 99)", *a);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*a, (uint32_t)kit_ncpus()), -XEN_ENOENT, "bind_vcpu(%u, vcpu %d = nr_vcpus)", *a,
		  kit_ncpus());
	/* An unbound port can be moved too. */
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, u);
	KIT_CHECK(rc == 0, "alloc_unbound = %ld %s", XEN_ERR(rc));
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*u, 1), 0, "bind_vcpu(unbound port %u, 1)", *u);
	if (!xen_evtchn_status_is(*u, EVTCHNSTAT_unbound, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "unbound port %u: status vcpu %u after bind_vcpu 1", *u, st.vcpu);
}

static void bind_vcpu_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	evtchn_port_t ports[4] = { 0, 0, 0, 0 };
	bind_vcpu_body(ports);
	close_ports(ports, 4);
}

static void virq_body(evtchn_port_t *ports)
{
	evtchn_port_t *t0 = &ports[0], *t1 = &ports[1], *c = &ports[2];
	struct evtchn_status st;
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, t0), 0, "bind_virq(VIRQ_TIMER, vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 1, t1), 0, "bind_virq(VIRQ_TIMER, vcpu 1)");
	kit_printf("KIT-XEN VIRQ_TIMER ports %u (vCPU 0), %u (vCPU 1)\n", *t0, *t1);
	KIT_CHECK(*t0 != *t1, "both VIRQ_TIMER bindings got port %u", *t0);
	evtchn_port_t dummy;
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, &dummy), -XEN_EEXIST, "second bind_virq(VIRQ_TIMER, vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 1, &dummy), -XEN_EINVAL, "bind_virq(VIRQ_CONSOLE (global), vcpu 1)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(NR_VIRQS, 0, &dummy), -XEN_EINVAL, "bind_virq(%u = NR_VIRQS)", NR_VIRQS);
	XEN_EXPECT_RC(xen_evtchn_bind_virq(0xffffffffu, 0, &dummy), -XEN_EINVAL, "bind_virq(0xffffffff)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 99, &dummy), -XEN_ENOENT, "bind_virq(VIRQ_TIMER, vcpu 99)");
	for (int i = 0; i < 2; i++) {
		evtchn_port_t p = i ? *t1 : *t0;
		if (!xen_evtchn_status_is(p, EVTCHNSTAT_virq, &st))
			return;
		KIT_CHECK(st.u.virq == VIRQ_TIMER && st.vcpu == (uint32_t)i, "status(%u): virq %u vcpu %u, expected %u and %d",
			  p, st.u.virq, st.vcpu, VIRQ_TIMER, i);
	}
	/* A global VIRQ binds on vCPU 0 once, and may then be moved. */
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 0, c), 0, "bind_virq(VIRQ_CONSOLE, vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 0, &dummy), -XEN_EEXIST, "second bind_virq(VIRQ_CONSOLE, vcpu 0)");
	if (!xen_evtchn_status_is(*c, EVTCHNSTAT_virq, &st))
		return;
	KIT_CHECK(st.u.virq == VIRQ_CONSOLE && st.vcpu == 0, "status(%u): virq %u vcpu %u, expected %u and 0", *c,
		  st.u.virq, st.vcpu, VIRQ_CONSOLE);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*c, 1), 0, "bind_vcpu(VIRQ_CONSOLE port %u, 1)", *c);
	if (!xen_evtchn_status_is(*c, EVTCHNSTAT_virq, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "VIRQ_CONSOLE port %u: vcpu %u after bind_vcpu 1", *c, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*t0, 1), -XEN_EINVAL, "bind_vcpu(VIRQ_TIMER port %u, 1)", *t0);
	XEN_EXPECT_RC(xen_evtchn_send(*t0), -XEN_EINVAL, "send(VIRQ port %u)", *t0);
	/* Closing frees the VIRQ for binding again. */
	evtchn_port_t old = *t0;
	*t0 = 0;
	XEN_EXPECT_RC(xen_evtchn_close(old), 0, "close(VIRQ_TIMER port %u)", old);
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, t0), 0, "bind_virq(VIRQ_TIMER, vcpu 0) after closing its port");
	/* Last: on x86 every VIRQ_ARCH_* is global (arch_virq_is_global). */
	long rc = xen_evtchn_bind_virq(VIRQ_ARCH_1, 1, &dummy);
	if (rc == 0)
		xen_evtchn_close(dummy);
	KIT_CHECK(rc == -XEN_EINVAL, "bind_virq(VIRQ_ARCH_1, vcpu 1) = %ld %s, expected -EINVAL (x86: ARCH VIRQs are global)",
		  XEN_ERR(rc));
}

static void virq_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	evtchn_port_t ports[3] = { 0, 0, 0 };
	virq_body(ports);
	close_ports(ports, 3);
}

static void close_body(evtchn_port_t *ports)
{
	evtchn_port_t *a = &ports[0], *b = &ports[1], *p = &ports[2];
	const char *what = "";
	struct evtchn_status st;
	long rc = loopback(a, b, NULL, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	XEN_EXPECT_RC(close_port(*a), 0, "close(%u)", *a);
	evtchn_port_t closed = *a;
	*a = 0;
	if (!xen_evtchn_status_is(closed, EVTCHNSTAT_closed, &st))
		return;
	/* The peer goes back to unbound, for us. */
	if (!xen_evtchn_status_is(*b, EVTCHNSTAT_unbound, &st) || !own_domid_is(st.u.unbound.dom, "peer's unbound remote"))
		return;
	XEN_EXPECT_RC(xen_evtchn_send(closed), -XEN_EINVAL, "send(closed %u)", closed);
	XEN_EXPECT_RC(xen_evtchn_close(closed), -XEN_EINVAL, "second close(%u)", closed);
	/* Sending on the unbound peer is accepted and dropped. */
	XEN_EXPECT_RC(xen_evtchn_send(*b), 0, "send(unbound %u)", *b);
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[0][*b] + got[1][*b] + got[0][closed] + got[1][closed] == 0 &&
			  !xen_evtchn_test(sh->evtchn_pending, *b) && !xen_evtchn_test(sh->evtchn_pending, closed),
		  "send on an unbound port delivered something");
	/* A closed port in range: unmask answers 0 (Xen checks only the range). */
	XEN_EXPECT_RC(xen_evtchn_unmask(closed), 0, "unmask(closed %u)", closed);
	/* Closing clears a pending event. */
	rc = bind_ipi_on(0, p);
	KIT_CHECK(rc == 0, "bind_ipi(vcpu 0) = %ld %s", XEN_ERR(rc));
	xen_evtchn_set(sh->evtchn_mask, *p);
	XEN_EXPECT_RC(xen_evtchn_send(*p), 0, "send(masked %u)", *p);
	KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, *p), "masked port %u not pending after send", *p);
	evtchn_port_t q = *p;
	XEN_EXPECT_RC(close_port(q), 0, "close(pending %u)", q);
	*p = 0;
	xen_evtchn_clear(sh->evtchn_mask, q);
	KIT_CHECK(!xen_evtchn_test(sh->evtchn_pending, q), "close(%u) left its pending bit set", q);
	XEN_EXPECT_RC(close_port(*b), 0, "close(%u)", *b);
	q = *b;
	*b = 0;
	xen_evtchn_status_is(q, EVTCHNSTAT_closed, &st);
}

static void close_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t ports[3] = { 0, 0, 0 };
	close_body(ports);
	close_ports(ports, 3);
}

static void errors_body(evtchn_port_t *ports)
{
	struct evtchn_status st;
	evtchn_port_t dummy;
	/* Port 0 is valid but reserved: reported closed, refused elsewhere;
	 * unmask checks only that the port is valid. */
	if (!xen_evtchn_status_is(0, EVTCHNSTAT_closed, &st))
		return;
	XEN_EXPECT_RC(xen_evtchn_send(0), -XEN_EINVAL, "send(0)");
	XEN_EXPECT_RC(xen_evtchn_close(0), -XEN_EINVAL, "close(0)");
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(0, 0), -XEN_EINVAL, "bind_vcpu(0, 0)");
	XEN_EXPECT_RC(xen_evtchn_unmask(0), 0, "unmask(0)");
	/* Out of range for the 2-level ABI. */
	static const evtchn_port_t bad[] = { NPORTS, NPORTS + 1, 0x10000, 0xffffffffu };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		evtchn_port_t p = bad[i];
		XEN_EXPECT_RC(xen_evtchn_status(DOMID_SELF, p, &st), -XEN_EINVAL, "status(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_send(p), -XEN_EINVAL, "send(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_unmask(p), -XEN_EINVAL, "unmask(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_close(p), -XEN_EINVAL, "close(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_bind_vcpu(p, 0), -XEN_EINVAL, "bind_vcpu(%u, 0)", p);
		XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, p, &dummy), -XEN_EINVAL, "bind_interdomain(self, %u)", p);
	}
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(99, &dummy), -XEN_ENOENT, "bind_ipi(vcpu 99)");
	XEN_EXPECT_RC(xen_evtchn_bind_ipi((uint32_t)kit_ncpus(), &dummy), -XEN_ENOENT, "bind_ipi(vcpu %d = nr_vcpus)",
		  kit_ncpus());
	/* Other domains: none exist. */
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(other_domid, DOMID_SELF, &dummy), -XEN_ESRCH, "alloc_unbound(dom %u)",
		  other_domid);
	XEN_EXPECT_RC(xen_evtchn_status(other_domid, 1, &st), -XEN_ESRCH, "status(dom %u, port 1)", other_domid);
	XEN_EXPECT_RC(xen_evtchn_reset(other_domid), -XEN_ESRCH, "reset(dom %u)", other_domid);
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(other_domid, 1, &dummy), -XEN_ESRCH, "bind_interdomain(dom %u)",
		  other_domid);
	/* bind_interdomain needs an unbound port. */
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &ports[0]), 0, "bind_ipi(vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, ports[0], &dummy), -XEN_EINVAL, "bind_interdomain(IPI port %u)",
		  ports[0]);
	/* Argument pointers that don't translate. */
	static const int cmds[] = { EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_send,
				    EVTCHNOP_status, EVTCHNOP_alloc_unbound, EVTCHNOP_bind_ipi, EVTCHNOP_bind_vcpu,
				    EVTCHNOP_unmask, EVTCHNOP_reset };
	for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		XEN_EXPECT_RC(xen_hypercall(__HYPERVISOR_event_channel_op, (unsigned)cmds[i], KIT_UNMAPPED_VA, 0, 0, 0),
			  -XEN_EFAULT, "event_channel_op(%d, unmapped)", cmds[i]);
	XEN_EXPECT_RC(HYPERVISOR_event_channel_op(100, &st), -XEN_ENOSYS, "event_channel_op(100)");
	/* ... and one offered to another domain (alloc-unbound checks that Xen
	 * accepts remote 0; skipped here if it doesn't). */
	if (own_domid != 0 && xen_evtchn_alloc_unbound(DOMID_SELF, 0, &ports[1]) == 0)
		XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, ports[1], &dummy), -XEN_EINVAL,
			  "bind_interdomain(port %u offered to dom 0)", ports[1]);
	/* Last: a port in range that was never allocated. Xen's table grows in
	 * buckets of a few dozen ports as they are allocated; a port beyond
	 * them isn't valid: -EINVAL for every op (status included). */
	evtchn_port_t p = NPORTS - 1;
	XEN_EXPECT_RC(xen_evtchn_status(DOMID_SELF, p, &st), -XEN_EINVAL, "status(never allocated %u)", p);
	XEN_EXPECT_RC(xen_evtchn_send(p), -XEN_EINVAL, "send(never allocated %u)", p);
	XEN_EXPECT_RC(xen_evtchn_unmask(p), -XEN_EINVAL, "unmask(never allocated %u)", p);
	XEN_EXPECT_RC(xen_evtchn_close(p), -XEN_EINVAL, "close(never allocated %u)", p);
}

static void errors_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t ports[2] = { 0, 0 };
	errors_body(ports);
	close_ports(ports, 2);
}

/* Storm: each side sends STORM events to the other's IPI port, each time as
 * soon as the previous one has been taken (its pending bit clear: a send on a
 * pending port merges with it, as Xen's 2-level ABI does), then waits for its
 * own STORM. */
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
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	long rc = bind_ipi_on(0, &storm_port[0]);
	KIT_CHECK(rc == 0, "bind_ipi(vcpu 0) = %ld %s", XEN_ERR(rc));
	rc = bind_ipi_on(1, &storm_port[1]);
	if (rc) {
		close_port(storm_port[0]);
		KIT_CHECK(false, "bind_ipi(vcpu 1) = %ld %s", XEN_ERR(rc));
	}
	evtchn_port_t p0 = storm_port[0], p1 = storm_port[1];
	uint64_t t0 = rdtsc();
	bool started = kit_ap_start(storm_side, 1);
	storm_side(0);
	bool finished = started && kit_ap_wait(15000, NULL);
	uint64_t t1 = rdtsc();
	kit_delay_ms(SETTLE_MS);
	kit_printf("KIT-XEN storm: vCPU0 sent %u got %u, vCPU1 sent %u got %u, crossed %u,%u, errors %ld,%ld, %llu Mcycles\n",
		   storm_sent[0], got[0][p0], storm_sent[1], got[1][p1], got[1][p0], got[0][p1], storm_err[0],
		   storm_err[1], U64((t1 - t0) / 1000000));
	close_port(p0);
	close_port(p1);
	KIT_CHECK(started && finished, "vCPU 1 did not finish");
	KIT_CHECK(storm_err[0] == 0 && storm_err[1] == 0, "senders stopped: vCPU0 %ld, vCPU1 %ld (1: the previous event stayed pending)",
		  storm_err[0], storm_err[1]);
	KIT_CHECK(storm_sent[0] == STORM && storm_sent[1] == STORM, "sent %u and %u", storm_sent[0], storm_sent[1]);
	KIT_CHECK(got[1][p1] == storm_sent[0] && got[0][p0] == storm_sent[1],
		  "vCPU1 got %u of %u, vCPU0 got %u of %u", got[1][p1], storm_sent[0], got[0][p0], storm_sent[1]);
	KIT_CHECK(got[1][p0] == 0 && got[0][p1] == 0, "events on the wrong vCPU: %u, %u", got[1][p0], got[0][p1]);
}

static void reset_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t p[7];
	int n = 0;
	const char *what = "";
	long rc = loopback(&p[0], &p[1], NULL, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	n = 2;
	rc = bind_ipi_on(0, &p[n]);
	KIT_CHECK(rc == 0, "bind_ipi(0) = %ld %s", XEN_ERR(rc));
	n++;
	if (online >= 2) {
		rc = bind_ipi_on(1, &p[n]);
		KIT_CHECK(rc == 0, "bind_ipi(1) = %ld %s", XEN_ERR(rc));
		n++;
	}
	rc = xen_evtchn_bind_virq(VIRQ_TIMER, 0, &p[n]);
	KIT_CHECK(rc == 0, "bind_virq(VIRQ_TIMER, 0) = %ld %s", XEN_ERR(rc));
	n++;
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p[n]);
	KIT_CHECK(rc == 0, "alloc_unbound = %ld %s", XEN_ERR(rc));
	n++;
	/* One left pending (masked): reset closes it, which clears it. */
	xen_evtchn_set(sh->evtchn_mask, p[2]);
	XEN_EXPECT_RC(xen_evtchn_send(p[2]), 0, "send(masked %u)", p[2]);
	rc = xen_evtchn_reset(DOMID_SELF);
	xen_evtchn_clear(sh->evtchn_mask, p[2]);
	for (int i = 0; i < n; i++)
		disown(p[i]);
	KIT_CHECK(rc == 0, "reset(DOMID_SELF) = %ld %s", XEN_ERR(rc));
	struct evtchn_status st;
	for (int i = 0; i < n; i++)
		if (!xen_evtchn_status_is(p[i], EVTCHNSTAT_closed, &st))
			return;
	KIT_CHECK(!xen_evtchn_test(sh->evtchn_pending, p[2]), "reset left port %u pending", p[2]);
	if (!xen_evtchn_status_is(0, EVTCHNSTAT_closed, &st))
		return;
	/* Everything can be bound again, the VIRQ included. */
	evtchn_port_t v = 0, u = 0;
	rc = xen_evtchn_bind_virq(VIRQ_TIMER, 0, &v);
	KIT_CHECK(rc == 0, "bind_virq(VIRQ_TIMER, 0) after reset = %ld %s", XEN_ERR(rc));
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &u);
	xen_evtchn_close(v);
	KIT_CHECK(rc == 0, "alloc_unbound after reset = %ld %s", XEN_ERR(rc));
	xen_evtchn_close(u);
	KIT_CHECK(u >= 1, "alloc_unbound after reset gave port %u", u);
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	kit_set_irq_handler(TIMER_VECTOR, on_timer);
	kit_set_idt_gate(CALLBACK_VECTOR, kit_evtchn_callback_stub);
	uint64_t n;
	if (kit_cmdline_u64("callback-events", &n) && n >= 1 && n <= 100000)
		callback_events = (uint32_t)n;
	kit_case("map-shared-info", shinfo_case);
	kit_case("start-vcpus", start_case);
	sti();
	kit_case("alloc-unbound", alloc_unbound_case);
	kit_case("callback-vector", callback_case);
	kit_case("upcall-vector", upcall_vector_case);
	kit_case("loopback", loopback_case);
	kit_case("bind-ipi", ipi_case);
	kit_case("masked", masked_case);
	kit_case("bind-vcpu", bind_vcpu_case);
	kit_case("bind-virq", virq_case);
	kit_case("close", close_case);
	kit_case("errors", errors_case);
	kit_case("storm", storm_case);
	kit_case("reset", reset_case);
	cli();
	kit_printf("KIT-XEN upcalls: LAPIC %u,%u callback %u,%u\n", upcalls[0], upcalls[1], callbacks[0], callbacks[1]);
}

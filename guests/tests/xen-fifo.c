/* The FIFO event-channel ABI on two vCPUs, interrupt-driven.
 * Run with --vcpus 2.
 *
 * Ports are bound under the 2-level ABI first, one of them left pending;
 * then the guest switches to FIFO (a control block per vCPU, one event-array
 * page) and keeps using them. Upcalls come through per-vCPU vectors; the
 * handler consumes the queues as a kernel does: take the ready word with
 * xchg, serve the lowest ready priority one event at a time from its head
 * (the guest's own copy, else the control block's), unlink each event with
 * cmpxchg, and count it if it is pending and unmasked.
 *
 * With fifo=0 on the command line (xenkvm --evtchn-fifo off, or auto where
 * KVM raises events), FIFO is not offered: after setup, the one case
 * "refused" checks the answers of Xen built without CONFIG_EVTCHN_FIFO and
 * that the ports keep working under the 2-level ABI. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xe0
#define NCPU 2
#define NPORTS 1024 /* one event-array page */
#define CB_STRIDE 128
#define STORM 200
#define SETTLE_MS 20
#define MS 1000000ull

#define W_PENDING (1u << EVTCHN_FIFO_PENDING)
#define W_MASKED (1u << EVTCHN_FIFO_MASKED)
#define W_LINKED (1u << EVTCHN_FIFO_LINKED)

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t control_page[4096] __attribute__((aligned(4096)));
static volatile event_word_t events[NPORTS] __attribute__((aligned(4096)));

static volatile struct shared_info *sh;
static uint32_t local_head[NCPU][EVTCHN_FIFO_MAX_QUEUES];
static volatile uint32_t got[NCPU][NPORTS];
static volatile uint32_t upcalls[NCPU];
/* The order vCPU 0 handled events in, while `logging`. */
static volatile evtchn_port_t order[16];
static volatile int norder, logging;

static evtchn_port_t ipi[NCPU], loop_a, loop_b;
static bool switched;

static inline volatile struct evtchn_fifo_control_block *control_block(int cpu)
{
	return (volatile struct evtchn_fifo_control_block *)(control_page + cpu * CB_STRIDE);
}

/* ---- the kernel side ---- */
static void consume_one(int cpu, unsigned q, uint32_t *ready)
{
	volatile struct evtchn_fifo_control_block *cb = control_block(cpu);
	uint32_t port = local_head[cpu][q];
	if (port == 0)
		port = cb->head[q];
	if (port == 0 || port >= NPORTS) {
		*ready &= ~(1u << q);
		return;
	}
	event_word_t w = events[port], unlinked;
	do
		unlinked = w & ~(W_LINKED | EVTCHN_FIFO_LINK_MASK);
	while (!__atomic_compare_exchange_n((event_word_t *)&events[port], &w, unlinked, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST));
	uint32_t next = w & EVTCHN_FIFO_LINK_MASK;
	if (next == 0)
		*ready &= ~(1u << q);
	if ((w & (W_PENDING | W_MASKED)) == W_PENDING) {
		__atomic_fetch_and((event_word_t *)&events[port], ~W_PENDING, __ATOMIC_SEQ_CST);
		got[cpu][port]++;
		if (cpu == 0 && logging && norder < 16)
			order[norder++] = port;
	}
	local_head[cpu][q] = next;
}

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu >= NCPU || !switched)
		return;
	upcalls[cpu]++;
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	volatile struct evtchn_fifo_control_block *cb = control_block(cpu);
	do {
		vi->evtchn_upcall_pending = 0;
		uint32_t ready = __atomic_exchange_n((uint32_t *)&cb->ready, 0, __ATOMIC_SEQ_CST);
		while (ready) {
			consume_one(cpu, (unsigned)__builtin_ctz(ready), &ready);
			ready |= __atomic_exchange_n((uint32_t *)&cb->ready, 0, __ATOMIC_SEQ_CST);
		}
	} while (vi->evtchn_upcall_pending);
}

static void mask(evtchn_port_t p) { __atomic_fetch_or((event_word_t *)&events[p], W_MASKED, __ATOMIC_SEQ_CST); }

/* A kernel's unmask: clear MASKED, and have Xen link the event if it is pending. */
static long unmask(evtchn_port_t p)
{
	__atomic_fetch_and((event_word_t *)&events[p], ~W_MASKED, __ATOMIC_SEQ_CST);
	return (events[p] & W_PENDING) ? xen_evtchn_unmask(p) : 0;
}

static long set_own_vector(long cpu) { return xen_set_upcall_vector((uint32_t)cpu, UPCALL_VECTOR); }

/* ---- cases ---- */
static void setup_case(void)
{
	KIT_CHECK(xen_map_shared_info(shinfo_page) == 0, "map shared_info");
	sh = (volatile struct shared_info *)shinfo_page;
	KIT_CHECK(kit_smp_start(kit_ap_serve_interruptible) >= NCPU, "need 2 vCPUs");
	KIT_CHECK(kit_ap_serving(3000), "vCPU 1 did not get ready");
	long rc = 0;
	XEN_EXPECT_RC(set_own_vector(0), 0, "upcall vector of vCPU 0");
	KIT_CHECK(kit_ap_call(set_own_vector, 1, &rc) && rc == 0, "upcall vector of vCPU 1: %ld %s", XEN_ERR(rc));
	/* IF=0 from here to the switch: the events raised under 2-level wait for the FIFO handler. */
	cli();
	for (int cpu = 0; cpu < NCPU; cpu++)
		XEN_EXPECT_RC(xen_evtchn_bind_ipi((uint32_t)cpu, &ipi[cpu]), 0, "bind_ipi(vcpu %d)", cpu);
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &loop_a), 0, "alloc_unbound");
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, loop_a, &loop_b), 0, "bind_interdomain");
	KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, loop_b), "bind_interdomain left port %u not pending", loop_b);
	kit_printf("KIT-XEN ports ipi %u,%u loopback %u-%u\n", ipi[0], ipi[1], loop_a, loop_b);
}

static void switch_case(void)
{
	KIT_CHECK(loop_b, "setup failed");
	/* A kernel masks every word of a new page; the ports bound so far it unmasks. */
	for (int p = 0; p < NPORTS; p++)
		events[p] = W_MASKED;
	events[ipi[0]] = events[ipi[1]] = events[loop_a] = events[loop_b] = 0;
	uint8_t link_bits = 0;
	for (int cpu = 0; cpu < NCPU; cpu++) {
		XEN_EXPECT_RC(xen_evtchn_init_control((uintptr_t)control_page >> 12, cpu * CB_STRIDE, cpu, &link_bits), 0,
			      "init_control(vcpu %d)", cpu);
		KIT_CHECK(link_bits == EVTCHN_FIFO_LINK_BITS, "link_bits %u", link_bits);
	}
	XEN_EXPECT_RC(xen_evtchn_expand_array((uintptr_t)events >> 12), 0, "expand_array");
	KIT_CHECK(events[loop_b] == (W_PENDING | W_LINKED), "the pending port's word is 0x%x after expand_array",
		  events[loop_b]);
	KIT_CHECK(control_block(0)->head[EVTCHN_FIFO_PRIORITY_DEFAULT] == loop_b, "head[7] = %u",
		  control_block(0)->head[EVTCHN_FIFO_PRIORITY_DEFAULT]);
	switched = true;
	sti();
	KIT_CHECK(KIT_WAIT_FOR(got[0][loop_b] == 1, 1000), "the event pending at the switch was not delivered (%u)",
		  got[0][loop_b]);
	struct evtchn_status st;
	KIT_CHECK(xen_evtchn_status_is(ipi[1], EVTCHNSTAT_ipi, &st) && st.vcpu == 1, "ipi port of vCPU 1 changed");
	KIT_CHECK(xen_evtchn_status_is(loop_b, EVTCHNSTAT_interdomain, &st) && st.u.interdomain.port == loop_a,
		  "loopback port changed");
}

static long ap_send(long p) { return xen_evtchn_send((evtchn_port_t)p); }

static void ipi_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	uint32_t to1 = got[1][ipi[1]], to0 = got[0][ipi[0]];
	XEN_EXPECT_RC(xen_evtchn_send(ipi[1]), 0, "send to vCPU 1");
	KIT_CHECK(KIT_WAIT_FOR(got[1][ipi[1]] == to1 + 1, 1000), "vCPU 1 did not get the IPI");
	long rc = -1;
	KIT_CHECK(kit_ap_call(ap_send, ipi[0], &rc) && rc == 0, "vCPU 1: send to vCPU 0 = %ld", rc);
	KIT_CHECK(KIT_WAIT_FOR(got[0][ipi[0]] == to0 + 1, 1000), "vCPU 0 did not get the IPI");
	uint32_t on0 = got[0][loop_b];
	XEN_EXPECT_RC(xen_evtchn_send(loop_a), 0, "send on the loopback port");
	KIT_CHECK(KIT_WAIT_FOR(got[0][loop_b] == on0 + 1, 1000), "the loopback event did not arrive");
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[0][ipi[1]] == 0 && got[1][ipi[0]] == 0 && got[1][loop_b] == 0, "an event on the wrong vCPU");
}

static void priorities_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	static const uint32_t prio[6] = { 7, 3, 7, 3, 0, 15 };
	static const int want[6] = { 4, 1, 3, 0, 2, 5 };
	evtchn_port_t p[6];
	for (int i = 0; i < 6; i++) {
		XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &p[i]), 0, "bind_ipi %d", i);
		KIT_CHECK(p[i] < NPORTS, "port %u beyond the event array", p[i]);
		events[p[i]] = 0; /* unmasked, as a kernel does at bind */
		XEN_EXPECT_RC(xen_evtchn_set_priority(p[i], prio[i]), 0, "set_priority(%u, %u)", p[i], prio[i]);
	}
	cli();
	norder = 0;
	logging = 1;
	for (int i = 0; i < 6; i++)
		xen_evtchn_send(p[i]);
	uint32_t u = upcalls[0];
	sti();
	KIT_CHECK(KIT_WAIT_FOR(norder == 6, 1000), "%d of 6 events handled", norder);
	logging = 0;
	kit_printf("KIT-XEN order %u %u %u %u %u %u (upcalls %u)\n", order[0], order[1], order[2], order[3], order[4],
		   order[5], upcalls[0] - u);
	for (int i = 0; i < 6; i++)
		KIT_CHECK(order[i] == p[want[i]], "event %d handled was port %u, expected %u (priority %u)", i, order[i],
			  p[want[i]], prio[want[i]]);
	for (int i = 0; i < 6; i++)
		xen_evtchn_close(p[i]);
}

static void masked_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	evtchn_port_t p = ipi[1];
	uint32_t before = got[1][p];
	mask(p);
	XEN_EXPECT_RC(xen_evtchn_send(p), 0, "send on a masked port");
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[1][p] == before, "a masked event was delivered");
	KIT_CHECK(events[p] == (W_PENDING | W_MASKED), "masked word 0x%x, expected pending and masked only", events[p]);
	XEN_EXPECT_RC(unmask(p), 0, "unmask");
	KIT_CHECK(KIT_WAIT_FOR(got[1][p] == before + 1, 1000), "unmask did not deliver the pending event");
	XEN_EXPECT_RC(unmask(p), 0, "unmask again");
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[1][p] == before + 1, "%u deliveries", got[1][p] - before);
}

static volatile uint32_t sent[NCPU];
static volatile long send_err[NCPU];

static long storm_side(long cpu)
{
	evtchn_port_t to = ipi[1 - cpu];
	for (int i = 0; i < STORM; i++) {
		/* A send on a pending port merges, as in Xen: wait for the last one. */
		if (!KIT_WAIT_FOR(!(events[to] & W_PENDING), 2000)) {
			send_err[cpu] = 1;
			break;
		}
		long rc = xen_evtchn_send(to);
		if (rc) {
			send_err[cpu] = rc;
			break;
		}
		sent[1 - cpu]++;
	}
	return 0;
}

static void storm_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	uint32_t g0 = got[0][ipi[0]], g1 = got[1][ipi[1]];
	bool started = kit_ap_start(storm_side, 1);
	storm_side(0);
	bool finished = started && kit_ap_wait(20000, NULL);
	KIT_WAIT_FOR(got[0][ipi[0]] - g0 >= sent[0] && got[1][ipi[1]] - g1 >= sent[1], 3000);
	kit_delay_ms(SETTLE_MS);
	kit_printf("KIT-XEN storm: to vCPU0 sent %u got %u, to vCPU1 sent %u got %u, errors %ld,%ld\n", sent[0],
		   got[0][ipi[0]] - g0, sent[1], got[1][ipi[1]] - g1, send_err[0], send_err[1]);
	KIT_CHECK(finished, "vCPU 1 did not finish its sends");
	KIT_CHECK(send_err[0] == 0 && send_err[1] == 0, "senders stopped (%ld, %ld)", send_err[0], send_err[1]);
	KIT_CHECK(sent[0] == STORM && sent[1] == STORM, "sent %u and %u", sent[0], sent[1]);
	KIT_CHECK(got[0][ipi[0]] - g0 == sent[0] && got[1][ipi[1]] - g1 == sent[1], "received differs from sent");
	KIT_CHECK(got[0][ipi[1]] == 0 && got[1][ipi[0]] == 0, "events on the wrong vCPU");
}

static evtchn_port_t timer_port[NCPU];

static long arm_timer(long cpu)
{
	struct vcpu_set_singleshot_timer s = { .timeout_abs_ns = xen_time_now(&sh->vcpu_info[cpu].time) + 2 * MS,
					       .flags = 0 };
	return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, (unsigned)cpu, &s);
}

static void timer_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	uint32_t before[NCPU];
	for (int cpu = 0; cpu < NCPU; cpu++) {
		XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, cpu, &timer_port[cpu]), 0, "bind VIRQ_TIMER(vcpu %d)", cpu);
		events[timer_port[cpu]] = 0;
		before[cpu] = got[cpu][timer_port[cpu]];
	}
	XEN_EXPECT_RC(arm_timer(0), 0, "singleshot on vCPU 0");
	long rc = -1;
	KIT_CHECK(kit_ap_call(arm_timer, 1, &rc) && rc == 0, "singleshot on vCPU 1: %ld", rc);
	KIT_CHECK(KIT_WAIT_FOR(got[0][timer_port[0]] > before[0] && got[1][timer_port[1]] > before[1], 1000),
		  "no timer tick on vCPU %d", got[0][timer_port[0]] > before[0] ? 1 : 0);
	kit_delay_ms(SETTLE_MS);
	KIT_CHECK(got[0][timer_port[0]] == before[0] + 1 && got[1][timer_port[1]] == before[1] + 1,
		  "timer ticks %u on vCPU 0, %u on vCPU 1", got[0][timer_port[0]] - before[0], got[1][timer_port[1]] - before[1]);
}

static void errors_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	uint64_t cb = (uintptr_t)control_page >> 12;
	XEN_EXPECT_RC(xen_evtchn_init_control(cb, 0, 0, NULL), -XEN_EINVAL, "init_control again");
	XEN_EXPECT_RC(xen_evtchn_init_control(cb, 0, 99, NULL), -XEN_ENOENT, "init_control(vcpu 99)");
	XEN_EXPECT_RC(xen_evtchn_init_control(cb, 4, 0, NULL), -XEN_EINVAL, "init_control(offset 4)");
	XEN_EXPECT_RC(xen_evtchn_init_control(cb, 4096 - 64, 0, NULL), -XEN_EINVAL, "init_control(crossing the page)");
	XEN_EXPECT_RC(xen_evtchn_set_priority(ipi[0], EVTCHN_FIFO_PRIORITY_MIN + 1), -XEN_EINVAL, "set_priority(16)");
	XEN_EXPECT_RC(xen_evtchn_set_priority(4095, 3), -XEN_EINVAL, "set_priority(port 4095)");
	XEN_EXPECT_RC(xen_evtchn_set_priority(0x20000, 3), -XEN_EINVAL, "set_priority(port 2^17)");
	XEN_EXPECT_RC(xen_evtchn_expand_array(0xfffffffffull), -XEN_EINVAL, "expand_array(no such frame)");
	XEN_EXPECT_RC(xen_evtchn_expand_array((uintptr_t)shinfo_page >> 12), -XEN_EINVAL, "expand_array(shared_info)");
}

static void reset_case(void)
{
	KIT_CHECK(switched, "not on FIFO");
	cli();
	switched = false;
	XEN_EXPECT_RC(xen_evtchn_reset(DOMID_SELF), 0, "reset");
	sti();
	evtchn_port_t p;
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &p), 0, "bind_ipi after reset");
	XEN_EXPECT_RC(xen_evtchn_set_priority(p, 3), -XEN_ENOSYS, "set_priority under 2-level");
	XEN_EXPECT_RC(xen_evtchn_expand_array((uintptr_t)events >> 12), -XEN_EOPNOTSUPP, "expand_array under 2-level");
	XEN_EXPECT_RC(xen_evtchn_init_control((uintptr_t)control_page >> 12, 0, 0, NULL), 0, "init_control after reset");
}

/* fifo=0: EOPNOTSUPP for the FIFO sub-ops, before any check of their arguments; 2-level events still arrive. */
static void refused_case(void)
{
	KIT_CHECK(loop_b, "setup failed");
	/* The helper passes link_bits zeroed: Xen writes it only when it sets the control block up. */
	uint8_t link_bits = 0;
	for (uint32_t cpu = 0; cpu <= NCPU; cpu++)
		XEN_EXPECT_RC(xen_evtchn_init_control((uintptr_t)control_page >> 12, cpu * CB_STRIDE, cpu, &link_bits),
			      -XEN_EOPNOTSUPP, "init_control(vcpu %u)", cpu);
	KIT_CHECK(link_bits == 0, "init_control wrote link_bits %u", link_bits);
	KIT_CHECK(control_block(0)->ready == 0, "the control block was written");
	XEN_EXPECT_RC(xen_evtchn_expand_array((uintptr_t)events >> 12), -XEN_EOPNOTSUPP, "expand_array");
	XEN_EXPECT_RC(xen_evtchn_set_priority(ipi[0], 3), -XEN_ENOSYS, "set_priority under 2-level");
	KIT_CHECK(!xen_evtchn_test(sh->evtchn_pending, ipi[1]), "ipi port of vCPU 1 pending before the send");
	XEN_EXPECT_RC(xen_evtchn_send(ipi[1]), 0, "send to vCPU 1");
	KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, ipi[1]), "the IPI is not pending in the 2-level bitmap");
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	uint64_t offered = 1;
	kit_cmdline_u64("fifo", &offered);
	kit_case("setup", setup_case);
	if (!offered) {
		kit_case("refused", refused_case);
		cli();
		return;
	}
	kit_case("switch", switch_case);
	kit_case("ipi", ipi_case);
	kit_case("priorities", priorities_case);
	kit_case("masked", masked_case);
	kit_case("storm", storm_case);
	kit_case("timer", timer_case);
	kit_case("errors", errors_case);
	kit_case("reset", reset_case);
	cli();
}

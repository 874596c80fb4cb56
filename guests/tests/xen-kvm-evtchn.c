/* Event channels as KVM raises them itself where it has Xen support (xenkvm's
 * `evtchn` fast path), seen from a guest on 2 vCPUs using the 2-level ABI and
 * a per-vCPU upcall vector on each, as Linux with xen.fifo_events=0:
 *   setup     shared_info, each vCPU's own vector, an IPI port on each vCPU,
 *             VIRQ_TIMER on vCPU 0; a first event on each vCPU through the
 *             page, so each LAPIC is seen taking its vector
 *   ipi       n= (default 500) IPIs from vCPU 0 to vCPU 1, each acked by
 *             vCPU 1's upcall handler before the next
 *   poll      vCPU 0 polls its masked IPI port; vCPU 1 sends on it 100 ms later
 *   timer-poll vCPU 0 polls its masked VIRQ_TIMER port, the timer 100 ms ahead
 * The polls go through the page's sched_op stub, and, where KVM has Xen
 * support, also by the instruction itself, which KVM serves: with kvm=1 (the
 * fast path on) they must sleep until the event; with kvm=yield (off) they
 * must return well before it, KVM's poll being a yield then. */
#include "../kit/kit.h"
#include "../common/xen.h"
#include <xen/sched.h>
#include <xen/vcpu.h>

#define VECTOR 0xe0
#define MS 1000000ull
/* Far enough ahead that a yield, which under nested emulation can give the CPU away for a few
 * milliseconds, still returns well before the event. */
#define SEND_AFTER_MS 100

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
/* Polls by the instruction: none (KVM without Xen support), sleeping until the event, or returning at once. */
static enum { NO_DIRECT_POLL, DIRECT_POLL_SLEEPS, DIRECT_POLL_YIELDS } direct_poll;
/* The IPI port of each vCPU, and VIRQ_TIMER's on vCPU 0. */
static evtchn_port_t ipi_port[2], timer_port;
static volatile uint32_t got[2];
static volatile uint32_t spurious;
static volatile long ap_rc = 1;

static uint64_t now(void) { return xen_time_now(&sh->vcpu_info[0].time); }

/* Counts the events on the vCPU's own IPI port; a masked port's events stay pending for its poll. */
static void on_upcall(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu > 1)
		return;
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	vi->evtchn_upcall_pending = 0;
	__atomic_exchange_n((xen_ulong_t *)&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
	evtchn_port_t p = ipi_port[cpu];
	xen_ulong_t m = (xen_ulong_t)1 << (p % XEN_EVTCHN_WORD_BITS);
	if (p && !xen_evtchn_test(sh->evtchn_mask, p) &&
	    (__atomic_fetch_and((xen_ulong_t *)&sh->evtchn_pending[p / XEN_EVTCHN_WORD_BITS], ~m, __ATOMIC_SEQ_CST) & m))
		__atomic_add_fetch(&got[cpu], 1, __ATOMIC_SEQ_CST);
	else
		spurious++;
}

static long ap_set_vector(long arg)
{
	(void)arg;
	return xen_set_upcall_vector(1, VECTOR); /* each vCPU sets its own, as Linux does */
}

static uint64_t send_at;

/* On vCPU 1: sends on `port` once its own clock reads send_at. */
static long ap_send_at(long port)
{
	while (xen_time_now(&sh->vcpu_info[1].time) < send_at)
		__asm__ volatile("pause");
	return xen_evtchn_send((evtchn_port_t)port);
}

static bool wait_got(int cpu, uint32_t want, uint32_t ms)
{
	return KIT_WAIT_FOR(__atomic_load_n(&got[cpu], __ATOMIC_SEQ_CST) >= want, ms);
}

static void setup_case(void)
{
	KIT_CHECK(xen_map_shared_info(shinfo_page) == 0, "map shared_info");
	sh = (volatile struct shared_info *)shinfo_page;
	KIT_CHECK(kit_smp_start(kit_ap_serve_interruptible) >= 2, "needs 2 vCPUs");
	KIT_CHECK(kit_ap_serving(3000), "vCPU 1 does not serve");
	KIT_CHECK(xen_set_upcall_vector(0, VECTOR) == 0, "upcall vector for vCPU 0");
	KIT_CHECK(kit_ap_call(ap_set_vector, 0, (long *)&ap_rc) && ap_rc == 0, "vCPU 1's upcall vector: %ld", ap_rc);
	for (uint32_t cpu = 0; cpu < 2; cpu++) {
		long rc = xen_evtchn_bind_ipi(cpu, &ipi_port[cpu]);
		KIT_CHECK(rc == 0, "bind_ipi(%u) = %ld", cpu, rc);
	}
	long rc = xen_evtchn_bind_virq(VIRQ_TIMER, 0, &timer_port);
	KIT_CHECK(rc == 0, "bind VIRQ_TIMER = %ld", rc);
	xen_evtchn_set(sh->evtchn_mask, timer_port); /* its events only ever end polls */
	sti();
	for (int cpu = 0; cpu < 2; cpu++) {
		KIT_CHECK(xen_evtchn_send(ipi_port[cpu]) == 0, "send");
		KIT_CHECK(wait_got(cpu, 1, 2000), "no event on vCPU %d", cpu);
	}
}

static void ipi_case(void)
{
	uint64_t n = 500;
	kit_cmdline_u64("n", &n);
	uint32_t base = got[1];
	for (uint32_t i = 1; i <= n; i++) {
		KIT_CHECK(xen_evtchn_send(ipi_port[1]) == 0, "send %u", i);
		KIT_CHECK(wait_got(1, base + i, 2000), "IPI %u of %llu never reached vCPU 1 (%u did)", i, U64(n), got[1] - base);
	}
	kit_printf("KIT-XEN ipis=%llu spurious=%u\n", U64(n), spurious);
}

/* Polls `port` (masked) until `event` makes it pending; `how` 0 through the page, 1 by the instruction. */
static void poll_once(evtchn_port_t port, int how, void (*event)(evtchn_port_t), uint64_t at)
{
	struct sched_poll p = { .nr_ports = 1 };
	set_xen_guest_handle(p.ports, &port);
	xen_evtchn_clear(sh->evtchn_pending, port);
	event(port);
	p.timeout = now() + 2000 * MS;
	long rc = how ? xen_direct_hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, XEN_PTR(&p)) : HYPERVISOR_sched_op(SCHEDOP_poll, &p);
	uint64_t woke = now();
	const char *by = how ? "by the instruction" : "through the page";
	kit_printf("KIT-XEN poll %s port=%u rc=%ld woke-us=%lld\n", by, port, rc, ((long long)woke - (long long)at) / 1000);
	KIT_CHECK(rc == 0, "poll %s = %ld", by, rc);
	if (how && direct_poll == DIRECT_POLL_YIELDS) {
		KIT_CHECK(woke + SEND_AFTER_MS * MS / 2 < at, "poll %s slept %lld us past the yield it should be", by,
			  ((long long)woke - (long long)at) / 1000 + SEND_AFTER_MS * 1000);
		/* The event still comes: let it, so it cannot end a later poll. */
		KIT_CHECK(KIT_WAIT_FOR(xen_evtchn_test(sh->evtchn_pending, port), 1000), "poll %s: the event never came", by);
	} else {
		/* vCPU 1's clock may read a little apart from vCPU 0's. */
		KIT_CHECK(woke + MS >= at && woke < at + 1000 * MS, "poll %s woke %lld us from the event", by, ((long long)woke - (long long)at) / 1000);
		KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, port), "poll %s: the port is not pending", by);
	}
	xen_evtchn_clear(sh->evtchn_pending, port);
}

static void send_from_vcpu1(evtchn_port_t port)
{
	KIT_CHECK(kit_ap_start(ap_send_at, port), "vCPU 1 takes no work");
}

static void poll_case(void)
{
	evtchn_port_t port = ipi_port[0];
	xen_evtchn_set(sh->evtchn_mask, port);
	for (int how = 0; how <= (direct_poll != NO_DIRECT_POLL); how++) {
		send_at = now() + SEND_AFTER_MS * MS;
		poll_once(port, how, send_from_vcpu1, send_at);
		long rc = -1;
		KIT_CHECK(kit_ap_wait(1000, &rc) && rc == 0, "vCPU 1's send = %ld", rc);
	}
	xen_evtchn_clear(sh->evtchn_mask, port);
}

static uint64_t timer_at;

static void arm_timer(evtchn_port_t port)
{
	(void)port;
	struct vcpu_set_singleshot_timer s = { .timeout_abs_ns = timer_at };
	KIT_CHECK(HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &s) == 0, "set_singleshot_timer");
}

static void timer_poll_case(void)
{
	for (int how = 0; how <= (direct_poll != NO_DIRECT_POLL); how++) {
		timer_at = now() + SEND_AFTER_MS * MS;
		poll_once(timer_port, how, arm_timer, timer_at);
	}
}

void kit_main(void)
{
	xen_require();
	char kvm[8] = "";
	kit_cmdline_get("kvm", kvm, sizeof kvm);
	direct_poll = !strcmp(kvm, "1") ? DIRECT_POLL_SLEEPS : !strcmp(kvm, "yield") ? DIRECT_POLL_YIELDS : NO_DIRECT_POLL;
	kit_set_irq_handler(VECTOR, on_upcall);
	kit_lapic_enable();
	kit_case("setup", setup_case);
	kit_case("ipi", ipi_case);
	kit_case("poll", poll_case);
	kit_case("timer-poll", timer_poll_case);
}

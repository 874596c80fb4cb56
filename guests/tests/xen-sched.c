/* SCHEDOP_yield and SCHEDOP_shutdown as a guest kernel uses them.
 * cmdline action=yield (then the kit's ACPI power-off), poweroff, reboot,
 * crash, watchdog, suspend, unknown (reason 99), soft-reset (the domain is
 * soft-reset and the guest runs on, as kexec and kdump expect; then ACPI
 * power-off; with a second vCPU, that one is up during the reset), code
 * (SCHEDOP_shutdown_code crash, then reboot, which changes nothing: the first
 * code stays; then a poweroff request, which the code overrides), watchdog-timer (claims and feeds watchdogs, then lets watchdog
 * 1 expire: the domain crashes). */
#include "../kit/kit.h"
#include "../common/xenstore.h"
#include <xen/sched.h>


static long shutdown(unsigned int reason)
{
	struct sched_shutdown s = { .reason = reason };
	kit_printf("KIT-SCHED shutdown reason=%u\n", reason);
	return HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
}

static void yield_case(void)
{
	long rc = HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
	KIT_CHECK(rc == 0, "yield: %ld", rc);
	rc = HYPERVISOR_sched_op(99, NULL);
	KIT_CHECK(rc == -XEN_ENOSYS, "sched_op 99: %ld, want -ENOSYS", rc);
}

/* ---- soft reset ----
 * Before: shared_info at frame A, ports of each kind (one left pending), a
 * vcpu_info at a RAM frame and a runstate area per vCPU. After: Xen's
 * domain_soft_reset has closed the ports, unregistered the areas and taken
 * shared_info off frame A (a fresh RAM page there), keeping its contents. */
static uint8_t frame_a[4096] __attribute__((aligned(4096)));
static uint8_t frame_b[4096] __attribute__((aligned(4096)));
static uint8_t vinfo_page[4096] __attribute__((aligned(4096)));
static struct vcpu_runstate_info runstate_area[2];

#define VINFO_OFF(cpu) (0x40u * ((cpu) + 1))
#define PATTERN 0xa5

static struct {
	bool ready, reset;
	int cpus;
	evtchn_port_t ipi, timer, unbound, remote, local; /* local: the loopback port bind_interdomain left pending */
	uint32_t wc_version;
	uint64_t wc_sec;
	uint32_t wc_nsec;
} sr;

static long register_vcpu_info(long cpu)
{
	struct vcpu_register_vcpu_info info;
	memset(&info, 0, sizeof info);
	info.mfn = (uintptr_t)vinfo_page >> 12;
	info.offset = VINFO_OFF(cpu);
	return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, (unsigned)cpu, &info);
}

static long register_runstate(long cpu)
{
	struct vcpu_register_runstate_memory_area a;
	memset(&a, 0, sizeof a);
	a.addr.v = &runstate_area[cpu];
	return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, (unsigned)cpu, &a);
}

static long ap_register_areas(long cpu)
{
	long rc = register_vcpu_info(cpu);
	return rc ? rc : register_runstate(cpu);
}

static void ap_main(int cpu)
{
	(void)cpu;
	kit_ap_serve();
}

/* What makes xenkvm rewrite a registered runstate area: a hypercall the main
 * thread serves (every vCPU paused and resumed around it) and
 * get_runstate_info; a yield, where Xen may switch vCPUs. */
static void runstate_activity(void)
{
	struct vcpu_runstate_info ri;
	struct evtchn_status st;
	HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
	xen_evtchn_status(DOMID_SELF, 1, &st);
	HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, &ri);
}

static void reset_setup_case(void)
{
	volatile struct shared_info *a = (volatile struct shared_info *)frame_a;
	XEN_EXPECT_RC(xen_map_shared_info(frame_a), 0, "map shared_info at frame A");
	KIT_CHECK(xen_wallclock(a, &sr.wc_version, &sr.wc_sec, &sr.wc_nsec), "wc_version stays odd");
	KIT_CHECK(sr.wc_version != 0 && sr.wc_sec >= 1700000000ull, "no wallclock in shared_info (%llu)", U64(sr.wc_sec));
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &sr.ipi), 0, "bind_ipi(0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, &sr.timer), 0, "bind_virq(TIMER, 0)");
	evtchn_port_t again;
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, &again), -XEN_EEXIST, "bind_virq(TIMER, 0) again");
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &sr.unbound), 0, "alloc_unbound");
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &sr.remote), 0, "alloc_unbound");
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, sr.remote, &sr.local), 0, "bind_interdomain(%u)", sr.remote);
	KIT_CHECK(xen_evtchn_test(a->evtchn_pending, sr.local), "port %u not pending after bind_interdomain", sr.local);
	XEN_EXPECT_RC(register_vcpu_info(0), 0, "register_vcpu_info(0)");
	XEN_EXPECT_RC(register_vcpu_info(0), -XEN_EINVAL, "register_vcpu_info(0) again");
	XEN_EXPECT_RC(register_runstate(0), 0, "register_runstate_memory_area(0)");
	KIT_CHECK(runstate_area[0].state == RUNSTATE_running, "runstate area not filled at registration (state %d)",
		  runstate_area[0].state);
	memset(&runstate_area[0], PATTERN, sizeof runstate_area[0]);
	runstate_activity();
	KIT_CHECK(runstate_area[0].state == RUNSTATE_running, "runstate area not updated before the reset (state %d)",
		  runstate_area[0].state);
	sr.cpus = kit_ncpus() >= 2 ? kit_smp_start(ap_main) : 1;
	if (sr.cpus >= 2) {
		long rc = -1;
		KIT_CHECK(kit_ap_serving(3000) && kit_ap_call(ap_register_areas, 1, &rc), "vCPU 1 did not answer");
		KIT_CHECK(rc == 0, "vCPU 1 registering its vcpu_info and runstate area = %ld %s", XEN_ERR(rc));
	}
	kit_printf("KIT-XEN soft-reset setup: ports ipi=%u timer=%u unbound=%u loopback=%u,%u; cpus=%d\n", sr.ipi, sr.timer,
		   sr.unbound, sr.remote, sr.local, sr.cpus);
	sr.ready = true;
}

static void soft_reset_case(void)
{
	KIT_CHECK(sr.ready, "setup failed");
	XEN_EXPECT_RC(shutdown(SHUTDOWN_soft_reset), 0, "SCHEDOP_shutdown(soft_reset)");
	sr.reset = true;
}

static void ports_closed_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	const evtchn_port_t ports[] = { sr.ipi, sr.timer, sr.unbound, sr.remote, sr.local };
	struct evtchn_status st;
	for (unsigned i = 0; i < sizeof ports / sizeof ports[0]; i++)
		if (!xen_evtchn_status_is(ports[i], EVTCHNSTAT_closed, &st))
			return;
	XEN_EXPECT_RC(xen_evtchn_send(sr.ipi), -XEN_EINVAL, "send(%u)", sr.ipi);
}

static void virq_rebind_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	evtchn_port_t p;
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, &p), 0, "bind_virq(TIMER, 0)");
	XEN_EXPECT_RC(xen_evtchn_close(p), 0, "close(%u)", p);
}

static void runstate_stopped_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	memset(runstate_area, PATTERN, sizeof runstate_area);
	runstate_activity();
	long at = xen_find_not(runstate_area, sizeof runstate_area, PATTERN);
	KIT_CHECK(at < 0, "runstate area written at byte %ld after the reset", at);
}

static void old_frame_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	volatile struct shared_info *a = (volatile struct shared_info *)frame_a;
	KIT_CHECK(a->wc_sec != (uint32_t)sr.wc_sec || a->wc_nsec != sr.wc_nsec, "frame A still shows shared_info's wallclock");
	memset(frame_a, PATTERN, sizeof frame_a);
	/* An event sets bits in shared_info, wherever it is now: none may show in frame A. */
	evtchn_port_t p;
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &p), 0, "bind_ipi(0)");
	XEN_EXPECT_RC(xen_evtchn_send(p), 0, "send(%u)", p);
	long at = xen_find_not(frame_a, sizeof frame_a, PATTERN);
	XEN_EXPECT_RC(xen_evtchn_close(p), 0, "close(%u)", p);
	KIT_CHECK(at < 0, "frame A is not plain RAM: byte %ld changed under the guest", at);
}

static void map_again_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	volatile struct shared_info *b = (volatile struct shared_info *)frame_b;
	XEN_EXPECT_RC(xen_map_shared_info(frame_b), 0, "map shared_info at frame B");
	uint32_t version, nsec;
	uint64_t sec;
	KIT_CHECK(xen_wallclock(b, &version, &sec, &nsec), "wc_version stays odd");
	kit_printf("KIT-XEN soft-reset wallclock version=%u sec=%llu nsec=%u (before: %u %llu %u)\n", version, U64(sec), nsec,
		   sr.wc_version, U64(sr.wc_sec), sr.wc_nsec);
	KIT_CHECK(sec == sr.wc_sec && nsec == sr.wc_nsec, "wallclock %llu.%09u, was %llu.%09u", U64(sec), nsec,
		  U64(sr.wc_sec), sr.wc_nsec);
	KIT_CHECK(!xen_evtchn_test(b->evtchn_pending, sr.local), "port %u still pending after the reset closed it", sr.local);
	KIT_CHECK(xen_time_now(&b->vcpu_info[0].time) != 0, "no pvclock in shared_info's vcpu_info[0]");
	long at = xen_find_not(frame_a, sizeof frame_a, PATTERN);
	KIT_CHECK(at < 0, "mapping at B changed frame A at byte %ld", at);
}

/* vCPU 0's events go to its vcpu_info in shared_info again, not to the one it had registered. */
static void events_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	volatile struct shared_info *b = (volatile struct shared_info *)frame_b;
	volatile struct vcpu_info *legacy = &b->vcpu_info[0];
	volatile struct vcpu_info *registered = (volatile struct vcpu_info *)(vinfo_page + VINFO_OFF(0));
	evtchn_port_t p;
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &p), 0, "bind_ipi(0)");
	legacy->evtchn_upcall_pending = 0;
	legacy->evtchn_pending_sel = 0;
	registered->evtchn_upcall_pending = 0;
	registered->evtchn_pending_sel = 0;
	XEN_EXPECT_RC(xen_evtchn_send(p), 0, "send(%u)", p);
	KIT_CHECK(xen_evtchn_test(b->evtchn_pending, p), "port %u not pending", p);
	KIT_CHECK(legacy->evtchn_upcall_pending == 1 && xen_evtchn_test(&legacy->evtchn_pending_sel, p / XEN_EVTCHN_WORD_BITS),
		  "shared_info's vcpu_info[0]: upcall_pending %u, selector 0x%llx", legacy->evtchn_upcall_pending,
		  U64(legacy->evtchn_pending_sel));
	KIT_CHECK(registered->evtchn_upcall_pending == 0 && registered->evtchn_pending_sel == 0,
		  "the vcpu_info registered before the reset got the event");
	XEN_EXPECT_RC(xen_evtchn_close(p), 0, "close(%u)", p);
}

static void vcpu_info_again_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	XEN_EXPECT_RC(register_vcpu_info(0), 0, "register_vcpu_info(0) after the reset");
}

/* The toolstack gave the store and the console new channels, as libxl does after a soft reset:
 * the parameters name ports bound to domain 0 again, and the store answers over its ring. */
static void toolstack_again_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	XEN_EXPECT_RC(xs_init(), 0, "store params after the reset");
	struct evtchn_status st;
	KIT_CHECK(xen_evtchn_status_is(xs_port(), EVTCHNSTAT_interdomain, &st) && st.u.interdomain.dom == 0,
		  "STORE_EVTCHN %u is not bound to domain 0", xs_port());
	uint64_t console = 0;
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &console), 0, "get CONSOLE_EVTCHN");
	KIT_CHECK(xen_evtchn_status_is((evtchn_port_t)console, EVTCHNSTAT_interdomain, &st) && st.u.interdomain.dom == 0,
		  "CONSOLE_EVTCHN %llu is not bound to domain 0", U64(console));
	static struct xs_reply r;
	KIT_CHECK(xs_read(0, "store/port", &r), "read store/port: %s", r.type == XS_ERROR ? r.data : "no reply");
	char want[12];
	kit_snprintf(want, sizeof want, "%u", xs_port());
	KIT_CHECK(!strcmp(r.data, want), "store/port \"%s\", STORE_EVTCHN %s", r.data, want);
}

/* vCPU 1 was up and serving during the reset: it runs on, and its vcpu_info was unregistered too. */
static void other_vcpu_case(void)
{
	KIT_CHECK(sr.reset, "no soft reset");
	long rc = -1;
	KIT_CHECK(kit_ap_call(register_vcpu_info, 1, &rc), "vCPU 1 did not answer after the reset");
	KIT_CHECK(rc == 0, "register_vcpu_info(1) after the reset = %ld %s", XEN_ERR(rc));
}

/* SCHEDOP_watchdog: two watchdogs can be claimed, the third is -ENOSPC; then the guest stops
 * feeding watchdog 1 and waits for the domain to be crashed by it. */
static void watchdog_case(void)
{
	struct sched_watchdog w = { .id = 0, .timeout = 1 };
	long a = HYPERVISOR_sched_op(SCHEDOP_watchdog, &w);
	long b = HYPERVISOR_sched_op(SCHEDOP_watchdog, &w);
	long c = HYPERVISOR_sched_op(SCHEDOP_watchdog, &w);
	KIT_CHECK(a == 1 && b == 2 && c == -XEN_ENOSPC, "claims: %ld %ld %ld, want 1 2 -ENOSPC", a, b, c);
	w.id = 2;
	w.timeout = 0;
	KIT_CHECK(HYPERVISOR_sched_op(SCHEDOP_watchdog, &w) == 0, "freeing watchdog 2");
	w.id = 5;
	w.timeout = 1;
	long rc = HYPERVISOR_sched_op(SCHEDOP_watchdog, &w);
	KIT_CHECK(rc == -XEN_EINVAL, "watchdog 5: %ld, want -EINVAL", rc);
	w.id = 1;
	KIT_CHECK(HYPERVISOR_sched_op(SCHEDOP_watchdog, &w) == 0, "feeding watchdog 1");
}

void kit_main(void)
{
	char action[16] = "yield";
	kit_cmdline_get("action", action, sizeof action);
	xen_require();
	if (!strcmp(action, "yield")) {
		kit_case("yield", yield_case);
		return;
	}
	if (!strcmp(action, "soft-reset")) {
		kit_case("setup", reset_setup_case);
		kit_case("soft-reset", soft_reset_case);
		kit_case("ports-closed", ports_closed_case);
		kit_case("virq-rebind", virq_rebind_case);
		kit_case("runstate-stopped", runstate_stopped_case);
		kit_case("old-frame-is-ram", old_frame_case);
		kit_case("map-again", map_again_case);
		kit_case("events-to-shared-info", events_case);
		kit_case("vcpu-info-again", vcpu_info_again_case);
		kit_case("toolstack-again", toolstack_again_case);
		if (sr.cpus >= 2)
			kit_case("other-vcpu", other_vcpu_case);
		return;
	}
	if (!strcmp(action, "watchdog-timer")) {
		kit_case("watchdog-timer", watchdog_case);
		kit_printf("KIT-SCHED waiting for the watchdog\n");
		for (;;)
			sti_hlt();
	}
	if (!strcmp(action, "code")) {
		struct sched_shutdown s = { .reason = SHUTDOWN_crash };
		kit_printf("KIT-SCHED shutdown_code rc=%ld\n", HYPERVISOR_sched_op(SCHEDOP_shutdown_code, &s));
		/* The first code stays: this one changes nothing. */
		s.reason = SHUTDOWN_reboot;
		kit_printf("KIT-SCHED shutdown_code rc=%ld\n", HYPERVISOR_sched_op(SCHEDOP_shutdown_code, &s));
		shutdown(SHUTDOWN_poweroff);
	}
	static const struct { const char *name; unsigned int reason; } reasons[] = {
		{ "poweroff", SHUTDOWN_poweroff }, { "reboot", SHUTDOWN_reboot }, { "crash", SHUTDOWN_crash },
		{ "watchdog", SHUTDOWN_watchdog }, { "suspend", SHUTDOWN_suspend }, { "unknown", 99 },
	};
	for (unsigned i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (!strcmp(action, reasons[i].name))
			shutdown(reasons[i].reason);
	kit_case_result("shutdown", false, "SCHEDOP_shutdown returned to the guest");
}

/* SCHEDOP_yield and SCHEDOP_shutdown as a guest kernel uses them.
 * cmdline action=yield (then the kit's ACPI power-off), poweroff, reboot,
 * crash, watchdog, suspend, unknown (reason 99), soft-reset (not supported:
 * -ENOSYS, then ACPI power-off), code (SCHEDOP_shutdown_code crash, then a
 * poweroff request, which the code overrides), watchdog-timer (claims and
 * feeds watchdogs, then lets watchdog 1 expire: the domain crashes). */
#include "../kit/kit.h"
#include "../common/xen.h"
#include <xen/sched.h>

static long sched_op(int cmd, void *arg) { return xen_hypercall(__HYPERVISOR_sched_op, cmd, XEN_PTR(arg), 0, 0, 0); }

static long shutdown(unsigned int reason)
{
	struct sched_shutdown s = { .reason = reason };
	kit_printf("KIT-SCHED shutdown reason=%u\n", reason);
	return sched_op(SCHEDOP_shutdown, &s);
}

static void yield_case(void)
{
	long rc = sched_op(SCHEDOP_yield, NULL);
	KIT_CHECK(rc == 0, "yield: %ld", rc);
	rc = sched_op(99, NULL);
	KIT_CHECK(rc == -XEN_ENOSYS, "sched_op 99: %ld, want -ENOSYS", rc);
}

static void soft_reset_case(void)
{
	long rc = shutdown(SHUTDOWN_soft_reset);
	KIT_CHECK(rc == -XEN_ENOSYS, "soft_reset: %ld, want -ENOSYS", rc);
}

/* SCHEDOP_watchdog: two watchdogs can be claimed, the third is -ENOSPC; then the guest stops
 * feeding watchdog 1 and waits for the domain to be crashed by it. */
static void watchdog_case(void)
{
	struct sched_watchdog w = { .id = 0, .timeout = 1 };
	long a = sched_op(SCHEDOP_watchdog, &w), b = sched_op(SCHEDOP_watchdog, &w), c = sched_op(SCHEDOP_watchdog, &w);
	KIT_CHECK(a == 1 && b == 2 && c == -XEN_ENOSPC, "claims: %ld %ld %ld, want 1 2 -ENOSPC", a, b, c);
	w.id = 2;
	w.timeout = 0;
	KIT_CHECK(sched_op(SCHEDOP_watchdog, &w) == 0, "freeing watchdog 2");
	w.id = 5;
	w.timeout = 1;
	long rc = sched_op(SCHEDOP_watchdog, &w);
	KIT_CHECK(rc == -XEN_EINVAL, "watchdog 5: %ld, want -EINVAL", rc);
	w.id = 1;
	KIT_CHECK(sched_op(SCHEDOP_watchdog, &w) == 0, "feeding watchdog 1");
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
		kit_case("soft-reset", soft_reset_case);
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
		kit_printf("KIT-SCHED shutdown_code rc=%ld\n", sched_op(SCHEDOP_shutdown_code, &s));
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

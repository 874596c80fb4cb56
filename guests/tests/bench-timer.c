/* Xen singleshot timer benchmark, guest of bench/kvm-xen-paths.ts and of a
 * test: set up as Linux does (shared_info mapped, a per-vCPU upcall vector,
 * VIRQ_TIMER bound on vCPU 0, the 2-level event ABI), then n calls of
 * VCPUOP_set_singleshot_timer an hour ahead (never firing, however slow the
 * calls), timed with
 * rdtsc; then one timer 1 ms ahead that must fire, its event taken by the
 * upcall handler. Where KVM keeps the timer (xenkvm's `timer` fast path) the
 * calls never leave the kernel.
 * cmdline: n= calls (default 1000).
 * Prints `KIT-BENCH timers=<n> tsc=<total> fired=<0|1> late-ns=<lateness>`, or
 * `KIT-BENCH timers FAIL <what>`. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xe0
#define MS 1000000ull

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static evtchn_port_t timer_port;
static volatile uint32_t ticks;
static volatile uint64_t tick_at;

static uint64_t now(void) { return xen_time_now(&sh->vcpu_info[0].time); }

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	if (xen_upcall_take_port(sh, 0, timer_port)) {
		tick_at = now();
		ticks++;
	}
}

static long singleshot(uint64_t at)
{
	struct vcpu_set_singleshot_timer s = { .timeout_abs_ns = at, .flags = 0 };
	return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &s);
}

void kit_main(void)
{
	uint64_t n = 1000;
	kit_cmdline_u64("n", &n);
	sh = (volatile struct shared_info *)shinfo_page;
	const char *failed = xen_timer_setup(shinfo_page, UPCALL_VECTOR, on_upcall, &timer_port);
	if (failed) {
		kit_printf("KIT-BENCH timers FAIL %s\n", failed);
		kit_poweroff();
	}
	uint64_t far = now() + 3600000 * MS;
	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		singleshot(far);
	uint64_t tsc = rdtsc() - t0;
	uint64_t at = now() + MS;
	singleshot(at);
	KIT_HALT_UNTIL(ticks, 2000);
	kit_printf("KIT-BENCH timers=%llu tsc=%llu fired=%u late-ns=%lld\n", (unsigned long long)n, (unsigned long long)tsc,
		   ticks, ticks ? (long long)(tick_at - at) : -1ll);
	kit_poweroff();
}

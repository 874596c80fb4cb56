/* shared_info move benchmark, guest of bench/kvm-xen-paths.ts and of a test:
 * shared_info mapped, a per-vCPU upcall vector, VIRQ_TIMER bound on vCPU 0
 * (so KVM, where it raises the events, holds shared_info and the vcpu_info in
 * it), then n moves of shared_info between two frames
 * (XENMEM_add_to_physmap, XENMAPSPACE_shared_info), timed with rdtsc; then
 * one timer 1 ms ahead that must fire, its event found in the page where it
 * now is. Where KVM takes shared_info by host address (xenkvm's `shinfo-hva`
 * fast path) a move tells KVM nothing.
 * cmdline: n= moves (default 1000).
 * Prints `KIT-BENCH moves=<n> tsc=<total> fired=<0|1>`, or
 * `KIT-BENCH moves FAIL <what>`. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xe0
#define MS 1000000ull

static uint8_t frames[2][4096] __attribute__((aligned(4096)));
static volatile struct shared_info *volatile sh;
static evtchn_port_t timer_port;
static volatile uint32_t ticks;

static uint64_t now(void) { return xen_time_now(&sh->vcpu_info[0].time); }

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	if (xen_upcall_take_port(sh, 0, timer_port))
		ticks++;
}

void kit_main(void)
{
	uint64_t n = 1000;
	kit_cmdline_u64("n", &n);
	sh = (volatile struct shared_info *)frames[0];
	const char *failed = xen_timer_setup(frames[0], UPCALL_VECTOR, on_upcall, &timer_port);
	uint64_t t0 = rdtsc();
	for (uint64_t i = 1; !failed && i <= n; i++) {
		if (xen_map_shared_info(frames[i & 1]) != 0)
			failed = "move shared_info";
		sh = (volatile struct shared_info *)frames[i & 1];
	}
	uint64_t tsc = rdtsc() - t0;
	if (failed) {
		kit_printf("KIT-BENCH moves FAIL %s\n", failed);
		kit_poweroff();
	}
	struct vcpu_set_singleshot_timer s = { .timeout_abs_ns = now() + MS, .flags = 0 };
	if (HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 0, &s) != 0) {
		kit_printf("KIT-BENCH moves FAIL set the timer\n");
		kit_poweroff();
	}
	KIT_HALT_UNTIL(ticks, 2000);
	kit_printf("KIT-BENCH moves=%llu tsc=%llu fired=%u\n", (unsigned long long)n, (unsigned long long)tsc, ticks);
	kit_poweroff();
}

/* Time: wallclock, pvclock from each vCPU's vcpu_info in shared_info, kept
 * monotonic across vCPUs when the records say XEN_PVCLOCK_TSC_STABLE_BIT and
 * within a bounded skew otherwise (ping-pong between BSP and AP), and the
 * secondary copy from VCPUOP_register_vcpu_time_memory_area. Run with --vcpus 2.
 * cmdline: rounds=<n> (ping-pong rounds, default 200). */
#include "../kit/kit.h"
#include "../common/xen.h"

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t time_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *shinfo;
static int online;
static uint64_t rounds = 200;

static volatile struct vcpu_time_info *primary(int cpu) { return &shinfo->vcpu_info[cpu].time; }
static volatile struct vcpu_time_info *secondary(int cpu)
{
	return (volatile struct vcpu_time_info *)(time_page + 64 * (unsigned)cpu);
}

static void shinfo_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", rc, xen_errname(rc));
	shinfo = (volatile struct shared_info *)shinfo_page;
}

static void wallclock_case(void)
{
	KIT_CHECK(shinfo, "shared_info not mapped");
	uint32_t v, nsec;
	uint64_t sec;
	KIT_CHECK(xen_wallclock(shinfo, &v, &sec, &nsec), "wc_version stays odd (%u)", shinfo->wc_version);
	uint64_t now = xen_time_now(primary(0));
	kit_printf("KIT-XEN wallclock version=%u boot=%llu.%09u system=%llu\n", v, U64(sec), nsec, U64(now));
	KIT_CHECK(v != 0 && !(v & 1), "wc_version %u", v);
	KIT_CHECK(sec >= 1700000000ull && sec < 0x100000000ull, "wc_sec %llu implausible", U64(sec));
	KIT_CHECK(nsec < 1000000000u, "wc_nsec %u", nsec);
}

/* ---- per-vCPU checks, run by each CPU on itself ---- */
struct result {
	volatile int done;
	bool snap_ok;
	struct xen_time_snap snap;
	uint64_t t1, t2;
	bool monotonic;
	long area_rc;
	bool area_snap_ok;
	struct xen_time_snap area;
	int64_t area_diff;
};
static struct result res[KIT_MAX_CPUS];

static void self_checks(int cpu)
{
	struct result *r = &res[cpu];
	volatile struct vcpu_time_info *t = primary(cpu);
	r->snap_ok = xen_time_snapshot(t, &r->snap);
	r->t1 = xen_time_now(t);
	r->monotonic = true;
	uint64_t prev = r->t1;
	for (int i = 0; i < 50; i++) {
		uint64_t n = xen_time_now(t);
		if (n < prev)
			r->monotonic = false;
		prev = n;
	}
	kit_delay_ms(2);
	r->t2 = xen_time_now(t);

	/* Secondary copy. */
	memset((void *)secondary(cpu), 0, sizeof(struct vcpu_time_info));
	struct vcpu_register_time_memory_area a;
	memset(&a, 0, sizeof a);
	a.addr.p = (uintptr_t)secondary(cpu);
	r->area_rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, (unsigned)cpu, &a);
	struct xen_time_snap p;
	r->area_snap_ok = xen_time_snapshot(secondary(cpu), &r->area) && xen_time_snapshot(t, &p);
	uint64_t tsc = rdtsc();
	r->area_diff = (int64_t)(xen_time_at(&r->area, tsc) - xen_time_at(&p, tsc));
	__atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
}

/* ---- ping-pong ---- */
static volatile uint32_t seq;
static volatile uint64_t published;
static volatile int pp_bad_round = -1;
static volatile uint64_t pp_bad_prev, pp_bad_now;
static volatile int pp_bad_cpu;
static volatile uint64_t pp_max_back; /* the largest step back between the vCPUs' readings, in ns */
static volatile int pp_max_back_round = -1, pp_max_back_cpu;
/* Without XEN_PVCLOCK_TSC_STABLE_BIT Xen promises no order between readings on two
 * vCPUs (Linux then keeps its own last-value guard across CPUs): their clocks must
 * only share one time base, apart by no more than their TSCs drift apart. */
#define UNSTABLE_SKEW_NS 20000000ull
static volatile int ap_go, pp_ap_timeout;

static void pp_check(int cpu, int round, uint64_t now)
{
	if (now < published && pp_bad_round < 0) {
		pp_bad_prev = published;
		pp_bad_now = now;
		pp_bad_cpu = cpu;
		pp_bad_round = round;
	}
	if (now < published && published - now > pp_max_back) {
		pp_max_back = published - now;
		pp_max_back_round = round;
		pp_max_back_cpu = cpu;
	}
	published = now;
}

static bool wait_seq(uint32_t want)
{
	return KIT_WAIT_FOR(__atomic_load_n(&seq, __ATOMIC_ACQUIRE) == want, 3000);
}

static void ap_main(int cpu)
{
	self_checks(cpu);
	if (cpu != 1)
		return;
	if (!kit_wait_flag(&ap_go, 10000))
		return;
	for (uint32_t i = 0; i < rounds; i++) {
		if (!wait_seq(2 * i + 1)) {
			pp_ap_timeout = 1;
			return;
		}
		pp_check(1, (int)i, xen_time_now(primary(1)));
		__atomic_store_n(&seq, 2 * i + 2, __ATOMIC_RELEASE);
	}
}

static void start_case(void)
{
	KIT_CHECK(shinfo, "shared_info not mapped");
	self_checks(0);
	online = kit_smp_start(ap_main);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	for (int cpu = 1; cpu < online; cpu++)
		KIT_CHECK(kit_wait_flag(&res[cpu].done, 3000), "cpu %d did not finish its checks", cpu);
}

static int ncpu(void) { return online > 0 ? online : 1; }

static void pvclock_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++) {
		struct result *r = &res[cpu];
		kit_printf("KIT-XEN cpu=%d time version=%u tsc=0x%llx system=%llu mul=0x%x shift=%d flags=0x%x t1=%llu t2=%llu\n",
			   cpu, r->snap.version, U64(r->snap.tsc_timestamp), U64(r->snap.system_time), r->snap.mul,
			   r->snap.shift, r->snap.flags, U64(r->t1), U64(r->t2));
		KIT_CHECK(r->snap_ok, "cpu %d: time version stays odd", cpu);
		KIT_CHECK(r->snap.version != 0 && r->snap.mul != 0, "cpu %d: time info never written", cpu);
		KIT_CHECK(r->monotonic, "cpu %d: time went backwards between reads", cpu);
		KIT_CHECK(r->t2 > r->t1, "cpu %d: not advancing (%llu, %llu)", cpu, U64(r->t1), U64(r->t2));
	}
	/* TSC frequency implied by mul/shift: (1e9 << 32) / mul, then shift. */
	uint64_t hz = (1000000000ull << 32) / res[0].snap.mul;
	hz = res[0].snap.shift < 0 ? hz << -res[0].snap.shift : hz >> res[0].snap.shift;
	kit_printf("KIT-XEN tsc_khz=%llu\n", U64(hz / 1000));
	KIT_CHECK(hz > 100000000ull && hz < 20000000000ull, "implied TSC %llu Hz implausible", U64(hz));
}

static void cross_vcpu_case(void)
{
	KIT_CHECK(online >= 2, "needs 2 vCPUs");
	published = 0;
	__atomic_store_n(&ap_go, 1, __ATOMIC_SEQ_CST);
	for (uint32_t i = 0; i < rounds; i++) {
		pp_check(0, (int)i, xen_time_now(primary(0)));
		__atomic_store_n(&seq, 2 * i + 1, __ATOMIC_RELEASE);
		KIT_CHECK(wait_seq(2 * i + 2), "round %u: AP did not answer%s", i, pp_ap_timeout ? " (AP timed out)" : "");
	}
	bool stable = primary(0)->flags & primary(1)->flags & XEN_PVCLOCK_TSC_STABLE_BIT;
	kit_printf("KIT-XEN ping-pong rounds=%u last=%llu tsc-stable=%d max-back=%lluns\n", (unsigned)rounds,
		   U64(published), stable, U64(pp_max_back));
	if (stable)
		KIT_CHECK(pp_bad_round < 0, "round %d: cpu %d read %llu after %llu from the other vCPU", pp_bad_round,
			  pp_bad_cpu, U64(pp_bad_now), U64(pp_bad_prev));
	else
		KIT_CHECK(pp_max_back <= UNSTABLE_SKEW_NS, "round %d: cpu %d read %llu ns behind the other vCPU",
			  pp_max_back_round, pp_max_back_cpu, U64(pp_max_back));
}

static void time_area_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++) {
		struct result *r = &res[cpu];
		kit_printf("KIT-XEN cpu=%d time-area rc=%ld version=%u system=%llu diff=%lldns\n", cpu, r->area_rc,
			   r->area.version, U64(r->area.system_time), (long long)r->area_diff);
		KIT_CHECK(r->area_rc == 0, "cpu %d: register_vcpu_time_memory_area = %ld %s", cpu, r->area_rc,
			  xen_errname(r->area_rc));
		KIT_CHECK(r->area_snap_ok, "cpu %d: secondary version stays odd", cpu);
		KIT_CHECK(r->area.version != 0 && r->area.mul != 0, "cpu %d: secondary copy not written", cpu);
		KIT_CHECK(r->area_diff >= -1000 && r->area_diff <= 1000,
			  "cpu %d: secondary and primary differ by %lld ns at the same TSC", cpu, (long long)r->area_diff);
	}
}

static void time_area_bad_arg_case(void)
{
	long rc = xen_hypercall(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_time_memory_area, 0, KIT_UNMAPPED_VA, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "bad pointer = %ld %s, expected -EFAULT", rc, xen_errname(rc));
	struct vcpu_register_time_memory_area a;
	a.addr.p = (uintptr_t)secondary(0);
	rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 99, &a);
	KIT_CHECK(rc == -XEN_ENOENT, "vcpu 99 = %ld %s, expected -ENOENT", rc, xen_errname(rc));
}

void kit_main(void)
{
	kit_cmdline_u64("rounds", &rounds);
	xen_require();
	kit_case("map-shared-info", shinfo_case);
	kit_case("wallclock", wallclock_case);
	kit_case("start-vcpus", start_case);
	kit_case("pvclock", pvclock_case);
	kit_case("pvclock-cross-vcpu", cross_vcpu_case);
	kit_case("time-area", time_area_case);
	kit_case("time-area-bad-arg", time_area_bad_arg_case);
}

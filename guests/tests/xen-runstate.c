/* Runstate areas (native layout, 48 bytes): VCPUOP_register_runstate_memory_area
 * at every start from 60 bytes before to 3 bytes after a page boundary,
 * where the two virtual pages are backed by frames that are NOT adjacent
 * (frame 2 then frame 0 of a 4-frame block), so a hypervisor writing
 * physically past the first frame hits frame 3 instead. Once without and once
 * with VMASST_TYPE_runstate_update_flag. Also VCPUOP_get_runstate_info on
 * both vCPUs, before and after the AP starts, and vm_assist. Run with
 * --vcpus 2.
 *
 * Xen copies the runstate into a newly registered area at once when the
 * caller registers its own. The sum of the four times equals
 * state_entry_time (system time is counted from the vCPU's creation at 0). */
#include "../kit/kit.h"
#include "../common/xen.h"
#include <xen/sched.h>

#define CANARY 0xc5
#define AREA ((unsigned)sizeof(struct vcpu_runstate_info))
#define WINDOW 128 /* canary bytes checked each side of the boundary */
#define VA_BASE 0x100000000ull
#define BOUNDARY (VA_BASE + 4096)

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t frames[4][4096] __attribute__((aligned(4096)));
static uint8_t ap_area_page[4096] __attribute__((aligned(4096)));
static uint8_t park_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *shinfo;
static bool mapped;
static int online;

_Static_assert(sizeof(struct vcpu_runstate_info) == 48, "native runstate layout");

static long register_area(unsigned int cpu, uint64_t va)
{
	struct vcpu_register_runstate_memory_area a;
	memset(&a, 0, sizeof a);
	a.addr.p = va;
	return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, cpu, &a);
}

/* Consistent copy of a guest-memory runstate area: state_entry_time read
 * before and after the copy must match and have XEN_RUNSTATE_UPDATE clear. */
static void shinfo_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", rc, xen_errname(rc));
	shinfo = (volatile struct shared_info *)shinfo_page;
}

static void map_case(void)
{
	KIT_CHECK(kit_map_page(VA_BASE, (uintptr_t)frames[2]), "cannot map 0x%llx", U64(VA_BASE));
	KIT_CHECK(kit_map_page(VA_BASE + 4096, (uintptr_t)frames[0]), "cannot map 0x%llx", U64(VA_BASE + 4096));
	volatile uint8_t *lo = (volatile uint8_t *)(uintptr_t)VA_BASE;
	memset(frames, CANARY, sizeof frames);
	frames[2][100] = 1;
	frames[0][100] = 2;
	KIT_CHECK(lo[100] == 1 && lo[4096 + 100] == 2, "mapping does not reach the frames");
	frames[2][100] = CANARY;
	frames[0][100] = CANARY;
	kit_printf("KIT-XEN runstate pages: va 0x%llx -> pa 0x%lx, va 0x%llx -> pa 0x%lx (pa 0x%lx is the frame after the first)\n",
		   U64(VA_BASE), (unsigned long)(uintptr_t)frames[2], U64(VA_BASE + 4096),
		   (unsigned long)(uintptr_t)frames[0], (unsigned long)(uintptr_t)frames[3]);
	mapped = true;
}

static void vm_assist_case(void)
{
	long rc = HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag);
	KIT_CHECK(rc == 0, "enable runstate_update_flag = %ld %s", rc, xen_errname(rc));
	rc = HYPERVISOR_vm_assist(VMASST_CMD_disable, VMASST_TYPE_runstate_update_flag);
	KIT_CHECK(rc == 0, "disable runstate_update_flag = %ld %s", rc, xen_errname(rc));
	/* HVM guests may only use runstate_update_flag. */
	rc = HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_4gb_segments);
	KIT_CHECK(rc == -XEN_EINVAL, "enable 4gb_segments = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	rc = HYPERVISOR_vm_assist(VMASST_CMD_enable, 64);
	KIT_CHECK(rc == -XEN_EINVAL, "enable type 64 = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	rc = HYPERVISOR_vm_assist(2, VMASST_TYPE_runstate_update_flag);
	KIT_CHECK(rc == -XEN_ENOSYS, "cmd 2 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
}

static void self_info_case(void)
{
	KIT_CHECK(shinfo, "shared_info not mapped");
	struct vcpu_runstate_info ri;
	memset(&ri, 0xaa, sizeof ri);
	long rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, &ri);
	uint64_t now = xen_time_now(&shinfo->vcpu_info[0].time);
	kit_printf("KIT-XEN runstate-info cpu=0 state=%d entry=%llu times=%llu,%llu,%llu,%llu now=%llu\n", ri.state,
		   U64(ri.state_entry_time), U64(ri.time[0]), U64(ri.time[1]), U64(ri.time[2]), U64(ri.time[3]),
		   U64(now));
	KIT_CHECK(rc == 0, "get_runstate_info(0) = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(ri.state == RUNSTATE_running, "state %d, expected running", ri.state);
	KIT_CHECK(ri.time[RUNSTATE_running] > 0, "time[running] 0");
	KIT_CHECK(ri.state_entry_time <= now, "state_entry_time %llu after now %llu", U64(ri.state_entry_time), U64(now));
	uint64_t sum = ri.time[0] + ri.time[1] + ri.time[2] + ri.time[3];
	KIT_CHECK(sum <= now, "times sum to %llu, after now %llu", U64(sum), U64(now));
}

static void other_offline_case(void)
{
	KIT_CHECK(kit_ncpus() >= 2, "needs 2 vCPUs (run with --vcpus 2)");
	struct vcpu_runstate_info ri;
	memset(&ri, 0xaa, sizeof ri);
	long rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 1, &ri);
	kit_printf("KIT-XEN runstate-info cpu=1 (not started) rc=%ld state=%d entry=%llu\n", rc, ri.state,
		   U64(ri.state_entry_time));
	KIT_CHECK(rc == 0, "get_runstate_info(1) = %ld %s", rc, xen_errname(rc));
	/* An HVM AP is down until INIT-SIPI: offline. */
	KIT_CHECK(ri.state == RUNSTATE_offline, "state %d before the AP was started, expected offline (3)", ri.state);
}

static void bad_vcpu_case(void)
{
	struct vcpu_runstate_info ri;
	long rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 99, &ri);
	KIT_CHECK(rc == -XEN_ENOENT, "get_runstate_info(99) = %ld %s, expected -ENOENT", rc, xen_errname(rc));
	rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, (unsigned)kit_ncpus(), &ri);
	KIT_CHECK(rc == -XEN_ENOENT, "get_runstate_info(%d) = %ld %s, expected -ENOENT", kit_ncpus(), rc,
		  xen_errname(rc));
	rc = xen_hypercall(__HYPERVISOR_vcpu_op, VCPUOP_get_runstate_info, 0, KIT_UNMAPPED_VA, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "get_runstate_info(bad pointer) = %ld %s, expected -EFAULT", rc, xen_errname(rc));
	rc = xen_hypercall(__HYPERVISOR_vcpu_op, VCPUOP_register_runstate_memory_area, 0, KIT_UNMAPPED_VA, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "register_runstate_memory_area(bad pointer) = %ld %s, expected -EFAULT", rc,
		  xen_errname(rc));
}

/* The canary windows: each side of the virtual boundary, and the start of
 * the frame physically after the first one. */
static uint8_t *const windows[3] = { &frames[2][4096 - WINDOW], &frames[0][0], &frames[3][0] };

static void refill(void)
{
	for (int w = 0; w < 3; w++)
		memset(windows[w], CANARY, WINDOW);
}

/* Bytes of window w that belong to the area [va, va + AREA). */
static bool in_area(int w, unsigned i, uint64_t va)
{
	uint64_t b;
	if (w == 0)
		b = BOUNDARY - WINDOW + i;
	else if (w == 1)
		b = BOUNDARY + i;
	else
		return false;
	return b >= va && b < va + AREA;
}

static void sweep(bool flag)
{
	KIT_CHECK(mapped, "pages not mapped");
	if (flag) {
		long rc = HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag);
		KIT_CHECK(rc == 0, "enable runstate_update_flag = %ld %s", rc, xen_errname(rc));
	}
	for (int off = -60; off <= 3; off++) {
		uint64_t va = BOUNDARY + (uint64_t)(int64_t)off;
		/* Park the area elsewhere so nothing updates the old place while
		 * the windows are refilled. */
		long rc = register_area(0, (uintptr_t)park_page);
		KIT_CHECK(rc == 0, "offset %d: park = %ld %s", off, rc, xen_errname(rc));
		refill();
		rc = register_area(0, va);
		KIT_CHECK(rc == 0, "offset %d: register = %ld %s", off, rc, xen_errname(rc));
		struct vcpu_runstate_info ri;
		KIT_CHECK(xen_read_runstate_area((const volatile void *)(uintptr_t)va, &ri),
			  "offset %d: state_entry_time unstable or XEN_RUNSTATE_UPDATE stuck", off);
		uint64_t sum = ri.time[0] + ri.time[1] + ri.time[2] + ri.time[3];
		if (off == -60 || off == -24 || off == 0)
			kit_printf("KIT-XEN runstate off=%d state=%d entry=%llu sum=%llu running=%llu\n", off, ri.state,
				   U64(ri.state_entry_time), U64(sum), U64(ri.time[0]));
		KIT_CHECK(ri.state == RUNSTATE_running, "offset %d: state %d, expected running", off, ri.state);
		KIT_CHECK(sum == ri.state_entry_time, "offset %d: times sum to %llu, state_entry_time %llu", off, U64(sum),
			  U64(ri.state_entry_time));
		KIT_CHECK(ri.time[RUNSTATE_running] > 0, "offset %d: time[running] 0", off);
		for (int w = 0; w < 3; w++)
			for (unsigned i = 0; i < WINDOW; i++)
				if (!in_area(w, i, va) && windows[w][i] != CANARY)
					KIT_CHECK(0, "offset %d: %s byte %u = 0x%02x (outside the area)", off,
						  w == 0 ? "page-before" : w == 1 ? "page-after" : "frame-after-first",
						  w == 0 ? 4096 - WINDOW + i : i, windows[w][i]);
	}
}

static void sweep_case(void) { sweep(false); }
static void sweep_flag_case(void) { sweep(true); }

/* After the sweeps the area stays at the last offset (+3). */
static void canary_pages_case(void)
{
	KIT_CHECK(mapped, "pages not mapped");
	uint64_t last = BOUNDARY + 3;
	for (int f = 0; f < 4; f++)
		for (unsigned i = 0; i < 4096; i++) {
			uint64_t va = f == 2 ? VA_BASE + i : f == 0 ? VA_BASE + 4096 + i : 0;
			if (va && va >= last && va < last + AREA)
				continue;
			KIT_CHECK(frames[f][i] == CANARY, "frame %d byte %u = 0x%02x", f, i, frames[f][i]);
		}
}

static volatile int ap_registered;
static volatile long ap_register_rc;
/* cross-register: 1 while the AP churns its runstate, 2 once it is to stop; ap_churned when it has. */
static volatile int ap_churn, ap_churned;
static volatile unsigned ap_churns;

static void ap_main(int cpu)
{
	if (cpu != 1)
		return;
	ap_register_rc = register_area(1, (uintptr_t)ap_area_page + 64);
	__atomic_store_n(&ap_registered, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&ap_churn, __ATOMIC_SEQ_CST) == 0)
		cpu_relax();
	/* A poll whose timeout is long past: blocked and running again, each change published to its area. */
	struct sched_poll p = { .nr_ports = 0, .timeout = 1 };
	while (__atomic_load_n(&ap_churn, __ATOMIC_SEQ_CST) == 1) {
		HYPERVISOR_sched_op(SCHEDOP_poll, &p);
		ap_churns++;
	}
	__atomic_store_n(&ap_churned, 1, __ATOMIC_SEQ_CST);
}

static void other_up_case(void)
{
	online = kit_smp_start(ap_main);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	KIT_CHECK(kit_wait_flag(&ap_registered, 2000), "AP did not run");
	kit_delay_ms(5); /* let it go idle */
	struct vcpu_runstate_info ri;
	memset(&ri, 0xaa, sizeof ri);
	long rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 1, &ri);
	kit_printf("KIT-XEN runstate-info cpu=1 (started) rc=%ld state=%d entry=%llu running=%llu blocked=%llu offline=%llu\n",
		   rc, ri.state, U64(ri.state_entry_time), U64(ri.time[0]), U64(ri.time[2]), U64(ri.time[3]));
	KIT_CHECK(rc == 0, "get_runstate_info(1) = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(ri.state == RUNSTATE_running || ri.state == RUNSTATE_runnable || ri.state == RUNSTATE_blocked,
		  "AP state %d after bring-up", ri.state);
	KIT_CHECK(ri.time[RUNSTATE_running] > 0, "AP never counted as running");
}

static void ap_area_case(void)
{
	KIT_CHECK(ap_registered, "AP did not run");
	KIT_CHECK(ap_register_rc == 0, "AP register = %ld %s", ap_register_rc, xen_errname(ap_register_rc));
	struct vcpu_runstate_info ri;
	KIT_CHECK(xen_read_runstate_area(ap_area_page + 64, &ri), "AP area unstable");
	uint64_t sum = ri.time[0] + ri.time[1] + ri.time[2] + ri.time[3];
	kit_printf("KIT-XEN runstate-area cpu=1 state=%d entry=%llu sum=%llu\n", ri.state, U64(ri.state_entry_time),
		   U64(sum));
	KIT_CHECK(ri.state == RUNSTATE_running || ri.state == RUNSTATE_runnable || ri.state == RUNSTATE_blocked,
		  "AP area state %d", ri.state);
	KIT_CHECK(sum == ri.state_entry_time, "AP area: times sum to %llu, state_entry_time %llu", U64(sum),
		  U64(ri.state_entry_time));
	KIT_CHECK(xen_find_not(ap_area_page, 64, 0) < 0 && xen_find_not(ap_area_page + 64 + AREA, 64, 0) < 0,
		  "AP registration wrote outside its area");
}

/* vCPU 0 moves vCPU 1's runstate area back and forth while vCPU 1 publishes to it as fast as it can:
 * every publication lands whole in one of the two places, and nothing else is written. */
static void cross_register_case(void)
{
	KIT_CHECK(ap_registered, "AP did not run");
	__atomic_store_n(&ap_churn, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 2000; i++) {
		long rc = register_area(1, (uintptr_t)ap_area_page + (i % 2 ? 64 : 1024));
		KIT_CHECK(rc == 0, "register vCPU 1's area (round %d) = %ld %s", i, rc, xen_errname(rc));
	}
	__atomic_store_n(&ap_churn, 2, __ATOMIC_SEQ_CST);
	KIT_CHECK(kit_wait_flag(&ap_churned, 2000), "AP did not stop churning");
	kit_printf("KIT-XEN cross-register polls=%u\n", ap_churns);
	KIT_CHECK(ap_churns > 0, "the AP never polled");
	for (unsigned at = 64; at <= 1024; at += 960) {
		struct vcpu_runstate_info ri;
		KIT_CHECK(xen_read_runstate_area(ap_area_page + at, &ri), "area at +%u unstable", at);
		uint64_t sum = ri.time[0] + ri.time[1] + ri.time[2] + ri.time[3];
		KIT_CHECK(sum == ri.state_entry_time, "area at +%u: times sum to %llu, state_entry_time %llu", at, U64(sum),
			  U64(ri.state_entry_time));
	}
	KIT_CHECK(xen_find_not(ap_area_page, 64, 0) < 0 && xen_find_not(ap_area_page + 64 + AREA, 1024 - 64 - AREA, 0) < 0 &&
		  xen_find_not(ap_area_page + 1024 + AREA, 4096 - 1024 - AREA, 0) < 0,
		  "a publication landed outside the two places");
}

void kit_main(void)
{
	xen_require();
	kit_case("map-shared-info", shinfo_case);
	kit_case("map-pages", map_case);
	kit_case("vm-assist", vm_assist_case);
	kit_case("runstate-info-self", self_info_case);
	kit_case("other-vcpu-offline", other_offline_case);
	kit_case("bad-vcpu", bad_vcpu_case);
	kit_case("runstate-crossing", sweep_case);
	kit_case("runstate-crossing-update-flag", sweep_flag_case);
	kit_case("canary-pages", canary_pages_case);
	kit_case("other-vcpu-up", other_up_case);
	kit_case("ap-runstate-area", ap_area_case);
	kit_case("cross-register", cross_register_case);
}

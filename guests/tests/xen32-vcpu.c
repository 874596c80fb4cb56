/* vcpu_op from 32-bit protected mode, compat layouts: register_vcpu_info,
 * the 44-byte runstate area at every start from 60 bytes before to 3 bytes
 * after a page boundary, where the two virtual pages (the kit's PAE window
 * at KIT_MAP_BASE) are backed by frames that are NOT adjacent (frame 2 then
 * frame 0 of a 4-frame block, so a write physically past the first frame
 * would hit frame 3), without and with VMASST_TYPE_runstate_update_flag,
 * get_runstate_info (44 bytes), and the secondary vcpu_time_info area. */
#include "../kit32/kit32.h"
#include "../common/xen.h"

_Static_assert(sizeof(struct vcpu_runstate_info) == 44, "compat runstate layout");
_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info size");
_Static_assert(sizeof(struct vcpu_register_runstate_memory_area) == 8, "runstate registration");

#define CANARY 0xc5
#define AREA ((unsigned)sizeof(struct vcpu_runstate_info))
#define WINDOW 128
#define VA_LO KIT_MAP_BASE             /* -> frames[2] */
#define BOUNDARY (KIT_MAP_BASE + 4096) /* -> frames[0] */

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t page_p[4096] __attribute__((aligned(4096)));
static uint8_t frames[4][4096] __attribute__((aligned(4096)));
static volatile struct shared_info *shinfo;
static volatile struct vcpu_info *vi; /* registered vcpu_info */

static void shinfo_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", rc, xen_errname(rc));
	shinfo = (volatile struct shared_info *)shinfo_page;
}

static long register_vcpu_info(unsigned long gfn, unsigned int offset)
{
	struct vcpu_register_vcpu_info info;
	memset(&info, 0, sizeof info);
	info.mfn = gfn;
	info.offset = offset;
	return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &info);
}

static void vcpu_info_case(void)
{
	KIT_CHECK(shinfo, "shared_info not mapped");
	unsigned long gfn = (unsigned long)((uintptr_t)page_p >> 12);
	long rc = register_vcpu_info(gfn, XEN_PAGE_SIZE - 32);
	KIT_CHECK(rc == -XEN_EINVAL, "offset 4064 = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	volatile struct vcpu_info *old = &shinfo->vcpu_info[0];
	old->evtchn_upcall_mask = 1;
	old->arch.cr2 = 0x5eed0032;
	uint32_t mul = old->time.tsc_to_system_mul, version_old = old->time.version;
	uint64_t before = xen_time_now(&old->time);
	memset(page_p + 0x40, 0xaa, 64);
	rc = register_vcpu_info(gfn, 0x40);
	KIT_CHECK(rc == 0, "register at offset 0x40 = %ld %s", rc, xen_errname(rc));
	vi = (volatile struct vcpu_info *)(page_p + 0x40);
	kit_printf("KIT-XEN vcpu_info mask=%u cr2=0x%lx version=%u mul=0x%x pending=%u\n", vi->evtchn_upcall_mask,
		   (unsigned long)vi->arch.cr2, vi->time.version, vi->time.tsc_to_system_mul, vi->evtchn_upcall_pending);
	KIT_CHECK(vi->evtchn_upcall_mask == 1, "evtchn_upcall_mask not carried over");
	KIT_CHECK(vi->evtchn_upcall_pending == 1 && vi->evtchn_pending_sel == 0xffffffffu,
		  "evtchn_upcall_pending %u, compat evtchn_pending_sel 0x%x; Xen sets 1 and all ones",
		  vi->evtchn_upcall_pending, (unsigned)vi->evtchn_pending_sel);
	KIT_CHECK(vi->time.version > version_old && !(vi->time.version & 1), "time version %u after registration, was %u",
		  vi->time.version, version_old);
	KIT_CHECK(vi->arch.cr2 == 0x5eed0032, "arch.cr2 0x%lx not carried over", (unsigned long)vi->arch.cr2);
	KIT_CHECK(vi->time.tsc_to_system_mul == mul && mul != 0, "time mul 0x%x, was 0x%x", vi->time.tsc_to_system_mul,
		  mul);
	uint64_t t1 = xen_time_now(&vi->time);
	kit_delay_ms(1);
	uint64_t t2 = xen_time_now(&vi->time);
	KIT_CHECK(t1 >= before && t2 > t1, "time at the new place: before %llu, then %llu, %llu", U64(before), U64(t1),
		  U64(t2));
	memset(page_p + 0x800, 0xbb, 64);
	rc = register_vcpu_info(gfn, 0x800);
	KIT_CHECK(rc == -XEN_EINVAL, "second registration = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	KIT_CHECK(xen_find_not(page_p + 0x800, 64, 0xbb) < 0, "refused registration wrote to its offset");
}

static long register_area(uint32_t pa)
{
	struct vcpu_register_runstate_memory_area a;
	memset(&a, 0, sizeof a);
	a.addr.p = pa;
	return HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 0, &a);
}

static void sweep(bool flag)
{
	if (flag) {
		long rc = HYPERVISOR_vm_assist(VMASST_CMD_enable, VMASST_TYPE_runstate_update_flag);
		KIT_CHECK(rc == 0, "enable runstate_update_flag = %ld %s", rc, xen_errname(rc));
	}
	KIT_CHECK(kit_map_page(VA_LO, (uintptr_t)frames[2]) && kit_map_page(BOUNDARY, (uintptr_t)frames[0]),
		  "kit_map_page failed");
	uint8_t *boundary = (uint8_t *)BOUNDARY;
	memset(frames, CANARY, sizeof frames);
	for (int off = -60; off <= 3; off++) {
		uint8_t *area = boundary + off;
		/* Park the area elsewhere so nothing updates the old place while
		 * the window is refilled. */
		long rc = register_area((uint32_t)(uintptr_t)(page_p + 0x100));
		KIT_CHECK(rc == 0, "offset %d: park = %ld %s", off, rc, xen_errname(rc));
		memset(boundary - WINDOW, CANARY, 2 * WINDOW);
		rc = register_area((uint32_t)(uintptr_t)area);
		KIT_CHECK(rc == 0, "offset %d: register = %ld %s", off, rc, xen_errname(rc));
		struct vcpu_runstate_info ri;
		KIT_CHECK(xen_read_runstate_area(area, &ri), "offset %d: state_entry_time unstable or XEN_RUNSTATE_UPDATE stuck", off);
		uint64_t sum = ri.time[0] + ri.time[1] + ri.time[2] + ri.time[3];
		if (off == -60 || off == -24 || off == 0)
			kit_printf("KIT-XEN runstate off=%d state=%d entry=%llu sum=%llu\n", off, ri.state,
				   U64(ri.state_entry_time), U64(sum));
		KIT_CHECK(ri.state == RUNSTATE_running, "offset %d: state %d, expected running", off, ri.state);
		KIT_CHECK(sum == ri.state_entry_time, "offset %d: times sum to %llu, state_entry_time %llu", off, U64(sum),
			  U64(ri.state_entry_time));
		KIT_CHECK(ri.time[RUNSTATE_running] > 0, "offset %d: time[running] 0", off);
		for (uint8_t *p = boundary - WINDOW; p < boundary + WINDOW; p++)
			if ((p < area || p >= area + AREA) && *p != CANARY)
				KIT_CHECK(0, "offset %d: byte at boundary offset %d = 0x%02x (outside the 44-byte area)",
					  off, (int)(p - boundary), *p);
		long at = xen_find_not(frames[3], WINDOW, CANARY);
		KIT_CHECK(at < 0, "offset %d: byte %ld of the frame physically after the first = 0x%02x", off, at,
			  frames[3][at]);
	}
	/* Everything else in the four frames, but the last area (+3), untouched. */
	for (uint8_t *p = boundary - 4096; p < boundary + 4096; p++)
		if ((p < boundary + 3 || p >= boundary + 3 + AREA) && *p != CANARY)
			KIT_CHECK(0, "byte at boundary offset %d = 0x%02x", (int)(p - boundary), *p);
	KIT_CHECK(xen_find_not(frames[1], 4096, CANARY) < 0 && xen_find_not(frames[3], 4096, CANARY) < 0,
		  "frame 1 or 3 written");
}

static void sweep_case(void) { sweep(false); }
static void sweep_flag_case(void) { sweep(true); }

static void runstate_info_case(void)
{
	uint8_t b[64];
	memset(b, 0xaa, sizeof b);
	long rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, b);
	KIT_CHECK(rc == 0, "get_runstate_info = %ld %s", rc, xen_errname(rc));
	struct vcpu_runstate_info ri;
	memcpy(&ri, b, sizeof ri);
	kit_printf("KIT-XEN runstate-info state=%d entry=%llu running=%llu\n", ri.state, U64(ri.state_entry_time),
		   U64(ri.time[0]));
	KIT_CHECK(ri.state == RUNSTATE_running, "state %d", ri.state);
	KIT_CHECK(ri.time[RUNSTATE_running] > 0, "time[running] 0");
	KIT_CHECK(xen_find_not(b + AREA, sizeof b - AREA, 0xaa) < 0, "wrote more than the 44-byte compat struct");
	rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 5, b);
	KIT_CHECK(rc == -XEN_ENOENT, "vcpu 5 = %ld %s, expected -ENOENT", rc, xen_errname(rc));
}

static void time_area_case(void)
{
	KIT_CHECK(shinfo, "shared_info not mapped");
	volatile struct vcpu_time_info *sec = (volatile struct vcpu_time_info *)(page_p + 0xc00);
	memset((void *)sec, 0, 64);
	struct vcpu_register_time_memory_area a;
	memset(&a, 0, sizeof a);
	a.addr.p = (uintptr_t)sec;
	long rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_time_memory_area, 0, &a);
	KIT_CHECK(rc == 0, "register_vcpu_time_memory_area = %ld %s", rc, xen_errname(rc));
	volatile struct vcpu_time_info *pri = vi ? &vi->time : &shinfo->vcpu_info[0].time;
	struct xen_time_snap s, p;
	KIT_CHECK(xen_time_snapshot(sec, &s) && xen_time_snapshot(pri, &p), "time version stays odd");
	KIT_CHECK(s.version != 0 && s.mul != 0, "secondary copy not written");
	uint64_t tsc = rdtsc();
	int64_t diff = (int64_t)(xen_time_at(&s, tsc) - xen_time_at(&p, tsc));
	kit_printf("KIT-XEN time-area version=%u diff=%lldns\n", s.version, (long long)diff);
	KIT_CHECK(diff >= -1000 && diff <= 1000, "secondary and primary differ by %lld ns", (long long)diff);
	KIT_CHECK(xen_find_not((const void *)((const volatile uint8_t *)sec + 32), 32, 0) < 0,
		  "wrote past the 32-byte vcpu_time_info");
}

void kit_main(void)
{
	xen_require();
	kit_case("map-shared-info", shinfo_case);
	kit_case("vcpu-info-compat", vcpu_info_case);
	kit_case("runstate-crossing", sweep_case);
	kit_case("runstate-crossing-update-flag", sweep_flag_case);
	kit_case("runstate-info-compat", runstate_info_case);
	kit_case("time-area-compat", time_area_case);
}

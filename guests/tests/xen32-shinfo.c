/* shared_info from 32-bit protected mode: the compat add_to_physmap struct,
 * moves, the compat shared_info layout (wallclock at 0x900: Xen latches the
 * 32-bit layout when a 32-bit guest installs the hypercall page), vcpu_info
 * time, add_to_physmap_batch and XENMEM_memory_map with compat structs. */
#include "../kit32/kit32.h"
#include "../common/xen.h"

_Static_assert(sizeof(struct xen_add_to_physmap) == 16, "compat xen_add_to_physmap");
_Static_assert(sizeof(struct xen_add_to_physmap_batch) == 20, "compat xen_add_to_physmap_batch");
_Static_assert(sizeof(struct xen_memory_map) == 8, "compat xen_memory_map");
_Static_assert(offsetof(struct shared_info, wc_version) == 0x900, "compat shared_info wallclock");
_Static_assert(offsetof(struct vcpu_info, time) == 32, "vcpu_info time");

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *cur;
static uint32_t wc_version0, wc_nsec0, mul0;
static uint64_t wc_sec0;

#define GFN(p) ((unsigned long)((uintptr_t)(p) >> 12))
#define LAST_MASK(s) ((s)->evtchn_mask[sizeof((s)->evtchn_mask) / sizeof((s)->evtchn_mask[0]) - 1])

static void map_case(void)
{
	memset(page_a, 0xcc, sizeof page_a);
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, GFN(page_a));
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info, gfn 0x%lx) = %ld %s", GFN(page_a), rc, xen_errname(rc));
	cur = (volatile struct shared_info *)page_a;
	KIT_CHECK(xen_find_not(page_a, sizeof page_a, 0xcc) >= 0, "frame still shows the RAM contents");
}

static void wallclock_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	KIT_CHECK(xen_wallclock(cur, &wc_version0, &wc_sec0, &wc_nsec0), "wc_version stays odd");
	kit_printf("KIT-XEN wallclock version=%u sec=%llu nsec=%u (compat offset 0x900)\n", wc_version0, U64(wc_sec0),
		   wc_nsec0);
	/* Where the native layout keeps it, for the diagnosis of a layout mix-up. */
	const volatile uint32_t *native = (const volatile uint32_t *)(page_a + 3072);
	if (wc_sec0 < 1700000000ull)
		kit_printf("KIT-XEN at the native offset 0xc00: version=%u sec=%u\n", native[0], native[1]);
	KIT_CHECK(wc_version0 != 0, "wc_version 0 at the compat offset");
	KIT_CHECK(wc_sec0 >= 1700000000ull, "wc_sec %llu implausible at the compat offset", U64(wc_sec0));
	KIT_CHECK(wc_nsec0 < 1000000000u, "wc_nsec %u", wc_nsec0);
}

static void vcpu_time_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	volatile struct vcpu_time_info *t = &cur->vcpu_info[0].time;
	struct xen_time_snap s;
	KIT_CHECK(xen_time_snapshot(t, &s), "time version stays odd");
	kit_printf("KIT-XEN vcpu0-time version=%u tsc=0x%llx system=%llu mul=0x%x shift=%d\n", s.version,
		   U64(s.tsc_timestamp), U64(s.system_time), s.mul, s.shift);
	KIT_CHECK(s.version != 0 && s.mul != 0, "time info never written");
	mul0 = s.mul;
	uint64_t t1 = xen_time_now(t);
	kit_delay_ms(1);
	uint64_t t2 = xen_time_now(t);
	KIT_CHECK(t2 > t1, "system time not advancing: %llu then %llu", U64(t1), U64(t2));
}

static void check_moved(volatile struct shared_info *to, volatile uint8_t *from, const char *what)
{
	uint32_t v, nsec;
	uint64_t sec;
	KIT_CHECK(xen_wallclock(to, &v, &sec, &nsec), "%s: wc_version stays odd", what);
	KIT_CHECK(sec >= 1700000000ull, "%s: wc_sec %llu: not shared_info", what, U64(sec));
	if (v == wc_version0)
		KIT_CHECK(sec == wc_sec0 && nsec == wc_nsec0, "%s: wallclock changed at the same version", what);
	KIT_CHECK(to->vcpu_info[0].time.tsc_to_system_mul == mul0, "%s: vcpu_info[0] mul 0x%x, was 0x%x", what,
		  to->vcpu_info[0].time.tsc_to_system_mul, mul0);
	volatile struct shared_info *old = (volatile struct shared_info *)from;
	xen_ulong_t before = LAST_MASK(to);
	LAST_MASK(old) = 0x5a5a5a5a;
	__asm__ volatile("" ::: "memory");
	KIT_CHECK(LAST_MASK(to) == before, "%s: write through the old frame reached shared_info", what);
}

static void move_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, GFN(page_b));
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info, gfn 0x%lx) = %ld %s", GFN(page_b), rc, xen_errname(rc));
	cur = (volatile struct shared_info *)page_b;
	check_moved(cur, page_a, "A->B");
}

static void bad_case(void)
{
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 1, GFN(page_a));
	KIT_CHECK(rc == -XEN_EINVAL, "shared_info idx 1 = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	rc = xen_add_to_physmap(99, 0, GFN(page_a));
	KIT_CHECK(rc == -XEN_EINVAL, "space 99 = %ld %s, expected -EINVAL", rc, xen_errname(rc));
}

static void batch_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	int err;
	long rc = xen_add_to_physmap_batch1(XENMAPSPACE_shared_info, 0, GFN(page_a), &err);
	KIT_CHECK(rc == 0, "add_to_physmap_batch = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(err == 0, "errs[0] = %d %s", err, xen_errname(err));
	volatile struct shared_info *old = cur;
	cur = (volatile struct shared_info *)page_a;
	check_moved(cur, (volatile uint8_t *)old, "batch B->A");
}

static void memory_map_case(void)
{
	struct xen_e820_entry map[16];
	memset(map, 0xaa, sizeof map);
	unsigned int n = 16;
	long rc = xen_memory_map(map, &n);
	KIT_CHECK(rc == 0, "XENMEM_memory_map = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(n > 0 && n <= 16, "nr_entries %u", n);
	bool ram_1m = false;
	for (unsigned i = 0; i < n; i++) {
		kit_printf("KIT-XEN e820 %u: 0x%llx-0x%llx type %u\n", i, U64(map[i].addr),
			   U64(map[i].addr + map[i].size - 1), map[i].type);
		ram_1m |= map[i].type == 1 && map[i].addr <= 0x100000 && map[i].addr + map[i].size > 0x100000;
	}
	KIT_CHECK(ram_1m, "no RAM entry covers 1 MiB");
	KIT_CHECK(n == kit_start_info->memmap_entries, "%u entries, start_info has %u", n, kit_start_info->memmap_entries);
	struct xen_e820_entry one[2];
	memset(one, 0xaa, sizeof one);
	n = 1;
	rc = xen_memory_map(one, &n);
	KIT_CHECK(rc == 0 && n == 1, "memory_map(1 entry) = %ld, nr_entries %u", rc, n);
	KIT_CHECK(!memcmp(&one[0], &map[0], sizeof one[0]), "entry 0 differs");
	KIT_CHECK(xen_find_not(&one[1], sizeof one[1], 0xaa) < 0, "wrote beyond the 1 entry asked for");
}

static void reservation_case(void)
{
	domid_t dom = DOMID_SELF;
	long cur_pages = HYPERVISOR_memory_op(XENMEM_current_reservation, &dom);
	long max_pages = HYPERVISOR_memory_op(XENMEM_maximum_reservation, &dom);
	kit_printf("KIT-XEN reservation current=%ld max=%ld\n", cur_pages, max_pages);
	KIT_CHECK(cur_pages > 0, "current_reservation = %ld %s", cur_pages, xen_errname(cur_pages));
	KIT_CHECK(max_pages >= cur_pages, "maximum_reservation %ld < current %ld", max_pages, cur_pages);
}

void kit_main(void)
{
	xen_require();
	kit_case("map-shared-info", map_case);
	kit_case("wallclock-compat", wallclock_case);
	kit_case("vcpu-time", vcpu_time_case);
	kit_case("move-shared-info", move_case);
	kit_case("bad-space-idx", bad_case);
	kit_case("batch", batch_case);
	kit_case("memory-map", memory_map_case);
	kit_case("reservation", reservation_case);
}

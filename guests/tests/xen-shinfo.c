/* shared_info through XENMEM_add_to_physmap (native layout), moves between
 * RAM frames and above RAM, wallclock and vcpu_info time, XENMEM_memory_map
 * and the reservation queries.
 * cmdline: gfn-high=<gfn> (default 0xf0000: a frame above RAM for the move). */
#include "../kit/kit.h"
#include "../common/xen.h"

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint64_t gfn_c = 0xf0000;

static volatile struct shared_info *cur; /* where shared_info is mapped now */
static uint32_t wc_version0, wc_nsec0;
static uint64_t wc_sec0;
static uint32_t mul0;

#define GFN(p) ((unsigned long)((uintptr_t)(p) >> 12))
#define MARKER 0x5a5a5a5a5a5a5a5aull
#define LAST_MASK(s) ((s)->evtchn_mask[sizeof((s)->evtchn_mask) / sizeof((s)->evtchn_mask[0]) - 1])

static void map_case(void)
{
	memset(page_a, 0xcc, sizeof page_a);
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, GFN(page_a));
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info, gfn 0x%lx) = %ld %s", GFN(page_a), rc, xen_errname(rc));
	cur = (volatile struct shared_info *)page_a;
	KIT_CHECK(xen_find_not(page_a, sizeof page_a, 0xcc) >= 0, "frame still shows the RAM contents (all 0xcc)");
}

static void wallclock_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	KIT_CHECK(xen_wallclock(cur, &wc_version0, &wc_sec0, &wc_nsec0), "wc_version stays odd (0x%x)", cur->wc_version);
	kit_printf("KIT-XEN wallclock version=%u sec=%llu nsec=%u\n", wc_version0, U64(wc_sec0), wc_nsec0);
	KIT_CHECK(wc_version0 != 0, "wc_version 0: wallclock never written");
	KIT_CHECK(wc_sec0 >= 1700000000ull, "wc_sec %llu implausible (before 2023)", U64(wc_sec0));
	KIT_CHECK(wc_nsec0 < 1000000000u, "wc_nsec %u >= 1e9", wc_nsec0);
}

static void vcpu_time_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	volatile struct vcpu_time_info *t = &cur->vcpu_info[0].time;
	struct xen_time_snap s;
	KIT_CHECK(xen_time_snapshot(t, &s), "vcpu_info[0].time version stays odd (%u)", t->version);
	kit_printf("KIT-XEN vcpu0-time version=%u tsc=0x%llx system=%llu mul=0x%x shift=%d flags=0x%x\n", s.version,
		   U64(s.tsc_timestamp), U64(s.system_time), s.mul, s.shift, s.flags);
	KIT_CHECK(s.version != 0 && s.mul != 0, "time info never written (version %u mul 0x%x)", s.version, s.mul);
	mul0 = s.mul;
	uint64_t t1 = xen_time_now(t);
	kit_delay_ms(1);
	uint64_t t2 = xen_time_now(t);
	kit_printf("KIT-XEN system-time t1=%llu t2=%llu\n", U64(t1), U64(t2));
	KIT_CHECK(t2 > t1, "system time not advancing: %llu then %llu", U64(t1), U64(t2));
}

/* shared_info now at `to`; the frame at `from` must no longer alias it. */
static void check_moved(volatile struct shared_info *to, volatile uint8_t *from, const char *what)
{
	uint32_t v;
	uint64_t sec;
	uint32_t nsec;
	KIT_CHECK(xen_wallclock(to, &v, &sec, &nsec), "%s: wc_version stays odd", what);
	KIT_CHECK(sec >= 1700000000ull, "%s: wc_sec %llu: not shared_info", what, U64(sec));
	if (v == wc_version0)
		KIT_CHECK(sec == wc_sec0 && nsec == wc_nsec0, "%s: wallclock %llu.%u, was %llu.%u at the same version",
			  what, U64(sec), nsec, U64(wc_sec0), wc_nsec0);
	KIT_CHECK(to->vcpu_info[0].time.tsc_to_system_mul == mul0, "%s: vcpu_info[0] mul 0x%x, was 0x%x", what,
		  to->vcpu_info[0].time.tsc_to_system_mul, mul0);
	/* A write through the old frame must not reach shared_info. */
	volatile struct shared_info *old = (volatile struct shared_info *)from;
	xen_ulong_t before = LAST_MASK(to);
	LAST_MASK(old) = (xen_ulong_t)MARKER;
	__asm__ volatile("" ::: "memory");
	KIT_CHECK(LAST_MASK(to) == before, "%s: write through the old frame reached shared_info", what);
}

static void move_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	memset(page_b, 0xcc, sizeof page_b);
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, GFN(page_b));
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info, gfn 0x%lx) = %ld %s", GFN(page_b), rc, xen_errname(rc));
	cur = (volatile struct shared_info *)page_b;
	check_moved(cur, page_a, "A->B");
}

static bool gfn_is_ram(uint64_t gfn)
{
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		if (e[i].addr <= gfn << 12 && (gfn << 12) < e[i].addr + e[i].size)
			return true;
	return false;
}

static void move_high_case(void)
{
	KIT_CHECK(cur, "shared_info not mapped");
	KIT_CHECK(gfn_c << 12 < KIT_IDENTITY_END, "gfn-high 0x%llx beyond the identity map", U64(gfn_c));
	if (gfn_is_ram(gfn_c))
		kit_printf("KIT-XEN note: gfn 0x%llx is in the memory map\n", U64(gfn_c));
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, (unsigned long)gfn_c);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info, gfn 0x%llx) = %ld %s", U64(gfn_c), rc, xen_errname(rc));
	cur = (volatile struct shared_info *)kit_phys(gfn_c << 12);
	check_moved(cur, page_b, "B->high");
}

static void bad_space_case(void)
{
	long rc = xen_add_to_physmap(99, 0, GFN(page_a));
	KIT_CHECK(rc == -XEN_EINVAL, "space 99 = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	/* gmfn_foreign is for add_to_physmap_batch only. */
	rc = xen_add_to_physmap(XENMAPSPACE_gmfn_foreign, 0, GFN(page_a));
	KIT_CHECK(rc == -XEN_ENOSYS, "space gmfn_foreign = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
}

static void bad_idx_case(void)
{
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 1, GFN(page_a));
	KIT_CHECK(rc == -XEN_EINVAL, "shared_info idx 1 = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	KIT_CHECK(cur && cur->vcpu_info[0].time.tsc_to_system_mul == mul0, "shared_info moved by a failed call");
}

static void bad_arg_case(void)
{
	long rc = xen_hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, KIT_UNMAPPED_VA, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "add_to_physmap(bad pointer) = %ld %s, expected -EFAULT", rc, xen_errname(rc));
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
	check_moved(cur, (volatile uint8_t *)old, "batch high->A");
	/* A failing entry reports in errs[], the call itself succeeds. */
	rc = xen_add_to_physmap_batch1(XENMAPSPACE_shared_info, 1, GFN(page_b), &err);
	KIT_CHECK(rc == 0, "batch with bad idx = %ld %s, expected 0 (error in errs[0])", rc, xen_errname(rc));
	KIT_CHECK(err == -XEN_EINVAL, "batch with bad idx: errs[0] = %d %s, expected -EINVAL", err, xen_errname(err));
}

static struct xen_e820_entry map[32];
static unsigned int map_n;

static void memory_map_case(void)
{
	memset(map, 0xaa, sizeof map);
	unsigned int n = 32;
	long rc = xen_memory_map(map, &n);
	KIT_CHECK(rc == 0, "XENMEM_memory_map = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(n > 0 && n <= 32, "nr_entries %u", n);
	map_n = n;
	bool ram_1m = false;
	for (unsigned int i = 0; i < n; i++) {
		kit_printf("KIT-XEN e820 %u: 0x%llx-0x%llx type %u\n", i, U64(map[i].addr),
			   U64(map[i].addr + map[i].size - 1), map[i].type);
		ram_1m |= map[i].type == 1 && map[i].addr <= 0x100000 && map[i].addr + map[i].size > 0x100000;
	}
	KIT_CHECK(ram_1m, "no RAM entry covers 1 MiB");
	KIT_CHECK(xen_find_not(&map[n], sizeof(map[0]) * (32 - n), 0xaa) < 0, "wrote beyond nr_entries %u", n);
}

static void memory_map_pvh_case(void)
{
	KIT_CHECK(map_n, "no memory map");
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	KIT_CHECK(kit_start_info->memmap_entries == map_n, "start_info has %u entries, XENMEM_memory_map %u",
		  kit_start_info->memmap_entries, map_n);
	for (unsigned int i = 0; i < map_n; i++)
		KIT_CHECK(e[i].addr == map[i].addr && e[i].size == map[i].size && e[i].type == map[i].type,
			  "entry %u: start_info 0x%llx+0x%llx/%u, e820 0x%llx+0x%llx/%u", i, U64(e[i].addr),
			  U64(e[i].size), e[i].type, U64(map[i].addr), U64(map[i].size), map[i].type);
}

static void memory_map_short_case(void)
{
	KIT_CHECK(map_n, "no memory map");
	struct xen_e820_entry small[4];
	memset(small, 0xaa, sizeof small);
	unsigned int n = 1;
	long rc = xen_memory_map(small, &n);
	KIT_CHECK(rc == 0, "memory_map(1 entry) = %ld %s (Xen copies min(n, nr) entries)", rc, xen_errname(rc));
	KIT_CHECK(n == 1, "nr_entries %u after asking for 1", n);
	KIT_CHECK(!memcmp(&small[0], &map[0], sizeof small[0]), "entry 0 differs from the full map");
	KIT_CHECK(xen_find_not(&small[1], 3 * sizeof small[0], 0xaa) < 0, "wrote beyond the 1 entry asked for");
	memset(small, 0xaa, sizeof small);
	n = 0;
	rc = xen_memory_map(small, &n);
	KIT_CHECK(rc == 0 && n == 0, "memory_map(0 entries) = %ld, nr_entries %u", rc, n);
	KIT_CHECK(xen_find_not(small, sizeof small, 0xaa) < 0, "memory_map(0 entries) wrote to the buffer");
	rc = xen_hypercall(__HYPERVISOR_memory_op, XENMEM_memory_map, KIT_UNMAPPED_VA, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "memory_map(bad pointer) = %ld %s, expected -EFAULT", rc, xen_errname(rc));
}

static void reservation_case(void)
{
	domid_t dom = DOMID_SELF;
	long cur_pages = HYPERVISOR_memory_op(XENMEM_current_reservation, &dom);
	long max_pages = HYPERVISOR_memory_op(XENMEM_maximum_reservation, &dom);
	kit_printf("KIT-XEN reservation current=%ld max=%ld\n", cur_pages, max_pages);
	KIT_CHECK(cur_pages > 0, "current_reservation = %ld %s", cur_pages, xen_errname(cur_pages));
	KIT_CHECK(max_pages >= cur_pages, "maximum_reservation %ld < current %ld", max_pages, cur_pages);
	dom = DOMID_FIRST_RESERVED - 1;
	long rc = HYPERVISOR_memory_op(XENMEM_current_reservation, &dom);
	KIT_CHECK(rc == -XEN_ESRCH, "current_reservation(domid 0x%x) = %ld %s, expected -ESRCH", dom, rc,
		  xen_errname(rc));
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_c);
	xen_require();
	kit_case("map-shared-info", map_case);
	kit_case("wallclock", wallclock_case);
	kit_case("vcpu-time", vcpu_time_case);
	kit_case("move-shared-info", move_case);
	kit_case("move-above-ram", move_high_case);
	kit_case("bad-space", bad_space_case);
	kit_case("bad-idx", bad_idx_case);
	kit_case("bad-arg", bad_arg_case);
	kit_case("batch", batch_case);
	kit_case("memory-map", memory_map_case);
	kit_case("memory-map-pvh", memory_map_pvh_case);
	kit_case("memory-map-short", memory_map_short_case);
	kit_case("reservation", reservation_case);
}

/* Grant tables as a guest kernel uses them (native layout): the table's size
 * and frames (query_size, setup_table, XENMAPSPACE_grant_table), the entries
 * the toolstack reserves, grant copies between frames of its own and through
 * grants it makes to itself, versions 1 and 2, swap_grant_ref, what an HVM
 * guest is refused, and a secondary PV console whose ring page the guest
 * grants to domain 0's backend, as hvc_xen does.
 * cmdline: gfn-high=<gfn> (default 0xf0000: a free frame above RAM where the
 * table's frames go), max-frames=<n> (default 64: the table's maximum, as
 * --max-grant-frames). Case secondary-console needs --secondary-consoles 1. */
#include "../kit/kit.h"
#include "../common/xenstore.h"

static uint64_t gfn_high = 0xf0000;
static uint64_t max_frames = 64;
static long domid;

static uint8_t src_page[4096] __attribute__((aligned(4096)));
static uint8_t dst_page[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint8_t cons_page[4096] __attribute__((aligned(4096)));
static uint8_t batch_page[4096] __attribute__((aligned(4096)));
/* batch_page seen at a va whose next page is unmapped. */
#define BATCH_VA 0x200000000ull

#define GFN(p) ((xen_pfn_t)((uintptr_t)(p) >> 12))
#define INVALID_FRAME (~(xen_pfn_t)0)

/* Where shared frame 0 is mapped now (0 before it is). */
static uint64_t gt_gfn;
static volatile grant_entry_v1_t *gt1(void) { return kit_phys(gt_gfn << 12); }
static volatile grant_entry_v2_t *gt2(void) { return kit_phys(gt_gfn << 12); }
static uint64_t console_pfn, store_pfn;

static xen_pfn_t frames[80];

/* setup_table of `dom` for n frames into frames[] (preset to a marker); the status in *st. */
static long setup_table(domid_t dom, uint32_t n, int16_t *st)
{
	struct gnttab_setup_table s;
	memset(&s, 0, sizeof s);
	for (unsigned int i = 0; i < sizeof frames / sizeof frames[0]; i++)
		frames[i] = (xen_pfn_t)0x5a5a5a5a;
	s.dom = dom;
	s.nr_frames = n;
	s.status = 0x777;
	set_xen_guest_handle(s.frame_list, frames);
	long rc = HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 1);
	*st = s.status;
	return rc;
}

static void grant_v1(grant_ref_t ref, uint16_t flags, domid_t to, uint32_t frame)
{
	xen_grant_v1(&gt1()[ref], to, frame, flags);
}

/* ---- size and frames ---- */

static void query_size_case(void)
{
	struct gnttab_query_size q;
	XEN_EXPECT_RC(xen_gnttab_query_size(DOMID_SELF, &q), 0, "xen_gnttab_query_size(DOMID_SELF)");
	XEN_EXPECT_GNTST(q.status, GNTST_okay, "xen_gnttab_query_size(DOMID_SELF)");
	kit_printf("KIT-XEN query_size nr_frames=%u max_nr_frames=%u\n", q.nr_frames, q.max_nr_frames);
	KIT_CHECK(q.nr_frames == 1 && q.max_nr_frames == max_frames, "nr_frames %u max_nr_frames %u, expected 1 and %llu",
		  q.nr_frames, q.max_nr_frames, U64(max_frames));
	XEN_EXPECT_RC(xen_gnttab_query_size((domid_t)domid, &q), 0, "xen_gnttab_query_size(own domid %ld)", domid);
	XEN_EXPECT_GNTST(q.status, GNTST_okay, "xen_gnttab_query_size(own domid)");
	KIT_CHECK(q.nr_frames == 1 && q.max_nr_frames == max_frames, "own domid: nr_frames %u max_nr_frames %u",
		  q.nr_frames, q.max_nr_frames);
	XEN_EXPECT_RC(xen_gnttab_query_size(0, &q), 0, "xen_gnttab_query_size(dom 0)");
	XEN_EXPECT_GNTST(q.status, GNTST_permission_denied, "xen_gnttab_query_size(dom 0)");
	KIT_CHECK(q.nr_frames == 0x1234 && q.max_nr_frames == 0x5678, "dom 0: outputs changed (%u, %u)", q.nr_frames,
		  q.max_nr_frames);
	XEN_EXPECT_RC(xen_gnttab_query_size(5, &q), 0, "xen_gnttab_query_size(dom 5)");
	XEN_EXPECT_GNTST(q.status, GNTST_bad_domain, "xen_gnttab_query_size(dom 5)");
	xen_gnttab_query_size(DOMID_SELF, &q);
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 2), -XEN_EINVAL, "query_size count 2");
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 0), -XEN_EINVAL, "query_size count 0");
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_query_size, (void *)KIT_UNMAPPED_VA, 1), -XEN_EFAULT, "xen_gnttab_query_size(bad pointer)");
}

static void setup_table_case(void)
{
	int16_t st;
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, &st), 0, "setup_table(1 frame)");
	XEN_EXPECT_GNTST(st, GNTST_okay, "setup_table(1 frame)");
	KIT_CHECK(frames[0] == INVALID_FRAME, "frame 0 before mapping: 0x%llx, expected ~0", U64(frames[0]));
	KIT_CHECK(frames[1] == (xen_pfn_t)0x5a5a5a5a, "setup_table wrote past nr_frames");
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 0, (unsigned long)gfn_high), 0,
		      "add_to_physmap(grant_table 0, gfn 0x%llx)", U64(gfn_high));
	gt_gfn = gfn_high;
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, &st), 0, "setup_table after mapping");
	XEN_EXPECT_GNTST(st, GNTST_okay, "setup_table after mapping");
	KIT_CHECK(frames[0] == gfn_high, "frame 0 at 0x%llx, mapped at 0x%llx", U64(frames[0]), U64(gfn_high));
	XEN_EXPECT_RC(setup_table((domid_t)domid, 1, &st), 0, "setup_table(own domid)");
	XEN_EXPECT_GNTST(st, GNTST_okay, "setup_table(own domid)");
	KIT_CHECK(frames[0] == gfn_high, "own domid: frame 0 at 0x%llx", U64(frames[0]));
	XEN_EXPECT_RC(setup_table(0, 1, &st), 0, "setup_table(dom 0)");
	XEN_EXPECT_GNTST(st, GNTST_permission_denied, "setup_table(dom 0)");
	XEN_EXPECT_RC(setup_table(5, 1, &st), 0, "setup_table(dom 5)");
	XEN_EXPECT_GNTST(st, GNTST_bad_domain, "setup_table(dom 5)");
	XEN_EXPECT_RC(setup_table(DOMID_SELF, (uint32_t)max_frames + 1, &st), 0, "setup_table(max + 1)");
	XEN_EXPECT_GNTST(st, GNTST_general_error, "setup_table(max + 1 = %llu frames)", U64(max_frames + 1));
	struct gnttab_query_size q;
	xen_gnttab_query_size(DOMID_SELF, &q);
	KIT_CHECK(q.nr_frames == 1, "a refused setup_table grew the table to %u", q.nr_frames);
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 4, &st), 0, "setup_table(4 frames)");
	XEN_EXPECT_GNTST(st, GNTST_okay, "setup_table(4 frames)");
	KIT_CHECK(frames[0] == gfn_high, "4 frames: frame 0 at 0x%llx", U64(frames[0]));
	for (int i = 1; i < 4; i++)
		KIT_CHECK(frames[i] == INVALID_FRAME, "new frame %d at 0x%llx, expected ~0", i, U64(frames[i]));
	xen_gnttab_query_size(DOMID_SELF, &q);
	KIT_CHECK(q.nr_frames == 4, "after setup_table(4): nr_frames %u", q.nr_frames);
	struct gnttab_setup_table s;
	memset(&s, 0, sizeof s);
	s.dom = DOMID_SELF;
	s.nr_frames = 1;
	set_xen_guest_handle(s.frame_list, frames);
	/* A frame list Xen cannot write: the status says so, the call returns 0. */
	set_xen_guest_handle(s.frame_list, (xen_pfn_t *)(uintptr_t)KIT_UNMAPPED_VA);
	s.status = 0x777;
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 1), 0, "setup_table(unmapped frame list)");
	XEN_EXPECT_GNTST(s.status, GNTST_bad_virt_addr, "setup_table(unmapped frame list)");
	set_xen_guest_handle(s.frame_list, frames);
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 0), -XEN_EINVAL, "setup_table count 0");
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &s, 2), -XEN_EINVAL, "setup_table count 2");
}

static void reserved_entries_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_CONSOLE_PFN, &console_pfn), 0, "get CONSOLE_PFN");
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_STORE_PFN, &store_pfn), 0, "get STORE_PFN");
	volatile grant_entry_v1_t *e = gt1();
	for (int i = 0; i < GNTTAB_NR_RESERVED_ENTRIES; i++)
		kit_printf("KIT-XEN entry %d: flags 0x%x domid %u frame 0x%x\n", i, e[i].flags, e[i].domid, e[i].frame);
	KIT_CHECK(e[GNTTAB_RESERVED_CONSOLE].flags == GTF_permit_access && e[GNTTAB_RESERVED_CONSOLE].domid == 0 &&
			  e[GNTTAB_RESERVED_CONSOLE].frame == console_pfn,
		  "console entry {0x%x, %u, 0x%x}, expected {permit_access, 0, 0x%llx}", e[0].flags, e[0].domid,
		  e[0].frame, U64(console_pfn));
	KIT_CHECK(e[GNTTAB_RESERVED_XENSTORE].flags == GTF_permit_access && e[GNTTAB_RESERVED_XENSTORE].domid == 0 &&
			  e[GNTTAB_RESERVED_XENSTORE].frame == store_pfn,
		  "xenstore entry {0x%x, %u, 0x%x}, expected {permit_access, 0, 0x%llx}", e[1].flags, e[1].domid,
		  e[1].frame, U64(store_pfn));
	for (int i = 2; i < GNTTAB_NR_RESERVED_ENTRIES; i++)
		KIT_CHECK(e[i].flags == 0 && e[i].domid == 0 && e[i].frame == 0, "reserved entry %d not zero", i);
}

static void physmap_grow_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	struct gnttab_query_size q;
	int16_t st;
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 5, (unsigned long)gfn_high + 5), 0,
		      "add_to_physmap(grant_table 5)");
	xen_gnttab_query_size(DOMID_SELF, &q);
	KIT_CHECK(q.nr_frames == 6, "after mapping frame 5: nr_frames %u, expected 6", q.nr_frames);
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, (unsigned long)max_frames, (unsigned long)gfn_high + 6),
		      -XEN_EINVAL, "add_to_physmap(grant_table %llu = max)", U64(max_frames));
	xen_gnttab_query_size(DOMID_SELF, &q);
	KIT_CHECK(q.nr_frames == 6, "a refused map changed nr_frames to %u", q.nr_frames);
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 6, &st), 0, "setup_table(6)");
	XEN_EXPECT_GNTST(st, GNTST_okay, "setup_table(6)");
	KIT_CHECK(frames[0] == gfn_high && frames[5] == gfn_high + 5 && frames[1] == INVALID_FRAME,
		  "frames 0x%llx 0x%llx .. 0x%llx", U64(frames[0]), U64(frames[1]), U64(frames[5]));

	/* Frame 0 moves to a RAM page of ours (whose RAM Xen frees) and back above RAM. */
	memset(page_b, 0xcc, sizeof page_b);
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 0, GFN(page_b)), 0, "move frame 0 to gfn 0x%lx",
		      (unsigned long)GFN(page_b));
	gt_gfn = GFN(page_b);
	volatile grant_entry_v1_t *e = gt1();
	KIT_CHECK(e[0].flags == GTF_permit_access && e[0].frame == console_pfn && e[1].frame == store_pfn,
		  "moved frame 0 does not show the reserved entries ({0x%x, %u, 0x%x})", e[0].flags, e[0].domid,
		  e[0].frame);
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, &st), 0, "setup_table after the move");
	KIT_CHECK(frames[0] == GFN(page_b), "setup_table: frame 0 at 0x%llx, moved to 0x%lx", U64(frames[0]),
		  (unsigned long)GFN(page_b));
	/* An entry written there is the table's. */
	grant_v1(40, GTF_permit_access, (domid_t)domid, 0x4040);
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 0, (unsigned long)gfn_high), 0, "move frame 0 back");
	gt_gfn = gfn_high;
	e = gt1();
	KIT_CHECK(e[40].frame == 0x4040 && e[40].flags == GTF_permit_access, "entry 40 written at the other place lost");
	volatile grant_entry_v1_t *old = (volatile grant_entry_v1_t *)page_b;
	KIT_CHECK(!(old[0].flags == GTF_permit_access && old[0].frame == console_pfn),
		  "the old frame still shows the table");
	old[40].frame = 0x7777;
	__asm__ volatile("" ::: "memory");
	KIT_CHECK(e[40].frame == 0x4040, "a write through the old frame reached the table");
	grant_v1(40, 0, 0, 0);
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, &st), 0, "setup_table after moving back");
	KIT_CHECK(frames[0] == gfn_high, "frame 0 at 0x%llx after moving back", U64(frames[0]));

	/* add_to_physmap_batch places grant frames too. */
	int err;
	XEN_EXPECT_RC(xen_add_to_physmap_batch1(XENMAPSPACE_grant_table, 1, (unsigned long)gfn_high + 1, &err), 0,
		      "add_to_physmap_batch(grant_table 1)");
	KIT_CHECK(err == 0, "batch: errs[0] = %d %s", err, xen_errname(err));
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 2, &st), 0, "setup_table(2)");
	KIT_CHECK(frames[1] == gfn_high + 1, "batch: frame 1 at 0x%llx", U64(frames[1]));
	XEN_EXPECT_RC(xen_add_to_physmap_batch1(XENMAPSPACE_grant_table, (unsigned long)max_frames,
						(unsigned long)gfn_high + 6, &err),
		      0, "add_to_physmap_batch(grant_table max)");
	KIT_CHECK(err == -XEN_EINVAL, "batch of idx max: errs[0] = %d %s, expected -EINVAL", err, xen_errname(err));

	/* idx is taken as 32 bits: 2^32 + 1 is frame 1. */
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, (1ul << 32) | 1, (unsigned long)gfn_high + 1), 0,
		      "add_to_physmap(grant_table 2^32 + 1)");
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 2, &st), 0, "setup_table(2)");
	KIT_CHECK(frames[1] == gfn_high + 1, "idx 2^32 + 1: frame 1 at 0x%llx", U64(frames[1]));

	/* A frame mapped where another one is takes its place: the other is mapped nowhere, then goes back. */
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 2, (unsigned long)gfn_high + 5), 0,
		      "add_to_physmap(grant_table 2) where frame 5 is");
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 6, &st), 0, "setup_table(6)");
	KIT_CHECK(frames[2] == gfn_high + 5 && frames[5] == INVALID_FRAME,
		  "frame 2 over frame 5: frame 2 at 0x%llx, frame 5 at 0x%llx (expected ~0)", U64(frames[2]), U64(frames[5]));
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 5, (unsigned long)gfn_high + 5), 0,
		      "add_to_physmap(grant_table 5) back");
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 6, &st), 0, "setup_table(6)");
	KIT_CHECK(frames[5] == gfn_high + 5 && frames[2] == INVALID_FRAME && frames[1] == gfn_high + 1 &&
			  frames[0] == gfn_high,
		  "frames 0x%llx 0x%llx 0x%llx .. 0x%llx", U64(frames[0]), U64(frames[1]), U64(frames[2]), U64(frames[5]));
}

/* ---- copies ---- */

static void fill_pages(void)
{
	for (int i = 0; i < 4096; i++)
		src_page[i] = (uint8_t)(i * 7 + 3);
	memset(dst_page, 0xcc, sizeof dst_page);
}

/* dst_page holds src_page[soff, soff+len) at doff and 0xcc elsewhere? */
static bool copied(unsigned int soff, unsigned int doff, unsigned int len, char *why, size_t size)
{
	for (unsigned int i = 0; i < 4096; i++) {
		uint8_t want = (i >= doff && i < doff + len) ? src_page[soff + (i - doff)] : 0xcc;
		if (dst_page[i] != want) {
			kit_snprintf(why, size, "byte %u is 0x%x, expected 0x%x", i, dst_page[i], want);
			return false;
		}
	}
	return true;
}


/* One copy; the hypercall must return 0; its status. */
static long copy1(uint16_t flags, uint64_t src, domid_t sdom, uint16_t soff, uint64_t dst, domid_t ddom, uint16_t doff,
		  uint16_t len)
{
	struct gnttab_copy c;
	xen_gnttab_copy_op(&c, flags, src, sdom, soff, dst, ddom, doff, len);
	long rc = HYPERVISOR_grant_table_op(GNTTABOP_copy, &c, 1);
	if (rc != 0) {
		kit_fail("GNTTABOP_copy returned %ld %s", XEN_ERR(rc));
		return 0x7fff;
	}
	return c.status;
}

static bool gfn_is_ram(uint64_t gfn)
{
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		if (e[i].type == 1 && e[i].addr <= gfn << 12 && (gfn << 12) < e[i].addr + e[i].size)
			return true;
	return false;
}

static void copy_gmfn_case(void)
{
	char why[80];
	fill_pages();
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 100, GFN(dst_page), DOMID_SELF, 300, 500), GNTST_okay,
		  "copy gmfn->gmfn");
	KIT_CHECK(copied(100, 300, 500, why, sizeof why), "copy gmfn->gmfn: %s", why);
	fill_pages();
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 4096), GNTST_okay,
		  "copy of a whole page");
	KIT_CHECK(copied(0, 0, 4096, why, sizeof why), "whole page: %s", why);
	fill_pages();
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 5, GFN(dst_page), DOMID_SELF, 4095, 0), GNTST_okay, "copy len 0");
	KIT_CHECK(copied(0, 0, 0, why, sizeof why), "len 0: %s", why);
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), (domid_t)domid, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_permission_denied,
		  "source gmfn with own domid");
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), (domid_t)domid, 0, 8), GNTST_permission_denied,
		  "dest gmfn with own domid");
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), 0, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_permission_denied,
		  "source gmfn of dom 0");
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 4000, GFN(dst_page), DOMID_SELF, 0, 97), GNTST_bad_copy_arg,
		  "source offset 4000 + len 97");
	XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 4096, 1), GNTST_bad_copy_arg,
		  "dest offset 4096 + len 1");
	KIT_CHECK(copied(0, 0, 0, why, sizeof why), "a refused copy wrote: %s", why);
	static const uint64_t not_ram[] = { 0xe0000 };
	for (unsigned int i = 0; i < sizeof not_ram / sizeof not_ram[0]; i++) {
		if (gfn_is_ram(not_ram[i])) {
			kit_printf("KIT-XEN note: gfn 0x%llx is RAM here, skipped\n", U64(not_ram[i]));
			continue;
		}
		XEN_EXPECT_GNTST(copy1(0, not_ram[i], DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_bad_page,
			  "source gmfn 0x%llx (not RAM)", U64(not_ram[i]));
		XEN_EXPECT_GNTST(copy1(0, GFN(src_page), DOMID_SELF, 0, not_ram[i], DOMID_SELF, 0, 8), GNTST_bad_page,
			  "dest gmfn 0x%llx (not RAM)", U64(not_ram[i]));
	}
	XEN_EXPECT_GNTST(copy1(0, gfn_high + 0x40, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_bad_page,
		  "source gmfn 0x%llx (above RAM, nothing there)", U64(gfn_high + 0x40));

	/* The table's own frame is a page of ours too. */
	fill_pages();
	XEN_EXPECT_GNTST(copy1(0, gt_gfn, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 16), GNTST_okay,
		  "copy from the table's frame 0 (gfn 0x%llx)", U64(gt_gfn));
	KIT_CHECK(!memcmp(dst_page, (const void *)gt1(), 16), "copy from the table's frame: not the reserved entries");

	/* A batch: each op its own status, the hypercall 0. */
	struct gnttab_copy ops[5];
	fill_pages();
	xen_gnttab_copy_op(&ops[0], 0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 16);
	xen_gnttab_copy_op(&ops[1], 0, GFN(src_page), (domid_t)domid, 0, GFN(dst_page), DOMID_SELF, 0, 16);
	xen_gnttab_copy_op(&ops[2], 0, GFN(src_page), DOMID_SELF, 4090, GFN(dst_page), DOMID_SELF, 0, 16);
	xen_gnttab_copy_op(&ops[3], 0, gfn_high + 0x40, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 16);
	xen_gnttab_copy_op(&ops[4], 0, GFN(src_page), DOMID_SELF, 64, GFN(dst_page), DOMID_SELF, 1000, 32);
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, 5), 0, "batch of 5 copies");
	static const int16_t want[5] = { GNTST_okay, GNTST_permission_denied, GNTST_bad_copy_arg, GNTST_bad_page, GNTST_okay };
	for (int i = 0; i < 5; i++)
		XEN_EXPECT_GNTST(ops[i].status, want[i], "batch op %d", i);
	for (int i = 0; i < 16; i++)
		KIT_CHECK(dst_page[i] == src_page[i], "batch op 0 not copied (byte %d)", i);
	for (int i = 0; i < 32; i++)
		KIT_CHECK(dst_page[1000 + i] == src_page[64 + i], "batch op 4 not copied (byte %d)", i);
	/* Up to the end of the page exactly; flag bits other than the two gref ones are ignored. */
	fill_pages();
	XEN_EXPECT_GNTST(copy1(0x8, GFN(src_page), DOMID_SELF, 4000, GFN(dst_page), DOMID_SELF, 3996, 96), GNTST_okay,
		  "copy to the end of both pages, flags 0x8");
	KIT_CHECK(copied(4000, 3996, 96, why, sizeof why), "copy to the end of the pages: %s", why);
	/* count 0 does nothing; a count negative as an int -EINVAL; an unmapped batch -EFAULT. */
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, 0), 0, "copy count 0");
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, 0x80000000u), -XEN_EINVAL, "copy count 2^31");
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, (void *)KIT_UNMAPPED_VA, 1), -XEN_EFAULT, "copy(bad pointer)");
	/* A batch whose third op lies past the end of a mapped page: the first two are done, then -EFAULT. */
	KIT_CHECK(kit_map_page(BATCH_VA, XEN_PTR(batch_page)), "cannot map 0x%llx", U64(BATCH_VA));
	struct gnttab_copy *edge = (struct gnttab_copy *)(uintptr_t)(BATCH_VA + 4096 - 2 * sizeof(struct gnttab_copy));
	fill_pages();
	xen_gnttab_copy_op(&edge[0], 0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8);
	xen_gnttab_copy_op(&edge[1], 0, GFN(src_page), (domid_t)domid, 0, GFN(dst_page), DOMID_SELF, 0, 8);
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, edge, 3), -XEN_EFAULT, "copy batch running into an unmapped page");
	XEN_EXPECT_GNTST(edge[0].status, GNTST_okay, "op 0 before the unmapped page");
	XEN_EXPECT_GNTST(edge[1].status, GNTST_permission_denied, "op 1 before the unmapped page");
	KIT_CHECK(copied(0, 0, 8, why, sizeof why), "op 0 before the unmapped page: %s", why);
	kit_unmap_page(BATCH_VA);
}

#define REF_SRC 10
#define REF_DST 11
#define REF_RO 12
#define REF_DOM0 13

static bool entry_idle(grant_ref_t ref)
{
	return !(gt1()[ref].flags & (GTF_reading | GTF_writing));
}

static void copy_gref_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	char why[80];
	domid_t self = (domid_t)domid;
	grant_v1(REF_SRC, GTF_permit_access, self, (uint32_t)GFN(src_page));
	grant_v1(REF_DST, GTF_permit_access, self, (uint32_t)GFN(dst_page));
	grant_v1(REF_RO, GTF_permit_access | GTF_readonly, self, (uint32_t)GFN(dst_page));
	grant_v1(REF_DOM0, GTF_permit_access, 0, (uint32_t)GFN(src_page));

	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_SRC, DOMID_SELF, 10, GFN(dst_page), DOMID_SELF, 20, 300), GNTST_okay,
		  "from gref (DOMID_SELF)");
	KIT_CHECK(copied(10, 20, 300, why, sizeof why), "from gref (DOMID_SELF): %s", why);
	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_SRC, self, 0, GFN(dst_page), DOMID_SELF, 0, 4096), GNTST_okay,
		  "from gref (own domid)");
	KIT_CHECK(copied(0, 0, 4096, why, sizeof why), "from gref (own domid): %s", why);
	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_dest_gref, GFN(src_page), DOMID_SELF, 1000, REF_DST, self, 2000, 100), GNTST_okay,
		  "to gref");
	KIT_CHECK(copied(1000, 2000, 100, why, sizeof why), "to gref: %s", why);
	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref | GNTCOPY_dest_gref, REF_SRC, DOMID_SELF, 7, REF_DST, DOMID_SELF, 9, 77),
		  GNTST_okay, "gref to gref");
	KIT_CHECK(copied(7, 9, 77, why, sizeof why), "gref to gref: %s", why);
	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_dest_gref, GFN(src_page), DOMID_SELF, 0, REF_RO, DOMID_SELF, 0, 8), GNTST_general_error,
		  "to a read-only grant");
	KIT_CHECK(copied(0, 0, 0, why, sizeof why), "a read-only grant was written: %s", why);
	/* A read-only grant may be a source. */
	grant_v1(REF_RO, GTF_permit_access | GTF_readonly, self, (uint32_t)GFN(src_page));
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_RO, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 64), GNTST_okay,
		  "from a read-only grant");
	KIT_CHECK(copied(0, 0, 64, why, sizeof why), "from a read-only grant: %s", why);
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_DOM0, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8),
		  GNTST_general_error, "from an entry granted to dom 0");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, 0x100000, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_bad_gntref,
		  "from ref 0x100000 (past the table)");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_dest_gref, GFN(src_page), DOMID_SELF, 0, 0x100000, DOMID_SELF, 0, 8), GNTST_bad_gntref,
		  "to ref 0x100000 (past the table)");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, GNTTAB_RESERVED_CONSOLE, 0, 0, GFN(dst_page), DOMID_SELF, 0, 8),
		  GNTST_general_error, "from a gref of dom 0");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_SRC, 5, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_bad_domain,
		  "from a gref of dom 5");
	/* An entry naming DOMID_SELF as its grantee grants nobody. */
	grant_v1(REF_DOM0, GTF_permit_access, DOMID_SELF, (uint32_t)GFN(src_page));
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_DOM0, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8),
		  GNTST_general_error, "from an entry granted to DOMID_SELF");
	/* An invalid entry (type 0), and one granted but naming a frame with nothing behind it. */
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, 20, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_general_error,
		  "from an invalid entry");
	grant_v1(21, GTF_permit_access, self, (uint32_t)(gfn_high + 0x40));
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, 21, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_bad_page,
		  "from a grant of a frame with nothing there");
	for (grant_ref_t ref = REF_SRC; ref <= 21; ref++)
		KIT_CHECK(entry_idle(ref), "entry %u flags 0x%x: GTF_reading/writing left set", ref, gt1()[ref].flags);
	KIT_CHECK(gt1()[REF_SRC].flags == GTF_permit_access && gt1()[REF_DST].flags == GTF_permit_access,
		  "entry flags changed: 0x%x 0x%x", gt1()[REF_SRC].flags, gt1()[REF_DST].flags);
	for (grant_ref_t ref = REF_SRC; ref <= 21; ref++)
		grant_v1(ref, 0, 0, 0);
}

/* ---- versions ---- */

static long get_version(domid_t dom, uint32_t *version)
{
	struct gnttab_get_version g;
	memset(&g, 0, sizeof g);
	g.dom = dom;
	g.version = 0x777;
	long rc = HYPERVISOR_grant_table_op(GNTTABOP_get_version, &g, 1);
	*version = g.version;
	return rc;
}

static long set_version(uint32_t want, uint32_t *now)
{
	struct gnttab_set_version s = { .version = want };
	long rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &s, 1);
	*now = s.version;
	return rc;
}

static void check_reserved_v1(const char *when)
{
	volatile grant_entry_v1_t *e = gt1();
	KIT_CHECK(e[0].flags == GTF_permit_access && e[0].domid == 0 && e[0].frame == console_pfn,
		  "%s: console entry {0x%x, %u, 0x%x}", when, e[0].flags, e[0].domid, e[0].frame);
	KIT_CHECK(e[1].flags == GTF_permit_access && e[1].domid == 0 && e[1].frame == store_pfn,
		  "%s: xenstore entry {0x%x, %u, 0x%x}", when, e[1].flags, e[1].domid, e[1].frame);
	for (int i = 2; i < 64; i++)
		KIT_CHECK(e[i].flags == 0 && e[i].domid == 0 && e[i].frame == 0, "%s: entry %d not zero", when, i);
}

static void version_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	uint32_t v;
	XEN_EXPECT_RC(get_version(DOMID_SELF, &v), 0, "get_version(DOMID_SELF)");
	KIT_CHECK(v == 1, "version %u, expected 1", v);
	struct gnttab_get_version g = { .dom = DOMID_SELF, .pad = 0x5a5a, .version = 0x777 };
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_get_version, &g, 1), 0, "get_version");
	KIT_CHECK(g.dom == DOMID_SELF && g.pad == 0x5a5a && g.version == 1, "get_version wrote {0x%x, 0x%x, %u}", g.dom,
		  g.pad, g.version);
	XEN_EXPECT_RC(get_version((domid_t)domid, &v), 0, "get_version(own domid)");
	KIT_CHECK(v == 1, "own domid: version %u", v);
	XEN_EXPECT_RC(get_version(0, &v), -XEN_EPERM, "get_version(dom 0)");
	XEN_EXPECT_RC(get_version(5, &v), -XEN_ESRCH, "get_version(dom 5)");
	XEN_EXPECT_RC(set_version(0, &v), -XEN_EINVAL, "set_version(0)");
	KIT_CHECK(v == 1, "set_version(0) wrote back version %u, expected 1", v);
	XEN_EXPECT_RC(set_version(3, &v), -XEN_EINVAL, "set_version(3)");
	XEN_EXPECT_RC(set_version(1, &v), 0, "set_version(1) while at 1");

	/* An entry above the reserved ones is wiped by a switch. */
	grant_v1(30, GTF_permit_access, (domid_t)domid, (uint32_t)GFN(src_page));
	XEN_EXPECT_RC(set_version(2, &v), 0, "set_version(2)");
	KIT_CHECK(v == 2, "set_version(2) wrote back %u", v);
	XEN_EXPECT_RC(get_version(DOMID_SELF, &v), 0, "get_version after set_version(2)");
	KIT_CHECK(v == 2, "get_version %u after set_version(2)", v);
	volatile grant_entry_v2_t *e = gt2();
	KIT_CHECK(e[0].hdr.flags == GTF_permit_access && e[0].hdr.domid == 0 && e[0].full_page.frame == console_pfn,
		  "v2 console entry {0x%x, %u, 0x%llx}", e[0].hdr.flags, e[0].hdr.domid, U64(e[0].full_page.frame));
	KIT_CHECK(e[1].hdr.flags == GTF_permit_access && e[1].hdr.domid == 0 && e[1].full_page.frame == store_pfn,
		  "v2 xenstore entry {0x%x, %u, 0x%llx}", e[1].hdr.flags, e[1].hdr.domid, U64(e[1].full_page.frame));
	KIT_CHECK(xen_find_not((const void *)&e[2], 30 * sizeof e[0], 0) < 0, "v2 entries 2..31 not zero");

	/* The status frame, mapped as HVM guests reach it. */
	uint64_t status_gfn = gfn_high + 0x20;
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status | 0,
					 (unsigned long)status_gfn),
		      0, "add_to_physmap(status frame 0)");
	volatile grant_status_t *status = kit_phys(status_gfn << 12);
	KIT_CHECK(xen_find_not((const void *)status, 4096, 0) < 0, "status frame not all zero");
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status | 64,
					 (unsigned long)status_gfn + 1),
		      -XEN_EINVAL, "add_to_physmap(status frame 64)");

	/* A v2 self-grant: the whole page, then a window of it. */
	char why[80];
	e[REF_SRC].full_page.frame = GFN(src_page);
	e[REF_SRC].hdr.domid = (domid_t)domid;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e[REF_SRC].hdr.flags = GTF_permit_access;
	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_SRC, DOMID_SELF, 50, GFN(dst_page), DOMID_SELF, 60, 1000), GNTST_okay,
		  "v2: from a full-page grant");
	KIT_CHECK(copied(50, 60, 1000, why, sizeof why), "v2 full page: %s", why);
	e[REF_DST].sub_page.frame = GFN(src_page);
	e[REF_DST].sub_page.page_off = 256;
	e[REF_DST].sub_page.length = 512;
	e[REF_DST].hdr.domid = (domid_t)domid;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e[REF_DST].hdr.flags = GTF_permit_access | GTF_sub_page;
	fill_pages();
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_DST, DOMID_SELF, 300, GFN(dst_page), DOMID_SELF, 0, 100), GNTST_okay,
		  "v2: inside a sub-page grant [256, 768)");
	KIT_CHECK(copied(300, 0, 100, why, sizeof why), "v2 sub-page: %s", why);
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_DST, DOMID_SELF, 256, GFN(dst_page), DOMID_SELF, 0, 512), GNTST_okay,
		  "v2: the whole sub-page window");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_DST, DOMID_SELF, 100, GFN(dst_page), DOMID_SELF, 0, 100),
		  GNTST_general_error, "v2: before a sub-page window");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, REF_DST, DOMID_SELF, 700, GFN(dst_page), DOMID_SELF, 0, 100),
		  GNTST_general_error, "v2: across the end of a sub-page window");
	KIT_CHECK(status[REF_SRC] == 0 && status[REF_DST] == 0, "v2 status words 0x%x 0x%x after the copies",
		  status[REF_SRC], status[REF_DST]);
	KIT_CHECK(e[REF_SRC].hdr.flags == GTF_permit_access, "v2 header flags changed to 0x%x", e[REF_SRC].hdr.flags);
	/* A grant past the entries of v2's smaller table (6 frames × 256). */
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, 6 * 256, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8), GNTST_bad_gntref,
		  "v2: ref %u", 6 * 256);

	/* Back to v1 is refused while a reserved entry holds what v1 cannot: a frame above 32 bits, a transitive grant. */
	e[2].full_page.frame = 1ull << 32;
	e[2].hdr.domid = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e[2].hdr.flags = GTF_permit_access;
	XEN_EXPECT_RC(set_version(1, &v), -XEN_ERANGE, "set_version(1) with a reserved entry at frame 2^32");
	KIT_CHECK(v == 2, "refused set_version(1) wrote back %u", v);
	KIT_CHECK(e[REF_SRC].full_page.frame == GFN(src_page), "refused set_version(1) wiped the table");
	e[2].hdr.flags = GTF_transitive;
	XEN_EXPECT_RC(set_version(1, &v), -XEN_ERANGE, "set_version(1) with a transitive reserved entry");
	e[2].hdr.flags = 0;
	e[2].full_page.frame = 0;

	XEN_EXPECT_RC(set_version(1, &v), 0, "set_version(1)");
	KIT_CHECK(v == 1, "set_version(1) wrote back %u", v);
	XEN_EXPECT_RC(get_version(DOMID_SELF, &v), 0, "get_version after set_version(1)");
	KIT_CHECK(v == 1, "get_version %u after set_version(1)", v);
	check_reserved_v1("back at v1");
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status | 0,
					 (unsigned long)status_gfn),
		      -XEN_EINVAL, "add_to_physmap(status frame 0) under v1");
	struct gnttab_query_size q;
	xen_gnttab_query_size(DOMID_SELF, &q);
	KIT_CHECK(q.nr_frames == 6, "nr_frames %u after the switches", q.nr_frames);
}

static void swap_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	grant_v1(20, GTF_permit_access, 0, 0x1234);
	grant_v1(21, GTF_permit_access | GTF_readonly, (domid_t)domid, 0x5678);
	struct gnttab_swap_grant_ref s[3];
	memset(s, 0, sizeof s);
	s[0].ref_a = 20;
	s[0].ref_b = 21;
	s[1].ref_a = 20;
	s[1].ref_b = 20;
	s[2].ref_a = 20;
	s[2].ref_b = 0x100000;
	for (int i = 0; i < 3; i++)
		s[i].status = 0x777;
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_swap_grant_ref, s, 3), 0, "swap_grant_ref batch of 3");
	XEN_EXPECT_GNTST(s[0].status, GNTST_okay, "swap 20 and 21");
	XEN_EXPECT_GNTST(s[1].status, GNTST_okay, "swap 20 with itself");
	XEN_EXPECT_GNTST(s[2].status, GNTST_bad_gntref, "swap 20 and 0x100000");
	volatile grant_entry_v1_t *e = gt1();
	KIT_CHECK(e[20].flags == (GTF_permit_access | GTF_readonly) && e[20].domid == domid && e[20].frame == 0x5678,
		  "entry 20 after the swap {0x%x, %u, 0x%x}", e[20].flags, e[20].domid, e[20].frame);
	KIT_CHECK(e[21].flags == GTF_permit_access && e[21].domid == 0 && e[21].frame == 0x1234,
		  "entry 21 after the swap {0x%x, %u, 0x%x}", e[21].flags, e[21].domid, e[21].frame);
	s[0].ref_a = 0x100000;
	s[0].ref_b = 20;
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_swap_grant_ref, s, 1), 0, "swap_grant_ref");
	XEN_EXPECT_GNTST(s[0].status, GNTST_bad_gntref, "swap 0x100000 and 20");
	KIT_CHECK(e[20].frame == 0x5678, "a refused swap changed entry 20");
	grant_v1(20, 0, 0, 0);
	grant_v1(21, 0, 0, 0);
}

static long map1(uint32_t flags, grant_ref_t ref, domid_t dom, struct gnttab_map_grant_ref *m)
{
	memset(m, 0, sizeof *m);
	m->host_addr = (gfn_high + 0x30) << 12;
	m->flags = flags;
	m->ref = ref;
	m->dom = dom;
	m->status = 0x777;
	m->handle = 0xabcd;
	m->dev_bus_addr = 0x1111;
	return HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, m, 1);
}

static void map_refused_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	struct gnttab_map_grant_ref m;
	domid_t self = (domid_t)domid;
	grant_v1(REF_SRC, GTF_permit_access, self, (uint32_t)GFN(src_page));
	XEN_EXPECT_RC(map1(0, REF_SRC, self, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_bad_gntref, "map without host_map or device_map");
	XEN_EXPECT_RC(map1(GNTMAP_device_map, REF_SRC, self, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_general_error, "map with device_map");
	XEN_EXPECT_RC(map1(GNTMAP_host_map | GNTMAP_contains_pte, REF_SRC, self, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_general_error, "map with contains_pte");
	XEN_EXPECT_RC(map1(GNTMAP_host_map, REF_SRC, DOMID_SELF, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_bad_domain, "map of DOMID_SELF");
	XEN_EXPECT_RC(map1(GNTMAP_host_map, REF_SRC, 5, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_bad_domain, "map of dom 5");
	XEN_EXPECT_RC(map1(GNTMAP_host_map, GNTTAB_RESERVED_CONSOLE, 0, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_general_error, "map of a dom 0 gref");
	XEN_EXPECT_RC(map1(GNTMAP_host_map, 0x100000, self, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_bad_gntref, "map of own ref 0x100000 (past the table)");
	XEN_EXPECT_RC(map1(GNTMAP_host_map, REF_SRC, self, &m), 0, "map_grant_ref");
	XEN_EXPECT_GNTST(m.status, GNTST_general_error, "map of a self grant (own domid; xenkvm refuses)");
	KIT_CHECK(m.handle == 0xabcd && m.dev_bus_addr == 0x1111, "refused map wrote handle 0x%x dev_bus_addr 0x%llx",
		  m.handle, U64(m.dev_bus_addr));
	KIT_CHECK(entry_idle(REF_SRC), "refused map left entry flags 0x%x", gt1()[REF_SRC].flags);
	struct gnttab_unmap_grant_ref u[2];
	memset(u, 0, sizeof u);
	u[0].host_addr = (gfn_high + 0x30) << 12;
	u[0].handle = 0;
	u[0].status = 0x777;
	u[1].handle = 0xffff;
	u[1].status = 0x777;
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, u, 2), 0, "unmap_grant_ref batch of 2");
	XEN_EXPECT_GNTST(u[0].status, GNTST_bad_handle, "unmap handle 0");
	XEN_EXPECT_GNTST(u[1].status, GNTST_bad_handle, "unmap handle 0xffff");
	grant_v1(REF_SRC, 0, 0, 0);
}

static void hvm_filtered_case(void)
{
	static uint8_t arg[64];
	memset(arg, 0, sizeof arg);
	static const struct {
		unsigned int cmd;
		const char *name;
	} ops[] = {
		{ GNTTABOP_transfer, "transfer" },
		{ GNTTABOP_unmap_and_replace, "unmap_and_replace" },
		{ GNTTABOP_get_status_frames, "get_status_frames" },
		{ GNTTABOP_cache_flush, "cache_flush" },
		{ GNTTABOP_dump_table, "dump_table" },
		{ 13, "cmd 13" },
		{ GNTTABOP_query_size | (1u << 12), "query_size | 1 << 12" },
	};
	for (unsigned int i = 0; i < sizeof ops / sizeof ops[0]; i++)
		XEN_EXPECT_RC(HYPERVISOR_grant_table_op(ops[i].cmd, arg, 1), -XEN_ENOSYS, "%s", ops[i].name);
	KIT_CHECK(xen_find_not(arg, sizeof arg, 0) < 0, "a refused op wrote its argument");
}

/* ---- a secondary console, its ring granted to domain 0 ---- */

static struct xs_reply r;

#define CONS_REF 30
#define MARKER "KIT-XEN secondary-console says hello\n"
#define MARKER_V2 "KIT-XEN secondary-console says hello again, granted in v2\n"

/* Writes `text` into the console ring's output, notifies the backend and waits until it has taken it all. */
static const char *console_say(evtchn_port_t port, const char *text)
{
	volatile struct xencons_interface *cons = (volatile struct xencons_interface *)cons_page;
	XENCONS_RING_IDX prod = cons->out_prod;
	for (size_t i = 0; text[i]; i++)
		cons->out[MASK_XENCONS_IDX(prod++, cons->out)] = text[i];
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	cons->out_prod = prod;
	if (xen_evtchn_send(port) != 0)
		return "notifying the backend failed";
	return KIT_WAIT_FOR(cons->out_cons == prod, 10000) ? 0 : "the backend did not take what was written";
}

/* The frontend offers its port and says Initialised; the backend must connect. */
static const char *console_connect(const char *front, const char *back, evtchn_port_t port)
{
	char path[128], value[32];
	kit_snprintf(path, sizeof path, "%s/port", front);
	kit_snprintf(value, sizeof value, "%u", port);
	if (!xs_write(0, path, value, &r))
		return "writing the frontend's port failed";
	kit_snprintf(path, sizeof path, "%s/state", front);
	if (!xs_write(0, path, "3", &r))
		return "writing the frontend's state failed";
	kit_snprintf(path, sizeof path, "%s/state", back);
	return xs_wait_for(path, "4", 20000, &r) ? 0 : "the backend did not connect";
}

/* The frontend closes; the backend must follow to Closed. */
static const char *console_close(const char *front, const char *back)
{
	char path[128];
	kit_snprintf(path, sizeof path, "%s/state", front);
	if (!xs_write(0, path, "6", &r))
		return "writing the frontend's state failed";
	kit_snprintf(path, sizeof path, "%s/state", back);
	return xs_wait_for(path, "6", 20000, &r) ? 0 : "the backend did not go to Closed";
}

static void secondary_console_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	XEN_EXPECT_RC(xs_init(), 0, "store params");
	char front[64], back[96], path[128], value[32];
	kit_snprintf(front, sizeof front, "device/console/1");
	kit_snprintf(back, sizeof back, "/local/domain/0/backend/console/%ld/1", domid);
	kit_snprintf(path, sizeof path, "%s/backend", front);
	KIT_CHECK(xs_read(0, path, &r), "no %s (run with --secondary-consoles 1): %s", path, r.data);
	KIT_CHECK(!strcmp(r.data, back), "%s is \"%s\", expected \"%s\"", path, r.data, back);
	kit_snprintf(path, sizeof path, "%s/state", back);
	KIT_CHECK(xs_wait_for(path, "2", 5000, &r), "backend state \"%s\", expected 2 (InitWait)", r.data);

	memset(cons_page, 0, sizeof cons_page);
	grant_v1(CONS_REF, GTF_permit_access, 0, (uint32_t)GFN(cons_page));
	evtchn_port_t port;
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(DOMID_SELF, 0, &port), 0, "alloc_unbound for dom 0");
	kit_printf("KIT-XEN secondary console ref=%u port=%u gfn=0x%lx\n", CONS_REF, port, (unsigned long)GFN(cons_page));
	kit_snprintf(path, sizeof path, "%s/ring-ref", front);
	kit_snprintf(value, sizeof value, "%u", CONS_REF);
	KIT_CHECK(xs_write(0, path, value, &r), "write %s: %s", path, r.data);
	const char *failed = console_connect(front, back, port);
	KIT_CHECK(!failed, "%s", failed);
	uint16_t flags = gt1()[CONS_REF].flags;
	KIT_CHECK(flags == (GTF_permit_access | GTF_reading | GTF_writing),
		  "connected: entry flags 0x%x, expected permit_access|reading|writing", flags);
	struct evtchn_status st;
	KIT_CHECK(xen_evtchn_status_is(port, EVTCHNSTAT_interdomain, &st) && st.u.interdomain.dom == 0,
		  "port %u not bound by dom 0", port);
	/* An entry the backend has pinned: the version cannot change, it cannot be swapped, nor copied by us. */
	uint32_t v;
	XEN_EXPECT_RC(set_version(2, &v), -XEN_EBUSY, "set_version(2) while the backend maps entry %u", CONS_REF);
	KIT_CHECK(v == 1, "refused set_version wrote back %u", v);
	KIT_CHECK(gt1()[CONS_REF].frame == GFN(cons_page) && gt1()[0].frame == console_pfn,
		  "a refused set_version changed the table");
	struct gnttab_swap_grant_ref sw = { .ref_a = CONS_REF, .ref_b = CONS_REF + 1, .status = 0x777 };
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_swap_grant_ref, &sw, 1), 0, "swap_grant_ref");
	XEN_EXPECT_GNTST(sw.status, GNTST_eagain, "swap of a pinned entry");
	XEN_EXPECT_GNTST(copy1(GNTCOPY_source_gref, CONS_REF, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8),
		  GNTST_general_error, "copy from an entry dom 0 has pinned");
	KIT_CHECK(gt1()[CONS_REF].flags == (GTF_permit_access | GTF_reading | GTF_writing), "entry flags 0x%x after",
		  gt1()[CONS_REF].flags);

	const char *why = console_say(port, MARKER);
	KIT_CHECK(!why, "%s", why);
	why = console_close(front, back);
	KIT_CHECK(!why, "%s", why);
	KIT_CHECK(KIT_WAIT_FOR(entry_idle(CONS_REF), 10000), "closed: entry flags 0x%x still in use",
		  gt1()[CONS_REF].flags);
	KIT_CHECK(gt1()[CONS_REF].flags == GTF_permit_access, "closed: entry flags 0x%x", gt1()[CONS_REF].flags);
	grant_v1(CONS_REF, 0, 0, 0);
	xen_evtchn_close(port);
}

/* The same device again, as a frontend starting over after a close, with the table in version 2:
 * GTF_reading and GTF_writing show in the status frame, not in the entry. */
static void secondary_console_v2_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	char front[64], back[96], path[128];
	kit_snprintf(front, sizeof front, "device/console/1");
	kit_snprintf(back, sizeof back, "/local/domain/0/backend/console/%ld/1", domid);
	uint32_t v;
	XEN_EXPECT_RC(set_version(2, &v), 0, "set_version(2)");
	uint64_t status_gfn = gfn_high + 0x20;
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status | 0,
					 (unsigned long)status_gfn),
		      0, "add_to_physmap(status frame 0)");
	volatile grant_status_t *status = kit_phys(status_gfn << 12);
	kit_snprintf(path, sizeof path, "%s/state", front);
	KIT_CHECK(xs_write(0, path, "1", &r), "write %s: %s", path, r.data);
	kit_snprintf(path, sizeof path, "%s/state", back);
	KIT_CHECK(xs_wait_for(path, "2", 20000, &r), "backend state \"%s\", expected 2 (InitWait) again", r.data);

	memset(cons_page, 0, sizeof cons_page);
	volatile grant_entry_v2_t *e = &gt2()[CONS_REF];
	e->full_page.frame = GFN(cons_page);
	e->hdr.domid = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e->hdr.flags = GTF_permit_access;
	evtchn_port_t port;
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(DOMID_SELF, 0, &port), 0, "alloc_unbound for dom 0");
	const char *failed = console_connect(front, back, port);
	KIT_CHECK(!failed, "%s", failed);
	KIT_CHECK(status[CONS_REF] == (GTF_reading | GTF_writing), "connected: status word 0x%x, expected reading|writing",
		  status[CONS_REF]);
	KIT_CHECK(e->hdr.flags == GTF_permit_access, "connected: v2 header flags 0x%x", e->hdr.flags);
	XEN_EXPECT_RC(set_version(1, &v), -XEN_EBUSY, "set_version(1) while the backend maps entry %u", CONS_REF);

	const char *why = console_say(port, MARKER_V2);
	KIT_CHECK(!why, "%s", why);
	why = console_close(front, back);
	KIT_CHECK(!why, "%s", why);
	KIT_CHECK(KIT_WAIT_FOR(status[CONS_REF] == 0, 10000), "closed: status word 0x%x", status[CONS_REF]);
	xen_evtchn_close(port);
	XEN_EXPECT_RC(set_version(1, &v), 0, "set_version(1) once closed");
	check_reserved_v1("after the v2 console");
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_high);
	kit_cmdline_u64("max-frames", &max_frames);
	xen_require();
	domid = xen_own_domid();
	kit_printf("KIT-XEN domid=%ld gfn-high=0x%llx max-frames=%llu\n", domid, U64(gfn_high), U64(max_frames));
	kit_case("query-size", query_size_case);
	kit_case("setup-table", setup_table_case);
	kit_case("reserved-entries", reserved_entries_case);
	kit_case("physmap-grow", physmap_grow_case);
	kit_case("copy-gmfn", copy_gmfn_case);
	kit_case("copy-gref", copy_gref_case);
	kit_case("version", version_case);
	kit_case("swap", swap_case);
	kit_case("map-refused", map_refused_case);
	kit_case("hvm-filtered", hvm_filtered_case);
	kit_case("secondary-console", secondary_console_case);
	kit_case("secondary-console-v2", secondary_console_v2_case);
}

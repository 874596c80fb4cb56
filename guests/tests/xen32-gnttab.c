/* Grant tables from 32-bit protected mode: the compat structs (setup_table's
 * frame list of 32-bit words, the compat gnttab_copy), the table's size and
 * frame 0 with the toolstack's reserved entries, and copies between frames
 * of its own and through a grant it makes to itself.
 * cmdline: gfn-high=<gfn> (default 0xf0000), max-frames=<n> (default 64). */
#include "../kit32/kit32.h"
#include "../common/xen.h"

_Static_assert(sizeof(struct gnttab_setup_table) == 16, "compat gnttab_setup_table");
_Static_assert(sizeof(xen_pfn_t) == 4, "compat xen_pfn_t");
_Static_assert(sizeof(struct gnttab_query_size) == 16, "compat gnttab_query_size");
_Static_assert(sizeof(struct gnttab_copy) == 24, "compat gnttab_copy");
_Static_assert(offsetof(struct gnttab_copy, dest) == 8, "compat gnttab_copy dest");
_Static_assert(offsetof(struct gnttab_copy, status) == 20, "compat gnttab_copy status");

static uint64_t gfn_high = 0xf0000;
static uint64_t max_frames = 64;
static long domid;
static uint64_t gt_gfn, console_pfn, store_pfn;

static uint8_t src_page[4096] __attribute__((aligned(4096)));
static uint8_t dst_page[4096] __attribute__((aligned(4096)));

#define GFN(p) ((uint32_t)((uintptr_t)(p) >> 12))

static volatile grant_entry_v1_t *gt1(void) { return kit_phys(gt_gfn << 12); }


/* 32-bit words; frames[n..] keep the marker. */
static uint32_t frames[8];
static struct gnttab_setup_table setup;

static long setup_table(domid_t dom, uint32_t n, unsigned int count)
{
	memset(&setup, 0, sizeof setup);
	for (int i = 0; i < 8; i++)
		frames[i] = 0x5a5a5a5a;
	setup.dom = dom;
	setup.nr_frames = n;
	setup.status = 0x777;
	set_xen_guest_handle(setup.frame_list, (xen_pfn_t *)frames);
	return HYPERVISOR_grant_table_op(GNTTABOP_setup_table, &setup, count);
}

static void query_size_case(void)
{
	struct gnttab_query_size q;
	XEN_EXPECT_RC(xen_gnttab_query_size(DOMID_SELF, &q), 0, "xen_gnttab_query_size(DOMID_SELF)");
	XEN_EXPECT_GNTST(q.status, GNTST_okay, "xen_gnttab_query_size(DOMID_SELF)");
	KIT_CHECK(q.nr_frames == 1 && q.max_nr_frames == max_frames, "nr_frames %u max_nr_frames %u", q.nr_frames,
		  q.max_nr_frames);
	XEN_EXPECT_RC(xen_gnttab_query_size((domid_t)domid, &q), 0, "xen_gnttab_query_size(own domid)");
	XEN_EXPECT_GNTST(q.status, GNTST_okay, "xen_gnttab_query_size(own domid)");
	XEN_EXPECT_RC(xen_gnttab_query_size(0, &q), 0, "xen_gnttab_query_size(dom 0)");
	XEN_EXPECT_GNTST(q.status, GNTST_permission_denied, "xen_gnttab_query_size(dom 0)");
	XEN_EXPECT_RC(xen_gnttab_query_size(5, &q), 0, "xen_gnttab_query_size(dom 5)");
	XEN_EXPECT_GNTST(q.status, GNTST_bad_domain, "xen_gnttab_query_size(dom 5)");
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 2), -XEN_EINVAL, "query_size count 2");
}

static void setup_table_case(void)
{
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, 1), 0, "setup_table(1)");
	XEN_EXPECT_GNTST(setup.status, GNTST_okay, "setup_table(1)");
	KIT_CHECK(frames[0] == 0xffffffffu, "frame 0 before mapping 0x%x, expected 0xffffffff", frames[0]);
	KIT_CHECK(frames[1] == 0x5a5a5a5a, "setup_table wrote 0x%x past its one 32-bit word", frames[1]);
	XEN_EXPECT_RC(xen_add_to_physmap(XENMAPSPACE_grant_table, 0, (unsigned long)gfn_high), 0,
		      "add_to_physmap(grant_table 0)");
	gt_gfn = gfn_high;
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 3, 1), 0, "setup_table(3)");
	XEN_EXPECT_GNTST(setup.status, GNTST_okay, "setup_table(3)");
	KIT_CHECK(frames[0] == gfn_high && frames[1] == 0xffffffffu && frames[2] == 0xffffffffu && frames[3] == 0x5a5a5a5a,
		  "frames 0x%x 0x%x 0x%x 0x%x", frames[0], frames[1], frames[2], frames[3]);
	struct gnttab_query_size q;
	xen_gnttab_query_size(DOMID_SELF, &q);
	KIT_CHECK(q.nr_frames == 3, "nr_frames %u after setup_table(3)", q.nr_frames);
	XEN_EXPECT_RC(setup_table(DOMID_SELF, (uint32_t)max_frames + 1, 1), 0, "setup_table(max + 1)");
	XEN_EXPECT_GNTST(setup.status, GNTST_general_error, "setup_table(max + 1)");
	KIT_CHECK(frames[0] == 0x5a5a5a5a, "a refused setup_table wrote its list (0x%x)", frames[0]);
	XEN_EXPECT_RC(setup_table(0, 1, 1), 0, "setup_table(dom 0)");
	XEN_EXPECT_GNTST(setup.status, GNTST_permission_denied, "setup_table(dom 0)");
	/* The compat wrapper takes a count of 0 as nothing to do. */
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, 0), 0, "setup_table count 0 (compat)");
	KIT_CHECK(setup.status == 0x777 && frames[0] == 0x5a5a5a5a, "count 0 wrote status %d frame 0x%x", setup.status,
		  frames[0]);
	XEN_EXPECT_RC(setup_table(DOMID_SELF, 1, 2), -XEN_EINVAL, "setup_table count 2");
}

static void reserved_entries_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_CONSOLE_PFN, &console_pfn), 0, "get CONSOLE_PFN");
	XEN_EXPECT_RC(xen_hvm_get_param(HVM_PARAM_STORE_PFN, &store_pfn), 0, "get STORE_PFN");
	volatile grant_entry_v1_t *e = gt1();
	KIT_CHECK(e[0].flags == GTF_permit_access && e[0].domid == 0 && e[0].frame == console_pfn,
		  "console entry {0x%x, %u, 0x%x}", e[0].flags, e[0].domid, e[0].frame);
	KIT_CHECK(e[1].flags == GTF_permit_access && e[1].domid == 0 && e[1].frame == store_pfn,
		  "xenstore entry {0x%x, %u, 0x%x}", e[1].flags, e[1].domid, e[1].frame);
	for (int i = 2; i < GNTTAB_NR_RESERVED_ENTRIES; i++)
		KIT_CHECK(e[i].flags == 0 && e[i].domid == 0 && e[i].frame == 0, "reserved entry %d not zero", i);
}

static void fill_pages(void)
{
	for (int i = 0; i < 4096; i++)
		src_page[i] = (uint8_t)(i * 13 + 5);
	memset(dst_page, 0xcc, sizeof dst_page);
}

static bool copied(unsigned int soff, unsigned int doff, unsigned int len)
{
	for (unsigned int i = 0; i < 4096; i++)
		if (dst_page[i] != ((i >= doff && i < doff + len) ? src_page[soff + (i - doff)] : 0xcc))
			return false;
	return true;
}


static void copy_case(void)
{
	KIT_CHECK(gt_gfn, "table not mapped");
	struct gnttab_copy ops[5];
	fill_pages();
	xen_gnttab_copy_op(&ops[0], 0, GFN(src_page), DOMID_SELF, 100, GFN(dst_page), DOMID_SELF, 200, 300);
	xen_gnttab_copy_op(&ops[1], 0, GFN(src_page), (domid_t)domid, 0, GFN(dst_page), DOMID_SELF, 0, 16);
	xen_gnttab_copy_op(&ops[2], 0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 4000, 200);
	xen_gnttab_copy_op(&ops[3], 0, 0xe0000, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 16);
	xen_gnttab_copy_op(&ops[4], 0, GFN(src_page), DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 0);
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, 5), 0, "batch of 5 copies");
	static const int16_t want[5] = { GNTST_okay, GNTST_permission_denied, GNTST_bad_copy_arg, GNTST_bad_page, GNTST_okay };
	for (int i = 0; i < 5; i++)
		XEN_EXPECT_GNTST(ops[i].status, want[i], "compat batch op %d", i);
	KIT_CHECK(copied(100, 200, 300), "compat copy gmfn->gmfn: wrong bytes");

	/* A grant to itself, copied from by reference and to by reference. */
	volatile grant_entry_v1_t *e = gt1();
	e[10].domid = (domid_t)domid;
	e[10].frame = GFN(src_page);
	e[11].domid = (domid_t)domid;
	e[11].frame = GFN(dst_page);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e[10].flags = GTF_permit_access | GTF_readonly;
	e[11].flags = GTF_permit_access;
	fill_pages();
	xen_gnttab_copy_op(&ops[0], GNTCOPY_source_gref | GNTCOPY_dest_gref, 10, DOMID_SELF, 40, 11, (domid_t)domid, 50, 1000);
	xen_gnttab_copy_op(&ops[1], GNTCOPY_dest_gref, GFN(src_page), DOMID_SELF, 0, 10, DOMID_SELF, 0, 8);
	xen_gnttab_copy_op(&ops[2], GNTCOPY_source_gref, 0x100000, DOMID_SELF, 0, GFN(dst_page), DOMID_SELF, 0, 8);
	XEN_EXPECT_RC(HYPERVISOR_grant_table_op(GNTTABOP_copy, ops, 3), 0, "batch of 3 gref copies");
	XEN_EXPECT_GNTST(ops[0].status, GNTST_okay, "gref to gref");
	XEN_EXPECT_GNTST(ops[1].status, GNTST_general_error, "to a read-only grant");
	XEN_EXPECT_GNTST(ops[2].status, GNTST_bad_gntref, "from ref 0x100000");
	KIT_CHECK(copied(40, 50, 1000), "gref to gref: wrong bytes");
	KIT_CHECK(e[10].flags == (GTF_permit_access | GTF_readonly) && e[11].flags == GTF_permit_access,
		  "entries left with flags 0x%x 0x%x", e[10].flags, e[11].flags);
	e[10].flags = 0;
	e[11].flags = 0;
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_high);
	kit_cmdline_u64("max-frames", &max_frames);
	xen_require();
	domid = xen_own_domid();
	kit_case("query-size", query_size_case);
	kit_case("setup-table-compat", setup_table_case);
	kit_case("reserved-entries", reserved_entries_case);
	kit_case("copy-compat", copy_case);
}

/* The balloon driver's view of memory: XENMEM_increase_reservation,
 * decrease_reservation and populate_physmap on frames of this kernel's own
 * RAM, and the reservation queries, as Xen answers an HVM domU. outside-ram is
 * xenkvm's limit; the host side (test/integration/xen.test.ts) checks it is the
 * one line in the log. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define BALLOON_PAGES 8
/* Frames this kernel gives away and takes back: 8 KiB-aligned so a pair makes an order-1 extent. */
static uint8_t balloon[BALLOON_PAGES][4096] __attribute__((aligned(8192)));
static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static xen_pfn_t list[BALLOON_PAGES];
static long cur0, max0;

#define GFN(p) ((xen_pfn_t)(XEN_PTR(p) >> 12))

static long reservation_op(unsigned int cmd, xen_pfn_t *extents, unsigned long n, unsigned int order, unsigned int flags,
			   domid_t dom)
{
	struct xen_memory_reservation r = { .nr_extents = n, .extent_order = order, .mem_flags = flags, .domid = dom };
	set_xen_guest_handle(r.extent_start, extents);
	return HYPERVISOR_memory_op(cmd, &r);
}

static long current_pages(void)
{
	domid_t dom = DOMID_SELF;
	return HYPERVISOR_memory_op(XENMEM_current_reservation, &dom);
}

static void fill_list(unsigned int first, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		list[i] = GFN(balloon[first + i]);
}

static void reservation_case(void)
{
	domid_t dom = DOMID_SELF;
	cur0 = current_pages();
	max0 = HYPERVISOR_memory_op(XENMEM_maximum_reservation, &dom);
	long ram_page = HYPERVISOR_memory_op(XENMEM_maximum_ram_page, NULL);
	long gpfn = HYPERVISOR_memory_op(XENMEM_maximum_gpfn, &dom);
	kit_printf("KIT-XEN reservation current=%ld max=%ld maximum_ram_page=0x%lx maximum_gpfn=0x%lx\n", cur0, max0,
		   ram_page, gpfn);
	KIT_CHECK(cur0 > 0 && max0 >= cur0, "current %ld, maximum %ld", cur0, max0);
	uint64_t top = 0;
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		if (e[i].type == 1 && e[i].addr + e[i].size > top)
			top = e[i].addr + e[i].size;
	KIT_CHECK(ram_page > 0 && (uint64_t)ram_page >= top >> 12, "maximum_ram_page 0x%lx below RAM's end 0x%llx", ram_page,
		  U64(top));
	KIT_CHECK(gpfn > 0 && (uint64_t)gpfn >= (top >> 12) - 1, "maximum_gpfn 0x%lx below RAM's last frame", gpfn);
	long rc = xen_hypercall(__HYPERVISOR_memory_op, XENMEM_maximum_ram_page | (1 << 6), 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EINVAL, "maximum_ram_page with a start extent = %ld %s", rc, xen_errname(rc));
}

static void decrease_case(void)
{
	memset(balloon, 0xa5, sizeof balloon);
	fill_list(0, BALLOON_PAGES);
	long rc = reservation_op(XENMEM_decrease_reservation, list, BALLOON_PAGES, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == BALLOON_PAGES, "decrease_reservation(8 frames) = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(current_pages() == cur0 - BALLOON_PAGES, "current %ld after giving back 8, was %ld", current_pages(), cur0);
	rc = reservation_op(XENMEM_decrease_reservation, list, BALLOON_PAGES, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 0, "decrease_reservation of frames already given back = %ld, expected 0", rc);
}

static void populate_case(void)
{
	fill_list(0, BALLOON_PAGES);
	long rc = reservation_op(XENMEM_populate_physmap, list, BALLOON_PAGES, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == BALLOON_PAGES, "populate_physmap(8 frames) = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(current_pages() == cur0, "current %ld after populating, expected %ld", current_pages(), cur0);
	long at = xen_find_not(balloon, sizeof balloon, 0);
	KIT_CHECK(at < 0, "populated frames not scrubbed: byte %ld is 0x%x", at, at < 0 ? 0 : ((uint8_t *)balloon)[at]);
	memset(balloon, 0x3c, sizeof balloon);
	KIT_CHECK(xen_find_not(balloon, sizeof balloon, 0x3c) < 0, "populated frames do not keep what is written");
	if (cur0 == max0) {
		rc = reservation_op(XENMEM_populate_physmap, list, 1, 0, 0, DOMID_SELF);
		KIT_CHECK(rc == 0, "populate_physmap at max_pages = %ld, expected 0", rc);
	}
}

static void extents_case(void)
{
	/* Order 10 is past a domU's maximum order (9): nothing done. */
	list[0] = GFN(balloon[0]);
	long rc = reservation_op(XENMEM_decrease_reservation, list, 1, 10, 0, DOMID_SELF);
	KIT_CHECK(rc == 0, "order 10 = %ld, expected 0", rc);
	/* One order-1 extent is two frames. */
	rc = reservation_op(XENMEM_decrease_reservation, list, 1, 1, 0, DOMID_SELF);
	KIT_CHECK(rc == 1 && current_pages() == cur0 - 2, "order 1 = %ld, current %ld (was %ld)", rc, current_pages(), cur0);
	rc = reservation_op(XENMEM_populate_physmap, list, 1, 1, 0, DOMID_SELF);
	KIT_CHECK(rc == 1 && current_pages() == cur0, "populate order 1 = %ld, current %ld", rc, current_pages());
	/* The first extent that fails ends the call. */
	list[0] = list[1] = GFN(balloon[2]);
	rc = reservation_op(XENMEM_decrease_reservation, list, 2, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 1, "the same frame twice = %ld, expected 1", rc);
	rc = reservation_op(XENMEM_populate_physmap, list, 1, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 1, "populate it back = %ld", rc);
	/* A continuation's start (cmd above bit 6) skips the extents before it, or is given back when past them. */
	fill_list(3, 3);
	struct xen_memory_reservation r = { .nr_extents = 3, .domid = DOMID_SELF };
	set_xen_guest_handle(r.extent_start, list);
	rc = HYPERVISOR_memory_op(XENMEM_decrease_reservation | (1 << 6), &r);
	KIT_CHECK(rc == 3 && current_pages() == cur0 - 2, "decrease from extent 1 of 3 = %ld, current %ld", rc, current_pages());
	rc = HYPERVISOR_memory_op(XENMEM_populate_physmap | (1 << 6), &r);
	KIT_CHECK(rc == 3 && current_pages() == cur0, "populate from extent 1 of 3 = %ld, current %ld", rc, current_pages());
	rc = HYPERVISOR_memory_op(XENMEM_decrease_reservation | (5 << 6), &r);
	KIT_CHECK(rc == 5, "start 5 of 3 = %ld, expected 5", rc);
}

static void refused_case(void)
{
	list[0] = GFN(balloon[0]);
	long rc = reservation_op(XENMEM_decrease_reservation, list, 1, 0, 0, DOMID_FIRST_RESERVED - 1);
	KIT_CHECK(rc == 0, "another domain = %ld, expected 0", rc);
	rc = reservation_op(XENMEM_decrease_reservation, (xen_pfn_t *)KIT_UNMAPPED_VA, 1, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 0, "an unmapped extent list = %ld, expected 0", rc);
	rc = xen_hypercall(__HYPERVISOR_memory_op, XENMEM_decrease_reservation, KIT_UNMAPPED_VA, 0, 0, 0);
	KIT_CHECK(rc == 0, "an unmapped struct = %ld, expected 0", rc);
	rc = reservation_op(XENMEM_decrease_reservation, list, 1, 0, XENMEMF_address_bits(12), DOMID_SELF);
	KIT_CHECK(rc == 0, "12 address bits = %ld, expected 0", rc);
	rc = reservation_op(XENMEM_populate_physmap, list, 1, 0, XENMEMF_populate_on_demand, DOMID_SELF);
	KIT_CHECK(rc == 0, "populate-on-demand on itself = %ld, expected 0", rc);
	KIT_CHECK(current_pages() == cur0, "current %ld, expected %ld", current_pages(), cur0);
}

static void shared_info_case(void)
{
	long rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, GFN(shinfo_page));
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", rc, xen_errname(rc));
	volatile struct shared_info *sh = (volatile struct shared_info *)shinfo_page;
	KIT_CHECK(sh->vcpu_info[0].time.tsc_to_system_mul != 0, "no vcpu_info time in shared_info");
	KIT_CHECK(current_pages() == cur0 - 1, "current %ld: the page under shared_info is freed, as Xen frees it", current_pages());
	/* Giving the frame back takes shared_info out of the map; populating it puts a fresh page there. */
	list[0] = GFN(shinfo_page);
	rc = reservation_op(XENMEM_decrease_reservation, list, 1, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 1 && current_pages() == cur0 - 1, "decrease at shared_info = %ld, current %ld", rc, current_pages());
	rc = reservation_op(XENMEM_populate_physmap, list, 1, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 1 && current_pages() == cur0, "populate it = %ld, current %ld", rc, current_pages());
	KIT_CHECK(xen_find_not(shinfo_page, sizeof shinfo_page, 0) < 0, "the fresh page is not zero: shared_info still there?");
	rc = xen_add_to_physmap(XENMAPSPACE_shared_info, 0, GFN(shinfo_page));
	KIT_CHECK(rc == 0 && sh->vcpu_info[0].time.tsc_to_system_mul != 0, "shared_info maps again: %ld", rc);
}

/* xenkvm's limit, not Xen's: it has no page to put outside the RAM it started with (one log line). */
static void outside_ram_case(void)
{
	list[0] = 0xf0000;
	long rc = reservation_op(XENMEM_populate_physmap, list, 1, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 0, "populate_physmap at gfn 0xf0000 = %ld, expected 0 on xenkvm", rc);
}

static void increase_case(void)
{
	/* An HVM guest's increase_reservation holds pages at no frame: they count, and leave none to populate with. */
	fill_list(4, 4);
	long rc = reservation_op(XENMEM_decrease_reservation, list, 4, 0, 0, DOMID_SELF);
	long cur = current_pages();
	KIT_CHECK(rc == 4, "decrease 4 = %ld", rc);
	rc = reservation_op(XENMEM_increase_reservation, NULL, 4, 0, 0, DOMID_SELF);
	KIT_CHECK(rc == 4 && current_pages() == cur + 4, "increase 4 = %ld, current %ld (was %ld)", rc, current_pages(), cur);
	if (current_pages() == max0) {
		rc = reservation_op(XENMEM_populate_physmap, list, 1, 0, 0, DOMID_SELF);
		KIT_CHECK(rc == 0, "populate with every page held = %ld, expected 0", rc);
		rc = reservation_op(XENMEM_increase_reservation, NULL, 1, 0, 0, DOMID_SELF);
		KIT_CHECK(rc == 0, "increase past max = %ld, expected 0", rc);
	}
}

void kit_main(void)
{
	xen_require();
	kit_case("reservation", reservation_case);
	kit_case("decrease", decrease_case);
	kit_case("populate", populate_case);
	kit_case("extents", extents_case);
	kit_case("refused", refused_case);
	kit_case("shared-info", shared_info_case);
	kit_case("outside-ram", outside_ram_case);
	kit_case("increase", increase_case);
}

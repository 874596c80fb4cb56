/* Grant-table benchmark, guest of bench/gnttab.ts: the grant table's frame 0
 * placed above RAM, one of the guest's pages granted to itself; then, each
 * timed with rdtsc over n calls: the null hypercall (xen_version), a
 * GNTTABOP_copy of a whole page from that grant to another frame of its own,
 * and one of 64 bytes (the copy's fixed cost); each loop after warmup=
 * untimed calls of its own, so that the VMM's code for it is compiled.
 * cmdline: n= calls (default 1000), warmup= (default 1000), gfn= the grant
 * frame's place (default 0xf0000).
 * Prints `KIT-BENCH gnttab n=<n> null-tsc=<total> copy-tsc=<total> copy64-tsc=<total>`,
 * or `KIT-BENCH gnttab FAIL <what>`. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define REF 10

static uint8_t source[4096] __attribute__((aligned(4096)));
static uint8_t dest[4096] __attribute__((aligned(4096)));

static uint64_t warmup = 1000;

static uint64_t copies(uint64_t n, unsigned int len, const char **failed)
{
	struct gnttab_copy op = {
		.source = { .u.ref = REF, .domid = DOMID_SELF, .offset = 0 },
		.dest = { .u.gmfn = (xen_pfn_t)((uintptr_t)dest >> 12), .domid = DOMID_SELF, .offset = 0 },
		.len = len,
		.flags = GNTCOPY_source_gref,
	};
	uint64_t t0 = 0;
	for (uint64_t i = 0; i < warmup + n && !*failed; i++) {
		if (i == warmup)
			t0 = rdtsc();
		if (HYPERVISOR_grant_table_op(GNTTABOP_copy, &op, 1) != 0 || op.status != GNTST_okay)
			*failed = "copy";
	}
	return rdtsc() - t0;
}

void kit_main(void)
{
	uint64_t n = 1000, gfn = 0xf0000;
	kit_cmdline_u64("n", &n);
	kit_cmdline_u64("gfn", &gfn);
	kit_cmdline_u64("warmup", &warmup);
	const char *failed = xen_setup() ? 0 : "find Xen";
	struct xen_add_to_physmap map = { .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0, .gpfn = gfn };
	if (!failed && HYPERVISOR_memory_op(XENMEM_add_to_physmap, &map) != 0)
		failed = "map the grant table";
	grant_entry_v1_t *table = (grant_entry_v1_t *)(uintptr_t)(gfn << 12);
	if (!failed) {
		table[REF].domid = xen_own_domid();
		table[REF].frame = (uint32_t)((uintptr_t)source >> 12);
		__atomic_store_n(&table[REF].flags, GTF_permit_access, __ATOMIC_RELEASE);
	}
	for (int i = 0; i < 4096; i++)
		source[i] = (uint8_t)(i * 7);
	uint64_t t0 = 0;
	for (uint64_t i = 0; i < warmup + n && !failed; i++) {
		if (i == warmup)
			t0 = rdtsc();
		if (HYPERVISOR_xen_version(XENVER_version, 0) <= 0)
			failed = "xen_version";
	}
	uint64_t null_tsc = rdtsc() - t0;
	uint64_t copy_tsc = failed ? 0 : copies(n, 4096, &failed);
	uint64_t copy64_tsc = failed ? 0 : copies(n, 64, &failed);
	if (!failed && memcmp(source, dest, 4096) != 0)
		failed = "the copied page differs";
	if (failed)
		kit_printf("KIT-BENCH gnttab FAIL %s\n", failed);
	else
		kit_printf("KIT-BENCH gnttab n=%llu null-tsc=%llu copy-tsc=%llu copy64-tsc=%llu\n", (unsigned long long)n,
			   (unsigned long long)null_tsc, (unsigned long long)copy_tsc, (unsigned long long)copy64_tsc);
	kit_poweroff();
}

/* VCPUOP_register_vcpu_info on every vCPU (each registers its own, as Linux
 * does): refusals first (bad argument pointer, an offset whose vcpu_info
 * would cross the page, a frame that isn't RAM), then registration at page P
 * offset 0x40*(cpu+1): the old contents are carried over and time keeps
 * going there; a second registration is refused. Run with --vcpus 2. */
#include "../kit/kit.h"
#include "../common/xen.h"

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t page_p[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *shinfo;
static unsigned long not_ram_gfn;
static int online;

#define CR2_MARKER(cpu) (0x5eed000000000000ull | (unsigned)(cpu))
#define FIRST_OFF(cpu) (0x40u * ((cpu) + 1))
#define SECOND_OFF(cpu) (0x800u + 0x40u * (cpu))

/* What each vCPU found; reported by the BSP. */
struct result {
	volatile int done;
	long bad_arg, crossing, not_ram, first, again;
	uint8_t mask_before, mask_after;
	uint64_t cr2_after;
	uint32_t version, version_old;
	uint32_t mul_old, mul_new;
	uint64_t t_before, t_new1, t_new2, t_first_after;
	uint8_t pending_after;
	xen_ulong_t sel_after;
	bool second_slot_untouched;
};
static struct result res[KIT_MAX_CPUS];

static long register_at(unsigned int cpu, unsigned long gfn, unsigned int offset)
{
	struct vcpu_register_vcpu_info info;
	memset(&info, 0, sizeof info);
	info.mfn = gfn;
	info.offset = offset;
	return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, cpu, &info);
}

static void run_on(int cpu)
{
	struct result *r = &res[cpu];
	unsigned long gfn_p = (unsigned long)((uintptr_t)page_p >> 12);
	volatile struct vcpu_info *old = &shinfo->vcpu_info[cpu];
	volatile struct vcpu_info *first = (volatile struct vcpu_info *)(page_p + FIRST_OFF(cpu));

	r->bad_arg = xen_hypercall(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, (unsigned)cpu, KIT_UNMAPPED_VA, 0, 0);
	r->crossing = register_at((unsigned)cpu, gfn_p, XEN_PAGE_SIZE - 32);
	r->not_ram = register_at((unsigned)cpu, not_ram_gfn, FIRST_OFF(cpu));

	/* Marks in the old vcpu_info that must travel with it. */
	old->evtchn_upcall_mask = 1;
	old->arch.cr2 = CR2_MARKER(cpu);
	r->mask_before = old->evtchn_upcall_mask;
	r->mul_old = old->time.tsc_to_system_mul;
	r->version_old = old->time.version;
	memset((void *)first, 0xaa, sizeof *first);
	r->t_before = xen_time_now(&old->time);
	r->first = register_at((unsigned)cpu, gfn_p, FIRST_OFF(cpu));
	r->mask_after = first->evtchn_upcall_mask;
	r->cr2_after = first->arch.cr2;
	r->version = first->time.version;
	r->mul_new = first->time.tsc_to_system_mul;
	r->pending_after = first->evtchn_upcall_pending;
	r->sel_after = first->evtchn_pending_sel;
	r->t_new1 = xen_time_now(&first->time);
	kit_delay_ms(1);
	r->t_new2 = xen_time_now(&first->time);

	volatile uint8_t *second = page_p + SECOND_OFF(cpu);
	memset((void *)second, 0xbb, sizeof(struct vcpu_info));
	r->again = register_at((unsigned)cpu, gfn_p, SECOND_OFF(cpu));
	r->second_slot_untouched = xen_find_not((const void *)second, sizeof(struct vcpu_info), 0xbb) < 0;
	kit_delay_ms(1);
	r->t_first_after = xen_time_now(&first->time);
	__atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
}

static void ap_main(int cpu)
{
	run_on(cpu);
}

static void shinfo_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", rc, xen_errname(rc));
	shinfo = (volatile struct shared_info *)shinfo_page;
}

/* Runs the sequence on the BSP, then starts the APs which run it too. */
static void run_case(void)
{
	KIT_CHECK(shinfo, "shared_info not mapped");
	/* A frame no e820 entry covers: just past the RAM entry holding 1 MiB. */
	const struct hvm_memmap_entry *e = kit_phys(kit_start_info->memmap_paddr);
	for (uint32_t i = 0; i < kit_start_info->memmap_entries; i++)
		if (e[i].type == 1 && e[i].addr <= 0x100000 && e[i].addr + e[i].size > 0x100000)
			not_ram_gfn = (unsigned long)((e[i].addr + e[i].size) >> 12);
	kit_printf("KIT-XEN page P gfn=0x%lx, not-RAM gfn=0x%lx\n", (unsigned long)((uintptr_t)page_p >> 12),
		   not_ram_gfn);
	run_on(0);
	online = kit_smp_start(ap_main);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	for (int cpu = 1; cpu < online; cpu++)
		KIT_CHECK(kit_wait_flag(&res[cpu].done, 3000), "cpu %d did not finish", cpu);
}

static int ncpu(void) { return online > 0 ? online : 1; }

static void bad_arg_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++)
		KIT_CHECK(res[cpu].bad_arg == -XEN_EFAULT, "cpu %d: bad pointer = %ld %s, expected -EFAULT", cpu,
			  res[cpu].bad_arg, xen_errname(res[cpu].bad_arg));
}

static void crossing_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++)
		KIT_CHECK(res[cpu].crossing == -XEN_EINVAL, "cpu %d: offset 4064 = %ld %s, expected -EINVAL", cpu,
			  res[cpu].crossing, xen_errname(res[cpu].crossing));
}

static void not_ram_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++)
		KIT_CHECK(res[cpu].not_ram == -XEN_EINVAL, "cpu %d: gfn 0x%lx = %ld %s, expected -EINVAL", cpu,
			  not_ram_gfn, res[cpu].not_ram, xen_errname(res[cpu].not_ram));
}

static void copies_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++) {
		struct result *r = &res[cpu];
		kit_printf("KIT-XEN cpu=%d register rc=%ld mask=%u cr2=0x%llx version=%u (was %u) mul=0x%x pending=%u sel=0x%llx\n",
			   cpu, r->first, r->mask_after, U64(r->cr2_after), r->version, r->version_old, r->mul_new,
			   r->pending_after, U64(r->sel_after));
		KIT_CHECK(r->first == 0, "cpu %d: register at offset 0x%x = %ld %s", cpu, FIRST_OFF(cpu), r->first,
			  xen_errname(r->first));
		KIT_CHECK(r->mask_after == r->mask_before, "cpu %d: evtchn_upcall_mask %u, was %u", cpu, r->mask_after,
			  r->mask_before);
		KIT_CHECK(r->cr2_after == CR2_MARKER(cpu), "cpu %d: arch.cr2 0x%llx not carried over (0x%llx)", cpu,
			  U64(r->cr2_after), U64(CR2_MARKER(cpu)));
		KIT_CHECK(r->mul_new == r->mul_old && r->mul_new != 0, "cpu %d: time mul 0x%x, was 0x%x", cpu,
			  r->mul_new, r->mul_old);
		/* map_vcpu_info marks everything pending so no event is lost. */
		KIT_CHECK(r->pending_after == 1 && r->sel_after == (xen_ulong_t)~0ull,
			  "cpu %d: evtchn_upcall_pending %u, evtchn_pending_sel 0x%llx; Xen sets 1 and all ones", cpu,
			  r->pending_after, U64(r->sel_after));
	}
}

static void time_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++) {
		struct result *r = &res[cpu];
		kit_printf("KIT-XEN cpu=%d time before=%llu new=%llu,%llu\n", cpu, U64(r->t_before), U64(r->t_new1),
			   U64(r->t_new2));
		KIT_CHECK(r->first == 0, "cpu %d: not registered", cpu);
		KIT_CHECK(!(r->version & 1), "cpu %d: time version %u odd", cpu, r->version);
		/* Registration forces a time update: the copied version moves on. */
		KIT_CHECK(r->version > r->version_old, "cpu %d: time version %u not past the copied %u (no fresh update)",
			  cpu, r->version, r->version_old);
		KIT_CHECK(r->t_new1 >= r->t_before, "cpu %d: time went back from %llu to %llu at the new place", cpu,
			  U64(r->t_before), U64(r->t_new1));
		KIT_CHECK(r->t_new2 > r->t_new1, "cpu %d: time not advancing at the new place (%llu, %llu)", cpu,
			  U64(r->t_new1), U64(r->t_new2));
	}
}

static void again_case(void)
{
	for (int cpu = 0; cpu < ncpu(); cpu++) {
		struct result *r = &res[cpu];
		KIT_CHECK(r->again == -XEN_EINVAL, "cpu %d: second registration = %ld %s, expected -EINVAL", cpu,
			  r->again, xen_errname(r->again));
		KIT_CHECK(r->second_slot_untouched, "cpu %d: refused registration wrote at offset 0x%x", cpu,
			  SECOND_OFF(cpu));
		KIT_CHECK(r->t_first_after > r->t_new2, "cpu %d: first place stopped (%llu then %llu)", cpu,
			  U64(r->t_new2), U64(r->t_first_after));
	}
}

void kit_main(void)
{
	xen_require();
	kit_case("map-shared-info", shinfo_case);
	kit_case("run-all-vcpus", run_case);
	kit_case("bad-arg", bad_arg_case);
	kit_case("offset-crosses-page", crossing_case);
	kit_case("not-ram-gfn", not_ram_case);
	kit_case("register-copies", copies_case);
	kit_case("register-time", time_case);
	kit_case("register-again", again_case);
}

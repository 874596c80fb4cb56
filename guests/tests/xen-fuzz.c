/* A guest-side hypercall fuzzer, on 2 vCPUs (host side: test/integration/fuzz.test.ts,
 * scripts/fuzz).
 *
 * vCPU 0 makes `calls=` hypercalls (default 20000), chosen by a generator seeded
 * from `seed=` (default 1): mostly the hypercalls Xen gives an HVM guest, with
 * one of their sub-ops or a number just past them or any 32-bit one, sometimes
 * any of the hypercall page's 128 numbers;
 * arguments built to hurt: structs of hostile words (0, -1, 2^31, ports and vCPU
 * ids at and past their limits, frame numbers of overlays and MMIO, pointers)
 * placed in scratch memory, or pointers to unmapped, read-only, overlay
 * (the XenStore ring's) and page-crossing memory, the next page unmapped.
 * Every 16th call is made from ring 3, where it must get -EPERM (`ring3=0`
 * leaves that out, for PVM, where a guest's ring 3 cannot come back).
 *
 * Meanwhile vCPU 1 sends on an IPI port bound to vCPU 0 and waits for vCPU 0's
 * upcall handler to take each: a send not taken within 5 s is an event lost,
 * reported at once on a KIT-FUZZ-LOST line with the call vCPU 0 is at.
 *
 * Some ops would undo, legitimately, what that check stands on; they get only
 * arguments that leave it alone: no shutdown or shutdown_code (the pointer is
 * unmapped), a watchdog id that is not armed, vCPUs 0 and 1 never brought down,
 * the check's port never closed or moved, no EVTCHNOP_reset of the domain or
 * FIFO setup, no upcall vector or callback change, console writes of at most
 * 16 bytes, and no poll without a timeout (its timeout is in the past or at
 * most 10 ms on: a poll whose wake-up depended on vCPU 1 alone would hang the
 * run if an event were lost, instead of reporting it). memory_op's
 * add_to_physmap calls run with interrupts off and shared_info is mapped back
 * at its frame after each; their frames are landing pages no pointer is made
 * into (or a batch could write its errs into shared_info's bitmaps, as it may
 * on Xen) or the special ones, never the rest of this kernel. Its
 * decrease_reservation and populate_physmap act only on frames of their own
 * (the balloon), as anywhere else they would free or scrub this kernel.
 * grant_table_op's batches write a status into each op: a count past a few
 * is given only with ops that end where an unmapped page starts, and a copy's
 * destination frame is a landing page (elsewhere it would write over this
 * kernel, as it may on Xen).
 *
 * Then: xen_version and a send on the port still work, no event was lost, and
 * a guard area never handed to a hypercall is unchanged. One case, `fuzz`; the
 * counts go on a KIT-FUZZ line (calls, ring3, sends, acks, lost, and the answers:
 * zero, positive, e<errno>). `trace=1` prints each call before it is made, to
 * find the one a failing seed ends on. */
#include "../kit/kit.h"
#include "../common/xen.h"
#include <xen/sched.h>

#define VECTOR0 0xe0
#define VECTOR1 0xe1
#define SCRATCH_PAGES 4
/* Above the identity map: a scratch page with no page after it, and a read-only one. */
#define VA_CROSS 0x100000000ull
#define VA_RO 0x100002000ull

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static uint8_t vcpu_info_page[4096] __attribute__((aligned(4096)));
/* Handed to hypercalls; the page after it absorbs any write that runs past it. */
static uint8_t scratch[SCRATCH_PAGES + 1][4096] __attribute__((aligned(4096)));
static uint8_t cross_page[4096] __attribute__((aligned(4096)));
static uint8_t ro_page[4096] __attribute__((aligned(4096)));
/* Where add_to_physmap puts shared_info: frames of RAM no hypercall is given a pointer into, so
 * that a batch's errs, written once its entries are done, never land in shared_info's event bitmaps. */
#define LANDING_PAGES 2
static uint8_t landing[LANDING_PAGES][4096] __attribute__((aligned(4096)));
/* The only frames decrease_reservation and populate_physmap are given, aligned so that an extent of
 * up to order 4 stays among them. */
#define BALLOON_PAGES 16
static uint8_t balloon[BALLOON_PAGES][4096] __attribute__((aligned(BALLOON_PAGES * 4096)));
/* Never handed to a hypercall: must read the same at the end. */
static uint8_t guard[64 * 1024] __attribute__((aligned(4096)));

static volatile struct shared_info *sh;
static volatile struct vcpu_info *vinfo[2];
static evtchn_port_t check_port;
/* The XenStore ring's page (an overlay; the console's is left alone, or the fuzz would print). */
static uint64_t overlay_va;
static volatile uint32_t acks, sends;
static volatile int stop_sending, lost, sender_ready;
static volatile uint64_t call_index; /* the call vCPU 0 is at, for the report of a lost event */

/* ---- the generator (xorshift64*) ----
 * Its state is in .bss, not .data: on PVM every write to the page holding the kit's GDT traps. */
static uint64_t state;
static uint64_t rnd64(void)
{
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return state * 0x2545f4914f6cdd1dull;
}
static uint64_t rnd(uint64_t n)
{
	return rnd64() % n;
}

/* Frames that mean something here: overlays, the LAPIC's, past RAM, past any guest address. */
static const uint64_t FRAMES[] = { 0xfeffcull, 0xfefffull, 0xfee00ull, 0xfffffull, 1ull << 40, 0xfffffffffull, ~0ull };

static uint64_t pointer(void)
{
	switch (rnd(8)) {
	case 0:
		return XEN_PTR(scratch[rnd(SCRATCH_PAGES)]) + rnd(4096);
	case 1:
		return VA_CROSS + 4096 - 1 - rnd(64); /* a struct here runs into the unmapped page */
	case 2:
		return VA_RO + rnd(4096);
	case 3:
		return overlay_va + rnd(4096);
	case 4:
		return KIT_UNMAPPED_VA + rnd(1 << 20);
	case 5:
		return 0x8000000000000000ull + rnd(4096); /* not canonical */
	case 6:
		return 0;
	default:
		return 0xffff800000000000ull + rnd(1ull << 30);
	}
}

static uint64_t hostile(void)
{
	switch (rnd(14)) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return ~0ull;
	case 3:
		return 0x7fffffff;
	case 4:
		return 0x80000000;
	case 5:
		return 0xffffffff;
	case 6:
		return rnd(4200); /* ports, past the 2-level limit too */
	case 7:
		return rnd(4) | (rnd(4) ? 0 : 0xffff0000); /* vCPU ids */
	case 8:
		return FRAMES[rnd(sizeof FRAMES / sizeof FRAMES[0])];
	case 9:
	case 10:
		return pointer();
	case 11:
		return rnd64();
	case 12:
		return DOMID_SELF | (rnd(2) << 16);
	default:
		return rnd(64);
	}
}

/* A struct of hostile words at a random place in scratch; 8-aligned words may be pointers.
 * Past its 64 bytes lie earlier structs' words. (Kept short: on PVM this guest's own
 * code is emulated, and building arguments would take most of the time.) */
static void *hostile_struct(void)
{
	uint8_t *p = scratch[rnd(SCRATCH_PAGES)] + rnd(4096 - 64);
	p = (uint8_t *)((uintptr_t)p & ~7ull);
	for (int i = 0; i < 64; i += 8) {
		uint64_t v = hostile();
		memcpy(p + i, &v, 8);
	}
	return p;
}

/* ---- the check: vCPU 1 sends, vCPU 0 takes ---- */
static void take_events(int cpu)
{
	volatile struct vcpu_info *vi = vinfo[cpu];
	vi->evtchn_upcall_pending = 0;
	xen_ulong_t sel = __atomic_exchange_n((xen_ulong_t *)&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
	while (sel) {
		unsigned int w = __builtin_ctzll(sel);
		sel &= sel - 1;
		/* vCPU 1 leaves the check's port, which shares a word with others, to vCPU 0. */
		xen_ulong_t check = w == check_port / XEN_EVTCHN_WORD_BITS ? (xen_ulong_t)1 << (check_port % XEN_EVTCHN_WORD_BITS) : 0;
		xen_ulong_t keep = cpu == 0 ? 0 : check;
		xen_ulong_t bits = __atomic_fetch_and((xen_ulong_t *)&sh->evtchn_pending[w], keep, __ATOMIC_SEQ_CST);
		if (cpu == 0 && (bits & check))
			__atomic_add_fetch(&acks, 1, __ATOMIC_SEQ_CST);
	}
}
static void upcall0(struct kit_frame *f)
{
	(void)f;
	take_events(0);
}
static void upcall1(struct kit_frame *f)
{
	(void)f;
	take_events(1);
}

static long register_vcpu_info(int cpu)
{
	struct vcpu_register_vcpu_info info;
	memset(&info, 0, sizeof info);
	info.mfn = XEN_PTR(vcpu_info_page) >> 12;
	info.offset = 0x40 * cpu;
	return HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, cpu, &info);
}

static volatile long ap_rc = 1;
static void ap_main(int cpu)
{
	if (cpu != 1)
		return;
	kit_lapic_enable();
	ap_rc = register_vcpu_info(1) || xen_set_upcall_vector(1, VECTOR1);
	while (!check_port && !stop_sending)
		__asm__ volatile("pause");
	sender_ready = 1;
	__asm__ volatile("sti");
	while (!stop_sending) {
		uint32_t a = acks;
		xen_evtchn_send(check_port);
		__atomic_add_fetch(&sends, 1, __ATOMIC_SEQ_CST);
		if (!KIT_WAIT_FOR(acks != a || stop_sending, 5000)) {
			lost = 1;
			/* At once: vCPU 0 may be left waiting in a poll or block that only this sender's events end. */
			unsigned int w = check_port / XEN_EVTCHN_WORD_BITS, b = check_port % XEN_EVTCHN_WORD_BITS;
			kit_printf("\nKIT-FUZZ-LOST send %u not taken in 5 s; vCPU 0 at call %llu; its upcall_pending %u, pending_sel %llx; the port pending %llu, masked %llu\n",
				   sends, U64(call_index), vinfo[0]->evtchn_upcall_pending, U64(vinfo[0]->evtchn_pending_sel),
				   U64((sh->evtchn_pending[w] >> b) & 1), U64((sh->evtchn_mask[w] >> b) & 1));
			return;
		}
		/* About a send a millisecond: enough to be there throughout, not so many the fuzz is mostly upcalls. */
		for (uint64_t until = rdtsc() + KIT_TSC_PER_MS; rdtsc() < until && !stop_sending;)
			__asm__ volatile("pause");
	}
}

/* ---- one call ---- */
static const unsigned int HYPERCALLS[] = {
	__HYPERVISOR_xen_version, __HYPERVISOR_memory_op, __HYPERVISOR_hvm_op, __HYPERVISOR_vcpu_op, __HYPERVISOR_sched_op,
	__HYPERVISOR_event_channel_op, __HYPERVISOR_console_io, __HYPERVISOR_set_timer_op, __HYPERVISOR_vm_assist,
	__HYPERVISOR_sysctl, __HYPERVISOR_domctl, __HYPERVISOR_platform_op, __HYPERVISOR_dm_op, __HYPERVISOR_hypfs_op,
	__HYPERVISOR_xenpmu_op, __HYPERVISOR_arch_1, __HYPERVISOR_grant_table_op, __HYPERVISOR_physdev_op,
};
/* One past the highest sub-op Xen defines, per hypercall (0: no sub-ops). */
static unsigned int subops(unsigned int nr)
{
	switch (nr) {
	case __HYPERVISOR_xen_version: return 12;
	case __HYPERVISOR_memory_op: return 30;
	case __HYPERVISOR_hvm_op: return 26;
	case __HYPERVISOR_vcpu_op: return 15;
	case __HYPERVISOR_sched_op: return 8;
	case __HYPERVISOR_event_channel_op: return 16;
	case __HYPERVISOR_console_io: return 2;
	case __HYPERVISOR_grant_table_op: return 13;
	default: return 0;
	}
}

static bool is_kernel_frame(uint64_t gfn)
{
	return gfn >= XEN_PTR(kit_image_start) >> 12 && gfn <= (XEN_PTR(kit_image_end) - 1) >> 12;
}

/* A frame for add_to_physmap to put something at: a landing page, or one of FRAMES, never the rest of this kernel. */
static uint64_t target_frame(void)
{
	if (rnd(2))
		return XEN_PTR(landing[rnd(LANDING_PAGES)]) >> 12;
	uint64_t gfn = FRAMES[rnd(sizeof FRAMES / sizeof FRAMES[0])];
	return is_kernel_frame(gfn) ? 1ull << 40 : gfn;
}

/* Whether (nr, op) could undo the check, given the wrong struct. */
static bool needs_taming(unsigned int nr, unsigned int op)
{
	switch (nr) {
	case __HYPERVISOR_sched_op:
		return op == SCHEDOP_shutdown || op == SCHEDOP_shutdown_code || op == SCHEDOP_watchdog || op == SCHEDOP_poll;
	case __HYPERVISOR_hvm_op:
		return op == HVMOP_set_evtchn_upcall_vector || op == HVMOP_set_param;
	case __HYPERVISOR_event_channel_op:
		return op == EVTCHNOP_close || op == EVTCHNOP_bind_vcpu || op == EVTCHNOP_reset || op == EVTCHNOP_init_control;
	default:
		return false;
	}
}

/*
 * Makes the arguments of (nr, op) safe for the check where the op could legitimately undo it:
 * a struct in scratch gets the fields that matter set; anywhere else, whose contents earlier
 * calls may have written, the pointer is made one that faults. `a` is (op, arg, ...), or for
 * vcpu_op (vcpu, arg, ...).
 */
static void tame(unsigned int nr, unsigned int op, uint64_t *a)
{
	if (nr == __HYPERVISOR_vcpu_op) {
		if (op == VCPUOP_down && (uint32_t)a[0] < 2)
			a[0] = 2 + rnd(0xfffffffd);
		return;
	}
	if (nr == __HYPERVISOR_console_io) {
		if (op == CONSOLEIO_write && a[1] > 16)
			a[2] = KIT_UNMAPPED_VA; /* a long write faults on its first piece */
		return;
	}
	if (!needs_taming(nr, op))
		return;
	void *arg = (void *)(uintptr_t)a[1];
	if (a[1] < XEN_PTR(scratch) || a[1] >= XEN_PTR(scratch[SCRATCH_PAGES]) || op == SCHEDOP_shutdown || op == SCHEDOP_shutdown_code) {
		a[1] = KIT_UNMAPPED_VA;
		return;
	}
	switch (nr) {
	case __HYPERVISOR_sched_op:
		if (op == SCHEDOP_watchdog)
			((struct sched_watchdog *)arg)->id = 1 + rnd(3); /* none armed: -EINVAL */
		else { /* poll: woken by the check's events, or at the latest by a timeout in the past or at most 10 ms on */
			uint64_t now = xen_time_now(&vinfo[0]->time) + 1;
			((struct sched_poll *)arg)->timeout = rnd(2) ? rnd64() % now : now + rnd(10000000);
		}
		break;
	case __HYPERVISOR_hvm_op:
		if (op == HVMOP_set_evtchn_upcall_vector)
			((struct xen_hvm_evtchn_upcall_vector *)arg)->vector = (uint8_t)rnd(0x10); /* refused */
		else if (((struct xen_hvm_param *)arg)->index == HVM_PARAM_CALLBACK_IRQ)
			((struct xen_hvm_param *)arg)->domid = 0x7fff; /* no such domain */
		break;
	case __HYPERVISOR_event_channel_op:
		if (op == EVTCHNOP_reset)
			((struct evtchn_reset *)arg)->dom = 0x7fff;
		else if (op == EVTCHNOP_init_control)
			((struct evtchn_init_control *)arg)->vcpu = 2 + (uint32_t)rnd(0xfffffffd);
		else if (*(evtchn_port_t *)arg == check_port) /* close, bind_vcpu */
			*(evtchn_port_t *)arg = check_port + 1;
		break;
	}
}

struct call {
	unsigned int nr;
	uint64_t a[5];
};

/* memory_op's add_to_physmap and its batch, with frames from target_frame(). */
static bool physmap_call(struct call *c, unsigned int op)
{
	if (c->nr != __HYPERVISOR_memory_op || (op != XENMEM_add_to_physmap && op != XENMEM_add_to_physmap_batch))
		return false;
	uint8_t *p = scratch[rnd(SCRATCH_PAGES)];
	if (op == XENMEM_add_to_physmap) {
		struct xen_add_to_physmap *x = (void *)p;
		x->domid = rnd(4) ? DOMID_SELF : (domid_t)hostile();
		x->size = (uint16_t)hostile();
		x->space = rnd(3) ? XENMAPSPACE_shared_info : (unsigned int)hostile();
		x->idx = rnd(3) ? 0 : hostile();
		x->gpfn = target_frame();
	} else {
		struct xen_add_to_physmap_batch *b = (void *)p;
		xen_ulong_t *idxs = (void *)(p + 256);
		xen_pfn_t *gpfns = (void *)(p + 1280);
		b->domid = rnd(4) ? DOMID_SELF : (domid_t)hostile();
		b->space = rnd(3) ? XENMAPSPACE_shared_info : (unsigned int)hostile();
		/* 96 entries fit the arrays; a larger size gets a frame list that faults where it starts. */
		b->size = rnd(2) ? (uint16_t)rnd(97) : (uint16_t)hostile();
		b->u.foreign_domid = (domid_t)hostile();
		for (int i = 0; i < 96; i++) {
			idxs[i] = rnd(3) ? 0 : hostile();
			gpfns[i] = target_frame();
		}
		set_xen_guest_handle(b->idxs, rnd(4) ? idxs : (xen_ulong_t *)(uintptr_t)pointer());
		set_xen_guest_handle(b->gpfns, b->size <= 96 && rnd(4) ? gpfns : (xen_pfn_t *)(uintptr_t)(rnd(2) ? KIT_UNMAPPED_VA : 0x8000000000000000ull));
		set_xen_guest_handle(b->errs, rnd(4) ? (int *)(p + 2048) : (int *)(uintptr_t)pointer());
	}
	c->a[1] = XEN_PTR(p);
	return true;
}

/* memory_op's reservation sub-ops on the balloon's frames: orders up to 4, or past a domU's 9 (refused).
 * The extent list ends where the page-crossing page does, so a count past its 32 entries faults there. */
static bool reservation_call(struct call *c, unsigned int op)
{
	if (c->nr != __HYPERVISOR_memory_op ||
	    (op != XENMEM_increase_reservation && op != XENMEM_decrease_reservation && op != XENMEM_populate_physmap))
		return false;
	struct xen_memory_reservation *r = (void *)scratch[rnd(SCRATCH_PAGES)];
	xen_pfn_t *extents = (xen_pfn_t *)(uintptr_t)(VA_CROSS + 4096 - 32 * sizeof(xen_pfn_t));
	unsigned int order = rnd(8) ? (unsigned int)rnd(5) : 10 + (unsigned int)rnd(64);
	for (int i = 0; i < 32; i++)
		extents[i] = (XEN_PTR(balloon) >> 12) + (order <= 4 ? rnd(BALLOON_PAGES >> order) << order : rnd(BALLOON_PAGES));
	r->nr_extents = rnd(8) ? rnd(33) : hostile();
	r->extent_order = order;
	r->mem_flags = rnd(2) ? 0 : (unsigned int)hostile();
	r->domid = rnd(4) ? DOMID_SELF : (domid_t)hostile();
	set_xen_guest_handle(r->extent_start, rnd(8) ? extents : (xen_pfn_t *)(uintptr_t)KIT_UNMAPPED_VA);
	c->a[1] = XEN_PTR(r);
	return true;
}

/* grant_table_op(cmd, uop, count): ops in scratch, a few of them (a copy's destination frames made
 * landing pages), or any count of ops that end where the page-crossing page's unmapped neighbour
 * starts (no copy or setup_table there: their frames and frame list would come from bytes other calls
 * left), or ops at a pointer that faults. */
static bool grant_call(struct call *c, unsigned int op)
{
	if (c->nr != __HYPERVISOR_grant_table_op)
		return false;
	switch (rnd(4)) {
	case 0:
		if (op != GNTTABOP_copy && op != GNTTABOP_setup_table) {
			c->a[1] = VA_CROSS + 4096 - 8 * (1 + rnd(64));
			c->a[2] = hostile();
			return true;
		}
		/* fall through */
	case 1:
	case 2: {
		uint8_t *p = scratch[rnd(SCRATCH_PAGES)] + rnd(2048);
		p = (uint8_t *)((uintptr_t)p & ~7ull);
		for (int i = 0; i < 128; i += 8) {
			uint64_t v = hostile();
			memcpy(p + i, &v, 8);
		}
		c->a[1] = XEN_PTR(p);
		c->a[2] = rnd(3);
		if (op == GNTTABOP_copy)
			for (int i = 0; i < 2; i++) {
				struct gnttab_copy *g = (struct gnttab_copy *)p + i;
				if (!(g->flags & GNTCOPY_dest_gref))
					g->dest.u.gmfn = XEN_PTR(landing[rnd(LANDING_PAGES)]) >> 12;
			}
		if (op == GNTTABOP_setup_table)
			set_xen_guest_handle(((struct gnttab_setup_table *)p)->frame_list, rnd(2) ? (xen_pfn_t *)(p + 256) : (xen_pfn_t *)(uintptr_t)KIT_UNMAPPED_VA);
		return true;
	}
	default:
		c->a[1] = KIT_UNMAPPED_VA + rnd(4096);
		return true;
	}
}

static void make_call(struct call *c)
{
	unsigned int r = (unsigned int)rnd(32);
	/* Any number the hypercall page has a stub for (128), Xen's 0..63 more often. */
	c->nr = r < 28 ? HYPERCALLS[rnd(sizeof HYPERCALLS / sizeof HYPERCALLS[0])] : (unsigned int)rnd(r < 31 ? 64 : 128);
	unsigned int n = subops(c->nr);
	unsigned int op = n ? (rnd(8) ? (unsigned int)rnd(n + 2) : (unsigned int)rnd64()) : 0;
	for (int i = 0; i < 5; i++)
		c->a[i] = hostile();
	if (!n && rnd(2))
		c->a[0] = XEN_PTR(hostile_struct());
	if (n) {
		c->a[0] = op | (rnd(8) ? 0 : rnd64() << 32);
		/* vcpu_op(cmd, vcpu, arg): the struct is the third argument */
		if (c->nr == __HYPERVISOR_vcpu_op) {
			c->a[1] = rnd(8) ? rnd(3) : hostile();
			c->a[2] = rnd(4) ? XEN_PTR(hostile_struct()) : pointer();
		} else if (c->nr == __HYPERVISOR_console_io) {
			static const char text[] = "xen-fuzz: a console_io write\n";
			c->a[1] = rnd(2) ? rnd(sizeof text) : hostile();
			c->a[2] = rnd(2) ? XEN_PTR(text) : rnd(2) ? KIT_UNMAPPED_VA : pointer();
		} else {
			c->a[1] = rnd(4) ? XEN_PTR(hostile_struct()) : pointer();
		}
		/* memory_op's sub-op is the low 6 bits (above them, a continuation's start). */
		unsigned int served_op = c->nr == __HYPERVISOR_memory_op ? op & 0x3f : op;
		if (!physmap_call(c, served_op) && !reservation_call(c, served_op) && !grant_call(c, served_op))
			tame(c->nr, served_op, c->nr == __HYPERVISOR_vcpu_op ? c->a + 1 : c->a);
	}
}

static struct call user_call;
static uint64_t call_from_user(uint64_t unused)
{
	(void)unused;
	return (uint64_t)xen_hypercall(user_call.nr, user_call.a[0], user_call.a[1], user_call.a[2], user_call.a[3], user_call.a[4]);
}

static uint32_t checksum(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* Results by errno (index -rc, up to 127), 0 and positive values. */
static uint32_t by_errno[128], zero, positive, ring3, ring3_wrong;

static void fuzz_case(void)
{
	uint64_t calls = 20000, seed = 1, trace = 0, user = 1;
	kit_cmdline_u64("calls", &calls);
	kit_cmdline_u64("trace", &trace);
	kit_cmdline_u64("ring3", &user);
	kit_cmdline_u64("seed", &seed);
	state = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < sizeof guard; i++)
		guard[i] = (uint8_t)(rnd64() >> 56);
	uint32_t guard_sum = checksum(guard, sizeof guard);

	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld", rc);
	sh = (volatile struct shared_info *)shinfo_page;
	for (int cpu = 0; cpu < 2; cpu++)
		vinfo[cpu] = (volatile struct vcpu_info *)(vcpu_info_page + 0x40 * cpu);
	uint64_t pfn;
	KIT_CHECK(xen_hvm_get_param(HVM_PARAM_STORE_PFN, &pfn) == 0, "no XenStore page");
	overlay_va = pfn << 12;
	KIT_CHECK(kit_map_page(VA_CROSS, XEN_PTR(cross_page)), "cannot map the page-crossing page");
	KIT_CHECK(kit_map_page_ro(VA_RO, XEN_PTR(ro_page)), "cannot map the read-only page");
	kit_lapic_enable();
	kit_set_irq_handler(VECTOR0, upcall0);
	kit_set_irq_handler(VECTOR1, upcall1);
	KIT_CHECK(register_vcpu_info(0) == 0, "register_vcpu_info(0) failed");
	KIT_CHECK(xen_set_upcall_vector(0, VECTOR0) == 0, "set_evtchn_upcall_vector(0) failed");
	KIT_CHECK(kit_smp_start(ap_main) >= 2, "needs 2 vCPUs (--vcpus 2)");
	KIT_CHECK(KIT_WAIT_FOR(ap_rc != 1, 3000) && ap_rc == 0, "vCPU 1 could not register its vcpu_info and upcall vector");
	evtchn_port_t port;
	KIT_CHECK(xen_evtchn_bind_ipi(0, &port) == 0, "bind_ipi(0) failed");
	check_port = port;
	__asm__ volatile("sti");
	KIT_CHECK(KIT_WAIT_FOR(sender_ready, 3000), "vCPU 1 did not start sending");


	for (uint64_t i = 0; i < calls && !lost; i++) {
		call_index = i;
		struct call c;
		make_call(&c);
		if (user && i % 16 == 15) {
			user_call = c;
			ring3++;
			if ((long)kit_run_user(call_from_user, 0) != -XEN_EPERM)
				ring3_wrong++;
			continue;
		}
		bool physmap = c.nr == __HYPERVISOR_memory_op && ((c.a[0] & 0x3f) == XENMEM_add_to_physmap || (c.a[0] & 0x3f) == XENMEM_add_to_physmap_batch);
		if (physmap)
			__asm__ volatile("cli");
		if (trace)
			kit_printf("call %llu: %u %llx %llx %llx\n", U64(i), c.nr, U64(c.a[0]), U64(c.a[1]), U64(c.a[2]));
		long r = xen_hypercall(c.nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4]);
		if (physmap) {
			long back = xen_map_shared_info(shinfo_page);
			__asm__ volatile("sti");
			KIT_CHECK(back == 0, "call %llu: shared_info could not be mapped back (%ld)", U64(i), back);
		}
		if (r == 0)
			zero++;
		else if (r > 0)
			positive++;
		else
			by_errno[-r < 128 ? -r : 127]++;
	}
	stop_sending = 1;

	long v = HYPERVISOR_xen_version(XENVER_version, NULL);
	uint32_t a = acks;
	long s = xen_evtchn_send(check_port);
	bool taken = KIT_WAIT_FOR(acks != a, 3000);
	kit_printf("\nKIT-FUZZ calls=%llu seed=%llu ring3=%u zero=%u positive=%u sends=%u acks=%u lost=%d", U64(calls), U64(seed), ring3, zero, positive,
		   sends, acks, lost);
	for (int e = 1; e < 128; e++)
		if (by_errno[e])
			kit_printf(" e%d=%u", e, by_errno[e]);
	kit_printf("\n");
	KIT_CHECK(!lost, "an event sent by vCPU 1 was never taken (%u sent)", sends);
	KIT_CHECK(ring3_wrong == 0, "%u of %u ring 3 calls did not get -EPERM", ring3_wrong, ring3);
	KIT_CHECK(v == (long)xen_cpuid.version, "after fuzzing xen_version = %ld", v);
	KIT_CHECK(s == 0 && taken, "after fuzzing a send on the check's port = %ld, taken: %d", s, taken);
	KIT_CHECK(checksum(guard, sizeof guard) == guard_sum, "the guard area changed");
	KIT_CHECK(sends > 0, "vCPU 1 sent nothing");
}

void kit_main(void)
{
	xen_require();
	kit_case("fuzz", fuzz_case);
	kit_finish();
}

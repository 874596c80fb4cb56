/* Event storm between two vCPUs while the guest moves what Xen lets it move:
 * vCPU 0's vcpu_info (VCPUOP_register_vcpu_info) and shared_info itself
 * (XENMAPSPACE_shared_info, twice). Every event must be accounted for.
 * Run with --vcpus 2.
 *
 * Upcalls come through per-vCPU vectors (HVMOP_set_evtchn_upcall_vector,
 * LAPIC, EOI'd by the kit). The handler scans the 2-level bitmaps as a
 * kernel does (clear evtchn_upcall_pending, xchg the selector, pending &
 * ~mask & mine, clear each pending bit atomically, count per port) but finds
 * shared_info and its vcpu_info through pointers the test switches when it
 * moves them.
 *
 * A moved shared_info leaves its old frame a hole (Xen unmaps it), so no one
 * may touch the old frame once the move has begun: the mover (vCPU 0, IF=0)
 * makes sh_seq odd and waits until vCPU 1 is outside its handler; vCPU 1's
 * handler waits while sh_seq is odd, and vCPU 1's sender reads the pending
 * bit of its target port under sh_seq like a seqlock reader. vCPU 0's own
 * vcpu_info is only used by vCPU 0, so registering it only needs IF=0 from
 * the call to the pointer switch; Xen copies the old content there and marks
 * everything pending, so a spurious upcall is fine, a lost event is not. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xe0
#define NCPU 2
#define NPORTS XEN_EVTCHN_2L_PORTS
#define NWORDS XEN_EVTCHN_WORD_BITS
#define STORM 300
#define AT_VCPU_INFO (STORM / 3)
#define AT_MOVE_B (2 * STORM / 3)
#define AT_MOVE_C (2 * STORM / 3 + STORM / 10)
#define VCPU_INFO_OFF 0x140
#define SETTLE_MS 20

/* Frames A, B, C for shared_info; V for vCPU 0's vcpu_info. A and B become
 * holes once shared_info leaves them: never touched afterwards. */
static uint8_t frame_a[4096] __attribute__((aligned(4096)));
static uint8_t frame_b[4096] __attribute__((aligned(4096)));
static uint8_t frame_c[4096] __attribute__((aligned(4096)));
static uint8_t frame_v[4096] __attribute__((aligned(4096)));

static volatile struct shared_info *volatile sh;
static volatile struct vcpu_info *volatile vinfo[NCPU];
static volatile int sh_seq;             /* odd while shared_info moves */
static volatile int in_handler[NCPU];
static volatile uint32_t stalls[NCPU];  /* handler gave up waiting for a move */

static volatile uint32_t got[NCPU][NPORTS];
static volatile uint32_t upcalls[NCPU], empty_upcalls[NCPU];
static volatile xen_ulong_t mine[NCPU][NWORDS];
static int online;
static evtchn_port_t port[NCPU];

/* Full-barrier store (xchg: no mfence needed). */
static inline void store_sc(volatile int *p, int v) { __atomic_exchange_n((int *)p, v, __ATOMIC_SEQ_CST); }
static inline int load_sc(volatile int *p) { return __atomic_load_n((int *)p, __ATOMIC_SEQ_CST); }

/* ---- upcall handler ---- */
static uint32_t scan(int cpu)
{
	/* one read of each pointer: the BSP switches them as it moves things */
	volatile struct shared_info *s = sh;
	volatile struct vcpu_info *vi = vinfo[cpu];
	return s && vi ? xen_evtchn_2l_scan(s, vi, mine[cpu], got[cpu]) : 0;
}

static void on_upcall(struct kit_frame *f)
{
	(void)f;
	int cpu = kit_cpu_index();
	if (cpu >= NCPU)
		return;
	upcalls[cpu]++;
	store_sc(&in_handler[cpu], 1);
	while (load_sc(&sh_seq) & 1) {
		/* shared_info is moving: step aside until it has landed. */
		store_sc(&in_handler[cpu], 0);
		if (!KIT_WAIT_FOR(!(load_sc(&sh_seq) & 1), 2000)) {
			stalls[cpu]++;
			return;
		}
		store_sc(&in_handler[cpu], 1);
	}
	if (!scan(cpu))
		empty_upcalls[cpu]++;
	store_sc(&in_handler[cpu], 0);
}

/* Pending bit of `p` in the current shared_info, read as a seqlock reader. */
static bool pending_now(evtchn_port_t p)
{
	for (;;) {
		int s = load_sc(&sh_seq);
		if (s & 1) {
			cpu_relax();
			continue;
		}
		bool v = xen_evtchn_test(sh->evtchn_pending, p);
		if (load_sc(&sh_seq) == s)
			return v;
	}
}

static long set_own_vector(long cpu)
{
	return xen_set_upcall_vector((uint32_t)cpu, UPCALL_VECTOR);
}

/* ---- moves (vCPU 0, IF=0 throughout) ---- */
struct move {
	const char *what;
	long rc;
	bool quiesced; /* vCPU 1 left its handler in time */
};
static struct move moves[3];
static int nmoves;

static void register_vcpu_info_move(void)
{
	struct move *m = &moves[nmoves++];
	m->what = "vcpu_info";
	m->quiesced = true;
	struct vcpu_register_vcpu_info info;
	memset(&info, 0, sizeof info);
	info.mfn = (uintptr_t)frame_v >> 12;
	info.offset = VCPU_INFO_OFF;
	cli();
	m->rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &info);
	if (m->rc == 0)
		vinfo[0] = (volatile struct vcpu_info *)(frame_v + VCPU_INFO_OFF);
	sti();
}

static void move_shared_info(uint8_t *to, const char *what)
{
	struct move *m = &moves[nmoves++];
	m->what = what;
	cli();
	store_sc(&sh_seq, sh_seq + 1); /* odd */
	m->quiesced = KIT_WAIT_FOR(!load_sc(&in_handler[1]), 2000);
	m->rc = xen_map_shared_info(to);
	if (m->rc == 0) {
		volatile struct shared_info *n = (volatile struct shared_info *)to;
		sh = n;
		vinfo[1] = &n->vcpu_info[1];
		if (vinfo[0] != (volatile struct vcpu_info *)(frame_v + VCPU_INFO_OFF))
			vinfo[0] = &n->vcpu_info[0];
	}
	store_sc(&sh_seq, sh_seq + 1); /* even */
	sti();
}

/* ---- storm ---- */
static volatile uint32_t sent[NCPU];
static volatile long send_err[NCPU];
static volatile int stuck_at[NCPU];

static long storm_side(long cpu)
{
	evtchn_port_t to = port[1 - cpu];
	for (int i = 0; i < STORM; i++) {
		if (cpu == 0) {
			if (i == AT_VCPU_INFO)
				register_vcpu_info_move();
			else if (i == AT_MOVE_B)
				move_shared_info(frame_b, "shared_info->B");
			else if (i == AT_MOVE_C)
				move_shared_info(frame_c, "shared_info->C");
		}
		/* Xen merges a send onto a port still pending: wait for the last one. */
		if (!KIT_WAIT_FOR(!pending_now(to), 2000)) {
			stuck_at[cpu] = i;
			send_err[cpu] = 1;
			break;
		}
		long rc = xen_evtchn_send(to);
		if (rc) {
			stuck_at[cpu] = i;
			send_err[cpu] = rc;
			break;
		}
		sent[1 - cpu]++; /* sent to the other vCPU */
	}
	return 0;
}

/* ---- cases ---- */
static void own(evtchn_port_t p, int cpu)
{
	if (p < NPORTS)
		xen_evtchn_set(mine[cpu], p);
}

static void setup_case(void)
{
	long rc = xen_map_shared_info(frame_a);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info, frame A) = %ld %s", XEN_ERR(rc));
	vinfo[0] = &((volatile struct shared_info *)frame_a)->vcpu_info[0];
	vinfo[1] = &((volatile struct shared_info *)frame_a)->vcpu_info[1];
	sh = (volatile struct shared_info *)frame_a;
	kit_printf("KIT-XEN frames A=0x%lx B=0x%lx C=0x%lx vcpu_info=0x%lx+0x%x\n",
		   (unsigned long)((uintptr_t)frame_a >> 12), (unsigned long)((uintptr_t)frame_b >> 12),
		   (unsigned long)((uintptr_t)frame_c >> 12), (unsigned long)((uintptr_t)frame_v >> 12), VCPU_INFO_OFF);
	online = kit_smp_start(kit_ap_serve_interruptible);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	KIT_CHECK(kit_ap_serving(3000), "vCPU 1 did not get ready");
	rc = set_own_vector(0);
	KIT_CHECK(rc == 0, "set_evtchn_upcall_vector(vcpu 0) = %ld %s", XEN_ERR(rc));
	KIT_CHECK(kit_ap_start(set_own_vector, 1) && kit_ap_wait(3000, &rc), "vCPU 1 did not answer");
	KIT_CHECK(rc == 0, "vCPU 1: set_evtchn_upcall_vector(vcpu 1) = %ld %s", XEN_ERR(rc));
	for (int cpu = 0; cpu < NCPU; cpu++) {
		cli();
		rc = xen_evtchn_bind_ipi((uint32_t)cpu, &port[cpu]);
		if (rc == 0)
			own(port[cpu], cpu);
		sti();
		KIT_CHECK(rc == 0, "bind_ipi(vcpu %d) = %ld %s", cpu, XEN_ERR(rc));
		KIT_CHECK(port[cpu] >= 1 && port[cpu] < NPORTS, "bind_ipi(vcpu %d) gave port %u", cpu, port[cpu]);
	}
	struct evtchn_status st;
	for (int cpu = 0; cpu < NCPU; cpu++) {
		rc = xen_evtchn_status(DOMID_SELF, port[cpu], &st);
		KIT_CHECK(rc == 0 && st.status == EVTCHNSTAT_ipi && st.vcpu == (uint32_t)cpu,
			  "status(%u) = %ld, %s vcpu %u; expected ipi on vcpu %d", port[cpu], rc,
			  xen_evtchn_stat_name(st.status), st.vcpu, cpu);
	}
	kit_printf("KIT-XEN ipi ports %u (vCPU 0), %u (vCPU 1)\n", port[0], port[1]);
}

static bool ready(void) { return online >= 2 && port[0] && port[1]; }

static void storm_case(void)
{
	KIT_CHECK(ready(), "setup failed");
	uint64_t t0 = rdtsc();
	bool started = kit_ap_start(storm_side, 1);
	storm_side(0);
	bool finished = started && kit_ap_wait(20000, NULL);
	/* Wait (bounded) for everything sent to arrive, then a settle time for
	 * duplicates and strays. */
	KIT_WAIT_FOR(got[0][port[0]] >= sent[0] && got[1][port[1]] >= sent[1], 3000);
	uint64_t t1 = rdtsc();
	kit_delay_ms(SETTLE_MS);
	for (int i = 0; i < nmoves; i++)
		kit_printf("KIT-XEN move %s rc=%ld%s\n", moves[i].what, moves[i].rc,
			   moves[i].quiesced ? "" : " (vCPU 1 stayed in its handler)");
	kit_printf("KIT-XEN storm: to vCPU0 sent %u got %u, to vCPU1 sent %u got %u, crossed %u,%u, sender errors vCPU0 %ld@%d vCPU1 %ld@%d, upcalls %u,%u (empty %u,%u), handler stalls %u,%u, %llu Mcycles\n",
		   sent[0], got[0][port[0]], sent[1], got[1][port[1]], got[1][port[0]], got[0][port[1]], send_err[0],
		   stuck_at[0], send_err[1], stuck_at[1], upcalls[0], upcalls[1], empty_upcalls[0], empty_upcalls[1],
		   stalls[0], stalls[1], U64((t1 - t0) / 1000000));
	KIT_CHECK(started && finished, "vCPU 1 did not finish its sends");
	for (int i = 0; i < nmoves; i++)
		KIT_CHECK(moves[i].rc == 0, "move %s = %ld %s", moves[i].what, XEN_ERR(moves[i].rc));
	KIT_CHECK(nmoves == 3, "%d of 3 moves made", nmoves);
	KIT_CHECK(got[0][port[0]] == sent[0] && got[1][port[1]] == sent[1],
		  "vCPU 0 got %u of %u on port %u, vCPU 1 got %u of %u on port %u", got[0][port[0]], sent[0], port[0],
		  got[1][port[1]], sent[1], port[1]);
	KIT_CHECK(got[1][port[0]] == 0 && got[0][port[1]] == 0, "events on the wrong vCPU: %u, %u", got[1][port[0]],
		  got[0][port[1]]);
	KIT_CHECK(stalls[0] == 0 && stalls[1] == 0, "a handler waited >2 s for a move (%u, %u)", stalls[0], stalls[1]);
	KIT_CHECK(send_err[0] == 0 && send_err[1] == 0,
		  "senders stopped: vCPU 1 at %d (%ld), vCPU 0 at %d (%ld) (1: the previous event stayed pending 2 s)",
		  stuck_at[1], send_err[1], stuck_at[0], send_err[0]);
	KIT_CHECK(sent[0] == STORM && sent[1] == STORM, "sent %u and %u of %u", sent[0], sent[1], STORM);
}

static long ap_send(long p) { return xen_evtchn_send((evtchn_port_t)p); }

static void after_moves_case(void)
{
	KIT_CHECK(ready(), "setup failed");
	KIT_CHECK(nmoves == 3 && moves[0].rc == 0 && moves[1].rc == 0 && moves[2].rc == 0, "the moves were not all made");
	KIT_CHECK(sh == (volatile struct shared_info *)frame_c && vinfo[0] == (volatile struct vcpu_info *)(frame_v + VCPU_INFO_OFF),
		  "pointers not switched");
	/* Whatever the storm left behind is settled: start from what arrived. */
	KIT_CHECK(KIT_WAIT_FOR(!xen_evtchn_test(sh->evtchn_pending, port[0]) && !xen_evtchn_test(sh->evtchn_pending, port[1]),
			   1000),
		  "a storm event is still pending in shared_info at C (ports %u: %d, %u: %d)", port[0],
		  xen_evtchn_test(sh->evtchn_pending, port[0]), port[1], xen_evtchn_test(sh->evtchn_pending, port[1]));
	uint32_t g0 = got[0][port[0]], g1 = got[1][port[1]], u0 = upcalls[0], u1 = upcalls[1];
	long rc = xen_evtchn_send(port[1]);
	KIT_CHECK(rc == 0, "send(%u) to vCPU 1 = %ld %s", port[1], XEN_ERR(rc));
	bool a1 = KIT_WAIT_FOR(got[1][port[1]] > g1, 1000);
	long r = 0;
	KIT_CHECK(kit_ap_start(ap_send, port[0]) && kit_ap_wait(3000, &r), "vCPU 1 did not answer");
	KIT_CHECK(r == 0, "vCPU 1: send(%u) to vCPU 0 = %ld %s", port[0], XEN_ERR(r));
	bool a0 = KIT_WAIT_FOR(got[0][port[0]] > g0, 1000);
	kit_delay_ms(SETTLE_MS);
	kit_printf("KIT-XEN after moves: vCPU 0 got %u (upcalls +%u), vCPU 1 got %u (upcalls +%u)\n", got[0][port[0]] - g0,
		   upcalls[0] - u0, got[1][port[1]] - g1, upcalls[1] - u1);
	KIT_CHECK(a1, "vCPU 0 -> vCPU 1: not delivered (pending at C %d, sel 0x%llx, upcall_pending %u in C's vcpu_info[1])",
		  xen_evtchn_test(sh->evtchn_pending, port[1]), U64(vinfo[1]->evtchn_pending_sel),
		  vinfo[1]->evtchn_upcall_pending);
	KIT_CHECK(a0,
		  "vCPU 1 -> vCPU 0: not delivered (pending at C %d; registered vcpu_info sel 0x%llx upcall_pending %u; C's vcpu_info[0] sel 0x%llx upcall_pending %u)",
		  xen_evtchn_test(sh->evtchn_pending, port[0]), U64(vinfo[0]->evtchn_pending_sel),
		  vinfo[0]->evtchn_upcall_pending, U64(sh->vcpu_info[0].evtchn_pending_sel),
		  sh->vcpu_info[0].evtchn_upcall_pending);
	KIT_CHECK(got[0][port[0]] == g0 + 1 && got[1][port[1]] == g1 + 1, "counts +%u, +%u; expected +1 each",
		  got[0][port[0]] - g0, got[1][port[1]] - g1);
	KIT_CHECK(got[1][port[0]] == 0 && got[0][port[1]] == 0, "events on the wrong vCPU: %u, %u", got[1][port[0]],
		  got[0][port[1]]);
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	kit_case("setup", setup_case);
	sti();
	kit_case("storm", storm_case);
	kit_case("after-moves", after_moves_case);
	cli();
}

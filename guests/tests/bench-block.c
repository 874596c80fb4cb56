/* PV block benchmark, guest of bench/block.ts: the kit's frontend on xvda
 * (one queue, a one-page ring of 32 slots, persistent grants) keeps 32
 * requests in flight, refilling slots as responses come, and halts while none
 * is waiting until the backend's notification comes as an upcall on its
 * vector (HVMOP_set_evtchn_upcall_vector), as Linux's blkfront waits for its
 * interrupt; a periodic LAPIC timer ends a halt every few seconds, so that the
 * run stops when the backend stays silent.
 * Three phases, each timed with the pvclock:
 *   rand= 4 KiB reads at 4 KiB-aligned offsets over the whole disk, drawn
 *         from an LCG that the host floor (bench/block-floor.c) repeats;
 *   seq=  1 MiB writes, then seq= 1 MiB reads, from sector 0 on, wrapping at
 *         the disk's end, each an indirect request of 256 one-page segments.
 * Each slot has its own 1 MiB of pages and its own indirect page, granted
 * once and reused by every request. Before the timed phases, untimed:
 * warmup= 4 KiB reads and 64 1 MiB reads, so that the backend's code is
 * compiled. Defaults: rand=10000 seq=256 warmup=2000; gfn= the grant table's
 * place (default 0xf0000). Any response that is not OKAY or answers no
 * request in flight, or none for 60 s, stops the run (kit_abort).
 * Prints `KIT-BENCH block rand4k-ops=<n> rand4k-ns=<t> seqw-bytes=<b>
 * seqw-ns=<t> seqr-bytes=<b> seqr-ns=<t>`. */
#include "../kit/kit.h"
#include "../common/xenstore.h"

#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>

#define XVDA 51712
#define DEPTH 32 /* all a one-page ring of the native ABI holds */
#define SEQ_PAGES 256 /* 1 MiB a request, one segment a page */
#define SEQ_SECTORS (SEQ_PAGES * 8)
#define REF_RING 8
#define REF_INDIRECT 16 /* slot s's indirect page: REF_INDIRECT + s */
#define REF_DATA (REF_INDIRECT + DEPTH) /* slot s's page p: REF_DATA + s * SEQ_PAGES + p */
#define REFS (REF_DATA + DEPTH * SEQ_PAGES)
#define GRANT_FRAMES ((REFS * sizeof(grant_entry_v1_t) + 4095) / 4096)
#define NS_PER_S 1000000000ull
#define WARMUP_SEQ 64
#define WAIT_S 60 /* the longest wait for a response before the run stops */
#define UPCALL_VECTOR 0xe0 /* the event channel's upcall (HVMOP_set_evtchn_upcall_vector) */
#define TICK_VECTOR 0xe1 /* a periodic LAPIC timer that ends a halt now and then, to see the deadline pass */

static uint8_t ring_page[4096] __attribute__((aligned(4096)));
static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static struct blkif_request_segment indirect[DEPTH][4096 / sizeof(struct blkif_request_segment)] __attribute__((aligned(4096)));
static uint8_t data[DEPTH][SEQ_PAGES][4096] __attribute__((aligned(4096)));

static volatile struct shared_info *sh;
static volatile grant_entry_v1_t *table;
static blkif_front_ring_t ring;
static evtchn_port_t port;
static uint64_t sectors;
static struct xs_reply r;

enum phase { RAND_READ, SEQ_WRITE, SEQ_READ };
static const char *const phase_name[] = { "4 KiB random reads", "1 MiB writes", "1 MiB reads" };

static KIT_NORETURN KIT_PRINTF(1, 2) void stop(const char *fmt, ...)
{
	static char why[160];
	va_list ap;
	va_start(ap, fmt);
	kit_vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	kit_abort(why);
}

static uint64_t now(void) { return xen_time_now(&sh->vcpu_info[0].time); }

static void grant(grant_ref_t ref, void *page)
{
	xen_grant_v1(&table[ref], 0, (uint32_t)((uintptr_t)page >> 12), GTF_permit_access);
}

static void node_write(const char *key, const char *value)
{
	char path[64];
	kit_snprintf(path, sizeof path, "device/vbd/%d/%s", XVDA, key);
	if (!xs_write(0, path, value, &r))
		stop("write %s: %s", path, r.data);
}

/* The upcall: the channel's event taken (the kit sends the EOI). */
static void on_upcall(struct kit_frame *f)
{
	(void)f;
	xen_upcall_take_port(sh, 0, port);
}

static void on_tick(struct kit_frame *f)
{
	(void)f;
}

/* The handshake, as blkfront's: the ring and channel published, persistent grants asked for. */
static void connect(uint64_t gfn)
{
	if (xen_map_shared_info(shinfo_page) != 0)
		stop("map shared_info");
	sh = (volatile struct shared_info *)shinfo_page;
	for (unsigned int i = 0; i < GRANT_FRAMES; i++)
		if (xen_add_to_physmap(XENMAPSPACE_grant_table, i, gfn + i) != 0)
			stop("map grant-table frame %u", i);
	table = kit_phys(gfn << 12);
	if (xs_init() != 0)
		stop("no XenStore");
	char back[96], path[128], value[32];
	kit_snprintf(back, sizeof back, "/local/domain/0/backend/vbd/%ld/%d", xen_own_domid(), XVDA);
	kit_snprintf(path, sizeof path, "%s/sectors", back);
	if (!xs_read(0, path, &r) || !kit_parse_u64(r.data, &sectors) || sectors < SEQ_SECTORS)
		stop("xvda: sectors %s, at least %d wanted", r.data, SEQ_SECTORS);
	kit_snprintf(path, sizeof path, "%s/state", back);
	if (!xs_wait_for(path, "2", 5000, &r))
		stop("xvda's backend is not in InitWait (state %s)", r.data);

	blkif_sring_t *s = (blkif_sring_t *)ring_page;
	SHARED_RING_INIT(s);
	FRONT_RING_INIT(&ring, s, 4096);
	grant(REF_RING, ring_page);
	for (int slot = 0; slot < DEPTH; slot++) {
		grant(REF_INDIRECT + slot, indirect[slot]);
		for (int p = 0; p < SEQ_PAGES; p++) {
			grant(REF_DATA + slot * SEQ_PAGES + p, data[slot][p]);
			indirect[slot][p] = (struct blkif_request_segment){ .gref = REF_DATA + slot * SEQ_PAGES + p, .first_sect = 0, .last_sect = 7 };
		}
	}
	if (xen_evtchn_alloc_unbound(DOMID_SELF, 0, &port) != 0)
		stop("alloc_unbound");
	kit_set_irq_handler(UPCALL_VECTOR, on_upcall);
	kit_set_irq_handler(TICK_VECTOR, on_tick);
	kit_lapic_enable();
	if (xen_set_upcall_vector(0, UPCALL_VECTOR) != 0)
		stop("set the upcall vector");
	xen_evtchn_clear(sh->evtchn_mask, port);
	kit_lapic_timer_periodic(TICK_VECTOR, 0xffffffffu);

	kit_snprintf(value, sizeof value, "%u", REF_RING);
	node_write("ring-ref", value);
	kit_snprintf(value, sizeof value, "%u", port);
	node_write("event-channel", value);
	node_write("protocol", XEN_IO_PROTO_ABI_X86_64);
	node_write("feature-persistent", "1");
	node_write("state", "3");
	if (!xs_wait_for(path, "4", 20000, &r))
		stop("xvda's backend is not Connected (state %s)", r.data);
}

/* The phase's i-th request into `req`, for `slot`'s pages; `lcg` the random reads' generator. */
static void fill(blkif_request_t *req, enum phase ph, int slot, uint64_t i, uint64_t *lcg)
{
	memset(req, 0, sizeof *req);
	if (ph == RAND_READ) {
		/* Knuth's MMIX LCG; the floor draws the same offsets in the same order. */
		*lcg = *lcg * 6364136223846793005ull + 1442695040888963407ull;
		req->operation = BLKIF_OP_READ;
		req->nr_segments = 1;
		req->id = slot;
		req->sector_number = (*lcg >> 16) % (sectors / 8) * 8;
		req->seg[0] = (struct blkif_request_segment){ .gref = REF_DATA + slot * SEQ_PAGES, .first_sect = 0, .last_sect = 7 };
		return;
	}
	blkif_request_indirect_t *ind = (blkif_request_indirect_t *)req;
	ind->operation = BLKIF_OP_INDIRECT;
	ind->indirect_op = ph == SEQ_WRITE ? BLKIF_OP_WRITE : BLKIF_OP_READ;
	ind->nr_segments = SEQ_PAGES;
	ind->id = slot;
	ind->sector_number = i * SEQ_SECTORS % (sectors - sectors % SEQ_SECTORS);
	ind->indirect_grefs[0] = REF_INDIRECT + slot;
}

/* Returns once a response is waiting, halted until the backend's notification comes as an upcall. */
static void wait_for_responses(enum phase ph)
{
	uint64_t deadline = now() + WAIT_S * NS_PER_S;
	for (;;) {
		/* Checked with interrupts off: an upcall after the check ends the halt rather than coming before it. */
		cli();
		int more;
		RING_FINAL_CHECK_FOR_RESPONSES(&ring, more);
		if (more)
			return;
		if (now() >= deadline)
			stop("%s: no response for %d s (%u requests unanswered)", phase_name[ph], WAIT_S, ring.req_prod_pvt - ring.rsp_cons);
		sti_hlt();
	}
}

/* `ops` requests of the phase, DEPTH in flight: nanoseconds from the first push to the last response. */
static uint64_t run(enum phase ph, uint64_t ops)
{
	uint8_t answered_as = ph == SEQ_WRITE ? BLKIF_OP_WRITE : BLKIF_OP_READ;
	int free_slots[DEPTH], nfree = 0;
	bool busy[DEPTH] = { false };
	for (int slot = DEPTH - 1; slot >= 0; slot--)
		free_slots[nfree++] = slot;
	uint64_t issued = 0, done = 0, lcg = 1;
	uint64_t t0 = now();
	while (done < ops) {
		for (; nfree > 0 && issued < ops; issued++) {
			int slot = free_slots[--nfree];
			busy[slot] = true;
			fill(RING_GET_REQUEST(&ring, ring.req_prod_pvt), ph, slot, issued, &lcg);
			ring.req_prod_pvt++;
		}
		int notify;
		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&ring, notify);
		if (notify && xen_evtchn_send(port) != 0)
			stop("send on port %u", port);
		wait_for_responses(ph);
		RING_IDX prod = ring.sring->rsp_prod;
		xen_rmb(); /* the responses up to prod are complete */
		for (; ring.rsp_cons != prod; ring.rsp_cons++, done++) {
			blkif_response_t rsp = *RING_GET_RESPONSE(&ring, ring.rsp_cons);
			if (rsp.id >= DEPTH || !busy[rsp.id])
				stop("%s: a response with id %llu, no request in flight", phase_name[ph], (unsigned long long)rsp.id);
			if (rsp.operation != answered_as || rsp.status != BLKIF_RSP_OKAY)
				stop("%s: response %llu: operation %u status %d", phase_name[ph], (unsigned long long)done, rsp.operation, rsp.status);
			busy[rsp.id] = false;
			free_slots[nfree++] = (int)rsp.id;
		}
	}
	return now() - t0;
}

void kit_main(void)
{
	uint64_t rand = 10000, seq = 256, warmup = 2000, gfn = 0xf0000;
	kit_cmdline_u64("rand", &rand);
	kit_cmdline_u64("seq", &seq);
	kit_cmdline_u64("warmup", &warmup);
	kit_cmdline_u64("gfn", &gfn);
	xen_require();
	connect(gfn);
	run(RAND_READ, warmup);
	run(SEQ_READ, WARMUP_SEQ);
	uint64_t rand_ns = run(RAND_READ, rand);
	uint64_t seqw_ns = run(SEQ_WRITE, seq);
	uint64_t seqr_ns = run(SEQ_READ, seq);
	unsigned long long seq_bytes = seq * SEQ_PAGES * 4096;
	kit_printf("KIT-BENCH block rand4k-ops=%llu rand4k-ns=%llu seqw-bytes=%llu seqw-ns=%llu seqr-bytes=%llu seqr-ns=%llu\n", (unsigned long long)rand,
		   (unsigned long long)rand_ns, seq_bytes, (unsigned long long)seqw_ns, seq_bytes, (unsigned long long)seqr_ns);
	kit_poweroff();
}

/* A PV block frontend, as Linux's blkfront and Mini-OS's talk to a backend
 * (native layout, polling for responses): the disk xvda (devid 51712) the host
 * gives with --disk, filled by the host with pattern(sector, byte), connected
 * with 2 queues of 2-page rings (multi-queue-num-queues, ring-page-order);
 * xvdb a read-only one, connected the old way (one ring-ref, no queues). A
 * response must carry its request's id and operation (an indirect request's
 * indirect_op), as blkfront checks. The host test checks the image after the run.
 * cmdline: sectors=<n> (xvda's size in 512-byte sectors, required),
 * gfn-high=<gfn> (default 0xf0000: where the grant table's frame goes),
 * discard-zeroes=0 (discarded sectors need not read back as zeros: blkif
 * leaves them undefined, and a qcow2 image keeps a part of a cluster),
 * large-sectors=1 (xvdc, devid 51744, is a disk of 4096-byte logical
 * sectors, filled by the host with the same pattern: run sector4k).
 * Cases: probe (the backend's nodes), connect (rings and channels published,
 * Connected), read (host's pattern read back, 11 segments, partial pages),
 * write (the guest's pattern at sectors 64..), flush, discard (sectors 256..263
 * read as zeros after, unless discard-zeroes=0), indirect (32 pages in one request, where offered),
 * queues (8 writes at sectors 1024.. in flight on queue 1 while 8 reads are on
 * queue 0, then read back), errors (a ref not granted, sectors past the end, a
 * segment past its page, an unknown operation: BLKIF_RSP_ERROR or EOPNOTSUPP),
 * readonly (xvdb: reads work, writes BLKIF_RSP_ERROR), close (Closed, every
 * grant let go), sector4k (xvdc: sector-size 4096; whole 4 KiB sectors read
 * and written at sector 16, anything not aligned to them BLKIF_RSP_ERROR). */
#include "../kit/kit.h"
#include "../common/xenstore.h"

#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>

#define XVDA 51712
#define XVDB 51728
#define XVDC 51744
#define DATA_PAGES 40
#define MAX_QUEUES 2
#define XVDA_QUEUES 2
#define XVDA_RING_ORDER 1
#define RING_PAGES (XVDA_QUEUES << XVDA_RING_ORDER)
#define REF_RING 8 /* xvda's ring pages, then xvdb's */
#define REF_INDIRECT (REF_RING + RING_PAGES + 1)
#define REF_RING_XVDC (REF_INDIRECT + 1)
#define REF_DATA 16

static uint64_t gfn_high = 0xf0000;
static uint64_t sectors;
static uint64_t discard_zeroes = 1;
static uint64_t large_sectors;
static long domid;
static struct xs_reply r;

static uint8_t ring_page[RING_PAGES + 2][4096] __attribute__((aligned(4096)));
static uint8_t indirect_page[4096] __attribute__((aligned(4096)));
static uint8_t data[DATA_PAGES][4096] __attribute__((aligned(4096)));

#define GFN(p) ((uint32_t)((uintptr_t)(p) >> 12))

static uint8_t pattern(uint64_t sector, unsigned int byte) { return (uint8_t)(sector * 7 + byte * 13 + 1); }
static uint8_t guest_pattern(uint64_t sector, unsigned int byte) { return (uint8_t)(sector * 3 + byte * 5 + 0x40); }

static volatile grant_entry_v1_t *table(void) { return kit_phys(gfn_high << 12); }

static void grant(grant_ref_t ref, void *page, bool readonly)
{
	xen_grant_v1(&table()[ref], 0, GFN(page), GTF_permit_access | (readonly ? GTF_readonly : 0));
}

static bool ungrant(grant_ref_t ref) { return xen_ungrant_v1(&table()[ref]); }

/* ---- one device's connection ---- */
struct queue {
	blkif_front_ring_t ring;
	evtchn_port_t port;
	uint64_t next_id;
	uint8_t answer_op[64]; /* the operation each request in flight must be answered with, by id */
};
struct vbd {
	int devid, queues, order;
	char front[48], back[96];
	grant_ref_t ring_ref; /* the first of queues << order */
	struct queue q[MAX_QUEUES];
};
static struct vbd xvda = { .devid = XVDA, .queues = XVDA_QUEUES, .order = XVDA_RING_ORDER, .ring_ref = REF_RING };
static struct vbd xvdb = { .devid = XVDB, .queues = 1, .ring_ref = REF_RING + RING_PAGES };
static struct vbd xvdc = { .devid = XVDC, .queues = 1, .ring_ref = REF_RING_XVDC };

/* Publishes a queue's rings and channel in `dir` (the device's, or its queue-N). */
static const char *queue_publish(struct vbd *v, int q, const char *dir, uint8_t (*ring_mem)[4096])
{
	unsigned int pages = 1u << v->order;
	char key[16], value[32];
	memset(ring_mem, 0, pages * 4096);
	blkif_sring_t *s = (void *)ring_mem;
	SHARED_RING_INIT(s);
	FRONT_RING_INIT(&v->q[q].ring, s, pages * 4096);
	for (unsigned int i = 0; i < pages; i++) {
		grant_ref_t ref = v->ring_ref + q * pages + i;
		grant(ref, ring_mem[i], false);
		if (v->order)
			kit_snprintf(key, sizeof key, "ring-ref%u", i);
		else
			kit_snprintf(key, sizeof key, "ring-ref");
		kit_snprintf(value, sizeof value, "%u", ref);
		if (!xs_node_write(dir, key, value, &r))
			return "write ring-ref";
	}
	if (xen_evtchn_alloc_unbound(DOMID_SELF, 0, &v->q[q].port) != 0)
		return "alloc_unbound";
	kit_snprintf(value, sizeof value, "%u", v->q[q].port);
	return xs_node_write(dir, "event-channel", value, &r) ? 0 : "write event-channel";
}

static const char *vbd_connect(struct vbd *v, uint8_t (*ring_mem)[4096])
{
	kit_snprintf(v->front, sizeof v->front, "device/vbd/%d", v->devid);
	kit_snprintf(v->back, sizeof v->back, "/local/domain/0/backend/vbd/%ld/%d", domid, v->devid);
	char path[128], value[32];
	kit_snprintf(path, sizeof path, "%s/state", v->back);
	if (!xs_wait_for(path, "2", 5000, &r))
		return "backend not in InitWait";
	if (v->order) {
		kit_snprintf(value, sizeof value, "%d", v->order);
		if (!xs_node_write(v->front, "ring-page-order", value, &r))
			return "write ring-page-order";
	}
	if (v->queues > 1) {
		kit_snprintf(value, sizeof value, "%d", v->queues);
		if (!xs_node_write(v->front, "multi-queue-num-queues", value, &r))
			return "write multi-queue-num-queues";
	}
	for (int q = 0; q < v->queues; q++) {
		char dir[64];
		if (v->queues > 1)
			kit_snprintf(dir, sizeof dir, "%s/queue-%d", v->front, q);
		else
			kit_snprintf(dir, sizeof dir, "%s", v->front);
		const char *why = queue_publish(v, q, dir, ring_mem + (q << v->order));
		if (why)
			return why;
	}
	if (!xs_node_write(v->front, "protocol", XEN_IO_PROTO_ABI_X86_64, &r))
		return "write protocol";
	if (!xs_node_write(v->front, "state", "3", &r))
		return "write state";
	if (!xs_wait_for(path, "4", 20000, &r))
		return "backend not Connected";
	return 0;
}

/* Pushes a request built by `fill` onto queue `q` and notifies the backend if it asks; its id. */
static uint64_t push(struct queue *q, void (*fill)(blkif_request_t *, void *), void *arg)
{
	blkif_request_t *req = RING_GET_REQUEST(&q->ring, q->ring.req_prod_pvt);
	memset(req, 0, sizeof *req);
	fill(req, arg);
	/* Kept here: once pushed, the slot is the backend's, and its response may overwrite it at once. */
	uint64_t id = ++q->next_id;
	req->id = id;
	q->answer_op[id % 64] = req->operation == BLKIF_OP_INDIRECT ? ((blkif_request_indirect_t *)req)->indirect_op : req->operation;
	q->ring.req_prod_pvt++;
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&q->ring, notify);
	if (notify)
		xen_evtchn_send(q->port);
	return id;
}

/* Takes queue `q`'s next response, waiting up to 20 s: false on a timeout. Its id is checked
 * to be `first` or one of the `count - 1` after it, and its operation the request's. */
static bool pop(struct queue *q, uint64_t first, int count, blkif_response_t *out)
{
	if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&q->ring), 20000))
		return false;
	*out = *RING_GET_RESPONSE(&q->ring, q->ring.rsp_cons);
	q->ring.rsp_cons++;
	if (out->id < first || out->id >= first + count)
		kit_fail("response id %llu, expected %llu..%llu", (unsigned long long)out->id, (unsigned long long)first, (unsigned long long)(first + count - 1));
	else if (out->operation != q->answer_op[out->id % 64])
		kit_fail("response %llu: operation %u, expected %u", (unsigned long long)out->id, out->operation, q->answer_op[out->id % 64]);
	return true;
}

/* One request on the device's first queue: its response's status, or 99 on a timeout. */
static int16_t request(struct vbd *v, void (*fill)(blkif_request_t *, void *), void *arg)
{
	blkif_response_t rsp;
	uint64_t id = push(&v->q[0], fill, arg);
	return pop(&v->q[0], id, 1, &rsp) ? rsp.status : 99;
}

struct rw {
	uint8_t op;
	uint64_t sector;
	int segs;
	uint8_t first, last;
	grant_ref_t ref0;
};
static void fill_rw(blkif_request_t *req, void *arg)
{
	struct rw *a = arg;
	req->operation = a->op;
	req->nr_segments = (uint8_t)a->segs;
	req->handle = 0;
	req->sector_number = a->sector;
	for (int i = 0; i < a->segs; i++) {
		req->seg[i].gref = a->ref0 + i;
		req->seg[i].first_sect = a->first;
		req->seg[i].last_sect = a->last;
	}
}

static int16_t rw(struct vbd *v, uint8_t op, uint64_t sector, int segs, uint8_t first, uint8_t last, bool readonly_grant)
{
	for (int i = 0; i < segs; i++)
		grant(REF_DATA + i, data[i], readonly_grant);
	struct rw a = { op, sector, segs, first, last, REF_DATA };
	int16_t st = request(v, fill_rw, &a);
	for (int i = 0; i < segs; i++)
		if (!ungrant(REF_DATA + i))
			return 97;
	return st;
}

#define EXPECT_STATUS(expr, want, what)                                                                      \
	do {                                                                                                   \
		int16_t st_ = (expr);                                                                          \
		KIT_CHECK(st_ == (want), "%s: status %d, expected %d", what, st_, (want));                     \
	} while (0)

static void probe_case(void)
{
	XEN_EXPECT_RC(xs_init(), 0, "store params");
	char back[96];
	kit_snprintf(back, sizeof back, "/local/domain/0/backend/vbd/%ld/%d", domid, XVDA);
	KIT_CHECK(xs_node_read("device/vbd/51712", "backend", &r) && !strcmp(r.data, back), "device/vbd/51712/backend: %s", r.data);
	KIT_CHECK(xs_node_read("device/vbd/51712", "virtual-device", &r) && !strcmp(r.data, "51712"), "virtual-device %s", r.data);
	char want[32];
	kit_snprintf(want, sizeof want, "%llu", (unsigned long long)sectors);
	KIT_CHECK(xs_node_read(back, "sectors", &r) && !strcmp(r.data, want), "sectors %s, expected %s", r.data, want);
	KIT_CHECK(xs_node_read(back, "sector-size", &r) && !strcmp(r.data, "512"), "sector-size %s", r.data);
	KIT_CHECK(xs_node_read(back, "info", &r) && !strcmp(r.data, "0"), "info %s", r.data);
	KIT_CHECK(xs_node_read(back, "feature-flush-cache", &r) && !strcmp(r.data, "1"), "feature-flush-cache %s", r.data);
	KIT_CHECK(xs_node_read(back, "feature-discard", &r) && !strcmp(r.data, "1"), "feature-discard %s", r.data);
	KIT_CHECK(xs_node_read(back, "mode", &r) && !strcmp(r.data, "w"), "mode %s", r.data);
	KIT_CHECK(xs_node_read("/local/domain/0/backend/vbd/1/51728", "info", &r) && !strcmp(r.data, "4"), "xvdb info %s (VDISK_READONLY)", r.data);
}

static void connect_case(void)
{
	if (xen_add_to_physmap(XENMAPSPACE_grant_table, 0, gfn_high) != 0) {
		kit_fail("add_to_physmap(grant table)");
		return;
	}
	const char *why = vbd_connect(&xvda, ring_page);
	KIT_CHECK(!why, "xvda: %s", why);
	for (int i = 0; i < RING_PAGES; i++)
		KIT_CHECK(table()[REF_RING + i].flags == (GTF_permit_access | GTF_reading | GTF_writing), "ring entry %d flags 0x%x", REF_RING + i, table()[REF_RING + i].flags);
}

static void read_case(void)
{
	KIT_CHECK(xvda.q[0].port, "not connected");
	memset(data, 0, sizeof data);
	/* 11 segments of sectors 2..5 of their pages: 44 sectors from sector 10. */
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 10, 11, 2, 5, false), BLKIF_RSP_OKAY, "read 11 segments");
	for (int p = 0; p < 11; p++)
		for (unsigned int b = 0; b < 4096; b++) {
			bool inside = b >= 2 * 512 && b < 6 * 512;
			uint64_t sector = 10 + p * 4 + (b - 2 * 512) / 512;
			uint8_t want = inside ? pattern(sector, b % 512) : 0;
			KIT_CHECK(data[p][b] == want, "page %d byte %u: 0x%x, expected 0x%x", p, b, data[p][b], want);
		}
}

static void write_case(void)
{
	KIT_CHECK(xvda.q[0].port, "not connected");
	for (int p = 0; p < 8; p++)
		for (unsigned int b = 0; b < 4096; b++)
			data[p][b] = guest_pattern(64 + p * 8 + b / 512, b % 512);
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_WRITE, 64, 8, 0, 7, true), BLKIF_RSP_OKAY, "write 8 pages from read-only grants");
	memset(data, 0, sizeof data);
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 64, 8, 0, 7, false), BLKIF_RSP_OKAY, "read them back");
	for (int p = 0; p < 8; p++)
		for (unsigned int b = 0; b < 4096; b++)
			KIT_CHECK(data[p][b] == guest_pattern(64 + p * 8 + b / 512, b % 512), "read back page %d byte %u", p, b);
}

static void flush_case(void)
{
	KIT_CHECK(xvda.q[0].port, "not connected");
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_FLUSH_DISKCACHE, 0, 0, 0, 0, false), BLKIF_RSP_OKAY, "flush");
	for (unsigned int b = 0; b < 4096; b++)
		data[0][b] = guest_pattern(200 + b / 512, b % 512);
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_WRITE_BARRIER, 200, 1, 0, 7, true), BLKIF_RSP_OKAY, "barrier write of a page");
}

static void fill_discard(blkif_request_t *req, void *arg)
{
	blkif_request_discard_t *d = (blkif_request_discard_t *)req;
	d->operation = BLKIF_OP_DISCARD;
	d->sector_number = 256;
	d->nr_sectors = *(uint64_t *)arg;
}

static void discard_case(void)
{
	KIT_CHECK(xvda.q[0].port, "not connected");
	uint64_t n = 8;
	EXPECT_STATUS(request(&xvda, fill_discard, &n), BLKIF_RSP_OKAY, "discard 8 sectors at 256");
	memset(data, 0xee, 4096);
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 256, 1, 0, 7, false), BLKIF_RSP_OKAY, "read the discarded sectors");
	for (unsigned int b = 0; b < 4096 && discard_zeroes; b++)
		KIT_CHECK(data[0][b] == 0, "discarded byte %u is 0x%x", b, data[0][b]);
	n = sectors;
	EXPECT_STATUS(request(&xvda, fill_discard, &n), BLKIF_RSP_ERROR, "discard past the end");
}

static void fill_indirect(blkif_request_t *req, void *arg)
{
	blkif_request_indirect_t *ind = (blkif_request_indirect_t *)req;
	ind->operation = BLKIF_OP_INDIRECT;
	ind->indirect_op = *(uint8_t *)arg;
	ind->nr_segments = 32;
	ind->sector_number = 512;
	ind->indirect_grefs[0] = REF_INDIRECT;
}

static void indirect_case(void)
{
	KIT_CHECK(xvda.q[0].port, "not connected");
	KIT_CHECK(xs_node_read(xvda.back, "feature-max-indirect-segments", &r), "no feature-max-indirect-segments");
	struct blkif_request_segment *segs = (void *)indirect_page;
	for (int i = 0; i < 32; i++) {
		segs[i] = (struct blkif_request_segment){ .gref = REF_DATA + i, .first_sect = 0, .last_sect = 7 };
		for (unsigned int b = 0; b < 4096; b++)
			data[i][b] = guest_pattern(512 + i * 8 + b / 512, b % 512);
	}
	grant(REF_INDIRECT, indirect_page, true);
	for (int i = 0; i < 32; i++)
		grant(REF_DATA + i, data[i], false);
	uint8_t op = BLKIF_OP_WRITE;
	EXPECT_STATUS(request(&xvda, fill_indirect, &op), BLKIF_RSP_OKAY, "indirect write of 32 pages");
	memset(data, 0, sizeof data);
	op = BLKIF_OP_READ;
	EXPECT_STATUS(request(&xvda, fill_indirect, &op), BLKIF_RSP_OKAY, "indirect read of 32 pages");
	for (int i = 0; i < 32; i++) {
		KIT_CHECK(ungrant(REF_DATA + i), "page %d still in use", i);
		for (unsigned int b = 0; b < 4096; b++)
			KIT_CHECK(data[i][b] == guest_pattern(512 + i * 8 + b / 512, b % 512), "indirect page %d byte %u", i, b);
	}
	KIT_CHECK(ungrant(REF_INDIRECT), "indirect page still in use");
}

static void queues_case(void)
{
	KIT_CHECK(xvda.q[1].port, "not connected");
	struct rw writes[8], reads[8];
	for (int i = 0; i < 8; i++) {
		for (unsigned int b = 0; b < 4096; b++)
			data[i][b] = guest_pattern(1024 + i * 8 + b / 512, b % 512);
		grant(REF_DATA + i, data[i], true);
		grant(REF_DATA + 8 + i, data[8 + i], false);
		writes[i] = (struct rw){ BLKIF_OP_WRITE, 1024 + i * 8, 1, 0, 7, REF_DATA + i };
		reads[i] = (struct rw){ BLKIF_OP_READ, i * 8, 1, 0, 7, REF_DATA + 8 + i };
	}
	uint64_t first[2];
	for (int i = 0; i < 8; i++) {
		uint64_t read_id = push(&xvda.q[0], fill_rw, &reads[i]);
		uint64_t write_id = push(&xvda.q[1], fill_rw, &writes[i]);
		if (i == 0) {
			first[0] = read_id;
			first[1] = write_id;
		}
	}
	/* A queue's requests may complete in any order; each must be answered once. */
	uint64_t answered[2] = { 0, 0 };
	for (int i = 0; i < 16; i++) {
		int q = i & 1;
		blkif_response_t rsp;
		if (!pop(&xvda.q[q], first[q], 8, &rsp)) {
			kit_fail("queue %d: response %d never came", q, i / 2);
			return;
		}
		uint64_t bit = 1ull << ((rsp.id - first[q]) & 63);
		KIT_CHECK(!(answered[q] & bit), "queue %d: request %llu answered twice", q, (unsigned long long)rsp.id);
		KIT_CHECK(rsp.status == BLKIF_RSP_OKAY, "queue %d: request %llu status %d", q, (unsigned long long)rsp.id, rsp.status);
		answered[q] |= bit;
	}
	for (int i = 0; i < 16; i++)
		KIT_CHECK(ungrant(REF_DATA + i), "page %d still in use", i);
	for (int i = 0; i < 8; i++)
		for (unsigned int b = 0; b < 4096; b++)
			KIT_CHECK(data[8 + i][b] == pattern(i * 8 + b / 512, b % 512), "queue 0 read %d byte %u", i, b);
	memset(data, 0, sizeof data);
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 1024, 8, 0, 7, false), BLKIF_RSP_OKAY, "read queue 1's writes back on queue 0");
	for (int p = 0; p < 8; p++)
		for (unsigned int b = 0; b < 4096; b++)
			KIT_CHECK(data[p][b] == guest_pattern(1024 + p * 8 + b / 512, b % 512), "read back page %d byte %u", p, b);
}

static void fill_unknown(blkif_request_t *req, void *arg)
{
	(void)arg;
	req->operation = 77;
}

static void errors_case(void)
{
	KIT_CHECK(xvda.q[0].port, "not connected");
	struct rw a = { BLKIF_OP_READ, 0, 1, 0, 7, 500 };
	EXPECT_STATUS(request(&xvda, fill_rw, &a), BLKIF_RSP_ERROR, "a ref never granted");
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, sectors - 4, 1, 0, 7, false), BLKIF_RSP_ERROR, "sectors past the end");
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 0, 1, 0, 8, false), BLKIF_RSP_ERROR, "a segment past its page");
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 0, 1, 4, 3, false), BLKIF_RSP_ERROR, "a segment ending before it starts");
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 0, 1, 0, 7, true), BLKIF_RSP_ERROR, "a read into a read-only grant");
	EXPECT_STATUS(request(&xvda, fill_unknown, 0), BLKIF_RSP_EOPNOTSUPP, "operation 77");
	/* The ring still serves. */
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 0, 1, 0, 7, false), BLKIF_RSP_OKAY, "a good read after them");
}

static void readonly_case(void)
{
	const char *why = vbd_connect(&xvdb, ring_page + RING_PAGES);
	KIT_CHECK(!why, "xvdb: %s", why);
	EXPECT_STATUS(rw(&xvdb, BLKIF_OP_READ, 0, 1, 0, 7, false), BLKIF_RSP_OKAY, "read from the read-only disk");
	for (unsigned int b = 0; b < 4096; b++)
		KIT_CHECK(data[0][b] == pattern(b / 512, b % 512), "xvdb byte %u", b);
	EXPECT_STATUS(rw(&xvdb, BLKIF_OP_WRITE, 0, 1, 0, 7, true), BLKIF_RSP_ERROR, "write to the read-only disk");
}

static void close_one(struct vbd *v)
{
	char path[128];
	KIT_CHECK(xs_node_write(v->front, "state", "6", &r), "write state");
	kit_snprintf(path, sizeof path, "%s/state", v->back);
	KIT_CHECK(xs_wait_for(path, "6", 20000, &r), "%s: backend not Closed", v->back);
	for (int i = 0; i < v->queues << v->order; i++)
		KIT_CHECK(KIT_WAIT_FOR(ungrant(v->ring_ref + i), 10000), "%s: ring page %d still mapped (flags 0x%x)", v->back, i, table()[v->ring_ref + i].flags);
	for (int q = 0; q < v->queues; q++)
		xen_evtchn_close(v->q[q].port);
}

static void close_case(void)
{
	KIT_CHECK(xvda.q[0].port && xvdb.q[0].port, "not connected");
	close_one(&xvda);
	close_one(&xvdb);
}

static void sector4k_case(void)
{
	const char *why = vbd_connect(&xvdc, ring_page + RING_PAGES + 1);
	KIT_CHECK(!why, "xvdc: %s", why);
	KIT_CHECK(xs_node_read(xvdc.back, "sector-size", &r) && !strcmp(r.data, "4096"), "sector-size %s", r.data);
	memset(data, 0, 4096);
	EXPECT_STATUS(rw(&xvdc, BLKIF_OP_READ, 8, 1, 0, 7, false), BLKIF_RSP_OKAY, "read the 4 KiB sector at 8");
	for (unsigned int b = 0; b < 4096; b++)
		KIT_CHECK(data[0][b] == pattern(8 + b / 512, b % 512), "xvdc byte %u", b);
	for (unsigned int b = 0; b < 4096; b++)
		data[0][b] = guest_pattern(16 + b / 512, b % 512);
	EXPECT_STATUS(rw(&xvdc, BLKIF_OP_WRITE, 16, 1, 0, 7, true), BLKIF_RSP_OKAY, "write the 4 KiB sector at 16");
	memset(data, 0, 4096);
	EXPECT_STATUS(rw(&xvdc, BLKIF_OP_READ, 16, 1, 0, 7, false), BLKIF_RSP_OKAY, "read it back");
	for (unsigned int b = 0; b < 4096; b++)
		KIT_CHECK(data[0][b] == guest_pattern(16 + b / 512, b % 512), "xvdc byte %u read back", b);
	EXPECT_STATUS(rw(&xvdc, BLKIF_OP_READ, 9, 1, 0, 7, false), BLKIF_RSP_ERROR, "a read from sector 9");
	EXPECT_STATUS(rw(&xvdc, BLKIF_OP_READ, 8, 1, 0, 3, false), BLKIF_RSP_ERROR, "a read of half a sector");
	EXPECT_STATUS(rw(&xvdc, BLKIF_OP_WRITE, 24, 1, 4, 7, true), BLKIF_RSP_ERROR, "a write of half a sector");
	close_one(&xvdc);
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_high);
	kit_cmdline_u64("discard-zeroes", &discard_zeroes);
	kit_cmdline_u64("large-sectors", &large_sectors);
	if (!kit_cmdline_u64("sectors", &sectors))
		kit_abort("no sectors= on the command line");
	xen_require();
	domid = xen_own_domid();
	kit_case("probe", probe_case);
	kit_case("connect", connect_case);
	kit_case("read", read_case);
	kit_case("write", write_case);
	kit_case("flush", flush_case);
	kit_case("discard", discard_case);
	kit_case("indirect", indirect_case);
	kit_case("queues", queues_case);
	kit_case("errors", errors_case);
	kit_case("readonly", readonly_case);
	kit_case("close", close_case);
	if (large_sectors)
		kit_case("sector4k", sector4k_case);
}

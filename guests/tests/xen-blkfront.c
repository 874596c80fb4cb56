/* A PV block frontend, as Linux's blkfront and Mini-OS's talk to a backend
 * (native layout, polling for responses): the disk xvda (devid 51712) the host
 * gives with --disk, filled by the host with pattern(sector, byte); xvdb a
 * read-only one. The host test checks the image after the run.
 * cmdline: sectors=<n> (xvda's size in 512-byte sectors, required),
 * gfn-high=<gfn> (default 0xf0000: where the grant table's frame goes).
 * Cases: probe (the backend's nodes), connect (ring and channel published,
 * Connected), read (host's pattern read back, 11 segments, partial pages),
 * write (the guest's pattern at sectors 64..), flush, discard (sectors 256..263
 * read as zeros after), indirect (32 pages in one request, where offered),
 * errors (a ref not granted, sectors past the end, a segment past its page,
 * an unknown operation: BLKIF_RSP_ERROR or EOPNOTSUPP), readonly (xvdb:
 * reads work, writes BLKIF_RSP_ERROR), close (Closed, every grant let go). */
#include "../kit/kit.h"
#include "../common/xenstore.h"

#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#include <xen/io/blkif.h>
#include <xen/io/protocols.h>

#define XVDA 51712
#define XVDB 51728
#define DATA_PAGES 40
#define REF_RING 8
#define REF_INDIRECT 9
#define REF_DATA 16

static uint64_t gfn_high = 0xf0000;
static uint64_t sectors;
static long domid;
static struct xs_reply r;

static uint8_t ring_page[4][4096] __attribute__((aligned(4096)));
static uint8_t indirect_page[4096] __attribute__((aligned(4096)));
static uint8_t data[DATA_PAGES][4096] __attribute__((aligned(4096)));

#define GFN(p) ((uint32_t)((uintptr_t)(p) >> 12))

static uint8_t pattern(uint64_t sector, unsigned int byte) { return (uint8_t)(sector * 7 + byte * 13 + 1); }
static uint8_t guest_pattern(uint64_t sector, unsigned int byte) { return (uint8_t)(sector * 3 + byte * 5 + 0x40); }

static volatile grant_entry_v1_t *table(void) { return kit_phys(gfn_high << 12); }

static void grant(grant_ref_t ref, void *page, bool readonly)
{
	volatile grant_entry_v1_t *e = &table()[ref];
	e->domid = 0;
	e->frame = GFN(page);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e->flags = GTF_permit_access | (readonly ? GTF_readonly : 0);
}

static bool ungrant(grant_ref_t ref)
{
	uint16_t flags = table()[ref].flags;
	if (flags & (GTF_reading | GTF_writing))
		return false;
	return __atomic_compare_exchange_n(&table()[ref].flags, &flags, 0, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* ---- one device's connection ---- */
struct vbd {
	int devid;
	char front[48], back[96];
	blkif_front_ring_t ring;
	evtchn_port_t port;
	grant_ref_t ring_ref;
	uint64_t next_id;
};
static struct vbd xvda = { .devid = XVDA, .ring_ref = REF_RING };
static struct vbd xvdb = { .devid = XVDB, .ring_ref = REF_RING + 1 };

static bool xs_wait(const char *path, const char *want, uint32_t ms)
{
	uint64_t end = rdtsc() + (uint64_t)ms * KIT_TSC_PER_MS;
	do {
		if (xs_read(0, path, &r) && !strcmp(r.data, want))
			return true;
		kit_delay_ms(5);
	} while (rdtsc() < end);
	return false;
}

static bool node_write(const char *dir, const char *key, const char *value)
{
	char path[128];
	kit_snprintf(path, sizeof path, "%s/%s", dir, key);
	return xs_write(0, path, value, &r);
}

static bool node_read(const char *dir, const char *key)
{
	char path[128];
	kit_snprintf(path, sizeof path, "%s/%s", dir, key);
	return xs_read(0, path, &r);
}

static const char *vbd_connect(struct vbd *v, void *ring_mem)
{
	kit_snprintf(v->front, sizeof v->front, "device/vbd/%d", v->devid);
	kit_snprintf(v->back, sizeof v->back, "/local/domain/0/backend/vbd/%ld/%d", domid, v->devid);
	char path[128], value[32];
	kit_snprintf(path, sizeof path, "%s/state", v->back);
	if (!xs_wait(path, "2", 5000))
		return "backend not in InitWait";
	memset(ring_mem, 0, 4096);
	blkif_sring_t *s = ring_mem;
	SHARED_RING_INIT(s);
	FRONT_RING_INIT(&v->ring, s, 4096);
	grant(v->ring_ref, ring_mem, false);
	if (xen_evtchn_alloc_unbound(DOMID_SELF, 0, &v->port) != 0)
		return "alloc_unbound";
	kit_snprintf(value, sizeof value, "%u", v->ring_ref);
	if (!node_write(v->front, "ring-ref", value))
		return "write ring-ref";
	kit_snprintf(value, sizeof value, "%u", v->port);
	if (!node_write(v->front, "event-channel", value) || !node_write(v->front, "protocol", XEN_IO_PROTO_ABI_X86_64))
		return "write event-channel";
	if (!node_write(v->front, "state", "3"))
		return "write state";
	if (!xs_wait(path, "4", 20000))
		return "backend not Connected";
	return 0;
}

/* Pushes the request built by `fill` and waits for its response; the response's status, or 99 on a timeout. */
static int16_t request(struct vbd *v, void (*fill)(blkif_request_t *, void *), void *arg)
{
	blkif_request_t *req = RING_GET_REQUEST(&v->ring, v->ring.req_prod_pvt);
	memset(req, 0, sizeof *req);
	fill(req, arg);
	req->id = ++v->next_id;
	v->ring.req_prod_pvt++;
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&v->ring, notify);
	if (notify)
		xen_evtchn_send(v->port);
	if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&v->ring), 20000))
		return 99;
	blkif_response_t *rsp = RING_GET_RESPONSE(&v->ring, v->ring.rsp_cons);
	int16_t status = rsp->status;
	if (rsp->id != v->next_id)
		status = 98;
	v->ring.rsp_cons++;
	return status;
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
	KIT_CHECK(node_read("device/vbd/51712", "backend") && !strcmp(r.data, back), "device/vbd/51712/backend: %s", r.data);
	KIT_CHECK(node_read("device/vbd/51712", "virtual-device") && !strcmp(r.data, "51712"), "virtual-device %s", r.data);
	char want[32];
	kit_snprintf(want, sizeof want, "%llu", (unsigned long long)sectors);
	KIT_CHECK(node_read(back, "sectors") && !strcmp(r.data, want), "sectors %s, expected %s", r.data, want);
	KIT_CHECK(node_read(back, "sector-size") && !strcmp(r.data, "512"), "sector-size %s", r.data);
	KIT_CHECK(node_read(back, "info") && !strcmp(r.data, "0"), "info %s", r.data);
	KIT_CHECK(node_read(back, "feature-flush-cache") && !strcmp(r.data, "1"), "feature-flush-cache %s", r.data);
	KIT_CHECK(node_read(back, "feature-discard") && !strcmp(r.data, "1"), "feature-discard %s", r.data);
	KIT_CHECK(node_read(back, "mode") && !strcmp(r.data, "w"), "mode %s", r.data);
	KIT_CHECK(node_read("/local/domain/0/backend/vbd/1/51728", "info") && !strcmp(r.data, "4"), "xvdb info %s (VDISK_READONLY)", r.data);
}

static void connect_case(void)
{
	if (xen_add_to_physmap(XENMAPSPACE_grant_table, 0, gfn_high) != 0) {
		kit_fail("add_to_physmap(grant table)");
		return;
	}
	const char *why = vbd_connect(&xvda, ring_page[0]);
	KIT_CHECK(!why, "xvda: %s", why);
	KIT_CHECK(table()[REF_RING].flags == (GTF_permit_access | GTF_reading | GTF_writing), "ring entry flags 0x%x", table()[REF_RING].flags);
}

static void read_case(void)
{
	KIT_CHECK(xvda.port, "not connected");
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
	KIT_CHECK(xvda.port, "not connected");
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
	KIT_CHECK(xvda.port, "not connected");
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
	KIT_CHECK(xvda.port, "not connected");
	uint64_t n = 8;
	EXPECT_STATUS(request(&xvda, fill_discard, &n), BLKIF_RSP_OKAY, "discard 8 sectors at 256");
	memset(data, 0xee, 4096);
	EXPECT_STATUS(rw(&xvda, BLKIF_OP_READ, 256, 1, 0, 7, false), BLKIF_RSP_OKAY, "read the discarded sectors");
	for (unsigned int b = 0; b < 4096; b++)
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
	KIT_CHECK(xvda.port, "not connected");
	KIT_CHECK(node_read(xvda.back, "feature-max-indirect-segments"), "no feature-max-indirect-segments");
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

static void fill_unknown(blkif_request_t *req, void *arg)
{
	(void)arg;
	req->operation = 77;
}

static void errors_case(void)
{
	KIT_CHECK(xvda.port, "not connected");
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
	const char *why = vbd_connect(&xvdb, ring_page[1]);
	KIT_CHECK(!why, "xvdb: %s", why);
	EXPECT_STATUS(rw(&xvdb, BLKIF_OP_READ, 0, 1, 0, 7, false), BLKIF_RSP_OKAY, "read from the read-only disk");
	for (unsigned int b = 0; b < 4096; b++)
		KIT_CHECK(data[0][b] == pattern(b / 512, b % 512), "xvdb byte %u", b);
	EXPECT_STATUS(rw(&xvdb, BLKIF_OP_WRITE, 0, 1, 0, 7, true), BLKIF_RSP_ERROR, "write to the read-only disk");
}

static void close_one(struct vbd *v)
{
	char path[128];
	KIT_CHECK(node_write(v->front, "state", "6"), "write state");
	kit_snprintf(path, sizeof path, "%s/state", v->back);
	KIT_CHECK(xs_wait(path, "6", 20000), "%s: backend not Closed", v->back);
	KIT_CHECK(KIT_WAIT_FOR(ungrant(v->ring_ref), 10000), "%s: ring still mapped (flags 0x%x)", v->back, table()[v->ring_ref].flags);
	xen_evtchn_close(v->port);
}

static void close_case(void)
{
	KIT_CHECK(xvda.port && xvdb.port, "not connected");
	close_one(&xvda);
	close_one(&xvdb);
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_high);
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
	kit_case("errors", errors_case);
	kit_case("readonly", readonly_case);
	kit_case("close", close_case);
}

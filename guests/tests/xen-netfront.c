/* A PV network frontend, as Linux's netfront and Mini-OS's talk to a backend
 * (native layout, one queue unless ctrl=1, polling the rings): vif 0, its MAC from the
 * store, connected with request-rx-copy, feature-rx-notify and feature-sg,
 * and feature-no-csum-offload (the backend completes checksums: this guest
 * computes none). It echoes what the host sends it: each UDP datagram to it
 * goes back with addresses and ports swapped (the checksum stays right), each
 * ICMP echo request comes back as a reply, until a datagram reads "KIT-END";
 * every ARP request is answered with its MAC (it has no address of its own:
 * it takes whatever the host's side sends it, slirp's 10.0.2.15 or the TAP
 * test's).
 * A reply of a frame larger than a page goes out in two slots (more_data).
 * With ctrl=1 it connects two queues and a control ring (io/netif.h), and
 * asks through it for the Toeplitz hash of IPv4 (and IPv4 with TCP) with
 * Microsoft's RSS key and a mapping that sends every packet to queue 1: every
 * frame then must come in on queue 1, each IPv4 one with a hash extra-info
 * slot whose value is the hash it computes itself.
 * cmdline: gfn-high=<gfn> (default 0xf0000: the grant table's frame),
 * echoes=<n> (at least this many datagrams echoed before KIT-END, default 1),
 * ctrl=1 (two queues and the control ring; needs a TAP device of 2 queues).
 * Cases: probe (the backend's nodes), connect (rings, channel, Connected),
 * ctrl (with ctrl=1: the hash set up, malformed requests refused), echo (the
 * echoes; the count and the largest frame reported), close (Closed, every
 * grant let go). */
#include "../kit/kit.h"
#include "../common/xenstore.h"

#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#include <xen/io/netif.h>

#define RX_BUFFERS 32
#define TX_PAGES 4
#define QUEUES_MAX 2
/* Slots in a one-page rx ring. */
#define RX_RING_SLOTS 256
/* Per queue q: its tx ring, rx ring, and rx buffers' refs. */
#define REF_TX_RING(q) (8 + 2 * (q))
#define REF_RX_RING(q) (9 + 2 * (q))
#define REF_CTRL_RING 12
#define REF_CTRL_DATA 13
#define REF_TX 16
#define REF_RX(q) (REF_TX + TX_PAGES + (q) * RX_BUFFERS)

static uint64_t gfn_high = 0xf0000;
static uint64_t echoes_wanted = 1;
static uint64_t use_ctrl;
static unsigned int nqueues = 1;
static long domid;
static struct xs_reply r;
static char front[32] = "device/vif/0", back[96];

struct queue {
	netif_tx_front_ring_t tx;
	netif_rx_front_ring_t rx;
	evtchn_port_t port;
	/* The buffer posted at each rx ring index (an extra-info slot's response carries no id). */
	uint16_t posted[RX_RING_SLOTS];
};

static uint8_t tx_ring_page[QUEUES_MAX][4096] __attribute__((aligned(4096)));
static uint8_t rx_ring_page[QUEUES_MAX][4096] __attribute__((aligned(4096)));
static uint8_t ctrl_ring_page[4096] __attribute__((aligned(4096)));
static uint8_t ctrl_data_page[4096] __attribute__((aligned(4096)));
static uint8_t tx_pages[TX_PAGES][4096] __attribute__((aligned(4096)));
static uint8_t rx_pages[QUEUES_MAX][RX_BUFFERS][4096] __attribute__((aligned(4096)));
static uint8_t frame[65536];

static struct queue queues[QUEUES_MAX];
static xen_netif_ctrl_front_ring_t ctrl;
static evtchn_port_t ctrl_port;
static uint8_t mac[6];

/* Microsoft's RSS verification key, as the frontend's hash key. */
static const uint8_t rss_key[40] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
	0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

/* What the last frame received came with: its queue, and the hash extra-info slot if there was one. */
static unsigned int rx_queue;
static bool rx_hashed;
static uint8_t rx_hash_type, rx_hash_alg;
static uint32_t rx_hash;

#define GFN(p) ((uint32_t)((uintptr_t)(p) >> 12))

static volatile grant_entry_v1_t *table(void) { return kit_phys(gfn_high << 12); }

static void grant(grant_ref_t ref, void *page, bool readonly)
{
	xen_grant_v1(&table()[ref], 0, GFN(page), GTF_permit_access | (readonly ? GTF_readonly : 0));
}

static bool ungrant(grant_ref_t ref) { return xen_ungrant_v1(&table()[ref]); }

/* The Toeplitz hash of buf[0..len) under `key` (bytes past its end are zeros), written from the header's description. */
static uint32_t toeplitz(const uint8_t *key, size_t keylen, const uint8_t *buf, size_t len)
{
	uint32_t hash = 0;
	for (size_t bit = 0; bit < len * 8; bit++) {
		if (!(buf[bit / 8] & (0x80 >> (bit % 8))))
			continue;
		/* The 32 key bits starting at bit `bit`. */
		uint32_t window = 0;
		for (size_t k = bit; k < bit + 32; k++) {
			size_t byte = k / 8;
			window = window << 1 | (byte < keylen ? (key[byte] >> (7 - k % 8)) & 1 : 0);
		}
		hash ^= window;
	}
	return hash;
}

static int hex(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

static bool parse_mac(const char *s)
{
	for (int i = 0; i < 6; i++, s += 3) {
		int hi = hex(s[0]), lo = hex(s[1]);
		if (hi < 0 || lo < 0 || (i < 5 && s[2] != ':'))
			return false;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static void probe_case(void)
{
	XEN_EXPECT_RC(xs_init(), 0, "store params");
	kit_snprintf(back, sizeof back, "/local/domain/0/backend/vif/%ld/0", domid);
	KIT_CHECK(xs_node_read(front, "backend", &r) && !strcmp(r.data, back), "%s/backend: %s", front, r.data);
	KIT_CHECK(xs_node_read(front, "mac", &r) && parse_mac(r.data), "%s/mac: %s", front, r.data);
	char front_mac[32];
	kit_snprintf(front_mac, sizeof front_mac, "%s", r.data);
	KIT_CHECK(xs_node_read(back, "mac", &r) && !strcmp(r.data, front_mac), "backend mac %s, frontend's %s", r.data, front_mac);
	KIT_CHECK(xs_node_read(back, "feature-rx-copy", &r) && !strcmp(r.data, "1"), "feature-rx-copy %s", r.data);
	KIT_CHECK(xs_node_read(back, "feature-sg", &r) && !strcmp(r.data, "1"), "feature-sg %s", r.data);
	KIT_CHECK(xs_node_read(back, "feature-ctrl-ring", &r) && !strcmp(r.data, "1"), "feature-ctrl-ring %s", r.data);
	if (use_ctrl)
		KIT_CHECK(xs_node_read(back, "multi-queue-max-queues", &r) && (r.data[0] > '1' || r.data[1] != 0), "multi-queue-max-queues %s, 2 wanted", r.data);
}

/* Posts queue q's rx buffer `i` (ref REF_RX(q) + i) at the ring's next slot. */
static void post_rx(unsigned int q, unsigned int i)
{
	struct queue *Q = &queues[q];
	netif_rx_request_t *req = RING_GET_REQUEST(&Q->rx, Q->rx.req_prod_pvt);
	req->id = (uint16_t)i;
	req->gref = REF_RX(q) + i;
	Q->posted[Q->rx.req_prod_pvt % RX_RING_SLOTS] = (uint16_t)i;
	Q->rx.req_prod_pvt++;
}

/* Sets up queue q's rings and channel and publishes them in `dir`. */
static bool queue_connect(unsigned int q, const char *dir)
{
	struct queue *Q = &queues[q];
	char value[32];
	SHARED_RING_INIT((netif_tx_sring_t *)tx_ring_page[q]);
	FRONT_RING_INIT(&Q->tx, (netif_tx_sring_t *)tx_ring_page[q], 4096);
	SHARED_RING_INIT((netif_rx_sring_t *)rx_ring_page[q]);
	FRONT_RING_INIT(&Q->rx, (netif_rx_sring_t *)rx_ring_page[q], 4096);
	if (RING_SIZE(&Q->rx) != RX_RING_SLOTS)
		return false;
	grant(REF_TX_RING(q), tx_ring_page[q], false);
	grant(REF_RX_RING(q), rx_ring_page[q], false);
	for (unsigned int i = 0; i < RX_BUFFERS; i++) {
		grant(REF_RX(q) + i, rx_pages[q][i], false);
		post_rx(q, i);
	}
	RING_PUSH_REQUESTS(&Q->rx);
	if (xen_evtchn_alloc_unbound(DOMID_SELF, 0, &Q->port) != 0)
		return false;
	kit_snprintf(value, sizeof value, "%u", REF_TX_RING(q));
	if (!xs_node_write(dir, "tx-ring-ref", value, &r))
		return false;
	kit_snprintf(value, sizeof value, "%u", REF_RX_RING(q));
	if (!xs_node_write(dir, "rx-ring-ref", value, &r))
		return false;
	kit_snprintf(value, sizeof value, "%u", Q->port);
	return xs_node_write(dir, "event-channel", value, &r);
}

static void connect_case(void)
{
	if (xen_add_to_physmap(XENMAPSPACE_grant_table, 0, gfn_high) != 0) {
		kit_fail("add_to_physmap(grant table)");
		return;
	}
	char path[128], value[32];
	kit_snprintf(path, sizeof path, "%s/state", back);
	KIT_CHECK(xs_wait_for(path, "2", 5000, &r), "backend state %s, expected InitWait", r.data);
	if (nqueues > 1) {
		kit_snprintf(value, sizeof value, "%u", nqueues);
		KIT_CHECK(xs_node_write(front, "multi-queue-num-queues", value, &r), "write multi-queue-num-queues");
		for (unsigned int q = 0; q < nqueues; q++) {
			char dir[64];
			kit_snprintf(dir, sizeof dir, "%s/queue-%u", front, q);
			KIT_CHECK(queue_connect(q, dir), "queue %u's rings and channel", q);
		}
	} else
		KIT_CHECK(queue_connect(0, front), "the rings and channel");
	if (use_ctrl) {
		SHARED_RING_INIT((xen_netif_ctrl_sring_t *)ctrl_ring_page);
		FRONT_RING_INIT(&ctrl, (xen_netif_ctrl_sring_t *)ctrl_ring_page, 4096);
		grant(REF_CTRL_RING, ctrl_ring_page, false);
		KIT_CHECK(xen_evtchn_alloc_unbound(DOMID_SELF, 0, &ctrl_port) == 0, "alloc_unbound (ctrl)");
		kit_snprintf(value, sizeof value, "%u", REF_CTRL_RING);
		KIT_CHECK(xs_node_write(front, "ctrl-ring-ref", value, &r), "write ctrl-ring-ref");
		kit_snprintf(value, sizeof value, "%u", ctrl_port);
		KIT_CHECK(xs_node_write(front, "event-channel-ctrl", value, &r), "write event-channel-ctrl");
	}
	KIT_CHECK(xs_node_write(front, "request-rx-copy", "1", &r) && xs_node_write(front, "feature-rx-notify", "1", &r) && xs_node_write(front, "feature-sg", "1", &r) &&
			  xs_node_write(front, "feature-no-csum-offload", "1", &r),
		  "write features");
	KIT_CHECK(xs_node_write(front, "state", "4", &r), "write state");
	KIT_CHECK(xs_wait_for(path, "4", 20000, &r), "backend state %s, expected Connected", r.data);
	for (unsigned int q = 0; q < nqueues; q++)
		xen_evtchn_send(queues[q].port);
}

/* One control request and its response: the status, and the response's data in *data. -1 if no response came. */
static long ctrl_call(uint16_t type, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t *data)
{
	static uint16_t next_id = 1;
	uint16_t id = next_id++;
	struct xen_netif_ctrl_request *req = RING_GET_REQUEST(&ctrl, ctrl.req_prod_pvt);
	req->id = id;
	req->type = type;
	req->data[0] = d0;
	req->data[1] = d1;
	req->data[2] = d2;
	ctrl.req_prod_pvt++;
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&ctrl, notify);
	if (notify)
		xen_evtchn_send(ctrl_port);
	if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&ctrl), 5000))
		return -1;
	struct xen_netif_ctrl_response rsp = *RING_GET_RESPONSE(&ctrl, ctrl.rsp_cons);
	ctrl.rsp_cons++;
	if (rsp.id != id || rsp.type != type)
		return -1;
	if (data)
		*data = rsp.data;
	return rsp.status;
}

/* Everything the rx rings hold now, taken and its buffers posted again: what came before the mapping was set. */
static long receive(uint32_t ms);
static void drain(void)
{
	while (receive(0) != 0)
		;
}

static void ctrl_case(void)
{
	KIT_CHECK(use_ctrl, "ctrl=1 not given");
	KIT_CHECK(queues[0].port, "not connected");
	uint32_t data = 0;
	long st;
	/* The hash types are offered once an algorithm is chosen. */
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS, 0, 0, 0, &data)) == XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED, "GET_HASH_FLAGS with no algorithm: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, 9, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "algorithm 9: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_SUCCESS, "SET_HASH_ALGORITHM: %ld", st);
	uint32_t all = XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP | XEN_NETIF_CTRL_HASH_TYPE_IPV6 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP;
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS, 0, 0, 0, &data)) == XEN_NETIF_CTRL_STATUS_SUCCESS && data == all, "GET_HASH_FLAGS: %ld, 0x%x", st, data);
	/* The key, from a page granted read-only. */
	memcpy(ctrl_data_page, rss_key, sizeof rss_key);
	grant(REF_CTRL_DATA, ctrl_data_page, true);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, REF_CTRL_DATA, 41, 0, 0)) == XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW, "a 41-byte key: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, 4000, 40, 0, 0)) == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "a key in ref 4000, not granted: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, REF_CTRL_DATA, sizeof rss_key, 0, 0)) == XEN_NETIF_CTRL_STATUS_SUCCESS, "SET_HASH_KEY: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS, 1u << 4, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "hash flag 0x10: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS, XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_SUCCESS, "SET_HASH_FLAGS: %ld", st);
	/* The mapping: 8 entries, every one queue 1. */
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE, 0, 0, 0, &data)) == XEN_NETIF_CTRL_STATUS_SUCCESS && data >= 8, "GET_HASH_MAPPING_SIZE: %ld, %u", st, data);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, data + 1, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "a mapping of %u entries: %ld", data + 1, st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, 8, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_SUCCESS, "SET_HASH_MAPPING_SIZE: %ld", st);
	uint32_t *entries = (uint32_t *)ctrl_data_page;
	for (int i = 0; i < 8; i++)
		entries[i] = 1;
	entries[5] = nqueues; /* no such queue */
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, REF_CTRL_DATA, 8, 0, 0)) == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "a mapping naming queue %u: %ld", nqueues, st);
	entries[5] = 1;
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, REF_CTRL_DATA, 8, 1, 0)) == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER, "8 entries at offset 1 of 8: %ld", st);
	/* Anything not offered. */
	KIT_CHECK((st = ctrl_call(77, 0, 0, 0, 0)) == XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED, "type 77: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING, 0, REF_CTRL_DATA, 1, 0)) == XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED, "ADD_GREF_MAPPING: %ld", st);
	KIT_CHECK((st = ctrl_call(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, REF_CTRL_DATA, 8, 0, 0)) == XEN_NETIF_CTRL_STATUS_SUCCESS, "SET_HASH_MAPPING: %ld", st);
	KIT_CHECK(ungrant(REF_CTRL_DATA), "the key and mapping page still mapped");
	/* From here every frame is steered to queue 1. */
	drain();
}

/* The next rx response of queue Q (waiting up to 1 s for it), and the buffer posted at its index; false if none came. */
static bool next_response(struct queue *Q, void *rsp, uint16_t *buffer)
{
	if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&Q->rx), 1000))
		return false;
	RING_IDX at = Q->rx.rsp_cons++;
	memcpy(rsp, RING_GET_RESPONSE(&Q->rx, at), sizeof(netif_rx_response_t));
	*buffer = Q->posted[at % RX_RING_SLOTS];
	return true;
}

/* The next whole packet from any queue's rx ring into `frame` (its slots' buffers posted again), its queue and hash in rx_*: its length, 0 if none came in `ms`, -1 on an error response or a malformed one. */
static long receive(uint32_t ms)
{
	unsigned int q = 0;
	bool found = false;
	uint64_t end = rdtsc() + (uint64_t)ms * KIT_TSC_PER_MS;
	for (;;) {
		/* The backend moves rsp_prod: read it again each time round. */
		xen_rmb();
		for (q = 0; q < nqueues && !found; q++)
			found = RING_HAS_UNCONSUMED_RESPONSES(&queues[q].rx);
		if (found || rdtsc() >= end)
			break;
		cpu_relax();
	}
	if (!found)
		return 0;
	q--;
	struct queue *Q = &queues[q];
	rx_queue = q;
	rx_hashed = false;
	long length = 0, status = 0;
	netif_rx_response_t rsp;
	uint16_t buffer;
	uint16_t flags = NETRXF_more_data;
	for (bool first = true; flags & NETRXF_more_data; first = false) {
		if (!next_response(Q, &rsp, &buffer))
			return -1;
		if (rsp.status < 0 || rsp.id != buffer || rsp.offset + rsp.status > 4096 || length + rsp.status > (long)sizeof frame)
			status = -1;
		else {
			memcpy(frame + length, rx_pages[q][rsp.id] + rsp.offset, (size_t)rsp.status);
			length += rsp.status;
		}
		post_rx(q, buffer);
		flags = rsp.flags;
		if (!(flags & NETRXF_extra_info))
			continue;
		if (!first)
			status = -1; /* extra-info slots follow only a packet's first */
		/* Extra-info slots, until one without MORE: their buffers are the ones posted at their indexes, untouched. */
		for (bool more = true; more;) {
			netif_extra_info_t x;
			if (!next_response(Q, &x, &buffer))
				return -1;
			post_rx(q, buffer);
			more = x.flags & XEN_NETIF_EXTRA_FLAG_MORE;
			if (x.type != XEN_NETIF_EXTRA_TYPE_HASH || rx_hashed) {
				status = -1; /* no GSO was asked for, and one hash at most */
				continue;
			}
			rx_hashed = true;
			rx_hash_type = x.u.hash.type;
			rx_hash_alg = x.u.hash.algorithm;
			rx_hash = (uint32_t)x.u.hash.value[0] | (uint32_t)x.u.hash.value[1] << 8 | (uint32_t)x.u.hash.value[2] << 16 | (uint32_t)x.u.hash.value[3] << 24;
		}
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&Q->rx, notify);
	if (notify)
		xen_evtchn_send(Q->port);
	return status < 0 ? -1 : length;
}

/* Sends frame[0..length) on queue 0 in slots of at most a page, waiting for their responses: true if all were NETIF_RSP_OKAY. */
static bool transmit(long length)
{
	struct queue *Q = &queues[0];
	unsigned int slots = (unsigned int)((length + 4095) / 4096);
	if (slots > TX_PAGES)
		return false;
	for (unsigned int i = 0; i < slots; i++) {
		long n = length - i * 4096 < 4096 ? length - i * 4096 : 4096;
		memcpy(tx_pages[i], frame + i * 4096, (size_t)n);
		grant(REF_TX + i, tx_pages[i], true);
		netif_tx_request_t *req = RING_GET_REQUEST(&Q->tx, Q->tx.req_prod_pvt);
		req->gref = REF_TX + i;
		req->offset = 0;
		req->id = (uint16_t)i;
		req->size = (uint16_t)(i == 0 ? length : n);
		req->flags = i + 1 < slots ? NETTXF_more_data : 0;
		Q->tx.req_prod_pvt++;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&Q->tx, notify);
	if (notify)
		xen_evtchn_send(Q->port);
	bool ok = true;
	for (unsigned int i = 0; i < slots; i++) {
		if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&Q->tx), 5000))
			return false;
		netif_tx_response_t *rsp = RING_GET_RESPONSE(&Q->tx, Q->tx.rsp_cons);
		ok = ok && rsp->status == NETIF_RSP_OKAY;
		Q->tx.rsp_cons++;
	}
	for (unsigned int i = 0; i < slots; i++)
		ok = ungrant(REF_TX + i) && ok;
	return ok;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

static void swap(uint8_t *a, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t t = a[i];
		a[i] = b[i];
		b[i] = t;
	}
}

/* With the control ring: the frame just received came in on queue 1, and an IPv4 one with the Toeplitz hash of its addresses (and TCP ports), an other without any. */
static const char *check_hash(long n)
{
	static char why[96];
	if (rx_queue != 1)
		return "a frame came in on queue 0";
	bool ipv4 = n >= 34 && get16(frame + 12) == 0x0800 && (frame[14] >> 4) == 4;
	if (!ipv4)
		return rx_hashed ? "a frame that is not IPv4 came with a hash" : 0;
	if (!rx_hashed)
		return "an IPv4 frame came without a hash";
	uint8_t *ip = frame + 14, input[12];
	size_t ihl = (ip[0] & 15) * 4u;
	bool tcp = ip[9] == 6 && !(get16(ip + 6) & 0x3fff) && n >= (long)(14 + ihl + 4);
	memcpy(input, ip + 12, 8);
	if (tcp)
		memcpy(input + 8, ip + ihl, 4);
	uint32_t want = toeplitz(rss_key, sizeof rss_key, input, tcp ? 12 : 8);
	uint8_t want_type = tcp ? _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP : _XEN_NETIF_CTRL_HASH_TYPE_IPV4;
	if (rx_hash != want || rx_hash_type != want_type || rx_hash_alg != XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ) {
		kit_snprintf(why, sizeof why, "hash 0x%x type %u alg %u, expected 0x%x type %u", rx_hash, rx_hash_type, rx_hash_alg, want, want_type);
		return why;
	}
	return 0;
}

static void echo_case(void)
{
	KIT_CHECK(queues[0].port, "not connected");
	uint64_t echoed = 0, hashed = 0;
	long largest = 0;
	for (;;) {
		long n = receive(60000);
		KIT_CHECK(n != 0, "nothing came for 60 s (%llu echoed)", (unsigned long long)echoed);
		KIT_CHECK(n > 0, "an rx response was an error, or a slot not asked for");
		if (use_ctrl) {
			const char *why = check_hash(n);
			KIT_CHECK(!why, "%s (%ld bytes, ethertype 0x%x)", why, n, n >= 14 ? get16(frame + 12) : 0);
			hashed += rx_hashed;
		}
		if (n >= 42 && get16(frame + 12) == 0x0806 && get16(frame + 20) == 1) {
			/* An ARP request: the reply, to its sender, says the asked-for address is ours. */
			uint8_t *arp = frame + 14;
			memcpy(frame, arp + 8, 6);
			memcpy(frame + 6, mac, 6);
			put16(arp + 6, 2);
			uint8_t asked[4];
			memcpy(asked, arp + 24, 4);
			memcpy(arp + 18, arp + 8, 10);
			memcpy(arp + 8, mac, 6);
			memcpy(arp + 14, asked, 4);
			KIT_CHECK(transmit(42), "sending an ARP reply");
			continue;
		}
		if (n < 34 || get16(frame + 12) != 0x0800 || memcmp(frame, mac, 6))
			continue; /* not IPv4 to us */
		uint8_t *ip = frame + 14;
		size_t ihl = (ip[0] & 15) * 4u;
		uint8_t *l4 = ip + ihl;
		swap(frame, frame + 6, 6);
		swap(ip + 12, ip + 16, 4);
		if (ip[9] == 17) {
			if (n - (l4 - frame) >= 15 && !memcmp(l4 + 8, "KIT-END", 7))
				break;
			swap(l4, l4 + 2, 2);
		} else if (ip[9] == 1 && l4[0] == 8) {
			/* Echo request to reply: the type drops by 8 in the checksum's high byte. */
			l4[0] = 0;
			uint32_t sum = get16(l4 + 2) + 0x0800;
			put16(l4 + 2, (uint16_t)(sum + (sum >> 16)));
		} else
			continue;
		KIT_CHECK(transmit(n), "sending the echo of a %ld-byte frame", n);
		echoed++;
		if (n > largest)
			largest = n;
	}
	KIT_CHECK(echoed >= echoes_wanted, "%llu echoed, expected at least %llu", (unsigned long long)echoed, (unsigned long long)echoes_wanted);
	kit_printf("KIT-NET echoed=%llu largest=%ld\n", (unsigned long long)echoed, largest);
	if (use_ctrl)
		kit_printf("KIT-NET ctrl hashed=%llu all-on-queue=1\n", (unsigned long long)hashed);
}

static void close_case(void)
{
	char path[128];
	KIT_CHECK(xs_node_write(front, "state", "6", &r), "write state");
	kit_snprintf(path, sizeof path, "%s/state", back);
	KIT_CHECK(xs_wait_for(path, "6", 20000, &r), "backend not Closed (%s)", r.data);
	for (unsigned int q = 0; q < nqueues; q++) {
		KIT_CHECK(KIT_WAIT_FOR(ungrant(REF_TX_RING(q)) && ungrant(REF_RX_RING(q)), 10000), "queue %u's rings still mapped", q);
		for (unsigned int i = 0; i < RX_BUFFERS; i++)
			KIT_CHECK(ungrant(REF_RX(q) + i), "queue %u's rx buffer %u still mapped", q, i);
		xen_evtchn_close(queues[q].port);
	}
	if (use_ctrl) {
		KIT_CHECK(KIT_WAIT_FOR(ungrant(REF_CTRL_RING), 10000), "the control ring still mapped");
		xen_evtchn_close(ctrl_port);
	}
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_high);
	kit_cmdline_u64("echoes", &echoes_wanted);
	kit_cmdline_u64("ctrl", &use_ctrl);
	nqueues = use_ctrl ? 2 : 1;
	xen_require();
	domid = xen_own_domid();
	kit_case("probe", probe_case);
	kit_case("connect", connect_case);
	if (use_ctrl)
		kit_case("ctrl", ctrl_case);
	kit_case("echo", echo_case);
	kit_case("close", close_case);
}

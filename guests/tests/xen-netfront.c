/* A PV network frontend, as Linux's netfront and Mini-OS's talk to a backend
 * (native layout, one queue, polling the rings): vif 0, its MAC from the
 * store, connected with request-rx-copy, feature-rx-notify and feature-sg,
 * and feature-no-csum-offload (the backend completes checksums: this guest
 * computes none). It echoes what the host sends it: each UDP datagram to it
 * goes back with addresses and ports swapped (the checksum stays right), each
 * ICMP echo request comes back as a reply, until a datagram reads "KIT-END";
 * every ARP request is answered with its MAC (it has no address of its own:
 * it takes whatever the host's side sends it, slirp's 10.0.2.15 or the TAP
 * test's).
 * A reply of a frame larger than a page goes out in two slots (more_data).
 * cmdline: gfn-high=<gfn> (default 0xf0000: the grant table's frame),
 * echoes=<n> (at least this many datagrams echoed before KIT-END, default 1).
 * Cases: probe (the backend's nodes), connect (rings, channel, Connected),
 * echo (the echoes; the count and the largest frame reported), close
 * (Closed, every grant let go). */
#include "../kit/kit.h"
#include "../common/xenstore.h"

#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#include <xen/io/netif.h>

#define RX_BUFFERS 32
#define TX_PAGES 4
#define REF_TX_RING 8
#define REF_RX_RING 9
#define REF_TX 16
#define REF_RX (REF_TX + TX_PAGES)

static uint64_t gfn_high = 0xf0000;
static uint64_t echoes_wanted = 1;
static long domid;
static struct xs_reply r;
static char front[32] = "device/vif/0", back[96];

static uint8_t tx_ring_page[4096] __attribute__((aligned(4096)));
static uint8_t rx_ring_page[4096] __attribute__((aligned(4096)));
static uint8_t tx_pages[TX_PAGES][4096] __attribute__((aligned(4096)));
static uint8_t rx_pages[RX_BUFFERS][4096] __attribute__((aligned(4096)));
static uint8_t frame[65536];

static netif_tx_front_ring_t tx;
static netif_rx_front_ring_t rx;
static evtchn_port_t port;
static uint8_t mac[6];

#define GFN(p) ((uint32_t)((uintptr_t)(p) >> 12))

static volatile grant_entry_v1_t *table(void) { return kit_phys(gfn_high << 12); }

static void grant(grant_ref_t ref, void *page, bool readonly)
{
	xen_grant_v1(&table()[ref], 0, GFN(page), GTF_permit_access | (readonly ? GTF_readonly : 0));
}

static bool ungrant(grant_ref_t ref) { return xen_ungrant_v1(&table()[ref]); }

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
}

/* Posts rx buffer `i` (page i, ref REF_RX + i) at the ring's next slot. */
static void post_rx(unsigned int i)
{
	netif_rx_request_t *req = RING_GET_REQUEST(&rx, rx.req_prod_pvt);
	req->id = (uint16_t)i;
	req->gref = REF_RX + i;
	rx.req_prod_pvt++;
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
	SHARED_RING_INIT((netif_tx_sring_t *)tx_ring_page);
	FRONT_RING_INIT(&tx, (netif_tx_sring_t *)tx_ring_page, 4096);
	SHARED_RING_INIT((netif_rx_sring_t *)rx_ring_page);
	FRONT_RING_INIT(&rx, (netif_rx_sring_t *)rx_ring_page, 4096);
	grant(REF_TX_RING, tx_ring_page, false);
	grant(REF_RX_RING, rx_ring_page, false);
	for (unsigned int i = 0; i < RX_BUFFERS; i++) {
		grant(REF_RX + i, rx_pages[i], false);
		post_rx(i);
	}
	RING_PUSH_REQUESTS(&rx);
	KIT_CHECK(xen_evtchn_alloc_unbound(DOMID_SELF, 0, &port) == 0, "alloc_unbound");
	kit_snprintf(value, sizeof value, "%u", REF_TX_RING);
	KIT_CHECK(xs_node_write(front, "tx-ring-ref", value, &r), "write tx-ring-ref");
	kit_snprintf(value, sizeof value, "%u", REF_RX_RING);
	KIT_CHECK(xs_node_write(front, "rx-ring-ref", value, &r), "write rx-ring-ref");
	kit_snprintf(value, sizeof value, "%u", port);
	KIT_CHECK(xs_node_write(front, "event-channel", value, &r), "write event-channel");
	KIT_CHECK(xs_node_write(front, "request-rx-copy", "1", &r) && xs_node_write(front, "feature-rx-notify", "1", &r) && xs_node_write(front, "feature-sg", "1", &r) &&
			  xs_node_write(front, "feature-no-csum-offload", "1", &r),
		  "write features");
	KIT_CHECK(xs_node_write(front, "state", "4", &r), "write state");
	KIT_CHECK(xs_wait_for(path, "4", 20000, &r), "backend state %s, expected Connected", r.data);
	xen_evtchn_send(port);
}

/* The next whole packet from the rx ring into `frame` (its slots' buffers posted again): its length, 0 if none came in `ms`, -1 on an error response. */
static long receive(uint32_t ms)
{
	if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&rx), ms))
		return 0;
	long length = 0, status = 0;
	for (;;) {
		if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&rx), 1000))
			return -1;
		netif_rx_response_t rsp = *RING_GET_RESPONSE(&rx, rx.rsp_cons);
		rx.rsp_cons++;
		if (rsp.status < 0 || rsp.id >= RX_BUFFERS || rsp.offset + rsp.status > 4096 || length + rsp.status > (long)sizeof frame)
			status = -1;
		else {
			memcpy(frame + length, rx_pages[rsp.id] + rsp.offset, (size_t)rsp.status);
			length += rsp.status;
		}
		if (rsp.id < RX_BUFFERS)
			post_rx(rsp.id);
		/* No GSO was asked for, so no extra-info slot may follow. */
		if (rsp.flags & NETRXF_extra_info)
			status = -1;
		if (!(rsp.flags & NETRXF_more_data))
			break;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&rx, notify);
	if (notify)
		xen_evtchn_send(port);
	return status < 0 ? -1 : length;
}

/* Sends frame[0..length) in slots of at most a page, waiting for their responses: true if all were NETIF_RSP_OKAY. */
static bool transmit(long length)
{
	unsigned int slots = (unsigned int)((length + 4095) / 4096);
	if (slots > TX_PAGES)
		return false;
	for (unsigned int i = 0; i < slots; i++) {
		long n = length - i * 4096 < 4096 ? length - i * 4096 : 4096;
		memcpy(tx_pages[i], frame + i * 4096, (size_t)n);
		grant(REF_TX + i, tx_pages[i], true);
		netif_tx_request_t *req = RING_GET_REQUEST(&tx, tx.req_prod_pvt);
		req->gref = REF_TX + i;
		req->offset = 0;
		req->id = (uint16_t)i;
		req->size = (uint16_t)(i == 0 ? length : n);
		req->flags = i + 1 < slots ? NETTXF_more_data : 0;
		tx.req_prod_pvt++;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&tx, notify);
	if (notify)
		xen_evtchn_send(port);
	bool ok = true;
	for (unsigned int i = 0; i < slots; i++) {
		if (!KIT_WAIT_FOR(RING_HAS_UNCONSUMED_RESPONSES(&tx), 5000))
			return false;
		netif_tx_response_t *rsp = RING_GET_RESPONSE(&tx, tx.rsp_cons);
		ok = ok && rsp->status == NETIF_RSP_OKAY;
		tx.rsp_cons++;
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

static void echo_case(void)
{
	KIT_CHECK(port, "not connected");
	uint64_t echoed = 0;
	long largest = 0;
	for (;;) {
		long n = receive(60000);
		KIT_CHECK(n != 0, "nothing came for 60 s (%llu echoed)", (unsigned long long)echoed);
		KIT_CHECK(n > 0, "an rx response was an error");
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
}

static void close_case(void)
{
	char path[128];
	KIT_CHECK(xs_node_write(front, "state", "6", &r), "write state");
	kit_snprintf(path, sizeof path, "%s/state", back);
	KIT_CHECK(xs_wait_for(path, "6", 20000, &r), "backend not Closed (%s)", r.data);
	KIT_CHECK(KIT_WAIT_FOR(ungrant(REF_TX_RING) && ungrant(REF_RX_RING), 10000), "rings still mapped");
	for (unsigned int i = 0; i < RX_BUFFERS; i++)
		KIT_CHECK(ungrant(REF_RX + i), "rx buffer %u still mapped", i);
	xen_evtchn_close(port);
}

void kit_main(void)
{
	kit_cmdline_u64("gfn-high", &gfn_high);
	kit_cmdline_u64("echoes", &echoes_wanted);
	xen_require();
	domid = xen_own_domid();
	kit_case("probe", probe_case);
	kit_case("connect", connect_case);
	kit_case("echo", echo_case);
	kit_case("close", close_case);
}

#include "xenstore.h"

static volatile struct xenstore_domain_interface *ring;
static evtchn_port_t port;
static uint32_t next_req_id = 1;

/* Watch events received while waiting for a reply. */
#define EVENT_SLOTS 16
static struct {
	char path[256], token[64];
} events[EVENT_SLOTS];
static int event_head, event_count;

long xs_init(void)
{
	uint64_t pfn = 0, evtchn = 0;
	long rc = xen_hvm_get_param(HVM_PARAM_STORE_PFN, &pfn);
	if (rc)
		return rc;
	rc = xen_hvm_get_param(HVM_PARAM_STORE_EVTCHN, &evtchn);
	if (rc)
		return rc;
	ring = (volatile struct xenstore_domain_interface *)(uintptr_t)(pfn << 12);
	port = (evtchn_port_t)evtchn;
	return 0;
}

volatile struct xenstore_domain_interface *xs_ring(void) { return ring; }
evtchn_port_t xs_port(void) { return port; }
void xs_set_port(evtchn_port_t p) { port = p; }

static bool put(const void *data, uint32_t len)
{
	const char *p = data;
	for (uint32_t done = 0; done < len;) {
		XENSTORE_RING_IDX prod = ring->req_prod;
		if (!KIT_WAIT_FOR(prod - ring->req_cons < XENSTORE_RING_SIZE, 2000))
			return false;
		while (done < len && prod - ring->req_cons < XENSTORE_RING_SIZE)
			ring->req[MASK_XENSTORE_IDX(prod++)] = p[done++];
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		ring->req_prod = prod;
		xen_evtchn_send(port);
	}
	return true;
}

static bool get(void *data, uint32_t len, uint32_t ms)
{
	char *p = data;
	for (uint32_t done = 0; done < len;) {
		XENSTORE_RING_IDX cons = ring->rsp_cons;
		if (!KIT_WAIT_FOR(ring->rsp_prod != cons, ms))
			return false;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		while (done < len && cons != ring->rsp_prod)
			p[done++] = ring->rsp[MASK_XENSTORE_IDX(cons++)];
		ring->rsp_cons = cons;
		xen_evtchn_send(port);
	}
	return true;
}

static void keep_event(const struct xs_reply *r)
{
	if (event_count == EVENT_SLOTS)
		return;
	int slot = (event_head + event_count++) % EVENT_SLOTS;
	size_t plen = strlen(r->data);
	kit_snprintf(events[slot].path, sizeof events[slot].path, "%s", r->data);
	kit_snprintf(events[slot].token, sizeof events[slot].token, "%s", plen + 1 < r->len ? r->data + plen + 1 : "");
}

/* One message off the response ring. */
static bool receive(struct xs_reply *r, uint32_t *req_id, uint32_t ms)
{
	struct xsd_sockmsg h;
	if (!get(&h, sizeof h, ms) || h.len > XENSTORE_PAYLOAD_MAX || !get(r->data, h.len, 2000))
		return false;
	r->type = h.type;
	r->len = h.len;
	r->data[h.len] = 0;
	*req_id = h.req_id;
	return true;
}

bool xs_request(uint32_t type, uint32_t tx, int n, const char *const *parts, bool raw_last, struct xs_reply *r)
{
	uint32_t len = 0;
	for (int i = 0; i < n; i++)
		len += strlen(parts[i]) + (raw_last && i == n - 1 ? 0 : 1);
	struct xsd_sockmsg h = { type, next_req_id++, tx, len };
	if (!put(&h, sizeof h))
		return false;
	for (int i = 0; i < n; i++)
		if (!put(parts[i], strlen(parts[i]) + (raw_last && i == n - 1 ? 0 : 1)))
			return false;
	for (;;) {
		uint32_t id;
		if (!receive(r, &id, 2000))
			return false;
		if (r->type == XS_WATCH_EVENT) {
			keep_event(r);
			continue;
		}
		if (id == h.req_id)
			return true;
	}
}

bool xs_read(uint32_t tx, const char *path, struct xs_reply *r)
{
	const char *parts[] = { path };
	return xs_request(XS_READ, tx, 1, parts, false, r) && r->type != XS_ERROR;
}

bool xs_write(uint32_t tx, const char *path, const char *value, struct xs_reply *r)
{
	const char *parts[] = { path, value };
	return xs_request(XS_WRITE, tx, 2, parts, true, r) && r->type != XS_ERROR;
}

bool xs_node_read(const char *dir, const char *key, struct xs_reply *r)
{
	char path[128];
	kit_snprintf(path, sizeof path, "%s/%s", dir, key);
	return xs_read(0, path, r);
}

bool xs_node_write(const char *dir, const char *key, const char *value, struct xs_reply *r)
{
	char path[128];
	kit_snprintf(path, sizeof path, "%s/%s", dir, key);
	return xs_write(0, path, value, r);
}

bool xs_wait_for(const char *path, const char *want, uint32_t ms, struct xs_reply *r)
{
	uint64_t end = rdtsc() + (uint64_t)ms * KIT_TSC_PER_MS;
	do {
		if (xs_read(0, path, r) && !strcmp(r->data, want))
			return true;
		kit_delay_ms(5);
	} while (rdtsc() < end);
	return false;
}

bool xs_next_event(uint32_t ms, char *path, size_t path_size, char *token, size_t token_size)
{
	if (event_count == 0) {
		static struct xs_reply r;
		uint32_t id;
		for (;;) {
			if (!receive(&r, &id, ms))
				return false;
			if (r.type == XS_WATCH_EVENT) {
				keep_event(&r);
				break;
			}
		}
	}
	kit_snprintf(path, path_size, "%s", events[event_head].path);
	kit_snprintf(token, token_size, "%s", events[event_head].token);
	event_head = (event_head + 1) % EVENT_SLOTS;
	event_count--;
	return true;
}

void xs_drop_events(void)
{
	event_count = 0;
}

bool xs_reconnect(void)
{
	ring->connection = XENSTORE_RECONNECT;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	xen_evtchn_send(port);
	bool ok = KIT_WAIT_FOR(ring->connection == XENSTORE_CONNECTED, 2000);
	event_count = 0;
	return ok;
}

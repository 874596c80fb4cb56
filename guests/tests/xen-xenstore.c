/* XenStore over the guest's ring, as a kernel's xenbus driver uses it: the
 * toolstack's nodes for this domain, reads and writes with their permission
 * rules, directories, watches, transactions that commit and that conflict,
 * errors, a value that wraps the rings, and the reconnection handshake.
 * With host-watch=1 on the cmdline, a last case waits (20 s at most) for the
 * host to write data/from-host through the store's socket. */
#include "../kit/kit.h"
#include "../common/xenstore.h"

static struct xs_reply r;
static long domid;
static char dom_path[64];

#define EXPECT_OK(call, ...)                                                                                 \
	do {                                                                                                 \
		if (!(call)) {                                                                               \
			char what_[96];                                                                      \
			kit_snprintf(what_, sizeof what_, __VA_ARGS__);                                      \
			kit_fail("%s: %s", what_, r.type == XS_ERROR ? r.data : "no reply");                 \
			return;                                                                              \
		}                                                                                            \
	} while (0)
#define EXPECT_ERROR(call, name, ...)                                                                        \
	do {                                                                                                 \
		bool ok_ = (call);                                                                           \
		if (ok_ || r.type != XS_ERROR || strcmp(r.data, name)) {                                     \
			char what_[96];                                                                      \
			kit_snprintf(what_, sizeof what_, __VA_ARGS__);                                      \
			kit_fail("%s: %s \"%s\", expected %s", what_, ok_ ? "ok" : "error", r.data, name);   \
			return;                                                                              \
		}                                                                                            \
	} while (0)

static bool request1(uint32_t type, uint32_t tx, const char *a)
{
	const char *parts[] = { a };
	return xs_request(type, tx, 1, parts, false, &r) && r.type != XS_ERROR;
}

static bool request2(uint32_t type, uint32_t tx, const char *a, const char *b)
{
	const char *parts[] = { a, b };
	return xs_request(type, tx, 2, parts, false, &r) && r.type != XS_ERROR;
}

/* Is `name` among the NUL-separated entries of a DIRECTORY reply? */
static bool listed(const char *name)
{
	for (uint32_t at = 0; at < r.len; at += strlen(r.data + at) + 1)
		if (!strcmp(r.data + at, name))
			return true;
	return false;
}

static void setup_case(void)
{
	XEN_EXPECT_RC(xs_init(), 0, "store params");
	volatile struct xenstore_domain_interface *ring = xs_ring();
	KIT_CHECK(ring->server_features == (XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR),
		  "server features 0x%x", ring->server_features);
	KIT_CHECK(ring->connection == XENSTORE_CONNECTED, "connection %u", ring->connection);
	domid = xen_own_domid();
	kit_snprintf(dom_path, sizeof dom_path, "/local/domain/%ld", domid);
	kit_printf("KIT-XEN xenstore pfn=0x%lx port=%u domid=%ld\n", (unsigned long)((uintptr_t)ring >> 12), xs_port(), domid);
}

static void toolstack_nodes_case(void)
{
	char want[16];
	kit_snprintf(want, sizeof want, "%ld", domid);
	EXPECT_OK(xs_read(0, "domid", &r), "read domid");
	KIT_CHECK(!strcmp(r.data, want), "domid \"%s\"", r.data);
	EXPECT_OK(request1(XS_GET_DOMAIN_PATH, 0, want), "GET_DOMAIN_PATH");
	KIT_CHECK(!strcmp(r.data, dom_path), "domain path \"%s\"", r.data);
	EXPECT_OK(xs_read(0, "name", &r), "read name");
	KIT_CHECK(r.len > 0, "empty name");
	uint64_t pfn = 0, port = 0;
	xen_hvm_get_param(HVM_PARAM_STORE_PFN, &pfn);
	xen_hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &port);
	kit_snprintf(want, sizeof want, "%llu", U64(pfn));
	EXPECT_OK(xs_read(0, "store/ring-ref", &r), "read store/ring-ref");
	KIT_CHECK(!strcmp(r.data, want), "store/ring-ref \"%s\", STORE_PFN %s", r.data, want);
	kit_snprintf(want, sizeof want, "%llu", U64(port));
	EXPECT_OK(xs_read(0, "console/port", &r), "read console/port");
	KIT_CHECK(!strcmp(r.data, want), "console/port \"%s\", CONSOLE_EVTCHN %s", r.data, want);
	EXPECT_OK(xs_read(0, "cpu/0/availability", &r), "read cpu/0/availability");
	KIT_CHECK(!strcmp(r.data, "online"), "cpu 0 \"%s\"", r.data);
	EXPECT_OK(request1(XS_DIRECTORY, 0, "control"), "DIRECTORY control");
	KIT_CHECK(listed("shutdown") && listed("platform-feature-xs_reset_watches"), "control/ lacks toolstack nodes");
}

static void permissions_case(void)
{
	EXPECT_ERROR(xs_write(0, "name", "renamed", &r), "EACCES", "write name (the toolstack's)");
	EXPECT_ERROR(xs_write(0, "domid", "7", &r), "EACCES", "write domid");
	EXPECT_ERROR(xs_read(0, "/local/domain/0/name", &r), "EACCES", "read domain 0's name");
	EXPECT_OK(xs_write(0, "control/feature-poweroff", "1", &r), "write control/feature-poweroff (the guest's)");
	EXPECT_OK(request1(XS_GET_PERMS, 0, "data"), "GET_PERMS data");
	char want[16];
	kit_snprintf(want, sizeof want, "n%ld", domid);
	KIT_CHECK(!strcmp(r.data, want), "data perms \"%s\", expected %s", r.data, want);
}

static void read_write_case(void)
{
	EXPECT_OK(xs_write(0, "data/kit/greeting", "hello", &r), "write data/kit/greeting");
	EXPECT_OK(xs_read(0, "data/kit/greeting", &r), "read it back");
	KIT_CHECK(r.len == 5 && !strcmp(r.data, "hello"), "read \"%s\" (%u bytes)", r.data, r.len);
	char abs[96];
	kit_snprintf(abs, sizeof abs, "%s/data/kit/greeting", dom_path);
	EXPECT_OK(xs_read(0, abs, &r), "read by absolute path");
	EXPECT_OK(request1(XS_MKDIR, 0, "data/kit/empty"), "MKDIR");
	EXPECT_OK(request1(XS_DIRECTORY, 0, "data/kit"), "DIRECTORY");
	KIT_CHECK(listed("greeting") && listed("empty"), "data/kit lists neither greeting nor empty");
	EXPECT_OK(request1(XS_RM, 0, "data/kit/greeting"), "RM");
	EXPECT_ERROR(xs_read(0, "data/kit/greeting", &r), "ENOENT", "read after RM");
	static char big[2001];
	for (int i = 0; i < 2000; i++)
		big[i] = 'a' + i % 26;
	EXPECT_OK(xs_write(0, "data/kit/big", big, &r), "write 2000 bytes");
	EXPECT_OK(xs_read(0, "data/kit/big", &r), "read 2000 bytes");
	KIT_CHECK(r.len == 2000 && !memcmp(r.data, big, 2000), "2000-byte value came back as %u bytes", r.len);
}

static void watch_case(void)
{
	char path[256], token[64];
	xs_drop_events();
	EXPECT_OK(request2(XS_WATCH, 0, "data/w", "tok1"), "WATCH data/w");
	KIT_CHECK(xs_next_event(1000, path, sizeof path, token, sizeof token), "no event on registration");
	KIT_CHECK(!strcmp(path, "data/w") && !strcmp(token, "tok1"), "registration event %s %s", path, token);
	EXPECT_OK(xs_write(0, "data/w/x", "1", &r), "write data/w/x");
	KIT_CHECK(xs_next_event(1000, path, sizeof path, token, sizeof token), "no event for a write below the watch");
	KIT_CHECK(!strcmp(path, "data/w/x") && !strcmp(token, "tok1"), "event %s %s", path, token);
	EXPECT_OK(request2(XS_UNWATCH, 0, "data/w", "tok1"), "UNWATCH");
	EXPECT_OK(xs_write(0, "data/w/y", "2", &r), "write after UNWATCH");
	KIT_CHECK(!xs_next_event(100, path, sizeof path, token, sizeof token), "event %s after UNWATCH", path);
	EXPECT_OK(request2(XS_WATCH, 0, "@introduceDomain", "tok2"), "WATCH @introduceDomain");
	KIT_CHECK(xs_next_event(1000, path, sizeof path, token, sizeof token) && !strcmp(path, "@introduceDomain"),
		  "no registration event for @introduceDomain");
	EXPECT_OK(request2(XS_UNWATCH, 0, "@introduceDomain", "tok2"), "UNWATCH @introduceDomain");
}

static void transaction_case(void)
{
	EXPECT_OK(request1(XS_TRANSACTION_START, 0, ""), "TRANSACTION_START");
	uint32_t tx = 0;
	for (const char *p = r.data; *p; p++)
		tx = tx * 10 + (uint32_t)(*p - '0');
	KIT_CHECK(tx != 0, "transaction id \"%s\"", r.data);
	EXPECT_OK(xs_write(tx, "data/t/a", "in-tx", &r), "write in the transaction");
	EXPECT_ERROR(xs_read(0, "data/t/a", &r), "ENOENT", "read outside before commit");
	EXPECT_OK(xs_read(tx, "data/t/a", &r), "read inside");
	EXPECT_OK(request1(XS_TRANSACTION_END, tx, "T"), "commit");
	EXPECT_OK(xs_read(0, "data/t/a", &r), "read after commit");
	KIT_CHECK(!strcmp(r.data, "in-tx"), "committed value \"%s\"", r.data);

	EXPECT_OK(request1(XS_TRANSACTION_START, 0, ""), "second TRANSACTION_START");
	tx = 0;
	for (const char *p = r.data; *p; p++)
		tx = tx * 10 + (uint32_t)(*p - '0');
	EXPECT_OK(xs_read(tx, "data/t/a", &r), "read in the transaction");
	EXPECT_OK(xs_write(0, "data/t/a", "outside", &r), "write outside meanwhile");
	EXPECT_OK(xs_write(tx, "data/t/a", "inside", &r), "write in the transaction");
	EXPECT_ERROR(request1(XS_TRANSACTION_END, tx, "T"), "EAGAIN", "commit after a conflicting write");
	EXPECT_OK(xs_read(0, "data/t/a", &r), "read after the failed commit");
	KIT_CHECK(!strcmp(r.data, "outside"), "value \"%s\" after the failed commit", r.data);
	EXPECT_ERROR(xs_read(12345, "data/t/a", &r), "ENOENT", "read in a transaction that does not exist");
}

static void errors_case(void)
{
	EXPECT_ERROR(xs_read(0, "data//x", &r), "EINVAL", "read data//x");
	EXPECT_ERROR(xs_write(0, "@foo", "1", &r), "EINVAL", "write @foo");
	EXPECT_ERROR(request1(99, 0, "x"), "ENOSYS", "type 99");
	EXPECT_ERROR(request1(XS_INTRODUCE, 0, "5"), "EACCES", "INTRODUCE from a domU");
}

static void reconnect_case(void)
{
	char path[256], token[64];
	EXPECT_OK(request2(XS_WATCH, 0, "data/r", "before"), "WATCH before reconnecting");
	KIT_CHECK(xs_next_event(1000, path, sizeof path, token, sizeof token), "no registration event");
	KIT_CHECK(xs_reconnect(), "the server did not complete the reconnection");
	volatile struct xenstore_domain_interface *ring = xs_ring();
	KIT_CHECK(ring->req_cons == 0 && ring->req_prod == 0 && ring->rsp_cons == 0 && ring->rsp_prod == 0,
		  "indexes %u %u %u %u after reconnecting", ring->req_cons, ring->req_prod, ring->rsp_cons, ring->rsp_prod);
	EXPECT_OK(xs_write(0, "data/r/x", "1", &r), "write after reconnecting");
	KIT_CHECK(!xs_next_event(100, path, sizeof path, token, sizeof token), "the old session's watch fired (%s)", path);
	EXPECT_OK(xs_read(0, "data/t/a", &r), "the store kept its nodes");
}

/* The guest closes its store port and binds domain 0's port again from another of its own, as a
 * kernel may: the store serves on over the new port, the same session. */
static void rebind_case(void)
{
	struct evtchn_status st;
	evtchn_port_t old = xs_port(), fresh = 0;
	KIT_CHECK(xen_evtchn_status_is(old, EVTCHNSTAT_interdomain, &st) && st.u.interdomain.dom == 0, "store port %u is not bound to domain 0", old);
	evtchn_port_t remote = st.u.interdomain.port;
	long rc = xen_evtchn_close(old);
	KIT_CHECK(rc == 0, "close the store port: %ld %s", XEN_ERR(rc));
	/* A port allocated meanwhile takes the old number (ports are handed out lowest first), so the new binding gets another. */
	evtchn_port_t filler = 0;
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, 0, &filler);
	KIT_CHECK(rc == 0, "alloc_unbound: %ld %s", XEN_ERR(rc));
	rc = xen_evtchn_bind_interdomain(0, remote, &fresh);
	KIT_CHECK(rc == 0 && fresh != 0 && fresh != old, "bind_interdomain(0, %u): %ld %s, port %u (was %u)", remote, XEN_ERR(rc), fresh, old);
	xs_set_port(fresh);
	xen_evtchn_close(filler);
	for (int i = 0; i < 20; i++)
		EXPECT_OK(xs_write(0, "data/rebind", "1", &r), "write %d after rebinding to port %u", i, fresh);
	EXPECT_OK(xs_read(0, "data/t/a", &r), "the session kept its nodes");
}

static void host_watch_case(void)
{
	char path[256], token[64];
	xs_drop_events();
	EXPECT_OK(request2(XS_WATCH, 0, "data/from-host", "host"), "WATCH data/from-host");
	KIT_CHECK(xs_next_event(1000, path, sizeof path, token, sizeof token), "no registration event");
	kit_printf("KIT-XEN waiting for the host\n");
	for (int tries = 0; tries < 20; tries++) {
		if (!xs_next_event(1000, path, sizeof path, token, sizeof token))
			continue;
		KIT_CHECK(!strcmp(path, "data/from-host") && !strcmp(token, "host"), "event %s %s", path, token);
		EXPECT_OK(xs_read(0, "data/from-host", &r), "read data/from-host");
		KIT_CHECK(!strcmp(r.data, "hello from the host"), "the host wrote \"%s\"", r.data);
		return;
	}
	kit_fail("no event from the host in 20 s");
}

void kit_main(void)
{
	xen_require();
	kit_case("setup", setup_case);
	kit_case("toolstack-nodes", toolstack_nodes_case);
	kit_case("permissions", permissions_case);
	kit_case("read-write", read_write_case);
	kit_case("watch", watch_case);
	kit_case("transaction", transaction_case);
	kit_case("errors", errors_case);
	kit_case("reconnect", reconnect_case);
	kit_case("rebind", rebind_case);
	char flag[4];
	if (kit_cmdline_get("host-watch", flag, sizeof flag) && !strcmp(flag, "1"))
		kit_case("host-watch", host_watch_case);
}

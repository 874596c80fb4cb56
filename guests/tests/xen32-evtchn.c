/* Event channels from 32-bit protected mode, polling (no upcall is set up):
 * the compat shared_info layout keeps 32 evtchn words of 32 bits (pending at
 * 0x800, mask at 0x880) and a 32-bit selector per vcpu_info. Ports above 31
 * are used so that word and selector bit differ from the native layout's. */
#include "../kit32/kit32.h"
#include "../common/xen.h"

_Static_assert(sizeof(xen_ulong_t) == 4, "compat xen_ulong_t");
_Static_assert(offsetof(struct shared_info, evtchn_pending) == 0x800, "compat evtchn_pending");
_Static_assert(offsetof(struct shared_info, evtchn_mask) == 0x880, "compat evtchn_mask");
_Static_assert(XEN_EVTCHN_2L_PORTS == 1024, "compat 2-level ports");

#define NWORDS XEN_EVTCHN_WORD_BITS
#define MIN_PORT 32 /* second word, selector bit 1 */
#define MAX_FILLERS 48

static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static volatile struct vcpu_info *vi;
static long own_domid = -1;
static evtchn_port_t pa, pb; /* loopback pair, both >= MIN_PORT */

/* Forget every event: pending bits, selector, upcall_pending. */
static void clear_events(void)
{
	for (unsigned w = 0; w < NWORDS; w++)
		sh->evtchn_pending[w] = 0;
	vi->evtchn_pending_sel = 0;
	vi->evtchn_upcall_pending = 0;
}

/* Exactly port p pending (word p/32, bit p%32), selector exactly bit p/32,
 * upcall_pending set. */
static bool delivered(evtchn_port_t p, const char *what)
{
	unsigned w = p / NWORDS;
	for (unsigned i = 0; i < NWORDS; i++) {
		uint32_t want = i == w ? 1u << (p % NWORDS) : 0;
		if (sh->evtchn_pending[i] != want) {
			kit_fail("%s: evtchn_pending[%u] = 0x%x, expected 0x%x (port %u)", what, i,
				 (unsigned)sh->evtchn_pending[i], want, p);
			return false;
		}
	}
	if (vi->evtchn_pending_sel != (1u << w) || vi->evtchn_upcall_pending != 1) {
		kit_fail("%s: selector 0x%x upcall_pending %u, expected 0x%x and 1 (port %u)", what,
			 (unsigned)vi->evtchn_pending_sel, vi->evtchn_upcall_pending, 1u << w, p);
		return false;
	}
	return true;
}

static void shinfo_case(void)
{
	long rc = xen_map_shared_info(shinfo_page);
	KIT_CHECK(rc == 0, "add_to_physmap(shared_info) = %ld %s", XEN_ERR(rc));
	sh = (volatile struct shared_info *)shinfo_page;
	vi = &sh->vcpu_info[0];
	own_domid = xen_own_domid();
	kit_printf("KIT-XEN own domid %ld\n", own_domid);
}

static void alloc_unbound_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t p = 0, q = 0;
	struct evtchn_status st;
	long rc = xen_evtchn_alloc_unbound(DOMID_SELF, 0, &p);
	KIT_CHECK(rc == 0, "alloc_unbound(DOMID_SELF, remote 0) = %ld %s", XEN_ERR(rc));
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &q);
	if (rc)
		kit_fail("alloc_unbound(DOMID_SELF, remote DOMID_SELF) = %ld %s", XEN_ERR(rc));
	else if (p < 1 || p >= XEN_EVTCHN_2L_PORTS || q < 1 || q >= XEN_EVTCHN_2L_PORTS || p == q)
		kit_fail("ports %u and %u", p, q);
	else if (xen_evtchn_status_is(p, EVTCHNSTAT_unbound, &st) && st.u.unbound.dom != 0)
		kit_fail("status(%u): unbound dom %u, expected 0", p, st.u.unbound.dom);
	else if (xen_evtchn_status_is(q, EVTCHNSTAT_unbound, &st) &&
		 (st.u.unbound.dom == DOMID_SELF || (own_domid >= 0 && st.u.unbound.dom != own_domid)))
		kit_fail("status(%u): unbound dom %u, expected our own domid %ld", q, st.u.unbound.dom, own_domid);
	xen_evtchn_close(p);
	if (q)
		xen_evtchn_close(q);
}

/* Fillers move the pair past port 31; send each way and read the bits. */
static void loopback_body(evtchn_port_t *fill, int *nfill)
{
	evtchn_port_t p = 0;
	long rc;
	while (*nfill < MAX_FILLERS) {
		rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p);
		KIT_CHECK(rc == 0, "alloc_unbound(DOMID_SELF, DOMID_SELF) = %ld %s", XEN_ERR(rc));
		if (p >= MIN_PORT && p < XEN_EVTCHN_2L_PORTS)
			break;
		fill[(*nfill)++] = p;
	}
	KIT_CHECK(p >= MIN_PORT, "no port above %u after %d allocations", MIN_PORT - 1, *nfill);
	pa = p;
	clear_events();
	rc = xen_evtchn_bind_interdomain(DOMID_SELF, pa, &pb);
	KIT_CHECK(rc == 0, "bind_interdomain(DOMID_SELF, %u) = %ld %s", pa, XEN_ERR(rc));
	kit_printf("KIT-XEN loopback ports a=%u b=%u\n", pa, pb);
	KIT_CHECK(pb != pa && pb < XEN_EVTCHN_2L_PORTS, "bind_interdomain gave port %u", pb);
	/* Xen marks the new port pending when binding. */
	if (!delivered(pb, "after bind_interdomain"))
		return;
	clear_events();
	XEN_EXPECT_RC(xen_evtchn_send(pa), 0, "send(%u)", pa);
	if (!delivered(pb, "send on a"))
		return;
	clear_events();
	XEN_EXPECT_RC(xen_evtchn_send(pb), 0, "send(%u)", pb);
	if (!delivered(pa, "send on b"))
		return;
	/* A second send while pending changes nothing. */
	vi->evtchn_pending_sel = 0;
	vi->evtchn_upcall_pending = 0;
	XEN_EXPECT_RC(xen_evtchn_send(pb), 0, "send(%u) while pending", pb);
	KIT_CHECK(vi->evtchn_pending_sel == 0 && vi->evtchn_upcall_pending == 0,
		  "send on an already pending port set selector 0x%x upcall_pending %u", (unsigned)vi->evtchn_pending_sel,
		  vi->evtchn_upcall_pending);
	clear_events();
}

static void loopback_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	evtchn_port_t fill[MAX_FILLERS];
	int nfill = 0;
	loopback_body(fill, &nfill);
	for (int i = 0; i < nfill; i++)
		xen_evtchn_close(fill[i]);
}

static void status_case(void)
{
	KIT_CHECK(pa && pb, "no loopback pair");
	struct evtchn_status st;
	for (int i = 0; i < 2; i++) {
		evtchn_port_t p = i ? pb : pa, peer = i ? pa : pb;
		if (!xen_evtchn_status_is(p, EVTCHNSTAT_interdomain, &st))
			return;
		KIT_CHECK(st.u.interdomain.port == peer && st.vcpu == 0 && st.u.interdomain.dom != DOMID_SELF &&
				  (own_domid < 0 || st.u.interdomain.dom == own_domid),
			  "status(%u): dom %u port %u vcpu %u, expected dom %ld port %u vcpu 0", p, st.u.interdomain.dom,
			  st.u.interdomain.port, st.vcpu, own_domid, peer);
	}
	evtchn_port_t ipi = 0, virq = 0;
	long rc = xen_evtchn_bind_ipi(0, &ipi);
	KIT_CHECK(rc == 0, "bind_ipi(0) = %ld %s", XEN_ERR(rc));
	rc = xen_evtchn_bind_virq(VIRQ_TIMER, 0, &virq);
	if (rc)
		kit_fail("bind_virq(VIRQ_TIMER, 0) = %ld %s", XEN_ERR(rc));
	else if (xen_evtchn_status_is(ipi, EVTCHNSTAT_ipi, &st) && st.vcpu != 0)
		kit_fail("status(IPI %u).vcpu %u", ipi, st.vcpu);
	else if (xen_evtchn_status_is(virq, EVTCHNSTAT_virq, &st) && (st.u.virq != VIRQ_TIMER || st.vcpu != 0))
		kit_fail("status(VIRQ %u): virq %u vcpu %u", virq, st.u.virq, st.vcpu);
	xen_evtchn_close(ipi);
	if (virq)
		xen_evtchn_close(virq);
	clear_events();
}

/* The mask lives at 0x880 in this layout: a masked send only sets pending;
 * unmask sets the selector and upcall_pending. */
static void masked_case(void)
{
	KIT_CHECK(pa && pb, "no loopback pair");
	unsigned w = pb / NWORDS;
	uint32_t bit = 1u << (pb % NWORDS);
	clear_events();
	xen_evtchn_set(sh->evtchn_mask, pb);
	KIT_CHECK(((volatile uint32_t *)(shinfo_page + 0x880))[w] & bit, "mask bit not at 0x880 + 4 * %u", w);
	XEN_EXPECT_RC(xen_evtchn_send(pa), 0, "send(%u) to masked %u", pa, pb);
	KIT_CHECK(sh->evtchn_pending[w] == bit, "masked: evtchn_pending[%u] = 0x%x, expected 0x%x", w,
		  (unsigned)sh->evtchn_pending[w], bit);
	KIT_CHECK(vi->evtchn_pending_sel == 0 && vi->evtchn_upcall_pending == 0,
		  "masked: selector 0x%x upcall_pending %u, expected 0 and 0", (unsigned)vi->evtchn_pending_sel,
		  vi->evtchn_upcall_pending);
	XEN_EXPECT_RC(xen_evtchn_unmask(pb), 0, "unmask(%u)", pb);
	KIT_CHECK(!(sh->evtchn_mask[w] & bit), "unmask left evtchn_mask[%u] = 0x%x", w, (unsigned)sh->evtchn_mask[w]);
	if (!delivered(pb, "after unmask"))
		return;
	/* Unmasking a port that isn't masked does nothing. */
	vi->evtchn_pending_sel = 0;
	vi->evtchn_upcall_pending = 0;
	XEN_EXPECT_RC(xen_evtchn_unmask(pb), 0, "second unmask(%u)", pb);
	KIT_CHECK(vi->evtchn_pending_sel == 0 && vi->evtchn_upcall_pending == 0,
		  "unmask of an unmasked port set selector 0x%x upcall_pending %u", (unsigned)vi->evtchn_pending_sel,
		  vi->evtchn_upcall_pending);
	clear_events();
}

static void close_case(void)
{
	KIT_CHECK(pa && pb, "no loopback pair");
	struct evtchn_status st;
	clear_events();
	XEN_EXPECT_RC(xen_evtchn_send(pa), 0, "send(%u)", pa);
	KIT_CHECK(xen_evtchn_test(sh->evtchn_pending, pb), "port %u not pending", pb);
	evtchn_port_t b = pb;
	pb = 0;
	XEN_EXPECT_RC(xen_evtchn_close(b), 0, "close(%u)", b);
	KIT_CHECK(!xen_evtchn_test(sh->evtchn_pending, b), "close(%u) left it pending", b);
	if (!xen_evtchn_status_is(b, EVTCHNSTAT_closed, &st) || !xen_evtchn_status_is(pa, EVTCHNSTAT_unbound, &st))
		return;
	KIT_CHECK(st.u.unbound.dom != DOMID_SELF && (own_domid < 0 || st.u.unbound.dom == own_domid),
		  "peer %u unbound for dom %u, expected %ld", pa, st.u.unbound.dom, own_domid);
	XEN_EXPECT_RC(xen_evtchn_send(b), -XEN_EINVAL, "send(closed %u)", b);
	XEN_EXPECT_RC(xen_evtchn_close(b), -XEN_EINVAL, "second close(%u)", b);
	XEN_EXPECT_RC(xen_evtchn_send(pa), 0, "send(unbound %u)", pa);
	KIT_CHECK(!xen_evtchn_test(sh->evtchn_pending, pa) && !xen_evtchn_test(sh->evtchn_pending, b),
		  "send on an unbound port made something pending");
	evtchn_port_t a = pa;
	pa = 0;
	XEN_EXPECT_RC(xen_evtchn_close(a), 0, "close(%u)", a);
	xen_evtchn_status_is(a, EVTCHNSTAT_closed, &st);
	clear_events();
}

static void errors_case(void)
{
	KIT_CHECK(sh, "shared_info not mapped");
	struct evtchn_status st;
	evtchn_port_t dummy;
	static const evtchn_port_t bad[] = { 1024, 1025, 4095, 4096, 0xffffffffu };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		evtchn_port_t p = bad[i];
		XEN_EXPECT_RC(xen_evtchn_status(DOMID_SELF, p, &st), -XEN_EINVAL, "status(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_send(p), -XEN_EINVAL, "send(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_unmask(p), -XEN_EINVAL, "unmask(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_close(p), -XEN_EINVAL, "close(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_bind_vcpu(p, 0), -XEN_EINVAL, "bind_vcpu(%u, 0)", p);
	}
	if (!xen_evtchn_status_is(0, EVTCHNSTAT_closed, &st))
		return;
	XEN_EXPECT_RC(xen_evtchn_send(0), -XEN_EINVAL, "send(0)");
	XEN_EXPECT_RC(xen_evtchn_close(0), -XEN_EINVAL, "close(0)");
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(1, &dummy), -XEN_ENOENT, "bind_ipi(vcpu 1 of 1)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 1, &dummy), -XEN_EINVAL, "bind_virq(VIRQ_CONSOLE, vcpu 1)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(NR_VIRQS, 0, &dummy), -XEN_EINVAL, "bind_virq(NR_VIRQS)");
	XEN_EXPECT_RC(HYPERVISOR_event_channel_op(100, &st), -XEN_ENOSYS, "event_channel_op(100)");
}

void kit_main(void)
{
	xen_require();
	kit_case("map-shared-info", shinfo_case);
	kit_case("alloc-unbound", alloc_unbound_case);
	kit_case("loopback-compat", loopback_case);
	kit_case("status", status_case);
	kit_case("masked-compat", masked_case);
	kit_case("close", close_case);
	kit_case("errors", errors_case);
	if (pa)
		xen_evtchn_close(pa);
	if (pb)
		xen_evtchn_close(pb);
}

/* Event channels, 2-level ABI, native layout, on 2 vCPUs: EVTCHNOP_* with
 * good and bad arguments, and delivery through shared_info to an upcall
 * handler that scans the bitmaps as a guest kernel does (the delivery cases
 * and the handler are common/evtchn-test.c, which xen32-upcall runs on the
 * compat ABI). Run with --vcpus 2. */
#include "../kit/kit.h"
#include "../common/evtchn-test.h"

static domid_t other_domid = 5; /* no such domain */

/* ---- cases ---- */
static void shinfo_case(void)
{
	evt_map_shared_info_case();
	if (!evt_sh)
		return;
	if (evt_own_domid == other_domid)
		other_domid++;
	kit_printf("KIT-XEN own domid %ld, nonexistent domid %u, %u ports of %u bits\n", evt_own_domid, other_domid,
		   EVT_NPORTS, XEN_EVTCHN_WORD_BITS);
}

static void alloc_unbound_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	evtchn_port_t p = 0, q = 0, r = 0;
	struct evtchn_status st;
	/* remote DOMID_SELF is stored as the caller's own id (Xen). */
	long rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p);
	KIT_CHECK(rc == 0, "alloc_unbound(DOMID_SELF, remote DOMID_SELF) = %ld %s", XEN_ERR(rc));
	kit_printf("KIT-XEN alloc_unbound port %u\n", p);
	if (p < 1 || p >= EVT_NPORTS) {
		kit_fail("alloc_unbound gave port %u, expected 1..%u (port 0 is reserved)", p, EVT_NPORTS - 1);
		goto out;
	}
	if (!xen_evtchn_status_is(p, EVTCHNSTAT_unbound, &st) || !evt_own_domid_is(st.u.unbound.dom, "unbound remote"))
		goto out;
	if (st.vcpu != 0) {
		kit_fail("status(%u).vcpu %u, expected 0", p, st.vcpu);
		goto out;
	}
	/* dom may be our own id instead of DOMID_SELF. */
	if (evt_own_domid >= 0) {
		rc = xen_evtchn_alloc_unbound((domid_t)evt_own_domid, DOMID_SELF, &q);
		if (rc) {
			kit_fail("alloc_unbound(dom %ld = own id, remote DOMID_SELF) = %ld %s", evt_own_domid, XEN_ERR(rc));
			goto out;
		}
		if (q == p || q < 1 || q >= EVT_NPORTS) {
			kit_fail("second alloc_unbound gave port %u (first %u)", q, p);
			goto out;
		}
		if (!xen_evtchn_status_is(q, EVTCHNSTAT_unbound, &st) || !evt_own_domid_is(st.u.unbound.dom, "unbound remote"))
			goto out;
	}
	/* Xen doesn't look the remote domain up: a port may be offered to a
	 * domain that doesn't exist yet, e.g. to dom0 for a backend. */
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, 0, &r);
	if (rc) {
		kit_fail("alloc_unbound(DOMID_SELF, remote 0) = %ld %s, expected 0 (Xen doesn't check remote_dom)", XEN_ERR(rc));
		goto out;
	}
	if (xen_evtchn_status_is(r, EVTCHNSTAT_unbound, &st) && st.u.unbound.dom != 0)
		kit_fail("status(%u): unbound dom %u, expected 0", r, st.u.unbound.dom);
out:
	if (p)
		xen_evtchn_close(p);
	if (q)
		xen_evtchn_close(q);
	if (r)
		xen_evtchn_close(r);
}

static void bind_vcpu_body(evtchn_port_t *ports)
{
	evtchn_port_t *a = &ports[0], *b = &ports[1], *ipi = &ports[2], *u = &ports[3];
	const char *what = "";
	struct evtchn_status st;
	long rc = evt_loopback(a, b, NULL, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	/* Move b to vCPU 1: both vCPUs may take it for a moment. */
	xen_evtchn_set(evt_mine[1], *b);
	rc = xen_evtchn_bind_vcpu(*b, 1);
	KIT_CHECK(rc == 0, "bind_vcpu(loopback port %u, 1) = %ld %s", *b, XEN_ERR(rc));
	evt_own(*b, 1);
	if (!xen_evtchn_status_is(*b, EVTCHNSTAT_interdomain, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "status(%u).vcpu %u after bind_vcpu 1", *b, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_send(*a), 0, "send(%u)", *a);
	KIT_CHECK(KIT_WAIT_FOR(evt_got[1][*b] >= 1, 1000), "event on %u did not arrive on vCPU 1 (vCPU 0 got %u, pending %d)", *b,
		  evt_got[0][*b], xen_evtchn_test(evt_sh->evtchn_pending, *b));
	KIT_CHECK(kit_ap_call(evt_ap_send, *b, &rc), "vCPU 1 did not answer");
	KIT_CHECK(rc == 0, "vCPU 1: send(%u) = %ld %s", *b, XEN_ERR(rc));
	KIT_CHECK(KIT_WAIT_FOR(evt_got[0][*a] >= 1, 1000), "event on %u (still vCPU 0) did not arrive", *a);
	kit_delay_ms(EVT_SETTLE_MS);
	KIT_CHECK(evt_got[1][*b] == 1 && evt_got[0][*b] == 0 && evt_got[0][*a] == 1 && evt_got[1][*a] == 0,
		  "counts b: vCPU1 %u vCPU0 %u, a: vCPU0 %u vCPU1 %u; expected 1 0 1 0", evt_got[1][*b], evt_got[0][*b],
		  evt_got[0][*a], evt_got[1][*a]);
	/* An IPI port stays on its vCPU. */
	rc = evt_bind_ipi_on(0, ipi);
	KIT_CHECK(rc == 0, "bind_ipi(vcpu 0) = %ld %s", XEN_ERR(rc));
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*ipi, 1), -XEN_EINVAL, "bind_vcpu(IPI port %u, 1)", *ipi);
	if (!xen_evtchn_status_is(*ipi, EVTCHNSTAT_ipi, &st))
		return;
	KIT_CHECK(st.vcpu == 0, "IPI port %u moved to vCPU %u by a refused bind_vcpu", *ipi, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*a, 99), -XEN_ENOENT, "bind_vcpu(%u, vcpu 99)", *a);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*a, (uint32_t)kit_ncpus()), -XEN_ENOENT, "bind_vcpu(%u, vcpu %d = nr_vcpus)", *a,
		  kit_ncpus());
	/* An unbound port can be moved too. */
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, u);
	KIT_CHECK(rc == 0, "alloc_unbound = %ld %s", XEN_ERR(rc));
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*u, 1), 0, "bind_vcpu(unbound port %u, 1)", *u);
	if (!xen_evtchn_status_is(*u, EVTCHNSTAT_unbound, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "unbound port %u: status vcpu %u after bind_vcpu 1", *u, st.vcpu);
}

static void bind_vcpu_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(evt_online >= 2, "needs 2 vCPUs");
	evtchn_port_t ports[4] = { 0, 0, 0, 0 };
	bind_vcpu_body(ports);
	evt_close_ports(ports, 4);
}

static void virq_body(evtchn_port_t *ports)
{
	evtchn_port_t *t0 = &ports[0], *t1 = &ports[1], *c = &ports[2];
	struct evtchn_status st;
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, t0), 0, "bind_virq(VIRQ_TIMER, vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 1, t1), 0, "bind_virq(VIRQ_TIMER, vcpu 1)");
	kit_printf("KIT-XEN VIRQ_TIMER ports %u (vCPU 0), %u (vCPU 1)\n", *t0, *t1);
	KIT_CHECK(*t0 != *t1, "both VIRQ_TIMER bindings got port %u", *t0);
	evtchn_port_t dummy;
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, &dummy), -XEN_EEXIST, "second bind_virq(VIRQ_TIMER, vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 1, &dummy), -XEN_EINVAL, "bind_virq(VIRQ_CONSOLE (global), vcpu 1)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(NR_VIRQS, 0, &dummy), -XEN_EINVAL, "bind_virq(%u = NR_VIRQS)", NR_VIRQS);
	XEN_EXPECT_RC(xen_evtchn_bind_virq(0xffffffffu, 0, &dummy), -XEN_EINVAL, "bind_virq(0xffffffff)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 99, &dummy), -XEN_ENOENT, "bind_virq(VIRQ_TIMER, vcpu 99)");
	for (int i = 0; i < 2; i++) {
		evtchn_port_t p = i ? *t1 : *t0;
		if (!xen_evtchn_status_is(p, EVTCHNSTAT_virq, &st))
			return;
		KIT_CHECK(st.u.virq == VIRQ_TIMER && st.vcpu == (uint32_t)i, "status(%u): virq %u vcpu %u, expected %u and %d",
			  p, st.u.virq, st.vcpu, VIRQ_TIMER, i);
	}
	/* A global VIRQ binds on vCPU 0 once, and may then be moved. */
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 0, c), 0, "bind_virq(VIRQ_CONSOLE, vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_CONSOLE, 0, &dummy), -XEN_EEXIST, "second bind_virq(VIRQ_CONSOLE, vcpu 0)");
	if (!xen_evtchn_status_is(*c, EVTCHNSTAT_virq, &st))
		return;
	KIT_CHECK(st.u.virq == VIRQ_CONSOLE && st.vcpu == 0, "status(%u): virq %u vcpu %u, expected %u and 0", *c,
		  st.u.virq, st.vcpu, VIRQ_CONSOLE);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*c, 1), 0, "bind_vcpu(VIRQ_CONSOLE port %u, 1)", *c);
	if (!xen_evtchn_status_is(*c, EVTCHNSTAT_virq, &st))
		return;
	KIT_CHECK(st.vcpu == 1, "VIRQ_CONSOLE port %u: vcpu %u after bind_vcpu 1", *c, st.vcpu);
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(*t0, 1), -XEN_EINVAL, "bind_vcpu(VIRQ_TIMER port %u, 1)", *t0);
	XEN_EXPECT_RC(xen_evtchn_send(*t0), -XEN_EINVAL, "send(VIRQ port %u)", *t0);
	/* Closing frees the VIRQ for binding again. */
	evtchn_port_t old = *t0;
	*t0 = 0;
	XEN_EXPECT_RC(xen_evtchn_close(old), 0, "close(VIRQ_TIMER port %u)", old);
	XEN_EXPECT_RC(xen_evtchn_bind_virq(VIRQ_TIMER, 0, t0), 0, "bind_virq(VIRQ_TIMER, vcpu 0) after closing its port");
	/* Last: on x86 every VIRQ_ARCH_* is global (arch_virq_is_global). */
	long rc = xen_evtchn_bind_virq(VIRQ_ARCH_1, 1, &dummy);
	if (rc == 0)
		xen_evtchn_close(dummy);
	KIT_CHECK(rc == -XEN_EINVAL, "bind_virq(VIRQ_ARCH_1, vcpu 1) = %ld %s, expected -EINVAL (x86: ARCH VIRQs are global)",
		  XEN_ERR(rc));
}

static void virq_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	KIT_CHECK(evt_online >= 2, "needs 2 vCPUs");
	evtchn_port_t ports[3] = { 0, 0, 0 };
	virq_body(ports);
	evt_close_ports(ports, 3);
}

static void close_body(evtchn_port_t *ports)
{
	evtchn_port_t *a = &ports[0], *b = &ports[1], *p = &ports[2];
	const char *what = "";
	struct evtchn_status st;
	long rc = evt_loopback(a, b, NULL, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	XEN_EXPECT_RC(evt_close_port(*a), 0, "close(%u)", *a);
	evtchn_port_t closed = *a;
	*a = 0;
	if (!xen_evtchn_status_is(closed, EVTCHNSTAT_closed, &st))
		return;
	/* The peer goes back to unbound, for us. */
	if (!xen_evtchn_status_is(*b, EVTCHNSTAT_unbound, &st) || !evt_own_domid_is(st.u.unbound.dom, "peer's unbound remote"))
		return;
	XEN_EXPECT_RC(xen_evtchn_send(closed), -XEN_EINVAL, "send(closed %u)", closed);
	XEN_EXPECT_RC(xen_evtchn_close(closed), -XEN_EINVAL, "second close(%u)", closed);
	/* Sending on the unbound peer is accepted and dropped. */
	XEN_EXPECT_RC(xen_evtchn_send(*b), 0, "send(unbound %u)", *b);
	kit_delay_ms(EVT_SETTLE_MS);
	KIT_CHECK(evt_got[0][*b] + evt_got[1][*b] + evt_got[0][closed] + evt_got[1][closed] == 0 &&
			  !xen_evtchn_test(evt_sh->evtchn_pending, *b) && !xen_evtchn_test(evt_sh->evtchn_pending, closed),
		  "send on an unbound port delivered something");
	/* A closed port in range: unmask answers 0 (Xen checks only the range). */
	XEN_EXPECT_RC(xen_evtchn_unmask(closed), 0, "unmask(closed %u)", closed);
	/* Closing clears a pending event. */
	rc = evt_bind_ipi_on(0, p);
	KIT_CHECK(rc == 0, "bind_ipi(vcpu 0) = %ld %s", XEN_ERR(rc));
	xen_evtchn_set(evt_sh->evtchn_mask, *p);
	XEN_EXPECT_RC(xen_evtchn_send(*p), 0, "send(masked %u)", *p);
	KIT_CHECK(xen_evtchn_test(evt_sh->evtchn_pending, *p), "masked port %u not pending after send", *p);
	evtchn_port_t q = *p;
	XEN_EXPECT_RC(evt_close_port(q), 0, "close(pending %u)", q);
	*p = 0;
	xen_evtchn_clear(evt_sh->evtchn_mask, q);
	KIT_CHECK(!xen_evtchn_test(evt_sh->evtchn_pending, q), "close(%u) left its pending bit set", q);
	XEN_EXPECT_RC(evt_close_port(*b), 0, "close(%u)", *b);
	q = *b;
	*b = 0;
	xen_evtchn_status_is(q, EVTCHNSTAT_closed, &st);
}

static void close_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	evtchn_port_t ports[3] = { 0, 0, 0 };
	close_body(ports);
	evt_close_ports(ports, 3);
}

static void errors_body(evtchn_port_t *ports)
{
	struct evtchn_status st;
	evtchn_port_t dummy;
	/* Port 0 is valid but reserved: reported closed, refused elsewhere;
	 * unmask checks only that the port is valid. */
	if (!xen_evtchn_status_is(0, EVTCHNSTAT_closed, &st))
		return;
	XEN_EXPECT_RC(xen_evtchn_send(0), -XEN_EINVAL, "send(0)");
	XEN_EXPECT_RC(xen_evtchn_close(0), -XEN_EINVAL, "close(0)");
	XEN_EXPECT_RC(xen_evtchn_bind_vcpu(0, 0), -XEN_EINVAL, "bind_vcpu(0, 0)");
	XEN_EXPECT_RC(xen_evtchn_unmask(0), 0, "unmask(0)");
	/* Out of range for the 2-level ABI. */
	static const evtchn_port_t bad[] = { EVT_NPORTS, EVT_NPORTS + 1, 0x10000, 0xffffffffu };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		evtchn_port_t p = bad[i];
		XEN_EXPECT_RC(xen_evtchn_status(DOMID_SELF, p, &st), -XEN_EINVAL, "status(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_send(p), -XEN_EINVAL, "send(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_unmask(p), -XEN_EINVAL, "unmask(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_close(p), -XEN_EINVAL, "close(%u)", p);
		XEN_EXPECT_RC(xen_evtchn_bind_vcpu(p, 0), -XEN_EINVAL, "bind_vcpu(%u, 0)", p);
		XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, p, &dummy), -XEN_EINVAL, "bind_interdomain(self, %u)", p);
	}
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(99, &dummy), -XEN_ENOENT, "bind_ipi(vcpu 99)");
	XEN_EXPECT_RC(xen_evtchn_bind_ipi((uint32_t)kit_ncpus(), &dummy), -XEN_ENOENT, "bind_ipi(vcpu %d = nr_vcpus)",
		  kit_ncpus());
	/* Other domains: none exist. */
	XEN_EXPECT_RC(xen_evtchn_alloc_unbound(other_domid, DOMID_SELF, &dummy), -XEN_ESRCH, "alloc_unbound(dom %u)",
		  other_domid);
	XEN_EXPECT_RC(xen_evtchn_status(other_domid, 1, &st), -XEN_ESRCH, "status(dom %u, port 1)", other_domid);
	XEN_EXPECT_RC(xen_evtchn_reset(other_domid), -XEN_ESRCH, "reset(dom %u)", other_domid);
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(other_domid, 1, &dummy), -XEN_ESRCH, "bind_interdomain(dom %u)",
		  other_domid);
	/* bind_interdomain needs an unbound port. */
	XEN_EXPECT_RC(xen_evtchn_bind_ipi(0, &ports[0]), 0, "bind_ipi(vcpu 0)");
	XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, ports[0], &dummy), -XEN_EINVAL, "bind_interdomain(IPI port %u)",
		  ports[0]);
	/* Argument pointers that don't translate. */
	static const int cmds[] = { EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_send,
				    EVTCHNOP_status, EVTCHNOP_alloc_unbound, EVTCHNOP_bind_ipi, EVTCHNOP_bind_vcpu,
				    EVTCHNOP_unmask, EVTCHNOP_reset };
	for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		XEN_EXPECT_RC(xen_hypercall(__HYPERVISOR_event_channel_op, (unsigned)cmds[i], KIT_UNMAPPED_VA, 0, 0, 0),
			  -XEN_EFAULT, "event_channel_op(%d, unmapped)", cmds[i]);
	XEN_EXPECT_RC(HYPERVISOR_event_channel_op(100, &st), -XEN_ENOSYS, "event_channel_op(100)");
	/* ... and one offered to another domain (alloc-unbound checks that Xen
	 * accepts remote 0; skipped here if it doesn't). */
	if (evt_own_domid != 0 && xen_evtchn_alloc_unbound(DOMID_SELF, 0, &ports[1]) == 0)
		XEN_EXPECT_RC(xen_evtchn_bind_interdomain(DOMID_SELF, ports[1], &dummy), -XEN_EINVAL,
			  "bind_interdomain(port %u offered to dom 0)", ports[1]);
	/* Last: a port in range that was never allocated. Xen's table grows in
	 * buckets of a few dozen ports as they are allocated; a port beyond
	 * them isn't valid: -EINVAL for every op (status included). */
	evtchn_port_t p = EVT_NPORTS - 1;
	XEN_EXPECT_RC(xen_evtchn_status(DOMID_SELF, p, &st), -XEN_EINVAL, "status(never allocated %u)", p);
	XEN_EXPECT_RC(xen_evtchn_send(p), -XEN_EINVAL, "send(never allocated %u)", p);
	XEN_EXPECT_RC(xen_evtchn_unmask(p), -XEN_EINVAL, "unmask(never allocated %u)", p);
	XEN_EXPECT_RC(xen_evtchn_close(p), -XEN_EINVAL, "close(never allocated %u)", p);
}

static void errors_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	evtchn_port_t ports[2] = { 0, 0 };
	errors_body(ports);
	evt_close_ports(ports, 2);
}

static void reset_case(void)
{
	KIT_CHECK(evt_sh, "shared_info not mapped");
	evtchn_port_t p[7];
	int n = 0;
	const char *what = "";
	long rc = evt_loopback(&p[0], &p[1], NULL, &what);
	KIT_CHECK(rc == 0, "%s = %ld %s", what, XEN_ERR(rc));
	n = 2;
	rc = evt_bind_ipi_on(0, &p[n]);
	KIT_CHECK(rc == 0, "bind_ipi(0) = %ld %s", XEN_ERR(rc));
	n++;
	if (evt_online >= 2) {
		rc = evt_bind_ipi_on(1, &p[n]);
		KIT_CHECK(rc == 0, "bind_ipi(1) = %ld %s", XEN_ERR(rc));
		n++;
	}
	rc = xen_evtchn_bind_virq(VIRQ_TIMER, 0, &p[n]);
	KIT_CHECK(rc == 0, "bind_virq(VIRQ_TIMER, 0) = %ld %s", XEN_ERR(rc));
	n++;
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &p[n]);
	KIT_CHECK(rc == 0, "alloc_unbound = %ld %s", XEN_ERR(rc));
	n++;
	/* One left pending (masked): reset closes it, which clears it. */
	xen_evtchn_set(evt_sh->evtchn_mask, p[2]);
	XEN_EXPECT_RC(xen_evtchn_send(p[2]), 0, "send(masked %u)", p[2]);
	rc = xen_evtchn_reset(DOMID_SELF);
	xen_evtchn_clear(evt_sh->evtchn_mask, p[2]);
	for (int i = 0; i < n; i++)
		evt_disown(p[i]);
	KIT_CHECK(rc == 0, "reset(DOMID_SELF) = %ld %s", XEN_ERR(rc));
	struct evtchn_status st;
	for (int i = 0; i < n; i++)
		if (!xen_evtchn_status_is(p[i], EVTCHNSTAT_closed, &st))
			return;
	KIT_CHECK(!xen_evtchn_test(evt_sh->evtchn_pending, p[2]), "reset left port %u pending", p[2]);
	if (!xen_evtchn_status_is(0, EVTCHNSTAT_closed, &st))
		return;
	/* Everything can be bound again, the VIRQ included. */
	evtchn_port_t v = 0, u = 0;
	rc = xen_evtchn_bind_virq(VIRQ_TIMER, 0, &v);
	KIT_CHECK(rc == 0, "bind_virq(VIRQ_TIMER, 0) after reset = %ld %s", XEN_ERR(rc));
	rc = xen_evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF, &u);
	xen_evtchn_close(v);
	KIT_CHECK(rc == 0, "alloc_unbound after reset = %ld %s", XEN_ERR(rc));
	xen_evtchn_close(u);
	KIT_CHECK(u >= 1, "alloc_unbound after reset gave port %u", u);
}

void kit_main(void)
{
	xen_require();
	evt_setup(1 /* 0 is reserved */, 200 /* storm */);
	kit_case("map-shared-info", shinfo_case);
	kit_case("start-vcpus", evt_start_case);
	sti();
	kit_case("alloc-unbound", alloc_unbound_case);
	kit_case("callback-vector", evt_callback_case);
	kit_case("upcall-vector", evt_upcall_vector_case);
	kit_case("loopback", evt_loopback_case);
	kit_case("bind-ipi", evt_ipi_case);
	kit_case("masked", evt_masked_case);
	kit_case("bind-vcpu", bind_vcpu_case);
	kit_case("bind-virq", virq_case);
	kit_case("close", close_case);
	kit_case("errors", errors_case);
	kit_case("storm", evt_storm_case);
	kit_case("reset", reset_case);
	cli();
	kit_printf("KIT-XEN upcalls: LAPIC %u,%u callback %u,%u\n", evt_upcalls[0], evt_upcalls[1], evt_callbacks[0],
		   evt_callbacks[1]);
}

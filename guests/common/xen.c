/* Xen guest library: detection, hypercall page, pvclock, wallclock. */
#include "xen.h"
#include "kitcpu.h"

struct xen_cpuid_info xen_cpuid;
uint8_t xen_hypercall_page[XEN_PAGE_SIZE] __attribute__((aligned(4096)));

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

uint32_t xen_cpuid_scan(void)
{
	memset(&xen_cpuid, 0, sizeof xen_cpuid);
	for (uint32_t n = 0; n <= 0xff; n++) {
		uint32_t leaf = XEN_CPUID_FIRST + n * 0x100, a, b, c, d;
		cpuid(leaf, 0, &a, &b, &c, &d);
		if (b != XEN_CPUID_SIGNATURE_EBX || c != XEN_CPUID_SIGNATURE_ECX || d != XEN_CPUID_SIGNATURE_EDX)
			continue;
		if (a < leaf + 2)
			continue;
		xen_cpuid.base = leaf;
		xen_cpuid.max_leaf = a;
		cpuid(leaf + 1, 0, &a, &b, &c, &d);
		xen_cpuid.version = a;
		cpuid(leaf + 2, 0, &a, &b, &c, &d);
		xen_cpuid.pages = a;
		xen_cpuid.msr = b;
		xen_cpuid.feat1 = c;
		xen_cpuid.feat2 = d;
		return leaf;
	}
	return 0;
}

void xen_install_hypercall_page(void)
{
	wrmsr(xen_cpuid.msr, (uint64_t)(uintptr_t)xen_hypercall_page);
}

bool xen_hypercall_page_filled(void)
{
	/* Every stub must hold code: a zero stub would run `add %al,(%rax)`. */
	for (unsigned nr = 0; nr < XEN_PAGE_SIZE / XEN_STUB_SIZE; nr++) {
		const uint8_t *s = xen_hypercall_page + nr * XEN_STUB_SIZE;
		bool any = false;
		for (unsigned i = 0; i < XEN_STUB_SIZE; i++)
			any |= s[i] != 0;
		if (!any)
			return false;
	}
	return true;
}

bool xen_setup(void)
{
	if (!xen_cpuid_scan()) {
		kit_printf("KIT-XEN no Xen signature in CPUID 0x40000000..0x4000ff00\n");
		return false;
	}
	kit_printf("KIT-XEN base=0x%x max=0x%x version=%u.%u pages=%u msr=0x%x\n", xen_cpuid.base, xen_cpuid.max_leaf,
		   xen_cpuid.version >> 16, xen_cpuid.version & 0xffff, xen_cpuid.pages, xen_cpuid.msr);
	if (xen_cpuid.pages < 1) {
		kit_printf("KIT-XEN no hypercall pages offered\n");
		return false;
	}
	xen_install_hypercall_page();
	if (!xen_hypercall_page_filled()) {
		kit_printf("KIT-XEN hypercall page not filled after wrmsr 0x%x\n", xen_cpuid.msr);
		return false;
	}
	return true;
}

void xen_require(void)
{
	if (!xen_setup())
		kit_abort("no usable Xen hypercall interface");
}

long xen_add_to_physmap(unsigned int space, unsigned long idx, unsigned long gfn)
{
	struct xen_add_to_physmap xatp;
	memset(&xatp, 0, sizeof xatp);
	xatp.domid = DOMID_SELF;
	xatp.space = space;
	xatp.idx = idx;
	xatp.gpfn = gfn;
	return HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
}

long xen_map_shared_info(const void *page)
{
	return xen_add_to_physmap(XENMAPSPACE_shared_info, 0, (unsigned long)((uintptr_t)page >> 12));
}

long xen_add_to_physmap_batch1(unsigned int space, unsigned long idx, unsigned long gfn, int *err)
{
	xen_ulong_t idxs[1] = { idx };
	xen_pfn_t gpfns[1] = { gfn };
	int errs[1] = { 0x7777 };
	struct xen_add_to_physmap_batch b;
	memset(&b, 0, sizeof b);
	b.domid = DOMID_SELF;
	b.space = space;
	b.size = 1;
	set_xen_guest_handle(b.idxs, idxs);
	set_xen_guest_handle(b.gpfns, gpfns);
	set_xen_guest_handle(b.errs, errs);
	long rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap_batch, &b);
	*err = errs[0];
	return rc;
}

long xen_memory_map(void *buffer, unsigned int *n)
{
	struct xen_memory_map mm;
	mm.nr_entries = *n;
	set_xen_guest_handle(mm.buffer, buffer);
	long rc = HYPERVISOR_memory_op(XENMEM_memory_map, &mm);
	*n = mm.nr_entries;
	return rc;
}

long xen_hvm_get_param(uint32_t index, uint64_t *value)
{
	struct xen_hvm_param p;
	memset(&p, 0, sizeof p);
	p.domid = DOMID_SELF;
	p.index = index;
	long rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);
	*value = p.value;
	return rc;
}

long xen_hvm_set_param(uint32_t index, uint64_t value)
{
	struct xen_hvm_param p;
	memset(&p, 0, sizeof p);
	p.domid = DOMID_SELF;
	p.index = index;
	p.value = value;
	return HYPERVISOR_hvm_op(HVMOP_set_param, &p);
}

long xen_set_upcall_vector(uint32_t vcpu, uint8_t vector)
{
	struct xen_hvm_evtchn_upcall_vector u;
	memset(&u, 0, sizeof u);
	u.vcpu = vcpu;
	u.vector = vector;
	return HYPERVISOR_hvm_op(HVMOP_set_evtchn_upcall_vector, &u);
}

/* ---- event channels ---- */
long xen_evtchn_alloc_unbound(domid_t dom, domid_t remote_dom, evtchn_port_t *port)
{
	struct evtchn_alloc_unbound a;
	memset(&a, 0, sizeof a);
	a.dom = dom;
	a.remote_dom = remote_dom;
	long rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &a);
	if (rc == 0)
		*port = a.port;
	return rc;
}

long xen_evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port, evtchn_port_t *local_port)
{
	struct evtchn_bind_interdomain b;
	memset(&b, 0, sizeof b);
	b.remote_dom = remote_dom;
	b.remote_port = remote_port;
	long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &b);
	if (rc == 0)
		*local_port = b.local_port;
	return rc;
}

long xen_evtchn_bind_virq(uint32_t virq, uint32_t vcpu, evtchn_port_t *port)
{
	struct evtchn_bind_virq b;
	memset(&b, 0, sizeof b);
	b.virq = virq;
	b.vcpu = vcpu;
	long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &b);
	if (rc == 0)
		*port = b.port;
	return rc;
}

long xen_evtchn_bind_ipi(uint32_t vcpu, evtchn_port_t *port)
{
	struct evtchn_bind_ipi b;
	memset(&b, 0, sizeof b);
	b.vcpu = vcpu;
	long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &b);
	if (rc == 0)
		*port = b.port;
	return rc;
}

long xen_evtchn_bind_vcpu(evtchn_port_t port, uint32_t vcpu)
{
	struct evtchn_bind_vcpu b;
	memset(&b, 0, sizeof b);
	b.port = port;
	b.vcpu = vcpu;
	return HYPERVISOR_event_channel_op(EVTCHNOP_bind_vcpu, &b);
}

long xen_evtchn_send(evtchn_port_t port)
{
	struct evtchn_send s;
	s.port = port;
	return HYPERVISOR_event_channel_op(EVTCHNOP_send, &s);
}

long xen_evtchn_close(evtchn_port_t port)
{
	struct evtchn_close c;
	c.port = port;
	return HYPERVISOR_event_channel_op(EVTCHNOP_close, &c);
}

long xen_evtchn_unmask(evtchn_port_t port)
{
	struct evtchn_unmask u;
	u.port = port;
	return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &u);
}

long xen_evtchn_reset(domid_t dom)
{
	struct evtchn_reset r;
	memset(&r, 0, sizeof r);
	r.dom = dom;
	return HYPERVISOR_event_channel_op(EVTCHNOP_reset, &r);
}

long xen_evtchn_init_control(uint64_t gfn, uint32_t offset, uint32_t vcpu, uint8_t *link_bits)
{
	struct evtchn_init_control c;
	memset(&c, 0, sizeof c);
	c.control_gfn = gfn;
	c.offset = offset;
	c.vcpu = vcpu;
	long rc = HYPERVISOR_event_channel_op(EVTCHNOP_init_control, &c);
	if (link_bits)
		*link_bits = c.link_bits;
	return rc;
}

long xen_evtchn_expand_array(uint64_t gfn)
{
	struct evtchn_expand_array e;
	e.array_gfn = gfn;
	return HYPERVISOR_event_channel_op(EVTCHNOP_expand_array, &e);
}

long xen_evtchn_set_priority(evtchn_port_t port, uint32_t priority)
{
	struct evtchn_set_priority p;
	p.port = port;
	p.priority = priority;
	return HYPERVISOR_event_channel_op(EVTCHNOP_set_priority, &p);
}

long xen_evtchn_status(domid_t dom, evtchn_port_t port, struct evtchn_status *st)
{
	memset(st, 0, sizeof *st);
	st->dom = dom;
	st->port = port;
	return HYPERVISOR_event_channel_op(EVTCHNOP_status, st);
}

const xen_ulong_t xen_evtchn_all_ports[XEN_EVTCHN_2L_PORTS / XEN_EVTCHN_WORD_BITS] = {
	[0 ... XEN_EVTCHN_2L_PORTS / XEN_EVTCHN_WORD_BITS - 1] = ~(xen_ulong_t)0,
};

uint32_t xen_evtchn_2l_scan(volatile struct shared_info *s, volatile struct vcpu_info *vi,
			    const volatile xen_ulong_t *mine, volatile uint32_t *got)
{
	uint32_t taken = 0;
	for (int round = 0; round < 8; round++) {
		vi->evtchn_upcall_pending = 0;
		xen_ulong_t sel = __atomic_exchange_n((xen_ulong_t *)&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
		while (sel) {
			unsigned int w = xen_lowest_bit(sel);
			sel &= sel - 1;
			xen_ulong_t bits = s->evtchn_pending[w] & ~s->evtchn_mask[w] & mine[w];
			while (bits) {
				unsigned int b = xen_lowest_bit(bits);
				bits &= bits - 1;
				xen_ulong_t m = (xen_ulong_t)1 << b;
				xen_ulong_t old = __atomic_fetch_and((xen_ulong_t *)&s->evtchn_pending[w], ~m,
								     __ATOMIC_SEQ_CST);
				if (old & m) {
					got[w * XEN_EVTCHN_WORD_BITS + b]++;
					taken++;
				}
			}
		}
		if (!vi->evtchn_upcall_pending)
			break;
	}
	return taken;
}

bool xen_evtchn_status_is(evtchn_port_t port, uint32_t status, struct evtchn_status *st)
{
	long rc = xen_evtchn_status(DOMID_SELF, port, st);
	if (rc) {
		kit_fail("status(port %u) = %ld %s", port, XEN_ERR(rc));
		return false;
	}
	if (st->status != status) {
		kit_fail("status(port %u) is %s, expected %s", port, xen_evtchn_stat_name(st->status),
			 xen_evtchn_stat_name(status));
		return false;
	}
	return true;
}

const char *xen_evtchn_stat_name(uint32_t status)
{
	switch (status) {
	case EVTCHNSTAT_closed: return "closed";
	case EVTCHNSTAT_unbound: return "unbound";
	case EVTCHNSTAT_interdomain: return "interdomain";
	case EVTCHNSTAT_pirq: return "pirq";
	case EVTCHNSTAT_virq: return "virq";
	case EVTCHNSTAT_ipi: return "ipi";
	default: return "?";
	}
}

long xen_own_domid(void)
{
	if (!xen_cpuid.base || xen_cpuid.max_leaf < xen_cpuid.base + 4)
		return -1;
	uint32_t a, b, c, d;
	cpuid(xen_cpuid.base + 4, 0, &a, &b, &c, &d);
	return (a & XEN_HVM_CPUID_DOMID_PRESENT) ? (long)(c & 0xffff) : -1;
}

/* ---- pvclock ---- */
#define XEN_TIME_TRIES 100000

bool xen_time_snapshot(const volatile struct vcpu_time_info *t, struct xen_time_snap *s)
{
	for (int i = 0; i < XEN_TIME_TRIES; i++) {
		uint32_t v = t->version;
		if (v & 1) {
			cpu_relax();
			continue;
		}
		barrier();
		s->version = v;
		s->tsc_timestamp = t->tsc_timestamp;
		s->system_time = t->system_time;
		s->mul = t->tsc_to_system_mul;
		s->shift = t->tsc_shift;
		s->flags = t->flags;
		s->tsc = rdtsc();
		barrier();
		if (t->version == v)
			return true;
	}
	return false;
}

uint64_t xen_time_scale(uint64_t delta, uint32_t mul, int8_t shift)
{
	if (shift < 0)
		delta >>= -shift;
	else
		delta <<= shift;
	/* 64 x 32 -> 96-bit product, keep bits 32..95: two 32x32 multiplies. */
	uint64_t lo = (uint64_t)(uint32_t)delta * mul;
	uint64_t hi = (uint64_t)(uint32_t)(delta >> 32) * mul;
	return hi + (lo >> 32);
}

uint64_t xen_time_at(const struct xen_time_snap *s, uint64_t tsc)
{
	return s->system_time + xen_time_scale(tsc - s->tsc_timestamp, s->mul, s->shift);
}

uint64_t xen_time_now(const volatile struct vcpu_time_info *t)
{
	struct xen_time_snap s;
	return xen_time_snapshot(t, &s) ? xen_time_at(&s, s.tsc) : 0;
}

bool xen_wallclock(const volatile struct shared_info *s, uint32_t *version, uint64_t *sec, uint32_t *nsec)
{
	for (int i = 0; i < XEN_TIME_TRIES; i++) {
		uint32_t v = s->wc_version;
		if (v & 1) {
			cpu_relax();
			continue;
		}
		barrier();
		uint32_t lo = s->wc_sec, ns = s->wc_nsec, hi = s->xen_wc_sec_hi;
		barrier();
		if (s->wc_version != v)
			continue;
		*version = v;
		*sec = ((uint64_t)hi << 32) | lo;
		*nsec = ns;
		return true;
	}
	return false;
}

/* ---- helpers ---- */
uint32_t xen_expected_version(void)
{
	char buf[16];
	if (!kit_cmdline_get("expect-version", buf, sizeof buf))
		return 0x00040011;
	uint32_t major = 0, minor = 0;
	const char *p = buf;
	while (*p >= '0' && *p <= '9')
		major = major * 10 + (uint32_t)(*p++ - '0');
	if (*p == '.')
		p++;
	while (*p >= '0' && *p <= '9')
		minor = minor * 10 + (uint32_t)(*p++ - '0');
	return major << 16 | (minor & 0xffff);
}

long xen_find_not(const void *p, size_t n, uint8_t v)
{
	const volatile uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != v)
			return (long)i;
	return -1;
}

const char *xen_errname(long rc)
{
	switch (rc) {
	case 0: return "0";
	case -XEN_EPERM: return "-EPERM";
	case -XEN_ENOENT: return "-ENOENT";
	case -XEN_ESRCH: return "-ESRCH";
	case -XEN_EFAULT: return "-EFAULT";
	case -XEN_EBUSY: return "-EBUSY";
	case -XEN_EEXIST: return "-EEXIST";
	case -XEN_EXDEV: return "-EXDEV";
	case -XEN_EINVAL: return "-EINVAL";
	case -XEN_ENOSYS: return "-ENOSYS";
	case -XEN_EOPNOTSUPP: return "-EOPNOTSUPP";
	case -XEN_ENOBUFS: return "-ENOBUFS";
	case -XEN_EACCES: return "-EACCES";
	case -XEN_ERANGE: return "-ERANGE";
	default: return "?";
	}
}

/* Consistent copy of a guest-memory runstate area: state_entry_time read
 * before and after the copy must match and have XEN_RUNSTATE_UPDATE clear. */
bool xen_read_runstate_area(const volatile void *p, struct vcpu_runstate_info *out)
{
	const volatile uint8_t *b = p;
	for (int tries = 0; tries < 1000; tries++) {
		uint64_t e1, e2;
		memcpy(&e1, (const void *)(b + offsetof(struct vcpu_runstate_info, state_entry_time)), 8);
		__asm__ volatile("" ::: "memory");
		memcpy(out, (const void *)b, sizeof *out);
		__asm__ volatile("" ::: "memory");
		memcpy(&e2, (const void *)(b + offsetof(struct vcpu_runstate_info, state_entry_time)), 8);
		if (e1 == e2 && !(e1 & XEN_RUNSTATE_UPDATE))
			return true;
		cpu_relax();
	}
	return false;
}

bool xen_cpu_is_amd(void)
{
	uint32_t a, b, c, d;
	cpuid(0, 0, &a, &b, &c, &d);
	/* "AuthenticAMD" / "HygonGenuine": EBX "Auth" / "Hygo". */
	return b == 0x68747541 || b == 0x6f677948;
}

long xen_direct_hypercall2(unsigned int nr, unsigned long a1, unsigned long a2)
{
	static int amd = -1;
	long ret;
	if (amd < 0)
		amd = xen_cpu_is_amd();
#ifdef __x86_64__
	if (amd)
		__asm__ volatile("vmmcall" : "=a"(ret), "+D"(a1), "+S"(a2) : "0"((unsigned long)nr) : "memory", "rdx", "r10", "r8");
	else
		__asm__ volatile("vmcall" : "=a"(ret), "+D"(a1), "+S"(a2) : "0"((unsigned long)nr) : "memory", "rdx", "r10", "r8");
#else
	if (amd)
		__asm__ volatile("vmmcall" : "=a"(ret), "+b"(a1), "+c"(a2) : "0"((unsigned long)nr) : "memory", "edx", "esi", "edi");
	else
		__asm__ volatile("vmcall" : "=a"(ret), "+b"(a1), "+c"(a2) : "0"((unsigned long)nr) : "memory", "edx", "esi", "edi");
#endif
	return ret;
}

const char *xen_timer_setup(void *page, int vector, void (*handler)(struct kit_frame *), evtchn_port_t *timer_port)
{
	if (!xen_setup())
		return "no Xen";
	if (xen_map_shared_info(page) != 0)
		return "map shared_info";
	kit_set_irq_handler(vector, handler);
	kit_lapic_enable();
	if (xen_set_upcall_vector(0, (uint8_t)vector) != 0)
		return "set the upcall vector";
	if (xen_evtchn_bind_virq(VIRQ_TIMER, 0, timer_port) != 0)
		return "bind VIRQ_TIMER";
	return NULL;
}

const char *xen_gntst_name(long status)
{
	switch (status) {
	case GNTST_okay: return "okay";
	case GNTST_general_error: return "general_error";
	case GNTST_bad_domain: return "bad_domain";
	case GNTST_bad_gntref: return "bad_gntref";
	case GNTST_bad_handle: return "bad_handle";
	case GNTST_bad_virt_addr: return "bad_virt_addr";
	case GNTST_bad_dev_addr: return "bad_dev_addr";
	case GNTST_no_device_space: return "no_device_space";
	case GNTST_permission_denied: return "permission_denied";
	case GNTST_bad_page: return "bad_page";
	case GNTST_bad_copy_arg: return "bad_copy_arg";
	case GNTST_address_too_big: return "address_too_big";
	case GNTST_eagain: return "eagain";
	case GNTST_no_space: return "no_space";
	default: return "?";
	}
}

long xen_gnttab_query_size(domid_t dom, struct gnttab_query_size *q)
{
	memset(q, 0, sizeof *q);
	q->dom = dom;
	q->nr_frames = 0x1234;
	q->max_nr_frames = 0x5678;
	q->status = 0x777;
	return HYPERVISOR_grant_table_op(GNTTABOP_query_size, q, 1);
}

void xen_grant_v1(volatile grant_entry_v1_t *e, domid_t to, uint32_t frame, uint16_t flags)
{
	e->domid = to;
	e->frame = frame;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e->flags = flags;
}

bool xen_ungrant_v1(volatile grant_entry_v1_t *e)
{
	uint16_t flags = e->flags;
	if (flags & (GTF_reading | GTF_writing))
		return false;
	return __atomic_compare_exchange_n(&e->flags, &flags, 0, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

void xen_gnttab_copy_op(struct gnttab_copy *c, uint16_t flags, uint64_t src, domid_t sdom, uint16_t soff, uint64_t dst,
			domid_t ddom, uint16_t doff, uint16_t len)
{
	memset(c, 0, sizeof *c);
	if (flags & GNTCOPY_source_gref)
		c->source.u.ref = (grant_ref_t)src;
	else
		c->source.u.gmfn = (xen_pfn_t)src;
	c->source.domid = sdom;
	c->source.offset = soff;
	if (flags & GNTCOPY_dest_gref)
		c->dest.u.ref = (grant_ref_t)dst;
	else
		c->dest.u.gmfn = (xen_pfn_t)dst;
	c->dest.domid = ddom;
	c->dest.offset = doff;
	c->len = len;
	c->flags = flags;
	c->status = 0x777;
}

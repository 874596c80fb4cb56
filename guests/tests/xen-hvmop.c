/* HYPERVISOR_hvm_op as a domU sees it: HVM params (CALLBACK_IRQ in each
 * form, the XenStore/console params, what a guest
 * may not set or read),
 * per-vCPU upcall vectors, pagetable_dying, unknown ops. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define UPCALL_VECTOR 0xf3
#define CB_TYPE(t) ((uint64_t)(t) << 56)
#define NONEXISTENT_DOMID (DOMID_FIRST_RESERVED - 1)

static volatile int upcalls;

static void upcall_handler(struct kit_frame *f)
{
	(void)f;
	upcalls++;
}

static long param_op(unsigned int op, domid_t dom, uint32_t index, uint64_t *value)
{
	struct xen_hvm_param p;
	memset(&p, 0, sizeof p);
	p.domid = dom;
	p.index = index;
	p.value = *value;
	long rc = HYPERVISOR_hvm_op(op, &p);
	*value = p.value;
	return rc;
}

static void set_get(uint64_t value, const char *form)
{
	long rc = xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ, value);
	KIT_CHECK(rc == 0, "set CALLBACK_IRQ %s 0x%llx = %ld %s", form, U64(value), rc, xen_errname(rc));
	uint64_t got = ~0ull;
	rc = xen_hvm_get_param(HVM_PARAM_CALLBACK_IRQ, &got);
	KIT_CHECK(rc == 0, "get CALLBACK_IRQ = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(got == value, "CALLBACK_IRQ %s: set 0x%llx, read back 0x%llx", form, U64(value), U64(got));
}

static void callback_vector_case(void) { set_get(CB_TYPE(HVM_PARAM_CALLBACK_TYPE_VECTOR) | UPCALL_VECTOR, "vector"); }
static void callback_gsi_case(void) { set_get(CB_TYPE(HVM_PARAM_CALLBACK_TYPE_GSI) | 11, "gsi"); }
/* Domain 0, bus 0, device 2 function 0 (devfn 0x10 in bits 15:8: the Xen platform device), INTA; and
 * 00:03.0 INTB, a device that is not there, which Xen takes too. */
static void callback_intx_case(void)
{
	set_get(CB_TYPE(HVM_PARAM_CALLBACK_TYPE_PCI_INTX) | 0x10 << 8, "pci-intx");
	set_get(CB_TYPE(HVM_PARAM_CALLBACK_TYPE_PCI_INTX) | 0x18 << 8 | 1, "pci-intx");
}
static void callback_off_case(void) { set_get(0, "off"); }

static void xs_params_case(void)
{
	static const struct {
		uint32_t index;
		const char *name;
	} p[] = {
		{ HVM_PARAM_STORE_PFN, "STORE_PFN" },
		{ HVM_PARAM_STORE_EVTCHN, "STORE_EVTCHN" },
		{ HVM_PARAM_CONSOLE_PFN, "CONSOLE_PFN" },
		{ HVM_PARAM_CONSOLE_EVTCHN, "CONSOLE_EVTCHN" },
	};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		uint64_t v = 0xdeadbeefull;
		long rc = xen_hvm_get_param(p[i].index, &v);
		kit_printf("KIT-XEN param %s = 0x%llx (rc %ld)\n", p[i].name, U64(v), rc);
		KIT_CHECK(rc == 0, "get %s = %ld %s", p[i].name, rc, xen_errname(rc));
	}
}

/* Xen's hvm_allow_set_param: a guest may set only CALLBACK_IRQ, VM86_TSS(_SIZED),
 * ACPI_IOPORTS_LOCATION, VM_GENERATION_ID_ADDR, STORE_EVTCHN, CONSOLE_EVTCHN,
 * X87_FIP_WIDTH (and a few set-once ones); anything else is -EPERM.
 * hvm_allow_get_param: IOREQ_PFN, BUFIOREQ_PFN, BUFIOREQ_EVTCHN and the
 * unlisted rest are -EPERM for the guest itself. */
static void forbidden_case(void)
{
	uint64_t store = 0;
	xen_hvm_get_param(HVM_PARAM_STORE_PFN, &store);
	long rc = xen_hvm_set_param(HVM_PARAM_STORE_PFN, 0x1234);
	KIT_CHECK(rc == -XEN_EPERM, "set STORE_PFN = %ld %s, expected -EPERM", rc, xen_errname(rc));
	uint64_t after = ~0ull;
	xen_hvm_get_param(HVM_PARAM_STORE_PFN, &after);
	KIT_CHECK(after == store, "STORE_PFN changed to 0x%llx by a refused set", U64(after));
	rc = xen_hvm_set_param(HVM_PARAM_CONSOLE_PFN, 0x1234);
	KIT_CHECK(rc == -XEN_EPERM, "set CONSOLE_PFN = %ld %s, expected -EPERM", rc, xen_errname(rc));
	uint64_t v = 0;
	rc = xen_hvm_get_param(HVM_PARAM_IOREQ_PFN, &v);
	KIT_CHECK(rc == -XEN_EPERM, "get IOREQ_PFN = %ld %s, expected -EPERM", rc, xen_errname(rc));
	rc = xen_hvm_get_param(HVM_PARAM_IDENT_PT, &v);
	KIT_CHECK(rc == -XEN_EPERM, "get IDENT_PT = %ld %s, expected -EPERM", rc, xen_errname(rc));
}

static void bad_index_case(void)
{
	static const uint32_t idx[] = { HVM_NR_PARAMS, 1000, 0xffffffffu };
	for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		uint64_t v = 0;
		long rc = param_op(HVMOP_get_param, DOMID_SELF, idx[i], &v);
		KIT_CHECK(rc == -XEN_EINVAL, "get index %u = %ld %s, expected -EINVAL", idx[i], rc, xen_errname(rc));
		v = 0;
		rc = param_op(HVMOP_set_param, DOMID_SELF, idx[i], &v);
		KIT_CHECK(rc == -XEN_EINVAL, "set index %u = %ld %s, expected -EINVAL", idx[i], rc, xen_errname(rc));
	}
}

/* rcu_lock_domain_by_any_id: DOMID_SELF or the caller's own id find the
 * caller; an id with no domain is -ESRCH. */
static void domid_case(void)
{
	uint64_t v = 0;
	long rc = param_op(HVMOP_get_param, NONEXISTENT_DOMID, HVM_PARAM_CALLBACK_IRQ, &v);
	KIT_CHECK(rc == -XEN_ESRCH, "get_param domid 0x%x = %ld %s, expected -ESRCH", NONEXISTENT_DOMID, rc,
		  xen_errname(rc));
	v = 0;
	rc = param_op(HVMOP_set_param, NONEXISTENT_DOMID, HVM_PARAM_CALLBACK_IRQ, &v);
	KIT_CHECK(rc == -XEN_ESRCH, "set_param domid 0x%x = %ld %s, expected -ESRCH", NONEXISTENT_DOMID, rc,
		  xen_errname(rc));
	uint32_t a, b, c, d;
	cpuid(xen_cpuid.base + 4, 0, &a, &b, &c, &d);
	if (a & XEN_HVM_CPUID_DOMID_PRESENT) {
		kit_printf("KIT-XEN own domid %u\n", c);
		v = 0;
		rc = param_op(HVMOP_get_param, (domid_t)c, HVM_PARAM_STORE_EVTCHN, &v);
		KIT_CHECK(rc == 0, "get_param with own domid %u = %ld %s", c, rc, xen_errname(rc));
	}
	rc = xen_hypercall(__HYPERVISOR_hvm_op, HVMOP_get_param, KIT_UNMAPPED_VA, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "get_param(bad pointer) = %ld %s, expected -EFAULT", rc, xen_errname(rc));
}

/* hvmop_set_evtchn_upcall_vector: vector < 0x10 is -EINVAL (checked first),
 * then a vCPU that doesn't exist is -ENOENT. */
static void upcall_vector_case(void)
{
	long rc = xen_set_upcall_vector(0, UPCALL_VECTOR);
	KIT_CHECK(rc == 0, "vcpu 0 vector 0x%x = %ld %s", UPCALL_VECTOR, rc, xen_errname(rc));
	rc = xen_set_upcall_vector(0, 0x0f);
	KIT_CHECK(rc == -XEN_EINVAL, "vector 0x0f = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	rc = xen_set_upcall_vector(99, UPCALL_VECTOR);
	KIT_CHECK(rc == -XEN_ENOENT, "vcpu 99 = %ld %s, expected -ENOENT", rc, xen_errname(rc));
	rc = xen_set_upcall_vector((uint32_t)kit_ncpus(), UPCALL_VECTOR);
	KIT_CHECK(rc == -XEN_ENOENT, "vcpu %d (= nr vCPUs) = %ld %s, expected -ENOENT", kit_ncpus(), rc,
		  xen_errname(rc));
}

/* Xen answers 0 under shadow paging and -EINVAL under HAP (EPT/NPT); both
 * are Xen. A domain that doesn't exist is -ESRCH either way. */
static void pagetable_dying_case(void)
{
	struct xen_hvm_pagetable_dying pd;
	memset(&pd, 0, sizeof pd);
	pd.domid = DOMID_SELF;
	pd.gpa = 0x1000;
	long rc = HYPERVISOR_hvm_op(HVMOP_pagetable_dying, &pd);
	kit_printf("KIT-XEN pagetable_dying rc=%ld %s\n", rc, xen_errname(rc));
	KIT_CHECK(rc == 0 || rc == -XEN_EINVAL, "pagetable_dying(DOMID_SELF) = %ld %s, expected 0 or -EINVAL", rc,
		  xen_errname(rc));
	pd.domid = NONEXISTENT_DOMID;
	rc = HYPERVISOR_hvm_op(HVMOP_pagetable_dying, &pd);
	KIT_CHECK(rc == -XEN_ESRCH, "pagetable_dying(domid 0x%x) = %ld %s, expected -ESRCH", NONEXISTENT_DOMID, rc,
		  xen_errname(rc));
}

static void unknown_op_case(void)
{
	uint8_t junk[64];
	memset(junk, 0, sizeof junk);
	long rc = HYPERVISOR_hvm_op(200, junk);
	KIT_CHECK(rc == -XEN_ENOSYS, "hvm_op 200 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
}

void kit_main(void)
{
	xen_require();
	kit_set_irq_handler(UPCALL_VECTOR, upcall_handler);
	kit_case("callback-vector", callback_vector_case);
	kit_case("callback-gsi", callback_gsi_case);
	kit_case("callback-pci-intx", callback_intx_case);
	kit_case("callback-off", callback_off_case);
	kit_case("store-console-params", xs_params_case);
	kit_case("forbidden-params", forbidden_case);
	kit_case("bad-index", bad_index_case);
	kit_case("domid", domid_case);
	kit_case("upcall-vector", upcall_vector_case);
	kit_case("pagetable-dying", pagetable_dying_case);
	kit_case("unknown-op", unknown_op_case);
}

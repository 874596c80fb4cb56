/* HYPERVISOR_hvm_op from 32-bit protected mode (compat: xen_hvm_param is the
 * same 16 bytes, value at offset 8): params, refusals, upcall vector,
 * unknown ops. */
#include "../kit32/kit32.h"
#include "../common/xen.h"

_Static_assert(sizeof(struct xen_hvm_param) == 16 && offsetof(struct xen_hvm_param, value) == 8,
	       "compat xen_hvm_param");
_Static_assert(sizeof(struct xen_hvm_evtchn_upcall_vector) == 8, "xen_hvm_evtchn_upcall_vector");

#define CB_VECTOR ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56 | 0xf3)

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

/* Vector, GSI 11, PCI INTx (00:02.0 INTA, the Xen platform device) and off are all taken. */
static void callback_case(void)
{
	static const struct {
		uint64_t value;
		long rc;
		uint64_t after;
	} steps[] = {
		{ CB_VECTOR, 0, CB_VECTOR },
		{ 11, 0, 11 },
		{ (uint64_t)HVM_PARAM_CALLBACK_TYPE_PCI_INTX << 56 | 0x1000, 0, (uint64_t)HVM_PARAM_CALLBACK_TYPE_PCI_INTX << 56 | 0x1000 },
		{ 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		XEN_EXPECT_RC(xen_hvm_set_param(HVM_PARAM_CALLBACK_IRQ, steps[i].value), steps[i].rc, "set CALLBACK_IRQ 0x%llx",
			      U64(steps[i].value));
		uint64_t got = ~0ull;
		long rc = xen_hvm_get_param(HVM_PARAM_CALLBACK_IRQ, &got);
		KIT_CHECK(rc == 0 && got == steps[i].after, "CALLBACK_IRQ after setting 0x%llx: 0x%llx (rc %ld), expected 0x%llx",
			  U64(steps[i].value), U64(got), rc, U64(steps[i].after));
	}
}

static void xs_params_case(void)
{
	static const uint32_t idx[] = { HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
					HVM_PARAM_CONSOLE_EVTCHN };
	for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		uint64_t v = 0xdeadbeefull;
		long rc = xen_hvm_get_param(idx[i], &v);
		kit_printf("KIT-XEN param %u = 0x%llx (rc %ld)\n", idx[i], U64(v), rc);
		KIT_CHECK(rc == 0, "get param %u = %ld %s", idx[i], rc, xen_errname(rc));
	}
}

static void refused_case(void)
{
	long rc = xen_hvm_set_param(HVM_PARAM_STORE_PFN, 0x1234);
	KIT_CHECK(rc == -XEN_EPERM, "set STORE_PFN = %ld %s, expected -EPERM", rc, xen_errname(rc));
	uint64_t v = 0;
	rc = xen_hvm_get_param(HVM_PARAM_IOREQ_PFN, &v);
	KIT_CHECK(rc == -XEN_EPERM, "get IOREQ_PFN = %ld %s, expected -EPERM", rc, xen_errname(rc));
	rc = param_op(HVMOP_get_param, DOMID_SELF, HVM_NR_PARAMS, &v);
	KIT_CHECK(rc == -XEN_EINVAL, "get index %u = %ld %s, expected -EINVAL", HVM_NR_PARAMS, rc, xen_errname(rc));
	rc = param_op(HVMOP_get_param, DOMID_FIRST_RESERVED - 1, HVM_PARAM_CALLBACK_IRQ, &v);
	KIT_CHECK(rc == -XEN_ESRCH, "get with domid 0x7fef = %ld %s, expected -ESRCH", rc, xen_errname(rc));
}

static void upcall_vector_case(void)
{
	long rc = xen_set_upcall_vector(0, 0xf3);
	KIT_CHECK(rc == 0, "vcpu 0 vector 0xf3 = %ld %s", rc, xen_errname(rc));
	rc = xen_set_upcall_vector(0, 0x0f);
	KIT_CHECK(rc == -XEN_EINVAL, "vector 0x0f = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	rc = xen_set_upcall_vector(99, 0xf3);
	KIT_CHECK(rc == -XEN_ENOENT, "vcpu 99 = %ld %s, expected -ENOENT", rc, xen_errname(rc));
}

static void unknown_case(void)
{
	uint8_t junk[32];
	memset(junk, 0, sizeof junk);
	long rc = HYPERVISOR_hvm_op(200, junk);
	KIT_CHECK(rc == -XEN_ENOSYS, "hvm_op 200 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
}

void kit_main(void)
{
	xen_require();
	kit_case("callback-irq", callback_case);
	kit_case("store-console-params", xs_params_case);
	kit_case("refused", refused_case);
	kit_case("upcall-vector", upcall_vector_case);
	kit_case("unknown-op", unknown_case);
}

#include "toolstack-test.h"
#ifdef __x86_64__
#include "../kit/kit.h"
#else
#include "../kit32/kit32.h"
#endif
#include "xen.h"

/* Interface versions of Xen 4.17's sysctl.h, domctl.h and platform.h (they
 * are only visible to toolstacks, __XEN_TOOLS__). */
#define SYSCTL_VERSION 0x15
#define DOMCTL_VERSION 0x15
#define PLATFORM_VERSION 0x03000001
#define DOMCTL_pausedomain 3

/* Room for any of the three structs (xen_domctl, the largest, is 144 bytes):
 * cmd, interface_version, and domctl's domain at byte 8. */
static uint32_t op[64] __attribute__((aligned(8)));

static long call(unsigned nr, uint32_t cmd, uint32_t version, uint16_t domain)
{
	for (unsigned i = 0; i < 64; i++)
		op[i] = 0;
	op[0] = cmd;
	op[1] = version;
	op[2] = domain;
	return xen_hypercall(nr, (unsigned long)op, 0, 0, 0, 0);
}

void toolstack_refused_case(void)
{
	long own = xen_own_domid();
	KIT_CHECK(own > 0, "no domid: %ld", own);
	long rc = xen_hypercall(__HYPERVISOR_sysctl, (unsigned long)KIT_UNMAPPED_VA, 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EFAULT, "sysctl at an unmapped address = %ld %s, expected -EFAULT", XEN_ERR(rc));
	rc = call(__HYPERVISOR_sysctl, 1, 0, 0);
	KIT_CHECK(rc == -XEN_EACCES, "sysctl of version 0 = %ld %s, expected -EACCES", XEN_ERR(rc));
	rc = call(__HYPERVISOR_sysctl, 1, SYSCTL_VERSION, 0);
	KIT_CHECK(rc == -XEN_EPERM, "sysctl = %ld %s, expected -EPERM", XEN_ERR(rc));
	rc = call(__HYPERVISOR_platform_op, 1, PLATFORM_VERSION, 0);
	KIT_CHECK(rc == -XEN_EPERM, "platform_op = %ld %s, expected -EPERM", XEN_ERR(rc));
	rc = call(__HYPERVISOR_domctl, DOMCTL_pausedomain, DOMCTL_VERSION, 0x7fe0);
	KIT_CHECK(rc == -XEN_ESRCH, "domctl on a domain that does not exist = %ld %s, expected -ESRCH", XEN_ERR(rc));
	rc = call(__HYPERVISOR_domctl, DOMCTL_pausedomain, DOMCTL_VERSION, (uint16_t)own);
	KIT_CHECK(rc == -XEN_EPERM, "domctl on itself = %ld %s, expected -EPERM", XEN_ERR(rc));
	rc = xen_hypercall(__HYPERVISOR_dm_op, (unsigned long)own, 3, 0, 0, 0);
	KIT_CHECK(rc == -XEN_E2BIG, "dm_op with 3 buffers = %ld %s, expected -E2BIG", XEN_ERR(rc));
	rc = xen_hypercall(__HYPERVISOR_dm_op, (unsigned long)own, 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EPERM, "dm_op on itself = %ld %s, expected -EPERM", XEN_ERR(rc));
	rc = xen_hypercall(__HYPERVISOR_hypfs_op, 0, 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EPERM, "hypfs_op = %ld %s, expected -EPERM", XEN_ERR(rc));
	rc = xen_hypercall(__HYPERVISOR_xenpmu_op, 0, 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_EOPNOTSUPP, "xenpmu_op = %ld %s, expected -EOPNOTSUPP", XEN_ERR(rc));
}

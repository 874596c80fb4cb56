/* Finding Xen from 32-bit protected mode (compat ABI: arguments in ebx, ecx,
 * edx, esi, edi): CPUID signature, hypercall page, xen_version sub-ops with
 * their compat layouts, unimplemented numbers, preserved registers.
 * cmdline: expect-version=M.m (default 4.17). */
#include "../kit32/kit32.h"
#include "../common/xen.h"
#include "../common/toolstack-test.h"

_Static_assert(sizeof(struct xen_platform_parameters) == 4, "compat platform_parameters");
_Static_assert(sizeof(struct xen_feature_info) == 8, "xen_feature_info");

#define FILL 0xaa
static bool page_ok;
static uint8_t buf[1100];

static void signature_case(void)
{
	uint32_t base = xen_cpuid_scan();
	KIT_CHECK(base, "no \"XenVMMXenVMM\" leaf with EAX >= leaf+2");
	kit_printf("KIT-XEN signature leaf=0x%x max=0x%x\n", base, xen_cpuid.max_leaf);
	KIT_CHECK(base == XEN_CPUID_FIRST, "signature at 0x%x, expected 0x40000000", base);
	KIT_CHECK(xen_cpuid.max_leaf >= base + 4, "max leaf 0x%x < base+4", xen_cpuid.max_leaf);
}

static void version_leaf_case(void)
{
	KIT_CHECK(xen_cpuid.base, "no Xen base");
	kit_printf("KIT-XEN version-leaf eax=0x%08x\n", xen_cpuid.version);
	KIT_CHECK(xen_cpuid.version == xen_expected_version(), "leaf base+1 eax=0x%08x, expected 0x%08x",
		  xen_cpuid.version, xen_expected_version());
}

static void hypercall_leaf_case(void)
{
	KIT_CHECK(xen_cpuid.base, "no Xen base");
	kit_printf("KIT-XEN hypercall-leaf pages=%u msr=0x%x\n", xen_cpuid.pages, xen_cpuid.msr);
	KIT_CHECK(xen_cpuid.pages == 1 && xen_cpuid.msr == 0x40000000, "leaf base+2: pages %u msr 0x%x",
		  xen_cpuid.pages, xen_cpuid.msr);
}

static void hvm_leaf_case(void)
{
	KIT_CHECK(xen_cpuid.base, "no Xen base");
	uint32_t a, b, c, d, need = XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_UPCALL_VECTOR;
	cpuid(xen_cpuid.base + 4, 0, &a, &b, &c, &d);
	kit_printf("KIT-XEN hvm-leaf eax=0x%x vcpu=%u\n", a, b);
	KIT_CHECK((a & need) == need, "hvm leaf eax=0x%x", a);
	KIT_CHECK(b == 0, "vcpu id %u, expected 0", b);
}

static void hypercall_page_case(void)
{
	KIT_CHECK(xen_cpuid.base, "no Xen base");
	KIT_CHECK(xen_find_not(xen_hypercall_page, XEN_PAGE_SIZE, 0) < 0, "page not zero before the MSR write");
	xen_install_hypercall_page();
	KIT_CHECK(xen_hypercall_page_filled(), "page (or some stub) still zero after wrmsr");
	KIT_CHECK(memcmp(xen_hypercall_page + 17 * 32, xen_hypercall_page + 12 * 32, 32) != 0, "stubs 17 and 12 identical");
	page_ok = true;
}

static void version_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	long v = HYPERVISOR_xen_version(XENVER_version, NULL);
	kit_printf("KIT-XEN version=0x%lx\n", v);
	KIT_CHECK(v == (long)xen_expected_version(), "XENVER_version = 0x%lx, expected 0x%x", v, xen_expected_version());
}

static void get_features_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	struct xen_feature_info fi = { .submap_idx = 0, .submap = 0 };
	long rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
	kit_printf("KIT-XEN features submap0=0x%08x\n", fi.submap);
	KIT_CHECK(rc == 0, "get_features(0) = %ld %s", rc, xen_errname(rc));
	uint32_t need = 1u << XENFEAT_hvm_callback_vector | 1u << XENFEAT_hvm_safe_pvclock |
			1u << XENFEAT_auto_translated_physmap | 1u << XENFEAT_writable_page_tables;
	KIT_CHECK((fi.submap & need) == need, "submap 0x%08x lacks 0x%08x", fi.submap, need & ~fi.submap);
	KIT_CHECK(!(fi.submap & 1u << XENFEAT_dom0), "XENFEAT_dom0 set");
	fi.submap_idx = 1;
	rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
	KIT_CHECK(rc == -XEN_EINVAL, "get_features(1) = %ld %s, expected -EINVAL", rc, xen_errname(rc));
}

static void strings_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	static const struct {
		int cmd;
		unsigned len;
		const char *name;
	} ops[] = {
		{ XENVER_extraversion, XEN_EXTRAVERSION_LEN, "extraversion" },
		{ XENVER_capabilities, XEN_CAPABILITIES_INFO_LEN, "capabilities" },
		{ XENVER_changeset, XEN_CHANGESET_INFO_LEN, "changeset" },
	};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		memset(buf, FILL, sizeof buf);
		long rc = HYPERVISOR_xen_version(ops[i].cmd, buf);
		KIT_CHECK(rc == 0, "%s = %ld %s", ops[i].name, rc, xen_errname(rc));
		size_t n = strlen((char *)buf);
		KIT_CHECK(n < ops[i].len, "%s not terminated", ops[i].name);
		KIT_CHECK(xen_find_not(buf + n, ops[i].len - n, 0) < 0, "%s not NUL-padded", ops[i].name);
		KIT_CHECK(xen_find_not(buf + ops[i].len, 32, FILL) < 0, "%s wrote past %u bytes", ops[i].name, ops[i].len);
		kit_printf("KIT-XEN %s=\"%s\"\n", ops[i].name, (char *)buf);
		if (ops[i].cmd == XENVER_capabilities) {
			bool found = false;
			for (const char *p = (char *)buf; *p && !found; p++)
				found = !strncmp(p, "hvm-3.0-x86_32", 14);
			KIT_CHECK(found, "capabilities lack hvm-3.0-x86_32");
		}
	}
	memset(buf, FILL, 64);
	long rc = HYPERVISOR_xen_version(XENVER_commandline, buf);
	KIT_CHECK(rc == 0 && !memcmp(buf, "<denied>", 9), "commandline = %ld \"%.16s\"", rc, (char *)buf);
	KIT_CHECK(xen_find_not(buf + 9, 55, FILL) < 0, "commandline wrote past \"<denied>\"");
}

/* The compat xen_platform_parameters is one 32-bit field: 4 bytes written. */
static void platform_parameters_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	memset(buf, FILL, 16);
	long rc = HYPERVISOR_xen_version(XENVER_platform_parameters, buf);
	uint32_t vs;
	memcpy(&vs, buf, 4);
	kit_printf("KIT-XEN platform_parameters virt_start=0x%x\n", vs);
	KIT_CHECK(rc == 0, "platform_parameters = %ld %s", rc, xen_errname(rc));
	KIT_CHECK(xen_find_not(buf + 4, 12, FILL) < 0, "compat platform_parameters wrote more than 4 bytes");
}

static void unimplemented_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	long rc = xen_hypercall(__HYPERVISOR_kexec_op, 0, 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_ENOSYS, "kexec_op = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
	rc = xen_hypercall(60, 1, 2, 3, 4, 5);
	KIT_CHECK(rc == -XEN_ENOSYS, "hypercall 60 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
	rc = HYPERVISOR_xen_version(100, buf);
	KIT_CHECK(rc == -XEN_ENOSYS, "xen_version sub-op 100 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
}

struct regs32 {
	uint32_t ebx, ecx, edx, esi, edi, ebp, eax;
};
void xen_argcheck32(struct regs32 *out, void *stub);
static struct regs32 *volatile argcheck_out;
__asm__(".text\n"
	".globl xen_argcheck32\n"
	"xen_argcheck32:\n"
	"	push %ebp\n	push %ebx\n	push %esi\n	push %edi\n"
	"	mov 20(%esp), %ecx\n"
	"	mov %ecx, argcheck_out\n"
	"	mov 24(%esp), %eax\n"
	"	xor %ebx, %ebx\n"		/* XENVER_version */
	"	xor %ecx, %ecx\n"		/* NULL */
	"	mov $0xc0de00d1, %edx\n"
	"	mov $0xc0de0051, %esi\n"
	"	mov $0xc0de00d2, %edi\n"
	"	mov $0xc0de00b9, %ebp\n"
	"	call *%eax\n"
	"	push %eax\n"
	"	mov argcheck_out, %eax\n"
	"	mov %ebx, 0(%eax)\n	mov %ecx, 4(%eax)\n	mov %edx, 8(%eax)\n"
	"	mov %esi, 12(%eax)\n	mov %edi, 16(%eax)\n	mov %ebp, 20(%eax)\n"
	"	pop %ebx\n"
	"	mov %ebx, 24(%eax)\n"
	"	pop %edi\n	pop %esi\n	pop %ebx\n	pop %ebp\n"
	"	ret\n");

static void args_preserved_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	struct regs32 r;
	memset(&r, 0, sizeof r);
	xen_argcheck32(&r, xen_hypercall_page + __HYPERVISOR_xen_version * XEN_STUB_SIZE);
	KIT_CHECK(r.eax == xen_expected_version(), "eax=0x%x", r.eax);
	KIT_CHECK(r.ebx == 0 && r.ecx == 0, "ebx=0x%x ecx=0x%x after the call, were 0", r.ebx, r.ecx);
	KIT_CHECK(r.edx == 0xc0de00d1, "edx=0x%x after the call", r.edx);
	KIT_CHECK(r.esi == 0xc0de0051, "esi=0x%x after the call", r.esi);
	KIT_CHECK(r.edi == 0xc0de00d2, "edi=0x%x after the call", r.edi);
	KIT_CHECK(r.ebp == 0xc0de00b9, "ebp=0x%x after the call", r.ebp);
}

void kit_main(void)
{
	kit_case("signature", signature_case);
	kit_case("version-leaf", version_leaf_case);
	kit_case("hypercall-leaf", hypercall_leaf_case);
	kit_case("hvm-leaf", hvm_leaf_case);
	kit_case("hypercall-page", hypercall_page_case);
	kit_case("version", version_case);
	kit_case("get-features", get_features_case);
	kit_case("strings", strings_case);
	kit_case("platform-parameters-compat", platform_parameters_case);
	kit_case("unimplemented", unimplemented_case);
	kit_case("toolstack-refused", toolstack_refused_case);
	kit_case("args-preserved", args_preserved_case);
}

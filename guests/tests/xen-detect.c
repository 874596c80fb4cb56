/* Finding Xen the way a guest kernel does: CPUID signature scan, version,
 * hypercall MSR and page, HVM leaf on every vCPU; hypercall dispatch basics
 * (unimplemented numbers, calls from ring 3, preserved registers).
 * cmdline: expect-version=M.m (default 4.17). Run with --vcpus 2. */
#include "../kit/kit.h"
#include "../common/xen.h"
#include "../common/toolstack-test.h"

static uint32_t base;
static bool page_ok;
static int online;
static volatile int ap_done[KIT_MAX_CPUS];
static volatile uint32_t ap_leaf4_a[KIT_MAX_CPUS], ap_leaf4_b[KIT_MAX_CPUS];
static volatile long ap_version[KIT_MAX_CPUS];

static void signature_case(void)
{
	uint32_t found = xen_cpuid_scan();
	base = found;
	KIT_CHECK(found, "no \"XenVMMXenVMM\" leaf with EAX >= leaf+2 in 0x40000000..0x4000ff00");
	kit_printf("KIT-XEN signature leaf=0x%x max=0x%x\n", found, xen_cpuid.max_leaf);
	KIT_CHECK(found == XEN_CPUID_FIRST, "signature at 0x%x, expected 0x40000000", found);
	KIT_CHECK(xen_cpuid.max_leaf >= found + 4, "max leaf 0x%x < base+4 (HVM leaf missing)", xen_cpuid.max_leaf);
}

static void version_leaf_case(void)
{
	KIT_CHECK(base, "no Xen base");
	uint32_t a, b, c, d, want = xen_expected_version();
	cpuid(base + 1, 0, &a, &b, &c, &d);
	kit_printf("KIT-XEN version-leaf eax=0x%08x (%u.%u) ebx=0x%x ecx=0x%x edx=0x%x\n", a, a >> 16, a & 0xffff, b, c,
		   d);
	KIT_CHECK(a == want, "leaf 0x%x eax=0x%08x, expected 0x%08x", base + 1, a, want);
}

static void hypercall_leaf_case(void)
{
	KIT_CHECK(base, "no Xen base");
	uint32_t a, b, c, d;
	cpuid(base + 2, 0, &a, &b, &c, &d);
	kit_printf("KIT-XEN hypercall-leaf pages=%u msr=0x%x feat1=0x%x feat2=0x%x\n", a, b, c, d);
	KIT_CHECK(a == 1, "hypercall pages %u, expected 1", a);
	KIT_CHECK(b == 0x40000000, "hypercall MSR 0x%x, expected 0x40000000", b);
}

static void hypercall_page_case(void)
{
	KIT_CHECK(base && xen_cpuid.msr, "no Xen base / MSR");
	KIT_CHECK(xen_find_not(xen_hypercall_page, XEN_PAGE_SIZE, 0) < 0, "page not zero before the MSR write");
	kit_expect_exception(13, 2); /* wrmsr is 2 bytes */
	xen_install_hypercall_page();
	int gp = kit_expect_done();
	KIT_CHECK(!gp, "wrmsr 0x%x <- 0x%lx raised #GP", xen_cpuid.msr, (unsigned long)(uintptr_t)xen_hypercall_page);
	KIT_CHECK(xen_find_not(xen_hypercall_page, XEN_PAGE_SIZE, 0) >= 0, "page still all zero after wrmsr");
	const uint8_t *s = xen_hypercall_page;
	kit_printf("KIT-XEN stub[17] %02x %02x %02x %02x %02x %02x %02x %02x %02x %02x %02x %02x\n", s[17 * 32],
		   s[17 * 32 + 1], s[17 * 32 + 2], s[17 * 32 + 3], s[17 * 32 + 4], s[17 * 32 + 5], s[17 * 32 + 6],
		   s[17 * 32 + 7], s[17 * 32 + 8], s[17 * 32 + 9], s[17 * 32 + 10], s[17 * 32 + 11]);
	KIT_CHECK(memcmp(s + 17 * 32, s + 12 * 32, 32) != 0, "stubs 17 and 12 identical");
	KIT_CHECK(memcmp(s + 0 * 32, s + 1 * 32, 32) != 0, "stubs 0 and 1 identical");
	KIT_CHECK(xen_hypercall_page_filled(), "some 32-byte stub is all zero");
	page_ok = true;
	long v = HYPERVISOR_xen_version(XENVER_version, NULL);
	kit_printf("KIT-XEN xen_version=0x%lx\n", v);
	KIT_CHECK(v == (long)xen_expected_version(), "xen_version(XENVER_version) = 0x%lx, expected 0x%x", v,
		  xen_expected_version());
}

static void ap_main(int cpu)
{
	uint32_t a, b, c, d;
	cpuid(base + 4, 0, &a, &b, &c, &d);
	ap_leaf4_a[cpu] = a;
	ap_leaf4_b[cpu] = b;
	ap_version[cpu] = page_ok ? HYPERVISOR_xen_version(XENVER_version, NULL) : -1;
	__atomic_store_n(&ap_done[cpu], 1, __ATOMIC_SEQ_CST);
}

static void hvm_leaf_case(void)
{
	KIT_CHECK(base, "no Xen base");
	uint32_t a, b, c, d, need = XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_UPCALL_VECTOR;
	cpuid(base + 4, 0, &a, &b, &c, &d);
	kit_printf("KIT-XEN hvm-leaf cpu=0 eax=0x%x vcpu=%u domid=%u%s\n", a, b, c,
		   a & XEN_HVM_CPUID_DOMID_PRESENT ? "" : " (not present)");
	KIT_CHECK((a & need) == need, "leaf 0x%x eax=0x%x lacks VCPU_ID_PRESENT|UPCALL_VECTOR", base + 4, a);
	KIT_CHECK(b == 0, "BSP vcpu id %u, expected 0", b);
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	for (int cpu = 1; cpu < online; cpu++) {
		KIT_CHECK(kit_wait_flag(&ap_done[cpu], 2000), "cpu %d did not report", cpu);
		kit_printf("KIT-XEN hvm-leaf cpu=%d eax=0x%x vcpu=%u\n", cpu, ap_leaf4_a[cpu], ap_leaf4_b[cpu]);
		KIT_CHECK((ap_leaf4_a[cpu] & need) == need, "cpu %d: eax=0x%x", cpu, ap_leaf4_a[cpu]);
		KIT_CHECK(ap_leaf4_b[cpu] == (uint32_t)cpu, "cpu %d: vcpu id %u", cpu, ap_leaf4_b[cpu]);
	}
}

static void ap_hypercall_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	KIT_CHECK(online >= 2, "only %d vCPU(s) online: run with --vcpus 2", online);
	for (int cpu = 1; cpu < online; cpu++) {
		KIT_CHECK(kit_wait_flag(&ap_done[cpu], 2000), "cpu %d did not report", cpu);
		KIT_CHECK(ap_version[cpu] == (long)xen_expected_version(), "cpu %d: xen_version = %ld", cpu,
			  ap_version[cpu]);
	}
}

static void unimplemented_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	long rc = xen_hypercall(__HYPERVISOR_kexec_op, 0, 0, 0, 0, 0);
	kit_printf("KIT-XEN kexec_op rc=%ld\n", rc);
	KIT_CHECK(rc == -XEN_ENOSYS, "kexec_op (37) = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
	rc = xen_hypercall(60, 1, 2, 3, 4, 5);
	kit_printf("KIT-XEN hypercall60 rc=%ld\n", rc);
	KIT_CHECK(rc == -XEN_ENOSYS, "hypercall 60 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
	rc = xen_hypercall(127, 0, 0, 0, 0, 0);
	KIT_CHECK(rc == -XEN_ENOSYS, "hypercall 127 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
}

static uint64_t user_calls(uint64_t arg)
{
	(void)arg;
	long a = HYPERVISOR_xen_version(XENVER_version, NULL);
	domid_t dom = DOMID_SELF;
	long b = HYPERVISOR_memory_op(XENMEM_current_reservation, &dom);
	/* Both must be -EPERM: report a if it isn't, else b. */
	return (uint64_t)(a != -XEN_EPERM ? a : b);
}

static void user_mode_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	long rc = (long)kit_run_user(user_calls, 0);
	kit_printf("KIT-XEN user-mode rc=%ld\n", rc);
	KIT_CHECK(rc == -XEN_EPERM, "hypercall from CPL 3 = %ld %s, expected -EPERM", rc, xen_errname(rc));
	/* Ring 0 still works afterwards. */
	long v = HYPERVISOR_xen_version(XENVER_version, NULL);
	KIT_CHECK(v == (long)xen_expected_version(), "after the ring 3 call xen_version = %ld", v);
}

/* Every general register but rax (and rsp) across xen_version(XENVER_version, NULL). */
struct regs_after {
	uint64_t rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rax;
};
void xen_argcheck(struct regs_after *out, void *stub);
__asm__(".text\n"
	".globl xen_argcheck\n"
	"xen_argcheck:\n"
	"	push %rbx\n	push %rbp\n	push %r12\n	push %r13\n	push %r14\n	push %r15\n"
	"	push %rdi\n"
	"	mov %rsi, %rax\n"
	"	xor %edi, %edi\n"			/* XENVER_version */
	"	xor %esi, %esi\n"			/* NULL */
	"	movabs $0xc0de0000000000d1, %rdx\n"
	"	movabs $0xc0de0000000000a1, %r10\n"
	"	movabs $0xc0de000000000081, %r8\n"
	"	movabs $0xc0de000000000091, %r9\n"
	"	movabs $0xc0de0000000000b1, %rbx\n"
	"	movabs $0xc0de0000000000c1, %rcx\n"
	"	movabs $0xc0de0000000000e1, %r11\n"
	"	movabs $0xc0de0000000000f1, %rbp\n"
	"	movabs $0xc0de000000000012, %r12\n"
	"	movabs $0xc0de000000000013, %r13\n"
	"	movabs $0xc0de000000000014, %r14\n"
	"	movabs $0xc0de000000000015, %r15\n"
	"	call *%rax\n"
	"	push %rax\n"
	"	mov 8(%rsp), %rax\n"
	"	mov %rbx, 0(%rax)\n	mov %rcx, 8(%rax)\n	mov %rdx, 16(%rax)\n	mov %rsi, 24(%rax)\n"
	"	mov %rdi, 32(%rax)\n	mov %rbp, 40(%rax)\n	mov %r8, 48(%rax)\n	mov %r9, 56(%rax)\n"
	"	mov %r10, 64(%rax)\n	mov %r11, 72(%rax)\n	mov %r12, 80(%rax)\n	mov %r13, 88(%rax)\n"
	"	mov %r14, 96(%rax)\n	mov %r15, 104(%rax)\n"
	"	pop %rbx\n"
	"	mov %rbx, 112(%rax)\n"
	"	pop %rdi\n"
	"	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n	pop %rbp\n	pop %rbx\n"
	"	ret\n");

static void args_preserved_case(void)
{
	KIT_CHECK(page_ok, "no hypercall page");
	struct regs_after r;
	memset(&r, 0, sizeof r);
	xen_argcheck(&r, xen_hypercall_page + __HYPERVISOR_xen_version * XEN_STUB_SIZE);
	KIT_CHECK(r.rax == xen_expected_version(), "rax=0x%lx", r.rax);
	static const struct {
		const char *name;
		size_t off;
		uint64_t want;
	} regs[] = {
		{ "rdi", offsetof(struct regs_after, rdi), 0 },
		{ "rsi", offsetof(struct regs_after, rsi), 0 },
		{ "rdx", offsetof(struct regs_after, rdx), 0xc0de0000000000d1 },
		{ "r10", offsetof(struct regs_after, r10), 0xc0de0000000000a1 },
		{ "r8", offsetof(struct regs_after, r8), 0xc0de000000000081 },
		{ "r9", offsetof(struct regs_after, r9), 0xc0de000000000091 },
		{ "rbx", offsetof(struct regs_after, rbx), 0xc0de0000000000b1 },
		{ "rcx", offsetof(struct regs_after, rcx), 0xc0de0000000000c1 },
		{ "r11", offsetof(struct regs_after, r11), 0xc0de0000000000e1 },
		{ "rbp", offsetof(struct regs_after, rbp), 0xc0de0000000000f1 },
		{ "r12", offsetof(struct regs_after, r12), 0xc0de000000000012 },
		{ "r13", offsetof(struct regs_after, r13), 0xc0de000000000013 },
		{ "r14", offsetof(struct regs_after, r14), 0xc0de000000000014 },
		{ "r15", offsetof(struct regs_after, r15), 0xc0de000000000015 },
	};
	for (size_t i = 0; i < sizeof regs / sizeof regs[0]; i++) {
		uint64_t got = *(uint64_t *)((uint8_t *)&r + regs[i].off);
		KIT_CHECK(got == regs[i].want, "%s = 0x%lx after the call, was 0x%lx", regs[i].name, got,
			  regs[i].want);
	}
}

void kit_main(void)
{
	kit_case("signature", signature_case);
	kit_case("version-leaf", version_leaf_case);
	kit_case("hypercall-leaf", hypercall_leaf_case);
	kit_case("hypercall-page", hypercall_page_case);
	online = kit_smp_start(ap_main);
	kit_case("hvm-leaf", hvm_leaf_case);
	kit_case("ap-hypercall", ap_hypercall_case);
	kit_case("unimplemented", unimplemented_case);
	kit_case("toolstack-refused", toolstack_refused_case);
	kit_case("user-mode", user_mode_case);
	kit_case("args-preserved", args_preserved_case);
}

/* MSRs the VMM intercepts: the Xen hypercall MSR (0x40000000) is write-only,
 * takes a page-aligned address (page index 0), and the rest of the range
 * faults (#GP); ordinary MSRs work. */
#include "../kit/kit.h"

static void rd_case(void)
{
	kit_expect_exception(13, 2); /* rdmsr is 2 bytes */
	uint64_t v = rdmsr(0x40000000);
	int n = kit_expect_done();
	(void)v;
	KIT_CHECK(n == 1, "rdmsr 0x40000000: %d #GP, want 1", n);
}

static void wr_case(void)
{
	kit_expect_exception(13, 2);
	wrmsr(0x40000001, 0);
	int n = kit_expect_done();
	KIT_CHECK(n == 1, "wrmsr 0x40000001: %d #GP, want 1", n);
	kit_expect_exception(13, 2);
	wrmsr(0x40000000, 0x200001); /* hypercall page index 1: Xen has one page */
	n = kit_expect_done();
	KIT_CHECK(n == 1, "wrmsr 0x40000000 with page index 1: %d #GP, want 1", n);
	kit_expect_exception(13, 2);
	wrmsr(0x40000000, 0xd0000000); /* not RAM */
	n = kit_expect_done();
	KIT_CHECK(n == 1, "wrmsr 0x40000000 outside RAM: %d #GP, want 1", n);
}

static void apic_base_case(void)
{
	uint64_t v = rdmsr(0x1b);
	KIT_CHECK((v & ~0xfffull) == 0xfee00000, "APIC base 0x%llx", (unsigned long long)v);
	KIT_CHECK(v & (1u << 11), "APIC disabled in IA32_APIC_BASE (0x%llx)", (unsigned long long)v);
	KIT_CHECK(v & (1u << 8), "BSP flag clear on the BSP (0x%llx)", (unsigned long long)v);
}

void kit_main(void)
{
	kit_case("rdmsr-xen-gp", rd_case);
	kit_case("wrmsr-xen-gp", wr_case);
	kit_case("rdmsr-apic-base", apic_base_case);
}

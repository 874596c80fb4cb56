/* CPUID as the guest sees it: hypervisor bit, no KVM signature in the
 * hypervisor range, APIC id in leaf 1 matches the LAPIC on every CPU. */
#include "../kit/kit.h"

static volatile int ap_ok[KIT_MAX_CPUS], ap_done[KIT_MAX_CPUS];
static volatile uint32_t ap_cpuid_id[KIT_MAX_CPUS], ap_lapic_id[KIT_MAX_CPUS];
static int online;

static uint32_t leaf1_apic(void)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	return b >> 24;
}

static void hv_bit_case(void)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	KIT_CHECK(c & (1u << 31), "leaf 1 ECX bit 31 clear (ecx=0x%x)", c);
}

static bool has_kvm(const char *s, size_t n)
{
	for (size_t i = 0; i + 9 <= n; i++)
		if (!memcmp(s + i, "KVMKVMKVM", 9))
			return true;
	return false;
}

static void signature_case(void)
{
	for (uint32_t leaf = 0x40000000; leaf <= 0x40010000; leaf += 0x100) {
		uint32_t r[4];
		cpuid(leaf, 0, &r[0], &r[1], &r[2], &r[3]);
		char sig[13];
		memcpy(sig, &r[1], 12);
		sig[12] = 0;
		for (int i = 0; i < 12; i++)
			if (sig[i] && (sig[i] < 0x20 || sig[i] > 0x7e))
				sig[i] = '?';
		if (r[1] | r[2] | r[3])
			kit_printf("KIT-CPUID leaf=0x%x max=0x%x sig=\"%s\"\n", leaf, r[0], sig);
		KIT_CHECK(!has_kvm((const char *)&r[1], 12), "KVM signature at leaf 0x%x", leaf);
	}
}

static void bsp_apic_case(void)
{
	uint32_t c = leaf1_apic(), l = kit_lapic_id();
	KIT_CHECK(c == l, "cpu 0: cpuid APIC id %u, LAPIC id %u", c, l);
}

static void ap_check(int cpu)
{
	ap_cpuid_id[cpu] = leaf1_apic();
	ap_lapic_id[cpu] = kit_lapic_id();
	ap_done[cpu] = 1;
}

static void ap_apic_case(void)
{
	KIT_CHECK(online == kit_ncpus(), "%d of %d CPUs online", online, kit_ncpus());
	for (int cpu = 1; cpu < online; cpu++) {
		KIT_CHECK(kit_wait_flag(&ap_done[cpu], 2000), "cpu %d did not report", cpu);
		KIT_CHECK(ap_cpuid_id[cpu] == ap_lapic_id[cpu], "cpu %d: cpuid APIC id %u, LAPIC id %u", cpu,
			  ap_cpuid_id[cpu], ap_lapic_id[cpu]);
	}
}

void kit_main(void)
{
	kit_case("hypervisor-bit", hv_bit_case);
	kit_case("no-kvm-signature", signature_case);
	kit_case("apic-id-bsp", bsp_apic_case);
	online = kit_smp_start(ap_check);
	kit_case("apic-id-aps", ap_apic_case);
}

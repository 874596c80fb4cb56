/* Round-trip benchmarks, timed with rdtsc over n iterations:
 *   mode=io (default): `outb %al, $0x80`, one I/O exit each; also the guest of
 *     bench/floor (no ACPI there: power-off falls back to port 0xf4).
 *   mode=hypercall: xen_version(XENVER_version) through the hypercall page,
 *     the null hypercall. */
#include "../kit/kit.h"

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));

static uint64_t bench_io(uint32_t count)
{
	uint64_t t0 = rdtsc();
	if (count)
		__asm__ volatile("1: outb %%al, $0x80\n\tdec %0\n\tjnz 1b" : "+c"(count) : "a"(0) : "memory");
	return rdtsc() - t0;
}

static uint64_t bench_hypercall(uint32_t count)
{
	uint32_t a, b, c, d;
	cpuid(0x40000002, 0, &a, &b, &c, &d); /* ebx: the hypercall MSR */
	wrmsr(b, (uintptr_t)hypercall_page);
	void *xen_version = hypercall_page + 17 * 32;
	uint64_t ret = 0;
	uint64_t t0 = rdtsc();
	/* rdi = XENVER_version, rsi = NULL, set for each call: Xen may clobber argument registers. */
	if (count)
		__asm__ volatile("1: xor %%edi, %%edi\n\txor %%esi, %%esi\n\tcall *%[f]\n\tdec %[n]\n\tjnz 1b"
				 : [n] "+r"(count), "=&a"(ret)
				 : [f] "r"(xen_version)
				 : "rdi", "rsi", "rdx", "r8", "r10", "memory");
	uint64_t t = rdtsc() - t0;
	return ret >> 16 ? t : 0; /* no major version: the calls did not reach Xen */
}

void kit_main(void)
{
	uint64_t n = 1000;
	char mode[16] = "io";
	kit_cmdline_u64("n", &n);
	kit_cmdline_get("mode", mode, sizeof mode);
	if (!strcmp(mode, "hypercall"))
		kit_printf("KIT-BENCH hypercalls=%u tsc=%llu\n", (uint32_t)n, (unsigned long long)bench_hypercall((uint32_t)n));
	else
		kit_printf("KIT-BENCH exits=%u tsc=%llu\n", (uint32_t)n, (unsigned long long)bench_io((uint32_t)n));
	kit_poweroff();
}

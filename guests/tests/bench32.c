/* I/O exit round trip: n iterations of `outb %al, $0x80`, timed with rdtsc.
 * Also the guest of bench/floor (no ACPI there: power-off falls back to port 0xf4). */
#include "../kit32/kit32.h"

void kit_main(void)
{
	uint64_t n = 1000;
	kit_cmdline_u64("n", &n);
	uint32_t count = (uint32_t)n;
	uint64_t t0 = rdtsc();
	if (count)
		__asm__ volatile("1: outb %%al, $0x80\n\tdec %0\n\tjnz 1b" : "+c"(count) : "a"(0) : "memory");
	uint64_t t1 = rdtsc();
	kit_printf("KIT-BENCH exits=%u tsc=%llu\n", (uint32_t)n, (unsigned long long)(t1 - t0));
	kit_poweroff();
}

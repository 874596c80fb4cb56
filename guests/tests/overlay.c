/* Looks at one guest frame (an overlay page placed by the VMM).
 * cmdline: gfn=<frame> (required), value=<u32> (default 0x600dcafe). */
#include "../kit/kit.h"

static uint64_t gfn, value = 0x600dcafe;
static bool have_gfn;

static void write_case(void)
{
	KIT_CHECK(have_gfn, "no gfn= on the cmdline");
	volatile uint32_t *w = kit_phys(gfn << 12);
	w[4] = (uint32_t)value;
	uint32_t v = w[4];
	KIT_CHECK(v == (uint32_t)value, "word 4 reads 0x%x after writing 0x%x", v, (uint32_t)value);
}

void kit_main(void)
{
	have_gfn = kit_cmdline_u64("gfn", &gfn) && gfn < (1ull << 20); /* identity map covers 4 GiB */
	kit_cmdline_u64("value", &value);
	if (have_gfn) {
		const volatile uint8_t *p = kit_phys(gfn << 12);
		char hex[33];
		for (int i = 0; i < 16; i++)
			kit_snprintf(hex + 2 * i, 3, "%02x", p[i]);
		kit_printf("KIT-OVERLAY %s\n", hex);
	}
	kit_case("overlay-write", write_case);
}

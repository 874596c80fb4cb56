/* Guest-physical addresses without RAM read as all-ones and drop writes.
 * cmdline: addr=<paddr> (default 0xd0000000, below 4 GiB). */
#include "../kit/kit.h"

static uint64_t addr = 0xd0000000;
static volatile uint32_t ram_word[16];

static void read_case(void)
{
	volatile uint8_t *b = kit_phys(addr);
	uint32_t v32 = *(volatile uint32_t *)b;
	uint8_t v8 = b[1];
	uint64_t v64 = *(volatile uint64_t *)(b + 8);
	KIT_CHECK(v32 == 0xffffffff, "u32 read 0x%x", v32);
	KIT_CHECK(v8 == 0xff, "u8 read 0x%x", v8);
	KIT_CHECK(v64 == ~0ull, "u64 read 0x%llx", (unsigned long long)v64);
}

static void write_case(void)
{
	volatile uint32_t *p = kit_phys(addr);
	*p = 0x12345678;
	uint32_t v = *p;
	KIT_CHECK(v == 0xffffffff, "read 0x%x after write", v);
}

static void ram_case(void)
{
	for (int i = 0; i < 16; i++)
		ram_word[i] = 0xa5a50000u + i;
	for (int i = 0; i < 16; i++)
		KIT_CHECK(ram_word[i] == 0xa5a50000u + i, "RAM word %d reads 0x%x", i, ram_word[i]);
}

void kit_main(void)
{
	kit_cmdline_u64("addr", &addr);
	if (addr >= (1ull << 32) - 16) {
		kit_case_result("unbacked-read", false, "addr must be below 4 GiB");
		return;
	}
	kit_case("unbacked-read", read_case);
	kit_case("unbacked-write", write_case);
	kit_case("ram-still-ok", ram_case);
}

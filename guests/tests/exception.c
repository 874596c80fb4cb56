/* An expected exception is skipped; an unexpected ud2 fails the run. With
 * double-fault on the command line, the ud2 runs on an unmapped stack instead:
 * its #UD cannot be delivered, and the #DF is (on its own stack). */
#include "../kit/kit.h"

static void expected_ud2(void)
{
	kit_expect_exception(6, 2);
	__asm__ volatile("ud2");
	int n = kit_expect_done();
	KIT_CHECK(n == 1, "expected one #UD, got %d", n);
}

static void unexpected_ud2(void)
{
	__asm__ volatile("ud2");
	kit_fail("ud2 did not trap");
}

static void ud2_on_unmapped_stack(void)
{
	__asm__ volatile("mov %0, %%rsp; ud2" :: "r"(KIT_UNMAPPED_VA) : "memory");
}

void kit_main(void)
{
	kit_case("expected-ud2", expected_ud2);
	if (kit_cmdline_get("double-fault", NULL, 0))
		kit_case("double-fault", ud2_on_unmapped_stack);
	else
		kit_case("unexpected-ud2", unexpected_ud2);
}

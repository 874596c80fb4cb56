/* An expected exception is skipped; an unexpected ud2 fails the run. */
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

void kit_main(void)
{
	kit_case("expected-ud2", expected_ud2);
	kit_case("unexpected-ud2", unexpected_ud2);
}

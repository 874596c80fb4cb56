/* Test harness: KIT-CASE lines and one KIT-SUMMARY line. */
#include "kitlib.h"

const char *volatile kit_current_case;
static volatile int passed, failed, finishing;
static char reason[160];
static volatile bool case_failed;

void kit_fail(const char *fmt, ...)
{
	if (case_failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	kit_vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	for (char *p = reason; *p; p++) /* the reason must stay on one line */
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	case_failed = true;
}

void kit_case_result(const char *name, bool ok, const char *why)
{
	if (ok) {
		passed++;
		kit_printf("KIT-CASE %s ok\n", name);
	} else {
		failed++;
		kit_printf("KIT-CASE %s FAIL %s\n", name, why && *why ? why : "failed");
	}
}

void kit_case(const char *name, kit_case_fn fn)
{
	case_failed = false;
	reason[0] = 0;
	kit_current_case = name;
	fn();
	kit_current_case = NULL;
	kit_case_result(name, !case_failed, reason);
}

KIT_NORETURN void kit_finish(void)
{
	finishing = 1;
	kit_printf("KIT-SUMMARY passed=%d failed=%d\n", passed, failed);
	kit_poweroff();
}

KIT_NORETURN void kit_abort(const char *why)
{
	/* Only one CPU reports; a second fatal error just stops. */
	if (__atomic_exchange_n(&finishing, 1, __ATOMIC_ACQ_REL))
		kit_halt_forever();
	kit_console_force_unlock();
	const char *name = kit_current_case ? kit_current_case : "boot";
	failed++;
	kit_printf("KIT-CASE %s FAIL %s\n", name, why);
	kit_printf("KIT-SUMMARY passed=%d failed=%d\n", passed, failed);
	kit_poweroff();
}

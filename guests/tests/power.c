/* Power actions as a kernel performs them. cmdline action=poweroff (sleep
 * control register), poweroff-pm1a, reset, triple-fault, halt, spin. */
#include "../kit/kit.h"

static void acpi_case(void)
{
	KIT_CHECK(kit_acpi.found, "%s", kit_acpi_error);
	KIT_CHECK(kit_acpi.fadt, "no FADT");
	KIT_CHECK(kit_acpi.s5_found, "%s", kit_acpi_error);
	kit_printf("KIT-ACPI hw_reduced=%d slp_typ=%u sleep_ctl=0x%llx pm1a_cnt=0x%x reset=0x%llx/%u value=0x%x\n",
		   kit_acpi.hw_reduced, kit_acpi.slp_typ, (unsigned long long)kit_acpi.sleep_ctl.address,
		   kit_acpi.pm1a_cnt, (unsigned long long)kit_acpi.reset_reg.address, kit_acpi.reset_reg.space,
		   kit_acpi.reset_value);
}

void kit_main(void)
{
	char action[32] = "poweroff";
	kit_cmdline_get("action", action, sizeof action);
	kit_case("acpi-tables", acpi_case);
	kit_printf("KIT-POWER action=%s\n", action);
	if (!strcmp(action, "poweroff"))
		kit_poweroff_sleepctl();
	if (!strcmp(action, "poweroff-pm1a"))
		kit_poweroff_pm1a();
	if (!strcmp(action, "reset"))
		kit_reset();
	if (!strcmp(action, "triple-fault")) {
		static const struct __attribute__((packed)) { uint16_t limit; uint64_t base; } empty = { 0, 0 };
		__asm__ volatile("lidt %0; ud2" :: "m"(empty));
	}
	if (!strcmp(action, "halt"))
		kit_halt_forever();
	if (!strcmp(action, "spin"))
		for (;;)
			__asm__ volatile("" ::: "memory"); /* guest code with no exits: only a kick ends KVM_RUN */
	kit_case_result("action", false, "unknown action");
}

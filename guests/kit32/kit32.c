/* 32-bit polling kit boot: single CPU, no interrupts. */
#include "kit32.h"

int kit_cpu_index(void)
{
	return 0;
}

void kit32_start(uint32_t start_info_paddr);
void kit32_start(uint32_t start_info_paddr)
{
	kit_startinfo_init(start_info_paddr);
	if (!start_info_paddr || kit_start_info->magic != HVM_START_MAGIC)
		kit_printf("KIT-BOOT bad start_info at 0x%x\n", start_info_paddr);
	kit_acpi_init();
	kit_main();
	kit_finish();
}

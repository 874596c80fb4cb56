/* 64-bit kit: boot in C, the IDT and kit_trap, the AP's entry in C. */
#include "kit.h"

extern uint32_t kit_start_info_paddr;
extern const uint8_t kit_isr_stubs[];

/* ---- IDT ---- */
struct idt_entry {
	uint16_t off0, sel, flags, off1;
	uint32_t off2, zero;
};
static struct idt_entry idt[256] __attribute__((aligned(4096)));
static struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idt_desc;

/* present, 64-bit interrupt gate into the kit's code segment, DPL 0 or 3 */
static void set_gate(int v, uint64_t h, int dpl)
{
	uint16_t flags = (uint16_t)(0x8e00 | dpl << 13);
	idt[v] = (struct idt_entry){ (uint16_t)h, 0x18, flags, (uint16_t)(h >> 16), (uint32_t)(h >> 32), 0 };
}

void kit_set_idt_gate(int vector, void (*stub)(void))
{
	set_gate(vector, (uint64_t)(uintptr_t)stub, 0);
}

void kit_set_user_gate(int vector, void (*stub)(void))
{
	set_gate(vector, (uint64_t)(uintptr_t)stub, 3);
}

static void idt_init(void)
{
	for (int v = 0; v < 256; v++)
		set_gate(v, (uint64_t)(uintptr_t)(kit_isr_stubs + 16 * v), 0);
	idt_desc.limit = sizeof idt - 1;
	idt_desc.base = (uint64_t)(uintptr_t)idt;
}

static void idt_load(void)
{
	__asm__ volatile("lidt %0" :: "m"(idt_desc));
}

void kit_trap(struct kit_frame *f);
void kit_trap(struct kit_frame *f)
{
	kit_trap_common(f, (int)f->vector, &f->rip, f->error);
}

/* ---- boot ---- */
void kit_ap_prepare(int cpu)
{
	(void)cpu; /* every AP uses the BSP's page tables as they are */
}

void kit_ap_start64(void);
void kit_ap_start64(void)
{
	idt_load();
	kit_ap_run();
}

void kit_start64(void);
void kit_start64(void)
{
	idt_init();
	idt_load();
	kit_startinfo_init(kit_start_info_paddr);
	if (!kit_start_info_paddr || kit_start_info->magic != HVM_START_MAGIC)
		kit_printf("KIT-BOOT bad start_info at 0x%x\n", kit_start_info_paddr);
	kit_acpi_init();
	kit_lapic_init();
	kit_main();
	kit_finish();
}

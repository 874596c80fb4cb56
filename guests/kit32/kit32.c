/* 32-bit kit: boot in C, the IDT and kit_trap, the AP's entry in C, 4 KiB
 * mappings in the top 2 MiB. */
#include "kit32.h"

extern uint32_t kit_start_info_paddr;
extern const uint8_t kit_isr_stubs[];
extern uint64_t kit_pdpt[4], kit_pt_top[512];

/* ---- IDT ---- */
struct idt_entry {
	uint16_t off0, sel;
	uint8_t zero, flags;
	uint16_t off1;
};
_Static_assert(sizeof(struct idt_entry) == 8, "32-bit gate");
static struct idt_entry idt[256] __attribute__((aligned(4096)));
static struct __attribute__((packed)) { uint16_t limit; uint32_t base; } idt_desc;

/* present, DPL 0, 32-bit interrupt gate into the kit's code segment */
static void set_gate(int v, uint32_t h)
{
	idt[v] = (struct idt_entry){ (uint16_t)h, 0x08, 0, 0x8e, (uint16_t)(h >> 16) };
}

void kit_set_idt_gate(int vector, void (*stub)(void))
{
	set_gate(vector, (uint32_t)(uintptr_t)stub);
}

static void idt_init(void)
{
	for (int v = 0; v < 256; v++)
		set_gate(v, (uint32_t)(uintptr_t)(kit_isr_stubs + 16 * v));
	idt_desc.limit = sizeof idt - 1;
	idt_desc.base = (uint32_t)(uintptr_t)idt;
}

static void idt_load(void)
{
	__asm__ volatile("lidt %0" :: "m"(idt_desc));
}

void kit_trap(struct kit_frame *f);
void kit_trap(struct kit_frame *f)
{
	kit_trap_common(f, (int)f->vector, &f->eip, f->error);
}

/* ---- paging ---- */
#define PTE_P 0x1ull
#define PTE_W 0x2ull
#define PTE_ADDR 0x000ffffffffff000ull

/* A 64-bit entry written in two halves, the present bit last when setting
 * and first when clearing, so no walk sees half of it. */
static void set_pte(uint32_t va, uint64_t e)
{
	volatile uint32_t *half = (volatile uint32_t *)&kit_pt_top[(va >> 12) & 511];
	half[0] = 0;
	half[1] = (uint32_t)(e >> 32);
	half[0] = (uint32_t)e;
	invlpg(va);
}

bool kit_map_page(uint32_t va, uint64_t pa)
{
	if (va < KIT_MAP_BASE || va >= KIT_UNMAPPED_VA)
		return false;
	set_pte(va, (pa & PTE_ADDR) | PTE_P | PTE_W);
	return true;
}

void kit_unmap_page(uint32_t va)
{
	if (va >= KIT_MAP_BASE && va < KIT_UNMAPPED_VA)
		set_pte(va, 0);
}

/* ---- boot ---- */
/* The CPU sets the Accessed bit (5) in PAE PDPTEs as it walks them (QEMU's
 * AMD with nested paging does), and KVM refuses (#GP) a MOV to CR0 that turns
 * on PAE paging while a PDPTE has a bit it takes as reserved, bit 5 among
 * them. So each AP turns paging on with a PDPT of its own, a copy of the
 * BSP's that nothing has walked yet, and keeps it: same page directories. */
extern const uint8_t kit_tramp_start[], kit_tramp_cr3[];
static uint64_t ap_pdpt[KIT_MAX_CPUS][4] __attribute__((aligned(32)));

void kit_ap_prepare(int cpu)
{
	for (int i = 0; i < 4; i++)
		ap_pdpt[cpu][i] = kit_pdpt[i] & ~0x20ull;
	uint32_t *cr3 = (uint32_t *)(uintptr_t)(TRAMP_BASE + (uint32_t)(kit_tramp_cr3 - kit_tramp_start));
	*cr3 = (uint32_t)(uintptr_t)ap_pdpt[cpu];
}

void kit_ap_start32(void);
void kit_ap_start32(void)
{
	idt_load();
	kit_ap_run();
}

void kit_start32(void);
void kit_start32(void)
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

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
#define DOUBLE_FAULT_IST 1 /* the TSS stack (below) a double fault runs on */
static struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idt_desc;

/* present, 64-bit interrupt gate into the kit's code segment, DPL 0 or 3,
 * on the current stack (ist 0) or the TSS's stack ist */
static void set_gate(int v, uint64_t h, int dpl, int ist)
{
	uint16_t flags = (uint16_t)(0x8e00 | dpl << 13 | ist);
	idt[v] = (struct idt_entry){ (uint16_t)h, 0x18, flags, (uint16_t)(h >> 16), (uint32_t)(h >> 32), 0 };
}

void kit_set_idt_gate(int vector, void (*stub)(void))
{
	set_gate(vector, (uint64_t)(uintptr_t)stub, 0, 0);
}

void kit_set_user_gate(int vector, void (*stub)(void))
{
	set_gate(vector, (uint64_t)(uintptr_t)stub, 3, 0);
}

static void idt_init(void)
{
	/* A double fault gets a stack of its own: a fault whose delivery found the
	 * stack unusable is then reported instead of shutting the CPU down. */
	for (int v = 0; v < 256; v++)
		set_gate(v, (uint64_t)(uintptr_t)(kit_isr_stubs + 16 * v), 0, v == 8 ? DOUBLE_FAULT_IST : 0);
	idt_desc.limit = sizeof idt - 1;
	idt_desc.base = (uint64_t)(uintptr_t)idt;
}

static void idt_load(void)
{
	__asm__ volatile("lidt %0" :: "m"(idt_desc));
}

/* ---- per-CPU TSS: the double-fault stack, and ring 3's rsp0 (user.c) ---- */
struct tss64 {
	uint32_t rsv0;
	uint64_t rsp[3];
	uint64_t rsv1;
	uint64_t ist[7];
	uint64_t rsv2;
	uint16_t rsv3, iomap_base;
} __attribute__((packed));
_Static_assert(sizeof(struct tss64) == 104, "TSS layout");

#define TSS_SELECTOR(cpu) (0x38 + 16 * (cpu))
extern uint64_t kit_gdt[];
static struct tss64 tss[KIT_MAX_CPUS] __attribute__((aligned(16)));
static uint8_t double_fault_stacks[KIT_MAX_CPUS][4096] __attribute__((aligned(16)));

static void tss_load(int cpu)
{
	struct tss64 *t = &tss[cpu];
	t->ist[DOUBLE_FAULT_IST - 1] = (uint64_t)(uintptr_t)(double_fault_stacks[cpu + 1]);
	t->iomap_base = sizeof *t; /* no I/O bitmap: all ports fault at CPL 3 */
	uint64_t base = (uint64_t)(uintptr_t)t, limit = sizeof *t - 1;
	int slot = TSS_SELECTOR(cpu) / 8;
	kit_gdt[slot] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 | ((limit >> 16) & 0xf) << 48 |
			((base >> 24) & 0xff) << 56;
	kit_gdt[slot + 1] = base >> 32;
	__asm__ volatile("ltr %w0" :: "r"(TSS_SELECTOR(cpu)) : "memory");
}

void kit_tss_set_rsp0(uint64_t rsp0)
{
	tss[0].rsp[0] = rsp0;
}

void kit_trap(struct kit_frame *f);
void kit_trap(struct kit_frame *f)
{
	if (f->vector == 8) {
		/* On its own stack: where the faulting code's stack was says why its fault could not be delivered. */
		kit_console_force_unlock();
		kit_printf("KIT-DOUBLE-FAULT apic=%u rip=0x%lx rsp=0x%lx rflags=0x%lx cs=0x%lx ss=0x%lx cr3=0x%lx\n", kit_lapic_id(),
			   (unsigned long)f->rip, (unsigned long)f->rsp, (unsigned long)f->rflags, (unsigned long)f->cs,
			   (unsigned long)f->ss, (unsigned long)read_cr3());
	}
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
	tss_load(kit_cpu_index());
	kit_ap_run();
}

void kit_start64(void);
void kit_start64(void)
{
	idt_init();
	idt_load();
	tss_load(0);
	kit_startinfo_init(kit_start_info_paddr);
	if (!kit_start_info_paddr || kit_start_info->magic != HVM_START_MAGIC)
		kit_printf("KIT-BOOT bad start_info at 0x%x\n", kit_start_info_paddr);
	kit_acpi_init();
	kit_lapic_init();
	kit_main();
	kit_finish();
}

/* 64-bit kit: 4 KiB mappings above the identity map, and ring 3 round trips. */
#include "kit.h"

#define PTE_P 0x1ull
#define PTE_W 0x2ull
#define PTE_U 0x4ull
#define PTE_PS 0x80ull
#define PTE_ADDR 0x000ffffffffff000ull
#define PT_POOL_PAGES 16

extern uint64_t kit_pml4[512];
extern uint64_t kit_user_call(uint64_t (*fn)(uint64_t), uint64_t arg, void *stack_top);
extern void kit_user_return(void);

/* ---- page tables ---- */
static uint64_t pt_pool[PT_POOL_PAGES][512] __attribute__((aligned(4096)));
static int pt_used;

/* Returns the next-level table of entry *e, creating it if absent. */
static uint64_t *next_table(uint64_t *e)
{
	if (!(*e & PTE_P)) {
		if (pt_used == PT_POOL_PAGES)
			return NULL;
		uint64_t *t = pt_pool[pt_used++];
		memset(t, 0, 4096);
		*e = (uint64_t)(uintptr_t)t | PTE_P | PTE_W | PTE_U;
	}
	if (*e & PTE_PS)
		return NULL;
	return (uint64_t *)(uintptr_t)(*e & PTE_ADDR);
}

static uint64_t *pte_for(uint64_t va)
{
	if (va < KIT_IDENTITY_END || va >= (1ull << 47))
		return NULL;
	uint64_t *pdpt = next_table(&kit_pml4[(va >> 39) & 511]);
	uint64_t *pd = pdpt ? next_table(&pdpt[(va >> 30) & 511]) : NULL;
	uint64_t *pt = pd ? next_table(&pd[(va >> 21) & 511]) : NULL;
	return pt ? &pt[(va >> 12) & 511] : NULL;
}

static bool map_page(uint64_t va, uint64_t pa, uint64_t flags)
{
	uint64_t *pte = pte_for(va & ~0xfffull);
	if (!pte)
		return false;
	*pte = (pa & PTE_ADDR) | PTE_P | PTE_U | flags;
	invlpg(va);
	return true;
}

bool kit_map_page(uint64_t va, uint64_t pa)
{
	return map_page(va, pa, PTE_W);
}

bool kit_map_page_ro(uint64_t va, uint64_t pa)
{
	return map_page(va, pa, 0);
}

void kit_unmap_page(uint64_t va)
{
	uint64_t *pte = pte_for(va & ~0xfffull);
	if (pte) {
		*pte = 0;
		invlpg(va);
	}
}

/* ---- ring 3 ---- */
static uint8_t user_kstack[8192] __attribute__((aligned(16)));
static uint8_t user_stack[8192] __attribute__((aligned(16)));
static bool user_ready;

void kit_user_init(void)
{
	if (user_ready)
		return;
	/* U bit down the identity map: PML4[0], PDPT[0..3], every 2 MiB PDE. */
	kit_pml4[0] |= PTE_U;
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(kit_pml4[0] & PTE_ADDR);
	for (int i = 0; i < 4; i++) {
		pdpt[i] |= PTE_U;
		uint64_t *pd = (uint64_t *)(uintptr_t)(pdpt[i] & PTE_ADDR);
		for (int j = 0; j < 512; j++)
			pd[j] |= PTE_U;
	}
	write_cr3(read_cr3());

	kit_tss_set_rsp0((uint64_t)(uintptr_t)(user_kstack + sizeof user_kstack));
	kit_set_user_gate(KIT_USER_RETURN_VECTOR, kit_user_return);
	user_ready = true;
}

uint64_t kit_run_user(uint64_t (*fn)(uint64_t), uint64_t arg)
{
	kit_user_init();
	return kit_user_call(fn, arg, user_stack + sizeof user_stack);
}

/* 32-bit kit: what a 32-bit kernel has. Its own GDT (flat code 0x08, data
 * 0x10) and IDT (exception reports, IRQ handlers), PAE paging, and from
 * common/kitcpu.h the LAPIC, AP bring-up and the AP mailbox. */
#ifndef KIT32_H
#define KIT32_H

#include "../common/kitcpu.h"

/* Saved by the interrupt stubs (entry32.S), lowest address first: pushal,
 * vector, error code, then the CPU's frame (no ss:esp: the kit stays at CPL 0). */
struct kit_frame {
	uint32_t edi, esi, ebp, esp, ebx, edx, ecx, eax;
	uint32_t vector, error;
	uint32_t eip, cs, eflags;
};

/* ---- paging ----
 * PAE, set up at boot: 0 .. KIT_MAP_BASE is identity-mapped with 2 MiB pages
 * (writable, supervisor). The top 2 MiB are 4 KiB pages: kit_map_page maps
 * one at va in KIT_MAP_BASE .. KIT_UNMAPPED_VA to any pa (so two non-adjacent
 * frames can sit next to each other virtually); false outside that range. */
#define KIT_MAP_BASE 0xffe00000u
/* Never mapped by the kit: hypercall arguments here must fail (-EFAULT). */
#define KIT_UNMAPPED_VA 0xfffff000u
bool kit_map_page(uint32_t va, uint64_t pa);
void kit_unmap_page(uint32_t va);

#endif

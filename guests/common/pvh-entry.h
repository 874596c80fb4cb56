/* Shared by both kits' entry code: the PVH entry note, .bss zeroing, the
 * PDPT's entries and the interrupt stubs. */

/* XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit physical entry point. */
#define PVH_ENTRY_NOTE(entry)            \
	.pushsection .note.Xen, "a", @note; \
	.p2align 2;                          \
	.long 4, 4, 18;                      \
	.asciz "Xen";                        \
	.long entry;                         \
	.popsection

/* Zeroes .bss with rep stosl; clobbers %eax, %ecx, %edi (keeps %ebx, start_info). */
#define ZERO_BSS                  \
	mov $__bss_start, %edi;       \
	mov $__bss_end, %ecx;         \
	sub %edi, %ecx;               \
	shr $2, %ecx;                 \
	xor %eax, %eax;               \
	rep stosl

/* Points kit_pdpt's 4 entries at the 4 page directories from kit_pd on;
 * clobbers %eax, %ecx, %edi. */
#define PDPT_TO_PDS(flags)            \
	mov $kit_pd, %eax;            \
	or $(flags), %eax;            \
	mov $kit_pdpt, %edi;          \
	mov $4, %ecx;                 \
1:	mov %eax, (%edi);             \
	add $4096, %eax;              \
	add $8, %edi;                 \
	dec %ecx;                     \
	jnz 1b

/* kit_isr_stubs, 16 bytes each: push a dummy error code where the CPU
 * doesn't, push the vector, join the kit's kit_isr_common. push $imm pushes
 * the mode's word, as pushl or pushq would. */
	.macro ISR_STUBS
	.p2align 4
	.globl kit_isr_stubs
kit_isr_stubs:
	.set vec, 0
	.rept 256
	.p2align 4
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	push $0
	.endif
	push $vec
	jmp kit_isr_common
	.set vec, vec + 1
	.endr
	.endm

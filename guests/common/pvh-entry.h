/* Shared by both kits' entry code: the PVH entry note and .bss zeroing. */

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

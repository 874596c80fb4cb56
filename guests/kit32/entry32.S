/* 32-bit polling kit: PVH entry, stays in the flat 32-bit mode it was
 * given (no lgdt, lidt, paging or interrupts). */
#define KIT32_STACK_SIZE 16384

#include "../common/pvh-entry.h"

	PVH_ENTRY_NOTE(kit_pvh_start)

	.section .text.entry, "ax"
	.code32
	.globl kit_pvh_start
kit_pvh_start:
	cli
	cld
	ZERO_BSS
	mov $(kit32_stack + KIT32_STACK_SIZE), %esp
	xor %ebp, %ebp
	push %ebx
	call kit32_start
1:	cli
	hlt
	jmp 1b

	.section .stack, "aw", @nobits
	.p2align 4
kit32_stack:	.skip KIT32_STACK_SIZE

/* 32-bit kit: PVH entry (32-bit flat, paging off), then what a 32-bit
 * kernel sets up: its own GDT, and PAE paging with an identity map of the
 * low 4 GiB in 2 MiB pages but for the top 2 MiB, which a page table maps in
 * 4 KiB pages (kit_map_page); interrupt stubs; AP trampoline. */

#include "../common/kit-layout.h"
#include "../common/pvh-entry.h"

	PVH_ENTRY_NOTE(kit_pvh_start)

	.section .text.entry, "ax"
	.code32
	.globl kit_pvh_start
kit_pvh_start:
	cli
	cld
	/* %ebx = start_info; zero .bss (includes the page tables), keep %ebx */
	ZERO_BSS
	mov %ebx, kit_start_info_paddr
	mov $(kit_stacks + KIT_STACK_SIZE), %esp

	/* PDPT[0..3] -> 4 PDs (a PAE PDPTE has only P, PWT, PCD: no R/W, U/S) */
	PDPT_TO_PDS(1)
	/* PD entries 0..2046: 2 MiB pages, present and writable */
	mov $kit_pd, %edi
	mov $0x83, %eax
	mov $2047, %ecx
2:	mov %eax, (%edi)
	add $0x200000, %eax
	add $8, %edi
	dec %ecx
	jnz 2b
	/* PD entry 2047 (0xffe00000): the 4 KiB page table, empty */
	mov $kit_pt_top, %eax
	or $3, %eax
	mov %eax, (%edi)

	lgdt kit_gdt_desc
	ljmp $0x08, $3f
3:	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov %cr4, %eax
	or $0x20, %eax		/* PAE */
	mov %eax, %cr4
	mov $kit_pdpt, %eax
	mov %eax, %cr3
	mov %cr0, %eax
	or $0x80000001, %eax	/* PG, PE */
	mov %eax, %cr0
	xor %ebp, %ebp
	call kit_start32
4:	cli
	hlt
	jmp 4b

	/* AP, arriving from the trampoline with paging on */
kit_ap_entry32:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov kit_ap_stack_top, %esp
	xor %ebp, %ebp
	call kit_ap_start32
5:	cli
	hlt
	jmp 5b

	ISR_STUBS

kit_isr_common:
	pushal
	cld
	push %esp		/* struct kit_frame * */
	call kit_trap
	add $4, %esp
	popal
	add $8, %esp
	iret

	/* AP trampoline, copied to TRAMP_BASE (SIPI vector 0x08): real mode
	 * straight to 32-bit PAE paging with the BSP's GDT and page directories,
	 * under the PDPT kit_ap_prepare wrote into kit_tramp_cr3 (see kit32.c). */
	.code16
	.globl kit_tramp_start, kit_tramp_end, kit_tramp_cr3
	.p2align 4
kit_tramp_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	lgdtl (TRAMP_BASE + kit_tramp_gdt_desc - kit_tramp_start)
	mov $0x20, %eax		/* PAE */
	mov %eax, %cr4
	mov (TRAMP_BASE + kit_tramp_cr3 - kit_tramp_start), %eax
	mov %eax, %cr3
	mov $0x80000011, %eax	/* PG, ET, PE */
	mov %eax, %cr0
	ljmpl $0x08, $kit_ap_entry32
kit_tramp_gdt_desc:
	.word kit_gdt_end - kit_gdt - 1
	.long kit_gdt
kit_tramp_cr3:
	.long 0
kit_tramp_end:

	.data
	.p2align 4
	.globl kit_gdt
kit_gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08 code32 */
	.quad 0x00cf93000000ffff	/* 0x10 data */
kit_gdt_end:
kit_gdt_desc:
	.word kit_gdt_end - kit_gdt - 1
	.long kit_gdt

	.globl kit_start_info_paddr, kit_ap_stack_top
	.p2align 2
kit_start_info_paddr:
	.long 0
kit_ap_stack_top:
	.long 0

	.section .bss.pt, "aw", @nobits
	.p2align 12
	.globl kit_pdpt, kit_pd, kit_pt_top
kit_pdpt:	.skip 4096	/* only 32 bytes used */
kit_pd:		.skip 4 * 4096
kit_pt_top:	.skip 4096

	/* Not zeroed at boot: stacks need no clearing. */
	.section .stack, "aw", @nobits
	.p2align 12
	.globl kit_stacks
kit_stacks:	.skip KIT_STACK_SIZE * KIT_MAX_CPUS

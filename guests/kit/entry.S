/* 64-bit kit: PVH entry (32-bit flat, paging off), switch to long mode with
 * an identity map of 4 GiB (2 MiB pages); interrupt stubs; AP trampoline. */

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

	/* PML4[0] -> PDPT; PDPT[0..3] -> 4 PDs; each PD entry a 2 MiB page */
	movl $(kit_pdpt + 3), kit_pml4
	PDPT_TO_PDS(3)
	mov $kit_pd, %edi
	mov $0x83, %eax		/* present, writable, 2 MiB */
	xor %edx, %edx
	mov $2048, %ecx
2:	mov %eax, (%edi)
	mov %edx, 4(%edi)
	add $0x200000, %eax
	adc $0, %edx
	add $8, %edi
	dec %ecx
	jnz 2b

	lgdt kit_gdt_desc
	mov %cr4, %eax
	or $0x20, %eax		/* PAE */
	mov %eax, %cr4
	mov $kit_pml4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax
	mov %eax, %cr0
	ljmp $0x18, $3f

	.code64
3:	mov $0x20, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov $(kit_stacks + KIT_STACK_SIZE), %rsp
	xor %ebp, %ebp
	call kit_start64
4:	cli
	hlt
	jmp 4b

	/* AP, arriving from the trampoline in long mode */
kit_ap_entry64:
	mov $0x20, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov kit_ap_stack_top(%rip), %rsp
	xor %ebp, %ebp
	call kit_ap_start64
5:	cli
	hlt
	jmp 5b

	ISR_STUBS

kit_isr_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	cld
	mov %rsp, %rdi
	call kit_trap
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp
	iretq

	/* AP trampoline, copied to TRAMP_BASE (SIPI vector 0x08): real mode
	 * straight to long mode with the BSP's GDT and page tables. */
	.code16
	.globl kit_tramp_start, kit_tramp_end
kit_tramp_start:
	cli
	xor %ax, %ax
	mov %ax, %ds
	lgdtl (TRAMP_BASE + kit_tramp_gdt_desc - kit_tramp_start)
	mov $0x20, %eax		/* PAE */
	mov %eax, %cr4
	mov $kit_pml4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov $0x80000011, %eax	/* PG, ET, PE */
	mov %eax, %cr0
	ljmpl $0x18, $kit_ap_entry64
kit_tramp_gdt_desc:
	.word kit_gdt_end - kit_gdt - 1
	.long kit_gdt
kit_tramp_end:

	/* Ring 3 round trip (BSP only, see user.c): kit_user_call(fn, arg,
	 * user_stack_top) iretq's to fn(arg) at CPL 3 with IF=0. The user side
	 * comes back with `int $KIT_USER_RETURN_VECTOR`, whose gate (DPL 3, set
	 * by kit_user_init) is kit_user_return: on the TSS rsp0 stack with
	 * %rdi = fn's result, it returns from kit_user_call. */
	.text
	.code64
	.globl kit_user_call, kit_user_return
kit_user_call:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	pushfq
	mov %rsp, kit_user_saved_rsp(%rip)
	cli
	pushq $0x2b		/* ss: user data, RPL 3 */
	pushq %rdx		/* rsp */
	pushq $0x2		/* rflags: IF=0 */
	pushq $0x33		/* cs: user code64, RPL 3 */
	lea kit_user_tramp(%rip), %rax
	pushq %rax
	mov %rdi, %rax
	mov %rsi, %rdi
	iretq
kit_user_tramp:			/* CPL 3 */
	call *%rax
	mov %rax, %rdi
	int $KIT_USER_RETURN_VECTOR
	ud2			/* not reached */
kit_user_return:		/* CPL 0 on rsp0, IF=0; %rdi = result */
	mov $0x20, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov kit_user_saved_rsp(%rip), %rsp
	mov %rdi, %rax
	popfq
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

	/* Writable: ltr marks the TSS descriptor busy. */
	.data
	.p2align 4
	.globl kit_gdt
kit_gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08 code32 */
	.quad 0x00cf93000000ffff	/* 0x10 data */
	.quad 0x00af9b000000ffff	/* 0x18 code64 */
	.quad 0x00cf93000000ffff	/* 0x20 data */
	.quad 0x00cff3000000ffff	/* 0x28 user data (DPL 3) */
	.quad 0x00affb000000ffff	/* 0x30 user code64 (DPL 3) */
	.fill 2 * KIT_MAX_CPUS, 8, 0	/* 0x38 + 16 * cpu: that CPU's 64-bit TSS, filled by kit_tss_load */
kit_gdt_end:
kit_gdt_desc:
	.word kit_gdt_end - kit_gdt - 1
	.long kit_gdt

	.globl kit_start_info_paddr, kit_ap_stack_top, kit_user_saved_rsp
	.p2align 3
kit_user_saved_rsp:
	.quad 0
kit_start_info_paddr:
	.long 0
	.long 0
kit_ap_stack_top:
	.quad 0

	.section .bss.pt, "aw", @nobits
	.p2align 12
	.globl kit_pml4
kit_pml4:	.skip 4096
kit_pdpt:	.skip 4096
kit_pd:		.skip 4 * 4096

	/* Not zeroed at boot: stacks need no clearing. */
	.section .stack, "aw", @nobits
	.p2align 12
	.globl kit_stacks
kit_stacks:	.skip KIT_STACK_SIZE * KIT_MAX_CPUS

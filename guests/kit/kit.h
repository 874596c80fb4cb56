/* 64-bit kit: long mode with a 4 GiB identity map, IDT, ring 3; the LAPIC,
 * SMP and the AP mailbox are common/kitcpu.h. */
#ifndef KIT_H
#define KIT_H

#include "../common/kitcpu.h"

/* Saved by the interrupt stubs (entry.S), lowest address first. */
struct kit_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

/* ---- paging (user.c) ----
 * The boot identity map covers 0..4 GiB with 2 MiB pages. kit_map_page maps
 * one 4 KiB page at va >= 4 GiB (below 2^47) to pa, writable and user
 * accessible, allocating page tables from a small pool; false if va is in
 * the identity map, not canonical, or the pool is exhausted. */
#define KIT_IDENTITY_END 0x100000000ull
/* The kernel's first and last byte + 1 (kernel.ld), stacks and page tables included. */
extern char kit_image_start[], kit_image_end[];
/* Never mapped by the kit: hypercall arguments here must fail (-EFAULT). */
#define KIT_UNMAPPED_VA 0x00007f0000000000ull
bool kit_map_page(uint64_t va, uint64_t pa);
bool kit_map_page_ro(uint64_t va, uint64_t pa); /* the same, read-only */
void kit_unmap_page(uint64_t va);

/* ---- ring 3 (user.c), BSP only ----
 * kit_run_user runs fn(arg) at CPL 3 (IF=0, on a kit user stack) and returns
 * its result. The first call makes the identity map user accessible (U bit;
 * no SMEP/SMAP here), sets the BSP's TSS rsp0 and opens the gate of
 * KIT_USER_RETURN_VECTOR to CPL 3: fn returns to an `int` through it, which
 * resumes kit_run_user. Code run at CPL 3 must not print (port I/O faults). */
void kit_user_init(void);
uint64_t kit_run_user(uint64_t (*fn)(uint64_t), uint64_t arg);
/* An interrupt gate that CPL 3 may reach with `int n` (cpu.c). */
void kit_set_user_gate(int vector, void (*stub)(void));
/* The stack the BSP's TSS gives a ring 3 → ring 0 transition (cpu.c: each
 * CPU has a TSS, loaded at start-up, whose IST 1 is its double-fault stack). */
void kit_tss_set_rsp0(uint64_t rsp0);

#endif

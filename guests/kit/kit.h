/* 64-bit kit: long mode, IDT, LAPIC, SMP on top of the shared kitlib. */
#ifndef KIT_H
#define KIT_H

#include "../common/kitlib.h"

/* Saved by the interrupt stubs (entry.S), lowest address first. */
struct kit_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
/* sti takes effect after the next instruction, so no interrupt is lost between them. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }

/* ---- exceptions and interrupts ---- */
/* The next exception `vector` (any CPU) is counted and skipped: rip += insn_len. */
void kit_expect_exception(int vector, int insn_len);
/* Stops expecting; returns how many expected exceptions were taken. */
int kit_expect_done(void);
struct kit_exception_info { int vector; uint64_t rip, error, cr2; };
extern volatile struct kit_exception_info kit_last_exception;

typedef void (*kit_irq_fn)(struct kit_frame *f);
/* Handler for a vector >= 32; the kit sends the LAPIC EOI after it returns. */
void kit_set_irq_handler(int vector, kit_irq_fn fn);
/* Points `vector` straight at the test's own entry stub, bypassing the kit's
 * (which saves registers, calls the handler and sends the EOI). */
void kit_set_idt_gate(int vector, void (*stub)(void));

/* ---- paging (user.c) ----
 * The boot identity map covers 0..4 GiB with 2 MiB pages. kit_map_page maps
 * one 4 KiB page at va >= 4 GiB (below 2^47) to pa, writable and user
 * accessible, allocating page tables from a small pool; false if va is in
 * the identity map, not canonical, or the pool is exhausted. */
#define KIT_IDENTITY_END 0x100000000ull
/* Never mapped by the kit: hypercall arguments here must fail (-EFAULT). */
#define KIT_UNMAPPED_VA 0x00007f0000000000ull
bool kit_map_page(uint64_t va, uint64_t pa);
void kit_unmap_page(uint64_t va);

/* ---- ring 3 (user.c), BSP only ----
 * kit_run_user runs fn(arg) at CPL 3 (IF=0, on a kit user stack) and returns
 * its result. The first call makes the identity map user accessible (U bit;
 * no SMEP/SMAP here) and loads a TSS (rsp0). fn returns to a ud2 that
 * kit_trap hands to kit_user_trap (int n can't be used: this host's KVM
 * emulator refuses software interrupts outside real mode). Code run at CPL 3
 * must not print (port I/O faults). */
void kit_user_init(void);
uint64_t kit_run_user(uint64_t (*fn)(uint64_t), uint64_t arg);
/* Called by kit_trap: resumes kit_run_user if f is its return #UD. */
bool kit_user_trap(struct kit_frame *f);

/* ---- local APIC (xAPIC MMIO) ---- */
#define LAPIC_ID 0x20
#define LAPIC_VER 0x30
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
uint32_t kit_lapic_read(uint32_t reg);
void kit_lapic_write(uint32_t reg, uint32_t v);
uint32_t kit_lapic_id(void);
void kit_lapic_enable(void);
void kit_lapic_eoi(void);
/* One-shot timer, divide by 1; count 0 stops it. */
void kit_lapic_timer_oneshot(uint8_t vector, uint32_t count);
void kit_lapic_send_ipi(uint32_t apic_id, uint8_t vector);
void kit_lapic_send_init(uint32_t apic_id);
void kit_lapic_send_sipi(uint32_t apic_id, uint8_t page);

/* ---- SMP ---- */
typedef void (*kit_ap_fn)(int cpu);
/* Starts every enabled CPU in the MADT but the BSP; each runs fn(cpu index)
 * on its own stack, then idles in sti;hlt. Returns the number of CPUs online
 * (BSP included); a CPU that doesn't arrive in time is reported and skipped. */
int kit_smp_start(kit_ap_fn fn);
int kit_ncpus(void);             /* from the MADT (1 if none) */
extern volatile int kit_cpu_online[KIT_MAX_CPUS];
extern volatile uint32_t kit_cpu_apic[KIT_MAX_CPUS]; /* by cpu index, set by kit_smp_start */

/* ---- running functions on an AP (cpu.c) ----
 * An AP that calls kit_ap_serve (it never returns) runs each function the
 * BSP posts with kit_ap_start, one at a time, and hands back its result to
 * kit_ap_wait. An AP that doesn't finish in the time given is taken as dead:
 * every later kit_ap_start fails at once instead of waiting again. */
typedef long (*kit_ap_call_fn)(long arg);
void kit_ap_serve(void);
/* An AP entry for kit_smp_start: vCPU 1 enables its LAPIC and interrupts and
 * serves the mailbox; any other AP returns (and halts). */
void kit_ap_serve_interruptible(int cpu);
bool kit_ap_serving(uint32_t ms); /* waits up to ms for an AP to call kit_ap_serve */
bool kit_ap_start(kit_ap_call_fn fn, long arg);
bool kit_ap_wait(uint32_t ms, long *ret); /* ret may be NULL */
bool kit_ap_call(kit_ap_call_fn fn, long arg, long *ret); /* start, and wait up to 3 s */

#endif

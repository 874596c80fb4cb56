/* Shared by both kits' CPU code (common/kitcpu.c): interrupts and
 * exceptions, the local APIC, AP bring-up and the AP mailbox. Each kit
 * defines struct kit_frame (its interrupt stubs' saved registers), its IDT
 * and its kit_trap, which hands everything to kit_trap_common. */
#ifndef KITCPU_H
#define KITCPU_H

#include "kitlib.h"

struct kit_frame;

static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
/* sti takes effect after the next instruction, so no interrupt is lost between them. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
/* Halts with interrupts on until `cond` holds, at most `halts` times. `cond` is checked with
 * interrupts off, so one that comes between the check and the hlt is taken by the hlt's sti rather
 * than before it (sti holds interrupts off for one instruction only where IF was clear): otherwise
 * the hlt would wait for yet another. Leaves interrupts off. */
#define KIT_HALT_UNTIL(cond, halts)                                                   \
	do {                                                                              \
		cli();                                                                        \
		for (int kit_halts_ = 0; kit_halts_ < (halts) && !(cond); kit_halts_++) { \
			sti_hlt();                                                                \
			cli();                                                                    \
		}                                                                             \
	} while (0)
static inline uintptr_t read_cr0(void) { uintptr_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline uintptr_t read_cr2(void) { uintptr_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uintptr_t read_cr3(void) { uintptr_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline uintptr_t read_cr4(void) { uintptr_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr3(uintptr_t v) { __asm__ volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }
static inline void invlpg(uintptr_t va) { __asm__ volatile("invlpg (%0)" :: "r"(va) : "memory"); }

/* ---- exceptions and interrupts ---- */
/* The next exception `vector` (any CPU) is counted and skipped: ip += insn_len. */
void kit_expect_exception(int vector, int insn_len);
/* Stops expecting; returns how many expected exceptions were taken. */
int kit_expect_done(void);
struct kit_exception_info { int vector; uint64_t rip, error, cr2; };
extern volatile struct kit_exception_info kit_last_exception;

typedef void (*kit_irq_fn)(struct kit_frame *f);
/* Handler for a vector >= 32; the kit sends the LAPIC EOI after it returns
 * (not for the spurious vector 0xff). */
void kit_set_irq_handler(int vector, kit_irq_fn fn);
/* Points `vector` straight at the test's own entry stub, bypassing the kit's
 * (which saves registers, calls the handler and sends the EOI). Per kit. */
void kit_set_idt_gate(int vector, void (*stub)(void));
/* Each kit's kit_trap: vector, the frame's saved instruction pointer (which
 * an expected exception advances) and error code. */
void kit_trap_common(struct kit_frame *f, int vector, uintptr_t *ip, uintptr_t error);

/* ---- local APIC (xAPIC MMIO) ---- */
#define LAPIC_ID 0x20
#define LAPIC_VER 0x30
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ISR 0x100 /* 8 registers, 0x10 apart */
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
/* Takes the LAPIC's address from the MADT (boot). */
void kit_lapic_init(void);
uint32_t kit_lapic_read(uint32_t reg);
void kit_lapic_write(uint32_t reg, uint32_t v);
uint32_t kit_lapic_id(void);
void kit_lapic_enable(void);
void kit_lapic_eoi(void);
bool kit_lapic_in_service(uint8_t vector);
/* One-shot timer, divide by 1; count 0 stops it. */
void kit_lapic_timer_oneshot(uint8_t vector, uint32_t count);
/* Periodic timer, divide by 1: an interrupt every `count` ticks. */
void kit_lapic_timer_periodic(uint8_t vector, uint32_t count);
void kit_lapic_send_ipi(uint32_t apic_id, uint8_t vector);
void kit_lapic_send_init(uint32_t apic_id);
void kit_lapic_send_sipi(uint32_t apic_id, uint8_t page);

/* ---- SMP ----
 * APs start in the kit's trampoline (copied to TRAMP_BASE), which takes them
 * straight to the BSP's mode, GDT and page tables; each kit's AP entry loads
 * its IDT and calls kit_ap_run. */
/* Each kit's: readies the copied trampoline for AP `cpu` before its SIPI. */
void kit_ap_prepare(int cpu);
typedef void (*kit_ap_fn)(int cpu);
/* Starts every enabled CPU in the MADT but the BSP; each runs fn(cpu index)
 * on its own stack, then idles in sti;hlt. Returns the number of CPUs online
 * (BSP included); a CPU that doesn't arrive in time is reported and skipped. */
int kit_smp_start(kit_ap_fn fn);
int kit_ncpus(void);             /* from the MADT (1 if none) */
extern volatile int kit_cpu_online[KIT_MAX_CPUS];
extern volatile uint32_t kit_cpu_apic[KIT_MAX_CPUS]; /* by cpu index, set by kit_smp_start */
KIT_NORETURN void kit_ap_run(void);

/* ---- running functions on an AP ----
 * An AP that calls kit_ap_serve (it never returns) runs each function the
 * BSP posts with kit_ap_start, one at a time, and hands back its result to
 * kit_ap_wait. An AP that doesn't finish in the time given is taken as dead:
 * every later kit_ap_start fails at once instead of waiting again. */
typedef long (*kit_ap_call_fn)(long arg);
KIT_NORETURN void kit_ap_serve(void);
/* An AP entry for kit_smp_start: vCPU 1 enables its LAPIC and interrupts and
 * serves the mailbox; any other AP returns (and halts). */
void kit_ap_serve_interruptible(int cpu);
bool kit_ap_serving(uint32_t ms); /* waits up to ms for an AP to call kit_ap_serve */
bool kit_ap_start(kit_ap_call_fn fn, long arg);
bool kit_ap_wait(uint32_t ms, long *ret); /* ret may be NULL */
bool kit_ap_call(kit_ap_call_fn fn, long arg, long *ret); /* start, and wait up to 3 s */

#endif

/* Shared by the 64-bit kit and the 32-bit kit: console, start_info,
 * cmdline, ACPI and the test harness. Freestanding: no libc. */
#ifndef KITLIB_H
#define KITLIB_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>

#include "kit-layout.h"
#define KIT_NORETURN __attribute__((noreturn))
#define KIT_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- port and memory access ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
/* A memory clobber: an MSR write can make the hypervisor write our memory (the hypercall page). */
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline void *kit_phys(uint64_t pa) { return (void *)(uintptr_t)pa; }
#define READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

/* Timeouts are measured with the TSC, assuming roughly 2 GHz (bounds only). */
#define KIT_TSC_PER_MS 2000000ull
/* Spins until cond holds or ms pass; the value is whether cond held. */
#define KIT_WAIT_FOR(cond, ms)                                                     \
	({                                                                         \
		uint64_t end_ = rdtsc() + (uint64_t)(ms) * KIT_TSC_PER_MS;         \
		bool ok_;                                                          \
		while (!(ok_ = (cond)) && rdtsc() < end_)                          \
			cpu_relax();                                               \
		ok_;                                                               \
	})
bool kit_wait_flag(volatile int *flag, uint32_t ms); /* spin until *flag != 0 or timeout */
void kit_delay_ms(uint32_t ms);

/* ---- libc subset (gcc may emit calls to these) ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
/* Parses decimal or 0x-hex; returns false if s has no digits or trailing junk. */
bool kit_parse_u64(const char *s, uint64_t *out);

/* ---- console (port 0xe9), one lock so lines of two CPUs don't mix ---- */
int kit_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int kit_snprintf(char *buf, size_t size, const char *fmt, ...) KIT_PRINTF(3, 4);
void kit_printf(const char *fmt, ...) KIT_PRINTF(1, 2);
void kit_puts_raw(const char *s); /* no lock: fatal paths */
void kit_console_force_unlock(void);

/* Provided by each kit: index of the running CPU (0 = BSP). */
int kit_cpu_index(void);

/* ---- start_info (PVH) ---- */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "start_info layout");
_Static_assert(sizeof(struct hvm_memmap_entry) == 24, "memmap layout");

extern const struct hvm_start_info *kit_start_info;
extern const char *kit_cmdline; /* "" if none */
void kit_startinfo_init(uint32_t paddr);
const char *kit_memtype_name(uint32_t type);
/* key=value lookup in the cmdline; copies the value (may be ""), false if absent. */
bool kit_cmdline_get(const char *key, char *val, size_t size);
bool kit_cmdline_u64(const char *key, uint64_t *out);

/* ---- ACPI ---- */
struct acpi_gas {
	uint8_t space, bit_width, bit_offset, access_size;
	uint64_t address;
} __attribute__((packed));

struct kit_acpi {
	bool found; /* RSDP and XSDT valid */
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
	bool hw_reduced;
	struct acpi_gas sleep_ctl, reset_reg;
	uint8_t reset_value;
	uint32_t pm1a_cnt;
	bool s5_found;
	uint8_t slp_typ;
	uint32_t lapic_addr;
	int ncpus; /* enabled Local APIC entries */
	uint8_t apic_id[KIT_MAX_CPUS];
	int nioapic;
};
extern struct kit_acpi kit_acpi;
void kit_acpi_init(void);
/* Problems found while parsing, "" if none. */
extern char kit_acpi_error[96];
const uint8_t *kit_acpi_find(const char sig[4]);

/* Power: try ACPI, then port 0xf4 (debug exit), then halt forever. */
KIT_NORETURN void kit_poweroff(void);        /* sleep control reg, or PM1a if cmdline kit.poweroff=pm1a */
KIT_NORETURN void kit_poweroff_sleepctl(void);
KIT_NORETURN void kit_poweroff_pm1a(void);
KIT_NORETURN void kit_reset(void);
KIT_NORETURN void kit_halt_forever(void);

/* ---- test harness ---- */
typedef void (*kit_case_fn)(void);
/* Runs fn as case `name`; prints KIT-CASE <name> ok|FAIL <reason>. */
void kit_case(const char *name, kit_case_fn fn);
/* Marks the current case failed (first reason wins); callers usually return. */
void kit_fail(const char *fmt, ...) KIT_PRINTF(1, 2);
#define KIT_CHECK(cond, ...) do { if (!(cond)) { kit_fail(__VA_ARGS__); return; } } while (0)
/* Reports a case without a function. */
void kit_case_result(const char *name, bool ok, const char *reason);
/* Prints KIT-SUMMARY and powers off. */
KIT_NORETURN void kit_finish(void);
/* Fatal path: fails the current case with `reason`, prints the summary, powers off. */
KIT_NORETURN void kit_abort(const char *reason);
extern const char *volatile kit_current_case;

/* The program's entry, called after kit setup; kit_finish() follows its return. */
void kit_main(void);

#endif

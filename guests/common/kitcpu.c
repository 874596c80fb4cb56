/* Both kits' CPU code: traps after each kit's stubs, local APIC, AP
 * bring-up and the AP mailbox. Kit-specific: the IDT, kit_trap, the
 * trampoline and the AP entry (kit/cpu.c, kit32/kit32.c, their entry code). */
#include "kitcpu.h"

#define SIPI_PAGE (TRAMP_BASE >> 12)

extern uintptr_t kit_ap_stack_top;
extern uint8_t kit_stacks[];
extern const uint8_t kit_tramp_start[], kit_tramp_end[];

/* ---- CPU index from the stack: each CPU runs on kit_stacks[index] ---- */
int kit_cpu_index(void)
{
	uintptr_t sp;
#ifdef __x86_64__
	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
#else
	__asm__ volatile("mov %%esp, %0" : "=r"(sp));
#endif
	uintptr_t base = (uintptr_t)kit_stacks;
	if (sp < base || sp >= base + KIT_STACK_SIZE * KIT_MAX_CPUS)
		return 0;
	return (int)((sp - base) / KIT_STACK_SIZE);
}

/* ---- interrupts and exceptions ---- */
static kit_irq_fn irq_handlers[256];

void kit_set_irq_handler(int vector, kit_irq_fn fn)
{
	if (vector >= 32 && vector < 256)
		irq_handlers[vector] = fn;
}

static volatile int expect_vector = -1, expect_len, expect_count;
volatile struct kit_exception_info kit_last_exception;

void kit_expect_exception(int vector, int insn_len)
{
	expect_count = 0;
	expect_len = insn_len;
	__atomic_store_n(&expect_vector, vector, __ATOMIC_SEQ_CST);
}

int kit_expect_done(void)
{
	__atomic_store_n(&expect_vector, -1, __ATOMIC_SEQ_CST);
	return expect_count;
}

static volatile int in_fatal;

void kit_trap_common(struct kit_frame *f, int v, uintptr_t *ip, uintptr_t error)
{
	if (v >= 32) {
		if (irq_handlers[v])
			irq_handlers[v](f);
		else if (v != 0xff)
			kit_printf("KIT-IRQ unhandled vector=%d cpu=%d\n", v, kit_cpu_index());
		if (v != 0xff) /* spurious vector: no EOI */
			kit_lapic_eoi();
		return;
	}
	uintptr_t cr2 = read_cr2();
	kit_last_exception.vector = v;
	kit_last_exception.rip = *ip;
	kit_last_exception.error = error;
	kit_last_exception.cr2 = cr2;
	if (v == expect_vector) {
		__atomic_add_fetch(&expect_count, 1, __ATOMIC_SEQ_CST);
		*ip += (uintptr_t)expect_len;
		return;
	}
	if (__atomic_exchange_n(&in_fatal, 1, __ATOMIC_ACQ_REL))
		kit_halt_forever(); /* fault while reporting, or a second CPU */
	kit_console_force_unlock();
	kit_printf("KIT-EXCEPTION vector=%d rip=0x%lx error=0x%lx cr2=0x%lx cpu=%d\n", v, (unsigned long)*ip,
		   (unsigned long)error, (unsigned long)cr2, kit_cpu_index());
	kit_abort("exception");
}

/* ---- local APIC ---- */
static volatile uint32_t *lapic = (volatile uint32_t *)0xfee00000;

void kit_lapic_init(void)
{
	if (kit_acpi.lapic_addr)
		lapic = (volatile uint32_t *)(uintptr_t)kit_acpi.lapic_addr;
}

uint32_t kit_lapic_read(uint32_t reg) { return lapic[reg / 4]; }
void kit_lapic_write(uint32_t reg, uint32_t v) { lapic[reg / 4] = v; }
uint32_t kit_lapic_id(void) { return kit_lapic_read(LAPIC_ID) >> 24; }
void kit_lapic_eoi(void) { kit_lapic_write(LAPIC_EOI, 0); }

bool kit_lapic_in_service(uint8_t vector)
{
	return (kit_lapic_read(LAPIC_ISR + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}

void kit_lapic_enable(void)
{
	kit_lapic_write(LAPIC_TPR, 0);
	kit_lapic_write(LAPIC_SVR, 0x100 | 0xff); /* enabled, spurious vector 0xff */
}

void kit_lapic_timer_oneshot(uint8_t vector, uint32_t count)
{
	kit_lapic_write(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
	kit_lapic_write(LAPIC_LVT_TIMER, vector);
	kit_lapic_write(LAPIC_TIMER_INIT, count);
}

void kit_lapic_timer_periodic(uint8_t vector, uint32_t count)
{
	kit_lapic_write(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
	kit_lapic_write(LAPIC_LVT_TIMER, vector | (1u << 17));
	kit_lapic_write(LAPIC_TIMER_INIT, count);
}

static void icr_wait(void)
{
	for (int i = 0; i < 100000 && (kit_lapic_read(LAPIC_ICR_LO) & (1u << 12)); i++)
		cpu_relax();
}

static void icr_send(uint32_t apic_id, uint32_t lo)
{
	icr_wait();
	kit_lapic_write(LAPIC_ICR_HI, apic_id << 24);
	kit_lapic_write(LAPIC_ICR_LO, lo);
	icr_wait();
}

void kit_lapic_send_ipi(uint32_t apic_id, uint8_t vector) { icr_send(apic_id, 0x4000 | vector); }
void kit_lapic_send_init(uint32_t apic_id) { icr_send(apic_id, 0x4500); }
void kit_lapic_send_sipi(uint32_t apic_id, uint8_t page) { icr_send(apic_id, 0x4600 | page); }

/* ---- SMP ---- */
volatile int kit_cpu_online[KIT_MAX_CPUS];
volatile uint32_t kit_cpu_apic[KIT_MAX_CPUS];
static kit_ap_fn ap_fn;
static volatile int ap_index;

int kit_ncpus(void)
{
	return kit_acpi.ncpus > 0 ? kit_acpi.ncpus : 1;
}

void kit_ap_run(void)
{
	int me = ap_index;
	__atomic_store_n(&kit_cpu_online[me], 1, __ATOMIC_SEQ_CST);
	if (ap_fn)
		ap_fn(me);
	for (;;)
		sti_hlt();
}

int kit_smp_start(kit_ap_fn fn)
{
	memcpy((void *)TRAMP_BASE, kit_tramp_start, (size_t)(kit_tramp_end - kit_tramp_start));
	ap_fn = fn;
	kit_lapic_enable(); /* as a kernel's is before it starts APs */
	kit_cpu_online[0] = 1;
	int online = 1, next = 1;
	uint32_t me = kit_lapic_id();
	kit_cpu_apic[0] = me;
	for (int i = 0; i < kit_acpi.ncpus && next < KIT_MAX_CPUS; i++) {
		uint32_t id = kit_acpi.apic_id[i];
		if (id == me)
			continue;
		int idx = next++;
		ap_index = idx;
		kit_cpu_apic[idx] = id;
		kit_ap_stack_top = (uintptr_t)(kit_stacks + (idx + 1) * KIT_STACK_SIZE);
		kit_ap_prepare(idx);
		kit_lapic_send_init(id);
		kit_delay_ms(10);
		kit_lapic_send_sipi(id, SIPI_PAGE);
		if (!kit_wait_flag(&kit_cpu_online[idx], 200)) {
			kit_lapic_send_sipi(id, SIPI_PAGE); /* ignored if the first one worked */
			if (!kit_wait_flag(&kit_cpu_online[idx], 3000)) {
				kit_printf("KIT-SMP cpu=%d apic=%u did not arrive\n", idx, id);
				continue;
			}
		}
		online++;
	}
	return online;
}

/* ---- running functions on an AP ---- */
static volatile kit_ap_call_fn call_fn;
static volatile long call_arg, call_ret;
static volatile int call_posted, call_done, ap_serving;
static bool ap_dead;

void kit_ap_serve(void)
{
	__atomic_store_n(&ap_serving, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		int n;
		while ((n = __atomic_load_n(&call_posted, __ATOMIC_SEQ_CST)) == call_done)
			cpu_relax();
		call_ret = call_fn(call_arg);
		__atomic_store_n(&call_done, n, __ATOMIC_SEQ_CST);
	}
}

void kit_ap_serve_interruptible(int cpu)
{
	if (cpu != 1)
		return;
	kit_lapic_enable();
	sti();
	kit_ap_serve();
}

bool kit_ap_serving(uint32_t ms)
{
	return kit_wait_flag(&ap_serving, ms);
}

bool kit_ap_start(kit_ap_call_fn fn, long arg)
{
	if (!ap_serving || ap_dead)
		return false;
	call_fn = fn;
	call_arg = arg;
	__atomic_add_fetch(&call_posted, 1, __ATOMIC_SEQ_CST);
	return true;
}

bool kit_ap_wait(uint32_t ms, long *ret)
{
	int n = call_posted;
	if (!KIT_WAIT_FOR(__atomic_load_n(&call_done, __ATOMIC_SEQ_CST) == n, ms)) {
		ap_dead = true;
		return false;
	}
	if (ret)
		*ret = call_ret;
	return true;
}

bool kit_ap_call(kit_ap_call_fn fn, long arg, long *ret)
{
	return kit_ap_start(fn, arg) && kit_ap_wait(3000, ret);
}

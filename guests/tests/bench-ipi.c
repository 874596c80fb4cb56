/* Event-channel IPI benchmark on 2 vCPUs, guest of bench/ipi.ts:
 *   mode=xen (default): per-vCPU upcall vectors (HVMOP_set_evtchn_upcall_vector,
 *     each vCPU its own), an IPI port bound to vCPU 1 (EVTCHNOP_bind_ipi);
 *     vCPU 0 sends with EVTCHNOP_send. vCPU 1's handler clears
 *     evtchn_upcall_pending, the selector and the port's pending bit, EOIs
 *     and acks.
 *   mode=floor: no Xen at all, the guest of `bench/floor -m ipi`: vCPU 0 does
 *     `outb %al, $0x81` and that VMM answers the exit with a fixed MSI at
 *     APIC id 1, same vector; vCPU 1's handler EOIs and acks. Without ACPI
 *     tables the CPU count comes from the cmdline `cpus=` (APIC ids 0..n-1).
 *   mode=floor-hypercall: as floor, but vCPU 0 sends with the very call of
 *     mode=xen (EVTCHNOP_send through a hypercall page installed from CPUID
 *     leaf 0x40000002, no signature check); `bench/floor -m ipi-hypercall`
 *     answers it with the MSI.
 * vCPU 1 idles in sti;hlt. Latency is a round trip on vCPU 0's own TSC: from
 * just before the send/out to vCPU 0 seeing vCPU 1's handler's ack (vCPUs'
 * TSCs need not be in step: upstream KVM on a host with an unstable TSC
 * does not keep them so); vCPU 0 waits for each ack before the next round. Then a
 * back-to-back run of the same loop without per-round bookkeeping, timed as
 * a whole: events/s = n / its TSC.
 * Before both, `warmup=` events (default 2000: cheap in guest instructions,
 * and xenkvm's JavaScript needs a few thousand to reach steady state).
 * cmdline: n= rounds (default 300, ≤ 2000), warmup=, mode=, cpus=.
 * Prints `KIT-BENCH ipi median-tsc=<t> rounds=<n> events-tsc=<total>` (and a
 * `KIT-BENCH ipi-detail ...` line), or `KIT-BENCH ipi FAIL <reason>`; no summary. */
#include "../kit/kit.h"
#include "../common/xen.h"

#define VECTOR 0xe0
#define NMAX 2000
#define ACK_TIMEOUT_MS 2000

static bool xen_mode = true;  /* Xen's event channels; else the floor's bare MSI */
static bool use_hypercall = true; /* send by hypercall; else outb $0x81 */
static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static evtchn_port_t port;
static struct evtchn_send snd;
static volatile long ap_rc = 1;
static volatile int ap_ready;

static volatile uint32_t acks, spurious;
static uint64_t lat[NMAX];

/* ---- vCPU 1: the IDT stub and the handler ---- */
void bench_ipi_stub(void);
void bench_ipi_handler(void);
void bench_ipi_handler(void)
{
	if (xen_mode) {
		volatile struct vcpu_info *vi = &sh->vcpu_info[1];
		vi->evtchn_upcall_pending = 0;
		__atomic_exchange_n((xen_ulong_t *)&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
		xen_ulong_t m = (xen_ulong_t)1 << (port % XEN_EVTCHN_WORD_BITS);
		xen_ulong_t old = __atomic_fetch_and((xen_ulong_t *)&sh->evtchn_pending[port / XEN_EVTCHN_WORD_BITS], ~m,
						     __ATOMIC_SEQ_CST);
		kit_lapic_eoi();
		if (!(old & m)) {
			spurious++;
			return;
		}
	} else {
		kit_lapic_eoi();
	}
	__atomic_store_n(&acks, acks + 1, __ATOMIC_RELEASE);
}
__asm__(".text\n"
	".p2align 4\n"
	".globl bench_ipi_stub\n"
	"bench_ipi_stub:\n"
	"push %rax\npush %rdx\n"
	"push %rcx\npush %rsi\npush %rdi\npush %r8\npush %r9\npush %r10\npush %r11\n"
	"cld\n"
	"call bench_ipi_handler\n"
	"pop %r11\npop %r10\npop %r9\npop %r8\npop %rdi\npop %rsi\npop %rcx\n"
	"pop %rdx\npop %rax\n"
	"iretq\n");

static long set_upcall_vector(uint32_t vcpu)
{
	return xen_set_upcall_vector(vcpu, VECTOR);
}

static void ap_main(int cpu)
{
	if (cpu != 1)
		return;
	kit_lapic_enable();
	if (xen_mode)
		ap_rc = set_upcall_vector(1); /* each vCPU sets its own, as Linux does */
	__atomic_store_n(&ap_ready, 1, __ATOMIC_SEQ_CST);
	/* returns to the kit's idle loop: sti; hlt */
}

/* ---- vCPU 0 ---- */
static KIT_NORETURN void fail(const char *fmt, ...) KIT_PRINTF(1, 2);
static KIT_NORETURN void fail(const char *fmt, ...)
{
	char buf[160];
	va_list ap;
	va_start(ap, fmt);
	kit_vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	kit_printf("KIT-BENCH ipi FAIL %s\n", buf);
	kit_poweroff();
}

static inline void send(void)
{
	if (use_hypercall)
		HYPERVISOR_event_channel_op(EVTCHNOP_send, &snd);
	else
		__asm__ volatile("outb %%al, $0x81" :: "a"(0) : "memory");
}

static void wait_ack(uint32_t before, uint32_t round)
{
	if (!KIT_WAIT_FOR(__atomic_load_n(&acks, __ATOMIC_ACQUIRE) != before, ACK_TIMEOUT_MS))
		fail("no ack for round %u (acks %u, spurious upcalls %u)", round, before, spurious);
}

/* k-th smallest of a[0..n) (reorders a). */
static uint64_t select_kth(uint64_t *a, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		uint64_t pivot = a[lo + (hi - lo) / 2];
		int i = lo, j = hi;
		while (i <= j) {
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j) {
				uint64_t t = a[i];
				a[i++] = a[j];
				a[j--] = t;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return a[k];
	}
	return a[k];
}

static void setup_xen(void)
{
	if (!xen_setup())
		fail("no Xen");
	long rc = xen_map_shared_info(shinfo_page);
	if (rc)
		fail("add_to_physmap(shared_info) = %ld", rc);
	sh = (volatile struct shared_info *)shinfo_page;
}

void kit_main(void)
{
	char mode[16] = "xen";
	uint64_t n = 300, warmup = 2000, cpus;
	kit_cmdline_get("mode", mode, sizeof mode);
	kit_cmdline_u64("n", &n);
	kit_cmdline_u64("warmup", &warmup);
	if (!strcmp(mode, "floor"))
		xen_mode = use_hypercall = false;
	else if (!strcmp(mode, "floor-hypercall"))
		xen_mode = false;
	else if (strcmp(mode, "xen"))
		fail("unknown mode=%s", mode);
	if (n < 1 || n > NMAX)
		fail("n=%llu out of 1..%u", U64(n), NMAX);
	/* No ACPI (bench/floor): APIC ids 0..cpus-1. */
	if (kit_acpi.ncpus == 0 && kit_cmdline_u64("cpus", &cpus) && cpus >= 1 && cpus <= KIT_MAX_CPUS) {
		for (uint32_t i = 0; i < cpus; i++)
			kit_acpi.apic_id[i] = (uint8_t)i;
		kit_acpi.ncpus = (int)cpus;
	}

	if (xen_mode) {
		setup_xen();
	} else if (use_hypercall) {
		uint32_t a, msr, c, d;
		cpuid(0x40000002, 0, &a, &msr, &c, &d);
		wrmsr(msr, (uint64_t)(uintptr_t)xen_hypercall_page);
	}
	kit_set_idt_gate(VECTOR, bench_ipi_stub);
	int online = kit_smp_start(ap_main);
	if (online < 2)
		fail("%d vCPU(s) online, needs 2 (xenkvm --vcpus 2; floor: cmdline cpus=2)", online);
	if (!kit_wait_flag(&ap_ready, 3000))
		fail("vCPU 1 did not get ready");
	if (kit_cpu_apic[1] != 1)
		fail("vCPU 1 has APIC id %u, expected 1", kit_cpu_apic[1]);
	if (xen_mode) {
		if (ap_rc)
			fail("vCPU 1: set_evtchn_upcall_vector(1, 0x%x) = %ld", VECTOR, ap_rc);
		long rc = set_upcall_vector(0);
		if (rc)
			fail("set_evtchn_upcall_vector(0, 0x%x) = %ld", VECTOR, rc);
		rc = xen_evtchn_bind_ipi(1, &port);
		if (rc)
			fail("bind_ipi(vcpu 1) = %ld", rc);
		snd.port = port;
		rc = xen_evtchn_send(port); /* checked once; the loops don't look at the result */
		if (rc)
			fail("send(%u) = %ld", port, rc);
		wait_ack(0, 0);
		warmup = warmup ? warmup - 1 : 0;
	}

	/* warm-up, then the latency rounds */
	for (uint32_t i = 0; i < warmup; i++) {
		uint32_t a = acks;
		send();
		wait_ack(a, i);
	}
	uint64_t min = ~0ull, max = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t a = acks;
		uint64_t t0 = rdtsc();
		send();
		wait_ack(a, i);
		lat[i] = rdtsc() - t0;
		min = lat[i] < min ? lat[i] : min;
		max = lat[i] > max ? lat[i] : max;
	}

	/* back to back: the same loop, timed as a whole */
	uint64_t t0 = rdtsc();
	for (uint32_t i = 0; i < n; i++) {
		uint32_t a = acks;
		send();
		wait_ack(a, i);
	}
	uint64_t total = rdtsc() - t0;

	uint64_t med = select_kth(lat, (int)n, (int)(n / 2));
	uint64_t p10 = select_kth(lat, (int)n, (int)(n / 10)), p90 = select_kth(lat, (int)n, (int)(n * 9 / 10));
	kit_printf("KIT-BENCH ipi-detail mode=%s min-tsc=%llu p10-tsc=%llu p90-tsc=%llu max-tsc=%llu acks=%u spurious=%u\n",
		   mode, U64(min), U64(p10), U64(p90), U64(max), acks, spurious);
	kit_printf("KIT-BENCH ipi median-tsc=%llu rounds=%u events-tsc=%llu\n", U64(med), (uint32_t)n, U64(total));
	kit_poweroff();
}

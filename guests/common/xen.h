/* Xen guest library for both kits, written from Xen's public headers
 * (/usr/include/xen, libxen-dev). Built -m64 the headers describe the native
 * ABI, built -m32 the compat one: the same source tests both layouts.
 *
 * Hypercalls go through the hypercall page (CPUID leaf base+2 names the MSR
 * that installs it): stub `nr` sits at page + nr * 32. Arguments:
 *   64-bit: rdi, rsi, rdx, r10, r8; result rax
 *   32-bit: ebx, ecx, edx, esi, edi; result eax
 * The wrappers treat the argument registers as clobbered (as a debug Xen
 * build does); xen-detect checks separately that they are preserved. */
#ifndef KIT_XEN_H
#define KIT_XEN_H

#include "kitlib.h" /* gcc's freestanding <stdint.h> first */

#define __XEN_INTERFACE_VERSION__ 0x00040e00
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/version.h>
#include <xen/features.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/console.h>
#include <xen/io/xs_wire.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/arch-x86/cpuid.h>

#define XEN_PAGE_SIZE 4096u
#define XEN_STUB_SIZE 32u
#define XEN_CPUID_FIRST 0x40000000u

/* ---- detection (CPUID) ---- */
struct xen_cpuid_info {
	uint32_t base;     /* 0x40000000 + n * 0x100, 0 if no Xen signature */
	uint32_t max_leaf; /* leaf base+0 EAX */
	uint32_t version;  /* leaf base+1 EAX: major << 16 | minor */
	uint32_t pages;    /* leaf base+2 EAX */
	uint32_t msr;      /* leaf base+2 EBX */
	uint32_t feat1, feat2;
};
extern struct xen_cpuid_info xen_cpuid;

/* Scans 0x40000000 + n*0x100 (n = 0..0xff) for "XenVMMXenVMM" with
 * EAX >= leaf + 2; fills xen_cpuid and returns the base, or 0. */
uint32_t xen_cpuid_scan(void);

/* ---- hypercall page ---- */
extern uint8_t xen_hypercall_page[XEN_PAGE_SIZE];
/* Writes the hypercall MSR with the page's address (needs xen_cpuid_scan). */
void xen_install_hypercall_page(void);
/* True when the page holds something (a stub for every call). */
bool xen_hypercall_page_filled(void);
/* Scan + install + check; prints KIT-XEN lines. On failure prints why and
 * returns false. xen_require() turns that into kit_abort. */
bool xen_setup(void);
void xen_require(void);

/* Whether the CPU is AMD's or Hygon's, whose hypercall instruction is VMMCALL (VMCALL elsewhere). */
bool xen_cpu_is_amd(void);
/* A hypercall made as Linux makes it since its XSA-466 fixes: the vendor's
 * own instruction, issued directly, no page. Only a KVM with Xen support
 * hands it to the VMM; elsewhere KVM answers it itself. */
long xen_direct_hypercall2(unsigned int nr, unsigned long a1, unsigned long a2);

static inline long xen_hypercall(unsigned int nr, unsigned long a1, unsigned long a2, unsigned long a3,
				 unsigned long a4, unsigned long a5)
{
	long ret;
	void *stub = xen_hypercall_page + nr * XEN_STUB_SIZE;
#ifdef __x86_64__
	register unsigned long r10 __asm__("r10") = a4;
	register unsigned long r8 __asm__("r8") = a5;
	__asm__ volatile("call *%0"
			 : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
			 : "0"(stub)
			 : "memory", "cc");
#else
	__asm__ volatile("call *%0"
			 : "=a"(ret), "+b"(a1), "+c"(a2), "+d"(a3), "+S"(a4), "+D"(a5)
			 : "0"(stub)
			 : "memory", "cc");
#endif
	return ret;
}

#define XEN_PTR(p) ((unsigned long)(uintptr_t)(p))
/* printf a 64-bit value with %ll[xud] in both ABIs. */
#define U64(x) ((unsigned long long)(x))

static inline long HYPERVISOR_xen_version(int cmd, void *arg)
{
	return xen_hypercall(__HYPERVISOR_xen_version, (unsigned long)(unsigned int)cmd, XEN_PTR(arg), 0, 0, 0);
}
static inline long HYPERVISOR_memory_op(unsigned int cmd, void *arg)
{
	return xen_hypercall(__HYPERVISOR_memory_op, cmd, XEN_PTR(arg), 0, 0, 0);
}
static inline long HYPERVISOR_hvm_op(unsigned int op, void *arg)
{
	return xen_hypercall(__HYPERVISOR_hvm_op, op, XEN_PTR(arg), 0, 0, 0);
}
static inline long HYPERVISOR_vcpu_op(unsigned int cmd, unsigned int vcpu, void *arg)
{
	return xen_hypercall(__HYPERVISOR_vcpu_op, cmd, vcpu, XEN_PTR(arg), 0, 0);
}
static inline long HYPERVISOR_vm_assist(unsigned int cmd, unsigned int type)
{
	return xen_hypercall(__HYPERVISOR_vm_assist, cmd, type, 0, 0, 0);
}
static inline long HYPERVISOR_event_channel_op(int cmd, void *arg)
{
	return xen_hypercall(__HYPERVISOR_event_channel_op, (unsigned long)(unsigned int)cmd, XEN_PTR(arg), 0, 0, 0);
}
static inline long HYPERVISOR_sched_op(int cmd, void *arg)
{
	return xen_hypercall(__HYPERVISOR_sched_op, (unsigned long)(unsigned int)cmd, XEN_PTR(arg), 0, 0, 0);
}
/* GNTTABOP_*: `uop` points at `count` ops (or one struct for the single ones). */
static inline long HYPERVISOR_grant_table_op(unsigned int cmd, void *uop, unsigned int count)
{
	return xen_hypercall(__HYPERVISOR_grant_table_op, cmd, XEN_PTR(uop), count, 0, 0);
}
static inline long HYPERVISOR_console_io(int cmd, unsigned int count, void *buffer)
{
	return xen_hypercall(__HYPERVISOR_console_io, (unsigned long)(unsigned int)cmd, count, XEN_PTR(buffer), 0, 0);
}

/* ---- common operations ---- */
/* XENMEM_add_to_physmap for DOMID_SELF. */
long xen_add_to_physmap(unsigned int space, unsigned long idx, unsigned long gfn);
/* Maps (or moves) shared_info at the page-aligned `page` of our RAM. */
long xen_map_shared_info(const void *page);
/* XENMEM_add_to_physmap_batch of one page; errs[0] (preset to 0x7777) in *err. */
long xen_add_to_physmap_batch1(unsigned int space, unsigned long idx, unsigned long gfn, int *err);
/* XENMEM_memory_map into `buffer` of *n entries; *n becomes the count written. */
long xen_memory_map(void *buffer, unsigned int *n);
long xen_hvm_get_param(uint32_t index, uint64_t *value);
long xen_hvm_set_param(uint32_t index, uint64_t value);
/* HVMOP_set_evtchn_upcall_vector: `vcpu`'s own upcall vector. */
long xen_set_upcall_vector(uint32_t vcpu, uint8_t vector);

/* ---- event channels (2-level ABI) ----
 * Wrappers for EVTCHNOP_*: each returns Xen's result; OUT ports are written
 * only on success. The shared_info bitmaps are arrays of xen_ulong_t: 64-bit
 * words natively (4096 ports), 32-bit words in the compat layout (1024). */
#define XEN_EVTCHN_WORD_BITS ((unsigned)(sizeof(xen_ulong_t) * 8))
#define XEN_EVTCHN_2L_PORTS (XEN_EVTCHN_WORD_BITS * XEN_EVTCHN_WORD_BITS)
long xen_evtchn_alloc_unbound(domid_t dom, domid_t remote_dom, evtchn_port_t *port);
long xen_evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port, evtchn_port_t *local_port);
long xen_evtchn_bind_virq(uint32_t virq, uint32_t vcpu, evtchn_port_t *port);
long xen_evtchn_bind_ipi(uint32_t vcpu, evtchn_port_t *port);
long xen_evtchn_bind_vcpu(evtchn_port_t port, uint32_t vcpu);
long xen_evtchn_send(evtchn_port_t port);
long xen_evtchn_close(evtchn_port_t port);
long xen_evtchn_unmask(evtchn_port_t port);
long xen_evtchn_reset(domid_t dom);
/* FIFO ABI: control block of `vcpu` at frame:offset (link_bits may be NULL), one more event-array page, a priority. */
long xen_evtchn_init_control(uint64_t gfn, uint32_t offset, uint32_t vcpu, uint8_t *link_bits);
long xen_evtchn_expand_array(uint64_t gfn);
long xen_evtchn_set_priority(evtchn_port_t port, uint32_t priority);
/* EVTCHNOP_status into *st (zeroed first; dom and port filled in). */
long xen_evtchn_status(domid_t dom, evtchn_port_t port, struct evtchn_status *st);
/* "closed", "unbound", ... for EVTCHNSTAT_*, "?" otherwise. */
const char *xen_evtchn_stat_name(uint32_t status);
/* EVTCHNOP_status of our own port into *st; false (the case failed) on an error or another status. */
bool xen_evtchn_status_is(evtchn_port_t port, uint32_t status, struct evtchn_status *st);

/* Bit `port` of a shared_info bitmap (evtchn_pending, evtchn_mask) or of a
 * selector; set/clear are atomic (lock or/and). */
static inline bool xen_evtchn_test(const volatile xen_ulong_t *map, unsigned int port)
{
	return (map[port / XEN_EVTCHN_WORD_BITS] >> (port % XEN_EVTCHN_WORD_BITS)) & 1;
}
static inline void xen_evtchn_set(volatile xen_ulong_t *map, unsigned int port)
{
	__atomic_fetch_or((xen_ulong_t *)&map[port / XEN_EVTCHN_WORD_BITS],
			  (xen_ulong_t)1 << (port % XEN_EVTCHN_WORD_BITS), __ATOMIC_SEQ_CST);
}
static inline void xen_evtchn_clear(volatile xen_ulong_t *map, unsigned int port)
{
	__atomic_fetch_and((xen_ulong_t *)&map[port / XEN_EVTCHN_WORD_BITS],
			   ~((xen_ulong_t)1 << (port % XEN_EVTCHN_WORD_BITS)), __ATOMIC_SEQ_CST);
}
/* An upcall handler's part for one port: acknowledges vCPU `cpu`'s upcall
 * (upcall_pending, then its selector), then takes `port` if pending: whether
 * it was. */
static inline bool xen_upcall_take_port(volatile struct shared_info *sh, int cpu, evtchn_port_t port)
{
	volatile struct vcpu_info *vi = &sh->vcpu_info[cpu];
	vi->evtchn_upcall_pending = 0;
	__atomic_exchange_n((xen_ulong_t *)&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
	if (!xen_evtchn_test(sh->evtchn_pending, port))
		return false;
	xen_evtchn_clear(sh->evtchn_pending, port);
	return true;
}
/* The timer set-up Linux makes, for the programs that time Xen's timer: Xen
 * found, shared_info mapped at `page`, `handler` on `vector`, vCPU 0's LAPIC
 * enabled and `vector` its upcall vector, VIRQ_TIMER bound on vCPU 0 into
 * *timer_port. NULL, or what failed. */
struct kit_frame;
const char *xen_timer_setup(void *page, int vector, void (*handler)(struct kit_frame *), evtchn_port_t *timer_port);
/* Index of the lowest set bit of x != 0 (xen_ulong_t is unsigned long in both ABIs). */
static inline unsigned int xen_lowest_bit(xen_ulong_t x)
{
	return (unsigned int)__builtin_ctzl(x);
}

/* What a kernel's 2-level upcall handler does on one vCPU: clear
 * evtchn_upcall_pending, take the selector, then take (atomically clear) each
 * pending, unmasked port that is in `mine`, the bitmap of ports bound to this
 * vCPU, counting it in got[port]; again while upcall_pending was set anew, at
 * most 8 rounds. Returns how many events it took. */
uint32_t xen_evtchn_2l_scan(volatile struct shared_info *s, volatile struct vcpu_info *vi,
			    const volatile xen_ulong_t *mine, volatile uint32_t *got);
/* Every port at once, as `mine` for a guest whose ports are all one vCPU's. */
extern const xen_ulong_t xen_evtchn_all_ports[XEN_EVTCHN_2L_PORTS / XEN_EVTCHN_WORD_BITS];

/* The domain id from CPUID leaf base+4 (needs xen_cpuid_scan), or -1 when
 * the leaf doesn't offer it. */
long xen_own_domid(void);

/* ---- time (pvclock) ---- */
struct xen_time_snap {
	uint32_t version;
	uint64_t tsc_timestamp, system_time;
	uint32_t mul;
	int8_t shift;
	uint8_t flags;
	uint64_t tsc; /* read inside the same version window */
};
/* Consistent copy under the version protocol, with the TSC at that moment;
 * false if the version stayed odd or kept changing (bounded retries). */
bool xen_time_snapshot(const volatile struct vcpu_time_info *t, struct xen_time_snap *s);
/* ((delta << shift or >> -shift) * mul) >> 32 without 64-bit division. */
uint64_t xen_time_scale(uint64_t delta, uint32_t mul, int8_t shift);
uint64_t xen_time_at(const struct xen_time_snap *s, uint64_t tsc);
/* System time in ns now, or 0 if no consistent snapshot could be read. */
uint64_t xen_time_now(const volatile struct vcpu_time_info *t);

/* Wallclock from shared_info under wc_version; false if it never settled. */
bool xen_wallclock(const volatile struct shared_info *s, uint32_t *version, uint64_t *sec, uint32_t *nsec);

/* ---- e820 (XENMEM_memory_map entries, BIOS INT 15h E820 format) ---- */
struct xen_e820_entry {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct xen_e820_entry) == 20, "e820 entry layout");

/* ---- helpers for tests ---- */
/* cmdline expect-version=M.m -> M << 16 | m; default 4.17. */
uint32_t xen_expected_version(void);
/* All `n` bytes at p equal `v`? Returns the first differing index or -1. */
long xen_find_not(const void *p, size_t n, uint8_t v);
/* Name of a Xen errno value for messages ("-EINVAL"), "" if unknown. */
const char *xen_errname(long rc);
/* A return code for "%ld %s": the number and its Xen errno name. */
#define XEN_ERR(rc) (rc), xen_errname(rc)
/* In a void case function: fail the case and return unless expr == want;
 * the rest is a printf description of the call. */
#define XEN_EXPECT_RC(expr, want, ...)                                                           \
	do {                                                                                     \
		long rc_ = (expr);                                                               \
		if (rc_ != (want)) {                                                             \
			char what_[96];                                                          \
			kit_snprintf(what_, sizeof what_, __VA_ARGS__);                          \
			kit_fail("%s = %ld %s, expected %ld %s", what_, XEN_ERR(rc_), (long)(want), \
				 xen_errname(want));                                             \
			return;                                                                  \
		}                                                                                \
	} while (0)

/* Name of a GNTST_ status ("general_error"), "?" if unknown. */
const char *xen_gntst_name(long status);
/* In a void case function: fail the case and return unless the GNTST status is `want`. */
#define XEN_EXPECT_GNTST(expr, want, ...)                                                        \
	do {                                                                                     \
		long st_ = (expr);                                                               \
		if (st_ != (want)) {                                                             \
			char what_[112];                                                         \
			kit_snprintf(what_, sizeof what_, __VA_ARGS__);                          \
			kit_fail("%s: status %ld %s, expected %ld %s", what_, st_, xen_gntst_name(st_), \
				 (long)(want), xen_gntst_name(want));                            \
			return;                                                                  \
		}                                                                                \
	} while (0)
/* GNTTABOP_query_size of `dom` into *q, its outputs preset to markers first (so that what is not written shows). */
long xen_gnttab_query_size(domid_t dom, struct gnttab_query_size *q);
/* Writes the v1 entry `e` as a kernel grants: the domain and frame first, the flags last. */
void xen_grant_v1(volatile grant_entry_v1_t *e, domid_t to, uint32_t frame, uint16_t flags);
/* Ends a v1 grant as a kernel does: clears its flags unless a backend still has it
 * mapped (GTF_reading or GTF_writing set); whether it did. */
bool xen_ungrant_v1(volatile grant_entry_v1_t *e);
/* Fills one GNTTABOP_copy: each side a grant ref or a frame (by flags), its domain and offset; status preset to a marker. */
void xen_gnttab_copy_op(struct gnttab_copy *c, uint16_t flags, uint64_t src, domid_t sdom, uint16_t soff, uint64_t dst,
			domid_t ddom, uint16_t doff, uint16_t len);

/* A consistent copy of a runstate area (retries while Xen updates it). */
bool xen_read_runstate_area(const volatile void *p, struct vcpu_runstate_info *out);

#endif

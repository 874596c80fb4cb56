/* Hypercalls made the way Linux makes them since its XSA-466 fixes: VMCALL or
 * VMMCALL issued directly, chosen by the CPU's vendor, with no hypercall page.
 * KVM hands those to the VMM only where its Xen support is on (a host kernel
 * built with CONFIG_KVM_XEN); elsewhere KVM answers them itself.
 * cmdline: expect=xen (the calls reach Xen; the page's stubs are VMCALL or
 * VMMCALL too) or expect=kvm (KVM's own -KVM_ENOSYS; the page's stubs use
 * an I/O port). With Xen support, KVM keeps SCHEDOP_poll for itself, and
 * without its own event channels in use its poll is a yield: the page's
 * sched_op stub therefore leaves by the port (case poll). */
#include "../kit/kit.h"
#include "../common/xen.h"
#include <xen/sched.h>

#define KVM_ENOSYS 1000 /* what KVM answers a hypercall it does not know */

static bool expect_xen;
static uint8_t shinfo_page[4096] __attribute__((aligned(4096)));
static volatile struct shared_info *sh;
static bool amd;

static void vendor_case(void)
{
	amd = xen_cpu_is_amd();
	kit_printf("KIT-XEN vendor=%s\n", amd ? "amd" : "intel");
}

static void page_case(void)
{
	const uint8_t *stub = xen_hypercall_page + __HYPERVISOR_xen_version * XEN_STUB_SIZE;
	/* mov $nr,%eax (5 bytes), then the instruction that leaves the guest. */
	bool vmcall = stub[0] == 0xb8 && stub[5] == 0x0f && stub[6] == 0x01 && (stub[7] == 0xc1 || stub[7] == 0xd9);
	kit_printf("KIT-XEN page-entry=%s\n", vmcall ? (stub[7] == 0xd9 ? "vmmcall" : "vmcall") : "other");
	KIT_CHECK(vmcall == expect_xen, "the page's stub %s VMCALL/VMMCALL", vmcall ? "is" : "is not");
	if (vmcall)
		KIT_CHECK((stub[7] == 0xd9) == amd, "the page's stub uses the other vendor's instruction");
	long v = HYPERVISOR_xen_version(XENVER_version, NULL);
	KIT_CHECK(v == (long)xen_expected_version(), "XENVER_version through the page = 0x%lx", v);
}

static void direct_case(void)
{
	long v = xen_direct_hypercall2(__HYPERVISOR_xen_version, XENVER_version, 0);
	kit_printf("KIT-XEN direct-version=%ld\n", v);
	if (!expect_xen) {
		KIT_CHECK(v == -KVM_ENOSYS, "XENVER_version by %s = %ld, expected KVM's own -%d", amd ? "VMMCALL" : "VMCALL", v,
			  KVM_ENOSYS);
		return;
	}
	KIT_CHECK(v == (long)xen_expected_version(), "XENVER_version by %s = 0x%lx", amd ? "VMMCALL" : "VMCALL", v);
	/* A pointer argument: the VMM reads and writes guest-virtual memory for the call. */
	static char extra[XEN_EXTRAVERSION_LEN + 1];
	memset(extra, 0xaa, sizeof extra);
	long rc = xen_direct_hypercall2(__HYPERVISOR_xen_version, XENVER_extraversion, XEN_PTR(extra));
	KIT_CHECK(rc == 0 && !strcmp(extra, ".0"), "XENVER_extraversion by the instruction = %ld", rc);
	KIT_CHECK((unsigned char)extra[XEN_EXTRAVERSION_LEN] == 0xaa, "XENVER_extraversion wrote past its buffer");
	/* An unknown hypercall is Xen's -ENOSYS, not KVM's. */
	rc = xen_direct_hypercall2(63, 0, 0);
	KIT_CHECK(rc == -XEN_ENOSYS, "hypercall 63 by the instruction = %ld, expected -ENOSYS", rc);
}

static uint64_t now(void) { return xen_time_now(&sh->vcpu_info[0].time); }

/* SCHEDOP_poll on no port with a 5 ms timeout, through the page and by the instruction. */
static void poll_case(void)
{
	KIT_CHECK(xen_map_shared_info(shinfo_page) == 0, "map shared_info");
	sh = (volatile struct shared_info *)shinfo_page;
	struct sched_poll p = { .nr_ports = 0 };
	cli(); /* no event may end the poll early */
	p.timeout = now() + 5000000;
	long rc = HYPERVISOR_sched_op(SCHEDOP_poll, &p);
	uint64_t woke = now();
	KIT_CHECK(rc == 0 && woke >= p.timeout, "poll through the page = %ld, woke %lld ns before its timeout", rc, (long long)(p.timeout - woke));
	if (!expect_xen)
		return;
	p.timeout = now() + 5000000;
	rc = xen_direct_hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, XEN_PTR(&p));
	woke = now();
	kit_printf("KIT-XEN direct-poll rc=%ld early-ns=%lld\n", rc, (long long)(p.timeout - woke));
	KIT_CHECK(rc == 0 && woke < p.timeout, "poll by the instruction = %ld, woke %lld ns after its timeout: KVM's own poll changed", rc, (long long)(woke - p.timeout));
}

void kit_main(void)
{
	char want[8];
	KIT_CHECK(kit_cmdline_get("expect", want, sizeof want) && (!strcmp(want, "xen") || !strcmp(want, "kvm")),
		  "cmdline needs expect=xen or expect=kvm");
	expect_xen = !strcmp(want, "xen");
	xen_require();
	kit_case("vendor", vendor_case);
	kit_case("page-entry", page_case);
	kit_case("direct", direct_case);
	kit_case("poll", poll_case);
}

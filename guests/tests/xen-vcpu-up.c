/* VCPUOP_initialise, _up, _down and _is_up on vCPU 1, which is never sent
 * INIT/SIPI: it starts from a 64-bit HVM context (flat segments, the BSP's
 * page tables), loads the kit's GDT, marks that it ran, brings itself down,
 * and marks that it resumed once the BSP brings it up again.
 * Run with --vcpus 2. */
#include "../kit/kit.h"
#include "../common/xen.h"
#include <xen/hvm/hvm_vcpu.h>

static uint8_t ap_stack[8192] __attribute__((aligned(16)));
volatile int ap_ran, ap_resumed;
volatile long ap_down_rc = 1;

extern uint64_t kit_gdt[];
/* The kit's GDT: null, code32, data, code64 (0x18), data (0x20), user data, user code64, 64-bit TSS. */
struct __attribute__((packed)) { uint16_t limit; uint64_t base; } ap_gdt_desc = { 9 * 8 - 1, 0 };

void ap_main(void);
/* Entered with flat segments whose selectors mean nothing yet: load the kit's GDT first. */
__asm__(".text\n.globl ap_start\nap_start:\n"
	"\tlgdt ap_gdt_desc(%rip)\n"
	"\tpushq $0x18\n\tlea 1f(%rip), %rax\n\tpushq %rax\n\tlretq\n"
	"1:\tmov $0x20, %eax\n\tmov %eax, %ds\n\tmov %eax, %es\n\tmov %eax, %ss\n"
	"\tcall ap_main\n"
	"2:\tcli\n\thlt\n\tjmp 2b\n");
void ap_start(void);

void ap_main(void)
{
	ap_ran = 1;
	ap_down_rc = HYPERVISOR_vcpu_op(VCPUOP_down, 1, NULL);
	ap_resumed = 1;
}

static void before_case(void)
{
	KIT_CHECK(HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL) == 0, "vCPU 1 is up before anything started it");
	long rc = HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL);
	KIT_CHECK(rc == -XEN_EINVAL, "up without a context: %ld, want -EINVAL", rc);
	rc = HYPERVISOR_vcpu_op(VCPUOP_up, 99, NULL);
	KIT_CHECK(rc == -XEN_ENOENT, "up of vCPU 99: %ld, want -ENOENT", rc);
}

static struct vcpu_hvm_context ctx;

static void initialise_case(void)
{
	ap_gdt_desc.base = (uintptr_t)kit_gdt;
	memset(&ctx, 0, sizeof ctx);
	ctx.mode = 7;
	long rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx);
	KIT_CHECK(rc == -XEN_EINVAL, "initialise with mode 7: %ld, want -EINVAL", rc);
	ctx.mode = VCPU_HVM_MODE_64B;
	uint64_t cr0, cr3, cr4;
	__asm__ volatile("mov %%cr0, %0; mov %%cr3, %1; mov %%cr4, %2" : "=r"(cr0), "=r"(cr3), "=r"(cr4));
	ctx.cpu_regs.x86_64.cr0 = cr0 & ~(1ull << 31); /* no paging: long mode is impossible */
	ctx.cpu_regs.x86_64.cr3 = cr3;
	ctx.cpu_regs.x86_64.cr4 = cr4;
	ctx.cpu_regs.x86_64.efer = rdmsr(0xc0000080);
	rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx);
	KIT_CHECK(rc == -XEN_EINVAL, "64-bit context without paging: %ld, want -EINVAL", rc);
	ctx.cpu_regs.x86_64.cr0 = cr0;
	/* Refused contexts latch nothing: the good one below is still taken. */
	ctx.cpu_regs.x86_64.rip = 0x0000800000000000ull;
	rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx);
	KIT_CHECK(rc == -XEN_EINVAL, "non-canonical RIP: %ld, want -EINVAL", rc);
	ctx.cpu_regs.x86_64.cr4 = cr4 | (1ull << 13); /* VMXE: no nested virtualization */
	rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx);
	KIT_CHECK(rc == -XEN_EINVAL, "CR4.VMXE: %ld, want -EINVAL", rc);
	ctx.cpu_regs.x86_64.cr4 = cr4;
	ctx.cpu_regs.x86_64.rip = (uintptr_t)ap_start;
	ctx.cpu_regs.x86_64.rsp = (uintptr_t)(ap_stack + sizeof ap_stack);
	ctx.cpu_regs.x86_64.rflags = 2;
	rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx);
	KIT_CHECK(rc == 0, "initialise: %ld", rc);
	KIT_CHECK(!ap_ran, "vCPU 1 ran before VCPUOP_up");
	rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx);
	KIT_CHECK(rc == -XEN_EEXIST, "second initialise: %ld, want -EEXIST", rc);
	rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, (void *)KIT_UNMAPPED_VA);
	KIT_CHECK(rc == -XEN_EFAULT, "initialise from an unmapped context: %ld, want -EFAULT", rc);
}

static void up_case(void)
{
	long rc = HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL);
	KIT_CHECK(rc == 0, "up: %ld", rc);
	KIT_CHECK(kit_wait_flag(&ap_ran, 1000), "vCPU 1 never ran from its context");
}

static void down_case(void)
{
	for (int i = 0; i < 200 && HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL) != 0; i++)
		kit_delay_ms(5);
	KIT_CHECK(HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL) == 0, "vCPU 1 still up after bringing itself down");
	/* As in Xen, is_up follows VCPUOP_down at once; the runstate turns offline once the vCPU has stopped. */
	struct vcpu_runstate_info rs;
	for (int i = 0; i < 200; i++) {
		KIT_CHECK(HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 1, &rs) == 0, "get_runstate_info");
		if (rs.state == RUNSTATE_offline)
			break;
		kit_delay_ms(5);
	}
	KIT_CHECK(rs.state == RUNSTATE_offline, "vCPU 1 is in state %d while down, want offline", rs.state);
	kit_delay_ms(20);
	KIT_CHECK(!ap_resumed, "vCPU 1 went on while down");
}

static void up_again_case(void)
{
	long rc = HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL);
	KIT_CHECK(rc == 0, "up again: %ld", rc);
	KIT_CHECK(kit_wait_flag(&ap_resumed, 1000), "vCPU 1 did not resume after up");
	KIT_CHECK(ap_down_rc == 0, "VCPUOP_down on itself returned %ld", ap_down_rc);
	KIT_CHECK(HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL) == 1, "vCPU 1 not up after up");
}

void kit_main(void)
{
	xen_require();
	kit_case("before", before_case);
	kit_case("initialise", initialise_case);
	kit_case("up", up_case);
	kit_case("down-self", down_case);
	kit_case("up-again", up_again_case);
}

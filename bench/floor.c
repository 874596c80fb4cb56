/* Floors for the exit benchmarks: the cheapest possible VMM around
 * guests/build/bench-exits.elf. One vCPU, in-kernel irqchip, PVH 32-bit entry,
 * no ACPI (the guest then stops by writing port 0xf4).
 *   -m io (default): each `outb $0x80` in the guest is one KVM_RUN round trip.
 *   -m hypercall: the guest's null-hypercall loop through a hypercall page
 *     with xenkvm's stubs; this VMM answers each with the version in RAX
 *     through KVM's synced registers, and nothing else (no dispatcher).
 *   usage: floor [-n count] [-m io|hypercall] [path/to/bench-exits.elf]
 *   prints: floor: exits=<n> tsc=<delta> tsc_khz=<khz>  (exits and tsc from the guest)
 *
 * -m ipi: the floor of bench/ipi.ts around guests/build/bench-ipi.elf (64-bit
 *   kit, cmdline "n=<count> mode=floor cpus=2"; count defaults to 300). Two
 *   vCPUs, one thread each; the in-kernel LAPIC does the guest's INIT/SIPI.
 *   Each `outb $0x81` of vCPU 0 is answered with KVM_SIGNAL_MSI: a fixed MSI
 *   at APIC id 1 with the guest's vector, and nothing else.
 * -m ipi-hypercall: the same, but the guest (mode=floor-hypercall) makes each
 *   send a hypercall (event_channel_op) through a hypercall page with
 *   xenkvm's stubs, as in -m hypercall; this VMM answers it with the MSI and
 *   RAX = 0, nothing else: the floor for the guest's path to a Xen send.
 *   usage: floor -m ipi|ipi-hypercall [-n count] [path/to/bench-ipi.elf]
 *   prints: floor: ipi median-tsc=<t> rounds=<n> events-tsc=<total> tsc_khz=<khz> */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_SIZE (16u << 20)
#define START_INFO 0x1000
#define MEMMAP 0x1100
#define CMDLINE 0x2000
#define XEN_MSR 0x40000000u
#define HYPERCALL_PORT 0xe2
#define XEN_VERSION_4_17 0x00040011u
#define IPI_PORT 0x81
#define IPI_APIC 1
#define IPI_VECTOR 0xe0 /* VECTOR in guests/tests/bench-ipi.c */
#define HYPERVISOR_EVENT_CHANNEL_OP 32

/* xenkvm's hypercall stub: mov %cs,%eax; test $3,%al; jnz 1f; mov $nr,%eax; out %eax,$0xe2; ret; 1: or $-1,%rax; ret */
static void fill_hypercall_page(uint8_t *page)
{
	memset(page, 0xcc, 4096);
	for (uint32_t nr = 0; nr < 128; nr++) {
		uint8_t stub[] = { 0x8c, 0xc8, 0xa8, 0x03, 0x75, 0x08, 0xb8, (uint8_t)nr, 0, 0, 0,
				   0xe7, HYPERCALL_PORT, 0xc3, 0x48, 0x83, 0xc8, 0xff, 0xc3 };
		memcpy(page + nr * 32, stub, sizeof stub);
	}
}

static void fail(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void failx(const char *what)
{
	fprintf(stderr, "floor: %s\n", what);
	exit(1);
}

/* Loads an ELF32 (i386 or x86-64 machine) or ELF64; returns the PVH entry. */
static uint32_t load_elf(const char *path, uint8_t *mem)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail(path);
	struct stat st;
	if (fstat(fd, &st))
		fail("fstat");
	uint8_t *f = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f == MAP_FAILED)
		fail("mmap elf");
	close(fd);
	if ((size_t)st.st_size < sizeof(Elf32_Ehdr) || memcmp(f, ELFMAG, SELFMAG))
		failx("not an ELF file");
	int is64 = f[EI_CLASS] == ELFCLASS64;
	uint64_t phoff = is64 ? ((Elf64_Ehdr *)f)->e_phoff : ((Elf32_Ehdr *)f)->e_phoff;
	unsigned phnum = is64 ? ((Elf64_Ehdr *)f)->e_phnum : ((Elf32_Ehdr *)f)->e_phnum;
	uint32_t entry = 0;
	for (unsigned i = 0; i < phnum; i++) {
		uint64_t type, off, pa, fsz, msz;
		if (is64) {
			Elf64_Phdr *p = (Elf64_Phdr *)(f + phoff) + i;
			type = p->p_type, off = p->p_offset, pa = p->p_paddr, fsz = p->p_filesz, msz = p->p_memsz;
		} else {
			Elf32_Phdr *p = (Elf32_Phdr *)(f + phoff) + i;
			type = p->p_type, off = p->p_offset, pa = p->p_paddr, fsz = p->p_filesz, msz = p->p_memsz;
		}
		if (off + fsz > (uint64_t)st.st_size || pa + msz > MEM_SIZE || fsz > msz)
			failx("segment out of range");
		if (type == PT_LOAD) {
			memcpy(mem + pa, f + off, fsz);
			memset(mem + pa + fsz, 0, msz - fsz);
		} else if (type == PT_NOTE) {
			for (uint64_t n = off; n + 12 <= off + fsz;) {
				uint32_t namesz = *(uint32_t *)(f + n), descsz = *(uint32_t *)(f + n + 4);
				uint32_t ntype = *(uint32_t *)(f + n + 8);
				uint64_t desc = n + 12 + ((namesz + 3) & ~3u);
				if (ntype == 18 && namesz == 4 && !memcmp(f + n + 12, "Xen", 4) && descsz >= 4)
					entry = *(uint32_t *)(f + desc);
				n = desc + ((descsz + 3) & ~3u);
			}
		}
	}
	if (!entry)
		failx("no XEN_ELFNOTE_PHYS32_ENTRY note");
	munmap(f, st.st_size);
	return entry;
}

/* Guest console (port 0xe9), shared by the vCPU threads of -m ipi. */
static char out[4096];
static size_t outlen;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void console(const uint8_t *data, size_t n)
{
	pthread_mutex_lock(&out_lock);
	for (size_t i = 0; i < n && outlen + 1 < sizeof out; i++)
		out[outlen++] = (char)data[i];
	pthread_mutex_unlock(&out_lock);
}

/* -m ipi: vCPU 1 waits in the kernel for INIT/SIPI, then takes the MSIs and
 * halts in the kernel; it leaves KVM_RUN only to print. */
struct ap { int fd; struct kvm_run *run; };

static void *ap_thread(void *arg)
{
	struct ap *ap = arg;
	for (;;) {
		if (ioctl(ap->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fail("KVM_RUN (vCPU 1)");
		}
		struct kvm_run *run = ap->run;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0xe9 && run->io.direction == KVM_EXIT_IO_OUT) {
			console((uint8_t *)run + run->io.data_offset, (size_t)run->io.size * run->io.count);
			continue;
		}
		fprintf(stderr, "floor: vCPU 1: unexpected exit %u (port 0x%x)\n", run->exit_reason,
			run->exit_reason == KVM_EXIT_IO ? run->io.port : 0);
		exit(1);
	}
	return NULL;
}

/* A vCPU (`id` is its APIC id) with its kvm_run mapped. */
static int new_vcpu(int vm, int id, int runsz, struct kvm_run **run)
{
	int fd = ioctl(vm, KVM_CREATE_VCPU, id);
	if (fd < 0)
		fail(id ? "KVM_CREATE_VCPU 1" : "KVM_CREATE_VCPU");
	*run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (*run == MAP_FAILED)
		fail(id ? "mmap kvm_run 1" : "mmap kvm_run");
	return fd;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int main(int argc, char **argv)
{
	unsigned long count = 100000;
	const char *elf = "guests/build/bench-exits.elf";
	int hypercall = 0, ipi = 0, ipi_hcall = 0, count_given = 0;
	int opt;
	while ((opt = getopt(argc, argv, "n:m:")) != -1) {
		if (opt == 'n')
			count = strtoul(optarg, NULL, 0), count_given = 1;
		else if (opt == 'm' && (!strcmp(optarg, "io") || !strcmp(optarg, "hypercall") || !strcmp(optarg, "ipi") ||
					!strcmp(optarg, "ipi-hypercall"))) {
			hypercall = !strcmp(optarg, "hypercall");
			ipi_hcall = !strcmp(optarg, "ipi-hypercall");
			ipi = ipi_hcall || !strcmp(optarg, "ipi");
		} else
			failx("usage: floor [-n count] [-m io|hypercall|ipi|ipi-hypercall] [bench-exits.elf | bench-ipi.elf]");
	}
	if (ipi) {
		elf = "guests/build/bench-ipi.elf";
		if (!count_given)
			count = 300;
	}
	if (optind < argc)
		elf = argv[optind];

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		fail("KVM_CREATE_VM");
	if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) < 0)
		fail("KVM_SET_TSS_ADDR");
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
		fail("KVM_CREATE_IRQCHIP");
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		fail("mmap guest RAM");
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		fail("KVM_SET_USER_MEMORY_REGION");

	uint32_t entry = load_elf(elf, mem);

	/* hvm_start_info v1, no ACPI (rsdp_paddr 0), two RAM ranges */
	uint8_t *si = mem + START_INFO;
	put32(si + 0, 0x336ec578);
	put32(si + 4, 1);
	put64(si + 24, CMDLINE);
	put64(si + 32, 0);
	put64(si + 40, MEMMAP);
	put32(si + 48, 2);
	uint8_t *mm = mem + MEMMAP;
	put64(mm + 0, 0), put64(mm + 8, 0xa0000), put32(mm + 16, 1);
	put64(mm + 24, 0x100000), put64(mm + 32, MEM_SIZE - 0x100000), put32(mm + 40, 1);
	if (ipi)
		snprintf((char *)mem + CMDLINE, 64, "n=%lu mode=%s cpus=2", count, ipi_hcall ? "floor-hypercall" : "floor");
	else
		snprintf((char *)mem + CMDLINE, 64, "n=%lu mode=%s", count, hypercall ? "hypercall" : "io");
	if (hypercall || ipi_hcall) {
		/* Guest writes to the Xen MSR come here; host accesses are never filtered. */
		struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR, .args[0] = KVM_MSR_EXIT_REASON_FILTER };
		static uint8_t deny[1];
		struct kvm_msr_filter filter = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
		filter.ranges[0] = (struct kvm_msr_filter_range){ .flags = KVM_MSR_FILTER_WRITE, .nmsrs = 8, .base = XEN_MSR, .bitmap = deny };
		if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0 || ioctl(vm, KVM_X86_SET_MSR_FILTER, &filter) < 0)
			fail("MSR filter");
	}

	int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run;
	int vcpu = new_vcpu(vm, 0, runsz, &run);
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[128];
	} cpuid = { .c.nent = 128 };
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0)
		fail("KVM_GET_SUPPORTED_CPUID");
	if (hypercall || ipi_hcall) {
		/* The guest finds the hypercall MSR in leaf 0x40000002. */
		unsigned n = 0;
		for (unsigned i = 0; i < cpuid.c.nent; i++)
			if (cpuid.e[i].function < 0x40000000 || cpuid.e[i].function > 0x4fffffff)
				cpuid.e[n++] = cpuid.e[i];
		if (n == 128)
			failx("too many CPUID leaves");
		cpuid.e[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000002, .eax = 1, .ebx = XEN_MSR };
		cpuid.c.nent = n;
		run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	}
	if (ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0)
		fail("KVM_SET_CPUID2");
	static struct ap ap;
	if (ipi) {
		/* vCPU 1 (APIC id 1): an AP waiting for INIT/SIPI */
		ap.fd = new_vcpu(vm, IPI_APIC, runsz, &ap.run);
		if (ioctl(ap.fd, KVM_SET_CPUID2, &cpuid) < 0)
			fail("KVM_SET_CPUID2 (vCPU 1)");
	}

	/* PVH: 32-bit flat protected mode, paging off, %ebx = start_info */
	struct kvm_sregs s;
	if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0)
		fail("KVM_GET_SREGS");
	struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb,
				  .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1 };
	struct kvm_segment ds = cs;
	ds.type = 0x3;
	ds.selector = 0x10;
	struct kvm_segment tr = { .base = 0, .limit = 0x67, .selector = 0x18, .type = 0xb, .present = 1 };
	s.cs = cs;
	s.ds = s.es = s.fs = s.gs = s.ss = ds;
	s.tr = tr;
	s.cr0 = 0x11;
	s.cr4 = 0;
	s.efer = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0)
		fail("KVM_SET_SREGS");
	struct kvm_regs r = { .rip = entry, .rflags = 2, .rbx = START_INFO };
	if (ioctl(vcpu, KVM_SET_REGS, &r) < 0)
		fail("KVM_SET_REGS");

	if (ipi) {
		pthread_t t;
		if (pthread_create(&t, NULL, ap_thread, &ap))
			failx("pthread_create");
	}
	struct kvm_msi msi = { .address_lo = 0xfee00000u | (IPI_APIC << 12), .data = IPI_VECTOR };
	unsigned long exits_seen = 0;
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fail("KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_X86_WRMSR) {
			uint64_t gpa = run->msr.data;
			run->msr.error = run->msr.index != XEN_MSR || (gpa & 0xfff) || gpa + 4096 > MEM_SIZE;
			if (!run->msr.error)
				fill_hypercall_page(mem + gpa);
			continue;
		}
		if (run->exit_reason != KVM_EXIT_IO) {
			fprintf(stderr, "floor: unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		if (run->io.direction != KVM_EXIT_IO_OUT) {
			memset(data, 0xff, (size_t)run->io.size * run->io.count);
			continue;
		}
		if (run->io.port == 0x80) { /* the I/O loop */
			exits_seen += run->io.count;
		} else if (run->io.port == HYPERCALL_PORT && ipi_hcall) {
			if (*(uint32_t *)data != HYPERVISOR_EVENT_CHANNEL_OP)
				failx("guest made a hypercall other than event_channel_op");
			if (ioctl(vm, KVM_SIGNAL_MSI, &msi) <= 0)
				fail("KVM_SIGNAL_MSI (not delivered)");
			run->s.regs.regs.rax = 0;
			run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
			exits_seen++;
		} else if (run->io.port == HYPERCALL_PORT) {
			run->s.regs.regs.rax = XEN_VERSION_4_17;
			run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
			exits_seen++;
		} else if (run->io.port == IPI_PORT && ipi) {
			if (ioctl(vm, KVM_SIGNAL_MSI, &msi) <= 0)
				fail("KVM_SIGNAL_MSI (not delivered)");
			exits_seen++;
		} else if (run->io.port == 0xe9) {
			console(data, (size_t)run->io.count * run->io.size);
		} else if (run->io.port == 0xf4) {
			break;
		}
	}
	pthread_mutex_lock(&out_lock);
	out[outlen] = 0;
	pthread_mutex_unlock(&out_lock);
	int khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);
	if (khz < 0)
		fail("KVM_GET_TSC_KHZ");

	if (ipi) {
		unsigned long long med, total;
		unsigned long rounds, acks;
		const char *d = strstr(out, "KIT-BENCH ipi-detail "), *l = strstr(out, "KIT-BENCH ipi median-tsc=");
		const char *a = d ? strstr(d, " acks=") : NULL;
		if (!l || !a || sscanf(l, "KIT-BENCH ipi median-tsc=%llu rounds=%lu events-tsc=%llu", &med, &rounds, &total) != 3 ||
		    sscanf(a, " acks=%lu", &acks) != 1 || !total) {
			fprintf(stderr, "floor: no KIT-BENCH ipi line in guest output:\n%s", out);
			return 1;
		}
		if (rounds != count || acks != exits_seen) {
			fprintf(stderr, "floor: guest says %lu rounds and %lu acks; sent %lu MSIs, asked %lu rounds\n", rounds, acks,
				exits_seen, count);
			return 1;
		}
		printf("floor: ipi median-tsc=%llu rounds=%lu events-tsc=%llu tsc_khz=%d\n", med, rounds, total, khz);
		return 0;
	}

	unsigned long exits;
	unsigned long long tsc;
	const char *line = strstr(out, "KIT-BENCH ");
	if (!line || sscanf(line, hypercall ? "KIT-BENCH hypercalls=%lu tsc=%llu" : "KIT-BENCH exits=%lu tsc=%llu", &exits, &tsc) != 2 || !tsc) {
		fprintf(stderr, "floor: no KIT-BENCH line in guest output:\n%s", out);
		return 1;
	}
	if (exits != exits_seen || exits != count) {
		fprintf(stderr, "floor: guest says %lu exits, saw %lu, asked %lu\n", exits, exits_seen, count);
		return 1;
	}
	printf("floor: exits=%lu tsc=%llu tsc_khz=%d\n", exits, tsc, khz);
	return 0;
}

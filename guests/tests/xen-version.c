/* HYPERVISOR_xen_version: every XENVER_* sub-op as Xen answers an
 * unprivileged HVM domU (XSM dummy policy: version, platform_parameters,
 * get_features always; extraversion, compile_info, capabilities, changeset,
 * pagesize, guest_handle allowed; commandline and build_id denied).
 * cmdline: expect-version=M.m (default 4.17). */
#include "../kit/kit.h"
#include "../common/xen.h"

#define FILL 0xaa
#define GUARD 32 /* bytes after each buffer that must stay untouched */

static uint8_t buf[2048];

/* Calls sub-op `cmd` on buf filled with FILL; checks rc == 0. */
static bool call_filled(int cmd, const char *name)
{
	memset(buf, FILL, sizeof buf);
	long rc = HYPERVISOR_xen_version(cmd, buf);
	if (rc != 0) {
		kit_fail("%s = %ld %s, expected 0", name, rc, xen_errname(rc));
		return false;
	}
	return true;
}

/* A NUL-terminated string NUL-padded to `len` bytes, then untouched bytes. */
static bool check_padded(const uint8_t *p, size_t len, const char *what)
{
	size_t n = 0;
	while (n < len && p[n])
		n++;
	if (n == len) {
		kit_fail("%s not NUL-terminated within %u bytes", what, (unsigned)len);
		return false;
	}
	long bad = xen_find_not(p + n, len - n, 0);
	if (bad >= 0) {
		kit_fail("%s: byte %u after the string is 0x%02x, expected NUL padding", what,
			 (unsigned)(n + (size_t)bad), p[n + (size_t)bad]);
		return false;
	}
	return true;
}

static bool check_guard(size_t len, const char *what)
{
	long bad = xen_find_not(buf + len, GUARD, FILL);
	if (bad >= 0) {
		kit_fail("%s wrote past %u bytes (byte %u = 0x%02x)", what, (unsigned)len, (unsigned)(len + (size_t)bad),
			 buf[len + (size_t)bad]);
		return false;
	}
	return true;
}

static void version_case(void)
{
	long v = HYPERVISOR_xen_version(XENVER_version, NULL);
	kit_printf("KIT-XEN version=0x%lx (%ld.%ld)\n", v, v >> 16, v & 0xffff);
	KIT_CHECK(v == (long)xen_expected_version(), "XENVER_version = 0x%lx, expected 0x%x", v,
		  xen_expected_version());
}

static void extraversion_case(void)
{
	if (!call_filled(XENVER_extraversion, "XENVER_extraversion"))
		return;
	kit_printf("KIT-XEN extraversion=\"%s\"\n", check_padded(buf, XEN_EXTRAVERSION_LEN, "extraversion") ? (char *)buf : "?");
	check_guard(XEN_EXTRAVERSION_LEN, "extraversion");
}

static void compile_info_case(void)
{
	if (!call_filled(XENVER_compile_info, "XENVER_compile_info"))
		return;
	struct xen_compile_info *ci = (struct xen_compile_info *)buf;
	if (!check_padded((uint8_t *)ci->compiler, sizeof ci->compiler, "compiler") ||
	    !check_padded((uint8_t *)ci->compile_by, sizeof ci->compile_by, "compile_by") ||
	    !check_padded((uint8_t *)ci->compile_domain, sizeof ci->compile_domain, "compile_domain") ||
	    !check_padded((uint8_t *)ci->compile_date, sizeof ci->compile_date, "compile_date"))
		return;
	kit_printf("KIT-XEN compile_info compiler=\"%s\" by=\"%s\" domain=\"%s\" date=\"%s\"\n", ci->compiler,
		   ci->compile_by, ci->compile_domain, ci->compile_date);
	check_guard(sizeof *ci, "compile_info");
}

static bool contains(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay; hay++)
		if (!strncmp(hay, needle, n))
			return true;
	return false;
}

static void capabilities_case(void)
{
	if (!call_filled(XENVER_capabilities, "XENVER_capabilities"))
		return;
	if (!check_padded(buf, XEN_CAPABILITIES_INFO_LEN, "capabilities"))
		return;
	kit_printf("KIT-XEN capabilities=\"%s\"\n", (char *)buf);
	KIT_CHECK(contains((char *)buf, "hvm-3.0-x86_64"), "capabilities lack hvm-3.0-x86_64");
	check_guard(XEN_CAPABILITIES_INFO_LEN, "capabilities");
}

static void changeset_case(void)
{
	if (!call_filled(XENVER_changeset, "XENVER_changeset"))
		return;
	if (!check_padded(buf, XEN_CHANGESET_INFO_LEN, "changeset"))
		return;
	kit_printf("KIT-XEN changeset=\"%s\"\n", (char *)buf);
	check_guard(XEN_CHANGESET_INFO_LEN, "changeset");
}

/* Xen <= 4.17 reports HYPERVISOR_VIRT_START to 64-bit callers of any guest
 * type; 4.18 ("xen/version: Drop bogus return values for
 * XENVER_platform_parameters") reports 0 to HVM guests. */
static void platform_parameters_case(void)
{
	if (!call_filled(XENVER_platform_parameters, "XENVER_platform_parameters"))
		return;
	struct xen_platform_parameters *pp = (struct xen_platform_parameters *)buf;
	uint64_t want = xen_expected_version() >= 0x00040012 ? 0 : 0xffff800000000000ull;
	kit_printf("KIT-XEN platform_parameters virt_start=0x%lx\n", (unsigned long)pp->virt_start);
	KIT_CHECK(pp->virt_start == want, "virt_start 0x%lx, expected 0x%lx", (unsigned long)pp->virt_start,
		  (unsigned long)want);
	check_guard(sizeof *pp, "platform_parameters");
}

static void get_features_case(void)
{
	struct xen_feature_info fi = { .submap_idx = 0, .submap = 0xdeadbeef };
	long rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
	KIT_CHECK(rc == 0, "get_features(0) = %ld %s", rc, xen_errname(rc));
	kit_printf("KIT-XEN features submap0=0x%08x\n", fi.submap);
	static const struct {
		int bit;
		const char *name;
	} need[] = {
		{ XENFEAT_writable_page_tables, "writable_page_tables" },
		{ XENFEAT_auto_translated_physmap, "auto_translated_physmap" },
		{ XENFEAT_hvm_callback_vector, "hvm_callback_vector" },
		{ XENFEAT_hvm_safe_pvclock, "hvm_safe_pvclock" },
		{ XENFEAT_memory_op_vnode_supported, "memory_op_vnode_supported" },
		/* Xen >= 4.15 sets one of the two for every guest; a translated
		 * domU is not direct-mapped. */
		{ XENFEAT_not_direct_mapped, "not_direct_mapped" },
	};
	for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
		KIT_CHECK(fi.submap & (1u << need[i].bit), "XENFEAT_%s clear (submap 0x%08x)", need[i].name, fi.submap);
	static const struct {
		int bit;
		const char *name;
	} never[] = {
		{ XENFEAT_dom0, "dom0" },
		{ XENFEAT_direct_mapped, "direct_mapped" },
		{ XENFEAT_mmu_pt_update_preserve_ad, "mmu_pt_update_preserve_ad (PV only)" },
		{ XENFEAT_highmem_assist, "highmem_assist (PV only)" },
		{ XENFEAT_gnttab_map_avail_bits, "gnttab_map_avail_bits (PV only)" },
	};
	for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
		KIT_CHECK(!(fi.submap & (1u << never[i].bit)), "XENFEAT_%s set (submap 0x%08x)", never[i].name, fi.submap);
	fi.submap_idx = 1;
	fi.submap = 0x12345678;
	rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
	KIT_CHECK(rc == -XEN_EINVAL, "get_features(1) = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	KIT_CHECK(fi.submap == 0x12345678, "get_features(1) wrote submap 0x%x", fi.submap);
}

static void pagesize_case(void)
{
	long rc = HYPERVISOR_xen_version(XENVER_pagesize, NULL);
	KIT_CHECK(rc == 4096, "pagesize(NULL) = %ld, expected 4096", rc);
	memset(buf, FILL, 64);
	rc = HYPERVISOR_xen_version(XENVER_pagesize, buf);
	KIT_CHECK(rc == -XEN_EINVAL, "pagesize(non-NULL) = %ld %s, expected -EINVAL", rc, xen_errname(rc));
	KIT_CHECK(xen_find_not(buf, 64, FILL) < 0, "pagesize(non-NULL) wrote to the buffer");
}

static void guest_handle_case(void)
{
	if (!call_filled(XENVER_guest_handle, "XENVER_guest_handle"))
		return;
	kit_printf("KIT-XEN guest_handle=");
	for (int i = 0; i < 16; i++)
		kit_printf("%02x", buf[i]);
	kit_printf("\n");
	KIT_CHECK(xen_find_not(buf, 16, FILL) >= 0, "guest handle not written (16 bytes still 0x%02x)", FILL);
	check_guard(16, "guest_handle");
}

static void commandline_case(void)
{
	if (!call_filled(XENVER_commandline, "XENVER_commandline"))
		return;
	KIT_CHECK(!memcmp(buf, "<denied>", 9), "commandline \"%.16s\", expected \"<denied>\"", (char *)buf);
	/* A denied domU gets strlen("<denied>") + 1 bytes, nothing more. */
	long bad = xen_find_not(buf + 9, sizeof buf - 9, FILL);
	KIT_CHECK(bad < 0, "byte %ld after \"<denied>\" written (0x%02x)", 9 + bad, buf[9 + bad]);
}

static void build_id_case(void)
{
	struct {
		uint32_t len;
		uint8_t data[64];
	} bid;
	memset(&bid, FILL, sizeof bid);
	bid.len = sizeof bid.data;
	long rc = HYPERVISOR_xen_version(XENVER_build_id, &bid);
	KIT_CHECK(rc == -XEN_EPERM, "build_id = %ld %s, expected -EPERM", rc, xen_errname(rc));
	KIT_CHECK(xen_find_not(bid.data, sizeof bid.data, FILL) < 0, "build_id wrote to the buffer");
	rc = HYPERVISOR_xen_version(XENVER_build_id, NULL);
	KIT_CHECK(rc == -XEN_EPERM, "build_id(NULL) = %ld %s, expected -EPERM", rc, xen_errname(rc));
}

static void unknown_case(void)
{
	memset(buf, FILL, 64);
	long rc = HYPERVISOR_xen_version(100, buf);
	KIT_CHECK(rc == -XEN_ENOSYS, "sub-op 100 = %ld %s, expected -ENOSYS", rc, xen_errname(rc));
	KIT_CHECK(xen_find_not(buf, 64, FILL) < 0, "sub-op 100 wrote to the buffer");
}

static void bad_pointer_case(void)
{
	static const struct {
		int cmd;
		const char *name;
	} ops[] = {
		{ XENVER_extraversion, "extraversion" },   { XENVER_compile_info, "compile_info" },
		{ XENVER_capabilities, "capabilities" },   { XENVER_changeset, "changeset" },
		{ XENVER_platform_parameters, "platform_parameters" },
		{ XENVER_get_features, "get_features" },   { XENVER_guest_handle, "guest_handle" },
		{ XENVER_commandline, "commandline" },
	};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		long rc = xen_hypercall(__HYPERVISOR_xen_version, (unsigned)ops[i].cmd, KIT_UNMAPPED_VA, 0, 0, 0);
		KIT_CHECK(rc == -XEN_EFAULT, "%s(0x%llx) = %ld %s, expected -EFAULT", ops[i].name, U64(KIT_UNMAPPED_VA),
			  rc, xen_errname(rc));
	}
	/* XENVER_version ignores its argument. */
	long v = xen_hypercall(__HYPERVISOR_xen_version, XENVER_version, KIT_UNMAPPED_VA, 0, 0, 0);
	KIT_CHECK(v == (long)xen_expected_version(), "version(bad pointer) = %ld", v);
}

void kit_main(void)
{
	xen_require();
	kit_case("version", version_case);
	kit_case("extraversion", extraversion_case);
	kit_case("compile-info", compile_info_case);
	kit_case("capabilities", capabilities_case);
	kit_case("changeset", changeset_case);
	kit_case("platform-parameters", platform_parameters_case);
	kit_case("get-features", get_features_case);
	kit_case("pagesize", pagesize_case);
	kit_case("guest-handle", guest_handle_case);
	kit_case("commandline", commandline_case);
	kit_case("build-id", build_id_case);
	kit_case("unknown-subop", unknown_case);
	kit_case("bad-pointer", bad_pointer_case);
}

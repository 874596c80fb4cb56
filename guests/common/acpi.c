/* ACPI walk (RSDP -> XSDT -> FADT, MADT, DSDT) and power control, as a
 * guest kernel does it. Tables live below 4 GiB, so pointers are fine in
 * both kits. */
#include "kitlib.h"

struct kit_acpi kit_acpi;
char kit_acpi_error[96];

static void problem(const char *what)
{
	if (!kit_acpi_error[0])
		kit_snprintf(kit_acpi_error, sizeof kit_acpi_error, "%s", what);
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static bool sum_ok(const uint8_t *p, uint32_t len)
{
	uint8_t s = 0;
	while (len--)
		s += *p++;
	return s == 0;
}

static const uint8_t *table_at(uint64_t pa, const char *sig)
{
	if (!pa || pa >= (1ull << 32))
		return NULL;
	const uint8_t *t = kit_phys(pa);
	if (memcmp(t, sig, 4) || rd32(t + 4) < 36 || !sum_ok(t, rd32(t + 4)))
		return NULL;
	return t;
}

const uint8_t *kit_acpi_find(const char sig[4])
{
	if (!kit_acpi.xsdt)
		return NULL;
	uint32_t n = (rd32(kit_acpi.xsdt + 4) - 36) / 8;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pa = rd64(kit_acpi.xsdt + 36 + 8 * i);
		if (pa && pa < (1ull << 32) && !memcmp(kit_phys(pa), sig, 4))
			return table_at(pa, sig);
	}
	return NULL;
}

/* First element of Package _S5_: SLP_TYPa. */
static void find_s5(const uint8_t *dsdt)
{
	uint32_t len = rd32(dsdt + 4);
	for (uint32_t i = 36; i + 4 < len; i++) {
		if (memcmp(dsdt + i, "_S5_", 4))
			continue;
		uint32_t j = i + 4;
		if (j >= len || dsdt[j] != 0x12) /* PackageOp */
			continue;
		j++;
		j += 1 + (dsdt[j] >> 6); /* PkgLength */
		j++;                     /* NumElements */
		if (j + 1 >= len)
			break;
		switch (dsdt[j]) {
		case 0x00: kit_acpi.slp_typ = 0; break;              /* ZeroOp */
		case 0x01: kit_acpi.slp_typ = 1; break;              /* OneOp */
		case 0x0a: case 0x0b: case 0x0c:                     /* Byte/Word/DWord prefix */
			kit_acpi.slp_typ = dsdt[j + 1]; break;
		default:
			problem("_S5_ first element not an integer");
			return;
		}
		kit_acpi.s5_found = true;
		return;
	}
	problem("no _S5_ in DSDT");
}

static void parse_madt(const uint8_t *m)
{
	uint32_t len = rd32(m + 4);
	kit_acpi.lapic_addr = rd32(m + 36);
	for (uint32_t off = 44; off + 2 <= len;) {
		uint8_t type = m[off], elen = m[off + 1];
		if (elen < 2 || off + elen > len) {
			problem("MADT entry length");
			break;
		}
		if (type == 0 && elen >= 8 && (rd32(m + off + 4) & 1)) {
			if (kit_acpi.ncpus < KIT_MAX_CPUS)
				kit_acpi.apic_id[kit_acpi.ncpus++] = m[off + 3];
		} else if (type == 1) {
			kit_acpi.nioapic++;
		}
		off += elen;
	}
}

void kit_acpi_init(void)
{
	if (!kit_start_info || kit_start_info->magic != HVM_START_MAGIC || !kit_start_info->rsdp_paddr) {
		problem("no rsdp_paddr");
		return;
	}
	const uint8_t *r = kit_phys(kit_start_info->rsdp_paddr);
	if (memcmp(r, "RSD PTR ", 8) || !sum_ok(r, 20)) {
		problem("bad RSDP");
		return;
	}
	if (r[15] < 2 || !sum_ok(r, 36)) {
		problem("RSDP not revision 2");
		return;
	}
	kit_acpi.rsdp = r;
	kit_acpi.xsdt = table_at(rd64(r + 24), "XSDT");
	if (!kit_acpi.xsdt) {
		problem("bad XSDT");
		return;
	}
	kit_acpi.found = true;
	const uint8_t *f = kit_acpi.fadt = kit_acpi_find("FACP");
	if (f) {
		uint32_t flen = rd32(f + 4);
		kit_acpi.hw_reduced = flen > 115 && (rd32(f + 112) & (1u << 20));
		if (flen >= 129) {
			memcpy(&kit_acpi.reset_reg, f + 116, 12);
			kit_acpi.reset_value = f[128];
		}
		kit_acpi.pm1a_cnt = rd32(f + 64);
		if (flen >= 256)
			memcpy(&kit_acpi.sleep_ctl, f + 244, 12);
		uint64_t d = flen >= 148 ? rd64(f + 140) : 0;
		if (!d)
			d = rd32(f + 40);
		kit_acpi.dsdt = table_at(d, "DSDT");
		if (kit_acpi.dsdt)
			find_s5(kit_acpi.dsdt);
		else
			problem("bad DSDT");
	} else {
		problem("no FADT");
	}
	kit_acpi.madt = kit_acpi_find("APIC");
	if (kit_acpi.madt)
		parse_madt(kit_acpi.madt);
	else
		problem("no MADT");
}

static void gas_write(const struct acpi_gas *g, uint32_t v)
{
	if (g->space == 1) { /* system I/O */
		uint16_t port = (uint16_t)g->address;
		if (g->bit_width == 16)
			outw(port, (uint16_t)v);
		else if (g->bit_width == 32)
			outl(port, v);
		else
			outb(port, (uint8_t)v);
	} else if (g->space == 0 && g->address) { /* system memory */
		volatile void *p = kit_phys(g->address);
		if (g->bit_width == 16)
			*(volatile uint16_t *)p = (uint16_t)v;
		else if (g->bit_width == 32)
			*(volatile uint32_t *)p = v;
		else
			*(volatile uint8_t *)p = (uint8_t)v;
	}
}

KIT_NORETURN void kit_halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* Last resort for runners without ACPI (bench floor): port 0xf4. */
static KIT_NORETURN void fallback(const char *why)
{
	kit_console_force_unlock();
	kit_printf("KIT-POWER %s\n", why);
	outb(0xf4, 0);
	kit_halt_forever();
}

KIT_NORETURN void kit_poweroff_sleepctl(void)
{
	if (kit_acpi.s5_found && kit_acpi.sleep_ctl.address)
		gas_write(&kit_acpi.sleep_ctl, (uint32_t)(((kit_acpi.slp_typ & 7) << 2) | (1 << 5)));
	fallback(kit_acpi.found ? "sleep-control power-off did not stop the VM" : "no ACPI, port 0xf4");
}

KIT_NORETURN void kit_poweroff_pm1a(void)
{
	if (kit_acpi.s5_found && kit_acpi.pm1a_cnt)
		outw((uint16_t)kit_acpi.pm1a_cnt, (uint16_t)(((kit_acpi.slp_typ & 7) << 10) | (1 << 13)));
	fallback(kit_acpi.found ? "PM1a power-off did not stop the VM" : "no ACPI, port 0xf4");
}

KIT_NORETURN void kit_poweroff(void)
{
	char how[16];
	if (kit_cmdline_get("kit.poweroff", how, sizeof how) && !strcmp(how, "pm1a"))
		kit_poweroff_pm1a();
	if (kit_acpi.hw_reduced || !kit_acpi.pm1a_cnt)
		kit_poweroff_sleepctl();
	kit_poweroff_pm1a();
}

KIT_NORETURN void kit_reset(void)
{
	if (kit_acpi.reset_reg.address)
		gas_write(&kit_acpi.reset_reg, kit_acpi.reset_value);
	fallback("reset did not stop the VM");
}

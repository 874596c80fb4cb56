/* PVH start_info and the command line. */
#include "kitlib.h"

const struct hvm_start_info *kit_start_info;
const char *kit_cmdline = "";

void kit_startinfo_init(uint32_t paddr)
{
	kit_start_info = kit_phys(paddr);
	if (paddr && kit_start_info->magic == HVM_START_MAGIC && kit_start_info->cmdline_paddr)
		kit_cmdline = kit_phys(kit_start_info->cmdline_paddr);
}

const char *kit_memtype_name(uint32_t type)
{
	switch (type) {
	case 1: return "ram";
	case 2: return "reserved";
	case 3: return "acpi";
	case 4: return "acpi-nvs";
	case 5: return "unusable";
	default: return "other";
	}
}

bool kit_cmdline_get(const char *key, char *val, size_t size)
{
	size_t klen = strlen(key);
	const char *p = kit_cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *tok = p;
		while (*p && *p != ' ')
			p++;
		size_t tlen = (size_t)(p - tok);
		if (tlen >= klen && !strncmp(tok, key, klen) && (tlen == klen || tok[klen] == '=')) {
			const char *v = tlen == klen ? tok + klen : tok + klen + 1;
			size_t vlen = (size_t)(p - v);
			if (size) {
				if (vlen >= size)
					vlen = size - 1;
				memcpy(val, v, vlen);
				val[vlen] = 0;
			}
			return true;
		}
	}
	return false;
}

bool kit_cmdline_u64(const char *key, uint64_t *out)
{
	char buf[32];
	return kit_cmdline_get(key, buf, sizeof buf) && kit_parse_u64(buf, out);
}

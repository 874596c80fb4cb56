/* 32-bit polling kit: console, start_info, cmdline, ACPI power, harness. */
#ifndef KIT32_H
#define KIT32_H
#include "../common/kitlib.h"
#endif

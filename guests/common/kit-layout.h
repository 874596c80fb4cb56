/* Sizes and addresses the kits' C and assembly must agree on (no C here). */
#ifndef KIT_LAYOUT_H
#define KIT_LAYOUT_H

#define KIT_MAX_CPUS 16
#define KIT_STACK_SIZE 8192 /* per CPU */
#define TRAMP_BASE 0x8000   /* both kits' AP trampoline, the SIPI page */
#define KIT_USER_RETURN_VECTOR 0x80 /* 64-bit kit: `int` from CPL 3 back to kit_run_user */

#endif

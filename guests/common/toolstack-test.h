/* The toolstack's hypercalls from an unprivileged domain, as xen-detect
 * (native ABI) and xen32-detect (compat ABI) check them: refused the way Xen
 * 4.17 refuses a domU, check by check (-EFAULT, -EACCES, -ESRCH, -E2BIG), and
 * -EPERM at the end, never -ENOSYS. */
#ifndef TOOLSTACK_TEST_H
#define TOOLSTACK_TEST_H

void toolstack_refused_case(void);

#endif

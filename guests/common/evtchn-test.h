/* 2-level event channels on 2 vCPUs, delivered through interrupts, as both
 * xen-evtchn (native ABI) and xen32-upcall (compat ABI) test them: built -m64
 * or -m32, the same source scans the layout of its ABI.
 *
 * Upcalls come two ways. First the HVM-wide callback vector
 * (HVM_PARAM_CALLBACK_IRQ type 2): injected directly, so its IDT entry is a
 * stub of ours that never EOIs (the kit's handlers always do). Then, once the
 * callback is off, the per-vCPU vector (HVMOP_set_evtchn_upcall_vector): a
 * LAPIC fixed interrupt the kit EOIs. The order is forced by Xen: a per-vCPU
 * vector takes precedence over the callback via (hvm_op.h) and can't be
 * unset (vectors below 0x10 are refused), so the callback case runs first.
 *
 * Each vCPU handles only the ports bound to it (`evt_mine`, as Linux's
 * per-CPU evtchn mask), so a pending bit is counted by the vCPU its selector
 * and upcall went to. The handler: clear evtchn_upcall_pending, xchg the
 * selector, then for each selected word the bits pending & ~mask & mine,
 * clearing each pending bit atomically and counting it per port per vCPU. */
#ifndef EVTCHN_TEST_H
#define EVTCHN_TEST_H

#include "kitcpu.h"
#include "xen.h"

#define EVT_NCPU 2
#define EVT_NPORTS XEN_EVTCHN_2L_PORTS
#define EVT_SETTLE_MS 10 /* time for a duplicate or a stray event to show up */

extern volatile struct shared_info *evt_sh;
extern int evt_online;
extern long evt_own_domid; /* -1 until map-shared-info */
extern volatile uint32_t evt_got[EVT_NCPU][EVT_NPORTS];
extern volatile uint32_t evt_upcalls[EVT_NCPU], evt_callbacks[EVT_NCPU];
extern volatile xen_ulong_t evt_mine[EVT_NCPU][EVT_NPORTS / XEN_EVTCHN_WORD_BITS];

/* Installs the handlers; min_port: the lowest port a bind may give (the
 * ports below are held); storm: events each side sends in `storm`. Reads
 * callback-events= from the cmdline. */
void evt_setup(evtchn_port_t min_port, uint32_t storm);

/* Port bookkeeping: IF=0 while binding, so an event that arrives with the
 * hypercall's return waits until the port is marked as ours. */
void evt_own(evtchn_port_t p, int cpu);
void evt_disown(evtchn_port_t p);
void evt_zero_counts(evtchn_port_t p);
long evt_bind_ipi_on(uint32_t vcpu, evtchn_port_t *p);
/* alloc_unbound(remote DOMID_SELF) + bind_interdomain to it, both on vCPU
 * 0; *bind_events (if not NULL) gets how many events arrived at the bind,
 * *what the call that failed. */
long evt_loopback(evtchn_port_t *a, evtchn_port_t *b, uint32_t *bind_events, const char **what);
long evt_close_port(evtchn_port_t p);
/* A case's cleanup: unmasks and closes every port it bound (0: none). */
void evt_close_ports(const evtchn_port_t *ports, int n);
long evt_ap_send(long port);
bool evt_own_domid_is(uint16_t dom, const char *what);

/* Cases. evt_map_shared_info_case leaves evt_sh NULL if it failed. */
void evt_map_shared_info_case(void);
void evt_start_case(void);
void evt_callback_case(void);
void evt_upcall_vector_case(void);
void evt_loopback_case(void);
void evt_ipi_case(void);
void evt_masked_case(void);
void evt_storm_case(void);

#endif

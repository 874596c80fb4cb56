/* A small XenStore client over the guest's ring, as a kernel's xenbus
 * driver talks to xenstored: requests into the request ring, replies and
 * watch events out of the response ring, an event channel notification
 * after each side moves. One request at a time; watch events that arrive
 * meanwhile are kept for xs_next_event. Polls (no interrupts needed). */
#ifndef KIT_XENSTORE_H
#define KIT_XENSTORE_H

#include "xen.h"

#define XS_REPLY_MAX (XENSTORE_PAYLOAD_MAX + 1)

struct xs_reply {
	uint32_t type; /* XS_ERROR when the store refused */
	uint32_t len;
	char data[XS_REPLY_MAX]; /* NUL-terminated after len */
};

/* Finds the ring and its port (HVM_PARAM_STORE_PFN / _EVTCHN); 0 or a Xen errno. */
long xs_init(void);
volatile struct xenstore_domain_interface *xs_ring(void);
evtchn_port_t xs_port(void);
/* The port the guest notifies the store on from now (after binding domain 0's port again). */
void xs_set_port(evtchn_port_t p);

/* Sends a request whose payload is `n` NUL-terminated strings (the last
 * one's NUL left out when `raw_last`, as XS_WRITE wants) and waits up to
 * 2 s for its reply. false on timeout. */
bool xs_request(uint32_t type, uint32_t tx, int n, const char *const *parts, bool raw_last, struct xs_reply *r);

/* Convenience: true when the reply is not an error; the error name or the
 * value is in r->data. */
bool xs_read(uint32_t tx, const char *path, struct xs_reply *r);
bool xs_write(uint32_t tx, const char *path, const char *value, struct xs_reply *r);
/* The same for the node `key` under the directory `dir` (a device's, say). */
bool xs_node_read(const char *dir, const char *key, struct xs_reply *r);
bool xs_node_write(const char *dir, const char *key, const char *value, struct xs_reply *r);
/* Reads `path` every 5 ms until it holds `want` (true) or `ms` have passed (false, r holds the last answer). */
bool xs_wait_for(const char *path, const char *want, uint32_t ms, struct xs_reply *r);

/* The next watch event (path and token), waiting up to `ms`; false if none. */
bool xs_next_event(uint32_t ms, char *path, size_t path_size, char *token, size_t token_size);
/* Forgets watch events already received. */
void xs_drop_events(void);

/* The reconnection handshake: connection = RECONNECT, notify, wait for CONNECTED. */
bool xs_reconnect(void);

#endif

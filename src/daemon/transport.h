#pragma once
/*
 * A transport is an ops table, registered once at start-up (each file in
 * transports/ registers its own from a constructor).  A listener URL starts
 * every transport that claims its scheme: "dns://" is claimed by both the
 * UDP and the TCP transport.
 */
#include <stdbool.h>

#include "src/config/config.h"

typedef struct dv_worker dv_worker_t;

typedef struct dv_transport {
	const char *name;
	/* bit (1u << dv_scheme_t) for every listener scheme served */
	unsigned schemes;
	/*
	 * Open this transport's sockets for `url` on worker `w` (own
	 * SO_REUSEPORT sockets, watchers registered on w->loop but not yet
	 * running).  Called on the main thread before the workers start, so
	 * errors are reported before dnsveil says it is ready.  Stores the
	 * listener state in *state.  Returns 0 or a negative error.
	 */
	int (*listen)(dv_worker_t *w, const dv_url_t *url, void **state);
	/* Stop accepting new work (drain); established connections finish
	 * their queries.  Worker thread.  Optional. */
	void (*stop)(dv_worker_t *w, void *state);
	/* After stop: client connections still open (finishing their
	 * queries, saying goodbye); the drain ends when every listener has
	 * none.  Worker thread.  Optional (none). */
	unsigned (*open_conns)(dv_worker_t *w, void *state);
	/* The listener is kept across a configuration reload (its URL is in
	 * the new config too): w->cfg is the new config, `url` this
	 * listener's entry in it.  Take what the listener copied from the
	 * config at creation (its index for the policy's `listener:`, DoH
	 * paths, DoQ settings).  Worker thread.  Optional. */
	void (*update)(dv_worker_t *w, void *state, const dv_url_t *url);
	/* Close everything and free the state.  Worker thread, after its loop
	 * has ended, or main thread if the worker never ran. */
	void (*close)(dv_worker_t *w, void *state);
} dv_transport_t;

void dv_transport_register(const dv_transport_t *t);

/*
 * Bind what a listener on `url` binds for `type` (SOCK_DGRAM or
 * SOCK_STREAM), alone (no SO_REUSEPORT, so a socket of another process
 * is not shared), and let it go: 0, or the error a listener would meet
 * as a negative errno (-EADDRINUSE: somebody holds it; -EACCES: a port
 * below 1024 without CAP_NET_BIND_SERVICE).  A stream socket takes
 * SO_REUSEADDR: it may bind over connections of a previous run in
 * TIME_WAIT, never over one that listens.
 */
int dv_transport_bind_probe(const dv_url_t *url, int type);

/* The n-th registered transport that serves `scheme`, or NULL. */
const dv_transport_t *dv_transport_find(dv_scheme_t scheme, unsigned n);

#define DV_TRANSPORT_REGISTER(var)                                           \
	__attribute__((constructor)) static void register_##var(void)        \
	{                                                                    \
		dv_transport_register(&(var));                               \
	}

#pragma once
/*
 * Stopping: the lameduck drain that SIGTERM (or SIGINT) starts.
 *
 *   1. /readyz fails at once (the caller flips it), and everything keeps
 *      being served for drain.delay-ms, so that load balancers and
 *      Kubernetes take the replica out before it stops answering;
 *   2. the listeners stop: stream listening sockets close (connect() is
 *      refused), UDP sockets are read one last time and then no more, DoQ
 *      refuses new connections; every query in flight is answered (an
 *      upstream's answer, or SERVFAIL at its deadline) and every client
 *      connection says goodbye the way its protocol does (DoT: TLS
 *      close_notify; DoH: HTTP/2 GOAWAY with the last stream id, or
 *      "Connection: close" on HTTP/1.1, then close_notify once its
 *      streams are answered; plain TCP: closed after its last answer;
 *      DoQ: CONNECTION_CLOSE with DOQ_NO_ERROR);
 *   3. when every worker is done, or drain.timeout-ms after step 2, the
 *      workers end; what the timeout cut is logged and counted
 *      (drain_cut_queries, drain_cut_connections) and answered SERVFAIL
 *      as far as a socket still takes it.
 *
 * A second SIGTERM or SIGINT at any point stops at once (counted the same
 * way).  SIGUSR1 still writes the counters; SIGHUP is ignored (logged).
 */
#include <signal.h>

#include "src/config/config.h"
#include "src/daemon/worker.h"

typedef struct {
	dv_worker_t **workers; /* the started ones */
	unsigned n_workers;
	const dv_config_t *cfg;
	/* the signals the main thread takes with sigwaitinfo (blocked) */
	const sigset_t *sigs;
	/* SIGUSR1 while draining */
	void (*stats)(void *arg);
	void *stats_arg;
} dv_stop_t;

/* Drain as above after `sig` (SIGTERM or SIGINT) arrived; returns once
 * every worker thread has been joined.  Main thread. */
void dv_stop_drain(const dv_stop_t *s, int sig);

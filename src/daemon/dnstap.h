#pragma once
/*
 * dnstap (https://dnstap.info): each answer as a CLIENT_QUERY and a
 * CLIENT_RESPONSE message (the client's address and port, the transport,
 * the times and both wire messages), in Frame Streams to a collector's
 * Unix socket (dnstap.socket) or to a file (dnstap.file); with
 * dnstap.resolver, each query to an upstream and each answer read from
 * one as RESOLVER_QUERY and RESOLVER_RESPONSE.
 *
 * libfstrm's I/O thread does the writing: each worker has its own input
 * queue of dnstap.buffer frames; a frame that does not fit (a slow or
 * absent collector) is dropped and counted (dnstap_dropped), so the query
 * path never waits.  Only this file links libfstrm and protobuf-c.
 */
#include <stddef.h>
#include <stdint.h>

#include "src/config/config.h"
#include "src/core/query.h"
#include "src/core/stats.h"
#include "src/upstream/pool.h"

typedef struct dv_dnstap dv_dnstap_t;

/*
 * dnstap for `n_workers` workers as `cfg` says: 0 with *out NULL when
 * neither dnstap.socket nor dnstap.file is set; -errno (and a message in
 * `err`) when the writer cannot be made.  A socket without its collector
 * is not an error: libfstrm connects when it can (every second), and the
 * frames wait in the queues meanwhile (the rest are dropped and counted).
 */
int dv_dnstap_new(const dv_config_t *cfg, unsigned n_workers, dv_dnstap_t **out,
		  char *err, size_t err_len);
/* Start libfstrm's I/O thread (after privileges are dropped: no thread
 * may run before), which owns the writer from then on.  0 for NULL;
 * -ENOMEM when libfstrm cannot start it.  Answers reach it only after. */
int dv_dnstap_start(dv_dnstap_t *d);
/* Worker `worker` (its thread only): queue the two messages of the answer
 * `wire` (`len` bytes) to `q`, given at `now_us` (the core's clock);
 * counts into `st`. */
void dv_dnstap_answered(dv_dnstap_t *d, unsigned worker, const dv_query_t *q,
			const uint8_t *wire, size_t len, uint64_t now_us,
			dv_stats_t *st);
/* Send what is queued (briefly), stop the I/O thread, close.  The workers
 * must have stopped.  NULL is a no-op. */
/* One dnstap RESOLVER_QUERY (an upstream query) or RESOLVER_RESPONSE (an
 * answer read from an upstream), with the upstream as the responder;
 * worker `worker`'s thread only, as above.  Sent with dnstap.resolver. */
void dv_dnstap_resolver(dv_dnstap_t *d, unsigned worker,
			const dv_pool_msg_t *m, dv_stats_t *st);
void dv_dnstap_free(dv_dnstap_t *d);

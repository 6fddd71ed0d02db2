#pragma once
/*
 * TLS for stream transports (DoT, DoH): the dv_stream_io_t functions over
 * src/tls/tls.h, and the per-listener state (TLS context, handshake cap per
 * client address).  A transport builds its io table from these and keeps
 * its own data in the listener's app_ctx.
 */
#include "transports/stream.h"

typedef struct dv_tls_listener dv_tls_listener_t;

/*
 * A budget of debug lines for one listener (so one worker: no lock): at
 * most DV_CONN_LOG_PER_SECOND a second, so that a flood of connections or
 * requests cannot flood the log at debug level.  dv_conn_log_take() says
 * whether one more line may be written now; when it may, *dropped is how
 * many were left out since the last one (say so first).
 */
#define DV_CONN_LOG_PER_SECOND 100
typedef struct {
	uint64_t second;
	unsigned n;
	unsigned dropped;
} dv_conn_log_t;

bool dv_conn_log_take(dv_conn_log_t *b, unsigned *dropped);

/* The io_ctx of a TLS stream listener; `app_ctx` is the transport's. */
dv_tls_listener_t *dv_tls_listener_new(dv_worker_t *w, dv_tls_ctx_t *tls,
					void *app_ctx);
void *dv_tls_listener_app(dv_tls_listener_t *d);
void dv_tls_listener_free(dv_tls_listener_t *d);

int dv_tls_stream_open(dv_stream_listener_t *l, dv_stream_conn_t *c);
int dv_tls_stream_handshake(dv_stream_conn_t *c);
ssize_t dv_tls_stream_read(dv_stream_conn_t *c, void *buf, size_t len);
ssize_t dv_tls_stream_write(dv_stream_conn_t *c, const void *buf, size_t len);
size_t dv_tls_stream_pending(dv_stream_conn_t *c);
int dv_tls_stream_flush(dv_stream_conn_t *c);
size_t dv_tls_stream_unsent(dv_stream_conn_t *c);
void dv_tls_stream_close(dv_stream_conn_t *c);

/* The members of a dv_stream_io_t for a stream over TLS, to put beside
 * its .scheme and .app. */
#define DV_TLS_STREAM_IO_OPS                                                 \
	.encrypted = true, .open = dv_tls_stream_open,                       \
	.handshake = dv_tls_stream_handshake, .read = dv_tls_stream_read,    \
	.write = dv_tls_stream_write, .pending = dv_tls_stream_pending,      \
	.flush = dv_tls_stream_flush, .unsent = dv_tls_stream_unsent,        \
	.close = dv_tls_stream_close

/* Open a TLS stream listener (its io_ctx a new dv_tls_listener_t carrying
 * `app_ctx`); DV_ECONFIG when `tls` is NULL.  Undone on failure. */
int dv_tls_stream_listen(dv_worker_t *w, const dv_url_t *url,
			 const dv_stream_io_t *io, dv_tls_ctx_t *tls,
			 void *app_ctx, void **state);
/* Close it and free the TLS listener state; returns its app_ctx for the
 * caller to free. */
void *dv_tls_stream_close_listener(dv_worker_t *w, void *state);

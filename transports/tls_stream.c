/*
 * TLS under the stream machinery, shared by DoT and DoH: wolfSSL through
 * the src/tls/tls.h seam, the SNI name recorded on the connection, and the
 * worker's handshake admission (src/core/hs_limit.h): per-address caps while
 * the worker is under handshake pressure, so a flood from one address
 * cannot starve other new clients while a crowd behind one NAT address is
 * still served.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/core.h"
#include "src/core/errors.h"
#include "src/core/hs_limit.h"
#include "src/core/log.h"
#include "src/tls/tls.h"
#include "src/daemon/transport.h"
#include "src/daemon/worker.h"
#include "transports/tls_stream.h"

struct dv_tls_listener {
	dv_tls_ctx_t *tls;
	void *app_ctx;
	dv_conn_log_t log; /* the handshake debug lines */
};

bool dv_conn_log_take(dv_conn_log_t *b, unsigned *dropped)
{
	uint64_t second = dv_now_ms() / 1000;
	if (second != b->second) {
		b->second = second;
		b->n = 0;
	}
	if (b->n >= DV_CONN_LOG_PER_SECOND) {
		b->dropped++;
		return false;
	}
	b->n++;
	*dropped = b->dropped;
	b->dropped = 0;
	return true;
}

/*
 * One debug line per completed handshake: who, the SNI name the client
 * sent ("-" for none: an IP-literal client), the ALPN protocol, whether
 * the session was resumed and the client ID of a verified client
 * certificate ("cert ID").  The SNI and that ID are what the core's
 * identity stage reads (q->sni, q->cert_id), so this is where an operator
 * (and a test) sees them.
 */
static void log_handshake(dv_stream_conn_t *c, bool resumed)
{
	dv_tls_listener_t *d = c->l->io_ctx;
	unsigned dropped;
	if (dv_log_level < DV_LOG_DEBUG || !dv_conn_log_take(&d->log, &dropped))
		return;
	char peer[64];
	dv_addr_format((const struct sockaddr *)&c->peer, peer, sizeof(peer));
	const char *alpn = dv_tls_alpn(c->io_state);
	if (dropped)
		dv_log_debug("tls: worker %u: %u more handshakes were not "
			     "logged",
			     c->l->w->index, dropped);
	dv_log_debug("tls: worker %u: connection from %s: sni %s, alpn "
		     "%s%s%s%s",
		     c->l->w->index, peer, c->sni[0] ? c->sni : "-",
		     alpn ? alpn : "-", resumed ? ", resumed" : "",
		     c->cert_id ? ", cert " : "",
		     c->cert_id ? c->cert_id : "");
}

/*
 * Admission (src/core/hs_limit.h, the worker's): a connection is admitted at
 * accept and is a handshake in progress until its handshake completes, or
 * until it is closed while still in SC_HANDSHAKE (failure, timeout, the
 * listener going away: stream.c calls close before it marks the
 * connection closed).
 */
int dv_tls_stream_open(dv_stream_listener_t *l, dv_stream_conn_t *c)
{
	dv_worker_t *w = l->w;
	dv_tls_listener_t *d = l->io_ctx;
	const struct sockaddr *peer = (const struct sockaddr *)&c->peer;
	if (dv_hs_limit_admit(w->hs_limit, peer, dv_now_ms()) < 0) {
		DV_STAT_INC(&w->stats, tls_rate_limited);
		return DV_ELIMIT;
	}
	c->io_state = dv_tls_new(d->tls, c->fd);
	if (!c->io_state) {
		dv_hs_limit_end(w->hs_limit, peer, false, dv_now_ms());
		return -ENOMEM;
	}
	return 0;
}

int dv_tls_stream_handshake(dv_stream_conn_t *c)
{
	dv_stats_t *st = &c->l->w->stats;
	int ret = dv_tls_handshake(c->io_state);
	if (ret == DV_TLS_WANT_READ || ret == DV_TLS_WANT_WRITE)
		return ret;
	if (ret < 0) {
		DV_STAT_INC(st, tls_failed);
		dv_log_debug("TLS handshake failed: %s",
			     dv_tls_error(c->io_state, ret));
		return ret;
	}
	DV_STAT_INC(st, tls_handshakes);
	bool resumed = dv_tls_resumed(c->io_state);
	if (resumed)
		DV_STAT_INC(st, tls_resumed);
	dv_hs_limit_end(c->l->w->hs_limit, (const struct sockaddr *)&c->peer,
			resumed, dv_now_ms());
	const char *sni = dv_tls_sni(c->io_state);
	if (sni)
		snprintf(c->sni, sizeof(c->sni), "%s", sni);
	c->cert_id = dv_tls_cert_id(c->io_state); /* lives with io_state */
	log_handshake(c, resumed);
	return 0;
}

ssize_t dv_tls_stream_read(dv_stream_conn_t *c, void *buf, size_t len)
{
	ssize_t n = dv_tls_read(c->io_state, buf, len);
	c->rx_drained = dv_tls_drained(c->io_state);
	return n;
}

int dv_tls_stream_flush(dv_stream_conn_t *c)
{
	return dv_tls_flush(c->io_state);
}

size_t dv_tls_stream_unsent(dv_stream_conn_t *c)
{
	return dv_tls_unsent(c->io_state);
}

ssize_t dv_tls_stream_write(dv_stream_conn_t *c, const void *buf, size_t len)
{
	return dv_tls_write(c->io_state, buf, len);
}

size_t dv_tls_stream_pending(dv_stream_conn_t *c)
{
	return dv_tls_pending(c->io_state);
}

void dv_tls_stream_close(dv_stream_conn_t *c)
{
	if (!c->io_state)
		return;
	if (c->state == SC_HANDSHAKE)
		dv_hs_limit_end(c->l->w->hs_limit,
				(const struct sockaddr *)&c->peer, false,
				dv_now_ms());
	if (c->state == SC_OPEN && !c->aborted)
		dv_tls_shutdown(c->io_state);
	dv_tls_free(c->io_state);
	c->io_state = NULL;
	c->cert_id = NULL;
}

dv_tls_listener_t *dv_tls_listener_new(dv_worker_t *w, dv_tls_ctx_t *tls,
					void *app_ctx)
{
	dv_tls_listener_t *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	(void)w;
	d->tls = tls;
	d->app_ctx = app_ctx;
	return d;
}

void *dv_tls_listener_app(dv_tls_listener_t *d)
{
	return d->app_ctx;
}

void dv_tls_listener_free(dv_tls_listener_t *d)
{
	free(d);
}

int dv_tls_stream_listen(dv_worker_t *w, const dv_url_t *url,
			 const dv_stream_io_t *io, dv_tls_ctx_t *tls,
			 void *app_ctx, void **state)
{
	if (!tls)
		return DV_ECONFIG;
	dv_tls_listener_t *d = dv_tls_listener_new(w, tls, app_ctx);
	if (!d)
		return -ENOMEM;
	int ret = dv_stream_listen(w, url, io, d, state);
	if (ret < 0)
		dv_tls_listener_free(d);
	return ret;
}

void *dv_tls_stream_close_listener(dv_worker_t *w, void *state)
{
	dv_tls_listener_t *d = dv_stream_io_ctx(state);
	void *app_ctx = d->app_ctx;
	dv_stream_close(w, state);
	dv_tls_listener_free(d);
	return app_ctx;
}

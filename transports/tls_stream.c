/*
 * TLS under the stream machinery, shared by DoT and DoH: wolfSSL through
 * the src/tls.h seam, the SNI name recorded on the connection, and a cap on
 * new handshakes per client address per second so a handshake flood from
 * one address cannot starve established clients.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core.h"
#include "src/errors.h"
#include "src/log.h"
#include "src/tls.h"
#include "src/transport.h"
#include "src/worker.h"
#include "transports/tls_stream.h"

/*
 * Per-worker handshake budget per client address: a direct-mapped table of
 * (address hash, second, count).  Bounded memory; two addresses that share
 * a slot share a budget only while they collide within the same second.
 */
#define RATE_SLOTS 4096

typedef struct {
	uint64_t key;
	uint32_t second;
	uint32_t count;
} rate_slot_t;

struct dv_tls_listener {
	dv_tls_ctx_t *tls;
	unsigned per_worker; /* handshakes per address per second, 0 = any */
	uint64_t seed;
	rate_slot_t slots[RATE_SLOTS];
	void *app_ctx;
};

static uint64_t addr_key(const struct sockaddr_storage *ss, uint64_t seed)
{
	const uint8_t *p;
	size_t n;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;
		p = s6->sin6_addr.s6_addr;
		n = 16;
	} else {
		const struct sockaddr_in *s4 = (const void *)ss;
		p = (const uint8_t *)&s4->sin_addr;
		n = 4;
	}
	uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 31);
}

static bool rate_allow(dv_tls_listener_t *d, const struct sockaddr_storage *ss)
{
	if (!d->per_worker)
		return true;
	uint64_t key = addr_key(ss, d->seed);
	rate_slot_t *s = &d->slots[key % RATE_SLOTS];
	uint32_t now = dv_now_s();
	if (s->key != key || s->second != now) {
		s->key = key;
		s->second = now;
		s->count = 0;
	}
	return ++s->count <= d->per_worker;
}

int dv_tls_stream_open(dv_stream_listener_t *l, dv_stream_conn_t *c)
{
	dv_tls_listener_t *d = l->io_ctx;
	if (!rate_allow(d, &c->peer)) {
		DV_STAT_INC(&l->w->stats, tls_rate_limited);
		return DV_ELIMIT;
	}
	c->io_state = dv_tls_new(d->tls, c->fd);
	return c->io_state ? 0 : -ENOMEM;
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
	if (dv_tls_resumed(c->io_state))
		DV_STAT_INC(st, tls_resumed);
	const char *sni = dv_tls_sni(c->io_state);
	if (sni)
		snprintf(c->sni, sizeof(c->sni), "%s", sni);
	return 0;
}

ssize_t dv_tls_stream_read(dv_stream_conn_t *c, void *buf, size_t len)
{
	return dv_tls_read(c->io_state, buf, len);
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
	if (c->state == SC_OPEN && !c->aborted)
		dv_tls_shutdown(c->io_state);
	dv_tls_free(c->io_state);
	c->io_state = NULL;
}

dv_tls_listener_t *dv_tls_listener_new(dv_worker_t *w, dv_tls_ctx_t *tls,
					void *app_ctx)
{
	dv_tls_listener_t *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->tls = tls;
	d->app_ctx = app_ctx;
	unsigned cap = w->cfg->tls_handshakes_per_ip;
	unsigned n = w->shared->n_workers ? w->shared->n_workers : 1;
	d->per_worker = cap ? (cap + n - 1) / n : 0;
	d->seed = (uint64_t)(uintptr_t)d ^ ((uint64_t)dv_now_ms() << 17);
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

/*
 * DNS over HTTPS (RFC 8484): the DoH engine (src/proto/doh_engine.c: HTTP/2 through
 * nghttp2, HTTP/1.1 through http-parser) as the application protocol of a
 * stream connection.  https:// listeners run it over TLS (ALPN "h2" or
 * "http/1.1"); http:// listeners run it in the clear for use behind a
 * TLS-terminating proxy, telling HTTP/2 with prior knowledge from HTTP/1.1
 * by the client preface.
 *
 * Every DoH listener serves its URL's path and the doh.paths; the one a
 * query came in on is recorded on it (q->path).  X-Forwarded-For /
 * Forwarded name the client only on connections from doh.trusted-proxies.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/proto/doh.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/core/netmask.h"
#include "src/core/query.h"
#include "src/daemon/transport.h"
#include "src/daemon/worker.h"
#include "transports/tls_stream.h"

typedef struct {
	/* The URL's own path, then doh.paths (without a repeat of the
	 * first): the listener's own copies, since the engine reports a
	 * query's path (q->path) by pointer into them. */
	char path[1 + DV_DOH_MAX_PATHS][DV_URL_PATH_MAX];
	const char *paths[1 + DV_DOH_MAX_PATHS];
	unsigned n_paths;
	dv_conn_log_t log; /* the request debug lines */
} doh_listener_t;

typedef struct {
	dv_stream_conn_t *c;
	doh_listener_t *dl;
	dv_doh_t *engine; /* NULL until the protocol is known (http://) */
	bool trusted;     /* the peer is one of doh.trusted-proxies */
} doh_conn_t;

static const dv_stream_io_t https_io, http_io;

/* RFC 8484 5.1: the HTTP freshness lifetime is the answer's smallest TTL
 * (negative answers: the SOA's), which the core hands back with the answer
 * (q->answer_ttl, asked for with q->want_ttl): the answer is not parsed
 * again here. */
static void doh_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	dv_stream_conn_t *c = q->conn;
	if (dv_stream_reply_begin(c)) {
		doh_conn_t *dc = c->app_state;
		if (dc && dc->engine)
			(void)dv_doh_answer(dc->engine, (uint32_t)q->conn_tag,
					    wire, len, q->answer_ttl);
	}
	dv_stream_reply_end(c);
}

/* A proxy-reported client address becomes the query's peer. */
static void set_forwarded(dv_query_t *q, const char *addr)
{
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1) {
		memcpy(&q->peer, &s4, sizeof(s4));
		q->peer_len = sizeof(s4);
	} else if (inet_pton(AF_INET6, addr, &s6.sin6_addr) == 1) {
		memcpy(&q->peer, &s6, sizeof(s6));
		q->peer_len = sizeof(s6);
	}
}

/*
 * One debug line per request: who sent it, the path it came in on (what
 * the policy reads: q->path, and the client ID after it, q->client_id) and
 * the client it counts for: the address a trusted proxy forwarded, or the
 * peer's own.
 */
static void log_request(doh_conn_t *dc, const char *path,
			const char *client_id, const char *forwarded_for)
{
	dv_stream_conn_t *c = dc->c;
	unsigned dropped;
	if (dv_log_level < DV_LOG_DEBUG ||
	    !dv_conn_log_take(&dc->dl->log, &dropped))
		return;
	char peer[64], client[INET6_ADDRSTRLEN];
	const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
	dv_addr_format(sa, peer, sizeof(peer));
	if (forwarded_for)
		snprintf(client, sizeof(client), "%s", forwarded_for);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
			  client, sizeof(client));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  client, sizeof(client));
	if (dropped)
		dv_log_debug("doh: worker %u: %u more requests were not logged",
			     c->l->w->index, dropped);
	dv_log_debug("doh: worker %u: request from %s: path %s%s%s, client %s%s",
		     c->l->w->index, peer, path, client_id ? "/" : "",
		     client_id ? client_id : "", client,
		     forwarded_for ? " (forwarded)" : "");
}

static void on_query(void *user, uint32_t stream, const char *path,
		     const char *client_id, const uint8_t *msg, size_t len,
		     const char *forwarded_for)
{
	doh_conn_t *dc = user;
	dv_stream_progress(dc->c);
	log_request(dc, path, client_id, forwarded_for);
	dv_query_t *q = dv_stream_query(dc->c, msg, len, doh_reply);
	if (!q) {
		(void)dv_doh_error(dc->engine, stream, 503);
		return;
	}
	q->conn_tag = stream;
	q->want_ttl = true;
	q->path = path;
	q->client_id = client_id; /* the engine's, valid during the submit */
	/* the ID and a proxy's client may change from request to request */
	q->ident_memo = NULL;
	if (forwarded_for)
		set_forwarded(q, forwarded_for);
	if (dv_stream_submit(dc->c, q) < 0)
		(void)dv_doh_error(dc->engine, stream, 400);
}

static int engine_start(doh_conn_t *dc, dv_doh_proto_t proto)
{
	const dv_config_t *cfg = dc->c->l->w->cfg;
	dv_doh_opts_t opts = {
		.paths = dc->dl->paths,
		.n_paths = dc->dl->n_paths,
		.max_streams = cfg->doh_max_streams,
		.max_header_bytes = cfg->doh_max_header_bytes,
		.trust_forwarded = dc->trusted,
	};
	static const dv_doh_cb_t cb = {.query = on_query};
	dc->engine = dv_doh_new(proto, &opts, &cb, dc);
	return dc->engine ? 0 : -ENOMEM;
}

static int app_open(dv_stream_conn_t *c)
{
	doh_conn_t *dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -ENOMEM;
	dc->c = c;
	c->app_state = dc;
	const dv_config_t *cfg = c->l->w->cfg;
	dc->trusted = dv_netmask_match_any(cfg->doh_trusted_proxies,
					   cfg->n_doh_trusted_proxies,
					   (const struct sockaddr *)&c->peer);
	if (c->l->io == &https_io) {
		dc->dl = dv_tls_listener_app(c->l->io_ctx);
		const char *alpn = dv_tls_alpn(c->io_state);
		bool h2 = alpn && strcmp(alpn, "h2") == 0;
		return engine_start(dc, h2 ? DV_DOH_H2 : DV_DOH_HTTP1);
	}
	dc->dl = c->l->io_ctx;
	return 0; /* h2c or HTTP/1.1: decided by the first bytes */
}

static ssize_t app_input(dv_stream_conn_t *c, const uint8_t *data,
			 size_t len)
{
	doh_conn_t *dc = c->app_state;
	if (!dc->engine) {
		if (len < 3)
			return 0;
		/* the HTTP/2 client preface starts "PRI * HTTP/2.0" */
		int ret = engine_start(dc, memcmp(data, "PRI", 3) == 0
						   ? DV_DOH_H2
						   : DV_DOH_HTTP1);
		if (ret < 0)
			return ret;
	}
	return dv_doh_input(dc->engine, data, len);
}

static ssize_t app_output(dv_stream_conn_t *c, uint8_t *buf, size_t cap)
{
	doh_conn_t *dc = c->app_state;
	return dc->engine ? dv_doh_output(dc->engine, buf, cap) : 0;
}

static bool app_want_input(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	return !dc->engine || dv_doh_want_input(dc->engine);
}

/* What the engine holds counts in the worker's output budget; while that
 * is over, a connection whose engine can send more takes no more input. */
static size_t app_unsent(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	return dc->engine ? dv_doh_unsent(dc->engine) : 0;
}

static bool app_output_ready(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	return dc->engine && dv_doh_output_ready(dc->engine);
}

static bool app_want_close(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	return dc->engine && dv_doh_want_close(dc->engine);
}

static bool app_receiving(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	return dc->engine && dv_doh_receiving(dc->engine);
}

static void app_drain(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	if (dc->engine)
		dv_doh_drain(dc->engine);
}

static void app_close(dv_stream_conn_t *c)
{
	doh_conn_t *dc = c->app_state;
	dv_doh_free(dc->engine);
	free(dc);
	c->app_state = NULL;
}

static const dv_stream_app_t doh_app = {
	.open = app_open,
	.input = app_input,
	.output = app_output,
	.want_input = app_want_input,
	.want_close = app_want_close,
	.drain = app_drain,
	.close = app_close,
	.receiving = app_receiving,
	.unsent = app_unsent,
	.output_ready = app_output_ready,
	/* an HTTP error may end the connection while the request still comes */
	.linger = true,
};

static const dv_stream_io_t https_io = {
	.scheme = DV_SCHEME_HTTPS,
	.app = &doh_app,
	DV_TLS_STREAM_IO_OPS,
};

static const dv_stream_io_t http_io = {
	.scheme = DV_SCHEME_HTTP,
	.app = &doh_app,
	.read = dv_stream_plain_read,
	.write = dv_stream_plain_write,
};

/* The URL's path and doh.paths; again on a reload (connections read
 * them through dl->paths at each request). */
static void listener_paths(doh_listener_t *dl, const dv_config_t *cfg,
			   const dv_url_t *url)
{
	dl->n_paths = 0;
	snprintf(dl->path[0], sizeof(dl->path[0]), "%s",
		 url->path[0] ? url->path : "/dns-query");
	dl->paths[dl->n_paths++] = dl->path[0];
	for (unsigned i = 0;
	     i < cfg->n_doh_paths && dl->n_paths < 1 + DV_DOH_MAX_PATHS; i++) {
		const char *p = cfg->doh_paths[i];
		if (strcmp(p, dl->path[0]) == 0)
			continue; /* the URL's own: once is enough */
		snprintf(dl->path[dl->n_paths], sizeof(dl->path[0]), "%s", p);
		dl->paths[dl->n_paths] = dl->path[dl->n_paths];
		dl->n_paths++;
	}
}

static doh_listener_t *listener_new(const dv_config_t *cfg,
				    const dv_url_t *url)
{
	doh_listener_t *dl = calloc(1, sizeof(*dl));
	if (dl)
		listener_paths(dl, cfg, url);
	return dl;
}

static int https_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	if (!w->shared->tls_doh)
		return DV_ECONFIG;
	doh_listener_t *dl = listener_new(w->cfg, url);
	if (!dl)
		return -ENOMEM;
	int ret = dv_tls_stream_listen(w, url, &https_io, w->shared->tls_doh,
				       dl, state);
	if (ret < 0)
		free(dl);
	return ret;
}

static void https_close(dv_worker_t *w, void *state)
{
	free(dv_tls_stream_close_listener(w, state));
}

static int http_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	doh_listener_t *dl = listener_new(w->cfg, url);
	if (!dl)
		return -ENOMEM;
	int ret = dv_stream_listen(w, url, &http_io, dl, state);
	if (ret < 0)
		free(dl);
	return ret;
}

static void http_close(dv_worker_t *w, void *state)
{
	doh_listener_t *dl = dv_stream_io_ctx(state);
	dv_stream_close(w, state);
	free(dl);
}

static void https_update(dv_worker_t *w, void *state, const dv_url_t *url)
{
	dv_stream_update(w, state, url);
	dv_tls_listener_t *d = dv_stream_io_ctx(state);
	listener_paths(dv_tls_listener_app(d), w->cfg, url);
}

static void http_update(dv_worker_t *w, void *state, const dv_url_t *url)
{
	dv_stream_update(w, state, url);
	listener_paths(dv_stream_io_ctx(state), w->cfg, url);
}

static const dv_transport_t doh_tls = {
	.name = "doh",
	.schemes = 1u << DV_SCHEME_HTTPS,
	.listen = https_listen,
	.stop = dv_stream_stop,
	.open_conns = dv_stream_open_conns,
	.update = https_update,
	.close = https_close,
};
DV_TRANSPORT_REGISTER(doh_tls)

static const dv_transport_t doh_plain = {
	.name = "doh-plain",
	.schemes = 1u << DV_SCHEME_HTTP,
	.listen = http_listen,
	.stop = dv_stream_stop,
	.open_conns = dv_stream_open_conns,
	.update = http_update,
	.close = http_close,
};
DV_TRANSPORT_REGISTER(doh_plain)

/*
 * https:// upstreams (DoH, RFC 8484, over HTTP/2): the TLS connections of
 * conn_stream.c (ALPN h2 required) with HTTP/2 as their framing.  The
 * engine of src/proto/doh_client.c turns each query into a stream and
 * each answer back into a message; the slots keep their ids (the answer
 * gets its slot's id before the usual matching) and this module
 * remembers each slot's stream, which is reset when the attempt is given
 * up.
 *
 * The engine is created with the socket, so queries submitted while
 * connecting queue inside it; its output is rendered into the output
 * buffer whenever that is empty, and what the connection reads goes to
 * it whole.  Answers and failures come back through the two callbacks
 * below, by slot id (the tag of each request).  A close while the engine
 * is being driven (h2_in) only detaches it; the driver frees it once the
 * engine has returned.
 */
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/proto/doh_client.h"
#include "src/tls/tls.h"
#include "src/upstream/conn_stream.h"

#define H2_OUT_CAP 16384

typedef struct {
	dv_ustream_t sc; /* first */
	dv_doh_client_t *h2;    /* from connect on */
	dv_doh_client_t *h2_in; /* the engine being driven: a close inside
				 * it leaves the free to the caller */
	int32_t *stream; /* per slot: its HTTP/2 stream, 0 when none */
} h2_conn_t;

static h2_conn_t *h2_of(dv_uconn_t *c)
{
	return (h2_conn_t *)c;
}

/* A request of slot `i` failed: fail its attempt, or send it again on
 * another connection when the server did not process it (GOAWAY). */
static void h2_slot_failed(h2_conn_t *hc, uint32_t i, bool retry,
			   const char *why)
{
	dv_uconn_t *c = &hc->sc.c;
	dv_server_t *srv = c->server;
	hc->stream[i] = 0; /* ended: nothing to reset */
	if (c->slots[i].att)
		dv_log_debug("worker %u: upstream %s: %s", srv->pool->index,
			     srv->url.text, why);
	if (retry)
		dv_uslot_retry(c, i);
	else
		dv_uslot_fail(c, i, false);
}

/* The slot request `tag` belongs to, if it is still waiting. */
static uslot_t *h2_slot(h2_conn_t *hc, uint32_t tag)
{
	dv_uconn_t *c = &hc->sc.c;
	uslot_t *s = &c->slots[tag & c->mask];
	if (hc->h2 != hc->h2_in || !s->busy || s->id != tag)
		return NULL; /* closed meanwhile, or given up */
	return s;
}

static void h2_answer_cb(void *user, uint32_t tag, uint8_t *msg, size_t len)
{
	h2_conn_t *hc = user;
	dv_uconn_t *c = &hc->sc.c;
	uslot_t *s = h2_slot(hc, tag);
	if (!s)
		return;
	uint32_t i = tag & c->mask;
	/* the stream says which query this answers; the question must
	 * still be the one asked */
	if (!dv_uslot_asks(c, i, msg, len)) {
		h2_slot_failed(hc, i, false, "answer to another question");
		return;
	}
	hc->stream[i] = 0;
	/* the id on the wire is 0 (RFC 8484): give the answer its slot's,
	 * and match it like any other */
	dv_put16(msg, (uint16_t)tag);
	dv_uconn_answer(c, msg, len);
}

static void h2_failed_cb(void *user, uint32_t tag, bool retry,
			 const char *why)
{
	h2_conn_t *hc = user;
	if (h2_slot(hc, tag))
		h2_slot_failed(hc, tag & hc->sc.c.mask, retry, why);
}

static const dv_doh_client_cb_t h2_callbacks = {
	.answer = h2_answer_cb,
	.failed = h2_failed_cb,
};

static int h2_start(dv_ustream_t *sc)
{
	h2_conn_t *hc = (h2_conn_t *)sc;
	dv_server_t *s = sc->c.server;
	if (!sc->out) {
		sc->out = malloc(H2_OUT_CAP);
		if (!sc->out)
			return -ENOMEM;
		sc->out_cap = H2_OUT_CAP;
	}
	hc->h2 = dv_doh_client_new(s->url.name, s->url.path, &h2_callbacks,
				   hc);
	return hc->h2 ? 0 : -ENOMEM;
}

/* Detach the engine at close (its requests fail with the slots). */
static void h2_stop(dv_ustream_t *sc)
{
	h2_conn_t *hc = (h2_conn_t *)sc;
	if (hc->h2 && hc->h2 != hc->h2_in)
		dv_doh_client_free(hc->h2);
	hc->h2 = NULL;
}

/* After driving engine `h2`: true (and `h2` freed) if the connection was
 * closed meanwhile. */
static bool h2_closed_inside(h2_conn_t *hc, dv_doh_client_t *h2)
{
	hc->h2_in = NULL;
	if (hc->h2 == h2)
		return false;
	dv_doh_client_free(h2);
	return true;
}

static bool h2_fill(dv_ustream_t *sc)
{
	h2_conn_t *hc = (h2_conn_t *)sc;
	dv_uconn_t *c = &sc->c;
	dv_doh_client_t *h2 = hc->h2;
	if (!h2 || c->state != UC_OPEN)
		return false;
	sc->out_off = sc->out_len = 0;
	hc->h2_in = h2;
	ssize_t n = dv_doh_client_output(h2, sc->out, sc->out_cap);
	if (h2_closed_inside(hc, h2))
		return false;
	if (n < 0) {
		dv_uconn_close(c, true, "HTTP/2 connection error");
		return false;
	}
	if (n == 0 && dv_doh_client_want_close(h2)) {
		bool broken = dv_doh_client_broken(h2);
		dv_uconn_close(c, c->busy > 0 || broken,
			       broken ? "HTTP/2 connection error"
				      : "HTTP/2 connection ended (GOAWAY)");
		return false;
	}
	sc->out_len = (size_t)n;
	return n > 0;
}

/* Hand what was read (sc->in) to the engine, which delivers the answers.
 * False when the connection is closed. */
static bool h2_input(dv_ustream_t *sc)
{
	h2_conn_t *hc = (h2_conn_t *)sc;
	dv_uconn_t *c = &sc->c;
	dv_doh_client_t *h2 = hc->h2;
	hc->h2_in = h2;
	ssize_t n = dv_doh_client_input(h2, sc->in, sc->in_len);
	sc->in_len = 0;
	if (h2_closed_inside(hc, h2))
		return false;
	if (n < 0) {
		dv_uconn_close(c, true,
			       "HTTP/2 protocol error from the upstream");
		return false;
	}
	if (dv_doh_client_want_write(h2))
		dv_ustream_flush(sc); /* SETTINGS ACK, WINDOW_UPDATE, PING ACK */
	else if (dv_doh_client_want_close(h2))
		dv_uconn_close(c, c->busy > 0,
			       "HTTP/2 connection ended (GOAWAY)");
	return c->state == UC_OPEN;
}

/* TLS is up: the server must have chosen h2.  False (and the connection
 * closed) if not. */
static bool h2_alpn_ok(dv_ustream_t *sc)
{
	const char *alpn = dv_tls_alpn(sc->tls);
	if (alpn && strcmp(alpn, "h2") == 0)
		return true;
	dv_server_t *s = sc->c.server;
	if (s->health.state != DV_HEALTH_DOWN)
		dv_log_warn("worker %u: upstream %s: the server did not accept "
			    "HTTP/2 (ALPN h2)",
			    s->pool->index, s->url.text);
	dv_uconn_close(&sc->c, true, "no ALPN h2");
	return false;
}

static const dv_ustream_framing_t h2_framing = {
	.alpn = "h2",
	.start = h2_start,
	.stop = h2_stop,
	.opened = h2_alpn_ok,
	.fill = h2_fill,
	.input = h2_input,
};

/* Give up the request of slot `i` (the attempt ended elsewhere). */
static void h2_release(dv_uconn_t *c, uint32_t i)
{
	h2_conn_t *hc = h2_of(c);
	int32_t stream = hc->stream[i];
	if (!stream)
		return;
	hc->stream[i] = 0;
	if (!hc->h2)
		return;
	dv_doh_client_cancel(hc->h2, stream);
	if (c->state == UC_OPEN && !hc->h2_in)
		ev_io_start(c->server->pool->loop, &c->wio);
}

/* The connection takes no new queries (GOAWAY received). */
static bool h2_draining(dv_uconn_t *c)
{
	h2_conn_t *hc = h2_of(c);
	return hc->h2 && dv_doh_client_draining(hc->h2);
}

/* Worth opening another connection when the streams are at the server's
 * limit. */
static bool h2_crowded(dv_uconn_t *c)
{
	h2_conn_t *hc = h2_of(c);
	if (!hc->h2)
		return c->busy > 0;
	return c->busy >= dv_doh_client_max_streams(hc->h2);
}

/* Queue `msg` for slot `slot` as an HTTP/2 request. */
static int h2_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
		     size_t len)
{
	h2_conn_t *hc = h2_of(c);
	int32_t stream = dv_doh_client_submit(hc->h2, c->slots[slot].id, msg,
					      len);
	if (stream < 0)
		return stream;
	hc->stream[slot] = stream;
	dv_ustream_queued(&hc->sc);
	return 0;
}

static void h2_destroy(dv_uconn_t *c)
{
	h2_conn_t *hc = h2_of(c);
	dv_doh_client_free(hc->h2);
	hc->h2 = NULL;
	free(hc->stream);
	dv_ustream_destroy(c); /* frees hc */
}

static dv_uconn_t *h2_create(dv_server_t *s, unsigned max);

const dv_uconn_ops_t dv_uconn_h2_ops = {
	.warm = 1, /* one connection carries many streams: the others open
		    * when its streams are full */
	.pool_init = dv_ustream_tls_pool_init,
	.pool_deinit = dv_ustream_tls_pool_deinit,
	.server_deinit = dv_ustream_tls_server_deinit,
	.create = h2_create,
	.destroy = h2_destroy,
	.connect = dv_ustream_connect,
	.submit = h2_submit,
	.release = h2_release,
	.stop = dv_ustream_stop,
	.crowded = h2_crowded,
	.draining = h2_draining,
	.writing = dv_ustream_writing,
};

static dv_uconn_t *h2_create(dv_server_t *s, unsigned max)
{
	h2_conn_t *hc = calloc(1, sizeof(*hc));
	if (!hc)
		return NULL;
	if (dv_ustream_init(&hc->sc, &dv_uconn_h2_ops, s, max, true,
			    &h2_framing) < 0 ||
	    !(hc->stream = calloc(hc->sc.c.n_slots, sizeof(*hc->stream)))) {
		dv_uconn_deinit(&hc->sc.c);
		free(hc->sc.in);
		free(hc);
		return NULL;
	}
	return &hc->sc.c;
}

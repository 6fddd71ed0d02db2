/*
 * DNS over HTTPS (RFC 8484): the protocol engine (see doh.h).
 *
 * Design notes.
 *
 * One struct per connection (struct dv_doh, doh_engine.h), both protocols in
 * it.  The parts:
 *   doh_engine.c   this file: the engine object and the public functions
 *   doh_request.c  the request checks (method, path, content-type, dns
 *                  parameter, body size, the DNS header, the forwarded
 *                  address): one piece of code, fed by nghttp2's header
 *                  callbacks (HTTP/2, one req_t per stream) or by
 *                  http-parser's (HTTP/1.1, one req_t for the request being
 *                  parsed: requests arrive one after the other)
 *   doh_h2.c       HTTP/2 on nghttp2's server session
 *   doh_h1.c       HTTP/1.1 on http-parser, behind a strict head scanner
 *   doh_pool.c     the connection's pool of freed blocks: nghttp2's
 *                  memory, the HTTP/2 streams, the answer copies
 * Each protocol file has its own design notes.
 *
 * The protocol is chosen once, in dv_doh_new(), as an ops table
 * (dv_doh_ops_t): a public function does here what does not depend on the
 * protocol (the sticky error, the drain flag, the size of an answer, the
 * counters) and hands the rest to the table, so no function here branches
 * on the protocol.
 *
 * Responses carry no Date header: the engine has no clock, and a DoH
 * client has no use for it (RFC 8484 caching works on max-age).
 */
#include "src/proto/doh.h"

#include <stdlib.h>

#include "src/core/errors.h"
#include "src/proto/doh_engine.h"

dv_doh_t *dv_doh_new(dv_doh_proto_t proto, const dv_doh_opts_t *opts,
		     const dv_doh_cb_t *cb, void *user)
{
	if (!opts || !opts->paths || opts->n_paths == 0 || !cb || !cb->query)
		return NULL;
	if (proto != DV_DOH_H2 && proto != DV_DOH_HTTP1)
		return NULL;
	dv_doh_t *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->ops = proto == DV_DOH_H2 ? &dv_doh_h2_ops : &dv_doh_h1_ops;
	d->opts = *opts;
	d->cb = *cb;
	d->user = user;
	if (d->opts.max_streams == 0)
		d->opts.max_streams = DV_DOH_DEFAULT_MAX_STREAMS;
	if (d->opts.max_header_bytes == 0)
		d->opts.max_header_bytes = DV_DOH_DEFAULT_MAX_HEADER_BYTES;
	if (d->opts.max_header_bytes > UINT16_MAX) /* http_parser_url offsets */
		d->opts.max_header_bytes = UINT16_MAX;
	if (d->ops->init(d) < 0) {
		free(d);
		return NULL;
	}
	return d;
}

void dv_doh_free(dv_doh_t *d)
{
	if (!d)
		return;
	d->ops->deinit(d);
	free(d);
}

ssize_t dv_doh_input(dv_doh_t *d, const uint8_t *data, size_t len)
{
	if (len == 0)
		return d->err;
	return d->ops->input(d, data, len);
}

/* Answer a waiting query: with a DNS message (status 200) or an error. */
static int answer(dv_doh_t *d, uint32_t stream, unsigned status,
		  const uint8_t *msg, size_t len, uint32_t max_age)
{
	int ret = 0;
	if (status == 200 && len > DV_DOH_MAX_BODY) {
		status = 500;
		ret = -EINVAL;
	}
	int rv = d->ops->answer(d, stream, status, msg, len, max_age);
	if (rv == DV_ENOTFOUND)
		return rv;
	/* the query is answered (500 for a message too large): say why */
	return ret ? ret : rv;
}

int dv_doh_answer(dv_doh_t *d, uint32_t stream, const uint8_t *msg,
		  size_t len, uint32_t max_age)
{
	return answer(d, stream, 200, msg, len, max_age);
}

int dv_doh_error(dv_doh_t *d, uint32_t stream, unsigned status)
{
	if (status < 400 || status > 599)
		return -EINVAL;
	return answer(d, stream, status, NULL, 0, 0);
}

ssize_t dv_doh_output(dv_doh_t *d, uint8_t *buf, size_t cap)
{
	return d->ops->output(d, buf, cap);
}

bool dv_doh_want_close(const dv_doh_t *d)
{
	return d->ops->want_close(d);
}

bool dv_doh_want_input(const dv_doh_t *d)
{
	if (d->err)
		return false;
	return d->ops->want_input(d);
}

void dv_doh_drain(dv_doh_t *d)
{
	if (d->draining)
		return;
	d->draining = true;
	d->ops->drain(d);
}

bool dv_doh_receiving(const dv_doh_t *d)
{
	return d->ops->receiving(d);
}

unsigned dv_doh_inflight(const dv_doh_t *d)
{
	return d->outstanding;
}

size_t dv_doh_unsent(const dv_doh_t *d)
{
	return d->unsent;
}

bool dv_doh_output_ready(const dv_doh_t *d)
{
	return d->ops->output_ready(d);
}

/*
 * DNS over TLS (RFC 7858, RFC 8310): DNS length-prefixed framing (the
 * stream machinery) over TLS 1.2/1.3 with ALPN "dot".
 */
#include "src/errors.h"
#include "src/transport.h"
#include "src/worker.h"
#include "transports/tls_stream.h"

static const dv_stream_io_t dot_io = {
	.scheme = DV_SCHEME_TLS,
	.encrypted = true,
	.open = dv_tls_stream_open,
	.handshake = dv_tls_stream_handshake,
	.read = dv_tls_stream_read,
	.write = dv_tls_stream_write,
	.pending = dv_tls_stream_pending,
	.close = dv_tls_stream_close,
};

static int dot_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	if (!w->shared->tls_dot)
		return DV_ECONFIG;
	dv_tls_listener_t *d = dv_tls_listener_new(w, w->shared->tls_dot, NULL);
	if (!d)
		return -ENOMEM;
	int ret = dv_stream_listen(w, url, &dot_io, d, state);
	if (ret < 0)
		dv_tls_listener_free(d);
	return ret;
}

static void dot_close(dv_worker_t *w, void *state)
{
	dv_tls_listener_t *d = dv_stream_io_ctx(state);
	dv_stream_close(w, state);
	dv_tls_listener_free(d);
}

static const dv_transport_t dot = {
	.name = "dot",
	.schemes = 1u << DV_SCHEME_TLS,
	.listen = dot_listen,
	.stop = dv_stream_stop,
	.close = dot_close,
};
DV_TRANSPORT_REGISTER(dot)

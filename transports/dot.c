/*
 * DNS over TLS (RFC 7858, RFC 8310): DNS length-prefixed framing (the
 * stream machinery) over TLS 1.2/1.3 with ALPN "dot".
 */
#include "src/core/errors.h"
#include "src/daemon/transport.h"
#include "src/daemon/worker.h"
#include "transports/tls_stream.h"

static const dv_stream_io_t dot_io = {
	.scheme = DV_SCHEME_TLS,
	.app = &dv_stream_dns_app,
	DV_TLS_STREAM_IO_OPS,
};

static int dot_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	return dv_tls_stream_listen(w, url, &dot_io, w->shared->tls_dot, NULL,
				    state);
}

static void dot_close(dv_worker_t *w, void *state)
{
	(void)dv_tls_stream_close_listener(w, state);
}

static const dv_transport_t dot = {
	.name = "dot",
	.schemes = 1u << DV_SCHEME_TLS,
	.listen = dot_listen,
	.stop = dv_stream_stop,
	.open_conns = dv_stream_open_conns,
	.update = dv_stream_update,
	.close = dot_close,
};
DV_TRANSPORT_REGISTER(dot)

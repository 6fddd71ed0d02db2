/*
 * Do53 over TCP (RFC 1035 4.2.2, RFC 7766): the stream machinery on a
 * plain socket.
 */
#include <errno.h>
#include <sys/socket.h>

#include "src/daemon/transport.h"
#include "transports/stream.h"

static const dv_stream_io_t plain_io = {
	.scheme = DV_SCHEME_TCP,
	.app = &dv_stream_dns_app,
	.read = dv_stream_plain_read,
	.write = dv_stream_plain_write,
};

static int tcp_listen(dv_worker_t *w, const dv_url_t *url, void **state)
{
	return dv_stream_listen(w, url, &plain_io, NULL, state);
}

static const dv_transport_t do53_tcp = {
	.name = "do53-tcp",
	.schemes = (1u << DV_SCHEME_TCP) | (1u << DV_SCHEME_DNS),
	.listen = tcp_listen,
	.stop = dv_stream_stop,
	.open_conns = dv_stream_open_conns,
	.update = dv_stream_update,
	.close = dv_stream_close,
};
DV_TRANSPORT_REGISTER(do53_tcp)

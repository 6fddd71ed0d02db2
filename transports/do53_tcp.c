/*
 * Do53 over TCP (RFC 1035 4.2.2, RFC 7766): the stream machinery on a
 * plain socket.
 */
#include <errno.h>
#include <sys/socket.h>

#include "src/transport.h"
#include "transports/stream.h"

static ssize_t plain_read(dv_stream_conn_t *c, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0)
			return n;
		if (n == 0)
			return DV_TLS_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return DV_TLS_WANT_READ;
		return -errno;
	}
}

static ssize_t plain_write(dv_stream_conn_t *c, const void *buf, size_t len)
{
	for (;;) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return DV_TLS_WANT_WRITE;
		return -errno;
	}
}

static const dv_stream_io_t plain_io = {
	.scheme = DV_SCHEME_TCP,
	.read = plain_read,
	.write = plain_write,
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
	.close = dv_stream_close,
};
DV_TRANSPORT_REGISTER(do53_tcp)

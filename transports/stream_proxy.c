/*
 * The PROXY v2 header at the start of a ?proxy-protocol listener's
 * connections (the parser is src/proto/proxy.c).  It is read straight
 * from the socket into the connection's input buffer, asking for no more
 * than the header still needs, so the first byte of the TLS handshake,
 * the DNS message or the HTTP request stays in the socket for the layer
 * after it.  Garbage is refused on its first byte that cannot belong to a
 * v2 header; a header that does not come whole within
 * limits.tls-handshake-timeout-ms is cut by the connection's timer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "src/core/errors.h"
#include "src/core/netmask.h"
#include "src/daemon/worker.h"
#include "src/proto/proxy.h"
#include "transports/stream_conn.h"

bool dv_stream_proxy_allowed(const dv_config_t *cfg,
			     const struct sockaddr_storage *peer)
{
	return dv_netmask_match_any(cfg->proxy_from, cfg->n_proxy_from,
				    (const struct sockaddr *)peer);
}

int dv_stream_proxy_read(conn_t *c, const char **why)
{
	if (!c->in) {
		c->in = malloc(DV_PROXY_V2_MAX);
		if (!c->in) {
			*why = "out of memory";
			return -ENOMEM;
		}
		c->in_cap = DV_PROXY_V2_MAX;
	}
	for (;;) {
		int need = dv_proxy_v2_need(c->in, c->in_len);
		if (need < 0) {
			*why = need == DV_ELIMIT ? "PROXY header too long"
						 : "no PROXY v2 header";
			return need;
		}
		if ((size_t)need == c->in_len)
			break;
		ssize_t n = recv(c->pub.fd, c->in + c->in_len,
				 (size_t)need - c->in_len, 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		*why = n == 0 ? "closed inside the PROXY header"
			      : "read failed in the PROXY header";
		return n == 0 ? DV_ECLOSED : -errno;
	}
	dv_proxy_hdr_t h;
	int ret = dv_proxy_v2_parse(c->in, c->in_len, &h);
	c->in_len = 0;
	if (ret < 0) {
		*why = "malformed PROXY header";
		return ret;
	}
	if (!h.local) {
		memcpy(&c->pub.peer, &h.src, h.src_len);
		c->pub.peer_len = h.src_len;
	}
	return 1;
}

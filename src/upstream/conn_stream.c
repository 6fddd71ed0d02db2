/*
 * tcp:// and tls:// upstreams: a few persistent connections per server,
 * each carrying many queries at once (RFC 7766 pipelining: 2-byte length
 * framing, answers matched out of order by id and question), and the
 * byte layer https:// builds on (conn_h2.c, a framing of its own).
 *
 * tls:// connections use the same slots and framing; only the byte I/O
 * goes through the TLS seam (HANDSHAKE until TLS is up: queries keep
 * queueing), and a certificate that does not verify for #NAME fails the
 * connection like a refused connect.  The server keeps the last TLS
 * session (s->priv) for its next connection.
 */
#include "src/upstream/conn_stream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/proto/dns_framer.h"
#include "src/tls/tls.h"

/* an upstream answer shorter than a header breaks the framing */
static const dv_dns_framer_t answer_framer = {DV_DNS_HDR, 65535};

/* ---- output ---- */

/* TLS output: wolfSSL wants the very same bytes again after a WANT, so
 * the length of that write is kept in tls_retry. */
static void stream_flush_tls(dv_ustream_t *sc)
{
	dv_uconn_t *c = &sc->c;
	struct ev_loop *loop = c->server->pool->loop;
	while (sc->out_off < sc->out_len || (sc->fr && sc->fr->fill(sc))) {
		size_t len = sc->tls_retry ? sc->tls_retry
					   : sc->out_len - sc->out_off;
		ssize_t n = dv_tls_write(sc->tls, sc->out + sc->out_off, len);
		if (n == DV_TLS_WANT_WRITE || n == DV_TLS_WANT_READ) {
			sc->tls_retry = len;
			/* WANT_READ: the read watcher, always on while OPEN,
			 * retries; a write watcher would only spin */
			if (n == DV_TLS_WANT_WRITE)
				ev_io_start(loop, &c->wio);
			else
				ev_io_stop(loop, &c->wio);
			return;
		}
		if (n < 0) {
			dv_uconn_close(c, true, dv_tls_error(sc->tls, (int)n));
			return;
		}
		sc->tls_retry = 0;
		sc->out_off += (size_t)n;
	}
	sc->out_off = sc->out_len = 0;
	ev_io_stop(loop, &c->wio);
}

void dv_ustream_flush(dv_ustream_t *sc)
{
	dv_uconn_t *c = &sc->c;
	if (sc->tls) {
		stream_flush_tls(sc);
		return;
	}
	while (sc->out_off < sc->out_len) {
		ssize_t n = send(c->fd, sc->out + sc->out_off,
				 sc->out_len - sc->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(c->server->pool->loop, &c->wio);
				return;
			}
			dv_uconn_close(c, true, strerror(errno));
			return;
		}
		sc->out_off += (size_t)n;
	}
	sc->out_off = sc->out_len = 0;
	ev_io_stop(c->server->pool->loop, &c->wio);
}

void dv_ustream_queued(dv_ustream_t *sc)
{
	if (sc->c.state == UC_OPEN)
		ev_io_start(sc->c.server->pool->loop, &sc->c.wio);
}

static int stream_queue(dv_ustream_t *sc, const uint8_t *msg, size_t len)
{
	size_t need = sc->out_len + 2 + len;
	if (need > sc->out_cap) {
		if (sc->out_off) {
			memmove(sc->out, sc->out + sc->out_off,
				sc->out_len - sc->out_off);
			sc->out_len -= sc->out_off;
			sc->out_off = 0;
			need = sc->out_len + 2 + len;
		}
		if (need > sc->out_cap) {
			size_t cap = sc->out_cap ? sc->out_cap * 2 : 4096;
			while (cap < need)
				cap *= 2;
			uint8_t *o = realloc(sc->out, cap);
			if (!o)
				return -ENOMEM;
			sc->out = o;
			sc->out_cap = cap;
		}
	}
	dv_dns_frame_prefix(sc->out + sc->out_len, len);
	memcpy(sc->out + sc->out_len + 2, msg, len);
	sc->out_len += 2 + len;
	return 0;
}

/* Queue `msg` framed into the output buffer. */
static int stream_submit(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
			 size_t len)
{
	dv_ustream_t *sc = (dv_ustream_t *)c;
	int ret = stream_queue(sc, msg, len);
	if (ret < 0)
		return ret;
	dv_ustream_queued(sc);
	return 0;
}

bool dv_ustream_writing(const dv_uconn_t *c)
{
	const dv_ustream_t *sc = (const dv_ustream_t *)c;
	return sc->out_len != sc->out_off;
}

/* ---- TLS sessions ---- */

/* Keep the session of `sc` for the server's next connection.  TLS 1.3
 * tickets arrive after the handshake, so this runs once the first answer
 * has been read, and again at close. */
static void tls_keep_session(dv_ustream_t *sc)
{
	dv_server_t *s = sc->c.server;
	dv_tls_session_t *sess = dv_tls_session_get(sc->tls);
	sc->tls_saved = true;
	if (sess) {
		dv_tls_session_free(s->priv);
		s->priv = sess;
	}
}

void dv_ustream_stop(dv_uconn_t *c, bool was_open)
{
	dv_ustream_t *sc = (dv_ustream_t *)c;
	if (sc->tls) {
		if (was_open)
			tls_keep_session(sc);
		dv_tls_free(sc->tls);
		sc->tls = NULL;
	}
	sc->tls_retry = 0;
	if (sc->fr)
		sc->fr->stop(sc);
	sc->out_len = sc->out_off = 0;
	sc->in_len = 0;
}

/* ---- input ---- */

/* Read from the connection: bytes, 0 at EOF, -EAGAIN when there is
 * nothing now, or another negative error (`why` says what). */
static ssize_t stream_recv(dv_ustream_t *sc, size_t room, const char **why)
{
	dv_uconn_t *c = &sc->c;
	if (sc->tls) {
		ssize_t n = dv_tls_read(sc->tls, sc->in + sc->in_len, room);
		if (n > 0)
			return n;
		if (n == DV_TLS_WANT_READ)
			return -EAGAIN;
		if (n == DV_TLS_WANT_WRITE) {
			ev_io_start(c->server->pool->loop, &c->wio);
			return -EAGAIN;
		}
		if (n == DV_TLS_EOF)
			return 0;
		*why = dv_tls_error(sc->tls, (int)n);
		return n < 0 ? n : -EPROTO;
	}
	for (;;) {
		ssize_t n = recv(c->fd, sc->in + sc->in_len, room, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		*why = strerror(errno);
		return -errno;
	}
}

static void handshake_step(dv_ustream_t *sc);

static void stream_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_ustream_t *sc = w->data;
	dv_uconn_t *c = &sc->c;
	if (c->state == UC_HANDSHAKE) {
		handshake_step(sc);
		return;
	}
	/* a TLS write that wanted to read first */
	if (sc->tls && sc->tls_retry) {
		dv_ustream_flush(sc);
		if (c->state != UC_OPEN)
			return;
	}
	for (;;) {
		size_t room = 2 + DV_DNS_MAX_MSG - sc->in_len;
		const char *why = "read error";
		ssize_t n = stream_recv(sc, room, &why);
		if (n == 0) {
			dv_uconn_close(c, c->busy > 0, "closed by upstream");
			return;
		}
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			dv_uconn_close(c, true, why);
			return;
		}
		sc->in_len += (size_t)n;
		c->last_rx_ms = now_ms();
		if (sc->tls && !sc->tls_saved)
			tls_keep_session(sc);
		if (sc->fr) {
			if (!sc->fr->input(sc))
				return;
			continue; /* TLS: until WANT_READ, as below */
		}
		size_t off = 0;
		dv_dns_msg_t m;
		int fr = 0;
		while (c->state == UC_OPEN &&
		       (fr = dv_dns_framer_next(&answer_framer, sc->in,
						sc->in_len, &off, &m)) > 0)
			dv_uconn_answer(c, m.msg, m.len);
		if (c->state != UC_OPEN)
			return;
		if (fr < 0) {
			dv_uconn_close(c, true, "bad framing");
			return;
		}
		if (off) {
			memmove(sc->in, sc->in + off, sc->in_len - off);
			sc->in_len -= off;
		}
		/* TLS: go on until WANT_READ, the library may hold
		 * decrypted bytes the socket no longer signals */
		if (!sc->tls && (size_t)n < room)
			return; /* drained the socket */
	}
}

/* ---- connecting ---- */

/* The connection is usable: queries queued meanwhile go out now. */
static void stream_opened(dv_ustream_t *sc)
{
	dv_uconn_t *c = &sc->c;
	struct ev_loop *loop = c->server->pool->loop;
	c->state = UC_OPEN;
	c->last_rx_ms = now_ms();
	ev_io_start(loop, &c->rio);
	if (sc->out_len > sc->out_off || sc->fr)
		dv_ustream_flush(sc);
	else
		ev_io_stop(loop, &c->wio);
}

static void handshake_step(dv_ustream_t *sc)
{
	dv_uconn_t *c = &sc->c;
	dv_server_t *s = c->server;
	struct ev_loop *loop = s->pool->loop;
	int ret = dv_tls_connect(sc->tls);
	if (ret == 0) {
		DV_STAT_INC(s->pool->stats, tls_handshakes);
		if (dv_tls_resumed(sc->tls))
			DV_STAT_INC(s->pool->stats, tls_resumed);
		if (sc->fr && !sc->fr->opened(sc))
			return;
		stream_opened(sc);
		return;
	}
	if (ret == DV_TLS_WANT_READ) {
		ev_io_stop(loop, &c->wio);
		ev_io_start(loop, &c->rio);
		return;
	}
	if (ret == DV_TLS_WANT_WRITE) {
		ev_io_stop(loop, &c->rio);
		ev_io_start(loop, &c->wio);
		return;
	}
	DV_STAT_INC(s->pool->stats, tls_failed);
	char why[DV_URL_NAME_MAX + 256];
	if (dv_tls_cert_error(ret))
		snprintf(why, sizeof(why),
			 "TLS handshake failed: the certificate did not verify "
			 "for %s (%s)",
			 s->url.name, dv_tls_error(sc->tls, ret));
	else
		snprintf(why, sizeof(why), "TLS handshake failed: %s",
			 dv_tls_error(sc->tls, ret));
	/* once per outage, not once per connection attempt */
	if (dv_userver_usable(s))
		dv_log_warn("worker %u: upstream %s: %s", s->pool->index,
			    s->url.text, why);
	/* a session the server no longer likes must not be offered again */
	dv_tls_session_free(s->priv);
	s->priv = NULL;
	dv_uconn_close(c, true, why);
}

/* TCP is up: plain connections are open, TLS ones start the handshake. */
static void stream_tcp_up(dv_ustream_t *sc)
{
	dv_uconn_t *c = &sc->c;
	dv_server_t *s = c->server;
	if (!sc->use_tls) {
		stream_opened(sc);
		return;
	}
	sc->tls = dv_tls_connect_new(s->pool->tls, c->fd, s->url.name,
				     sc->fr ? sc->fr->alpn : "dot", s->priv);
	if (!sc->tls) {
		dv_uconn_close(c, true, "cannot create a TLS connection");
		return;
	}
	sc->tls_retry = 0;
	sc->tls_saved = false;
	c->state = UC_HANDSHAKE;
	handshake_step(sc);
}

static void stream_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	dv_ustream_t *sc = w->data;
	dv_uconn_t *c = &sc->c;
	if (c->state == UC_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			dv_uconn_close(c, true, strerror(err));
			return;
		}
		stream_tcp_up(sc);
		return;
	}
	if (c->state == UC_HANDSHAKE) {
		handshake_step(sc);
		return;
	}
	dv_ustream_flush(sc);
}

int dv_ustream_connect(dv_uconn_t *c)
{
	dv_ustream_t *sc = (dv_ustream_t *)c;
	dv_server_t *s = c->server;
	dv_pool_t *p = s->pool;
	int fd = socket(s->url.addr.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int ret = connect(fd, (struct sockaddr *)&s->url.addr,
			  s->url.addr_len);
	if (ret < 0 && errno != EINPROGRESS) {
		ret = -errno;
		close(fd);
		dv_userver_refused(s);
		return ret;
	}
	if (sc->fr && sc->fr->start(sc) < 0) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	ev_io_set(&c->rio, fd, EV_READ);
	ev_io_set(&c->wio, fd, EV_WRITE);
	dv_uconn_connects(c);
	if (ret == 0) {
		/* connected at once (loopback): a TLS handshake starts now; a
		 * failure closes the connection, which the caller sees as
		 * CLOSED */
		c->state = UC_CONNECTING;
		stream_tcp_up(sc);
		if (c->state == UC_CLOSED)
			return DV_EUPSTREAM;
	} else {
		c->state = UC_CONNECTING;
		ev_io_start(p->loop, &c->wio);
	}
	return 0;
}

/* ---- making and freeing ---- */

int dv_ustream_init(dv_ustream_t *sc, const dv_uconn_ops_t *ops,
		    dv_server_t *s, unsigned max, bool tls,
		    const dv_ustream_framing_t *fr)
{
	dv_uconn_t *c = &sc->c;
	if (dv_uconn_init(c, ops, s, max) < 0)
		return -ENOMEM;
	sc->use_tls = tls;
	sc->fr = fr;
	ev_init(&c->rio, stream_read_cb);
	ev_init(&c->wio, stream_write_cb);
	c->rio.data = c->wio.data = sc;
	sc->in = malloc(2 + DV_DNS_MAX_MSG);
	return sc->in ? 0 : -ENOMEM;
}

/* Frees the generic part and the buffers; the framing has freed its
 * engine (the pool is going). */
void dv_ustream_destroy(dv_uconn_t *c)
{
	dv_ustream_t *sc = (dv_ustream_t *)c;
	dv_tls_free(sc->tls);
	sc->tls = NULL;
	if (c->fd >= 0) {
		ev_io_stop(c->server->pool->loop, &c->rio);
		ev_io_stop(c->server->pool->loop, &c->wio);
		close(c->fd);
	}
	dv_uconn_deinit(c);
	free(sc->in);
	free(sc->out);
	free(sc);
}

int dv_ustream_tls_pool_init(dv_pool_t *p)
{
	if (p->tls)
		return 0; /* made for the other scheme already */
	char err[600];
	p->tls = dv_tls_client_new(p->cfg->tls_ca, err, sizeof(err));
	if (!p->tls) {
		dv_log_error("tls:// and https:// upstreams: %s", err);
		return DV_ECONFIG;
	}
	return 0;
}

void dv_ustream_tls_pool_deinit(dv_pool_t *p)
{
	dv_tls_ctx_free(p->tls);
	p->tls = NULL;
}

void dv_ustream_tls_server_deinit(dv_server_t *s)
{
	dv_tls_session_free(s->priv);
	s->priv = NULL;
}

static dv_uconn_t *tcp_create(dv_server_t *s, unsigned max);
static dv_uconn_t *tls_create(dv_server_t *s, unsigned max);

const dv_uconn_ops_t dv_uconn_tcp_ops = {
	.create = tcp_create,
	.destroy = dv_ustream_destroy,
	.connect = dv_ustream_connect,
	.submit = stream_submit,
	.stop = dv_ustream_stop,
	.writing = dv_ustream_writing,
};

const dv_uconn_ops_t dv_uconn_tls_ops = {
	.pool_init = dv_ustream_tls_pool_init,
	.pool_deinit = dv_ustream_tls_pool_deinit,
	.server_deinit = dv_ustream_tls_server_deinit,
	.create = tls_create,
	.destroy = dv_ustream_destroy,
	.connect = dv_ustream_connect,
	.submit = stream_submit,
	.stop = dv_ustream_stop,
	.writing = dv_ustream_writing,
};

static dv_uconn_t *stream_create(dv_server_t *s, unsigned max,
				 const dv_uconn_ops_t *ops, bool tls)
{
	dv_ustream_t *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return NULL;
	if (dv_ustream_init(sc, ops, s, max, tls, NULL) < 0) {
		dv_uconn_deinit(&sc->c);
		free(sc->in);
		free(sc);
		return NULL;
	}
	return &sc->c;
}

static dv_uconn_t *tcp_create(dv_server_t *s, unsigned max)
{
	return stream_create(s, max, &dv_uconn_tcp_ops, false);
}

static dv_uconn_t *tls_create(dv_server_t *s, unsigned max)
{
	return stream_create(s, max, &dv_uconn_tls_ops, true);
}

/*
 * The socket I/O of a server TLS connection (DoT, DoH), under wolfSSL
 * through its I/O callbacks.
 *
 * wolfSSL's own I/O reads a record's 5-byte header and then its body with
 * a recv() each, so every pipelined query that comes as its own record
 * (as stub resolvers and dnsperf send them) cost two system calls.  Here
 * each call of the seam (a handshake step, a read) reads the socket at most
 * once, as much as has arrived, into the worker thread's receive buffer,
 * and wolfSSL is fed from it: one recv() brings every whole record that
 * arrived, and dv_tls_read() decrypts all of them into the caller's buffer.
 * A read that comes back short of the buffer emptied the socket; the
 * stream then waits for the next readable event instead of asking again
 * (dv_tls_drained()).
 *
 * On the way out wolfSSL writes its records into the worker thread's send
 * buffer, and they leave in one send() at the end of the call (so the
 * answers of one flush go out together, in as few records as the bytes
 * need).  wolfSSL never sees a blocked socket: records the socket does not
 * take are kept by the connection (tx_keep) and sent first next time,
 * while dv_tls_write() takes nothing new until they are out.  So
 * close_notify can always be queued behind them, in order.
 *
 * Both thread buffers are only borrowed for the length of one call:
 * what is left at its end (ciphertext the caller had no room for, records
 * the socket would not take) moves to a heap buffer of the connection's
 * own, which goes as soon as it is empty, so an idle connection holds
 * neither.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfio.h>

#include "src/core/errors.h"
#include "src/tls/tls_int.h"

/* The most one read takes: more than the records of a full pipeline of
 * queries.  A read for the caller's buffer of `len` bytes takes at most
 * twice that (a query's record is about 22 bytes more than the query), so
 * that what is left over for the connection to keep (while its client, say,
 * sends and never reads, and reading stops) stays small, like the input
 * buffer that it feeds; a handshake step reads at most one whole record. */
#define RX_SIZE 65536
#define RX_HANDSHAKE (16384 + 512)
/* plaintext per wolfSSL_write: one record (with under 100 bytes of
 * header, tag and padding), no more than wolfSSL kept of a blocked write
 * with its own I/O */
#define TX_PLAIN 16384
#define TX_SIZE (TX_PLAIN + 1024)

static __thread uint8_t *rx_buf, *tx_buf;

void dv_tls_io_thread_exit(void)
{
	free(rx_buf);
	free(tx_buf);
	rx_buf = tx_buf = NULL;
}

/* Append `len` bytes to the records kept for later. */
static int tx_keep(dv_tls_t *t, const uint8_t *data, size_t len)
{
	if (t->tx_keep_off && t->tx_keep_off == t->tx_keep_len)
		t->tx_keep_off = t->tx_keep_len = 0;
	uint8_t *k = realloc(t->tx_keep, t->tx_keep_len + len);
	if (!k)
		return -ENOMEM;
	memcpy(k + t->tx_keep_len, data, len);
	t->tx_keep = k;
	t->tx_keep_len += len;
	return 0;
}

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	dv_tls_t *t = arg;
	(void)ssl;
	if (t->rx_len == 0) {
		if (!t->may_recv)
			return WOLFSSL_CBIO_ERR_WANT_READ;
		t->may_recv = false;
		if (t->rx_keep) {
			/* what was kept is all fed: read on behind it */
			free(t->rx_keep);
			t->rx_keep = NULL;
			t->rx_keep_len = 0;
		}
		if (!rx_buf && !(rx_buf = malloc(RX_SIZE)))
			return WOLFSSL_CBIO_ERR_GENERAL;
		ssize_t n;
		do
			n = recv(t->fd, rx_buf, t->rx_max, 0);
		while (n < 0 && errno == EINTR);
		if (n == 0)
			return WOLFSSL_CBIO_ERR_CONN_CLOSE;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				t->drained = true;
				return WOLFSSL_CBIO_ERR_WANT_READ;
			}
			if (errno == ECONNRESET)
				return WOLFSSL_CBIO_ERR_CONN_RST;
			return WOLFSSL_CBIO_ERR_GENERAL;
		}
		t->drained = (size_t)n < t->rx_max;
		t->rx = rx_buf;
		t->rx_len = (size_t)n;
	}
	size_t m = sz > 0 && (size_t)sz < t->rx_len ? (size_t)sz : t->rx_len;
	memcpy(buf, t->rx, m);
	t->rx += m;
	t->rx_len -= m;
	return (int)m;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	dv_tls_t *t = arg;
	(void)ssl;
	if (sz <= 0)
		return 0;
	size_t len = (size_t)sz;
	if (t->in_call && tx_buf && TX_SIZE - t->tx_len >= len) {
		memcpy(tx_buf + t->tx_len, buf, len);
		t->tx_len += len;
		return sz;
	}
	/* outside a call, or more than the send buffer holds: after what
	 * this call wrote so far, in order */
	if (t->tx_len) {
		if (tx_keep(t, tx_buf, t->tx_len) < 0)
			return WOLFSSL_CBIO_ERR_GENERAL;
		t->tx_len = 0;
	}
	if (tx_keep(t, (const uint8_t *)buf, len) < 0)
		return WOLFSSL_CBIO_ERR_GENERAL;
	return sz;
}

void dv_tls_io_attach(dv_tls_t *t)
{
	wolfSSL_SSLSetIORecv(t->ssl, io_recv);
	wolfSSL_SSLSetIOSend(t->ssl, io_send);
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
}

/*
 * Send the kept records and then those of this call, in one sendmsg();
 * what the socket does not take is kept.  0 when all is out,
 * DV_TLS_WANT_WRITE, or a negative error (-ENOMEM: the records of this
 * call could not be kept; they are lost and so is the connection).
 */
static int tx_send(dv_tls_t *t)
{
	size_t keep = t->tx_keep_len - t->tx_keep_off;
	struct iovec iov[2];
	int n_iov = 0;
	if (keep)
		iov[n_iov++] =
			(struct iovec){ t->tx_keep + t->tx_keep_off, keep };
	if (t->tx_len)
		iov[n_iov++] = (struct iovec){ tx_buf, t->tx_len };
	if (!n_iov)
		return 0;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n_iov };
	ssize_t n;
	do
		n = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	int err = 0;
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			err = -errno;
		n = 0;
	}
	size_t sent = (size_t)n;
	size_t from_keep = sent < keep ? sent : keep;
	t->tx_keep_off += from_keep;
	sent -= from_keep;
	if (t->tx_len) {
		if (sent < t->tx_len && !err &&
		    tx_keep(t, tx_buf + sent, t->tx_len - sent) < 0)
			err = -ENOMEM;
		t->tx_len = 0;
	}
	if (t->tx_keep_off == t->tx_keep_len) {
		free(t->tx_keep);
		t->tx_keep = NULL;
		t->tx_keep_off = t->tx_keep_len = 0;
		return err;
	}
	return err ? err : DV_TLS_WANT_WRITE;
}

/* Start a call: feed wolfSSL what was kept first, then let it read the
 * socket once, at most `rx_max` bytes (0: not at all); its records go to
 * the thread's send buffer. */
static void io_begin(dv_tls_t *t, size_t rx_max)
{
	bool may_recv = rx_max > 0;
	t->rx_max = rx_max > RX_SIZE ? RX_SIZE : rx_max;
	t->drained = false;
	t->rx = t->rx_keep;
	t->rx_len = t->rx_keep_len;
	t->may_recv = may_recv;
	if (!tx_buf)
		tx_buf = malloc(TX_SIZE); /* NULL: records go to tx_keep */
	t->tx_len = 0;
	t->in_call = true;
}

/*
 * End a call: keep the ciphertext wolfSSL did not take, and send the
 * records written.  Returns 0, DV_TLS_WANT_WRITE (records kept) or a
 * negative error; -ENOMEM when read bytes could not be kept.
 */
static int io_end(dv_tls_t *t)
{
	int ret = 0;
	if (t->rx_keep_len) {
		if (!t->rx_len) {
			free(t->rx_keep);
			t->rx_keep = NULL;
		} else if (t->rx != t->rx_keep) {
			memmove(t->rx_keep, t->rx, t->rx_len);
		}
		t->rx_keep_len = t->rx_len;
	} else if (t->rx_len) {
		t->rx_keep = malloc(t->rx_len);
		if (t->rx_keep) {
			memcpy(t->rx_keep, t->rx, t->rx_len);
			t->rx_keep_len = t->rx_len;
		} else {
			ret = -ENOMEM;
		}
	}
	t->rx = NULL;
	t->rx_len = 0;
	t->may_recv = false;
	t->in_call = false;
	int w = tx_send(t);
	return ret ? ret : w;
}

int dv_tls_io_handshake(dv_tls_t *t)
{
	int ret = tx_send(t);
	if (ret < 0)
		return ret;
	if (t->hs_done)
		return 0; /* our last flight has gone out */
	io_begin(t, RX_HANDSHAKE);
	int r = wolfSSL_accept(t->ssl);
	int w = io_end(t);
	if (w < 0 && w != DV_TLS_WANT_WRITE)
		return w;
	if (r == WOLFSSL_SUCCESS) {
		t->hs_done = true;
		dv_tls_handshake_done(t);
		return w;
	}
	ret = dv_tls_map_error(t, r);
	/* the client waits for our flight before it sends more */
	if (ret == DV_TLS_WANT_READ && w == DV_TLS_WANT_WRITE)
		return DV_TLS_WANT_WRITE;
	return ret;
}

ssize_t dv_tls_io_read(dv_tls_t *t, void *buf, size_t len)
{
	if (t->sticky)
		return t->sticky;
	io_begin(t, len < RX_SIZE / 2 ? 2 * len + 1024 : RX_SIZE);
	size_t got = 0;
	int ret = 0;
	while (got < len) {
		size_t room = len - got;
		int n = wolfSSL_read(t->ssl, (uint8_t *)buf + got,
				     room > INT32_MAX ? INT32_MAX : (int)room);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		ret = dv_tls_map_error(t, n);
		break;
	}
	/* an alert or a key update wolfSSL answered goes out now; a send
	 * that fails shows at the next write or flush */
	int w = io_end(t);
	if (w == -ENOMEM)
		return -ENOMEM;
	if (t->rx_keep_len)
		t->drained = false;
	if (got) {
		if (ret != 0 && ret != DV_TLS_WANT_READ &&
		    ret != DV_TLS_WANT_WRITE)
			t->sticky = ret; /* said at the next read */
		return (ssize_t)got;
	}
	return ret;
}

ssize_t dv_tls_io_write(dv_tls_t *t, const void *buf, size_t len)
{
	/* nothing new while older records wait for the socket */
	int ret = tx_send(t);
	if (ret < 0)
		return ret;
	io_begin(t, 0);
	int n = wolfSSL_write(t->ssl, buf,
			      len > TX_PLAIN ? TX_PLAIN : (int)len);
	int w = io_end(t);
	if (n <= 0)
		return dv_tls_map_error(t, n);
	if (w < 0 && w != DV_TLS_WANT_WRITE)
		return w;
	return n; /* taken; records the socket did not take are kept */
}

int dv_tls_io_flush(dv_tls_t *t)
{
	return tx_send(t);
}

void dv_tls_io_shutdown(dv_tls_t *t)
{
	/* close_notify goes after whatever is still unsent, in one send with
	 * it (best effort: a client that stopped reading gets none) */
	io_begin(t, 0);
	(void)wolfSSL_shutdown(t->ssl);
	(void)io_end(t);
}

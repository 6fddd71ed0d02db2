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
 *
 * After a TLS 1.3 handshake wolfSSL's connection object is freed (tls.c,
 * dv_tls_handshake_done) and the records are ours (tls13_rec.h): the same
 * one recv() per call and one send() per call, the same kept buffers, with
 * the record layer in wolfSSL's place.  A record cut short by the read
 * waits in rx_keep for the rest; the plaintext of a record the caller had
 * no room for waits in pt_keep.
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
#include "src/tls/tls13_rec.h"
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

/*
 * Read the socket once (this call's one read, at most rx_max bytes) into
 * the thread's receive buffer, behind the `rx_len` bytes at t->rx (the
 * start of a record our record layer could not open yet, moved to the
 * front); what was kept between calls is then all there and goes.  The
 * bytes read, 0 at EOF, -EAGAIN (nothing there: the socket is drained)
 * or a negative errno.
 */
static ssize_t rx_read(dv_tls_t *t)
{
	t->may_recv = false;
	if (!rx_buf && !(rx_buf = malloc(RX_SIZE)))
		return -ENOMEM;
	size_t part = t->rx_len;
	if (part && t->rx != rx_buf)
		memmove(rx_buf, t->rx, part);
	if (t->rx_keep) {
		free(t->rx_keep);
		t->rx_keep = NULL;
		t->rx_keep_len = 0;
	}
	t->rx = rx_buf;
	size_t want = RX_SIZE - part < t->rx_max ? RX_SIZE - part : t->rx_max;
	ssize_t n;
	do
		n = recv(t->fd, rx_buf + part, want, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			t->drained = true;
			return -EAGAIN;
		}
		return -errno;
	}
	if (n > 0) {
		t->drained = (size_t)n < want;
		t->rx_len = part + (size_t)n;
	}
	return n;
}

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	dv_tls_t *t = arg;
	(void)ssl;
	if (t->rx_len == 0) {
		if (!t->may_recv)
			return WOLFSSL_CBIO_ERR_WANT_READ;
		ssize_t n = rx_read(t);
		if (n == 0)
			return WOLFSSL_CBIO_ERR_CONN_CLOSE;
		if (n == -EAGAIN)
			return WOLFSSL_CBIO_ERR_WANT_READ;
		if (n == -ECONNRESET)
			return WOLFSSL_CBIO_ERR_CONN_RST;
		if (n < 0)
			return WOLFSSL_CBIO_ERR_GENERAL;
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

static ssize_t rec_read(dv_tls_t *t, uint8_t *buf, size_t len);
static ssize_t rec_write(dv_tls_t *t, const void *buf, size_t len);
static void rec_shutdown(dv_tls_t *t);

ssize_t dv_tls_io_read(dv_tls_t *t, void *buf, size_t len)
{
	if (t->sticky)
		return t->sticky;
	if (t->rec)
		return rec_read(t, buf, len);
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
	if (t->rec)
		return rec_write(t, buf, len);
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
	if (t->rec) {
		rec_shutdown(t);
		return;
	}
	io_begin(t, 0);
	(void)wolfSSL_shutdown(t->ssl);
	(void)io_end(t);
}

/* ---- our TLS 1.3 record layer (tls13_rec.h) ---- */

/* Seal one record of `type` into this call's send buffer; false when it
 * cannot be (no buffer, no room, an error). */
static bool rec_out(dv_tls_t *t, uint8_t type, const void *pt, size_t len)
{
	if (!tx_buf)
		return false;
	ssize_t n = dv_tls13_rec_seal(t->rec, type, pt, len, tx_buf + t->tx_len,
				      TX_SIZE - t->tx_len);
	if (n < 0)
		return false;
	t->tx_len += (size_t)n;
	return true;
}

/* An alert record: close_notify as a warning, anything else fatal. */
static void alert_out(dv_tls_t *t, uint8_t desc)
{
	const uint8_t alert[2] = { desc == DV_TLS13_CLOSE_NOTIFY ? 1 : 2,
				   desc };
	(void)rec_out(t, DV_TLS13_ALERT, alert, sizeof(alert));
}

/* The alert the record layer owes for its last error, if any. */
static void rec_alert(dv_tls_t *t)
{
	uint8_t desc = dv_tls13_rec_alert_for(t->rec);
	if (desc != DV_TLS13_NO_ALERT)
		alert_out(t, desc);
}

/* Keep the plaintext the caller had no room for. */
static int pt_keep(dv_tls_t *t, const uint8_t *p, size_t n)
{
	uint8_t *k = malloc(n);
	if (!k)
		return -ENOMEM;
	memcpy(k, p, n);
	t->pt_keep = k;
	t->pt_keep_off = 0;
	t->pt_keep_len = n;
	return 0;
}

static ssize_t rec_read(dv_tls_t *t, uint8_t *buf, size_t len)
{
	size_t got = 0;
	if (t->pt_keep) {
		size_t n = t->pt_keep_len - t->pt_keep_off;
		got = n < len ? n : len;
		memcpy(buf, t->pt_keep + t->pt_keep_off, got);
		t->pt_keep_off += got;
		if (t->pt_keep_off == t->pt_keep_len) {
			free(t->pt_keep);
			t->pt_keep = NULL;
			t->pt_keep_off = t->pt_keep_len = 0;
		}
		if (got == len) {
			t->drained = false;
			return (ssize_t)got;
		}
	}
	io_begin(t, len < RX_SIZE / 2 ? 2 * len + 1024 : RX_SIZE);
	int ret = 0;
	while (got < len) {
		ssize_t whole = dv_tls13_rec_len(t->rx, t->rx_len);
		if (whole == 0) {
			if (!t->may_recv) {
				ret = DV_TLS_WANT_READ;
				break;
			}
			ssize_t r = rx_read(t);
			if (r > 0)
				continue;
			ret = r == 0 ? DV_TLS_EOF
			      : r == -EAGAIN ? DV_TLS_WANT_READ : (int)r;
			break;
		}
		uint8_t *pt = NULL;
		size_t n = 0;
		/* a bad header: opening it says which alert */
		ret = dv_tls13_rec_open(t->rec, t->rx,
					whole < 0 ? t->rx_len : (size_t)whole,
					&pt, &n);
		if (ret != 0) {
			if (ret != DV_TLS_EOF)
				rec_alert(t);
			/* nothing after an error or close_notify counts */
			t->rx_len = 0;
			break;
		}
		t->rx += whole;
		t->rx_len -= (size_t)whole;
		size_t room = len - got;
		size_t m = n < room ? n : room;
		if (m) /* a KeyUpdate brings none */
			memcpy(buf + got, pt, m);
		got += m;
		if (m < n && (ret = pt_keep(t, pt + m, n - m)) < 0)
			break;
	}
	/* the KeyUpdate a client asked for goes out now, whether or not we
	 * have anything else to say */
	if (dv_tls13_rec_owes(t->rec) && tx_buf) {
		ssize_t k = dv_tls13_rec_flush(t->rec, tx_buf + t->tx_len,
					       TX_SIZE - t->tx_len);
		if (k > 0)
			t->tx_len += (size_t)k;
	}
	int w = io_end(t);
	if (w == -ENOMEM)
		return -ENOMEM;
	/* a whole record or plaintext waiting: more without a new read */
	if (t->pt_keep || dv_tls13_rec_len(t->rx_keep, t->rx_keep_len) != 0)
		t->drained = false;
	if (got) {
		if (ret != 0 && ret != DV_TLS_WANT_READ)
			t->sticky = ret; /* said at the next read */
		return (ssize_t)got;
	}
	return ret;
}

size_t dv_tls_io_rec_pending(dv_tls_t *t)
{
	size_t n = t->pt_keep_len - t->pt_keep_off;
	if (dv_tls13_rec_len(t->rx_keep, t->rx_keep_len) > 0)
		n += t->rx_keep_len;
	return n;
}

static ssize_t rec_write(dv_tls_t *t, const void *buf, size_t len)
{
	size_t n = len > TX_PLAIN ? TX_PLAIN : len;
	io_begin(t, 0);
	bool ok = rec_out(t, DV_TLS13_APPDATA, buf, n);
	int w = io_end(t);
	if (!ok)
		return tx_buf ? -EIO : -ENOMEM;
	if (w < 0 && w != DV_TLS_WANT_WRITE)
		return w;
	return (ssize_t)n; /* taken; records the socket did not take are kept */
}

static void rec_shutdown(dv_tls_t *t)
{
	io_begin(t, 0);
	alert_out(t, DV_TLS13_CLOSE_NOTIFY);
	(void)io_end(t);
}

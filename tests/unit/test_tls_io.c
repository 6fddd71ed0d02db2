/*
 * Unit tests for src/tls/tls_io.c, the socket I/O of server TLS
 * connections, over a socket pair: a server connection (our I/O) and a
 * client one (wolfSSL's own).  Pipelined records that arrived together are
 * all decrypted by one read; a read into a small buffer keeps the rest and
 * returns it without new bytes; records the socket does not take are kept,
 * counted as unsent and sent by a flush, and close_notify follows them.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/tls/tls.h"

#include "tests/unit/tls_test_cert.h"

typedef struct {
	int fd[2];
	char cert[32], key[32];
	dv_tls_ctx_t *sctx, *cctx;
	dv_tls_t *srv, *cli;
} pair_t;

/* Both ends of a socket pair, non-blocking, the handshake done. */
static void pair_open(pair_t *p, int sndbuf)
{
	char err[256];
	memset(p, 0, sizeof(*p));
	p->sctx = tls_test_server(p->cert, p->key, p->fd);
	p->cctx = dv_tls_client_new(p->cert, err, sizeof(err));
	assert_non_null(p->cctx);
	if (sndbuf)
		setsockopt(p->fd[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
			   sizeof(sndbuf));
	p->srv = dv_tls_new(p->sctx, p->fd[0]);
	p->cli = dv_tls_connect_new(p->cctx, p->fd[1], "dns.test", "dot", NULL);
	assert_non_null(p->srv);
	assert_non_null(p->cli);
	int s = 1, c = 1;
	for (int i = 0; i < 100 && (s || c); i++) {
		if (c)
			c = dv_tls_connect(p->cli);
		if (s)
			s = dv_tls_handshake(p->srv);
		assert_true(c == 0 || c == DV_TLS_WANT_READ ||
			    c == DV_TLS_WANT_WRITE);
		assert_true(s == 0 || s == DV_TLS_WANT_READ ||
			    s == DV_TLS_WANT_WRITE);
	}
	assert_int_equal(s, 0);
	assert_int_equal(c, 0);
	assert_string_equal(dv_tls_alpn(p->srv), "dot");
}

static void pair_close(pair_t *p)
{
	dv_tls_free(p->srv);
	dv_tls_free(p->cli);
	close(p->fd[0]);
	close(p->fd[1]);
	dv_tls_ctx_free(p->sctx);
	dv_tls_ctx_free(p->cctx);
	unlink(p->cert);
	unlink(p->key);
}

/* `n` messages of 40 bytes, each its own record (one client write each). */
static void client_send(pair_t *p, int n, uint8_t *sent)
{
	for (int i = 0; i < n; i++) {
		uint8_t *m = sent + 40 * i;
		memset(m, 'a' + i % 26, 40);
		m[0] = (uint8_t)i;
		assert_int_equal(dv_tls_write(p->cli, m, 40), 40);
	}
}

/* Records that arrived together are decrypted by one read, whose socket
 * read came back short: the socket is drained. */
static void test_one_read_takes_every_record(void **state)
{
	(void)state;
	pair_t p;
	uint8_t sent[40 * 50], got[8192];
	pair_open(&p, 0);
	assert_int_equal(dv_tls_read(p.srv, got, sizeof(got)),
			 DV_TLS_WANT_READ); /* the client's ticket, if any */
	client_send(&p, 50, sent);
	assert_int_equal(dv_tls_read(p.srv, got, sizeof(got)), sizeof(sent));
	assert_memory_equal(got, sent, sizeof(sent));
	assert_true(dv_tls_drained(p.srv));
	assert_int_equal(dv_tls_pending(p.srv), 0);
	assert_int_equal(dv_tls_read(p.srv, got, sizeof(got)),
			 DV_TLS_WANT_READ);
	pair_close(&p);
}

/* A small buffer: what it had no room for is kept (pending, not drained)
 * and comes with the next reads, before the socket is read again. */
static void test_small_buffer_keeps_the_rest(void **state)
{
	(void)state;
	pair_t p;
	uint8_t sent[40 * 50], got[40 * 50];
	pair_open(&p, 0);
	client_send(&p, 50, sent);
	size_t have = 0;
	ssize_t n = dv_tls_read(p.srv, got, 100);
	assert_int_equal(n, 100);
	have += 100;
	assert_true(dv_tls_pending(p.srv) > 0);
	assert_false(dv_tls_drained(p.srv));
	while (have < sizeof(sent)) {
		n = dv_tls_read(p.srv, got + have, 100);
		assert_true(n > 0);
		have += (size_t)n;
	}
	assert_memory_equal(got, sent, sizeof(sent));
	assert_int_equal(dv_tls_pending(p.srv), 0);
	assert_int_equal(dv_tls_read(p.srv, got, 100), DV_TLS_WANT_READ);
	pair_close(&p);
}

/* Read what the client can; true at EOF (close_notify). */
static bool client_drain(pair_t *p, uint8_t *buf, size_t cap, size_t *have)
{
	for (;;) {
		ssize_t n = dv_tls_read(p->cli, buf + *have, cap - *have);
		if (n > 0) {
			*have += (size_t)n;
			continue;
		}
		if (n == DV_TLS_EOF)
			return true;
		assert_int_equal(n, DV_TLS_WANT_READ);
		return false;
	}
}

/* A client that does not read: the server's records that the socket did
 * not take are kept and count as unsent, nothing new is taken until they
 * are out, a flush sends them when the client reads, and close_notify
 * comes after all of them. */
static void test_unsent_records_kept_then_close_notify(void **state)
{
	(void)state;
	pair_t p;
	enum { OUT = 1 << 20 };
	uint8_t *out = malloc(OUT), *in = malloc(OUT);
	assert_non_null(out);
	assert_non_null(in);
	for (size_t i = 0; i < OUT; i++)
		out[i] = (uint8_t)(i * 7 + i / 251);
	pair_open(&p, 4096);
	size_t taken = 0, have = 0;
	ssize_t n;
	while ((n = dv_tls_write(p.srv, out + taken, 16384)) > 0)
		taken += (size_t)n;
	assert_int_equal(n, DV_TLS_WANT_WRITE);
	assert_true(taken < OUT);
	assert_true(dv_tls_unsent(p.srv) > 0);
	/* blocked: nothing new is taken */
	assert_int_equal(dv_tls_write(p.srv, out + taken, 16384),
			 DV_TLS_WANT_WRITE);
	/* the client reads; flushes send the rest */
	int ret = DV_TLS_WANT_WRITE;
	for (int i = 0; i < 10000 && ret == DV_TLS_WANT_WRITE; i++) {
		assert_false(client_drain(&p, in, OUT, &have));
		ret = dv_tls_flush(p.srv);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(dv_tls_unsent(p.srv), 0);
	/* more, then close_notify while some of it is still unsent */
	while ((n = dv_tls_write(p.srv, out + taken, 16384)) > 0 &&
	       dv_tls_unsent(p.srv) == 0)
		taken += (size_t)n;
	if (n > 0)
		taken += (size_t)n;
	assert_true(dv_tls_unsent(p.srv) > 0);
	dv_tls_shutdown(p.srv);
	bool eof = false;
	for (int i = 0; i < 10000 && !eof; i++) {
		eof = client_drain(&p, in, OUT, &have);
		(void)dv_tls_flush(p.srv);
	}
	assert_true(eof);
	assert_int_equal(have, taken);
	assert_memory_equal(in, out, taken);
	pair_close(&p);
	free(out);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_read_takes_every_record),
		cmocka_unit_test(test_small_buffer_keeps_the_rest),
		cmocka_unit_test(test_unsent_records_kept_then_close_notify),
	};
	assert_int_equal(dv_tls_init(3600), 0);
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	dv_tls_thread_exit();
	dv_tls_cleanup();
	return ret;
}

/*
 * Unit tests for src/tls/tls13_rec.c, our TLS 1.3 record layer after the
 * handshake, two ways:
 *  - against wolfSSL itself: a server connection of the seam (dv_tls_new)
 *    and a plain wolfSSL client over a socket pair, for each of the three
 *    suites: the record layer takes over (wolfSSL's object is gone), data
 *    goes both ways, records the client sent right behind its Finished are
 *    not lost, a client KeyUpdate is followed, a record with a flipped
 *    byte closes the connection, close_notify ends it; TLS 1.2 stays on
 *    wolfSSL;
 *  - two record layers facing each other (a server and its mirror image),
 *    for what a wolfSSL client does not send: KeyUpdate with and without
 *    update_requested, several requests answered once, padding, alerts,
 *    bad headers, a sequence number at its end.
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

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "src/core/errors.h"
#include "src/tls/tls.h"
#include "src/tls/tls13_rec.h"
#include "src/tls/tls_int.h"

#include "tests/unit/tls_test_cert.h"

typedef struct {
	int fd[2];
	char cert[32], key[32];
	dv_tls_ctx_t *sctx;
	WOLFSSL_CTX *cctx;
	WOLFSSL *cli;
	dv_tls_t *srv;
} pair_t;

/* The client's wolfSSL call `ret` wants to wait for the server. */
static bool cli_waits(WOLFSSL *cli, int ret)
{
	int e = wolfSSL_get_error(cli, ret);
	return e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE;
}

/*
 * A server connection of the seam and a wolfSSL client limited to
 * `suites` (and to TLS 1.2 with `tls12`).  With `early` > 0 the client
 * writes that many 40-byte records as soon as its handshake is done,
 * before the server has read its Finished: they arrive with it.
 */
static void pair_open(pair_t *p, const char *suites, bool tls12, int early,
		      uint8_t *sent)
{
	memset(p, 0, sizeof(*p));
	p->sctx = tls_test_server(p->cert, p->key, p->fd);
	p->cctx = wolfSSL_CTX_new(tls12 ? wolfTLSv1_2_client_method()
					: wolfTLSv1_3_client_method());
	assert_non_null(p->cctx);
	wolfSSL_CTX_set_verify(p->cctx, WOLFSSL_VERIFY_NONE, NULL);
	assert_int_equal(wolfSSL_CTX_set_cipher_list(p->cctx, suites),
			 WOLFSSL_SUCCESS);
	p->srv = dv_tls_new(p->sctx, p->fd[0]);
	assert_non_null(p->srv);
	p->cli = wolfSSL_new(p->cctx);
	assert_non_null(p->cli);
	assert_int_equal(wolfSSL_set_fd(p->cli, p->fd[1]), WOLFSSL_SUCCESS);
	char alpn_dot[] = "dot";
	assert_int_equal(wolfSSL_UseALPN(p->cli, alpn_dot, 3,
					 WOLFSSL_ALPN_FAILED_ON_MISMATCH),
			 WOLFSSL_SUCCESS);
	int s = 1, c = 0;
	for (int i = 0; i < 100 && (s || c != WOLFSSL_SUCCESS); i++) {
		if (c != WOLFSSL_SUCCESS) {
			c = wolfSSL_connect(p->cli);
			if (c == WOLFSSL_SUCCESS && early) {
				for (int k = 0; k < early; k++) {
					uint8_t *m = sent + 40 * k;
					memset(m, 'A' + k % 26, 40);
					m[0] = (uint8_t)k;
					assert_int_equal(
						wolfSSL_write(p->cli, m, 40),
						40);
				}
			}
			assert_true(c == WOLFSSL_SUCCESS ||
				    cli_waits(p->cli, c));
		}
		if (s)
			s = dv_tls_handshake(p->srv);
		assert_true(s == 0 || s == DV_TLS_WANT_READ ||
			    s == DV_TLS_WANT_WRITE);
	}
	assert_int_equal(s, 0);
	assert_int_equal(c, WOLFSSL_SUCCESS);
	assert_string_equal(dv_tls_alpn(p->srv), "dot");
}

static void pair_close(pair_t *p)
{
	dv_tls_free(p->srv);
	wolfSSL_free(p->cli);
	close(p->fd[0]);
	close(p->fd[1]);
	dv_tls_ctx_free(p->sctx);
	wolfSSL_CTX_free(p->cctx);
	unlink(p->cert);
	unlink(p->key);
}

/* Read at most `cap` bytes at the server until `want` arrived. */
static size_t srv_read(pair_t *p, uint8_t *buf, size_t want, size_t cap)
{
	size_t have = 0;
	for (int i = 0; i < 1000 && have < want; i++) {
		size_t room = want - have < cap ? want - have : cap;
		ssize_t n = dv_tls_read(p->srv, buf + have, room);
		if (n == DV_TLS_WANT_READ)
			continue;
		assert_true(n > 0);
		have += (size_t)n;
	}
	return have;
}

/* The client reads exactly `len` bytes. */
static void cli_read(pair_t *p, uint8_t *buf, size_t len)
{
	size_t have = 0;
	for (int i = 0; i < 1000 && have < len; i++) {
		int n = wolfSSL_read(p->cli, buf + have, (int)(len - have));
		if (n > 0)
			have += (size_t)n;
		else
			assert_true(cli_waits(p->cli, n));
	}
	assert_int_equal(have, len);
}

/* Both ways, `rounds` times: the client's records in, ours out. */
static void exchange(pair_t *p, int rounds)
{
	uint8_t msg[300], got[300];
	for (int r = 0; r < rounds; r++) {
		for (size_t i = 0; i < sizeof(msg); i++)
			msg[i] = (uint8_t)(i * 31 + (size_t)r);
		assert_int_equal(wolfSSL_write(p->cli, msg, sizeof(msg)),
				 sizeof(msg));
		assert_int_equal(srv_read(p, got, sizeof(msg), sizeof(got)),
				 sizeof(msg));
		assert_memory_equal(got, msg, sizeof(msg));
		msg[0] ^= 0x5a;
		assert_int_equal(dv_tls_write(p->srv, msg, sizeof(msg)),
				 sizeof(msg));
		cli_read(p, got, sizeof(msg));
		assert_memory_equal(got, msg, sizeof(msg));
	}
}

static const char *const suites[] = {
	"TLS13-AES128-GCM-SHA256",
	"TLS13-AES256-GCM-SHA384",
	"TLS13-CHACHA20-POLY1305-SHA256",
};

/* Each suite: the record layer takes over, data goes both ways, and the
 * records sent right behind the Finished all arrive. */
static void test_each_suite_both_ways(void **state)
{
	(void)state;
	for (size_t s = 0; s < 3; s++) {
		pair_t p;
		uint8_t sent[40 * 30], got[40 * 30];
		pair_open(&p, suites[s], false, 30, sent);
		assert_non_null(p.srv->rec);
		assert_null(p.srv->ssl);
		assert_string_equal(dv_tls_version(p.srv), "TLSv1.3");
		assert_int_equal(srv_read(&p, got, sizeof(sent), 100),
				 sizeof(sent));
		assert_memory_equal(got, sent, sizeof(sent));
		exchange(&p, 3);
		pair_close(&p);
	}
}

/* wolfSSL_update_keys(): the client moves to new keys (and asks us to);
 * it goes on reading and writing. */
static void test_client_key_update(void **state)
{
	(void)state;
	for (size_t s = 0; s < 3; s++) {
		pair_t p;
		pair_open(&p, suites[s], false, 0, NULL);
		assert_non_null(p.srv->rec);
		exchange(&p, 1);
		for (int k = 0; k < 3; k++) {
			int r = wolfSSL_update_keys(p.cli);
			assert_true(r == WOLFSSL_SUCCESS || cli_waits(p.cli, r));
			exchange(&p, 2);
		}
		pair_close(&p);
	}
}

/* A TLS 1.2 client stays on wolfSSL. */
static void test_tls12_stays_on_wolfssl(void **state)
{
	(void)state;
	pair_t p;
	pair_open(&p, "ECDHE-ECDSA-AES128-GCM-SHA256", true, 0, NULL);
	assert_null(p.srv->rec);
	assert_non_null(p.srv->ssl);
	exchange(&p, 2);
	pair_close(&p);
}

/* A flipped byte: the read fails (bad_record_mac goes to the client). */
static void test_flipped_byte_fails(void **state)
{
	(void)state;
	for (size_t s = 0; s < 3; s++) {
		pair_t p;
		uint8_t buf[512], got[64];
		pair_open(&p, suites[s], false, 0, NULL);
		exchange(&p, 1);
		assert_int_equal(wolfSSL_write(p.cli, "0123456789", 10), 10);
		/* take the record off the server's end, flip, send it back */
		ssize_t n = recv(p.fd[0], buf, sizeof(buf), 0);
		assert_true(n > 20);
		buf[n - 20] ^= 1;
		assert_int_equal(send(p.fd[1], buf, (size_t)n, 0), n);
		assert_int_equal(dv_tls_read(p.srv, got, sizeof(got)),
				 -EBADMSG);
		int r = wolfSSL_read(p.cli, got, sizeof(got));
		assert_true(r <= 0);
		assert_false(cli_waits(p.cli, r)); /* the alert arrived */
		pair_close(&p);
	}
}

/* close_notify from the client ends the stream; ours reaches it. */
static void test_close_notify(void **state)
{
	(void)state;
	pair_t p;
	uint8_t got[64];
	pair_open(&p, suites[0], false, 0, NULL);
	exchange(&p, 1);
	(void)wolfSSL_shutdown(p.cli);
	assert_int_equal(dv_tls_read(p.srv, got, sizeof(got)), DV_TLS_EOF);
	dv_tls_shutdown(p.srv);
	int r = wolfSSL_shutdown(p.cli);
	assert_int_equal(r, WOLFSSL_SUCCESS);
	pair_close(&p);
}

/* ---- two record layers facing each other ---- */

static const uint8_t sec_c[48] = "client application traffic secret 0 (test)....";
static const uint8_t sec_s[48] = "server application traffic secret 0 (test)....";

typedef struct {
	dv_tls13_rec_t *srv, *cli; /* cli: the client's view (mirror) */
	uint8_t buf[DV_TLS13_MAX_BODY + 512];
} mirror_t;

static void mirror_open(mirror_t *m, unsigned suite)
{
	m->srv = dv_tls13_rec_new(suite, sec_c, 0, sec_s, 0);
	m->cli = dv_tls13_rec_new(suite, sec_s, 0, sec_c, 0);
	assert_non_null(m->srv);
	assert_non_null(m->cli);
}

static void mirror_close(mirror_t *m)
{
	dv_tls13_rec_free(m->srv);
	dv_tls13_rec_free(m->cli);
}

/* Seal at `from`, open at `to`: the result of open. */
static int pass(mirror_t *m, dv_tls13_rec_t *from, dv_tls13_rec_t *to,
		uint8_t type, const void *pt, size_t len, uint8_t **out,
		size_t *out_len)
{
	ssize_t n = dv_tls13_rec_seal(from, type, pt, len, m->buf,
				      sizeof(m->buf));
	assert_true(n > 0);
	size_t off = 0;
	int ret = 0;
	/* a KeyUpdate may come first */
	while (off < (size_t)n) {
		ssize_t w = dv_tls13_rec_len(m->buf + off, (size_t)n - off);
		assert_true(w > 0);
		ret = dv_tls13_rec_open(to, m->buf + off, (size_t)w, out,
					out_len);
		off += (size_t)w;
		if (ret != 0)
			break;
	}
	return ret;
}

static void both_ways(mirror_t *m)
{
	uint8_t *pt;
	size_t n;
	assert_int_equal(pass(m, m->cli, m->srv, DV_TLS13_APPDATA, "query", 5,
			      &pt, &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(pt, "query", 5);
	assert_int_equal(pass(m, m->srv, m->cli, DV_TLS13_APPDATA, "answer",
			      6, &pt, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(pt, "answer", 6);
}

static const unsigned suite_ids[] = { DV_TLS13_AES_128_GCM_SHA256,
				      DV_TLS13_AES_256_GCM_SHA384,
				      DV_TLS13_CHACHA20_POLY1305_SHA256 };

/* The mirror (the client) sends a KeyUpdate; the server opens it. */
static void client_update(mirror_t *m, bool request)
{
	uint8_t *pt;
	size_t n;
	ssize_t k = dv_tls13_rec_update(m->cli, request, m->buf, sizeof(m->buf));
	assert_true(k > 0);
	assert_int_equal(dv_tls13_rec_open(m->srv, m->buf, (size_t)k, &pt, &n),
			 0);
	assert_int_equal(n, 0);
}

/* KeyUpdate without and with update_requested; two requests before we
 * send anything get one KeyUpdate. */
static void test_key_update_both_kinds(void **state)
{
	(void)state;
	for (size_t s = 0; s < 3; s++) {
		mirror_t m;
		uint8_t *pt;
		size_t n;
		mirror_open(&m, suite_ids[s]);
		both_ways(&m);
		/* not requested: the client's keys move, ours stay */
		client_update(&m, false);
		assert_false(dv_tls13_rec_owes(m.srv));
		both_ways(&m);
		/* requested twice: one KeyUpdate back, in front of the next
		 * record; the mirror follows it */
		client_update(&m, true);
		client_update(&m, true);
		assert_true(dv_tls13_rec_owes(m.srv));
		ssize_t w = dv_tls13_rec_seal(m.srv, DV_TLS13_APPDATA, "a1", 2,
					      m.buf, sizeof(m.buf));
		assert_true(w > 0);
		ssize_t k = dv_tls13_rec_len(m.buf, (size_t)w);
		assert_true(k > 0 && k < w); /* two records */
		assert_int_equal(dv_tls13_rec_open(m.cli, m.buf, (size_t)k, &pt,
						   &n), 0);
		assert_int_equal(n, 0);
		assert_int_equal(dv_tls13_rec_open(m.cli, m.buf + k,
						   (size_t)(w - k), &pt, &n),
				 0);
		assert_int_equal(n, 2);
		assert_memory_equal(pt, "a1", 2);
		assert_false(dv_tls13_rec_owes(m.srv));
		both_ways(&m);
		/* requested, answered by a flush alone */
		client_update(&m, true);
		k = dv_tls13_rec_flush(m.srv, m.buf, sizeof(m.buf));
		assert_true(k > 0);
		assert_int_equal(dv_tls13_rec_open(m.cli, m.buf, (size_t)k, &pt,
						   &n), 0);
		assert_int_equal(dv_tls13_rec_flush(m.srv, m.buf, sizeof(m.buf)),
				 0);
		both_ways(&m);
		mirror_close(&m);
	}
}

/* Handshake messages other than a lone KeyUpdate, alerts, empty and
 * padded records. */
static void test_inner_content(void **state)
{
	(void)state;
	static const uint8_t nst[] = { 4, 0, 0, 1, 0 };
	static const uint8_t fin[] = { 20, 0, 0, 0 };
	static const uint8_t ku_bad[] = { 24, 0, 0, 1, 2 };
	static const uint8_t ku_two[] = { 24, 0, 0, 1, 0, 24, 0, 0, 1, 0 };
	static const uint8_t ku_short[] = { 24, 0, 0 };
	static const uint8_t ku_long[] = { 24, 0, 0, 2, 0, 0 };
	static const uint8_t close_notify[] = { 1, 0 }, fatal[] = { 2, 40 };
	struct {
		uint8_t type;
		const uint8_t *pt;
		size_t len;
		int ret;
		uint8_t alert;
	} cases[] = {
		{ DV_TLS13_HANDSHAKE, nst, sizeof(nst), -EPROTO,
		  DV_TLS13_UNEXPECTED_MESSAGE },
		{ DV_TLS13_HANDSHAKE, fin, sizeof(fin), -EPROTO,
		  DV_TLS13_UNEXPECTED_MESSAGE },
		{ DV_TLS13_HANDSHAKE, ku_bad, sizeof(ku_bad), -EPROTO,
		  DV_TLS13_ILLEGAL_PARAMETER },
		{ DV_TLS13_HANDSHAKE, ku_two, sizeof(ku_two), -EPROTO,
		  DV_TLS13_UNEXPECTED_MESSAGE },
		{ DV_TLS13_HANDSHAKE, ku_long, sizeof(ku_long), -EPROTO,
		  DV_TLS13_DECODE_ERROR },
		{ DV_TLS13_HANDSHAKE, ku_short, sizeof(ku_short), -EPROTO,
		  DV_TLS13_UNEXPECTED_MESSAGE },
		{ DV_TLS13_ALERT, close_notify, 2, DV_TLS_EOF, 0 },
		{ DV_TLS13_ALERT, fatal, 2, -ECONNRESET, DV_TLS13_NO_ALERT },
		{ 20, close_notify, 1, -EPROTO, DV_TLS13_UNEXPECTED_MESSAGE },
		{ 0, close_notify, 1, -EPROTO, DV_TLS13_UNEXPECTED_MESSAGE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mirror_t m;
		uint8_t *pt;
		size_t n;
		mirror_open(&m, DV_TLS13_AES_128_GCM_SHA256);
		assert_int_equal(pass(&m, m.cli, m.srv, cases[i].type,
				      cases[i].pt, cases[i].len, &pt, &n),
				 cases[i].ret);
		if (cases[i].ret != DV_TLS_EOF)
			assert_int_equal(dv_tls13_rec_alert_for(m.srv),
					 cases[i].alert);
		mirror_close(&m);
	}
	/* an empty application data record, and one with zero padding */
	mirror_t m;
	uint8_t *pt;
	size_t n;
	mirror_open(&m, DV_TLS13_CHACHA20_POLY1305_SHA256);
	assert_int_equal(pass(&m, m.cli, m.srv, DV_TLS13_APPDATA, "", 0, &pt,
			      &n), 0);
	assert_int_equal(n, 0);
	uint8_t padded[8] = { 'x', 'y', DV_TLS13_APPDATA, 0, 0, 0, 0, 0 };
	/* sealed as type 0 with the real type inside: the last non-zero
	 * byte is the type */
	assert_int_equal(pass(&m, m.cli, m.srv, 0, padded, sizeof(padded),
			      &pt, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(pt, "xy", 2);
	mirror_close(&m);
}

/* Headers no TLS 1.3 peer sends, a record that does not authenticate,
 * a sequence number at its end. */
static void test_bad_records(void **state)
{
	(void)state;
	uint8_t h[5] = { 23, 3, 3, 0, 17 };
	assert_int_equal(dv_tls13_rec_len(h, 4), 0);
	assert_int_equal(dv_tls13_rec_len(h, 5), 0);
	h[0] = 20;
	assert_int_equal(dv_tls13_rec_len(h, 5), -EPROTO);
	h[0] = 23;
	h[2] = 1;
	assert_int_equal(dv_tls13_rec_len(h, 5), -EPROTO);
	h[2] = 3;
	h[3] = 0x41;
	h[4] = 1; /* 2^14 + 257 */
	assert_int_equal(dv_tls13_rec_len(h, 5), -EMSGSIZE);
	h[3] = 0;
	h[4] = 16;
	assert_int_equal(dv_tls13_rec_len(h, 5), -EPROTO);

	for (size_t s = 0; s < 3; s++) {
		mirror_t m;
		uint8_t *pt;
		size_t n;
		mirror_open(&m, suite_ids[s]);
		ssize_t w = dv_tls13_rec_seal(m.cli, DV_TLS13_APPDATA, "abc", 3,
					      m.buf, sizeof(m.buf));
		assert_true(w > 0);
		m.buf[6] ^= 0x80;
		assert_int_equal(dv_tls13_rec_open(m.srv, m.buf, (size_t)w, &pt,
						   &n), -EBADMSG);
		assert_int_equal(dv_tls13_rec_alert_for(m.srv),
				 DV_TLS13_BAD_RECORD_MAC);
		mirror_close(&m);
	}
	/* the last sequence number is not used */
	dv_tls13_rec_t *srv = dv_tls13_rec_new(DV_TLS13_AES_128_GCM_SHA256,
					       sec_c, UINT64_MAX, sec_s,
					       UINT64_MAX);
	assert_non_null(srv);
	uint8_t buf[64];
	assert_int_equal(dv_tls13_rec_seal(srv, DV_TLS13_APPDATA, "a", 1, buf,
					   sizeof(buf)),
			 -EOVERFLOW);
	dv_tls13_rec_free(srv);
	/* a suite not handled */
	assert_null(dv_tls13_rec_new(0x1304, sec_c, 0, sec_s, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_suite_both_ways),
		cmocka_unit_test(test_client_key_update),
		cmocka_unit_test(test_tls12_stays_on_wolfssl),
		cmocka_unit_test(test_flipped_byte_fails),
		cmocka_unit_test(test_close_notify),
		cmocka_unit_test(test_key_update_both_kinds),
		cmocka_unit_test(test_inner_content),
		cmocka_unit_test(test_bad_records),
	};
	assert_int_equal(dv_tls_init(3600), 0);
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	dv_tls_thread_exit();
	dv_tls_cleanup();
	return ret;
}

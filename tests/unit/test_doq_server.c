/*
 * Unit tests for the DoQ server engine (src/proto/doq_server.c): the
 * client engine and the server engine talk to each other in memory, on a
 * fake clock, without a socket -- a query's round trip (answered later,
 * and answered from inside on_query), Retry and its token, a protocol
 * error, TLS data after the handshake (the session is shed by then),
 * draining, an answer that comes after its connection ended, and
 * datagrams that are not QUIC.
 *
 * With DV_DOQ_SERVER_SEEDS=DIR the round trip also writes what the client
 * sent, as a seed for fuzz/fuzz_doq_server.c (its input layout).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "fuzz/quic_test.h"
#include "src/core/errors.h"
#include "src/core/wire.h"
#include "src/proto/doq_client.h"
#include "src/proto/doq_client_int.h" /* its ngtcp2_conn */
#include "src/proto/doq_server.h"

#define MS 1000000ull
#define WALL0 1700000000000000000ull

typedef struct {
	uint8_t data[2048];
	size_t len;
} dgram_t;

typedef struct {
	/* the server */
	dv_doq_server_t *srv;
	dv_stats_t st;
	uint8_t txbuf[DV_DOQ_SERVER_TX_MAX];
	dgram_t to_client[64];
	unsigned n_to_client;
	dv_doq_sconn_t *conn;
	uint64_t timer_at;
	unsigned conns_ended;
	dv_doq_sstream_t *held[8];
	unsigned n_held, n_queries;
	bool answer_at_once;
	int query_rv;
	char failure[160];
	/* the client */
	dv_doq_client_t *c;
	unsigned messages, ends;
	dv_doq_end_t how;
	uint8_t answer[512];
	size_t answer_len;
	/* both */
	uint64_t now;
	dv_quic_path_t spath, cpath;
	FILE *seed; /* DV_DOQ_SERVER_SEEDS */
	dv_doq_server_retry_t retry;
	uint64_t seed_at;
} pair_t;

static char cert_dir[256], cert_file[256], key_file[256];
static dv_quic_tls_ctx_t *server_tls, *client_tls;
static const uint8_t secret[32] = {1, 2, 3, 4, 5, 6, 7, 8};

/* ---- the server's callbacks ---- */

static uint8_t *t_tx_buf(void *app)
{
	return ((pair_t *)app)->txbuf;
}

static void t_tx_send(void *app, size_t len, const struct sockaddr *peer,
		      socklen_t peer_len, const struct sockaddr *local)
{
	pair_t *p = app;
	(void)local;
	assert_int_equal(peer_len, p->spath.remote_len);
	assert_memory_equal(peer, &p->spath.remote, peer_len);
	assert_true(p->n_to_client < 64);
	dgram_t *d = &p->to_client[p->n_to_client++];
	memcpy(d->data, p->txbuf, len);
	d->len = len;
}

/* The answer: the query with QR set. */
static void answer(pair_t *p, dv_doq_sstream_t *s, const uint8_t *msg,
		   size_t len)
{
	uint8_t a[512];
	memcpy(a, msg, len);
	a[2] |= 0x80;
	dv_doq_server_answer(s, a, len, p->now);
}

static uint8_t held_msg[8][512];
static size_t held_len[8];

static int t_query(void *app, dv_doq_sconn_t *c, dv_doq_sstream_t *s,
		   int64_t stream_id, const uint8_t *msg, size_t len)
{
	pair_t *p = app;
	assert_ptr_equal(c, p->conn);
	assert_true(stream_id % 4 == 0); /* client-initiated bidi */
	socklen_t plen;
	const struct sockaddr *peer = dv_doq_sconn_peer(c, &plen);
	assert_memory_equal(peer, &p->spath.remote, plen);
	assert_ptr_equal(dv_doq_server_app(dv_doq_server_of(s)), p);
	p->n_queries++;
	if (p->query_rv)
		return p->query_rv;
	if (p->answer_at_once) {
		answer(p, s, msg, len);
		return 0;
	}
	assert_true(p->n_held < 8 && len <= 512);
	memcpy(held_msg[p->n_held], msg, len);
	held_len[p->n_held] = len;
	p->held[p->n_held++] = s;
	return 0;
}

static void t_timer(void *app, dv_doq_sconn_t *c, uint64_t at)
{
	pair_t *p = app;
	p->conn = c;
	p->timer_at = at;
}

static void t_conn_end(void *app, dv_doq_sconn_t *c)
{
	pair_t *p = app;
	if (p->conn == c)
		p->timer_at = UINT64_MAX;
	p->conns_ended++;
}

static void t_failure(void *app, dv_doq_sconn_t *c, const char *what,
		      const char *why)
{
	(void)c;
	pair_t *p = app;
	snprintf(p->failure, sizeof(p->failure), "%s: %s", what, why);
}

static const dv_doq_server_callbacks_t server_cb = {
	.tx_buf = t_tx_buf,
	.tx_send = t_tx_send,
	.on_query = t_query,
	.on_timer = t_timer,
	.on_conn_end = t_conn_end,
	.on_failure = t_failure,
};

/* ---- the client's callbacks ---- */

static void t_message(void *app, void *query, int64_t stream_id,
		      const uint8_t *msg, size_t len, uint64_t sent_at,
		      uint64_t now)
{
	(void)query;
	(void)stream_id;
	(void)sent_at;
	(void)now;
	pair_t *p = app;
	p->messages++;
	assert_true(len <= sizeof(p->answer));
	memcpy(p->answer, msg, len);
	p->answer_len = len;
}

static void t_end(void *app, void *query, int64_t stream_id,
		  const dv_doq_result_t *res, uint64_t now)
{
	(void)query;
	(void)stream_id;
	(void)now;
	pair_t *p = app;
	p->ends++;
	p->how = res->how;
}

static const dv_doq_callbacks_t client_cb = {
	.on_message = t_message,
	.on_end = t_end,
};

/* ---- the pair ---- */

static void pair_init(pair_t *p, dv_doq_server_retry_t retry)
{
	memset(p, 0, sizeof(*p));
	p->now = 1000 * MS;
	p->timer_at = UINT64_MAX;
	dv_test_server_path(&p->spath, false);
	p->cpath.local = p->spath.remote;
	p->cpath.local_len = p->spath.remote_len;
	p->cpath.remote = p->spath.local;
	p->cpath.remote_len = p->spath.local_len;
	dv_doq_server_config_t cfg;
	dv_test_server_config(&cfg, server_tls, &p->st, secret, sizeof(secret),
			      16, retry);
	p->retry = retry;
	p->srv = dv_doq_server_new(&cfg, &server_cb, p);
	assert_non_null(p->srv);
	dv_doq_config_t ccfg = {
		.tls = client_tls,
		.name = DV_TEST_CERT_NAME,
		.query_timeout = 5000 * MS,
		.handshake_timeout = 5000 * MS,
	};
	char err[256];
	p->c = dv_doq_client_new(&ccfg, &client_cb, p, &p->cpath, p->now, err,
				 sizeof(err));
	assert_non_null(p->c);
}

/* With DV_DOQ_SERVER_SEEDS, what the client sends goes to DIR/`name` */
static void pair_seed(pair_t *p, const char *name)
{
	const char *dir = getenv("DV_DOQ_SERVER_SEEDS");
	if (!dir || !*dir)
		return;
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	p->seed = fopen(path, "wb");
	/* fuzz_doq_server: flags (the retry policy, answers held), then
	 * (ms since the last, length, datagram) records */
	if (p->seed)
		fputc((int)p->retry, p->seed);
	p->seed_at = p->now;
}

static void pair_free(pair_t *p)
{
	dv_doq_client_free(p->c);
	dv_doq_server_free(p->srv);
	if (p->seed)
		fclose(p->seed);
}

static void seed_record(pair_t *p, const uint8_t *d, size_t len)
{
	if (!p->seed)
		return;
	uint64_t ms = (p->now - p->seed_at) / MS;
	fputc(ms > 255 ? 255 : (int)ms, p->seed);
	fputc((int)(len >> 8), p->seed);
	fputc((int)(len & 0xff), p->seed);
	fwrite(d, 1, len, p->seed);
	p->seed_at = p->now;
}

/* One round: the client's datagrams to the server, the server's back,
 * then the clock moves 1 ms and due timers run. */
static void round_trip(pair_t *p)
{
	uint8_t buf[2048];
	void *ctx;
	int n;
	while ((n = dv_doq_client_write(p->c, buf, sizeof(buf), &ctx,
					p->now)) > 0) {
		seed_record(p, buf, (size_t)n);
		dv_doq_server_read(p->srv, &p->spath, buf, (size_t)n, p->now,
				   WALL0 + p->now);
	}
	for (unsigned i = 0; i < p->n_to_client; i++)
		(void)dv_doq_client_read(p->c, &p->cpath,
					 p->to_client[i].data,
					 p->to_client[i].len, p->now);
	p->n_to_client = 0;
	p->now += MS;
	if (p->timer_at <= p->now) {
		p->timer_at = UINT64_MAX;
		dv_doq_server_expire(p->srv, p->conn, p->now);
	}
	if (dv_doq_client_expiry(p->c) <= p->now)
		(void)dv_doq_client_expire(p->c, p->now);
}

static void run_until(pair_t *p, bool (*done)(pair_t *p))
{
	for (unsigned i = 0; i < 2000 && !done(p); i++)
		round_trip(p);
	assert_true(done(p));
}

static bool one_query(pair_t *p)
{
	return p->n_queries >= 1;
}
static bool one_end(pair_t *p)
{
	return p->ends >= 1;
}
static bool client_closed(pair_t *p)
{
	return dv_doq_client_is_closed(p->c);
}
static bool conn_ended(pair_t *p)
{
	return p->conns_ended >= 1;
}

static void submit(pair_t *p, uint16_t id)
{
	uint8_t q[512];
	int n = dv_doq_build_query(q, sizeof(q), "www.example.test", 1, id,
				   true);
	assert_true(n > 0);
	assert_int_equal(dv_doq_client_submit(p->c, q, (size_t)n, 0, 0, NULL,
					      p->now),
			 0);
}

/* ---- tests ---- */

static void check_answer(pair_t *p, uint16_t id)
{
	assert_int_equal(p->messages, 1);
	assert_int_equal(p->how, DV_DOQ_END_FIN);
	assert_true(p->answer_len > DV_DNS_HDR);
	assert_int_equal(dv_get16(p->answer), id);
	assert_true(p->answer[2] & 0x80);
}

static void test_round_trip(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	pair_seed(&p, "round_trip.bin");
	submit(&p, 0);
	run_until(&p, one_query);
	assert_int_equal(p.n_held, 1);
	assert_int_equal(p.ends, 0);
	/* answered later, outside any call of the engine */
	answer(&p, p.held[0], held_msg[0], held_len[0]);
	run_until(&p, one_end);
	check_answer(&p, 0);
	/* and from inside on_query */
	p.answer_at_once = true;
	p.messages = p.ends = 0;
	submit(&p, 0);
	run_until(&p, one_end);
	check_answer(&p, 0);
	assert_int_equal(p.st.doq_connections, 1);
	assert_int_equal(p.st.doq_handshakes, 1);
	assert_int_equal(p.st.doq_streams, 2);
	assert_int_equal(p.st.doq_retries, 0);
	assert_int_equal(p.st.doq_half_open, 0);
	assert_int_equal(p.st.doq_half_open_peak, 1);
	dv_doq_stats_t cs;
	dv_doq_client_stats(p.c, &cs);
	assert_true(cs.new_token_received);
	pair_free(&p);
}

static void test_retry(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_ALWAYS);
	pair_seed(&p, "retry.bin");
	p.answer_at_once = true;
	submit(&p, 0);
	run_until(&p, one_end);
	check_answer(&p, 0);
	dv_doq_stats_t cs;
	dv_doq_client_stats(p.c, &cs);
	assert_true(cs.retry_received);
	assert_int_equal(p.st.doq_retries, 1);
	assert_int_equal(p.st.doq_token_ok, 1);
	pair_free(&p);
}

static void test_protocol_error(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	p.answer_at_once = true;
	submit(&p, 0x1234); /* DoQ queries carry id 0 (RFC 9250 §4.2.1) */
	run_until(&p, client_closed);
	dv_doq_close_t ci;
	dv_doq_client_close_info(p.c, &ci);
	assert_true(ci.by_peer);
	assert_true(ci.application);
	assert_int_equal(ci.code, DV_DOQ_PROTOCOL_ERROR);
	assert_int_equal(p.st.doq_protocol_errors, 1);
	assert_int_equal(p.n_queries, 0);
	assert_non_null(strstr(p.failure, "DOQ_PROTOCOL_ERROR"));
	pair_free(&p);
}

static void test_tls_data_after_handshake(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	p.answer_at_once = true;
	submit(&p, 0);
	run_until(&p, one_end);
	check_answer(&p, 0);
	/* the server has shed its TLS session: a TLS message in 1-RTT CRYPTO
	 * (a KeyUpdate, which QUIC forbids) closes the connection with
	 * CRYPTO_ERROR unexpected_message, and nothing reads freed memory */
	static const uint8_t key_update[] = {24, 0, 0, 1, 0};
	assert_int_equal(ngtcp2_conn_submit_crypto_data(
				 p.c->q.conn, NGTCP2_CRYPTO_LEVEL_APPLICATION,
				 key_update, sizeof(key_update)),
			 0);
	run_until(&p, client_closed);
	dv_doq_close_t ci;
	dv_doq_client_close_info(p.c, &ci);
	assert_true(ci.by_peer);
	assert_false(ci.application);
	assert_int_equal(ci.code, 0x100 + 10);
	pair_free(&p);
}

static void test_not_dns(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	p.query_rv = DV_EMALFORMED; /* the core would not take it */
	submit(&p, 0);
	run_until(&p, client_closed);
	dv_doq_close_t ci;
	dv_doq_client_close_info(p.c, &ci);
	assert_int_equal(ci.code, DV_DOQ_PROTOCOL_ERROR);
	assert_string_equal(ci.reason, "not a DNS query");
	assert_int_equal(p.st.doq_streams, 1);
	pair_free(&p);
}

static void test_drain(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	submit(&p, 0);
	run_until(&p, one_query);
	/* the connection stays until its last answer is out */
	dv_doq_server_drain(p.srv, p.now);
	round_trip(&p);
	assert_false(dv_doq_client_is_closed(p.c));
	answer(&p, p.held[0], held_msg[0], held_len[0]);
	run_until(&p, client_closed);
	check_answer(&p, 0);
	dv_doq_close_t ci;
	dv_doq_client_close_info(p.c, &ci);
	assert_true(ci.by_peer);
	assert_int_equal(ci.code, DV_DOQ_NO_ERROR);
	pair_free(&p);
}

static void test_answer_after_close(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	submit(&p, 0);
	run_until(&p, one_query);
	/* the client goes away with the query out */
	uint8_t buf[2048];
	void *ctx;
	int n = dv_doq_client_close(p.c, DV_DOQ_NO_ERROR, buf, sizeof(buf),
				    &ctx, p.now);
	assert_true(n > 0);
	dv_doq_server_read(p.srv, &p.spath, buf, (size_t)n, p.now,
			   WALL0 + p.now);
	run_until(&p, conn_ended);
	/* the stream (and the connection) waited for the answer */
	answer(&p, p.held[0], held_msg[0], held_len[0]);
	assert_int_equal(p.n_to_client, 0);
	pair_free(&p);
}

static void test_not_quic(void **state)
{
	(void)state;
	pair_t p;
	pair_init(&p, DV_DOQ_SERVER_RETRY_NEVER);
	static const uint8_t shorthdr[64] = {0x40, 3, 1, 2, 3};
	static const uint8_t tiny[3] = {0xc0, 0, 0};
	dv_doq_server_read(p.srv, &p.spath, shorthdr, sizeof(shorthdr), p.now,
			   WALL0);
	dv_doq_server_read(p.srv, &p.spath, tiny, sizeof(tiny), p.now, WALL0);
	assert_int_equal(p.st.doq_bad_packets, 2);
	assert_int_equal(p.n_to_client, 0);
	assert_int_equal(p.st.doq_connections, 0);
	pair_free(&p);
}

static int setup(void **state)
{
	(void)state;
	char err[256];
	if (dv_test_cert(cert_dir, cert_file, key_file, sizeof(cert_dir)))
		return -1;
	server_tls = dv_quic_tls_server_ctx_new(cert_file, key_file, "doq",
						false, err, sizeof(err));
	client_tls = dv_quic_tls_client_ctx_new(cert_file, "doq", err,
						sizeof(err));
	if (!server_tls || !client_tls) {
		fprintf(stderr, "TLS contexts: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dv_quic_tls_ctx_free(server_tls);
	dv_quic_tls_ctx_free(client_tls);
	dv_test_cert_remove(cert_dir, cert_file, key_file);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_protocol_error),
		cmocka_unit_test(test_tls_data_after_handshake),
		cmocka_unit_test(test_not_dns),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_answer_after_close),
		cmocka_unit_test(test_not_quic),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

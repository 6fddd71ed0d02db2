/*
 * The DoQ server engine (src/proto/doq_server.c) fed arbitrary datagrams
 * at arbitrary times from one client address, without a socket or a wall
 * clock: version negotiation, Retry and token checks, refusals, the
 * half-open table, Initials that do or do not decrypt, connections' timers
 * (idle, handshake timeout, closing periods), and answers given at once
 * (from inside on_query) or after later datagrams.  Besides memory errors
 * it checks that the engine never writes a datagram larger than
 * DV_DOQ_SERVER_TX_MAX or to an address that did not send to it.
 *
 * Input: byte 0 = flags: bits 0-1 the retry policy (3: never), bit 2
 * answer from inside on_query, bit 3 the client is IPv6; then records of
 * (1 byte: milliseconds since the last one, 2 bytes: length, big endian,
 * the datagram; a short last one takes what is left).  After the last
 * record the clock jumps a minute ahead, so every timer fires.
 *
 * The seeds in fuzz/corpus/doq_server/ are real client flights, written by
 * tests/unit/test_doq_server.c with DV_DOQ_SERVER_SEEDS=DIR.  The server's
 * keys are random on every run, so past the client's first Initial a
 * replayed flight does not decrypt: the handshake itself is the unit
 * test's to check.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/quic_test.h"
#include "src/proto/doq_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			abort();                                             \
	} while (0)

#define MS 1000000ull
#define WALL0 1700000000000000000ull /* as the unit test's seeds */
#define MAX_CONNS 64
#define MAX_HELD 64

typedef struct {
	uint8_t txbuf[DV_DOQ_SERVER_TX_MAX];
	dv_quic_path_t path;
	bool at_once;
	struct {
		dv_doq_sconn_t *c;
		uint64_t at;
	} timers[MAX_CONNS];
	struct {
		dv_doq_sstream_t *s;
		uint8_t msg[512];
		size_t len;
	} held[MAX_HELD];
	unsigned n_held;
	uint64_t now;
} fz_t;

static dv_quic_tls_ctx_t *tls;
static char dir[256], cert[256], key[256];
static const uint8_t secret[32] = {42};

static void cleanup(void)
{
	dv_quic_tls_ctx_free(tls);
	dv_test_cert_remove(dir, cert, key);
}

static uint8_t *f_tx_buf(void *app)
{
	return ((fz_t *)app)->txbuf;
}

static void f_tx_send(void *app, size_t len, const struct sockaddr *peer,
		      socklen_t peer_len, const struct sockaddr *local)
{
	fz_t *f = app;
	(void)local;
	CHECK(len > 0 && len <= DV_DOQ_SERVER_TX_MAX);
	CHECK(peer_len == f->path.remote_len &&
	      memcmp(peer, &f->path.remote, peer_len) == 0);
}

/* The answer: the query with QR set, cut to 512 bytes. */
static void answer(fz_t *f, dv_doq_sstream_t *s, const uint8_t *msg,
		   size_t len)
{
	uint8_t a[512];
	if (len > sizeof(a))
		len = sizeof(a);
	memcpy(a, msg, len);
	if (len > 2)
		a[2] |= 0x80;
	dv_doq_server_answer(s, a, len, f->now);
}

static int f_query(void *app, dv_doq_sconn_t *c, dv_doq_sstream_t *s,
		   int64_t stream_id, const uint8_t *msg, size_t len)
{
	(void)c;
	(void)stream_id;
	fz_t *f = app;
	if (len < 12)
		return -EINVAL; /* as the core: not DNS */
	if (f->at_once || f->n_held == MAX_HELD) {
		answer(f, s, msg, len);
		return 0;
	}
	unsigned i = f->n_held++;
	f->held[i].s = s;
	f->held[i].len = len < 512 ? len : 512;
	memcpy(f->held[i].msg, msg, f->held[i].len);
	return 0;
}

static void f_timer(void *app, dv_doq_sconn_t *c, uint64_t at)
{
	fz_t *f = app;
	unsigned free_slot = MAX_CONNS;
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		if (f->timers[i].c == c) {
			f->timers[i].at = at;
			return;
		}
		if (!f->timers[i].c && free_slot == MAX_CONNS)
			free_slot = i;
	}
	if (free_slot < MAX_CONNS) {
		f->timers[free_slot].c = c;
		f->timers[free_slot].at = at;
	}
}

static void f_conn_end(void *app, dv_doq_sconn_t *c)
{
	fz_t *f = app;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (f->timers[i].c == c)
			f->timers[i].c = NULL;
}

static void f_failure(void *app, dv_doq_sconn_t *c, const char *what,
		      const char *why)
{
	(void)app;
	(void)c;
	CHECK(what && why);
}

static const dv_doq_server_callbacks_t cb = {
	.tx_buf = f_tx_buf,
	.tx_send = f_tx_send,
	.on_query = f_query,
	.on_timer = f_timer,
	.on_conn_end = f_conn_end,
	.on_failure = f_failure,
};

/* Run the timers that are due (each at most once a round: expiring may
 * set them again). */
static void run_timers(dv_doq_server_t *srv, fz_t *f)
{
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		dv_doq_sconn_t *c = f->timers[i].c;
		if (c && f->timers[i].at <= f->now) {
			f->timers[i].at = UINT64_MAX;
			dv_doq_server_expire(srv, c, f->now);
		}
	}
}

static void answer_held(fz_t *f)
{
	for (unsigned i = 0; i < f->n_held; i++)
		answer(f, f->held[i].s, f->held[i].msg, f->held[i].len);
	f->n_held = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!tls) {
		char err[256];
		if (dv_test_cert(dir, cert, key, sizeof(dir)) != 0)
			abort();
		tls = dv_quic_tls_server_ctx_new(cert, key, "doq", true, err,
						 sizeof(err));
		if (!tls)
			abort();
		atexit(cleanup);
	}
	static fz_t f;
	memset(&f, 0, sizeof(f));
	uint8_t flags = data[0];
	static const dv_doq_server_retry_t retry[] = {
		DV_DOQ_SERVER_RETRY_ALWAYS, DV_DOQ_SERVER_RETRY_UNDER_LOAD,
		DV_DOQ_SERVER_RETRY_NEVER, DV_DOQ_SERVER_RETRY_NEVER};
	f.at_once = flags & 4;
	f.now = 1000 * MS;
	dv_test_server_path(&f.path, flags & 8);
	dv_stats_t st;
	memset(&st, 0, sizeof(st));
	dv_doq_server_config_t cfg;
	dv_test_server_config(&cfg, tls, &st, secret, sizeof(secret), 8,
			      retry[flags & 3]);
	dv_doq_server_t *srv = dv_doq_server_new(&cfg, &cb, &f);
	if (!srv)
		return 0;
	size_t off = 1;
	while (off + 3 <= size) {
		f.now += data[off] * MS;
		size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
		off += 3;
		if (len > size - off)
			len = size - off;
		if (len > DV_DOQ_SERVER_RX_MAX)
			len = DV_DOQ_SERVER_RX_MAX; /* the socket's limit */
		if (len)
			dv_doq_server_read(srv, &f.path, data + off, len, f.now,
					   WALL0 + f.now);
		off += len;
		run_timers(srv, &f);
		answer_held(&f);
	}
	f.now += 60000 * MS;
	run_timers(srv, &f);
	run_timers(srv, &f);
	answer_held(&f);
	dv_doq_server_free(srv);
	return 0;
}

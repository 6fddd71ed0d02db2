/*
 * DNS over a byte stream (transports/stream.c with its DNS application,
 * stream_dns.c, through the plain Do53 TCP ops of transports/do53_tcp.c):
 * arbitrary bytes written by a real client socket, split at points the
 * input chooses, into a real worker's TCP listener on 127.0.0.1; framing
 * (dns_input), reading (conn_read), answering (dns_reply), backpressure
 * and the end of a connection all run as in the daemon.
 *
 * The .c files are included to reach the connection structs (this file is
 * linked with dv_core only, never with dv_transports, so nothing is
 * defined twice); including do53_tcp.c registers its transport, and
 * dv_worker_new() opens the listener through it.  The listener binds port
 * 0; the harness reads the port back with getsockname().
 *
 * Queries need answers without a real upstream:
 *  - cached.test/A and big.test/TXT (about 3 KB) are in a cache made for
 *    each input: answered at once, from inside the read callback;
 *  - everything else goes to a UDP "upstream" socket of ours, which
 *    answers (echoing the question, TTL 0 so nothing is cached) only when
 *    the input says, so answers arrive later and out of order, in-flight
 *    limits fill up and reading stops and resumes;
 *  - at the very end whatever is still in flight is failed (SERVFAIL), as
 *    the query deadline would.
 *
 * Checked at the end: the connection is closed and freed, and the client
 * received exactly one well-formed, correctly framed answer per complete
 * message it sent that the core does not drop (12 bytes or more, QR
 * clear), with the ids matching.
 *
 * Time.  Every timeout of dnsveil's is configured far above an input's run
 * time, so none of its timers fires (lingering close is for connections
 * with an application layer, DoH, not Do53 TCP; the serve-stale timer is
 * armed only for keys with a stale answer, and here the cached answers live
 * a week and the upstream's have TTL 0, which the cache does not keep).  A
 * Do53 TCP connection must end by itself once the client has closed its
 * side and every answer is out; no timer of ours is needed for that.
 *
 * The kernel is not synchronous, though: loopback segments and datagrams
 * are delivered from softirq context, which on a busy machine runs late
 * (ksoftirqd waits for a CPU), and TCP's own clocks (delayed ACKs that
 * free a small send buffer, window updates, zero-window probes) run in
 * milliseconds.  Under two CPU hogs the end of an input here went up to
 * 60 ms, with gaps of 20-30 ms in which nothing at all moved: the client's
 * FIN, an upstream round trip or the ACKs a blocked server write waits
 * for.  So the harness never decides that "nothing happens" by counting
 * loop rounds: where it waits for the other side (the accept, a client
 * send that would block, the end of the input) it blocks in the loop
 * (EVRUN_ONCE) on the client's and the upstream's sockets as well as the
 * worker's, and gives up only after STALL_MS of wall-clock time without
 * any progress; fetches still in flight after DEADLINE_MS without progress
 * are failed as the query deadline would.  Everything else runs with
 * EVRUN_NOWAIT, at the points the input chooses.
 *
 * Input:
 *   byte 0: bits 0-1 limits.tcp-max-inflight (1, 2, 4, 128); bit 2
 *           tcp-max-output-bytes 4096 (else 262144); bit 3 small socket
 *           buffers; bit 4 the cache; bit 5 the upstream answers after
 *           every chunk; bit 6 the client reads only at pauses; bit 7 the
 *           upstream answers SERVFAIL (else NOERROR with records)
 *   byte 1: k (low 4 bits): the number of chunk-size bytes that follow
 *   k bytes: chunk sizes, used in turn: 0 = a pause (the upstream answers,
 *           the client reads), 1..199 that many bytes, 200..255
 *           (n - 199) * 64 bytes
 *   the rest: the bytes the client sends (DNS messages with 2-byte length
 *           prefixes, or anything); an input with a PROXY v2 signature
 *           where a message starts is skipped (the connection is closed
 *           there on purpose; test_proxy_protocol checks that)
 */
#include "transports/do53_tcp.c"
#include "transports/sock.c"
#include "transports/stream.c"
#include "transports/stream_buf.c"
#include "transports/stream_budget.c"
#include "transports/stream_dns.c"
#include "transports/stream_listen.c"
#include "transports/stream_proxy.c"

#include <arpa/inet.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "src/core/cache.h"
#include "src/core/log.h"
#include "src/core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			__builtin_trap();                                    \
	} while (0)

/* DV_FUZZ_DEBUG=1 in the environment: say what was sent and received */
static bool debug;
#define DEBUG(...)                                                           \
	do {                                                                 \
		if (debug)                                                   \
			fprintf(stderr, __VA_ARGS__);                        \
	} while (0)

#define STREAM_MAX_INPUT (512 * 1024)
#define MAX_CHUNKS 256
#define MAX_MSGS 4096

static int upstream_fd = -1; /* the UDP "upstream" */
static dv_config_t template_cfg, cfg;

static void setup_once(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	char text[64], err[256];

	debug = getenv("DV_FUZZ_DEBUG") != NULL;
	dv_log_level = debug ? DV_LOG_DEBUG : DV_LOG_ERROR;
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	upstream_fd = socket(AF_INET,
			     SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(upstream_fd >= 0);
	CHECK(bind(upstream_fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(upstream_fd, (struct sockaddr *)&a, &alen) == 0);

	dv_config_defaults(&template_cfg);
	snprintf(text, sizeof(text), "udp://127.0.0.1:%u", ntohs(a.sin_port));
	CHECK(dv_url_parse(text, DV_URL_UPSTREAM, &template_cfg.upstream[0],
			   err, sizeof(err)) == 0);
	template_cfg.n_upstream = 1;
	/* the URL grammar wants a port; the listener takes any free one */
	CHECK(dv_url_parse("tcp://127.0.0.1:1", DV_URL_LISTEN,
			   &template_cfg.listen[0], err, sizeof(err)) == 0);
	((struct sockaddr_in *)&template_cfg.listen[0].addr)->sin_port = 0;
	template_cfg.n_listen = 1;
	/* no timer may fire while an input runs */
	template_cfg.tcp_idle_timeout_ms = 3600000;
	template_cfg.tcp_read_timeout_ms = 600000;
	template_cfg.tls_handshake_timeout_ms = 600000;
	template_cfg.upstream_timeout_ms = 60000;
	template_cfg.query_timeout_ms = 60000;
	template_cfg.hedge_delay_ms = 60000;
	template_cfg.upstream_connections = 1;
}

/* ---- DNS bits ---- */

static size_t put_name(uint8_t *w, const char *name)
{
	size_t pos = 0;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		w[pos++] = (uint8_t)l;
		memcpy(w + pos, name, l);
		pos += l;
		name += l + (dot ? 1 : 0);
	}
	w[pos++] = 0;
	return pos;
}

/* Store an answer for name/type with every DO/CD key bit combination. */
static void prestore(dv_cache_t *c, const char *name, uint16_t type,
		     unsigned n_rr, size_t rdlen)
{
	static uint8_t a[8192];
	uint8_t q[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11];
	dv_put16(a, 0);
	dv_put16(a + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	dv_put16(a + 4, 1);
	dv_put16(a + 6, (uint16_t)n_rr);
	dv_put16(a + 8, 0);
	dv_put16(a + 10, 0);
	size_t pos = DV_DNS_HDR + put_name(a + DV_DNS_HDR, name);
	dv_put16(a + pos, type);
	dv_put16(a + pos + 2, DV_CLASS_IN);
	pos += 4;
	size_t qend = pos;
	for (unsigned i = 0; i < n_rr; i++) {
		dv_put16(a + pos, 0xc00c);
		dv_put16(a + pos + 2, type);
		dv_put16(a + pos + 4, DV_CLASS_IN);
		dv_put32(a + pos + 6, 604800);
		dv_put16(a + pos + 10, (uint16_t)rdlen);
		pos += 12;
		a[pos] = (uint8_t)(rdlen - 1); /* one TXT string, or an A */
		memset(a + pos + 1, 'a' + (int)(i % 26), rdlen - 1);
		pos += rdlen;
	}
	CHECK(pos <= sizeof(a));
	dv_wire_resp_t r;
	CHECK(dv_wire_parse_response(a, pos, &r) == 0);
	for (unsigned bits = 0; bits < 4; bits++) {
		memcpy(q, a, qend);
		dv_put16(q + 2, (bits & 1) ? DV_FLAG_CD : 0);
		dv_put16(q + 6, 0);
		dv_put16(q + 10, 1);
		q[qend] = 0;
		dv_put16(q + qend + 1, DV_TYPE_OPT);
		dv_put16(q + qend + 3, 1232);
		dv_put32(q + qend + 5, (bits & 2) ? 0x8000u : 0);
		dv_put16(q + qend + 9, 0);
		dv_wire_query_t v;
		CHECK(dv_wire_parse_query(q, qend + 11, &v) == 0);
		uint8_t key[DV_WIRE_KEY_MAX];
		size_t kl = dv_wire_key(key, q, &v);
		CHECK(dv_cache_store(c, key, kl, a, pos, &r, dv_now_s()) == 0);
	}
}

/* The upstream answers every query it has received. */
static unsigned upstream_answer(bool servfail)
{
	static uint8_t q[DV_DNS_MAX_MSG + 1], a[4096];
	unsigned n = 0;
	for (;;) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t len = recvfrom(upstream_fd, q, sizeof(q), MSG_DONTWAIT,
				       (struct sockaddr *)&from, &fl);
		if (len < 0)
			return n;
		dv_wire_query_t v;
		if (dv_wire_parse_query(q, (size_t)len, &v) != 0)
			continue;
		size_t pos = v.question_end;
		memcpy(a, q, pos);
		uint16_t flags = DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA |
				 (servfail ? DV_RCODE_SERVFAIL : 0);
		dv_put16(a + 2, flags);
		unsigned n_rr = servfail ? 0 : 1 + (v.id & 7);
		dv_put16(a + 6, (uint16_t)n_rr);
		dv_put16(a + 8, 0);
		dv_put16(a + 10, 0);
		for (unsigned i = 0; i < n_rr; i++) {
			dv_put16(a + pos, 0xc00c);
			dv_put16(a + pos + 2, DV_TYPE_A);
			dv_put16(a + pos + 4, DV_CLASS_IN);
			dv_put32(a + pos + 6, 0); /* not cached */
			dv_put16(a + pos + 10, 4);
			dv_put32(a + pos + 12, 0xc0000200u + i);
			pos += 16;
		}
		sendto(upstream_fd, a, pos, 0, (struct sockaddr *)&from, fl);
		n++;
	}
}

/* ---- the client's side ---- */

typedef struct {
	uint8_t *buf;
	size_t len, cap;
	bool eof;
} rx_t;

/* Read what the server sent.  Returns bytes read. */
static size_t client_read(int fd, rx_t *rx)
{
	size_t total = 0;
	while (!rx->eof) {
		if (rx->cap - rx->len < 65536) {
			size_t cap = rx->cap ? rx->cap * 2 : 131072;
			uint8_t *b = realloc(rx->buf, cap);
			CHECK(b);
			rx->buf = b;
			rx->cap = cap;
		}
		ssize_t n = recv(fd, rx->buf + rx->len, rx->cap - rx->len,
				 MSG_DONTWAIT);
		if (n == 0)
			rx->eof = true;
		if (n <= 0)
			break;
		rx->len += (size_t)n;
		total += (size_t)n;
	}
	return total;
}

static void pump(struct ev_loop *loop)
{
	for (int i = 0; i < 4; i++)
		ev_run(loop, EVRUN_NOWAIT);
}

/* ---- waiting for the other side ---- */

/* No progress at all for this long (wall clock): the connection is stuck.
 * Far above TCP's own timers on loopback (delayed ACK 40 ms, zero-window
 * probe / RTO 200 ms) and scheduling delays on a loaded machine; below the
 * -timeout=10 of run.sh, so a stuck input is reported as the CHECK that
 * failed, with its state, not as a libFuzzer timeout.  Only an input that
 * fails pays it; the others end as soon as their connection does. */
#define STALL_MS 5000
/* No progress for this long with fetches in flight: the query deadline's
 * turn.  The upstream answers everything it receives, so this is rare (a
 * datagram lost, an answer the pool refuses, a slow machine); failing a
 * fetch whose answer is merely late is harmless: its queries still get
 * their one answer, and the late one is dropped as in the daemon. */
#define DEADLINE_MS 100

/* What the harness watches while it blocks: the client's socket and the
 * upstream's, in the worker's own loop, so that ev_run(EVRUN_ONCE) sleeps
 * until anything at all can happen. */
typedef struct {
	struct ev_loop *loop;
	ev_io up, crd, cwr;
	ev_timer tick;
	int cl;
	rx_t *rx;
	bool servfail;
	unsigned answered; /* by the upstream, this input */
} waiter_t;

static void up_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	waiter_t *wt = io->data;
	wt->answered += upstream_answer(wt->servfail);
}

static void crd_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	waiter_t *wt = io->data;
	client_read(wt->cl, wt->rx);
	if (wt->rx->eof)
		ev_io_stop(loop, io); /* EOF stays readable */
}

static void cwr_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	ev_io_stop(loop, io); /* the caller sends */
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
}

static void waiter_init(waiter_t *wt, struct ev_loop *loop, int cl, rx_t *rx,
			bool servfail)
{
	*wt = (waiter_t){.loop = loop, .cl = cl, .rx = rx,
			 .servfail = servfail};
	ev_io_init(&wt->up, up_cb, upstream_fd, EV_READ);
	ev_io_init(&wt->crd, crd_cb, cl, EV_READ);
	ev_io_init(&wt->cwr, cwr_cb, cl, EV_WRITE);
	ev_init(&wt->tick, tick_cb);
	wt->up.data = wt->crd.data = wt->cwr.data = wt->tick.data = wt;
}

static void waiter_stop(waiter_t *wt)
{
	ev_io_stop(wt->loop, &wt->up);
	ev_io_stop(wt->loop, &wt->crd);
	ev_io_stop(wt->loop, &wt->cwr);
	ev_timer_stop(wt->loop, &wt->tick);
}

/* Block until something happens or `ms` passes: the upstream answers and
 * the client reads (and, with `want_write`, waits to be able to send) as
 * the kernel delivers. */
static void waiter_run(waiter_t *wt, bool want_write, uint64_t ms)
{
	ev_io_start(wt->loop, &wt->up);
	if (!wt->rx->eof)
		ev_io_start(wt->loop, &wt->crd);
	if (want_write)
		ev_io_start(wt->loop, &wt->cwr);
	wt->tick.repeat = (double)(ms ? ms : 1) / 1000.0;
	ev_timer_again(wt->loop, &wt->tick);
	ev_run(wt->loop, EVRUN_ONCE);
	waiter_stop(wt);
}

/* A fingerprint of everything that moves: when it stays the same, nothing
 * happened (the harness's own counters, the worker's, the connection's). */
static uint64_t progress(const waiter_t *wt, const dv_worker_t *w,
			 const listener_t *l, size_t sent)
{
	const dv_stats_t *st = &w->stats;
	uint64_t h = 0xcbf29ce484222325ULL;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 0x100000001b3ULL)
	MIX(sent);
	MIX(wt->rx->len);
	MIX(wt->rx->eof);
	MIX(wt->answered);
	MIX(st->queries);
	MIX(st->answers);
	MIX(st->upstream_answers);
	MIX(st->upstream_failures);
	MIX(w->core.inflight);
	MIX(w->core.n_fetches);
	MIX(l->n_conns);
	for (const conn_t *c = l->conns; c; c = c->next) {
		MIX(c->pub.state);
		MIX(c->in_len);
		MIX(c->out_len);
		MIX(c->out_off);
		MIX(c->eof);
		MIX(c->reading);
	}
#undef MIX
	return h;
}

static int cmp_u16(const void *x, const void *y)
{
	return (int)*(const uint16_t *)x - (int)*(const uint16_t *)y;
}

/* The ids of the complete messages in `p` the core answers. */
static size_t expected_ids(const uint8_t *p, size_t len, uint16_t *ids)
{
	size_t off = 0, n = 0;
	while (len - off >= 2) {
		/* a PROXY v2 header where a message starts closes the
		 * connection at once (stream_dns.c): what was sent before it
		 * may or may not be answered, so no exact count to check */
		if (dv_proxy_v2_is_signature(p + off, len - off))
			return MAX_MSGS;
		size_t m = dv_get16(p + off);
		if (len - off - 2 < m)
			break;
		const uint8_t *msg = p + off + 2;
		if (m >= DV_DNS_HDR && !(msg[2] & 0x80)) {
			CHECK(n < MAX_MSGS);
			ids[n++] = dv_get16(msg);
		}
		off += 2 + m;
	}
	return n;
}

/* The answers: frames back to back, each a response. */
static size_t answer_ids(const uint8_t *p, size_t len, uint16_t *ids)
{
	size_t off = 0, n = 0;
	static dv_wire_resp_t r;
	while (off < len) {
		CHECK(len - off >= 2);
		size_t m = dv_get16(p + off);
		CHECK(len - off - 2 >= m);
		const uint8_t *msg = p + off + 2;
		CHECK(m >= DV_DNS_HDR);
		CHECK(dv_get16(msg + 2) & DV_FLAG_QR);
		int ret = dv_wire_parse_response(msg, m, &r);
		/* error answers to malformed queries echo no question */
		CHECK(ret == 0 || ret == DV_ELIMIT || dv_get16(msg + 4) == 0);
		CHECK(n < MAX_MSGS);
		ids[n++] = dv_get16(msg);
		off += 2 + m;
	}
	return n;
}

/* Open file descriptors of this process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Say where a stuck input stopped (before a CHECK fails). */
static void stall_report(const dv_worker_t *w, const listener_t *l,
			 uint64_t idle_ms)
{
	fprintf(stderr, "fuzz_stream: no progress for %llu ms\n",
		(unsigned long long)idle_ms);
	for (const conn_t *c = l->conns; c; c = c->next)
		fprintf(stderr,
			"connection left: state %d eof %d reading %d "
			"inflight %u in_len %zu out_pending %zu busy %u "
			"rio %d wio %d\n",
			c->pub.state, c->eof, c->reading, c->inflight,
			c->in_len, dv_stream_out_pending(c), c->busy,
			ev_is_active(&c->rio), ev_is_active(&c->wio));
	fprintf(stderr, "worker inflight %u, fetches %u\n", w->core.inflight,
		w->core.n_fetches);
}

/* ---- one input ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned inflight[] = {1, 2, 4, 128};
	static uint16_t want[MAX_MSGS], got[MAX_MSGS];
	char err[256];

	if (upstream_fd < 0)
		setup_once();
	if (size < 2 || size > STREAM_MAX_INPUT)
		return 0;
	int fds_before = count_fds();
	uint8_t opt = data[0];
	unsigned k = data[1] & 15;
	if (size < 2 + (size_t)k)
		return 0;
	const uint8_t *sizes = data + 2;
	const uint8_t *payload = data + 2 + k;
	size_t plen = size - 2 - k;
	if (expected_ids(payload, plen, want) >= MAX_MSGS)
		return 0;

	memcpy(&cfg, &template_cfg, sizeof(cfg));
	cfg.tcp_max_inflight = inflight[opt & 3];
	cfg.tcp_max_output_bytes = (opt & 4) ? 4096 : 262144;
	dv_shared_t shared = {.n_workers = 1};
	if (opt & 16) {
		dv_cache_opts_t co = {.size_bytes = 1 << 20,
				      .shards = 1,
				      .max_ttl = 604800,
				      .negative_max_ttl = 3600};
		shared.cache = dv_cache_new(&co);
		CHECK(shared.cache);
		prestore(shared.cache, "cached.test", DV_TYPE_A, 1, 4);
		prestore(shared.cache, "big.test", DV_TYPE_TXT, 12, 250);
	}
	while (recv(upstream_fd, err, sizeof(err), MSG_DONTWAIT) >= 0)
		; /* nothing left over from the previous input */

	dv_worker_t *w = dv_worker_new(0, &cfg, &shared, err, sizeof(err));
	CHECK(w);
	CHECK(w->listeners && !w->listeners->next);
	listener_t *l = w->listeners->state;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	CHECK(getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0);

	int cl = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(cl >= 0);
	if (opt & 8) {
		int small = 4096;
		setsockopt(cl, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		setsockopt(cl, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	}
	int ret = connect(cl, (struct sockaddr *)&ss, sl);
	CHECK(ret == 0 || errno == EINPROGRESS);

	rx_t rx = {0};
	bool answer_always = opt & 32, slow_reader = opt & 64;
	bool servfail = opt & 128;
	waiter_t wt;
	waiter_init(&wt, w->loop, cl, &rx, servfail);
	/* the handshake may not have reached the listener yet */
	pump(w->loop);
	for (uint64_t t0 = dv_now_ms();
	     l->n_conns == 0 && dv_now_ms() - t0 < STALL_MS;)
		waiter_run(&wt, false, 100);
	CHECK(l->n_conns == 1);
	conn_t *c = l->conns;
	if (opt & 8) {
		int small = 4096;
		setsockopt(c->pub.fd, SOL_SOCKET, SO_SNDBUF, &small,
			   sizeof(small));
	}

	size_t off = 0;
	unsigned chunks = 0;
	uint64_t last = 0, since = dv_now_ms();
	while (off < plen) {
		size_t n = plen - off;
		bool pause = false;
		if (k && chunks < MAX_CHUNKS) {
			uint8_t s = sizes[chunks % k];
			if (s == 0)
				pause = true;
			else if (s < 200)
				n = s;
			else
				n = (size_t)(s - 199) * 64;
			if (n > plen - off)
				n = plen - off;
		}
		chunks++;
		bool blocked = false;
		if (!pause) {
			ssize_t sent = send(cl, payload + off, n,
					    MSG_NOSIGNAL | MSG_DONTWAIT);
			if (sent > 0) {
				off += (size_t)sent;
			} else if (sent < 0 && errno == EAGAIN) {
				/* the server stopped reading: let it catch up */
				pause = blocked = true;
			} else {
				break; /* the server closed: judged below */
			}
		}
		pump(w->loop);
		if (pause || answer_always)
			wt.answered += upstream_answer(servfail);
		pump(w->loop);
		if (pause || !slow_reader)
			client_read(cl, &rx);
		pump(w->loop);
		if (blocked) {
			/* sleep until the client can send or anything moves;
			 * a server that never reads again is stuck */
			uint64_t p = progress(&wt, w, l, off);
			if (p != last) {
				last = p;
				since = dv_now_ms();
			}
			if (dv_now_ms() - since >= STALL_MS)
				stall_report(w, l, dv_now_ms() - since);
			CHECK(dv_now_ms() - since < STALL_MS);
			waiter_run(&wt, true, 100);
		}
	}

	/* the client is done sending; everything must be answered */
	shutdown(cl, SHUT_WR);
	/* until the connection is gone and the client has seen its end, as
	 * long as anything moves; the upstream answers and the client reads
	 * whatever arrives */
	last = progress(&wt, w, l, off);
	since = dv_now_ms();
	uint64_t end_start = since, max_idle = 0;
	bool deadline = false;
	while (!(rx.eof && l->n_conns == 0)) {
		uint64_t idle = dv_now_ms() - since;
		if (idle >= STALL_MS)
			break;
		if (w->core.n_fetches && idle >= DEADLINE_MS) {
			deadline = true;
			dv_core_fail_all(&w->core, DV_EDE_OTHER,
					 "fuzz: deadline");
		} else {
			waiter_run(&wt, false,
				   (w->core.n_fetches ? DEADLINE_MS
						      : STALL_MS) -
					   idle);
		}
		uint64_t p = progress(&wt, w, l, off);
		if (p != last) {
			last = p;
			if (dv_now_ms() - since > max_idle)
				max_idle = dv_now_ms() - since;
			since = dv_now_ms();
		}
	}
	waiter_stop(&wt);
	DEBUG("end: %llu ms, longest without progress %llu ms%s\n",
	      (unsigned long long)(dv_now_ms() - end_start),
	      (unsigned long long)max_idle,
	      deadline ? ", fetches failed at the deadline" : "");
	/* the connection ended and is gone, and the client saw the end */
	if (l->n_conns || !rx.eof)
		stall_report(w, l, dv_now_ms() - since);
	CHECK(l->n_conns == 0);
	CHECK(rx.eof);
	CHECK(w->core.inflight == 0);

	size_t n_want = expected_ids(payload, plen, want);
	size_t n_got = answer_ids(rx.buf, rx.len, got);
	DEBUG("sent %zu bytes, %zu messages to answer; received %zu bytes, "
	      "%zu answers\n", plen, n_want, rx.len, n_got);
	for (size_t i = 0; i < n_want || i < n_got; i++)
		DEBUG("  %5zu: sent id %5d  answer id %5d\n", i,
		      i < n_want ? want[i] : -1, i < n_got ? got[i] : -1);
	CHECK(n_got == n_want);
	qsort(want, n_want, sizeof(want[0]), cmp_u16);
	qsort(got, n_got, sizeof(got[0]), cmp_u16);
	CHECK(memcmp(want, got, n_got * sizeof(got[0])) == 0);

	free(rx.buf);
	close(cl);
	dv_worker_free(w);
	dv_cache_free(shared.cache);

	/* every file descriptor the input opened is closed again */
	CHECK(count_fds() == fds_before);
	return 0;
}

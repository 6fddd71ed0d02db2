/*
 * The upstream pool: how answers find their query.  A real worker
 * (dv_worker_new: its libev loop, pool and coalescing table) takes client
 * queries through the real core (dv_query_new + dv_core_submit), which
 * creates fetches that the pool sends over its connections; the input then
 * plays the upstreams: answers (raw, or with the id of a query in flight,
 * or with its question spliced in) go into dv_uconn_answer(), TCP bytes go
 * through the framing of stream_read_cb(), and timers and connection
 * events fire in the order the input says.
 *
 * The pool (src/upstream/server.c, pool.c) and its udp:// and tcp://
 * connection modules (conn_udp.c, conn_stream.c) are included to reach
 * their statics.  This file then defines every public symbol of them, so
 * the linker never pulls their objects out of the dv_upstream archive (no
 * duplicate definitions); the other modules come from the archive, unused.
 * The core (src/core/core.c) is linked from dv_core as the daemon links it.
 *
 * No upstream is real and the loop never runs, so everything is
 * synchronous and an input replays alone:
 *  - udp:// servers point at a UDP socket of ours (so sends succeed); it
 *    is drained and never answers by itself; queries wait in their
 *    connection's send queue until the input ends the loop turn (the
 *    pool's drain watcher), and answers are read on the socket a slot's
 *    query went on;
 *  - tcp:// servers point at a TCP port of ours that is bound but not
 *    listening: connects stay "in progress" and fail with ECONNREFUSED when
 *    the input completes them (stream_write_cb), unless the input first swaps
 *    the connection's socket for one end of a socketpair it holds;
 *  - timer callbacks are called directly (after ev_timer_stop, as libev
 *    does for a one-shot timer);
 *  - the cache's clock is not moved: an answer that has expired is stored
 *    with a time in the past.
 *
 * Checked after every step: slot tables and free lists, attempt <-> slot
 * links, every fetch in the coalescing table with its deadline armed and
 * something in flight.  At the end every remaining fetch is failed and
 * every accepted query must have had exactly one reply (checked in the
 * reply hook too), every reply well formed and for its question; nothing
 * may leak (LeakSanitizer in the libFuzzer build; file descriptors here).
 *
 * Input: byte 0 chooses the configuration (see setup_config), then ops:
 *   [op] [arguments...], op & 7 the kind, op >> 3 an argument:
 *   0 query   [sel] [id hi] : a client query (sel: name, type, DO, CD,
 *                             EDNS, UDP; op bit 3: padded, bit 4: raw:
 *                             [len] [bytes] as the query instead)
 *   1 answer  [conn] [mode] [len hi] [len lo] [bytes] : dv_uconn_answer()
 *                             (udp://: dv_uslot_answer() for the slot)
 *   2 stream  [conn] [mode] [len hi] [len lo] [bytes] : into the TCP
 *                             connection's socket, then stream_read_cb()
 *   3 attempt timeout [fetch] [attempt]
 *   4 hedge timer     [fetch]
 *   5 deadline timer  [fetch]
 *   6 connection event [conn] : op bits 3-4: close (bit 5: as failure),
 *                             connect completes (stream_write_cb), a UDP
 *                             answer through recv ([mode] [len] [bytes]),
 *                             the write watcher fires (bit 5: the upstream
 *                             closes its side of a socketpair instead)
 *   7 op bits 3-5: 0 dv_pool_start() (connects the local TCP
 *     connections); 1 [sel] an answer to query sel (as op 0 builds it)
 *     that expired two minutes ago goes into the cache, inside the
 *     serve-stale window, so that a query for it arms the core's
 *     stale-answer timer (RFC 8767 client response timer); 2 [fetch]
 *     that timer fires; 3 every server's probe timer fires (probes of
 *     down servers); 4 the pool's tick (idle connections, orphans);
 *     5 both; 6 the end of a loop turn: the pool's drain watcher, when
 *     armed (waiting attempts sent, queued datagrams flushed)
 * mode: bit 0 patch in the id of a busy slot (bits 2-7 pick which),
 * bit 1 splice in its fetch's question.
 */
#include <stdint.h>
#include <sys/random.h>
#include <sys/types.h>

/*
 * The pool seeds the generator of its slot indices and ids (rand.h) from
 * getrandom(); here the seed comes from a generator reset for every input,
 * so the same input picks the same slots and ids and a crash replays
 * exactly.  The core's coalescing-table
 * seed is fixed for the same reason (set after dv_worker_new, while the
 * table is empty), so the order in which the input's fetch numbers find
 * fetches is the same in every process.
 */
static uint64_t rng_state;
static ssize_t fuzz_getrandom(void *buf, size_t len, unsigned int flags)
{
	uint8_t *p = buf;
	(void)flags;
	for (size_t i = 0; i < len; i++) {
		rng_state ^= rng_state << 13;
		rng_state ^= rng_state >> 7;
		rng_state ^= rng_state << 17;
		p[i] = (uint8_t)(rng_state >> 24);
	}
	return (ssize_t)len;
}
#define getrandom fuzz_getrandom
#include "src/upstream/server.c"
#include "src/upstream/pool.c"
#include "src/upstream/conn_udp.c"
#include "src/upstream/conn_stream.c"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"
#undef getrandom

#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/core/cache.h"
#include "src/core/core.h"
#include "src/daemon/ev_timers.h"
#include "src/core/log.h"
#include "src/daemon/worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's own walks over every slot and entry are not worth
 * coverage feedback, and instrumenting them costs most of the run time. */
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE
#endif

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			__builtin_trap();                                    \
	} while (0)

/* DV_FUZZ_DEBUG=1 in the environment: trace the steps */
static bool debug;
#define DEBUG(...)                                                           \
	do {                                                                 \
		if (debug)                                                   \
			fprintf(stderr, __VA_ARGS__);                        \
	} while (0)

#define MAX_QUERIES 64
#define MAX_OPS 256
#define MAX_CONNS 64
#define MAX_FETCHES 64

/* ---- the input cursor ---- */

typedef struct {
	const uint8_t *p;
	size_t left;
} cur_t;

static uint8_t take8(cur_t *c)
{
	if (!c->left)
		return 0;
	c->left--;
	return *c->p++;
}

static size_t take_bytes(cur_t *c, size_t want, const uint8_t **out)
{
	if (want > c->left)
		want = c->left;
	*out = c->p;
	c->p += want;
	c->left -= want;
	return want;
}

/* ---- fixed surroundings (made once) ---- */

static int udp_fake = -1;     /* upstream UDP socket that never answers */
static int tcp_fake = -1;     /* bound, not listening: connects refused */
static dv_config_t template_cfg, cfg;

static void setup_once(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	char text[64], err[256];

	debug = getenv("DV_FUZZ_DEBUG") != NULL;
	dv_log_level = debug ? DV_LOG_DEBUG : DV_LOG_ERROR;
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	udp_fake = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			  0);
	CHECK(udp_fake >= 0);
	CHECK(bind(udp_fake, (struct sockaddr *)&a, sizeof(a)) == 0);
	tcp_fake = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(tcp_fake >= 0);
	CHECK(bind(tcp_fake, (struct sockaddr *)&a, sizeof(a)) == 0);

	dv_config_defaults(&template_cfg);
	CHECK(getsockname(udp_fake, (struct sockaddr *)&a, &alen) == 0);
	snprintf(text, sizeof(text), "udp://127.0.0.1:%u", ntohs(a.sin_port));
	CHECK(dv_url_parse(text, DV_URL_UPSTREAM, &template_cfg.upstream[0],
			   err, sizeof(err)) == 0);
	alen = sizeof(a);
	CHECK(getsockname(tcp_fake, (struct sockaddr *)&a, &alen) == 0);
	snprintf(text, sizeof(text), "tcp://127.0.0.1:%u", ntohs(a.sin_port));
	CHECK(dv_url_parse(text, DV_URL_UPSTREAM, &template_cfg.upstream[1],
			   err, sizeof(err)) == 0);
	template_cfg.fallback[0] = template_cfg.upstream[1];
	template_cfg.fallback[1] = template_cfg.upstream[0];
}

/*
 * byte 0: bits 0-1 slots per connection (1, 2, 8, 64), bit 2 two TCP
 * connections per server, bit 3 hedge delay 0 (fallback at once), bit 4 a
 * cache, bits 5-6 local servers (udp; udp+tcp; tcp; tcp+udp), bit 7
 * fallback servers (tcp, udp) and a per-worker limit of 16 queries (else
 * 64, which an input never reaches).  Small tables keep the checks after
 * every step cheap (they walk every slot and every bucket).
 */
static void setup_config(uint8_t b)
{
	static const unsigned slots[] = {1, 2, 8, 64};
	memcpy(&cfg, &template_cfg, sizeof(cfg));
	cfg.upstream_max_inflight = slots[b & 3];
	cfg.upstream_connections = (b & 4) ? 2 : 1;
	cfg.hedge_delay_ms = (b & 8) ? 0 : 200;
	cfg.cache_size_bytes = (b & 16) ? 64 * 1024 : 0;
	cfg.cache_shards = 1;
	switch ((b >> 5) & 3) {
	case 0:
		cfg.n_upstream = 1;
		break;
	case 1:
		cfg.n_upstream = 2;
		break;
	case 2:
		cfg.upstream[0] = template_cfg.upstream[1];
		cfg.n_upstream = 1;
		break;
	default:
		cfg.upstream[0] = template_cfg.upstream[1];
		cfg.upstream[1] = template_cfg.upstream[0];
		cfg.n_upstream = 2;
		break;
	}
	cfg.n_fallback = (b & 128) ? 2 : 0;
	cfg.max_inflight = (b & 128) ? 16 : MAX_QUERIES;
	cfg.n_listen = 0;
}

/* ---- queries and their one reply ---- */

typedef struct {
	bool accepted; /* dv_core_submit() returned 0 */
	bool parsed;   /* a well-formed query of ours */
	unsigned replies;
	uint16_t id;
	bool udp;
	uint8_t wire[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 15];
	size_t len;
	dv_wire_query_t view;
} client_t;

static client_t clients[MAX_QUERIES];
static unsigned n_clients;
static bool in_submit; /* replies may come before submit returns */

static void on_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	CHECK(q->conn_tag < n_clients);
	client_t *cl = &clients[q->conn_tag];
	CHECK(cl->accepted || in_submit);
	CHECK(cl->replies == 0);
	cl->replies++;
	CHECK(q->conn == (void *)cl);
	DEBUG("  reply to query %u: %zu bytes, rcode %u\n",
	      (unsigned)q->conn_tag, len, len >= 4 ? wire[3] & 0xfu : 0);

	CHECK(len >= DV_DNS_HDR && len <= DV_DNS_MAX_MSG);
	CHECK(dv_get16(wire) == cl->id);
	CHECK(dv_get16(wire + 2) & DV_FLAG_QR);
	if (!cl->parsed)
		return;
	static dv_wire_resp_t r;
	int ret = dv_wire_parse_response(wire, len, &r);
	CHECK(ret == 0 || ret == DV_ELIMIT);
	/* the client's own question, letter case and all */
	CHECK(r.question_end == cl->view.question_end);
	CHECK(memcmp(wire + DV_DNS_HDR, cl->wire + DV_DNS_HDR,
		     cl->view.question_end - DV_DNS_HDR) == 0);
	CHECK(r.has_opt == cl->view.has_opt);
	if (r.has_opt)
		CHECK(r.opt_end == len);
	size_t limit = cl->udp ? dv_wire_udp_limit(&cl->view) : DV_DNS_MAX_MSG;
	if (len > limit) /* only header + question + padded OPT */
		CHECK((dv_get16(wire + 2) & DV_FLAG_TC) &&
		      dv_get16(wire + 6) == 0 && dv_get16(wire + 8) == 0);
	if (cl->view.edns_padding && q->pad_block)
		CHECK(len % q->pad_block == 0);
}

static const char *const names[] = {
	"www.example.test", "a.b.c.EXAMPLE.org", "X",
	"long-label-0123456789012345678901234567890123456789012345678901.test"};
static const uint16_t types[] = {DV_TYPE_A, DV_TYPE_AAAA, DV_TYPE_TXT,
				 DV_TYPE_SOA};

static size_t build_query(uint8_t *w, uint16_t id, uint8_t sel, bool pad)
{
	const char *name = names[sel & 3];
	bool edns = (sel & 64) || (sel & 16) || pad;
	dv_put16(w, id);
	dv_put16(w + 2, (uint16_t)(DV_FLAG_RD | ((sel & 32) ? DV_FLAG_CD : 0)));
	dv_put16(w + 4, 1);
	dv_put16(w + 6, 0);
	dv_put16(w + 8, 0);
	dv_put16(w + 10, edns ? 1 : 0);
	size_t pos = DV_DNS_HDR;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		w[pos++] = (uint8_t)l;
		memcpy(w + pos, p, l);
		pos += l;
		p += l + (dot ? 1 : 0);
	}
	w[pos++] = 0;
	dv_put16(w + pos, types[(sel >> 2) & 3]);
	dv_put16(w + pos + 2, DV_CLASS_IN);
	pos += 4;
	if (edns) {
		w[pos] = 0;
		dv_put16(w + pos + 1, DV_TYPE_OPT);
		dv_put16(w + pos + 3, 1232);
		dv_put32(w + pos + 5, (sel & 16) ? 0x8000u : 0);
		dv_put16(w + pos + 9, pad ? 4 : 0);
		pos += 11;
		if (pad) {
			dv_put16(w + pos, DV_EDNS_PADDING);
			dv_put16(w + pos + 2, 0);
			pos += 4;
		}
	}
	return pos;
}

static void op_query(dv_worker_t *w, cur_t *in, uint8_t arg)
{
	if (n_clients >= MAX_QUERIES)
		return;
	client_t *cl = &clients[n_clients];
	memset(cl, 0, sizeof(*cl));
	uint8_t sel = take8(in);
	uint16_t id = (uint16_t)((take8(in) << 8) | n_clients);
	bool pad = arg & 1;
	if (arg & 2) { /* raw bytes as the query */
		const uint8_t *raw;
		size_t n = take_bytes(in, take8(in), &raw);
		memcpy(cl->wire, raw, n > sizeof(cl->wire) ? sizeof(cl->wire)
							    : n);
		cl->len = n > sizeof(cl->wire) ? sizeof(cl->wire) : n;
		if (cl->len >= 2)
			id = dv_get16(cl->wire);
	} else {
		cl->len = build_query(cl->wire, id, sel, pad);
		cl->parsed = true;
		CHECK(dv_wire_parse_query(cl->wire, cl->len, &cl->view) == 0);
	}
	cl->id = id;
	cl->udp = sel & 128;
	dv_query_t *q = dv_query_new(w, cl->wire, cl->len);
	CHECK(q);
	q->reply = on_reply;
	q->conn = cl;
	q->conn_tag = n_clients;
	q->udp = cl->udp;
	q->transport = cl->udp ? DV_SCHEME_UDP : DV_SCHEME_TLS;
	q->pad_block = (!cl->udp && pad) ? DV_PAD_BLOCK : 0;
	n_clients++;
	DEBUG("query %u: id %04x, %zu bytes%s%s\n", n_clients - 1, id, cl->len,
	      cl->parsed ? "" : " (raw)", cl->udp ? ", udp" : "");
	in_submit = true;
	int ret = dv_core_submit(q);
	in_submit = false;
	CHECK(ret == 0 || ret == DV_ESHORT || ret == DV_ENOTQUERY);
	cl->accepted = ret == 0;
	if (!cl->accepted)
		CHECK(cl->replies == 0 && !cl->parsed);
}

/* ---- the pool's connections and fetches, as the input names them ---- */

typedef struct {
	dv_uconn_t *c;
	int peer;  /* our end of the socketpair swapped in, or -1 */
	int mine;  /* the connection's end (c->fd while it is ours) */
} conn_ref_t;

static conn_ref_t conns[MAX_CONNS];
static unsigned n_conns;

static void list_conns(dv_pool_t *p)
{
	n_conns = 0;
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++) {
		dv_server_t *s = &p->servers[i];
		if (s->front && n_conns < MAX_CONNS)
			conns[n_conns++] =
				(conn_ref_t){.c = s->front, .peer = -1, .mine = -1};
		for (unsigned j = 0; j < s->n_conns && n_conns < MAX_CONNS; j++)
			conns[n_conns++] = (conn_ref_t){
				.c = s->conns[j], .peer = -1, .mine = -1};
	}
}

static conn_ref_t *pick_ref(uint8_t sel)
{
	return n_conns ? &conns[sel % n_conns] : NULL;
}

static dv_fetch_t *fetches[MAX_FETCHES];
static unsigned n_fetches_seen;

NO_COVERAGE static void list_fetches(dv_worker_t *w)
{
	n_fetches_seen = 0;
	for (unsigned i = 0; i <= w->core.fetch_mask; i++)
		for (dv_fetch_t *f = w->core.fetches[i]; f; f = f->hnext)
			if (n_fetches_seen < MAX_FETCHES)
				fetches[n_fetches_seen++] = f;
}

static dv_fetch_t *pick_fetch(dv_worker_t *w, uint8_t sel)
{
	list_fetches(w);
	return n_fetches_seen ? fetches[sel % n_fetches_seen] : NULL;
}

/* The `nth` busy slot of `c` (wrapping), or NO_SLOT. */
NO_COVERAGE static uint32_t busy_slot(dv_uconn_t *c, unsigned nth)
{
	if (!c->busy)
		return NO_SLOT;
	nth %= c->busy;
	for (uint32_t i = 0; i < c->n_slots; i++)
		if (c->slots[i].busy && nth-- == 0)
			return i;
	return NO_SLOT;
}

/* An answer for connection `c` from the input's bytes, as `mode` says;
 * *slot: the busy slot it was made for, else one `mode` names (udp://
 * reads answers per slot). */
static size_t make_answer(uint8_t *out, dv_uconn_t *c, uint8_t mode,
			  const uint8_t *src, size_t len, uint32_t *slot)
{
	uint32_t i = (mode & 3) ? busy_slot(c, mode >> 2) : NO_SLOT;
	*slot = i != NO_SLOT ? i : (uint32_t)(mode >> 2) & c->mask;
	uslot_t *s = i == NO_SLOT ? NULL : &c->slots[i];
	size_t n = 0;

	if (s && (mode & 2) && s->att && s->att->job) {
		/* [header from the input] [the fetch's question] [the rest] */
		dv_job_t *f = s->att->job;
		dv_wire_query_t fq;
		CHECK(dv_wire_parse_query(f->qwire, f->qlen, &fq) == 0);
		size_t h = len < DV_DNS_HDR ? len : DV_DNS_HDR;
		memset(out, 0, DV_DNS_HDR);
		memcpy(out, src, h);
		dv_put16(out + 4, 1);
		size_t ql = fq.question_end - DV_DNS_HDR;
		memcpy(out + DV_DNS_HDR, f->qwire + DV_DNS_HDR, ql);
		n = DV_DNS_HDR + ql;
		size_t rest = len - h;
		if (n + rest > DV_DNS_MAX_MSG)
			rest = DV_DNS_MAX_MSG - n;
		memcpy(out + n, src + h, rest);
		n += rest;
	} else {
		n = len > DV_DNS_MAX_MSG ? DV_DNS_MAX_MSG : len;
		memcpy(out, src, n);
	}
	if (s && (mode & 1) && n >= 2)
		dv_put16(out, s->id);
	return n;
}

static uint8_t answer_buf[DV_DNS_MAX_MSG + 2];

static void op_answer(cur_t *in)
{
	conn_ref_t *r = pick_ref(take8(in));
	uint8_t mode = take8(in);
	size_t want = (size_t)take8(in) << 8;
	want |= take8(in);
	const uint8_t *src;
	size_t len = take_bytes(in, want, &src);
	if (!r)
		return;
	uint32_t slot;
	size_t n = make_answer(answer_buf, r->c, mode, src, len, &slot);
	DEBUG("answer on conn %u (%s, %u busy): id %04x, %zu bytes\n",
	      (unsigned)(r - conns), r->c->ops->lossy ? "udp" : "tcp", r->c->busy,
	      n >= 2 ? dv_get16(answer_buf) : 0, n);
	if (r->c->ops->random_ids) /* as read on that slot's socket */
		dv_uslot_answer(r->c, slot, answer_buf, n);
	else
		dv_uconn_answer(r->c, answer_buf, n);
}

static void drain_fd(int fd)
{
	static uint8_t sink[65536];
	while (fd >= 0 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

/* Our socketpair, not a reconnect that happens to reuse its number. */
static bool is_unix(int fd)
{
	int domain = 0;
	socklen_t len = sizeof(domain);
	return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
	       domain == AF_UNIX;
}

/* Give TCP connection `c` a socketpair (if it is not closed and not ours
 * yet) and complete its connect.  Returns whether it is open on ours. */
static bool own_tcp(conn_ref_t *r)
{
	dv_uconn_t *c = r->c;
	struct ev_loop *loop = c->server->pool->loop;
	if (c->ops->lossy || c->state == UC_CLOSED)
		return false;
	if (r->peer >= 0 && c->fd == r->mine && is_unix(c->fd))
		return c->state == UC_OPEN;
	if (r->peer >= 0)
		close(r->peer);
	r->peer = r->mine = -1;
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			 0, sv) == 0);
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	close(c->fd);
	c->fd = sv[0];
	ev_io_set(&c->rio, sv[0], EV_READ);
	ev_io_set(&c->wio, sv[0], EV_WRITE);
	r->mine = sv[0];
	r->peer = sv[1];
	c->state = UC_CONNECTING;
	stream_write_cb(loop, &c->wio, EV_WRITE); /* connected: flushes */
	return c->state == UC_OPEN;
}

static void op_stream(cur_t *in)
{
	conn_ref_t *r = pick_ref(take8(in));
	uint8_t mode = take8(in);
	size_t want = (size_t)take8(in) << 8;
	want |= take8(in);
	const uint8_t *src;
	size_t len = take_bytes(in, want, &src);
	if (!r || !own_tcp(r))
		return;
	dv_uconn_t *c = r->c;
	const uint8_t *bytes = src;
	if (mode & 3) {
		/* one framed answer built like op 1's */
		uint32_t slot;
		size_t n = make_answer(answer_buf + 2, c, mode, src, len,
				       &slot);
		dv_put16(answer_buf, (uint16_t)n);
		bytes = answer_buf;
		len = n + 2;
	}
	drain_fd(r->peer);
	DEBUG("stream on conn %u: %zu bytes\n", (unsigned)(r - conns), len);
	ssize_t sent = send(r->peer, bytes, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent <= 0 && len > 0)
		return;
	stream_read_cb(c->server->pool->loop, &c->rio, EV_READ);
}

static void op_conn_event(cur_t *in, uint8_t arg)
{
	conn_ref_t *r = pick_ref(take8(in));
	if (!r)
		return;
	dv_uconn_t *c = r->c;
	struct ev_loop *loop = c->server->pool->loop;
	DEBUG("event %u on conn %u (state %d, %u busy)\n", arg & 3,
	      (unsigned)(r - conns), c->state, c->busy);
	switch (arg & 3) {
	case 0: /* as the pool's own callers do: with queries on it, a
		 * close is a failure */
		dv_uconn_close(c, (arg & 4) || c->busy > 0, "fuzz");
		break;
	case 1: /* the connect completes (refused, unless ours) */
		if (!c->ops->lossy && c->state == UC_CONNECTING)
			stream_write_cb(loop, &c->wio, EV_WRITE);
		break;
	case 2: { /* a datagram through the real receive path: from the
		   * server's address to the socket of a slot */
		uint8_t mode = take8(in);
		size_t want = take8(in);
		const uint8_t *src;
		size_t len = take_bytes(in, want, &src);
		if (!c->ops->lossy || c->state != UC_OPEN)
			break;
		uint32_t slot;
		size_t n = make_answer(answer_buf, c, mode, src, len, &slot);
		/* the socket its query went on, else the one taking queries */
		udp_conn_t *u = (udp_conn_t *)c;
		uint32_t ki = u->uslots[slot].sock;
		if (ki == NO_SOCK)
			ki = u->cur;
		if (ki == NO_SOCK)
			break;
		udp_sock_t *k = &u->socks[ki];
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		CHECK(getsockname(k->fd, (struct sockaddr *)&ss, &sl) == 0);
		if (sendto(udp_fake, answer_buf, n, 0,
			   (struct sockaddr *)&ss, sl) < 0)
			break;
		udp_read_cb(loop, &k->rio, EV_READ);
		break;
	}
	default:
		if (c->ops->lossy || c->state != UC_OPEN)
			break;
		if ((arg & 4) && r->peer >= 0 && c->fd == r->mine &&
		    is_unix(c->fd)) {
			/* the upstream closes its side */
			shutdown(r->peer, SHUT_WR);
			stream_read_cb(loop, &c->rio, EV_READ);
		} else { /* the write watcher fires */
			stream_write_cb(loop, &c->wio, EV_WRITE);
		}
		break;
	}
}

static void fire(struct ev_loop *loop, ev_timer *t,
		 void (*cb)(struct ev_loop *, ev_timer *, int))
{
	if (!ev_is_active(t))
		return;
	DEBUG("timer fires\n");
	ev_timer_stop(loop, t);
	cb(loop, t, EV_TIMER);
}

/* An answer to query `sel` that expired two minutes ago (TTL 60) into the
 * cache: served stale (TTL 30, EDE 3) while the stale window lasts. */
static void op_store_stale(dv_worker_t *w, uint8_t sel)
{
	static uint8_t q[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 15];
	static uint8_t a[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 12 + 22];
	if (!w->core.cache)
		return;
	size_t ql = build_query(q, 0, sel, false);
	dv_wire_query_t v;
	CHECK(dv_wire_parse_query(q, ql, &v) == 0);
	uint8_t key[DV_WIRE_KEY_MAX];
	size_t kl = dv_wire_key(key, q, &v);

	/* the question, then one record of the type asked for */
	size_t pos = v.question_end;
	memcpy(a, q, pos);
	dv_put16(a, 0);
	dv_put16(a + 2, DV_FLAG_QR | DV_FLAG_RD | DV_FLAG_RA);
	dv_put16(a + 6, 1);
	dv_put16(a + 8, 0);
	dv_put16(a + 10, 0);
	dv_put16(a + pos, 0xc00c);
	dv_put16(a + pos + 2, v.qtype);
	dv_put16(a + pos + 4, DV_CLASS_IN);
	dv_put32(a + pos + 6, 60);
	pos += 12;
	size_t rdlen;
	switch (v.qtype) {
	case DV_TYPE_A:
		rdlen = 4;
		break;
	case DV_TYPE_AAAA:
		rdlen = 16;
		break;
	case DV_TYPE_SOA: /* ". . serial refresh retry expire minimum" */
		rdlen = 22;
		break;
	default: /* TXT: one string */
		rdlen = 6;
		break;
	}
	memset(a + pos, 0, rdlen);
	if (v.qtype == DV_TYPE_TXT)
		memcpy(a + pos, "\005stale", 6);
	dv_put16(a + pos - 2, (uint16_t)rdlen);
	pos += rdlen;
	dv_wire_resp_t r;
	CHECK(dv_wire_parse_response(a, pos, &r) == 0);
	/* the age wraps like the cache's clock: fine early after boot */
	CHECK(dv_cache_store(w->core.cache, key, kl, a, pos, &r,
			     dv_now_s() - 120) == 0);
	DEBUG("stale answer stored for sel %02x\n", sel);
}

/* The stale-answer timer of `f`, if the core armed one (and it has not
 * been cancelled): its libev watcher. */
static dv_ev_timer_t *stale_of(dv_fetch_t *f)
{
	return f->stale.impl;
}

static void op_stale_timer(dv_worker_t *w, uint8_t sel)
{
	dv_fetch_t *f = pick_fetch(w, sel);
	dv_ev_timer_t *st = f ? stale_of(f) : NULL;
	if (st)
		fire(w->loop, &st->w, dv_ev_timer_cb);
}

/* ---- invariants ---- */

NO_COVERAGE static bool fetch_live(dv_fetch_t *f)
{
	for (unsigned i = 0; i < n_fetches_seen; i++)
		if (fetches[i] == f)
			return true;
	return false;
}

/*
 * udp://: every busy slot's query is on an open socket, which counts it;
 * every open socket but the one taking new queries carries a query (so
 * there is always a free entry for a new one), and none has carried more
 * than pool.udp-socket-queries; a retired socket takes no new query; the
 * send queue holds busy slots only, each once, and is flushed at the end
 * of the turn (the pool's drain watcher is armed).
 */
NO_COVERAGE static void check_udp_conn(const udp_conn_t *u)
{
	const dv_uconn_t *c = &u->c;
	uint32_t open = 0;
	for (uint32_t ki = 0; ki < c->n_slots; ki++) {
		const udp_sock_t *k = &u->socks[ki];
		uint32_t on = 0;
		for (uint32_t i = 0; i < c->n_slots; i++)
			on += c->slots[i].busy && u->uslots[i].sock == ki;
		if (k->fd < 0) {
			CHECK(on == 0 && u->cur != ki);
			continue;
		}
		open++;
		CHECK(k->inflight == on);
		CHECK(k->sent >= 1 && k->sent <= u->reuse);
		if (ki == u->cur)
			CHECK(!k->retire && (on > 0 || k->sent < u->reuse));
		else
			CHECK(on > 0);
	}
	CHECK(open + u->n_free == c->n_slots);
	CHECK(c->state != UC_CLOSED || open == 0);
	for (uint32_t i = 0; i < c->n_slots; i++) {
		const udp_slot_t *us = &u->uslots[i];
		CHECK(c->slots[i].busy || (us->sock == NO_SOCK &&
					   us->txpos == NO_SLOT));
		if (c->slots[i].busy)
			CHECK(us->sock != NO_SOCK);
		if (us->txpos != NO_SLOT)
			CHECK(us->txpos < u->n_tx && u->txq[us->txpos] == i);
	}
	for (uint32_t q = 0; q < u->n_tx; q++)
		CHECK(u->uslots[u->txq[q]].txpos == q);
	if (u->n_tx)
		CHECK(c->flush_queued &&
		      ev_is_active(&c->server->pool->drain));
}

NO_COVERAGE static void check_conn(dv_uconn_t *c)
{
	uint32_t busy = 0, free_n = 0, prev = NO_SLOT;
	for (uint32_t i = 0; i < c->n_slots; i++) {
		uslot_t *s = &c->slots[i];
		if (!s->busy) {
			CHECK(s->att == NULL);
			continue;
		}
		busy++;
		if (!c->ops->random_ids)
			CHECK((s->id & c->mask) == i);
		else
			CHECK(dv_uconn_slot_of(c, s->id) == i);
		if (s->att) {
			dv_attempt_t *a = s->att;
			CHECK(a->conn == c && a->slot == i);
			/* a client fetch, or a health probe of the server */
			CHECK(a->job && ((a->job->fetch &&
					  fetch_live(a->job->fetch) &&
					  a->job->fetch->pool_job == a->job) ||
					 a->job->probe == c->server));
			CHECK(ev_is_active(&a->timer));
		}
	}
	CHECK(busy == c->busy);
	for (uint32_t i = c->free_head; i != NO_SLOT;
	     i = c->slots[i].next_free) {
		CHECK(i < c->n_slots && !c->slots[i].busy);
		CHECK(c->slots[i].prev_free == prev);
		prev = i;
		CHECK(++free_n <= c->n_slots);
	}
	CHECK(free_n + busy == c->n_slots);
	if (c->state == UC_CLOSED)
		CHECK(c->fd == -1 && c->busy == 0);
	else
		CHECK(c->fd >= 0 || c->ops->lossy);
	if (c->ops->lossy)
		check_udp_conn((const udp_conn_t *)c);
}

NO_COVERAGE static void check_all(dv_worker_t *w)
{
	list_fetches(w);
	CHECK(n_fetches_seen == w->core.n_fetches ||
	      n_fetches_seen == MAX_FETCHES);
	unsigned waiting = 0;
	for (unsigned k = 0; k < n_fetches_seen; k++) {
		dv_fetch_t *f = fetches[k];
		/* prefetches, and fetches whose waiters were served stale,
		 * have no waiters: they only refresh the cache */
		CHECK(f->core == &w->core);
		dv_job_t *j = f->pool_job;
		CHECK(j && j->fetch == f && !j->probe);
		CHECK(ev_is_active(&j->deadline)); /* an answer will come */
		unsigned active = 0;
		for (unsigned i = 0; i < DV_JOB_MAX_ATTEMPTS; i++) {
			dv_attempt_t *a = &j->att[i];
			if (!a->job) {
				CHECK(a->conn == NULL);
				continue;
			}
			CHECK(a->job == j);
			active++;
			/* in flight on a connection, its timer running */
			CHECK(a->conn && ev_is_active(&a->timer));
			CHECK(a->conn->slots[a->slot].att == a &&
			      a->conn->slots[a->slot].busy);
		}
		/* nothing in flight would leave it waiting for the deadline */
		CHECK(active >= 1);
		unsigned n = 0;
		for (dv_query_t *q = f->waiters; q; q = q->next) {
			CHECK(++n <= f->n_waiters);
			if (!q->next)
				CHECK(f->waiters_tail == q);
		}
		CHECK(n == f->n_waiters);
		waiting += n;
		/* a stale-answer timer runs until it fires, once */
		dv_ev_timer_t *st = stale_of(f);
		if (st)
			CHECK(st->t == &f->stale &&
			      f->stale_fired == !ev_is_active(&st->w) &&
			      f->stale.armed == !!ev_is_active(&st->w));
	}
	dv_pool_t *p = w->pools[0];
	for (unsigned i = 0; i < p->n_local + p->n_fallback; i++) {
		dv_server_t *s = &p->servers[i];
		if (s->front)
			check_conn(s->front);
		for (unsigned j = 0; j < s->n_conns; j++)
			check_conn(s->conns[j]);
	}
	/* every accepted query without its reply waits on a fetch */
	unsigned open = 0;
	for (unsigned i = 0; i < n_clients; i++)
		open += clients[i].accepted && clients[i].replies == 0;
	CHECK(open == w->core.inflight);
	if (n_fetches_seen < MAX_FETCHES)
		CHECK(waiting == open);
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

/* ---- one input ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (udp_fake < 0)
		setup_once();
	if (size < 1 || size > 256 * 1024)
		return 0;
	int fds_before = count_fds();
	cur_t in = {data + 1, size - 1};
	rng_state = 0x9e3779b97f4a7c15ULL;
	setup_config(data[0]);

	dv_shared_t shared = {.n_workers = 1};
	if (cfg.cache_size_bytes) {
		dv_cache_opts_t co = {.size_bytes = cfg.cache_size_bytes,
				      .shards = 1,
				      .min_ttl = 0,
				      .max_ttl = 3600,
				      .negative_max_ttl = 300};
		shared.cache = dv_cache_new(&co);
		CHECK(shared.cache);
	}
	char err[256];
	dv_worker_t *w = dv_worker_new(0, &cfg, &shared, err, sizeof(err));
	CHECK(w);
	/* what the core's seed was when it came from fuzz_getrandom, whose
	 * generator starts at 0 (and stays there) before the first input */
	w->core.conf.hash_seed = 0;
	dv_pool_t *p0 = w->pools[0]; /* the config's one upstream set */
	list_conns(p0);
	n_clients = 0;
	drain_fd(udp_fake);

	for (unsigned ops = 0; in.left && ops < MAX_OPS; ops++) {
		uint8_t op = take8(&in);
		uint8_t arg = op >> 3;
		dv_fetch_t *f;
		switch (op & 7) {
		case 0:
			op_query(w, &in, arg);
			break;
		case 1:
			op_answer(&in);
			break;
		case 2:
			op_stream(&in);
			break;
		case 3: {
			f = pick_fetch(w, take8(&in));
			dv_job_t *j = f ? f->pool_job : NULL;
			dv_attempt_t *a =
				j ? &j->att[take8(&in) % DV_JOB_MAX_ATTEMPTS]
				  : NULL;
			if (a && a->job)
				fire(w->loop, &a->timer, attempt_timeout_cb);
			break;
		}
		case 4:
			f = pick_fetch(w, take8(&in));
			if (f && f->pool_job)
				fire(w->loop,
				     &((dv_job_t *)f->pool_job)->hedge,
				     hedge_cb);
			break;
		case 5:
			f = pick_fetch(w, take8(&in));
			if (f && f->pool_job)
				fire(w->loop,
				     &((dv_job_t *)f->pool_job)->deadline,
				     deadline_cb);
			break;
		case 6:
			op_conn_event(&in, arg);
			break;
		default:
			switch (arg & 7) {
			case 1:
				op_store_stale(w, take8(&in));
				break;
			case 2:
				op_stale_timer(w, take8(&in));
				break;
			case 6:
				if (ev_is_active(&p0->drain)) {
					DEBUG("the loop turn ends\n");
					drain_cb(w->loop, &p0->drain,
						 EV_PREPARE);
				}
				break;
			case 3:
			case 4:
			case 5:
				for (unsigned i = 0;
				     (arg & 7) != 4 &&
				     i < p0->n_local + p0->n_fallback;
				     i++)
					fire(w->loop,
					     &p0->servers[i].probe_timer,
					     dv_uprobe_timer_cb);
				if ((arg & 7) != 3)
					fire(w->loop, &p0->tick, tick_cb);
				break;
			default:
				dv_pool_start(w->pools[0]);
				break;
			}
			break;
		}
		check_all(w);
		for (unsigned i = 0; debug && i < n_conns; i++)
			DEBUG("    conn %u: %s state %d fd %d busy %u\n", i,
			      conns[i].c->ops->lossy ? "udp" : "tcp", conns[i].c->state,
			      conns[i].c->fd, conns[i].c->busy);
	}

	/* the end: whatever is still in flight fails, once */
	list_fetches(w);
	while (w->core.n_fetches) {
		list_fetches(w);
		CHECK(n_fetches_seen > 0);
		dv_core_fetch_fail(fetches[0], DV_EDE_OTHER, "fuzz: the end");
	}
	CHECK(w->core.inflight == 0);
	for (unsigned i = 0; i < n_clients; i++)
		CHECK(clients[i].replies == (clients[i].accepted ? 1u : 0u));

	dv_worker_free(w);
	for (unsigned i = 0; i < n_conns; i++)
		if (conns[i].peer >= 0)
			close(conns[i].peer);
	dv_cache_free(shared.cache);
	drain_fd(udp_fake);

	/* file descriptors: the lowest free one does not creep up */
	/* every file descriptor the input opened is closed again */
	CHECK(count_fds() == fds_before);
	return 0;
}

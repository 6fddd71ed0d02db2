/*
 * doq-limit-server: a small DoQ server for the integration tests, built
 * from dnsveil's own DoQ server engine (src/proto/doq_server.c), that
 * imposes the stream limits of a real server: Knot DNS 3.4's knotd takes
 * at most 10 unfinished streams per connection (the 11th silences the
 * connection) and never raises its stream credit past 1,024 per
 * connection.  Debian 12 has no knotd with QUIC, so the tests use this.
 *
 *   doq-limit-server --listen 127.0.0.1:PORT --cert C --key K
 *                    [--upstream 127.0.0.1:PORT] [--max-unfinished N]
 *                    [--max-streams N] [--max-streams-total M]
 *                    [--idle-timeout-ms T]
 *
 * Each query is forwarded over UDP to --upstream (a Do53 resolver) and
 * its answer returned on the stream; without --upstream every query is
 * answered from a static table: A 192.0.2.1 for any name.  An upstream
 * silent for 2 s gets the query answered SERVFAIL.  One line
 * "doq-limit-server: ready PORT" on stdout once it listens; SIGUSR1 or
 * SIGTERM print one line "doq-limit-server-stats {JSON}" (connections,
 * streams, silenced connections); SIGTERM then exits 0.
 *
 * Not installed: a test tool, one thread, poll(), IPv4 or IPv6.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "src/config/config.h"
#include "src/core/errors.h"
#include "src/core/stats.h"
#include "src/core/wire.h"
#include "src/proto/doq_frame.h"
#include "src/proto/doq_server.h"
#include "src/tls/quic_tls.h"

#define MAX_CONNS 4096
#define UP_TIMEOUT_NS (2000ull * 1000000u)

typedef struct {
	uint64_t at; /* timer, UINT64_MAX: none */
	bool live;
	unsigned idx;
} conn_user_t;

typedef struct {
	dv_doq_sstream_t *s; /* NULL: free */
	uint16_t client_id;
	uint64_t sent;
} upq_t;

static struct {
	int fd, up_fd;
	struct sockaddr_storage local;
	socklen_t local_len;
	dv_doq_server_t *srv;
	dv_stats_t st;
	uint8_t tx[DV_DOQ_SERVER_TX_MAX];
	dv_doq_sconn_t *conns[MAX_CONNS];
	unsigned n_conns;
	upq_t up[65536];
	uint16_t up_next;
	unsigned silenced;
	bool have_upstream;
} g;

static volatile sig_atomic_t stop_flag, stats_flag;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		stats_flag = 1;
	else
		stop_flag = 1;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint8_t *eng_tx_buf(void *app)
{
	(void)app;
	return g.tx;
}

static void eng_tx_send(void *app, size_t len, const struct sockaddr *peer,
			socklen_t peer_len, const struct sockaddr *local)
{
	(void)app;
	(void)local;
	(void)sendto(g.fd, g.tx, len, 0, peer, peer_len);
}

static void eng_timer(void *app, dv_doq_sconn_t *c, uint64_t at)
{
	(void)app;
	conn_user_t *u = dv_doq_sconn_user(c);
	if (!u->live) {
		if (g.n_conns == MAX_CONNS)
			return; /* never fires: it idles out with the server */
		u->live = true;
		u->idx = g.n_conns;
		g.conns[g.n_conns++] = c;
	}
	u->at = at;
}

static void eng_conn_end(void *app, dv_doq_sconn_t *c)
{
	(void)app;
	conn_user_t *u = dv_doq_sconn_user(c);
	if (!u->live)
		return;
	/* swap the last one in */
	dv_doq_sconn_t *last = g.conns[--g.n_conns];
	g.conns[u->idx] = last;
	((conn_user_t *)dv_doq_sconn_user(last))->idx = u->idx;
	u->live = false;
}

static void eng_failure(void *app, dv_doq_sconn_t *c, const char *what,
			const char *why)
{
	(void)app;
	(void)c;
	(void)why;
	if (!strcmp(what, "silenced"))
		g.silenced++;
}

/* A static answer: the question echoed, A 192.0.2.1 for an A question. */
static void answer_static(dv_doq_sstream_t *s, const uint8_t *msg, size_t len)
{
	uint8_t out[DV_DNS_MAX_MSG];
	size_t q_end = DV_DNS_HDR;
	while (q_end < len && msg[q_end])
		q_end += msg[q_end] + 1u;
	q_end += 5;
	if (q_end > len || q_end + 16 > sizeof(out)) {
		q_end = DV_DNS_HDR;
		memcpy(out, msg, DV_DNS_HDR);
		dv_put16(out + 2, 0x8002 | DV_FLAG_RD); /* SERVFAIL */
		memset(out + 4, 0, 8);
		dv_doq_server_answer(s, out, q_end, dv_doq_now());
		return;
	}
	memcpy(out, msg, q_end);
	bool a = dv_get16(msg + q_end - 4) == 1;
	dv_put16(out + 2, 0x8180); /* QR RD RA, NOERROR */
	dv_put16(out + 4, 1);
	dv_put16(out + 6, a ? 1 : 0);
	dv_put16(out + 8, 0);
	dv_put16(out + 10, 0);
	size_t n = q_end;
	if (a) {
		static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0,
					     0,    60,   0, 4, 192, 0, 2, 1};
		memcpy(out + n, rr, sizeof(rr));
		n += sizeof(rr);
	}
	dv_doq_server_answer(s, out, n, dv_doq_now());
}

static int eng_query(void *app, dv_doq_sconn_t *c, dv_doq_sstream_t *s,
		     int64_t stream_id, const uint8_t *msg, size_t len)
{
	(void)app;
	(void)c;
	(void)stream_id;
	if (len < DV_DNS_HDR || len > DV_DNS_MAX_MSG)
		return DV_EMALFORMED;
	if (!g.have_upstream) {
		answer_static(s, msg, len);
		return 0;
	}
	/* a free id for the upstream query */
	for (unsigned tries = 0; g.up[g.up_next].s; tries++) {
		if (tries == 65536)
			return -ENOMEM; /* the stream is reset */
		g.up_next++;
	}
	uint16_t id = g.up_next++;
	upq_t *q = &g.up[id];
	uint8_t buf[DV_DNS_MAX_MSG];
	memcpy(buf, msg, len);
	q->client_id = dv_get16(buf);
	dv_put16(buf, id);
	if (send(g.up_fd, buf, len, 0) < 0)
		return -ENOMEM;
	q->s = s;
	q->sent = dv_doq_now();
	return 0;
}

static const dv_doq_server_callbacks_t callbacks = {
	.tx_buf = eng_tx_buf,
	.tx_send = eng_tx_send,
	.on_query = eng_query,
	.on_timer = eng_timer,
	.on_conn_end = eng_conn_end,
	.on_failure = eng_failure,
};

static void read_upstream(void)
{
	uint8_t buf[DV_DNS_MAX_MSG];
	for (;;) {
		ssize_t n = recv(g.up_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < DV_DNS_HDR)
			return;
		upq_t *q = &g.up[dv_get16(buf)];
		if (!q->s)
			continue;
		dv_put16(buf, q->client_id);
		dv_doq_sstream_t *s = q->s;
		q->s = NULL;
		dv_doq_server_answer(s, buf, (size_t)n, dv_doq_now());
	}
}

/* Queries the upstream never answered: SERVFAIL (each stream's answer
 * must come exactly once). */
static void expire_upstream(uint64_t now)
{
	static unsigned next;
	uint8_t hdr[DV_DNS_HDR] = {0};
	for (unsigned k = 0; k < 4096; k++, next = (next + 1) & 0xffff) {
		upq_t *q = &g.up[next];
		if (!q->s || now - q->sent < UP_TIMEOUT_NS)
			continue;
		dv_put16(hdr, q->client_id);
		dv_put16(hdr + 2, 0x8182);
		dv_doq_sstream_t *s = q->s;
		q->s = NULL;
		dv_doq_server_answer(s, hdr, sizeof(hdr), now);
	}
}

static void read_clients(void)
{
	uint8_t buf[DV_DOQ_SERVER_RX_MAX];
	for (unsigned budget = 256; budget; budget--) {
		dv_quic_path_t path;
		memset(&path, 0, sizeof(path));
		path.remote_len = sizeof(path.remote);
		ssize_t n = recvfrom(g.fd, buf, sizeof(buf), MSG_DONTWAIT,
				     (struct sockaddr *)&path.remote,
				     &path.remote_len);
		if (n < 0)
			return;
		memcpy(&path.local, &g.local, g.local_len);
		path.local_len = g.local_len;
		dv_doq_server_read(g.srv, &path, buf, (size_t)n, dv_doq_now(),
				   wall_ns());
	}
}

static void print_stats(void)
{
	printf("doq-limit-server-stats {\"connections\": %llu, \"streams\": "
	       "%llu, \"silenced\": %u, \"idle_closed\": %llu}\n",
	       (unsigned long long)g.st.doq_connections,
	       (unsigned long long)g.st.doq_streams, g.silenced,
	       (unsigned long long)g.st.doq_idle_closed);
	fflush(stdout);
}

static int parse_addr(const char *text, dv_url_t *u)
{
	char url[300], err[200];
	snprintf(url, sizeof(url), "udp://%s", text);
	if (dv_url_parse(url, DV_URL_UPSTREAM, u, err, sizeof(err)) != 0) {
		fprintf(stderr, "doq-limit-server: %s: %s\n", text, err);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: doq-limit-server --listen ADDR:PORT --cert C "
			"--key K [--upstream ADDR:PORT] [--max-unfinished N] "
			"[--max-streams N] [--max-streams-total M] "
			"[--idle-timeout-ms T]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *listen_at = NULL, *cert = NULL, *key = NULL, *up = NULL;
	dv_doq_server_config_t sc = {
		.max_connections = 1024,
		.max_handshakes = 256,
		.max_handshakes_per_address = 64,
		.max_streams = 100,
		.idle_timeout_ms = 30000,
		.handshake_timeout_ms = 5000,
		.read_timeout_ms = 5000,
		.token_lifetime_s = 3600,
		.retry = DV_DOQ_SERVER_RETRY_NEVER,
		.stats = &g.st,
		.conn_user_size = sizeof(conn_user_t),
	};
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (!strcmp(argv[i], "--listen"))
			listen_at = v;
		else if (!strcmp(argv[i], "--cert"))
			cert = v;
		else if (!strcmp(argv[i], "--key"))
			key = v;
		else if (!strcmp(argv[i], "--upstream"))
			up = v;
		else if (!strcmp(argv[i], "--max-unfinished"))
			sc.max_unfinished = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(argv[i], "--max-streams"))
			sc.max_streams = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(argv[i], "--max-streams-total"))
			sc.max_streams_total = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--idle-timeout-ms"))
			sc.idle_timeout_ms = strtoull(v, NULL, 10);
		else
			usage();
		i++;
	}
	if (!listen_at || !cert || !key)
		usage();
	char err[600];
	sc.tls = dv_quic_tls_server_ctx_new(cert, key, "doq", false, err,
					    sizeof(err));
	if (!sc.tls) {
		fprintf(stderr, "doq-limit-server: %s\n", err);
		return 1;
	}
	static uint8_t secret[32];
	if (getrandom(secret, sizeof(secret), 0) != sizeof(secret))
		return 1;
	sc.secret = secret;
	sc.secret_len = sizeof(secret);
	dv_url_t lu, uu;
	if (parse_addr(listen_at, &lu) || (up && parse_addr(up, &uu)))
		return 2;
	g.fd = socket(lu.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (g.fd < 0 || bind(g.fd, (struct sockaddr *)&lu.addr, lu.addr_len)) {
		perror("doq-limit-server: listen");
		return 1;
	}
	g.local_len = sizeof(g.local);
	getsockname(g.fd, (struct sockaddr *)&g.local, &g.local_len);
	g.up_fd = -1;
	if (up) {
		g.have_upstream = true;
		g.up_fd = socket(uu.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC,
				 0);
		if (g.up_fd < 0 ||
		    connect(g.up_fd, (struct sockaddr *)&uu.addr, uu.addr_len)) {
			perror("doq-limit-server: upstream");
			return 1;
		}
	}
	g.srv = dv_doq_server_new(&sc, &callbacks, NULL);
	if (!g.srv)
		return 1;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	char a[64];
	dv_addr_format((struct sockaddr *)&g.local, a, sizeof(a));
	printf("doq-limit-server: ready %s\n", a);
	fflush(stdout);

	while (!stop_flag) {
		if (stats_flag) {
			stats_flag = 0;
			print_stats();
		}
		uint64_t now = dv_doq_now(), next = now + 100000000u;
		for (unsigned i = 0; i < g.n_conns; i++) {
			conn_user_t *u = dv_doq_sconn_user(g.conns[i]);
			if (u->at < next)
				next = u->at;
		}
		int ms = next > now ? (int)((next - now + 999999) / 1000000) : 0;
		struct pollfd p[2] = {{.fd = g.fd, .events = POLLIN},
				      {.fd = g.up_fd, .events = POLLIN}};
		if (poll(p, up ? 2 : 1, ms) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN)
			read_clients();
		if (up && (p[1].revents & POLLIN))
			read_upstream();
		now = dv_doq_now();
		/* timers due (an expiry may end a connection: the array
		 * changes, so start over after each, within a budget) */
		unsigned budget = 2 * g.n_conns + 16;
		for (unsigned i = 0; i < g.n_conns && budget; budget--) {
			dv_doq_sconn_t *c = g.conns[i];
			conn_user_t *u = dv_doq_sconn_user(c);
			if (u->at > now) {
				i++;
				continue;
			}
			u->at = UINT64_MAX;
			dv_doq_server_expire(g.srv, c, now);
			i = 0;
		}
		if (up)
			expire_upstream(now);
	}
	print_stats();
	dv_doq_server_free(g.srv);
	dv_quic_tls_ctx_free(sc.tls);
	return 0;
}

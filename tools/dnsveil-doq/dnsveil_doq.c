/*
 * dnsveil-doq: a DNS-over-QUIC (RFC 9250) client for testing and
 * benchmarking DoQ servers, on the engine in src/proto/doq_client.c.
 *
 * A poll() loop owns the UDP sockets (one per connection, a second one
 * after --migrate-after) and drives the engines; everything else (how many
 * queries are in flight, misbehaviour switches, output) is here.  Output
 * is dig-like text, or with --json one JSON object per line: "answer" per
 * DNS message received, "error" per query that got none, "stream_end" for
 * a stream that ended unusually after an answer, "connection" per
 * connection, and one "summary" last.
 *
 * Unit tests include this file with DNSVEIL_DOQ_NO_MAIN defined.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ldns/ldns.h>

#include "src/proto/doq_client.h"
#include "src/core/errors.h"
#include "src/tls/quic_tls.h"
#include "src/core/wire.h"

#define NS 1000000000ull
#define MAX_QUESTIONS 64
#define MAX_CONNECTIONS 1024
#define MAX_RAW 65536
#define EXIT_USAGE 2

typedef struct {
	char name[DV_DNS_MAX_NAME * 4 + 1];
	uint16_t type;
} question_t;

typedef struct {
	const char *server;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *name; /* --name: SNI + verification */
	const char *ca;
	const char *cert, *key; /* --cert/--key: a client certificate */
	bool insecure;
	bool json;
	bool quiet;
	bool debug;
	const char *alpn;
	question_t q[MAX_QUESTIONS];
	unsigned nq;
	uint64_t count;    /* repetitions of the list; 0: until --duration */
	unsigned concurrency;
	unsigned connections;
	double duration, timeout, hold;
	const char *session_file;
	bool early;
	const char *token_file;
	bool pad;
	bool unique; /* a fresh first label per query (cache misses) */
	int id;             /* -1: 0 as RFC 9250 wants */
	uint8_t *raw;       /* --raw bytes */
	size_t raw_len;
	bool no_fin, partial, two_messages;
	long reset_after_ms; /* -1: never */
	long migrate_after;  /* -1: never */
	const char *bind;    /* --bind: local address of every socket */
	struct sockaddr_storage bind_addr;
	socklen_t bind_len;
	unsigned long half_open; /* --half-open N: the attacker mode */
	double rate;             /* --rate: new connections per second */
	bool help;
} opts_t;

static void usage(FILE *f)
{
	fputs(
"usage: dnsveil-doq [options] ADDR[:PORT] NAME [TYPE] [NAME [TYPE] ...]\n"
"DNS-over-QUIC (RFC 9250) client: ALPN \"doq\", one query per stream, id 0.\n"
"ADDR is IPv4 (127.0.0.1:853) or [IPv6] ([::1]:853); PORT defaults to 853.\n"
"TYPE defaults to A.\n"
"\n"
"Security:\n"
"  -n, --name HOST        SNI; the certificate must be valid for HOST\n"
"      --ca FILE          trust anchors (PEM); default: the system store\n"
"      --cert FILE        client certificate chain (PEM) for a server that\n"
"                         asks for one (mTLS); with --key FILE, its key\n"
"  -k, --insecure         verify nothing (required without --name)\n"
"      --alpn PROTO       offer PROTO instead of \"doq\" (test servers)\n"
"Output:\n"
"  -j, --json             one JSON object per line (answers, errors,\n"
"                         connections, a final summary)\n"
"  -q, --quiet            only the summary (and errors)\n"
"      --debug            ngtcp2's log on stderr\n"
"Load:\n"
"  -c, --count N          send the question list N times per connection\n"
"                         (default 1; with --duration and no --count:\n"
"                         until the duration ends)\n"
"  -C, --concurrency N    queries in flight per connection (default 100)\n"
"  -K, --connections N    parallel connections (default 1)\n"
"  -d, --duration S       stop sending new queries after S seconds\n"
"  -t, --timeout S        per query and handshake timeout (default 5)\n"
"Resumption:\n"
"      --session FILE     resume the session saved in FILE (if it exists);\n"
"                         save the new one there at the end\n"
"      --early            send the queries as 0-RTT when the session allows\n"
"      --token FILE       present the NEW_TOKEN token in FILE; save a new\n"
"                         one there\n"
"      --pad              EDNS(0) padding to a multiple of 128 (RFC 8467)\n"
"      --unique           ask u<n>.NAME, a new name every query (a\n"
"                         miss-heavy load for benchmarks)\n"
"Misbehaviour (to test servers; applies to every query sent):\n"
"      --id N             DNS message id N instead of 0\n"
"      --raw HEX          send these bytes as the whole stream payload\n"
"                         (no NAME needed)\n"
"      --no-fin           never FIN the query streams\n"
"      --partial          send part of the framed query, then FIN\n"
"      --two-messages     two framed queries on one stream\n"
"      --reset-after-ms M reset the stream (DOQ_REQUEST_CANCELLED) M ms\n"
"                         after sending\n"
"      --migrate-after N  after N answers move to a new local UDP port\n"
"      --hold S           stay connected S seconds after the last answer\n"
"      --bind ADDR        send from local address ADDR (e.g. 127.0.0.2)\n"
"      --half-open N      open N connections that answer the Retry and\n"
"                         then never finish the handshake (no NAME\n"
"                         needed; -d S stops starting new ones after S s,\n"
"                         -t S is how long each waits for the server)\n"
"      --rate R           --half-open: new connections per second\n"
"                         (default 1000)\n"
"  -h, --help             this text\n"
"\n"
"Exit status: 0 every query got an answer (any rcode), 1 some did not, 2\n"
"usage error.\n"
"Examples:\n"
"  dnsveil-doq --name dns.test --ca certs/ca.pem 127.0.0.1:8853 example.com AAAA\n"
"  dnsveil-doq -k -j -c 5000 -C 200 127.0.0.1:8853 a.test b.test MX\n"
"  dnsveil-doq -k --session s.bin --early 127.0.0.1:8853 a.test  # twice\n",
		f);
}

/* "1.2.3.4:853", "[::1]:853", "::1" (no port), "1.2.3.4" */
static int parse_addr(const char *s, struct sockaddr_storage *ss,
		      socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || (size_t)(end - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = '\0';
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -EINVAL;
	} else {
		const char *colon = strchr(s, ':');
		bool v6 = colon && strchr(colon + 1, ':');
		size_t n = (!v6 && colon) ? (size_t)(colon - s) : strlen(s);
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, n);
		host[n] = '\0';
		if (!v6 && colon)
			port = colon + 1;
	}
	unsigned long p = 853;
	if (port) {
		char *end;
		errno = 0;
		p = strtoul(port, &end, 10);
		if (!*port || *end || errno || p == 0 || p > 65535)
			return -EINVAL;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)p);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

/* hex digits, optionally separated by spaces or colons */
static int parse_hex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = 0;
	int hi = -1;
	for (; *s; s++) {
		if (*s == ' ' || *s == ':')
			continue;
		int v;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return -EINVAL;
		if (hi < 0) {
			hi = v;
		} else {
			if (n == cap)
				return -EINVAL;
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0)
		return -EINVAL;
	*len = n;
	return 0;
}

static int parse_num(const char *s, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !(v >= min && v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

static uint16_t parse_type(const char *s)
{
	return (uint16_t)ldns_get_rr_type_by_name(s);
}

enum {
	O_CA = 256,
	O_ALPN,
	O_DEBUG,
	O_SESSION,
	O_EARLY,
	O_TOKEN,
	O_PAD,
	O_UNIQUE,
	O_ID,
	O_RAW,
	O_NO_FIN,
	O_PARTIAL,
	O_TWO,
	O_RESET,
	O_MIGRATE,
	O_HOLD,
	O_BIND,
	O_HALF_OPEN,
	O_RATE,
	O_CERT,
	O_KEY,
};

/* Fills `o`; returns 0, or EXIT_USAGE with a message in `err`. */
static int parse_args(int argc, char **argv, opts_t *o, char *err,
		      size_t err_len)
{
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"ca", required_argument, NULL, O_CA},
		{"cert", required_argument, NULL, O_CERT},
		{"key", required_argument, NULL, O_KEY},
		{"insecure", no_argument, NULL, 'k'},
		{"alpn", required_argument, NULL, O_ALPN},
		{"json", no_argument, NULL, 'j'},
		{"quiet", no_argument, NULL, 'q'},
		{"debug", no_argument, NULL, O_DEBUG},
		{"count", required_argument, NULL, 'c'},
		{"concurrency", required_argument, NULL, 'C'},
		{"connections", required_argument, NULL, 'K'},
		{"duration", required_argument, NULL, 'd'},
		{"timeout", required_argument, NULL, 't'},
		{"session", required_argument, NULL, O_SESSION},
		{"early", no_argument, NULL, O_EARLY},
		{"token", required_argument, NULL, O_TOKEN},
		{"pad", no_argument, NULL, O_PAD},
		{"unique", no_argument, NULL, O_UNIQUE},
		{"id", required_argument, NULL, O_ID},
		{"raw", required_argument, NULL, O_RAW},
		{"no-fin", no_argument, NULL, O_NO_FIN},
		{"partial", no_argument, NULL, O_PARTIAL},
		{"two-messages", no_argument, NULL, O_TWO},
		{"reset-after-ms", required_argument, NULL, O_RESET},
		{"migrate-after", required_argument, NULL, O_MIGRATE},
		{"hold", required_argument, NULL, O_HOLD},
		{"bind", required_argument, NULL, O_BIND},
		{"half-open", required_argument, NULL, O_HALF_OPEN},
		{"rate", required_argument, NULL, O_RATE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof(*o));
	o->alpn = "doq";
	o->count = 1;
	o->concurrency = 100;
	o->connections = 1;
	o->timeout = 5;
	o->id = -1;
	o->reset_after_ms = -1;
	o->migrate_after = -1;
	o->rate = 1000;
	bool count_given = false;
	double v;
	int ch;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "n:kjqc:C:K:d:t:h", longopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'n':
			o->name = optarg;
			break;
		case O_CA:
			o->ca = optarg;
			break;
		case O_CERT:
			o->cert = optarg;
			break;
		case O_KEY:
			o->key = optarg;
			break;
		case 'k':
			o->insecure = true;
			break;
		case O_ALPN:
			o->alpn = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case O_DEBUG:
			o->debug = true;
			break;
		case 'c':
			if (parse_num(optarg, 1, 1e9, &v))
				goto bad_value;
			o->count = (uint64_t)v;
			count_given = true;
			break;
		case 'C':
			if (parse_num(optarg, 1, 100000, &v))
				goto bad_value;
			o->concurrency = (unsigned)v;
			break;
		case 'K':
			if (parse_num(optarg, 1, MAX_CONNECTIONS, &v))
				goto bad_value;
			o->connections = (unsigned)v;
			break;
		case 'd':
			if (parse_num(optarg, 0.001, 86400, &o->duration))
				goto bad_value;
			break;
		case 't':
			if (parse_num(optarg, 0.001, 3600, &o->timeout))
				goto bad_value;
			break;
		case O_SESSION:
			o->session_file = optarg;
			break;
		case O_EARLY:
			o->early = true;
			break;
		case O_TOKEN:
			o->token_file = optarg;
			break;
		case O_UNIQUE:
			o->unique = true;
			break;
		case O_PAD:
			o->pad = true;
			break;
		case O_ID:
			if (parse_num(optarg, 0, 65535, &v))
				goto bad_value;
			o->id = (int)v;
			break;
		case O_RAW: {
			free(o->raw);
			o->raw = malloc(MAX_RAW);
			if (!o->raw ||
			    parse_hex(optarg, o->raw, MAX_RAW, &o->raw_len)) {
				snprintf(err, err_len,
					 "--raw: hex bytes expected (at most "
					 "%d)",
					 MAX_RAW);
				return EXIT_USAGE;
			}
			break;
		}
		case O_NO_FIN:
			o->no_fin = true;
			break;
		case O_PARTIAL:
			o->partial = true;
			break;
		case O_TWO:
			o->two_messages = true;
			break;
		case O_RESET:
			if (parse_num(optarg, 0, 3600000, &v))
				goto bad_value;
			o->reset_after_ms = (long)v;
			break;
		case O_MIGRATE:
			if (parse_num(optarg, 0, 1e9, &v))
				goto bad_value;
			o->migrate_after = (long)v;
			break;
		case O_HOLD:
			if (parse_num(optarg, 0, 86400, &o->hold))
				goto bad_value;
			break;
		case O_BIND:
			o->bind = optarg;
			if (parse_addr(optarg, &o->bind_addr, &o->bind_len))
				goto bad_value;
			/* any port: the address is what we choose */
			if (o->bind_addr.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&o->bind_addr)
					->sin6_port = 0;
			else
				((struct sockaddr_in *)&o->bind_addr)
					->sin_port = 0;
			break;
		case O_HALF_OPEN:
			if (parse_num(optarg, 1, 1e6, &v))
				goto bad_value;
			o->half_open = (unsigned long)v;
			break;
		case O_RATE:
			if (parse_num(optarg, 1, 1e6, &o->rate))
				goto bad_value;
			break;
		case 'h':
			o->help = true;
			return 0;
		default:
			if (optopt && optopt < 256)
				snprintf(err, err_len,
					 "unknown option or missing value: -%c",
					 optopt);
			else
				snprintf(err, err_len,
					 "unknown option or missing value: %s",
					 argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		snprintf(err, err_len, "the server address is missing");
		return EXIT_USAGE;
	}
	o->server = argv[optind++];
	if (parse_addr(o->server, &o->addr, &o->addr_len)) {
		snprintf(err, err_len,
			 "bad server address '%s' (1.2.3.4:853 or [::1]:853)",
			 o->server);
		return EXIT_USAGE;
	}
	while (optind < argc) {
		const char *name = argv[optind++];
		if (o->nq == MAX_QUESTIONS) {
			snprintf(err, err_len, "at most %d questions",
				 MAX_QUESTIONS);
			return EXIT_USAGE;
		}
		question_t *q = &o->q[o->nq++];
		uint8_t tmp[DV_DNS_MAX_MSG];
		if (strlen(name) >= sizeof(q->name) ||
		    dv_doq_build_query(tmp, sizeof(tmp), name, 1, 0, false) <
			    0) {
			snprintf(err, err_len, "bad name '%s'", name);
			return EXIT_USAGE;
		}
		strcpy(q->name, name);
		q->type = DV_TYPE_A;
		if (optind < argc && parse_type(argv[optind]) != 0)
			q->type = parse_type(argv[optind++]);
	}
	if (o->bind && o->bind_addr.ss_family != o->addr.ss_family) {
		snprintf(err, err_len,
			 "--bind and the server address are of different "
			 "families");
		return EXIT_USAGE;
	}
	if (o->nq == 0 && !o->raw && !o->half_open) {
		snprintf(err, err_len, "no NAME to ask (or --raw)");
		return EXIT_USAGE;
	}
	if (o->raw && o->nq) {
		snprintf(err, err_len, "--raw replaces the questions");
		return EXIT_USAGE;
	}
	if (o->unique && (o->raw || o->partial || o->two_messages)) {
		snprintf(err, err_len,
			 "--unique builds whole queries: not with --raw, "
			 "--partial or --two-messages");
		return EXIT_USAGE;
	}
	if (o->raw && (o->partial || o->two_messages || o->pad ||
		       o->id >= 0)) {
		snprintf(err, err_len,
			 "--raw excludes --partial, --two-messages, --pad and "
			 "--id");
		return EXIT_USAGE;
	}
	if (o->partial && o->two_messages) {
		snprintf(err, err_len,
			 "--partial and --two-messages exclude each other");
		return EXIT_USAGE;
	}
	if (!o->name && !o->insecure) {
		snprintf(err, err_len,
			 "without --name nothing can be verified: give "
			 "--name HOST or --insecure");
		return EXIT_USAGE;
	}
	if (!o->cert != !o->key) {
		snprintf(err, err_len, "--cert and --key go together");
		return EXIT_USAGE;
	}
	if (o->early && !o->session_file) {
		snprintf(err, err_len, "--early needs --session FILE");
		return EXIT_USAGE;
	}
	if (o->duration > 0 && !count_given)
		o->count = 0; /* until the duration ends */
	return 0;
bad_value:
	snprintf(err, err_len, "bad value for %s: '%s'", argv[optind - 1],
		 optarg);
	return EXIT_USAGE;
}

/* ---- payloads ---- */

typedef struct {
	uint8_t *data;
	size_t len;
	unsigned flags;
} payload_t;

/* What goes on the stream for question `q` (NULL: --raw). */
static int make_payload(const opts_t *o, const question_t *q, payload_t *p)
{
	uint8_t msg[DV_DNS_MAX_MSG];
	memset(p, 0, sizeof(*p));
	p->flags = o->no_fin ? DV_DOQ_NO_FIN : 0;
	if (!q) {
		p->data = malloc(o->raw_len ? o->raw_len : 1);
		if (!p->data)
			return -ENOMEM;
		memcpy(p->data, o->raw, o->raw_len);
		p->len = o->raw_len;
		p->flags |= DV_DOQ_RAW;
		return 0;
	}
	int n = dv_doq_build_query(msg, sizeof(msg), q->name, q->type,
				   (uint16_t)(o->id < 0 ? 0 : o->id), o->pad);
	if (n < 0)
		return n;
	p->data = malloc(2 * ((size_t)n + 2));
	if (!p->data)
		return -ENOMEM;
	if (!o->partial && !o->two_messages) {
		memcpy(p->data, msg, (size_t)n); /* the engine frames it */
		p->len = (size_t)n;
		return 0;
	}
	p->flags |= DV_DOQ_RAW;
	int f = dv_doq_frame_write(p->data, 2 * ((size_t)n + 2), msg,
				   (size_t)n);
	if (o->two_messages) {
		memcpy(p->data + f, p->data, (size_t)f);
		p->len = 2 * (size_t)f;
	} else {
		p->len = 2 + (size_t)n / 2; /* the length, half the message */
	}
	return 0;
}

/* ---- JSON ---- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch == '\t')
			fputs("\\t", f);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static const char *type_name(uint16_t t, char *buf, size_t cap)
{
	char *s = ldns_rr_type2str((ldns_rr_type)t);
	snprintf(buf, cap, "%s", s ? s : "?");
	free(s);
	return buf;
}

static const char *rcode_name(unsigned rcode, char *buf, size_t cap)
{
	ldns_lookup_table *lt = ldns_lookup_by_id(ldns_rcodes, (int)rcode);
	if (lt)
		snprintf(buf, cap, "%s", lt->name);
	else
		snprintf(buf, cap, "RCODE%u", rcode);
	return buf;
}

static const char *app_error_text(uint64_t code, char *buf, size_t cap)
{
	const char *n = dv_doq_error_name(code);
	if (n)
		snprintf(buf, cap, "%s", n);
	else
		snprintf(buf, cap, "0x%llx", (unsigned long long)code);
	return buf;
}

/* ---- the run ---- */

typedef struct run run_t;
typedef struct conn conn_t;

typedef struct {
	conn_t *conn;
	int qi;         /* question index; -1: raw */
	bool in_use, answered;
	uint64_t submitted;
} slot_t;

typedef struct {
	int fd;
	dv_doq_path_t path;
} sock_t;

struct conn {
	run_t *r;
	unsigned idx;
	dv_doq_client_t *c;
	sock_t sock[2];
	unsigned nsock;
	slot_t *slots;
	unsigned inflight;
	uint64_t submitted, answers, ended;
	bool migrate_tried, migrate_failed;
	char migrate_error[64];
	uint64_t answers_after_migration;
	uint64_t done_at;   /* all queries over: hold from here */
	bool closing;       /* dv_doq_client_close sent */
	bool session_saved;
	uint64_t ticket_wait_until;
};

typedef struct {
	const char *kind;
	uint64_t n;
} errcount_t;

struct run {
	opts_t *o;
	dv_quic_tls_ctx_t *tls;
	payload_t *payloads; /* one per question (or the raw one) */
	unsigned np;
	uint64_t per_conn;   /* queries per connection; 0: until duration */
	conn_t *conns;
	uint64_t start, stop_submitting_at;
	uint64_t first_sent, last_answer;
	uint64_t queries, answers, failed, unsent;
	errcount_t errs[8];
	unsigned nerrs;
	double *lat;
	size_t nlat, lat_cap;
	uint8_t *session;
	size_t session_len;
	uint8_t *token;
	size_t token_len;
};

static void count_error(run_t *r, const char *kind, uint64_t n)
{
	for (unsigned i = 0; i < r->nerrs; i++) {
		if (strcmp(r->errs[i].kind, kind) == 0) {
			r->errs[i].n += n;
			return;
		}
	}
	if (r->nerrs < sizeof(r->errs) / sizeof(r->errs[0]))
		r->errs[r->nerrs++] = (errcount_t){kind, n};
}

static void question_text(const run_t *r, int qi, char *buf, size_t cap)
{
	char t[32];
	if (qi < 0)
		snprintf(buf, cap, "raw %zu bytes", r->o->raw_len);
	else
		snprintf(buf, cap, "%s %s", r->o->q[qi].name,
			 type_name(r->o->q[qi].type, t, sizeof(t)));
}

static void on_message(void *app, void *query, int64_t stream_id,
		       const uint8_t *msg, size_t len, uint64_t sent_at,
		       uint64_t now)
{
	(void)app;
	slot_t *sl = query;
	conn_t *cn = sl->conn;
	run_t *r = cn->r;
	const opts_t *o = r->o;
	double ms = (double)(now - sent_at) / 1e6;
	if (!sl->answered) {
		sl->answered = true;
		cn->answers++;
		r->answers++;
		if (cn->migrate_tried && !cn->migrate_failed)
			cn->answers_after_migration++;
		r->last_answer = now;
		if (r->nlat == r->lat_cap) {
			size_t cap = r->lat_cap ? 2 * r->lat_cap : 1024;
			double *p = realloc(r->lat, cap * sizeof(*p));
			if (p) {
				r->lat = p;
				r->lat_cap = cap;
			}
		}
		if (r->nlat < r->lat_cap)
			r->lat[r->nlat++] = ms;
	}
	if (o->quiet)
		return;
	int padding = dv_doq_padding_len(msg, len);
	ldns_pkt *pkt = NULL;
	bool parsed = ldns_wire2pkt(&pkt, msg, len) == LDNS_STATUS_OK;
	unsigned rcode = len >= 4 ? msg[3] & 0xf : 0;
	unsigned id = len >= 2 ? dv_get16(msg) : 0;
	char rc[32], qt[300];
	rcode_name(rcode, rc, sizeof(rc));
	question_text(r, sl->qi, qt, sizeof(qt));
	if (o->json) {
		printf("{\"type\":\"answer\",\"conn\":%u,\"stream_id\":%lld,"
		       "\"question\":",
		       cn->idx, (long long)stream_id);
		json_str(stdout, qt);
		printf(",\"id\":%u,\"rcode\":\"%s\",\"size\":%zu,"
		       "\"padding\":",
		       id, rc, len);
		if (padding >= 0)
			printf("%d", padding);
		else
			fputs("null", stdout);
		printf(",\"latency_ms\":%.3f,\"parsed\":%s,\"answers\":[", ms,
		       parsed ? "true" : "false");
	} else {
		printf(";; conn %u stream %lld: %s -> %s, id %u, %zu bytes, "
		       "padding %s%d, %.3f ms\n",
		       cn->idx, (long long)stream_id, qt, rc, id, len,
		       padding >= 0 ? "" : "none/", padding >= 0 ? padding : 0,
		       ms);
		if (!parsed)
			printf(";; (the answer does not parse as DNS)\n");
	}
	if (parsed) {
		ldns_rr_list *an = ldns_pkt_answer(pkt);
		for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
			char *s = ldns_rr2str(ldns_rr_list_rr(an, i));
			if (!s)
				continue;
			size_t n = strlen(s);
			while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
				s[--n] = '\0';
			if (o->json) {
				if (i)
					fputc(',', stdout);
				json_str(stdout, s);
			} else {
				printf("%s\n", s);
			}
			free(s);
		}
	}
	if (o->json)
		fputs("]}\n", stdout);
	ldns_pkt_free(pkt);
}

static void on_end(void *app, void *query, int64_t stream_id,
		   const dv_doq_result_t *res, uint64_t now)
{
	(void)app;
	(void)now;
	slot_t *sl = query;
	conn_t *cn = sl->conn;
	run_t *r = cn->r;
	const opts_t *o = r->o;
	const char *kind = NULL;
	if (!sl->answered) {
		if (res->cancelled)
			kind = "cancelled";
		else if (res->how == DV_DOQ_END_CONN_CLOSED &&
			 !dv_doq_client_handshake_done(cn->c))
			kind = "handshake_failed";
		else if (res->how == DV_DOQ_END_FIN)
			kind = "no_answer";
		else
			kind = dv_doq_end_name(res->how);
		r->failed++;
		count_error(r, kind, 1);
	}
	bool unusual = res->how != DV_DOQ_END_FIN || res->messages > 1 ||
		       res->trailing || res->cancelled;
	cn->inflight--;
	cn->ended++;
	sl->in_use = false;
	if (!kind && !unusual)
		return;
	char qt[300], an[40];
	question_text(r, sl->qi, qt, sizeof(qt));
	app_error_text(res->app_code, an, sizeof(an));
	if (o->json) {
		printf("{\"type\":\"%s\",\"conn\":%u,\"stream_id\":%lld,"
		       "\"question\":",
		       kind ? "error" : "stream_end", cn->idx,
		       (long long)stream_id);
		json_str(stdout, qt);
		printf(",\"kind\":\"%s\",\"end\":\"%s\",\"cancelled\":%s",
		       kind ? kind : dv_doq_end_name(res->how),
		       dv_doq_end_name(res->how),
		       res->cancelled ? "true" : "false");
		if (res->how == DV_DOQ_END_RESET)
			printf(",\"app_error_code\":%llu,\"app_error\":\"%s\"",
			       (unsigned long long)res->app_code, an);
		printf(",\"messages\":%u,\"trailing_bytes\":%zu}\n",
		       res->messages, res->trailing);
	} else if (kind || !o->quiet) {
		printf(";; conn %u stream %lld: %s: %s", cn->idx,
		       (long long)stream_id, qt,
		       kind ? kind : dv_doq_end_name(res->how));
		if (res->cancelled)
			printf(", we reset it, then the server: %s",
			       dv_doq_end_name(res->how));
		if (res->how == DV_DOQ_END_RESET)
			printf(", stream reset by the server with %s", an);
		if (res->messages > 1)
			printf(", %u messages", res->messages);
		if (res->trailing)
			printf(", %zu trailing bytes", res->trailing);
		putchar('\n');
	}
}

static void on_handshake(void *app, uint64_t now)
{
	(void)app;
	(void)now;
}

static int open_socket(const run_t *r, sock_t *s)
{
	const opts_t *o = r->o;
	int fd = socket(o->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
						   SOCK_CLOEXEC,
			0);
	if (fd < 0)
		return -errno;
	if (o->bind &&
	    bind(fd, (const struct sockaddr *)&o->bind_addr, o->bind_len)) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (connect(fd, (const struct sockaddr *)&o->addr, o->addr_len)) {
		int e = -errno;
		close(fd);
		return e;
	}
	memset(&s->path, 0, sizeof(s->path));
	s->path.local_len = sizeof(s->path.local);
	if (getsockname(fd, (struct sockaddr *)&s->path.local,
			&s->path.local_len)) {
		int e = -errno;
		close(fd);
		return e;
	}
	memcpy(&s->path.remote, &o->addr, o->addr_len);
	s->path.remote_len = o->addr_len;
	s->path.ctx = s;
	s->fd = fd;
	return 0;
}

static uint8_t pktbuf[65536];

static void flush(conn_t *cn, uint64_t now)
{
	for (unsigned i = 0; i < 256; i++) {
		void *ctx = NULL;
		int n = dv_doq_client_write(cn->c, pktbuf, sizeof(pktbuf), &ctx,
					    now);
		if (n <= 0)
			return;
		sock_t *s = ctx ? ctx : &cn->sock[cn->nsock - 1];
		/* a datagram lost to a full socket buffer is QUIC's
		 * business (it retransmits) */
		(void)send(s->fd, pktbuf, (size_t)n, 0);
	}
}

static void submit_more(conn_t *cn, uint64_t now)
{
	run_t *r = cn->r;
	const opts_t *o = r->o;
	if (dv_doq_client_is_closed(cn->c) || cn->closing)
		return;
	while (cn->inflight < o->concurrency) {
		if (r->per_conn && cn->submitted >= r->per_conn)
			return;
		if (r->stop_submitting_at && now >= r->stop_submitting_at)
			return;
		slot_t *sl = NULL;
		for (unsigned i = 0; i < o->concurrency; i++) {
			if (!cn->slots[i].in_use) {
				sl = &cn->slots[i];
				break;
			}
		}
		if (!sl)
			return;
		unsigned pi = (unsigned)(cn->submitted % r->np);
		const payload_t *p = &r->payloads[pi];
		uint64_t reset = o->reset_after_ms >= 0
					 ? (uint64_t)o->reset_after_ms * 1000000 +
						   1 /* 0 means never */
					 : 0;
		*sl = (slot_t){.conn = cn,
			       .qi = o->raw ? -1 : (int)pi,
			       .in_use = true,
			       .submitted = now};
		const uint8_t *data = p->data;
		size_t dlen = p->len;
		uint8_t ubuf[DV_DNS_MAX_MSG];
		if (o->unique) {
			/* unique across runs too: a seed per process */
			static unsigned seed;
			if (!seed)
				seed = ((unsigned)time(NULL) << 12 ^
					(unsigned)getpid()) | 1u;
			char nm[sizeof(o->q[0].name) + 32];
			snprintf(nm, sizeof(nm), "u%x-%llx.%s", seed,
				 (unsigned long long)r->queries,
				 o->q[pi].name);
			int n = dv_doq_build_query(
				ubuf, sizeof(ubuf), nm, o->q[pi].type,
				(uint16_t)(o->id < 0 ? 0 : o->id), o->pad);
			if (n > 0) {
				data = ubuf;
				dlen = (size_t)n;
			}
		}
		if (dv_doq_client_submit(cn->c, data, dlen, p->flags, reset,
					 sl, dv_doq_now()) != 0) {
			sl->in_use = false;
			return;
		}
		if (!r->first_sent)
			r->first_sent = now;
		cn->submitted++;
		cn->inflight++;
		r->queries++;
	}
}

static void try_migrate(conn_t *cn, uint64_t now)
{
	const opts_t *o = cn->r->o;
	if (o->migrate_after < 0 || cn->migrate_tried ||
	    cn->answers < (uint64_t)o->migrate_after ||
	    !dv_doq_client_handshake_done(cn->c) ||
	    dv_doq_client_is_closed(cn->c))
		return;
	sock_t *s = &cn->sock[1];
	int rv = open_socket(cn->r, s);
	if (rv) {
		cn->migrate_tried = cn->migrate_failed = true;
		snprintf(cn->migrate_error, sizeof(cn->migrate_error),
			 "socket: %s", strerror(-rv));
		return;
	}
	rv = dv_doq_client_migrate(cn->c, &s->path, now);
	if (rv == -EAGAIN) {
		/* no spare connection ID from the server yet: later */
		close(s->fd);
		s->fd = -1;
		return;
	}
	cn->migrate_tried = true;
	if (rv) {
		cn->migrate_failed = true;
		snprintf(cn->migrate_error, sizeof(cn->migrate_error), "%s",
			 rv == DV_ENOTIMPL ? "server disables migration"
					   : "ngtcp2 refused the migration");
		close(s->fd);
		s->fd = -1;
		return;
	}
	cn->nsock = 2;
}

static bool conn_queries_over(const conn_t *cn, uint64_t now)
{
	const run_t *r = cn->r;
	if (dv_doq_client_is_closed(cn->c))
		return true;
	if (cn->inflight)
		return false;
	if (r->per_conn && cn->submitted >= r->per_conn)
		return true;
	return r->stop_submitting_at && now >= r->stop_submitting_at;
}

/* Close the connection when its queries (and --hold) are over. */
static void maybe_close(conn_t *cn, uint64_t now)
{
	const opts_t *o = cn->r->o;
	if (cn->closing || !conn_queries_over(cn, now))
		return;
	if (!cn->done_at) {
		cn->done_at = now;
		/* give a session ticket still on its way a moment */
		if (o->session_file && dv_doq_client_handshake_done(cn->c) &&
		    !dv_doq_client_has_ticket(cn->c))
			cn->ticket_wait_until =
				now + (uint64_t)(o->timeout < 1 ? o->timeout * NS
								: NS);
	}
	if (!dv_doq_client_is_closed(cn->c)) {
		if (now < cn->done_at + (uint64_t)(o->hold * NS))
			return;
		if (now < cn->ticket_wait_until &&
		    !dv_doq_client_has_ticket(cn->c))
			return;
	}
	run_t *r = cn->r;
	if (cn->idx == 0 && o->session_file && !cn->session_saved) {
		uint8_t buf[DV_DOQ_SESSION_MAX];
		int n = dv_doq_client_session_save(cn->c, buf, sizeof(buf));
		if (n > 0) {
			FILE *f = fopen(o->session_file, "wb");
			if (f) {
				fwrite(buf, 1, (size_t)n, f);
				fclose(f);
			} else {
				fprintf(stderr, "dnsveil-doq: %s: %s\n",
					o->session_file, strerror(errno));
			}
		}
		cn->session_saved = true;
	}
	if (cn->idx == 0 && o->token_file) {
		size_t n;
		const uint8_t *t = dv_doq_client_token(cn->c, &n);
		if (n) {
			FILE *f = fopen(o->token_file, "wb");
			if (f) {
				fwrite(t, 1, n, f);
				fclose(f);
			}
		}
	}
	(void)r;
	void *ctx = NULL;
	int n = dv_doq_client_close(cn->c, DV_DOQ_NO_ERROR, pktbuf,
				    sizeof(pktbuf), &ctx, now);
	if (n > 0) {
		sock_t *s = ctx ? ctx : &cn->sock[cn->nsock - 1];
		(void)send(s->fd, pktbuf, (size_t)n, 0);
	}
	cn->closing = true;
}

static void read_socket(conn_t *cn, sock_t *s, uint64_t now)
{
	for (unsigned i = 0; i < 1024; i++) {
		ssize_t n = recv(s->fd, pktbuf, sizeof(pktbuf), MSG_DONTWAIT);
		if (n < 0)
			return; /* EAGAIN; ECONNREFUSED shows as a timeout */
		if (dv_doq_client_read(cn->c, &s->path, pktbuf, (size_t)n,
				       now) != 0)
			return;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)n); /* the ceiling, without libm */
	if ((double)i < p * (double)n)
		i++;
	if (i == 0)
		i = 1;
	if (i > n)
		i = n;
	return v[i - 1];
}

static void close_json(const dv_doq_close_t *ci, char *buf, size_t cap)
{
	char name[64];
	const char *by = ci->local_error[0] ? "local"
			 : ci->idle         ? "idle"
			 : ci->by_peer      ? "peer"
					    : "us";
	if (ci->idle || (!ci->by_peer && !ci->local_error[0])) {
		snprintf(buf, cap, "{\"by\":\"%s\"}", by);
		return;
	}
	if (ci->local_error[0]) {
		snprintf(buf, cap, "{\"by\":\"local\",\"error\":\"%s\"}",
			 ci->local_error);
		return;
	}
	if (ci->application)
		app_error_text(ci->code, name, sizeof(name));
	else
		dv_doq_transport_error_name(ci->code, name, sizeof(name));
	char reason[300];
	size_t o = 0;
	for (const char *p = ci->reason; *p && o + 7 < sizeof(reason); p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"' || ch == '\\')
			o += (size_t)snprintf(reason + o, sizeof(reason) - o,
					      "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			o += (size_t)snprintf(reason + o, sizeof(reason) - o,
					      "\\u%04x", ch);
		else
			reason[o++] = (char)ch;
	}
	reason[o] = '\0';
	snprintf(buf, cap,
		 "{\"by\":\"peer\",\"kind\":\"%s\",\"code\":%llu,"
		 "\"name\":\"%s\",\"reason\":\"%s\"}",
		 ci->application ? "application" : "transport",
		 (unsigned long long)ci->code, name, reason);
}

static void report_conn(const conn_t *cn)
{
	const opts_t *o = cn->r->o;
	dv_doq_stats_t st;
	dv_doq_close_t ci;
	dv_doq_client_stats(cn->c, &st);
	dv_doq_client_close_info(cn->c, &ci);
	char close[600];
	close_json(&ci, close, sizeof(close));
	if (o->json) {
		printf("{\"type\":\"connection\",\"conn\":%u,"
		       "\"handshake_done\":%s,\"handshake_ms\":%.3f,"
		       "\"resumed\":%s,\"early_data\":{\"attempted\":%s,"
		       "\"sent\":%u,\"accepted\":%s,\"rejected\":%s},"
		       "\"retry_received\":%s,\"new_token_received\":%s,"
		       "\"streams_opened\":%llu,\"credit_waits\":%s,"
		       "\"max_streams\":%llu,\"queries\":%llu,\"answers\":%llu,"
		       "\"migration\":",
		       cn->idx, st.handshake_done ? "true" : "false",
		       (double)st.handshake_ns / 1e6,
		       st.resumed ? "true" : "false",
		       st.early_attempted ? "true" : "false",
		       st.early_queries, st.early_accepted ? "true" : "false",
		       st.early_rejected ? "true" : "false",
		       st.retry_received ? "true" : "false",
		       st.new_token_received ? "true" : "false",
		       (unsigned long long)st.streams_opened,
		       st.credit_waits ? "true" : "false",
		       (unsigned long long)st.max_streams_seen,
		       (unsigned long long)cn->submitted,
		       (unsigned long long)cn->answers);
		if (o->migrate_after < 0)
			fputs("null", stdout);
		else
			printf("{\"done\":%s,\"error\":\"%s\","
			       "\"path_validated\":%s,\"answers_after\":%llu}",
			       cn->migrate_tried && !cn->migrate_failed
				       ? "true"
				       : "false",
			       cn->migrate_error,
			       st.path_validated ? "true"
			       : st.path_failed  ? "false"
						 : "null",
			       (unsigned long long)cn->answers_after_migration);
		printf(",\"close\":%s}\n", close);
		return;
	}
	if (o->quiet && o->connections > 1)
		return;
	printf(";; conn %u: handshake %s %.3f ms, resumed %s, 0-RTT %s",
	       cn->idx, st.handshake_done ? "done" : "FAILED",
	       (double)st.handshake_ns / 1e6, st.resumed ? "yes" : "no",
	       !st.early_attempted  ? "not attempted"
	       : st.early_accepted  ? "accepted"
	       : st.early_rejected  ? "rejected (resent)"
				    : "rejected");
	if (st.early_attempted)
		printf(" (%u queries)", st.early_queries);
	printf(", retry %s, new token %s, %llu streams%s\n",
	       st.retry_received ? "yes" : "no",
	       st.new_token_received ? "yes" : "no",
	       (unsigned long long)st.streams_opened,
	       st.credit_waits ? " (waited for stream credit)" : "");
	if (o->migrate_after >= 0)
		printf(";; conn %u: migration %s%s%s (new path %s), %llu "
		       "answers after it\n",
		       cn->idx,
		       cn->migrate_tried && !cn->migrate_failed ? "done"
		       : cn->migrate_failed ? "failed"
					    : "not reached",
		       cn->migrate_error[0] ? ": " : "", cn->migrate_error,
		       st.path_validated ? "validated"
		       : st.path_failed  ? "NOT validated"
					 : "not validated yet",
		       (unsigned long long)cn->answers_after_migration);
	dv_doq_close_t *c = &ci;
	char name[64];
	if (c->local_error[0])
		printf(";; conn %u: failed: %s\n", cn->idx, c->local_error);
	else if (c->idle)
		printf(";; conn %u: closed by idle timeout\n", cn->idx);
	else if (!c->by_peer)
		printf(";; conn %u: closed by us (DOQ_NO_ERROR)\n", cn->idx);
	else
		printf(";; conn %u: closed by the server: %s error %s (0x%llx)"
		       "%s%s%s\n",
		       cn->idx, c->application ? "application" : "transport",
		       c->application
			       ? app_error_text(c->code, name, sizeof(name))
			       : dv_doq_transport_error_name(c->code, name,
							     sizeof(name)),
		       (unsigned long long)c->code, c->reason[0] ? " \"" : "",
		       c->reason, c->reason[0] ? "\"" : "");
}

static void report_summary(run_t *r, uint64_t end)
{
	const opts_t *o = r->o;
	if (r->nlat)
		qsort(r->lat, r->nlat, sizeof(double), cmp_double);
	double p50 = percentile(r->lat, r->nlat, 0.50);
	double p99 = percentile(r->lat, r->nlat, 0.99);
	uint64_t span = r->last_answer > r->first_sent
				? r->last_answer - r->first_sent
				: 0;
	double qps = span ? (double)r->answers / ((double)span / 1e9) : 0;
	dv_doq_stats_t st0;
	dv_doq_client_stats(r->conns[0].c, &st0);
	bool resumed = true, retry = false, token = false, early_acc = true;
	bool early_att = false, early_rej = false, migrated = false;
	uint64_t streams = 0, early_sent = 0, after_mig = 0;
	for (unsigned i = 0; i < o->connections; i++) {
		dv_doq_stats_t st;
		dv_doq_client_stats(r->conns[i].c, &st);
		resumed &= st.resumed;
		retry |= st.retry_received;
		token |= st.new_token_received;
		early_att |= st.early_attempted;
		early_acc &= st.early_accepted;
		early_rej |= st.early_rejected;
		early_sent += st.early_queries;
		streams += st.streams_opened;
		migrated |= r->conns[i].migrate_tried &&
			    !r->conns[i].migrate_failed;
		after_mig += r->conns[i].answers_after_migration;
	}
	if (!early_att)
		early_acc = false;
	dv_doq_close_t ci;
	dv_doq_client_close_info(r->conns[0].c, &ci);
	char close[600];
	close_json(&ci, close, sizeof(close));
	if (o->json) {
		printf("{\"type\":\"summary\",\"queries\":%llu,\"answers\":%llu,"
		       "\"errors\":{",
		       (unsigned long long)(r->queries + r->unsent),
		       (unsigned long long)r->answers);
		for (unsigned i = 0; i < r->nerrs; i++)
			printf("%s\"%s\":%llu", i ? "," : "", r->errs[i].kind,
			       (unsigned long long)r->errs[i].n);
		printf("},\"connections\":%u,\"handshake_ms\":%.3f,"
		       "\"resumed\":%s,\"early_data\":{\"attempted\":%s,"
		       "\"sent\":%llu,\"accepted\":%s,\"rejected\":%s},"
		       "\"retry_received\":%s,\"new_token_received\":%s,"
		       "\"streams_opened\":%llu,\"migrated\":%s,"
		       "\"answers_after_migration\":%llu,"
		       "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f},"
		       "\"qps\":%.1f,\"elapsed_s\":%.3f,\"close\":%s}\n",
		       o->connections, (double)st0.handshake_ns / 1e6,
		       resumed ? "true" : "false",
		       early_att ? "true" : "false",
		       (unsigned long long)early_sent,
		       early_acc ? "true" : "false",
		       early_rej ? "true" : "false", retry ? "true" : "false",
		       token ? "true" : "false", (unsigned long long)streams,
		       migrated ? "true" : "false",
		       (unsigned long long)after_mig, p50, p99, qps,
		       (double)(end - r->start) / 1e9, close);
		return;
	}
	printf(";; %llu queries, %llu answers, %llu failed",
	       (unsigned long long)(r->queries + r->unsent),
	       (unsigned long long)r->answers,
	       (unsigned long long)(r->failed + r->unsent));
	for (unsigned i = 0; i < r->nerrs; i++)
		printf("%s%s %llu", i ? ", " : " (", r->errs[i].kind,
		       (unsigned long long)r->errs[i].n);
	printf("%s; latency p50 %.3f ms p99 %.3f ms; %.0f qps\n",
	       r->nerrs ? ")" : "", p50, p99, qps);
}

static int read_file(const char *path, uint8_t **out, size_t *len,
		     size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	uint8_t *buf = malloc(max);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, max, f);
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
}

/* ---- --half-open: a client that stops after its first flight ---- */

/*
 * The attacker of the listener's half-open bound: each connection sends
 * its Initial, answers the server's Retry (so it passes address
 * validation) and then never sends again, so the server holds a
 * handshake in progress until its handshake timeout or until it evicts
 * it.  At most HO_WINDOW wait for the server at once; each waits -t S.
 */
#define HO_WINDOW 256

typedef struct {
	dv_doq_client_t *c;
	sock_t sock;
	uint64_t deadline;
	bool token_sent; /* the second Initial, with the Retry token, is out */
} ho_conn_t;

typedef struct {
	uint64_t started, retried, half_open, refused, no_retry, timeouts;
} ho_count_t;

static void ho_end(ho_conn_t *h)
{
	dv_doq_client_free(h->c);
	h->c = NULL;
	if (h->sock.fd >= 0)
		close(h->sock.fd);
	h->sock.fd = -1;
}

/* Send what the engine has (its Initial, or the Initial with the token). */
static void ho_flush(ho_conn_t *h, uint64_t now)
{
	for (unsigned i = 0; i < 16; i++) {
		void *ctx = NULL;
		int n = dv_doq_client_write(h->c, pktbuf, sizeof(pktbuf), &ctx,
					    now);
		if (n <= 0)
			return;
		(void)send(h->sock.fd, pktbuf, (size_t)n, 0);
	}
}

/* The server answered: classify, and stop (or send the token Initial). */
static void ho_readable(ho_conn_t *h, ho_count_t *k, uint64_t now,
			uint64_t wait)
{
	bool closed = false, got = false;
	for (unsigned i = 0; i < 64; i++) {
		ssize_t n = recv(h->sock.fd, pktbuf, sizeof(pktbuf),
				 MSG_DONTWAIT);
		if (n < 0)
			break;
		got = true;
		if (dv_doq_client_read(h->c, &h->sock.path, pktbuf, (size_t)n,
				       now) != 0) {
			closed = true;
			break;
		}
	}
	if (!got)
		return;
	dv_doq_stats_t st;
	dv_doq_client_stats(h->c, &st);
	if (closed) {
		k->refused++; /* CONNECTION_CLOSE (refused) before anything */
	} else if (!h->token_sent && st.retry_received) {
		k->retried++;
		ho_flush(h, now); /* the Initial with the token */
		h->token_sent = true;
		h->deadline = now + wait;
		return;
	} else if (h->token_sent) {
		k->half_open++; /* the server's flight: it holds state now */
	} else {
		k->no_retry++; /* state held without a Retry first */
	}
	ho_end(h);
}

/* The client TLS context: --ca, --alpn, and --cert/--key if given. */
static dv_quic_tls_ctx_t *tls_ctx(const opts_t *o, char *err, size_t err_len)
{
	dv_quic_tls_ctx_t *t =
		dv_quic_tls_client_ctx_new(o->ca, o->alpn, err, err_len);
	if (t && o->cert &&
	    dv_quic_tls_client_cert(t, o->cert, o->key, err, err_len) != 0) {
		dv_quic_tls_ctx_free(t);
		return NULL;
	}
	return t;
}

static int run_half_open(opts_t *o)
{
	run_t r = {.o = o};
	char err[256];
	ho_count_t k = {0};
	r.tls = tls_ctx(o, err, sizeof(err));
	if (!r.tls) {
		fprintf(stderr, "dnsveil-doq: %s\n", err);
		return 1;
	}
	dv_doq_config_t cfg = {
		.tls = r.tls,
		.name = o->name,
		.query_timeout = (uint64_t)(o->timeout * NS),
		.handshake_timeout = (uint64_t)(o->timeout * NS),
		.debug = o->debug,
	};
	dv_doq_callbacks_t cb = {.on_message = on_message, .on_end = on_end};
	ho_conn_t win[HO_WINDOW];
	struct pollfd pfd[HO_WINDOW];
	unsigned idx[HO_WINDOW];
	for (unsigned i = 0; i < HO_WINDOW; i++)
		win[i] = (ho_conn_t){.sock.fd = -1};
	uint64_t start = dv_doq_now(), now = start;
	uint64_t stop_at = o->duration > 0
				   ? start + (uint64_t)(o->duration * NS)
				   : UINT64_MAX;
	uint64_t wait = (uint64_t)(o->timeout * NS);
	int ret = 0;
	for (;;) {
		now = dv_doq_now();
		/* start as many as the rate allows by now */
		uint64_t due = (uint64_t)((double)(now - start) / 1e9 * o->rate) + 1;
		bool starting = k.started < o->half_open && now < stop_at;
		for (unsigned i = 0; starting && i < HO_WINDOW; i++) {
			if (k.started >= due || k.started >= o->half_open)
				break;
			ho_conn_t *h = &win[i];
			if (h->c)
				continue;
			int rv = open_socket(&r, &h->sock);
			if (rv) {
				fprintf(stderr, "dnsveil-doq: socket: %s\n",
					strerror(-rv));
				ret = 1;
				goto out;
			}
			h->c = dv_doq_client_new(&cfg, &cb, &r, &h->sock.path,
						 now, err, sizeof(err));
			if (!h->c) {
				fprintf(stderr, "dnsveil-doq: %s\n", err);
				ret = 1;
				goto out;
			}
			h->token_sent = false;
			h->deadline = now + wait;
			k.started++;
			ho_flush(h, now);
		}
		unsigned n = 0;
		uint64_t next = UINT64_MAX;
		for (unsigned i = 0; i < HO_WINDOW; i++) {
			ho_conn_t *h = &win[i];
			if (!h->c)
				continue;
			if (h->deadline <= now) {
				k.timeouts++;
				ho_end(h);
				continue;
			}
			if (h->deadline < next)
				next = h->deadline;
			pfd[n] = (struct pollfd){.fd = h->sock.fd,
						 .events = POLLIN};
			idx[n++] = i;
		}
		starting = k.started < o->half_open && now < stop_at;
		if (!n && !starting)
			break;
		if (starting) {
			/* the next start, at the rate (or now if the window
			 * has room and we are behind) */
			uint64_t t = start + (uint64_t)((double)k.started /
							o->rate * 1e9);
			if (t < next)
				next = t;
		}
		int ms = 0;
		if (next > now) {
			uint64_t d = (next - now + 999999) / 1000000;
			ms = d > 1000 ? 1000 : (int)d;
		}
		int pn = poll(pfd, n, ms);
		now = dv_doq_now();
		for (int i = 0; pn > 0 && i < (int)n; i++)
			if (pfd[i].revents)
				ho_readable(&win[idx[i]], &k, now, wait);
	}
out:
	for (unsigned i = 0; i < HO_WINDOW; i++)
		if (win[i].c)
			ho_end(&win[i]);
	double el = (double)(dv_doq_now() - start) / 1e9;
	if (o->json)
		printf("{\"type\":\"half_open\",\"started\":%llu,"
		       "\"retried\":%llu,\"half_open\":%llu,\"refused\":%llu,"
		       "\"no_retry\":%llu,\"timeouts\":%llu,"
		       "\"elapsed_s\":%.3f}\n",
		       (unsigned long long)k.started,
		       (unsigned long long)k.retried,
		       (unsigned long long)k.half_open,
		       (unsigned long long)k.refused,
		       (unsigned long long)k.no_retry,
		       (unsigned long long)k.timeouts, el);
	else
		printf(";; half-open: %llu started, %llu answered a Retry, "
		       "%llu left half-open, %llu refused, %llu held without "
		       "a Retry, %llu timed out, %.3f s\n",
		       (unsigned long long)k.started,
		       (unsigned long long)k.retried,
		       (unsigned long long)k.half_open,
		       (unsigned long long)k.refused,
		       (unsigned long long)k.no_retry,
		       (unsigned long long)k.timeouts, el);
	dv_quic_tls_ctx_free(r.tls);
	fflush(stdout);
	return ret;
}

static int run(opts_t *o)
{
	if (o->half_open)
		return run_half_open(o);
	run_t r = {.o = o};
	int ret = 1;
	char err[256];
	r.tls = tls_ctx(o, err, sizeof(err));
	if (!r.tls) {
		fprintf(stderr, "dnsveil-doq: %s\n", err);
		return 1;
	}
	r.np = o->raw ? 1 : o->nq;
	r.payloads = calloc(r.np, sizeof(*r.payloads));
	r.conns = calloc(o->connections, sizeof(*r.conns));
	if (!r.payloads || !r.conns)
		goto out;
	for (unsigned i = 0; i < r.np; i++)
		if (make_payload(o, o->raw ? NULL : &o->q[i], &r.payloads[i]))
			goto out;
	r.per_conn = o->count * r.np;
	if (o->session_file &&
	    read_file(o->session_file, &r.session, &r.session_len,
		      DV_DOQ_SESSION_MAX) == 0 &&
	    r.session_len == 0) {
		free(r.session);
		r.session = NULL;
	}
	if (o->token_file)
		(void)read_file(o->token_file, &r.token, &r.token_len, 512);

	uint64_t now = dv_doq_now();
	r.start = now;
	if (o->duration > 0)
		r.stop_submitting_at = now + (uint64_t)(o->duration * NS);
	dv_doq_config_t cfg = {
		.tls = r.tls,
		.name = o->name,
		.session = r.session,
		.session_len = r.session_len,
		.early = o->early,
		.token = r.token,
		.token_len = r.token_len,
		.query_timeout = (uint64_t)(o->timeout * NS),
		.handshake_timeout = (uint64_t)(o->timeout * NS),
		.idle_timeout = (uint64_t)((o->hold + o->timeout + 30) * NS),
		.debug = o->debug,
	};
	dv_doq_callbacks_t cb = {
		.on_message = on_message,
		.on_end = on_end,
		.on_handshake = on_handshake,
	};
	for (unsigned i = 0; i < o->connections; i++) {
		conn_t *cn = &r.conns[i];
		cn->r = &r;
		cn->idx = i;
		cn->sock[0].fd = cn->sock[1].fd = -1;
		cn->slots = calloc(o->concurrency, sizeof(*cn->slots));
		if (!cn->slots)
			goto out;
		int rv = open_socket(&r, &cn->sock[0]);
		if (rv) {
			fprintf(stderr, "dnsveil-doq: socket: %s\n",
				strerror(-rv));
			goto out;
		}
		cn->nsock = 1;
		cn->c = dv_doq_client_new(&cfg, &cb, &r, &cn->sock[0].path,
					  now, err, sizeof(err));
		if (!cn->c) {
			fprintf(stderr, "dnsveil-doq: %s\n", err);
			goto out;
		}
	}

	struct pollfd *pfd = calloc(2 * o->connections, sizeof(*pfd));
	conn_t **pconn = calloc(2 * o->connections, sizeof(*pconn));
	sock_t **psock = calloc(2 * o->connections, sizeof(*psock));
	if (!pfd || !pconn || !psock) {
		free(pfd);
		free(pconn);
		free(psock);
		goto out;
	}
	for (;;) {
		now = dv_doq_now();
		bool all_done = true;
		uint64_t next = UINT64_MAX;
		unsigned nfd = 0;
		for (unsigned i = 0; i < o->connections; i++) {
			conn_t *cn = &r.conns[i];
			if (!cn->closing) {
				submit_more(cn, now);
				flush(cn, now);
				try_migrate(cn, now);
				maybe_close(cn, now);
			}
			if (cn->closing)
				continue;
			all_done = false;
			uint64_t t = dv_doq_client_expiry(cn->c);
			if (t < next)
				next = t;
			if (cn->done_at) {
				uint64_t h = cn->done_at +
					     (uint64_t)(o->hold * NS);
				if (h > now && h < next)
					next = h;
				if (cn->ticket_wait_until > now &&
				    cn->ticket_wait_until < next)
					next = cn->ticket_wait_until;
			}
			if (r.stop_submitting_at > now &&
			    r.stop_submitting_at < next)
				next = r.stop_submitting_at;
			for (unsigned k = 0; k < cn->nsock; k++) {
				pfd[nfd] = (struct pollfd){
					.fd = cn->sock[k].fd,
					.events = POLLIN};
				pconn[nfd] = cn;
				psock[nfd] = &cn->sock[k];
				nfd++;
			}
		}
		if (all_done)
			break;
		int ms = 0;
		if (next > now) {
			uint64_t d = (next - now + 999999) / 1000000;
			ms = d > 1000 ? 1000 : (int)d;
		}
		int n = poll(pfd, nfd, ms);
		now = dv_doq_now();
		if (n > 0) {
			for (unsigned k = 0; k < nfd; k++)
				if (pfd[k].revents)
					read_socket(pconn[k], psock[k], now);
		}
		for (unsigned i = 0; i < o->connections; i++) {
			conn_t *cn = &r.conns[i];
			if (!cn->closing &&
			    dv_doq_client_expiry(cn->c) <= now)
				(void)dv_doq_client_expire(cn->c, now);
		}
	}
	free(pfd);
	free(pconn);
	free(psock);

	for (unsigned i = 0; i < o->connections; i++) {
		conn_t *cn = &r.conns[i];
		if (r.per_conn && cn->submitted < r.per_conn) {
			r.unsent += r.per_conn - cn->submitted;
			count_error(&r, "not_sent", r.per_conn - cn->submitted);
		}
		report_conn(cn);
	}
	report_summary(&r, dv_doq_now());
	ret = r.failed || r.unsent || r.answers < r.queries ? 1 : 0;
	if (r.queries == 0)
		ret = 1;
out:
	if (r.conns) {
		for (unsigned i = 0; i < o->connections; i++) {
			conn_t *cn = &r.conns[i];
			dv_doq_client_free(cn->c);
			for (unsigned k = 0; k < 2; k++)
				if (cn->sock[k].fd >= 0)
					close(cn->sock[k].fd);
			free(cn->slots);
		}
	}
	if (r.payloads)
		for (unsigned i = 0; i < r.np; i++)
			free(r.payloads[i].data);
	free(r.payloads);
	free(r.conns);
	free(r.lat);
	free(r.session);
	free(r.token);
	dv_quic_tls_ctx_free(r.tls);
	fflush(stdout);
	return ret;
}

#ifndef DNSVEIL_DOQ_NO_MAIN
int main(int argc, char **argv)
{
	opts_t o;
	char err[256];
	int rv = parse_args(argc, argv, &o, err, sizeof(err));
	if (rv) {
		fprintf(stderr, "dnsveil-doq: %s\n(try --help)\n", err);
		free(o.raw);
		return EXIT_USAGE;
	}
	if (o.help) {
		usage(stdout);
		free(o.raw);
		return 0;
	}
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	rv = run(&o);
	free(o.raw);
	return rv;
}
#endif

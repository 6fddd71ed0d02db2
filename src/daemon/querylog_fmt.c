/*
 * The query log's entries and lines: what a worker copies from an answer
 * (cheap: no formatting on the query path) and the line the writer thread
 * makes of it, as text or as one JSON object.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "src/core/json.h"
#include "src/core/metrics.h"
#include "src/core/wire.h"
#include "src/daemon/querylog.h"

static const char *const scheme_names[DV_SCHEME_COUNT] = {
#define SCHEME_NAME(e, s, l, u) [e] = s,
	DV_SCHEMES(SCHEME_NAME)
#undef SCHEME_NAME
};

static const char *const verdict_names[DV_VERDICT_COUNT] = {
#define VERDICT_NAME(e, s) [DV_VERDICT_##e] = s,
	DV_VERDICTS(VERDICT_NAME)
#undef VERDICT_NAME
};

static const char *const rcode_names[16] = {
	"NOERROR",  "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE", "DSOTYPENI",
	"RCODE12",  "RCODE13", "RCODE14",  "RCODE15",
};

static const struct {
	uint16_t type;
	const char *name;
} type_names[] = {
	{ 1, "A" },	 { 2, "NS" },	  { 5, "CNAME" },  { 6, "SOA" },
	{ 12, "PTR" },	 { 13, "HINFO" }, { 15, "MX" },	   { 16, "TXT" },
	{ 28, "AAAA" },	 { 33, "SRV" },	  { 35, "NAPTR" }, { 39, "DNAME" },
	{ 43, "DS" },	 { 46, "RRSIG" }, { 47, "NSEC" },  { 48, "DNSKEY" },
	{ 50, "NSEC3" }, { 52, "TLSA" },  { 64, "SVCB" },  { 65, "HTTPS" },
	{ 99, "SPF" },	 { 255, "ANY" },  { 257, "CAA" },
};

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

void dv_qlog_entry_fill(dv_qlog_entry_t *e, const dv_query_t *q,
			const uint8_t *wire, size_t len, uint64_t now_us)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	e->wall_us =
		(uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	uint64_t lat = now_us > q->start_us ? now_us - q->start_us : 0;
	e->latency_us = lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat;
	e->rcode = len >= 4 ? (uint8_t)(wire[3] & 0x0f) : 2;
	e->transport = q->transport;
	e->source = q->source;
	e->verdict = q->verdict;
	e->stale = q->stale;
	/* the question as parsed; a FORMERR may have none */
	const dv_wire_query_t *v = &q->view;
	if (v->qname_len >= 1 && v->qname_len <= sizeof(e->qname) &&
	    (size_t)DV_DNS_HDR + v->qname_len + 4 <= q->len) {
		e->qname_len = (uint8_t)v->qname_len;
		memcpy(e->qname, q->wire + DV_DNS_HDR, v->qname_len);
		e->qtype = v->qtype;
	} else {
		e->qname_len = 0;
		e->qtype = 0;
	}
	const struct sockaddr *sa = (const struct sockaddr *)&q->peer;
	e->family = 0;
	e->port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		e->family = AF_INET;
		memcpy(e->addr, &s4->sin_addr, 4);
		e->port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		e->family = AF_INET6;
		memcpy(e->addr, &s6->sin6_addr, 16);
		e->port = ntohs(s6->sin6_port);
	}
	copy_str(e->ident, sizeof(e->ident), q->ident);
	copy_str(e->group, sizeof(e->group), q->group);
	copy_str(e->list, sizeof(e->list), q->list);
	copy_str(e->upstream, sizeof(e->upstream), q->upstream);
}

/* The name in presentation form ("example.com."), with \DDD for bytes
 * that are not printable and a backslash before those that are special
 * (. \ " ( ) ; @ $, as BIND and dnspython write them); a label
 * running past the copied bytes ends it.  `out` holds 4 * 255 + 2. */
static size_t name_text(const uint8_t *n, size_t len, char *out)
{
	size_t o = 0, i = 0;
	if (len == 0) {
		out[0] = '\0';
		return 0;
	}
	while (i < len && n[i] != 0) {
		size_t l = n[i++];
		if (l > 63 || i + l > len)
			break;
		for (size_t k = 0; k < l; k++) {
			uint8_t c = n[i + k];
			if (strchr(".\\\"();@$", c) && c) {
				out[o++] = '\\';
				out[o++] = (char)c;
			} else if (c <= 0x20 || c >= 0x7f) {
				out[o++] = '\\';
				out[o++] = (char)('0' + c / 100);
				out[o++] = (char)('0' + c / 10 % 10);
				out[o++] = (char)('0' + c % 10);
			} else {
				out[o++] = (char)c;
			}
		}
		out[o++] = '.';
		i += l;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return o;
}

static const char *type_text(uint16_t t, char *buf)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
		if (type_names[i].type == t)
			return type_names[i].name;
	sprintf(buf, "TYPE%u", t);
	return buf;
}

static const char *source_text(const dv_qlog_entry_t *e)
{
	if (e->verdict == DV_VERDICT_BLOCKED ||
	    e->verdict == DV_VERDICT_REFUSED || e->verdict == DV_VERDICT_LIMITED)
		return "policy";
	if (e->stale)
		return "stale";
	return e->source < DV_SRC_COUNT ? dv_src_names[e->source] : "local";
}

/*
 * The line is built with appends rather than snprintf(): the writer thread
 * formats every line the workers queue, and printf's machinery was most of
 * its cost (callgrind: 15.7k instructions a JSON line with snprintf).
 */
typedef struct {
	char *p;
	size_t o, cap; /* cap - 1 usable: room for the NUL is kept */
} sb_t;

static void sb_mem(sb_t *b, const char *s, size_t n)
{
	size_t room = b->cap - 1 - b->o;
	if (n > room)
		n = room;
	memcpy(b->p + b->o, s, n);
	b->o += n;
}

static void sb_str(sb_t *b, const char *s)
{
	sb_mem(b, s, strlen(s));
}

/* `v` in decimal, at least `width` digits. */
static void sb_uint(sb_t *b, uint64_t v, int width)
{
	char d[24];
	int n = 0;
	do {
		d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v || n < width);
	sb_mem(b, d + sizeof(d) - n, (size_t)n);
}

/* A JSON string (quoted, escaped), or null when `s` is empty. */
static void sb_json(sb_t *b, const char *s)
{
	if (!s[0]) {
		sb_str(b, "null");
		return;
	}
	if (b->cap - 1 - b->o < 2)
		return;
	b->p[b->o++] = '"';
	/* leaves room for the closing quote */
	b->o += dv_json_escape(b->p + b->o, b->cap - b->o - 1, s, strlen(s));
	b->p[b->o++] = '"';
}

/* "2026-12-05T12:00:00" of `secs`: gmtime_r() once a second per thread. */
static const char *date_text(time_t secs)
{
	static __thread time_t cached = -1;
	static __thread char text[64];
	if (secs != cached) {
		struct tm tm;
		gmtime_r(&secs, &tm);
		snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
		cached = secs;
	}
	return text;
}

size_t dv_qlog_format(const dv_qlog_entry_t *e, bool json, char *out,
		      size_t cap)
{
	char name[4 * 255 + 2], tbuf[16], addr[INET6_ADDRSTRLEN] = "";
	sb_t b = { .p = out, .o = 0, .cap = cap };
	name_text(e->qname, e->qname_len, name);
	if (e->family)
		inet_ntop(e->family, e->addr, addr, sizeof(addr));
	const char *transport = e->transport < DV_SCHEME_COUNT
					? scheme_names[e->transport]
					: "?";
	const char *type = e->qname_len ? type_text(e->qtype, tbuf) : "";
	const char *verdict =
		e->verdict < DV_VERDICT_COUNT ? verdict_names[e->verdict] : "";
	const char *rcode = rcode_names[e->rcode & 15];

	if (json)
		sb_str(&b, "{\"ts\":\"");
	sb_str(&b, date_text((time_t)(e->wall_us / 1000000)));
	sb_str(&b, ".");
	sb_uint(&b, e->wall_us % 1000000, 6);
	if (!json) {
		/* the ID, group and upstream are names without spaces */
		sb_str(&b, "Z query ");
		sb_str(&b, transport);
		sb_str(&b, " ");
		sb_str(&b, addr[0] ? addr : "-");
		sb_str(&b, "#");
		sb_uint(&b, e->port, 1);
		sb_str(&b, " ");
		sb_str(&b, name[0] ? name : "-");
		sb_str(&b, " ");
		sb_str(&b, type[0] ? type : "-");
		sb_str(&b, " ");
		sb_str(&b, rcode);
		sb_str(&b, " ");
		sb_str(&b, source_text(e));
		sb_str(&b, " ");
		sb_uint(&b, e->latency_us / 1000, 1);
		sb_str(&b, ".");
		sb_uint(&b, e->latency_us % 1000, 3);
		sb_str(&b, "ms id=");
		sb_str(&b, e->ident[0] ? e->ident : "-");
		sb_str(&b, " group=");
		sb_str(&b, e->group[0] ? e->group : "-");
		sb_str(&b, " policy=");
		sb_str(&b, verdict[0] ? verdict : "-");
		if (e->list[0]) {
			sb_str(&b, "/");
			sb_str(&b, e->list);
		}
		sb_str(&b, " upstream=");
		sb_str(&b, e->upstream[0] ? e->upstream : "-");
	} else {
		sb_str(&b, "Z\",\"level\":\"info\",\"msg\":\"query\","
			   "\"transport\":\"");
		sb_str(&b, transport);
		sb_str(&b, "\",\"client\":");
		sb_json(&b, addr);
		sb_str(&b, ",\"port\":");
		sb_uint(&b, e->port, 1);
		sb_str(&b, ",\"id\":");
		sb_json(&b, e->ident);
		sb_str(&b, ",\"group\":");
		sb_json(&b, e->group);
		sb_str(&b, ",\"name\":");
		sb_json(&b, name);
		sb_str(&b, ",\"type\":");
		sb_json(&b, type);
		sb_str(&b, ",\"rcode\":\"");
		sb_str(&b, rcode);
		sb_str(&b, "\",\"source\":\"");
		sb_str(&b, source_text(e));
		sb_str(&b, "\",\"upstream\":");
		sb_json(&b, e->upstream);
		sb_str(&b, ",\"latency_ms\":");
		sb_uint(&b, e->latency_us / 1000, 1);
		sb_str(&b, ".");
		sb_uint(&b, e->latency_us % 1000, 3);
		sb_str(&b, ",\"policy\":");
		sb_json(&b, verdict);
		sb_str(&b, ",\"list\":");
		sb_json(&b, e->list);
		sb_str(&b, "}");
	}
	/* the newline always fits: a line is far shorter than
	 * DV_QLOG_LINE_MAX, and a cut one still ends its line */
	if (b.o == cap - 1)
		b.o--;
	out[b.o++] = '\n';
	out[b.o] = '\0';
	return b.o;
}

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
	"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE", "DSOTYPENI",
	"RCODE12", "RCODE13", "RCODE14",  "RCODE15",
};

static const struct {
	uint16_t type;
	const char *name;
} type_names[] = {
	{1, "A"},       {2, "NS"},      {5, "CNAME"},  {6, "SOA"},
	{12, "PTR"},    {13, "HINFO"},  {15, "MX"},    {16, "TXT"},
	{28, "AAAA"},   {33, "SRV"},    {35, "NAPTR"}, {39, "DNAME"},
	{43, "DS"},     {46, "RRSIG"},  {47, "NSEC"},  {48, "DNSKEY"},
	{50, "NSEC3"},  {52, "TLSA"},   {64, "SVCB"},  {65, "HTTPS"},
	{99, "SPF"},    {255, "ANY"},   {257, "CAA"},
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
	e->wall_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
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
				o += (size_t)sprintf(out + o, "\\%03u", c);
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
	for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]);
	     i++)
		if (type_names[i].type == t)
			return type_names[i].name;
	sprintf(buf, "TYPE%u", t);
	return buf;
}

static const char *source_text(const dv_qlog_entry_t *e)
{
	if (e->verdict == DV_VERDICT_BLOCKED || e->verdict == DV_VERDICT_REFUSED)
		return "policy";
	if (e->stale)
		return "stale";
	return e->source < DV_SRC_COUNT ? dv_src_names[e->source] : "local";
}

/* Append a JSON string (quoted) or null when `s` is empty. */
static size_t json_str(char *out, size_t cap, const char *s)
{
	if (!s[0])
		return (size_t)snprintf(out, cap, "null");
	if (cap < 3)
		return 0;
	out[0] = '"';
	size_t n = 1 + dv_json_escape(out + 1, cap - 2, s, strlen(s));
	out[n++] = '"';
	out[n] = '\0';
	return n;
}

size_t dv_qlog_format(const dv_qlog_entry_t *e, bool json, char *out,
		      size_t cap)
{
	char ts[64], name[4 * 255 + 2], tbuf[16], addr[INET6_ADDRSTRLEN] = "";
	time_t secs = (time_t)(e->wall_us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (unsigned)(e->wall_us % 1000000));
	name_text(e->qname, e->qname_len, name);
	if (e->family)
		inet_ntop(e->family, e->addr, addr, sizeof(addr));
	const char *transport = e->transport < DV_SCHEME_COUNT
					? scheme_names[e->transport]
					: "?";
	const char *type = e->qname_len ? type_text(e->qtype, tbuf) : "";
	const char *verdict =
		e->verdict < DV_VERDICT_COUNT ? verdict_names[e->verdict] : "";
	double ms = e->latency_us / 1000.0;
	size_t o;
	if (!json) {
		int n = snprintf(out, cap,
				 "%s query %s %s#%u %s %s %s %s %.3fms id=%s "
				 "group=%s policy=%s upstream=%s\n",
				 ts, transport, addr[0] ? addr : "-", e->port,
				 name[0] ? name : "-", type[0] ? type : "-",
				 rcode_names[e->rcode & 15], source_text(e), ms,
				 e->ident[0] ? e->ident : "-",
				 e->group[0] ? e->group : "-",
				 verdict[0] ? verdict : "-",
				 e->upstream[0] ? e->upstream : "-");
		/* the ID, group and upstream are names without spaces */
		o = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
		if (o && out[o - 1] != '\n')
			out[o - 1] = '\n';
		return o;
	}
	int n = snprintf(out, cap,
			 "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"query\","
			 "\"transport\":\"%s\",\"client\":",
			 ts, transport);
	o = (size_t)n;
	o += json_str(out + o, cap - o, addr);
	o += (size_t)snprintf(out + o, cap - o, ",\"port\":%u,\"id\":", e->port);
	o += json_str(out + o, cap - o, e->ident);
	o += (size_t)snprintf(out + o, cap - o, ",\"group\":");
	o += json_str(out + o, cap - o, e->group);
	o += (size_t)snprintf(out + o, cap - o, ",\"name\":");
	o += json_str(out + o, cap - o, name);
	o += (size_t)snprintf(out + o, cap - o, ",\"type\":");
	o += json_str(out + o, cap - o, type);
	o += (size_t)snprintf(out + o, cap - o,
			      ",\"rcode\":\"%s\",\"source\":\"%s\",\"upstream\":",
			      rcode_names[e->rcode & 15], source_text(e));
	o += json_str(out + o, cap - o, e->upstream);
	o += (size_t)snprintf(out + o, cap - o,
			      ",\"latency_ms\":%.3f,\"policy\":", ms);
	o += json_str(out + o, cap - o, verdict);
	o += (size_t)snprintf(out + o, cap - o, "}\n");
	return o;
}

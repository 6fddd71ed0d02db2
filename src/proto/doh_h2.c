/*
 * DNS over HTTPS (RFC 8484): the protocol engine (see doh.h).
 *
 * Design notes.
 *
 * One struct per connection, both protocols in it.  The request checks
 * (method, path, content-type, dns parameter, body size, the DNS header,
 * the forwarded address) are one piece of code, req_*, fed by nghttp2's
 * header callbacks (HTTP/2, one req_t per stream) or by http-parser's
 * (HTTP/1.1, one req_t for the request being parsed: requests arrive one
 * after the other).
 *
 * HTTP/2.  nghttp2 does the protocol: HPACK, flow control, stream states,
 * SETTINGS, refusing streams over MAX_CONCURRENT_STREAMS, GOAWAY on
 * connection errors.  We feed it with nghttp2_session_mem_recv() and let
 * nghttp2_session_send() write through the send callback straight into
 * the caller's buffer (partial writes are part of that callback's
 * contract), so the engine renders nothing ahead and holds no output
 * buffer: a response body stays in its stream until the data provider
 * copies it out, window permitting.  For backpressure the input is handed
 * to nghttp2 one frame at a time (only the 9-byte frame header's length is
 * looked at, to know where frames end) and stops between frames while
 * max_streams queries are in flight.  A stream that goes away while its
 * query is in flight becomes an "orphan": it keeps counting until the
 * transport answers it, so resetting streams does not buy more queries.
 * An error response sent before the request ended (413, 431, 404...) is
 * followed by RST_STREAM(NO_ERROR) so the client stops uploading
 * (RFC 9113 8.1).
 * Floods of CONTINUATION frames and of stream resets are bounded by
 * nghttp2's own defaults (Debian's 1.52 has both fixes backported).  Every
 * connection error ends with a GOAWAY written before the close: nghttp2
 * queues its own for protocol errors, and h2_fatal() one for what it hands
 * back to us (floods of ACKs or CONTINUATIONs, our callbacks' failures).
 * HPACK bombs are bounded per request and per connection (see
 * h2_header_cb).
 *
 * HTTP/1.1.  http-parser does the parsing, including chunked bodies; the
 * head of each request passes h1_scan_head() first, which refuses what
 * http-parser 2.9 would let through and RFC 9112 does not (whitespace
 * before a field's colon, obs-fold, bare LF).
 * Responses leave strictly in request order: each request takes a slot in
 * a FIFO (a ring holding at most max_streams + 1); a slot becomes
 * ready when its answer (or the engine's own error) is there, and output
 * renders the head slot only.  The parser is paused after every request
 * (the next head is scanned before it is parsed) and stays paused while
 * the FIFO is full; dv_doh_input() then returns what it consumed.  Errors
 * that leave the byte stream unusable (broken HTTP, 505, 431, 413) end the
 * connection after their response; so do "Connection: close" and HTTP/1.0.
 * The response header is rendered only when the slot reaches the head, so
 * "Connection: close" can still be added by a drain.
 *
 * Responses carry no Date header: the engine has no clock, and a DoH
 * client has no use for it (RFC 8484 caching works on max-age).
 */
#include "src/proto/doh.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/core/errors.h"
#include "src/core/wire.h"

enum { M_NONE, M_GET, M_POST, M_HEAD, M_OTHER };
enum { FWD_NONE, FWD_BAD, FWD_OK };

#define ADDR_TEXT 46 /* INET6_ADDRSTRLEN */

/* An address a proxy reported in one header kind. */
typedef struct {
	uint8_t state; /* FWD_* */
	int af;
	uint8_t addr[16];
} fwd_t;

/* One request being received. */
typedef struct {
	uint8_t method;      /* M_* */
	bool ct_ok;          /* last content-type is application/dns-message */
	bool host_seen;      /* HTTP/1.1 needs Host */
	bool expect_continue;
	uint16_t status;     /* the engine's own answer, 0 while none */
	const char *why;     /* its body text (NULL: generic) */
	size_t hdr_bytes;    /* target + header names + values */
	uint64_t body_seen;  /* body bytes received, kept or not */
	bool cl_known;       /* HTTP/2 content-length (HTTP/1: the parser's) */
	uint64_t cl;
	const char *path;    /* the opts->paths entry matched */
	size_t query_off, query_len; /* query string within target */
	char *target;
	size_t target_len, target_cap;
	uint8_t *body;
	size_t body_len, body_cap;
	fwd_t xff, fwd;
} req_t;

/* ---- HTTP/2 ---- */

enum { S_RECV, S_QUERY, S_RESP, S_ORPHAN };

typedef struct h2s {
	struct h2s *prev, *next; /* live or orphan list */
	int32_t id;
	uint8_t state; /* S_* */
	req_t req;
	const uint8_t *resp; /* response body: owned answer or text */
	uint8_t *owned;
	size_t resp_len, resp_off;
	char text[48]; /* generic error text */
} h2s_t;

/* ---- HTTP/1.1 ---- */

enum { SL_WAIT, SL_READY };
enum { HS_LINE, HS_NAME, HS_REST, HS_CR }; /* see h1_scan_head() */

typedef struct {
	uint32_t id;
	uint8_t state; /* SL_* */
	bool close;    /* the connection ends after this response */
	bool head;     /* HEAD request: no body */
	uint16_t status;
	uint32_t max_age;
	const char *why;
	uint8_t *body; /* answer (status 200) */
	size_t body_len;
} slot_t;

#define H1_HDR_MAX 512

struct dv_doh {
	dv_doh_proto_t proto;
	dv_doh_opts_t opts;
	dv_doh_cb_t cb;
	void *user;
	unsigned outstanding; /* queries handed out, not answered */
	size_t unsent;        /* answer bytes not yet output */
	int err;              /* sticky: input ends with this */
	bool draining;

	/* HTTP/2 */
	nghttp2_session *h2;
	bool dead; /* nghttp2 failed fatally: drop the connection */
	h2s_t *live, *orphans;
	size_t preface_left;  /* client magic bytes still to come */
	uint8_t fh[9];        /* frame header being received */
	uint8_t fh_len;       /* 9: in the payload */
	uint32_t payload_left;
	int32_t goaway_last;
	uint64_t rx;         /* bytes nghttp2 has taken, preface included */
	uint64_t hdr_fields; /* header field bytes nghttp2 handed us */
	unsigned oversized;  /* requests over max_header_bytes */
	uint32_t fail_code;  /* GOAWAY code for our callback's failure */
	uint8_t *obuf; /* output target during nghttp2_session_send */
	size_t olen, ocap;

	/* HTTP/1.1 */
	http_parser hp;
	req_t req;
	bool started, in_message, stopped;
	bool in_value, keep_value;
	char hname[32];
	size_t hname_len; /* > sizeof(hname) - 1: too long to be ours */
	char *hval;
	size_t hval_len, hval_cap;
	uint32_t next_id;
	slot_t *q;
	unsigned q_head, q_len, q_cap;
	bool emitting; /* the head slot is being output */
	char hdr[H1_HDR_MAX];
	size_t hdr_len, hdr_off, body_off;
	bool interim; /* "100 Continue" to send before anything else */
	size_t interim_off;
	bool h1_body;    /* past the head: http-parser frames the body */
	uint8_t hs;      /* head scanner state, HS_* */
	bool hs_started; /* the request line has ended */
	bool hs_empty;   /* the line being scanned is empty so far */
};

/* ---- response texts ---- */

static const char T_NODNS[] = "400 bad request: missing dns parameter\n";
static const char T_B64[] =
	"400 bad request: dns parameter is not valid base64url\n";
static const char T_SHORT[] =
	"400 bad request: DNS message shorter than 12 bytes\n";
static const char T_QR[] =
	"400 bad request: DNS message is a response (QR set)\n";
static const char T_QDCOUNT[] =
	"400 bad request: DNS message must have exactly one question\n";
static const char T_TARGET[] = "400 bad request: invalid request target\n";
static const char T_HOST[] = "400 bad request: HTTP/1.1 needs Host\n";
static const char T_HTTP[] = "400 bad request: malformed HTTP request\n";
static const char T_NAME_WS[] =
	"400 bad request: whitespace in a header field name or before "
	"its colon\n";
static const char T_FOLD[] =
	"400 bad request: obsolete line folding in the header section\n";
static const char T_LF[] =
	"400 bad request: header section line not ended by CRLF\n";
static const char T_CR[] = "400 bad request: bare CR in the header section\n";
static const char T_404[] = "404 not found: no DoH service at this path\n";
static const char T_405[] = "405 method not allowed: use GET or POST\n";
static const char T_413[] =
	"413 payload too large: a DNS message is at most 65535 bytes\n";
static const char T_415[] = "415 unsupported media type: POST needs "
			    "content-type application/dns-message\n";
static const char T_431[] = "431 request header fields too large\n";
static const char T_500[] = "500 internal server error\n";
static const char T_505[] =
	"505 HTTP version not supported: use HTTP/1.1 or HTTP/2\n";
static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static const char *reason(unsigned status)
{
	const char *r = http_status_str((enum http_status)status);
	return r && r[0] != '<' ? r : "Error";
}

/* The body of an error response: the specific text, or "<code> <reason>". */
static const char *error_text(unsigned status, const char *why, char *buf,
			      size_t cap)
{
	if (why)
		return why;
	snprintf(buf, cap, "%u %s\n", status, reason(status));
	return buf;
}

/* ---- small helpers ---- */

static int grow(void *pp, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *p = realloc(*(void **)pp, c * elem);
	if (!p)
		return -ENOMEM;
	*(void **)pp = p;
	*cap = c;
	return 0;
}

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *n)
{
	while (*n && ows(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && ows((*s)[*n - 1]))
		(*n)--;
}

static bool name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* ---- base64url (RFC 4648 section 5), padding optional ---- */

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decode into `out` (room for n * 3 / 4 bytes).  Returns the length or -1
 * for a character outside the alphabet, misplaced padding or a length no
 * encoding has. */
static ssize_t b64url_decode(const char *s, size_t n, uint8_t *out)
{
	size_t pad = 0;
	while (n && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if ((pad && (n + pad) % 4) || n % 4 == 1)
		return -1;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64url_val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (ssize_t)o;
}

/* ---- forwarded addresses ---- */

/* One address as proxies write it: optional quotes, IPv6 in brackets with
 * an optional port, IPv4 with an optional port. */
static void fwd_addr(const char *s, size_t n, fwd_t *f)
{
	f->state = FWD_BAD;
	if (n == 0)
		return;
	trim(&s, &n);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s++;
		n -= 2;
	}
	if (n && s[0] == '[') {
		const char *e = memchr(s, ']', n);
		if (!e)
			return;
		size_t rest = n - (size_t)(e + 1 - s);
		const char *r = e + 1;
		if (rest && (r[0] != ':' || rest == 1))
			return;
		for (size_t i = 1; i < rest; i++)
			if (r[i] < '0' || r[i] > '9')
				return;
		s++;
		n = (size_t)(e - s);
	} else {
		const char *c = memchr(s, ':', n);
		if (c && !memchr(c + 1, ':', n - (size_t)(c + 1 - s)))
			n = (size_t)(c - s); /* a.b.c.d:port */
	}
	char buf[ADDR_TEXT];
	if (n == 0 || n >= sizeof(buf))
		return;
	memcpy(buf, s, n);
	buf[n] = 0;
	if (inet_pton(AF_INET, buf, f->addr) == 1)
		f->af = AF_INET;
	else if (inet_pton(AF_INET6, buf, f->addr) == 1)
		f->af = AF_INET6;
	else
		return;
	f->state = FWD_OK;
}

/* X-Forwarded-For: the right-most element is the one our proxy added. */
static void parse_xff(const char *v, size_t n, fwd_t *f)
{
	size_t i = n;
	while (i && v[i - 1] != ',')
		i--;
	fwd_addr(v + i, n - i, f);
}

/* Forwarded (RFC 7239): elements by ',', pairs by ';', values tokens or
 * quoted strings.  The last for= is the one our proxy added; obfuscated
 * identifiers and "unknown" are not addresses. */
static void parse_forwarded(const char *v, size_t n, fwd_t *f)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (ows(v[i]) || v[i] == ',' || v[i] == ';'))
			i++;
		size_t ns = i;
		while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ',')
			i++;
		const char *name = v + ns;
		size_t nlen = i - ns;
		trim(&name, &nlen);
		if (i >= n || v[i] != '=')
			continue;
		i++;
		char tmp[64];
		const char *val;
		size_t vlen = 0;
		bool ok = true;
		while (i < n && ows(v[i]))
			i++;
		if (i < n && v[i] == '"') {
			bool closed = false;
			for (i++; i < n;) {
				char c = v[i++];
				if (c == '"') {
					closed = true;
					break;
				}
				if (c == '\\' && i < n)
					c = v[i++];
				if (vlen < sizeof(tmp))
					tmp[vlen] = c;
				vlen++;
			}
			ok = closed && vlen <= sizeof(tmp);
			val = tmp;
		} else {
			size_t vs = i;
			while (i < n && v[i] != ';' && v[i] != ',')
				i++;
			val = v + vs;
			vlen = i - vs;
		}
		if (!name_is(name, nlen, "for"))
			continue;
		if (ok)
			fwd_addr(val, vlen, f);
		else
			f->state = FWD_BAD;
	}
}

/* The client address to report, as text in `buf`, or NULL. */
static const char *forwarded_for(const dv_doh_t *d, const req_t *r,
				 char *buf)
{
	if (!d->opts.trust_forwarded)
		return NULL;
	const fwd_t *a = &r->fwd, *b = &r->xff, *pick = a->state ? a : b;
	if (a->state && b->state &&
	    (a->state != FWD_OK || b->state != FWD_OK || a->af != b->af ||
	     memcmp(a->addr, b->addr, a->af == AF_INET ? 4 : 16) != 0))
		return NULL; /* they disagree: one is the client's */
	if (pick->state != FWD_OK)
		return NULL;
	return inet_ntop(pick->af, pick->addr, buf, ADDR_TEXT);
}

/* ---- the request checks, both protocols ---- */

static void req_clear(req_t *r)
{
	char *t = r->target;
	uint8_t *b = r->body;
	size_t tc = r->target_cap, bc = r->body_cap;
	memset(r, 0, sizeof(*r));
	r->target = t;
	r->target_cap = tc;
	r->body = b;
	r->body_cap = bc;
}

static void req_free(req_t *r)
{
	free(r->target);
	free(r->body);
	r->target = NULL;
	r->body = NULL;
	r->target_cap = r->body_cap = 0;
}

static void req_fail(req_t *r, uint16_t status, const char *why)
{
	if (!r->status) {
		r->status = status;
		r->why = why;
	}
}

/* Count header bytes; false (and 431) when over the limit. */
static bool req_count(const dv_doh_t *d, req_t *r, size_t n)
{
	r->hdr_bytes += n;
	if (r->hdr_bytes <= d->opts.max_header_bytes)
		return true;
	r->status = 431; /* wins over anything decided before */
	r->why = T_431;
	return false;
}

static int req_target(req_t *r, const char *s, size_t n)
{
	if (grow(&r->target, &r->target_cap, r->target_len + n + 1, 1))
		return -ENOMEM;
	memcpy(r->target + r->target_len, s, n);
	r->target_len += n;
	r->target[r->target_len] = 0;
	return 0;
}

static bool ct_is_dns(const char *v, size_t n)
{
	static const char want[] = "application/dns-message";
	const size_t wl = sizeof(want) - 1;
	trim(&v, &n);
	if (n < wl || strncasecmp(v, want, wl) != 0)
		return false;
	v += wl;
	n -= wl;
	trim(&v, &n);
	return n == 0 || v[0] == ';';
}

/* A regular (not pseudo) header field of the request. */
static void req_header(const dv_doh_t *d, req_t *r, const char *name,
		       size_t nlen, const char *v, size_t vlen)
{
	if (name_is(name, nlen, "content-type")) {
		r->ct_ok = ct_is_dns(v, vlen);
	} else if (name_is(name, nlen, "x-forwarded-for")) {
		if (d->opts.trust_forwarded)
			parse_xff(v, vlen, &r->xff);
	} else if (name_is(name, nlen, "forwarded")) {
		if (d->opts.trust_forwarded) {
			fwd_t f = {0};
			parse_forwarded(v, vlen, &f);
			if (f.state)
				r->fwd = f;
		}
	} else if (name_is(name, nlen, "host")) {
		r->host_seen = true;
	} else if (name_is(name, nlen, "expect")) {
		trim(&v, &vlen);
		r->expect_continue = name_is(v, vlen, "100-continue");
	}
}

/* Header names whose values req_header() reads. */
static bool req_wants(const char *name, size_t nlen)
{
	static const char *const names[] = {"content-type", "x-forwarded-for",
					    "forwarded", "host", "expect"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (name_is(name, nlen, names[i]))
			return true;
	return false;
}

static uint8_t method_of(const char *m, size_t n)
{
	if (n == 3 && memcmp(m, "GET", 3) == 0)
		return M_GET;
	if (n == 4 && memcmp(m, "POST", 4) == 0)
		return M_POST;
	if (n == 4 && memcmp(m, "HEAD", 4) == 0)
		return M_HEAD;
	return M_OTHER;
}

/* The request head is complete: the checks that need no body. */
static void req_head_done(const dv_doh_t *d, req_t *r, bool cl_known,
			  uint64_t content_length)
{
	if (r->status)
		return;
	if (r->method != M_GET && r->method != M_POST) {
		req_fail(r, 405, T_405);
		return;
	}
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (!r->target || r->target_len > UINT16_MAX ||
	    http_parser_parse_url(r->target, r->target_len, 0, &u) != 0) {
		req_fail(r, 400, T_TARGET);
		return;
	}
	const char *path = "/";
	size_t plen = 1;
	if (u.field_set & (1u << UF_PATH)) {
		path = r->target + u.field_data[UF_PATH].off;
		plen = u.field_data[UF_PATH].len;
	}
	for (unsigned i = 0; i < d->opts.n_paths && !r->path; i++)
		if (strlen(d->opts.paths[i]) == plen &&
		    memcmp(d->opts.paths[i], path, plen) == 0)
			r->path = d->opts.paths[i];
	if (!r->path) {
		req_fail(r, 404, T_404);
		return;
	}
	if (u.field_set & (1u << UF_QUERY)) {
		r->query_off = u.field_data[UF_QUERY].off;
		r->query_len = u.field_data[UF_QUERY].len;
	}
	if (r->method == M_POST) {
		if (!r->ct_ok)
			req_fail(r, 415, T_415);
		else if (cl_known && content_length > DV_DOH_MAX_BODY)
			req_fail(r, 413, T_413);
	}
}

/* Body bytes: counted always, kept for a POST still on track.  False
 * (and 413) when the body is over the limit. */
static int req_body(req_t *r, const char *p, size_t n)
{
	r->body_seen += n;
	if (r->body_seen > DV_DOH_MAX_BODY) {
		r->status = 413;
		r->why = T_413;
		return DV_ELIMIT;
	}
	if (r->method != M_POST || r->status)
		return 0;
	if (grow(&r->body, &r->body_cap, r->body_len + n, 1))
		return -ENOMEM;
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	return 0;
}

static bool find_param(const char *q, size_t qlen, const char *name,
		       const char **val, size_t *vlen)
{
	size_t nlen = strlen(name);
	for (size_t i = 0; i <= qlen;) {
		size_t j = i;
		while (j < qlen && q[j] != '&')
			j++;
		if (j - i > nlen && memcmp(q + i, name, nlen) == 0 &&
		    q[i + nlen] == '=') {
			*val = q + i + nlen + 1;
			*vlen = j - i - nlen - 1;
			return true;
		}
		i = j + 1;
	}
	return false;
}

/*
 * The request is complete: find the DNS message and judge it.  Returns 0
 * with the message in *msg and *len (r->body), an HTTP status to answer with
 * (r->why set), or -ENOMEM.
 */
static int req_finish(req_t *r, const uint8_t **msg, size_t *len)
{
	if (r->status)
		return r->status;
	if (r->method == M_GET) {
		const char *v;
		size_t vlen;
		if (!find_param(r->target + r->query_off, r->query_len, "dns",
				&v, &vlen)) {
			req_fail(r, 400, T_NODNS);
			return r->status;
		}
		/* the target is under max_header_bytes <= 65535, so the
		 * decoded message is always under 65535 bytes */
		if (grow(&r->body, &r->body_cap, vlen / 4 * 3 + 3, 1))
			return -ENOMEM;
		ssize_t n = b64url_decode(v, vlen, r->body);
		if (n < 0) {
			req_fail(r, 400, T_B64);
			return r->status;
		}
		r->body_len = (size_t)n;
	}
	dv_wire_query_t q;
	switch (dv_wire_parse_query(r->body, r->body_len, &q)) {
	case DV_ESHORT:
		req_fail(r, 400, T_SHORT);
		return r->status;
	case DV_ENOTQUERY:
		req_fail(r, 400, T_QR);
		return r->status;
	case DV_EQDCOUNT:
		req_fail(r, 400, T_QDCOUNT);
		return r->status;
	default: /* valid, or malformed with a header: the core's FORMERR */
		break;
	}
	*msg = r->body;
	*len = r->body_len;
	return 0;
}

/* ======================== HTTP/2 ======================== */

static void list_add(h2s_t **head, h2s_t *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

static void list_del(h2s_t **head, h2s_t *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static void h2s_free(dv_doh_t *d, h2s_t *s)
{
	if (s->owned)
		d->unsent -= s->resp_len - s->resp_off;
	free(s->owned);
	req_free(&s->req);
	free(s);
}

static h2s_t *h2_stream(dv_doh_t *d, int32_t id)
{
	return nghttp2_session_get_stream_user_data(d->h2, id);
}

static ssize_t h2_send_cb(nghttp2_session *session, const uint8_t *data,
			  size_t length, int flags, void *user)
{
	dv_doh_t *d = user;
	size_t n = d->obuf ? d->ocap - d->olen : 0;
	if (n == 0)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (n > length)
		n = length;
	memcpy(d->obuf + d->olen, data, n);
	d->olen += n;
	return (ssize_t)n;
}

static ssize_t h2_read_cb(nghttp2_session *session, int32_t stream_id,
			  uint8_t *buf, size_t length, uint32_t *data_flags,
			  nghttp2_data_source *source, void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = source->ptr;
	size_t n = s->resp_len - s->resp_off;
	if (n > length)
		n = length;
	memcpy(buf, s->resp + s->resp_off, n);
	s->resp_off += n;
	if (s->owned)
		d->unsent -= n;
	if (s->resp_off == s->resp_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NV(n, v, vl)                                                         \
	((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),  \
		      NGHTTP2_NV_FLAG_NO_COPY_NAME})

/* Submit the response held in `s` (resp/resp_len): status 200 with the
 * DNS headers, or an error with a text body. */
static int h2_submit(dv_doh_t *d, h2s_t *s, unsigned status, uint32_t max_age,
		     bool body)
{
	char st[8], cl[24], cc[32];
	nghttp2_nv nv[6];
	size_t n = 0;
	int stl = snprintf(st, sizeof(st), "%u", status);
	int cll = snprintf(cl, sizeof(cl), "%zu", s->resp_len);
	nv[n++] = NV(":status", st, (size_t)stl);
	if (status == 200) {
		int ccl = snprintf(cc, sizeof(cc), "max-age=%u", max_age);
		nv[n++] = NV("content-type", "application/dns-message", 23);
		nv[n++] = NV("content-length", cl, (size_t)cll);
		nv[n++] = NV("cache-control", cc, (size_t)ccl);
	} else {
		nv[n++] = NV("content-type", "text/plain; charset=utf-8", 25);
		if (body)
			nv[n++] = NV("content-length", cl, (size_t)cll);
		nv[n++] = NV("cache-control", "no-store", 8);
		if (status == 405)
			nv[n++] = NV("allow", "GET, POST", 9);
	}
	nghttp2_data_provider prd = {.source.ptr = s,
				     .read_callback = h2_read_cb};
	s->state = S_RESP;
	int rv = nghttp2_submit_response(d->h2, s->id, nv, n,
					 body ? &prd : NULL);
	if (rv != 0) {
		nghttp2_submit_rst_stream(d->h2, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
		return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	return 0;
}

static int h2_error(dv_doh_t *d, h2s_t *s, unsigned status, const char *why)
{
	const char *t = error_text(status, why, s->text, sizeof(s->text));
	s->resp = (const uint8_t *)t;
	s->resp_len = strlen(t);
	s->resp_off = 0;
	return h2_submit(d, s, status, 0, s->req.method != M_HEAD);
}

/* The request on `s` has ended (END_STREAM). */
static void h2_request_end(dv_doh_t *d, h2s_t *s)
{
	if (s->state != S_RECV)
		return;
	if (d->draining && s->id > d->goaway_last) {
		/* came after our GOAWAY named the last stream: the client
		 * retries it elsewhere */
		s->state = S_RESP;
		nghttp2_submit_rst_stream(d->h2, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_REFUSED_STREAM);
		return;
	}
	const uint8_t *msg = NULL;
	size_t len = 0;
	int rv = req_finish(&s->req, &msg, &len);
	if (rv < 0) {
		h2_error(d, s, 500, T_500);
		return;
	}
	if (rv > 0) {
		h2_error(d, s, (unsigned)rv, s->req.why);
		return;
	}
	char fbuf[ADDR_TEXT];
	const char *fwd = forwarded_for(d, &s->req, fbuf);
	s->state = S_QUERY;
	d->outstanding++;
	d->cb.query(d->user, (uint32_t)s->id, s->req.path, msg, len, fwd);
	/* the request is no longer needed, whatever the callback did */
	req_free(&s->req);
}

static int h2_begin_headers_cb(nghttp2_session *session,
			       const nghttp2_frame *frame, void *user)
{
	dv_doh_t *d = user;
	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	h2s_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* stream reset */
	s->id = frame->hd.stream_id;
	if (nghttp2_session_set_stream_user_data(session, s->id, s) != 0) {
		free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	list_add(&d->live, s);
	return 0;
}

/*
 * What a connection may make us decode.  HPACK lets one byte stand for a
 * whole dynamic-table entry (up to 4064 bytes with the default 4096-byte
 * table), and nghttp2 validates every field it hands us byte by byte: a
 * 12 KB header block of references to one 4 KB entry is 48 MB of work.
 * Three bounds, each checked as a field arrives, before the next one is
 * decoded for us:
 *  - a request: no field after the one that took it over
 *    max_header_bytes (that one decides the 431; if more follow, the
 *    stream is reset, see h2_header_cb);
 *  - a connection: header bytes handed to us at most HDR_SLACK +
 *    HDR_RATIO x the bytes it sent (measured on real clients: curl,
 *    h2load, kdig, httpx stay under 3x, since a request's path or body
 *    is sent literally; python3-h2 repeating one GET, every field
 *    indexed, reaches 11x);
 *  - a connection: at most MAX_OVERSIZED requests over max_header_bytes
 *    (each is decoded up to the limit; a client whose requests keep
 *    going over it gets nothing from the connection anyway).
 * Over either connection bound: GOAWAY(ENHANCE_YOUR_CALM), the code RFC
 * 9113 5.4.1/10.5 gives for a peer "exhibiting a behavior that might be
 * generating excessive load".  COMPRESSION_ERROR would be wrong: the
 * compression context is intact, the HPACK is valid.
 *
 * A smaller SETTINGS_HEADER_TABLE_SIZE would only change how many bytes
 * the attacker needs to reach these bounds, not the bounds, and it would
 * cost every client its compression (and the table is 4096 bytes until
 * our SETTINGS are acknowledged anyway), so we keep the default.
 */
#define HDR_RATIO 32
#define HDR_SLACK(d) (4 * (uint64_t)(d)->opts.max_header_bytes)
#define MAX_OVERSIZED 4

/* End the connection from inside a callback: nghttp2 stops at once and
 * h2_input() sends GOAWAY(code). */
static int h2_fail(dv_doh_t *d, uint32_t code)
{
	d->fail_code = code;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int h2_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
			const uint8_t *name, size_t namelen,
			const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user)
{
	dv_doh_t *d = user;
	size_t len = namelen + valuelen;
	d->hdr_fields += len;
	if (d->hdr_fields > HDR_SLACK(d) + HDR_RATIO * d->rx)
		return h2_fail(d, NGHTTP2_ENHANCE_YOUR_CALM);
	h2s_t *s = h2_stream(d, frame->hd.stream_id);
	if (!s)
		return 0;
	req_t *r = &s->req;
	if (r->hdr_bytes > d->opts.max_header_bytes) {
		/*
		 * More fields after the one that took the request over the
		 * limit.  Every one of them would be decoded and validated
		 * for nothing, so nghttp2 must stop handing them over: that
		 * is TEMPORAL_CALLBACK_FAILURE, which resets the stream
		 * (nghttp2 1.52 then drops any response queued on it, so
		 * the 431 cannot be sent).  Our RST_STREAM goes first to
		 * carry ENHANCE_YOUR_CALM instead of nghttp2's
		 * INTERNAL_ERROR: the request was too large, nothing broke
		 * here, and REFUSED_STREAM would invite a retry.
		 */
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_ENHANCE_YOUR_CALM);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	/* trailers count against the limit too, and are otherwise ignored */
	if (!req_count(d, r, len)) {
		if (++d->oversized > MAX_OVERSIZED)
			return h2_fail(d, NGHTTP2_ENHANCE_YOUR_CALM);
		return 0; /* 431, unless more fields follow (above) */
	}
	if (s->state != S_RECV || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	const char *n = (const char *)name, *v = (const char *)value;
	if (namelen && n[0] == ':') {
		if (name_is(n, namelen, ":method"))
			r->method = method_of(v, valuelen);
		else if (name_is(n, namelen, ":path") &&
			 req_target(r, v, valuelen) < 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
	if (name_is(n, namelen, "content-length")) {
		/* nghttp2 checked it is digits and matches the DATA sent */
		r->cl_known = true;
		r->cl = 0;
		for (size_t i = 0; i < valuelen && r->cl <= DV_DOH_MAX_BODY;
		     i++)
			r->cl = r->cl * 10 + (uint64_t)(v[i] - '0');
		return 0;
	}
	req_header(d, r, n, namelen, v, valuelen);
	return 0;
}

static int h2_frame_recv_cb(nghttp2_session *session,
			    const nghttp2_frame *frame, void *user)
{
	dv_doh_t *d = user;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	h2s_t *s = h2_stream(d, frame->hd.stream_id);
	if (!s)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST && s->state == S_RECV) {
		req_head_done(d, &s->req, s->req.cl_known, s->req.cl);
		if (s->req.status) {
			/* answer now; the rest of the request is ignored */
			h2_error(d, s, s->req.status, s->req.why);
			req_free(&s->req);
			return 0;
		}
	}
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		h2_request_end(d, s);
	return 0;
}

static int h2_data_cb(nghttp2_session *session, uint8_t flags,
		      int32_t stream_id, const uint8_t *data, size_t len,
		      void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = h2_stream(d, stream_id);
	if (!s || s->state != S_RECV)
		return 0;
	int rv = req_body(&s->req, (const char *)data, len);
	if (rv == DV_ELIMIT) {
		/* 413 at once; nothing more of it is kept */
		h2_error(d, s, 413, T_413);
		req_free(&s->req);
	} else if (rv < 0) {
		h2_error(d, s, 500, T_500);
		req_free(&s->req);
	}
	return 0;
}

static int h2_frame_send_cb(nghttp2_session *session,
			    const nghttp2_frame *frame, void *user)
{
	dv_doh_t *d = user;
	if (frame->hd.type == NGHTTP2_GOAWAY &&
	    frame->goaway.error_code != NGHTTP2_NO_ERROR && !d->err)
		d->err = -EPROTO; /* nghttp2 ended the connection */
	if ((frame->hd.type == NGHTTP2_HEADERS ||
	     frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    !nghttp2_session_get_stream_remote_close(session,
						     frame->hd.stream_id))
		/* answered before the request ended: stop the upload */
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
					  frame->hd.stream_id,
					  NGHTTP2_NO_ERROR);
	return 0;
}

static int h2_stream_close_cb(nghttp2_session *session, int32_t stream_id,
			      uint32_t error_code, void *user)
{
	dv_doh_t *d = user;
	h2s_t *s = h2_stream(d, stream_id);
	if (!s)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	list_del(&d->live, s);
	if (s->state == S_QUERY) {
		/* its query is in flight: it counts until answered */
		s->state = S_ORPHAN;
		req_free(&s->req);
		list_add(&d->orphans, s);
		return 0;
	}
	h2s_free(d, s);
	return 0;
}

static int h2_init(dv_doh_t *d)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	int ret = -ENOMEM;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return -ENOMEM;
	if (nghttp2_option_new(&opt) != 0)
		goto fail_opt;
	nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(
		cbs, h2_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
							     h2_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
								  h2_data_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
							     h2_frame_send_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(
		cbs, h2_stream_close_cb);
	/* closed streams are only kept for priorities, which we ignore */
	nghttp2_option_set_no_closed_streams(opt, 1);
	if (nghttp2_session_server_new2(&d->h2, cbs, d, opt) != 0)
		goto fail_session;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, d->opts.max_streams},
		/* a whole DNS message per stream without waiting */
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, DV_DOH_MAX_BODY},
		/* advisory; HPACK counts 32 bytes per field on top */
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		 (uint32_t)d->opts.max_header_bytes + 32 * 32},
	};
	if (nghttp2_submit_settings(d->h2, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(d->h2, NGHTTP2_FLAG_NONE, 0,
						  4 * (DV_DOH_MAX_BODY + 1)) !=
		    0) {
		nghttp2_session_del(d->h2);
		d->h2 = NULL;
		goto fail_session;
	}
	d->preface_left = NGHTTP2_CLIENT_MAGIC_LEN;
	ret = 0;
fail_session:
	nghttp2_option_del(opt);
fail_opt:
	nghttp2_session_callbacks_del(cbs);
	return ret;
}

static bool h2_at_limit(const dv_doh_t *d)
{
	return d->preface_left == 0 && d->fh_len == 0 &&
	       d->outstanding >= d->opts.max_streams;
}

/*
 * nghttp2_session_mem_recv() failed fatally.  For the errors nghttp2
 * detects while parsing (a frame on the wrong stream, a bad SETTINGS
 * value...) it has queued its own GOAWAY and returned normally; what
 * lands here is what it leaves to the application: floods (PING or
 * SETTINGS acknowledgements piling up, CONTINUATION after CONTINUATION)
 * and our own callbacks' failures.  RFC 9113 5.4.1: a connection error
 * is a GOAWAY, then the close, so queue one and let dv_doh_output() send
 * it; dv_doh_want_close() holds until it has.  Returns the error for
 * dv_doh_input().
 */
static ssize_t h2_fatal(dv_doh_t *d, int lib_err)
{
	uint32_t code = NGHTTP2_INTERNAL_ERROR;
	d->err = -EPROTO;
	switch (lib_err) {
	case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
		/* not HTTP/2: a GOAWAY means nothing to it, and RFC 9113 3.4
		 * lets us leave it out */
		d->dead = true;
		return d->err;
	case NGHTTP2_ERR_FLOODED:
		code = NGHTTP2_ENHANCE_YOUR_CALM;
		d->err = DV_ELIMIT;
		break;
	case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
		code = NGHTTP2_ENHANCE_YOUR_CALM;
		d->err = DV_ELIMIT;
		break;
	case NGHTTP2_ERR_CALLBACK_FAILURE:
		if (d->fail_code) {
			code = d->fail_code;
			d->err = code == NGHTTP2_ENHANCE_YOUR_CALM ? DV_ELIMIT
								   : -EPROTO;
		}
		break;
	case NGHTTP2_ERR_NOMEM:
		d->err = -ENOMEM;
		break;
	default:
		break;
	}
	/* naming the last stream we took: the client may retry the rest */
	if (nghttp2_session_terminate_session(d->h2, code) != 0)
		d->dead = true; /* no memory even for that: just close */
	return d->err;
}

static ssize_t h2_input(dv_doh_t *d, const uint8_t *data, size_t len)
{
	if (d->err)
		return d->err;
	size_t off = 0;
	while (off < len && !h2_at_limit(d)) {
		/* up to the end of the preface, frame header or payload */
		size_t chunk = len - off, want;
		if (d->preface_left)
			want = d->preface_left;
		else if (d->fh_len < 9)
			want = 9u - d->fh_len;
		else
			want = d->payload_left;
		if (chunk > want)
			chunk = want;
		d->rx += chunk; /* before: the header budget counts it */
		ssize_t n = nghttp2_session_mem_recv(d->h2, data + off, chunk);
		if (n < 0)
			return h2_fatal(d, (int)n);
		if (n == 0)
			break;
		size_t got = (size_t)n;
		if (d->preface_left) {
			d->preface_left -= got;
		} else if (d->fh_len < 9) {
			memcpy(d->fh + d->fh_len, data + off, got);
			d->fh_len = (uint8_t)(d->fh_len + got);
			if (d->fh_len == 9) {
				d->payload_left = (uint32_t)d->fh[0] << 16 |
						  (uint32_t)d->fh[1] << 8 |
						  d->fh[2];
				if (d->payload_left == 0)
					d->fh_len = 0;
			}
		} else {
			d->payload_left -= (uint32_t)got;
			if (d->payload_left == 0)
				d->fh_len = 0;
		}
		off += got;
		if (d->err)
			return d->err;
	}
	return (ssize_t)off;
}

static ssize_t h2_output(dv_doh_t *d, uint8_t *buf, size_t cap)
{
	if (d->dead)
		return 0;
	d->obuf = buf;
	d->ocap = cap;
	d->olen = 0;
	int rv = nghttp2_session_send(d->h2);
	d->obuf = NULL;
	if (rv != 0) {
		d->dead = true;
		if (!d->err)
			d->err = -EPROTO;
		return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	}
	return (ssize_t)d->olen;
}

static h2s_t *h2_find_query(dv_doh_t *d, uint32_t stream)
{
	if (stream == 0 || stream > INT32_MAX)
		return NULL;
	h2s_t *s = h2_stream(d, (int32_t)stream);
	if (s)
		return s->state == S_QUERY ? s : NULL;
	for (s = d->orphans; s; s = s->next)
		if (s->id == (int32_t)stream)
			return s;
	return NULL;
}

/* ======================== HTTP/1.1 ======================== */

static slot_t *q_at(const dv_doh_t *d, unsigned i)
{
	return &d->q[(d->q_head + i) % d->q_cap];
}

static slot_t *q_push(dv_doh_t *d)
{
	if (d->q_len == d->q_cap) {
		unsigned cap = d->q_cap ? d->q_cap * 2 : 4;
		slot_t *q = malloc(cap * sizeof(*q));
		if (!q)
			return NULL;
		for (unsigned i = 0; i < d->q_len; i++)
			q[i] = *q_at(d, i);
		free(d->q);
		d->q = q;
		d->q_cap = cap;
		d->q_head = 0;
	}
	slot_t *s = q_at(d, d->q_len++);
	memset(s, 0, sizeof(*s));
	s->id = d->next_id++;
	if (d->next_id == 0)
		d->next_id = 1;
	return s;
}

static void q_pop(dv_doh_t *d)
{
	slot_t *s = q_at(d, 0);
	free(s->body);
	d->q_head = (d->q_head + 1) % d->q_cap;
	d->q_len--;
}

static slot_t *h1_find_query(dv_doh_t *d, uint32_t stream)
{
	for (unsigned i = 0; i < d->q_len; i++) {
		slot_t *s = q_at(d, i);
		if (s->id == stream)
			return s->state == SL_WAIT ? s : NULL;
	}
	return NULL;
}

/* An error that ends the connection after its response. */
static int h1_fatal(dv_doh_t *d, uint16_t status, const char *why, int err)
{
	d->in_message = false;
	d->stopped = true;
	d->err = err;
	slot_t *s = q_push(d);
	if (!s) {
		d->err = -ENOMEM;
		return -1;
	}
	s->state = SL_READY;
	s->status = status;
	s->why = why;
	s->close = true;
	s->head = d->req.method == M_HEAD;
	return -1; /* stops http-parser */
}

static int h1_431(dv_doh_t *d)
{
	return h1_fatal(d, 431, T_431, DV_ELIMIT);
}

static int h1_on_message_begin(http_parser *p)
{
	dv_doh_t *d = p->data;
	d->in_message = true;
	d->in_value = false;
	d->hname_len = 0;
	d->hval_len = 0;
	req_clear(&d->req);
	return 0;
}

static int h1_on_url(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	if (!req_count(d, &d->req, len))
		return h1_431(d);
	if (req_target(&d->req, at, len) < 0)
		return h1_fatal(d, 500, T_500, -ENOMEM);
	return 0;
}

static void h1_header_done(dv_doh_t *d)
{
	if (d->in_value && d->keep_value)
		req_header(d, &d->req, d->hname, d->hname_len, d->hval,
			   d->hval_len);
	d->in_value = false;
	d->hname_len = 0;
	d->hval_len = 0;
}

static int h1_on_header_field(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	if (d->in_value)
		h1_header_done(d);
	if (!req_count(d, &d->req, len))
		return h1_431(d);
	size_t room = sizeof(d->hname) - 1;
	if (d->hname_len < room)
		memcpy(d->hname + d->hname_len, at,
		       len < room - d->hname_len ? len : room - d->hname_len);
	d->hname_len += len; /* > room: not a name we read */
	return 0;
}

static int h1_on_header_value(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	if (!d->in_value) {
		d->in_value = true;
		d->keep_value = d->hname_len < sizeof(d->hname) &&
				req_wants(d->hname, d->hname_len);
	}
	if (!req_count(d, &d->req, len))
		return h1_431(d);
	if (!d->keep_value)
		return 0;
	/* + 1: an empty value still has a buffer to point at */
	if (grow(&d->hval, &d->hval_cap, d->hval_len + len + 1, 1))
		return h1_fatal(d, 500, T_500, -ENOMEM);
	if (len)
		memcpy(d->hval + d->hval_len, at, len);
	d->hval_len += len;
	return 0;
}

static int h1_on_headers_complete(http_parser *p)
{
	dv_doh_t *d = p->data;
	req_t *r = &d->req;
	h1_header_done(d);
	r->method = p->method == HTTP_GET    ? M_GET
		    : p->method == HTTP_POST ? M_POST
		    : p->method == HTTP_HEAD ? M_HEAD
					     : M_OTHER;
	if (p->http_major != 1)
		return h1_fatal(d, 505, T_505, -EPROTO);
	bool cl_known = !(p->flags & F_CHUNKED) && p->content_length != 0 &&
			p->content_length != UINT64_MAX;
	if (cl_known && p->content_length > DV_DOH_MAX_BODY)
		return h1_fatal(d, 413, T_413, DV_ELIMIT); /* don't read it */
	if (p->http_minor >= 1 && !r->host_seen)
		req_fail(r, 400, T_HOST);
	req_head_done(d, r, cl_known, p->content_length);
	if (r->expect_continue && !r->status && r->method == M_POST &&
	    p->http_minor >= 1 && d->q_len == 0) {
		/* nothing queued before it, so it can go out now */
		d->interim = true;
		d->interim_off = 0;
	}
	return 0;
}

static int h1_on_body(http_parser *p, const char *at, size_t len)
{
	dv_doh_t *d = p->data;
	int rv = req_body(&d->req, at, len);
	if (rv == DV_ELIMIT)
		return h1_fatal(d, 413, T_413, DV_ELIMIT);
	if (rv < 0)
		return h1_fatal(d, 500, T_500, -ENOMEM);
	return 0;
}

static int h1_on_message_complete(http_parser *p)
{
	dv_doh_t *d = p->data;
	req_t *r = &d->req;
	d->in_message = false;
	bool close = !http_should_keep_alive(p) || p->http_minor == 0 ||
		     p->method == HTTP_CONNECT || d->draining;
	slot_t *s = q_push(d);
	if (!s) {
		d->err = -ENOMEM;
		d->stopped = true;
		return -1;
	}
	uint32_t id = s->id;
	s->close = close;
	s->head = r->method == M_HEAD;
	if (close)
		d->stopped = true;
	const uint8_t *msg = NULL;
	size_t len = 0;
	int rv = req_finish(r, &msg, &len);
	if (rv != 0) {
		s->state = SL_READY;
		s->status = rv < 0 ? 500 : (uint16_t)rv;
		s->why = rv < 0 ? T_500 : r->why;
	} else {
		char fbuf[ADDR_TEXT];
		const char *fwd = forwarded_for(d, r, fbuf);
		s->state = SL_WAIT;
		d->outstanding++;
		/* may answer at once (or drain): `s` is not used after */
		d->cb.query(d->user, id, r->path, msg, len, fwd);
	}
	if (r->body_cap > 4096) { /* a large POST: don't keep its buffer */
		free(r->body);
		r->body = NULL;
		r->body_cap = 0;
	}
	/* always: the next request's head goes through h1_scan_head()
	 * before http-parser sees it */
	d->h1_body = false;
	d->hs = HS_LINE;
	d->hs_started = false;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings h1_settings = {
	.on_message_begin = h1_on_message_begin,
	.on_url = h1_on_url,
	.on_header_field = h1_on_header_field,
	.on_header_value = h1_on_header_value,
	.on_headers_complete = h1_on_headers_complete,
	.on_body = h1_on_body,
	.on_message_complete = h1_on_message_complete,
};

/*
 * RFC 9112 strictness that http-parser 2.9 lacks: it takes "Content-Length
 * : 5" as a content-length (and any name with spaces in it), folds obs-fold
 * lines into the value before, and ends lines at a bare LF.  Each is a way
 * to make two HTTP parsers (a proxy in front of us and http-parser) read
 * different requests out of the same bytes, so each is 400 here:
 *   5.1  no whitespace between a field name and its colon (we refuse any
 *        whitespace in the name: it cannot be a token);
 *   5.2  obs-fold: a line of the header section that starts with SP/HTAB
 *        (we choose 400 over replacing it with spaces; 2.2 asks the same
 *        of whitespace before the first field line);
 *   2.2  lines end with CRLF: a bare LF (which 2.2 would let us accept)
 *        or a bare CR is 400.
 * The head is scanned here, in front of http-parser, which is only ever
 * given bytes that passed; from the end of the head to the end of the
 * message (h1_on_message_complete pauses the parser there) the body is
 * http-parser's alone.  No byte is buffered: the state is a few flags, and
 * the head is bounded by http-parser's own limit (HPE_HEADER_OVERFLOW)
 * and max_header_bytes.  Empty lines before the request line are let
 * through, as http-parser skips them (RFC 9112 2.2 allows it).  Chunked
 * trailers are not scanned: we read nothing in them.
 *
 * Returns how many of the `len` bytes may go to http-parser: all, up to
 * and including the end of the head (d->h1_body is then set), or up to the
 * first offending byte, with *why set to the 400 text.
 */
static size_t h1_scan_head(dv_doh_t *d, const uint8_t *p, size_t len,
			   const char **why)
{
	for (size_t i = 0; i < len; i++) {
		char c = (char)p[i];
		switch (d->hs) {
		case HS_LINE: /* the first byte of a line */
			d->hs_empty = c == '\r';
			if (c == '\r') {
				d->hs = HS_CR;
			} else if (c == '\n') {
				*why = T_LF;
				return i;
			} else if (d->hs_started && ows(c)) {
				*why = T_FOLD;
				return i;
			} else {
				/* request line: http-parser judges it */
				d->hs = d->hs_started ? HS_NAME : HS_REST;
			}
			break;
		case HS_NAME: /* a field line, before the colon */
			if (c == ':') {
				d->hs = HS_REST;
			} else if (ows(c)) {
				*why = T_NAME_WS;
				return i;
			} else if (c == '\n') {
				*why = T_LF;
				return i;
			} else if (c == '\r') {
				d->hs = HS_CR; /* no colon: http-parser's 400 */
			}
			break;
		case HS_REST:
			if (c == '\n') {
				*why = T_LF;
				return i;
			}
			if (c == '\r')
				d->hs = HS_CR;
			break;
		case HS_CR:
			if (c != '\n') {
				*why = T_CR;
				return i;
			}
			d->hs = HS_LINE;
			if (!d->hs_empty) {
				d->hs_started = true;
			} else if (d->hs_started) {
				d->h1_body = true; /* the empty line: head done */
				return i + 1;
			}
			break;
		}
	}
	return len;
}

static ssize_t h1_input(dv_doh_t *d, const uint8_t *data, size_t len)
{
	if (d->err)
		return d->err;
	if (d->stopped)
		return (ssize_t)len; /* after the last request: dropped */
	if (!d->started && len) {
		d->started = true;
		/* HTTP/2 prior knowledge on the HTTP/1 path: http-parser
		 * knows no PRI method, but the version is what is wrong */
		if (len >= 4 && memcmp(data, "PRI ", 4) == 0) {
			h1_fatal(d, 505, T_505, -EPROTO);
			return d->err;
		}
	}
	size_t off = 0;
	while (off < len) {
		if (HTTP_PARSER_ERRNO(&d->hp) == HPE_PAUSED) {
			if (d->q_len >= d->opts.max_streams)
				break;
			http_parser_pause(&d->hp, 0);
		}
		size_t chunk = len - off;
		if (!d->h1_body) {
			const char *why = NULL;
			chunk = h1_scan_head(d, data + off, chunk, &why);
			if (chunk == 0 && why) {
				if (!d->in_message) /* not the last one's */
					d->req.method = M_NONE;
				h1_fatal(d, 400, why, -EPROTO);
				return d->err;
			}
		}
		size_t n = http_parser_execute(&d->hp, &h1_settings,
					       (const char *)data + off, chunk);
		off += n;
		enum http_errno e = HTTP_PARSER_ERRNO(&d->hp);
		if (d->err)
			return d->err;
		if (d->stopped)
			return (ssize_t)len;
		if (e == HPE_PAUSED)
			continue;
		if (e != HPE_OK) {
			if (e == HPE_HEADER_OVERFLOW)
				h1_fatal(d, 431, T_431, DV_ELIMIT);
			else if (e == HPE_INVALID_VERSION)
				h1_fatal(d, 505, T_505, -EPROTO);
			else if (e == HPE_INVALID_METHOD && off < len &&
				 data[off] >= 'A' && data[off] <= 'Z')
				/* a method token http-parser does not know;
				 * it stopped at the byte it could not take */
				h1_fatal(d, 405, T_405, -EPROTO);
			else
				h1_fatal(d, 400, T_HTTP, -EPROTO);
			return d->err;
		}
		if (n == 0) /* cannot happen: no progress and no error */
			break;
	}
	return (ssize_t)off;
}

/* Render the head slot's status line and headers (and an error's body). */
static void h1_render(dv_doh_t *d, const slot_t *s)
{
	bool close = s->close || (d->stopped && d->q_len == 1);
	const char *conn = close ? "Connection: close\r\n" : "";
	int n;
	if (s->status == 200) {
		n = snprintf(d->hdr, sizeof(d->hdr),
			     "HTTP/1.1 200 OK\r\n"
			     "Content-Type: application/dns-message\r\n"
			     "Content-Length: %zu\r\n"
			     "Cache-Control: max-age=%u\r\n"
			     "%s\r\n",
			     s->body_len, s->max_age, conn);
	} else {
		char tbuf[48];
		const char *t = error_text(s->status, s->why, tbuf,
					   sizeof(tbuf));
		n = snprintf(d->hdr, sizeof(d->hdr),
			     "HTTP/1.1 %u %s\r\n"
			     "Content-Type: text/plain; charset=utf-8\r\n"
			     "Content-Length: %zu\r\n"
			     "Cache-Control: no-store\r\n"
			     "%s%s\r\n%s",
			     s->status, reason(s->status), strlen(t),
			     s->status == 405 ? "Allow: GET, POST\r\n" : "",
			     conn, s->head ? "" : t);
	}
	d->hdr_len = n > 0 && (size_t)n < sizeof(d->hdr) ? (size_t)n : 0;
	d->hdr_off = 0;
	d->body_off = 0;
}

static ssize_t h1_output(dv_doh_t *d, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	while (n < cap) {
		if (d->interim) {
			size_t k = sizeof(CONTINUE_100) - 1 - d->interim_off;
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, CONTINUE_100 + d->interim_off, k);
			n += k;
			d->interim_off += k;
			if (d->interim_off == sizeof(CONTINUE_100) - 1)
				d->interim = false;
			continue;
		}
		if (!d->emitting) {
			if (d->q_len == 0 || q_at(d, 0)->state != SL_READY)
				break;
			h1_render(d, q_at(d, 0));
			d->emitting = true;
		}
		slot_t *s = q_at(d, 0);
		size_t k = d->hdr_len - d->hdr_off;
		if (k) {
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, d->hdr + d->hdr_off, k);
			d->hdr_off += k;
			n += k;
			continue;
		}
		size_t blen = s->head ? 0 : s->body_len;
		k = blen - d->body_off;
		if (k) {
			if (k > cap - n)
				k = cap - n;
			memcpy(buf + n, s->body + d->body_off, k);
			d->body_off += k;
			d->unsent -= k;
			n += k;
			continue;
		}
		q_pop(d);
		d->emitting = false;
	}
	return (ssize_t)n;
}

/* ======================== API ======================== */

dv_doh_t *dv_doh_new(dv_doh_proto_t proto, const dv_doh_opts_t *opts,
		     const dv_doh_cb_t *cb, void *user)
{
	if (!opts || !opts->paths || opts->n_paths == 0 || !cb || !cb->query)
		return NULL;
	if (proto != DV_DOH_H2 && proto != DV_DOH_HTTP1)
		return NULL;
	dv_doh_t *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->proto = proto;
	d->opts = *opts;
	d->cb = *cb;
	d->user = user;
	if (d->opts.max_streams == 0)
		d->opts.max_streams = DV_DOH_DEFAULT_MAX_STREAMS;
	if (d->opts.max_header_bytes == 0)
		d->opts.max_header_bytes = DV_DOH_DEFAULT_MAX_HEADER_BYTES;
	if (d->opts.max_header_bytes > UINT16_MAX) /* http_parser_url offsets */
		d->opts.max_header_bytes = UINT16_MAX;
	if (proto == DV_DOH_H2) {
		if (h2_init(d) < 0) {
			free(d);
			return NULL;
		}
	} else {
		http_parser_init(&d->hp, HTTP_REQUEST);
		d->hp.data = d;
		d->next_id = 1;
	}
	return d;
}

void dv_doh_free(dv_doh_t *d)
{
	if (!d)
		return;
	if (d->proto == DV_DOH_H2) {
		nghttp2_session_del(d->h2); /* calls no callbacks */
		while (d->live) {
			h2s_t *s = d->live;
			list_del(&d->live, s);
			h2s_free(d, s);
		}
		while (d->orphans) {
			h2s_t *s = d->orphans;
			list_del(&d->orphans, s);
			h2s_free(d, s);
		}
	} else {
		while (d->q_len)
			q_pop(d);
		free(d->q);
		free(d->hval);
		req_free(&d->req);
	}
	free(d);
}

ssize_t dv_doh_input(dv_doh_t *d, const uint8_t *data, size_t len)
{
	if (len == 0)
		return d->err;
	return d->proto == DV_DOH_H2 ? h2_input(d, data, len)
				     : h1_input(d, data, len);
}

/* Answer a waiting query: with a DNS message (status 200) or an error. */
static int answer(dv_doh_t *d, uint32_t stream, unsigned status,
		  const uint8_t *msg, size_t len, uint32_t max_age)
{
	int ret = 0;
	if (status == 200 && len > DV_DOH_MAX_BODY) {
		status = 500;
		ret = -EINVAL;
	}
	if (d->proto == DV_DOH_H2) {
		h2s_t *s = h2_find_query(d, stream);
		if (!s)
			return DV_ENOTFOUND;
		d->outstanding--;
		if (s->state == S_ORPHAN) { /* the client is gone */
			list_del(&d->orphans, s);
			h2s_free(d, s);
			return ret;
		}
		if (status != 200) {
			int rv = h2_error(d, s, status,
					  status == 500 ? T_500 : NULL);
			return ret ? ret : rv;
		}
		s->owned = malloc(len ? len : 1);
		if (!s->owned) {
			h2_error(d, s, 500, T_500);
			return -ENOMEM;
		}
		memcpy(s->owned, msg, len);
		s->resp = s->owned;
		s->resp_len = len;
		s->resp_off = 0;
		d->unsent += len;
		return h2_submit(d, s, 200, max_age, true);
	}
	slot_t *s = h1_find_query(d, stream);
	if (!s)
		return DV_ENOTFOUND;
	d->outstanding--;
	s->state = SL_READY;
	s->status = (uint16_t)status;
	if (status != 200) {
		s->why = status == 500 ? T_500 : NULL;
		return ret;
	}
	s->body = malloc(len ? len : 1);
	if (!s->body) {
		s->status = 500;
		s->why = T_500;
		return -ENOMEM;
	}
	memcpy(s->body, msg, len);
	s->body_len = len;
	s->max_age = max_age;
	d->unsent += len;
	return 0;
}

int dv_doh_answer(dv_doh_t *d, uint32_t stream, const uint8_t *msg,
		  size_t len, uint32_t max_age)
{
	return answer(d, stream, 200, msg, len, max_age);
}

int dv_doh_error(dv_doh_t *d, uint32_t stream, unsigned status)
{
	if (status < 400 || status > 599)
		return -EINVAL;
	return answer(d, stream, status, NULL, 0, 0);
}

ssize_t dv_doh_output(dv_doh_t *d, uint8_t *buf, size_t cap)
{
	return d->proto == DV_DOH_H2 ? h2_output(d, buf, cap)
				     : h1_output(d, buf, cap);
}

bool dv_doh_want_close(const dv_doh_t *d)
{
	if (d->proto == DV_DOH_H2)
		return d->dead || (!nghttp2_session_want_read(d->h2) &&
				   !nghttp2_session_want_write(d->h2));
	return d->stopped && d->q_len == 0 && !d->interim;
}

bool dv_doh_want_input(const dv_doh_t *d)
{
	if (d->err)
		return false;
	if (d->proto == DV_DOH_H2)
		return !d->dead && nghttp2_session_want_read(d->h2) &&
		       !h2_at_limit(d);
	return !d->stopped && d->q_len < d->opts.max_streams;
}

void dv_doh_drain(dv_doh_t *d)
{
	if (d->draining)
		return;
	d->draining = true;
	if (d->proto == DV_DOH_H2) {
		if (d->dead)
			return;
		d->goaway_last = nghttp2_session_get_last_proc_stream_id(d->h2);
		nghttp2_submit_goaway(d->h2, NGHTTP2_FLAG_NONE, d->goaway_last,
				      NGHTTP2_NO_ERROR, NULL, 0);
		return;
	}
	/* a request being received is answered and is the last one; else
	 * the last one queued goes out with "Connection: close" */
	if (!d->in_message)
		d->stopped = true;
}

bool dv_doh_receiving(const dv_doh_t *d)
{
	if (d->proto == DV_DOH_HTTP1)
		return d->in_message && !d->stopped;
	if (d->dead || d->err)
		return false;
	if ((d->preface_left && d->preface_left < NGHTTP2_CLIENT_MAGIC_LEN) ||
	    d->fh_len)
		return true; /* a frame cut short */
	for (const h2s_t *s = d->live; s; s = s->next)
		if (s->state == S_RECV)
			return true;
	return false;
}

unsigned dv_doh_inflight(const dv_doh_t *d)
{
	return d->outstanding;
}

size_t dv_doh_unsent(const dv_doh_t *d)
{
	return d->unsent;
}

/*
 * DoH: the request checks both protocols share, and the texts of the
 * engine's own answers (see doh_engine.h for the order a protocol calls them
 * in).
 *
 * Design notes.
 *
 * One piece of code judges a request, whichever protocol brought it: the
 * method, the path (exact match against opts->paths, or one of them
 * followed by "/" and a client ID; the query string excluded), the content-type of a POST, the body size, the base64url dns
 * parameter of a GET, the DNS header (12 bytes, QR clear, QDCOUNT 1) and
 * the address a trusted proxy reported.  It is fed by nghttp2's header
 * callbacks (doh_h2.c, one req_t per stream) or by http-parser's (doh_h1.c,
 * one req_t for the request being parsed: requests arrive one after the
 * other), so a request gets the same answer over HTTP/2 and HTTP/1.1.
 *
 * Nothing here parses HTTP: the target is split by http-parser's URL
 * parser, header fields arrive already split.  What is parsed by hand is
 * what no library here parses: base64url (RFC 4648 section 5, padding
 * optional), X-Forwarded-For and Forwarded (RFC 7239).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/core/errors.h"
#include "src/core/ident.h"
#include "src/core/wire.h"
#include "src/proto/doh_engine.h"

/* ---- status reasons, error bodies ---- */

const char *dv_doh_reason(unsigned status)
{
	const char *r = http_status_str((enum http_status)status);
	return r && r[0] != '<' ? r : "Error";
}

/* The body of an error response: the specific text, or "<code> <reason>". */
const char *dv_doh_error_text(unsigned status, const char *why, char *buf,
			      size_t cap)
{
	if (why)
		return why;
	snprintf(buf, cap, "%u %s\n", status, dv_doh_reason(status));
	return buf;
}

/* ---- small helpers ---- */

int dv_doh_grow(void *pp, size_t *cap, size_t need, size_t elem)
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

/* dv_doh_grow() for a request's own buffer: from its pool, if any. */
static int req_grow(req_t *r, void *pp, size_t *cap, size_t need)
{
	if (!r->pool)
		return dv_doh_grow(pp, cap, need, 1);
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *p = dv_doh_pool_realloc(r->pool, *(void **)pp, c);
	if (!p)
		return -ENOMEM;
	*(void **)pp = p;
	*cap = c;
	return 0;
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
const char *dv_doh_forwarded_for(const dv_doh_t *d, const req_t *r,
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

void dv_doh_req_clear(req_t *r)
{
	char *t = r->target;
	uint8_t *b = r->body;
	size_t tc = r->target_cap, bc = r->body_cap;
	dv_doh_pool_t *pool = r->pool;
	memset(r, 0, sizeof(*r));
	r->pool = pool;
	r->target = t;
	r->target_cap = tc;
	r->body = b;
	r->body_cap = bc;
}

void dv_doh_req_free(req_t *r)
{
	if (r->pool) {
		dv_doh_pool_free(r->pool, r->target);
		dv_doh_pool_free(r->pool, r->body);
	} else {
		free(r->target);
		free(r->body);
	}
	r->target = NULL;
	r->body = NULL;
	r->target_cap = r->body_cap = 0;
}

void dv_doh_req_fail(req_t *r, uint16_t status, const char *why)
{
	if (!r->status) {
		r->status = status;
		r->why = why;
	}
}

/* Count header bytes; false (and 431) when over the limit. */
bool dv_doh_req_count(const dv_doh_t *d, req_t *r, size_t n)
{
	r->hdr_bytes += n;
	if (r->hdr_bytes <= d->opts.max_header_bytes)
		return true;
	r->status = 431; /* wins over anything decided before */
	r->why = T_431;
	return false;
}

int dv_doh_req_target(req_t *r, const char *s, size_t n)
{
	if (req_grow(r, &r->target, &r->target_cap, r->target_len + n + 1))
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
void dv_doh_req_header(const dv_doh_t *d, req_t *r, const char *name,
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

/* Header names whose values dv_doh_req_header() reads. */
bool dv_doh_req_wants(const char *name, size_t nlen)
{
	static const char *const names[] = {"content-type", "x-forwarded-for",
					    "forwarded", "host", "expect"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (name_is(name, nlen, names[i]))
			return true;
	return false;
}

uint8_t dv_doh_req_method(const char *m, size_t n)
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
void dv_doh_req_head_done(const dv_doh_t *d, req_t *r, bool cl_known,
			  uint64_t content_length)
{
	if (r->status)
		return;
	if (r->method != M_GET && r->method != M_POST) {
		dv_doh_req_fail(r, 405, T_405);
		return;
	}
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (!r->target || r->target_len > UINT16_MAX ||
	    http_parser_parse_url(r->target, r->target_len, 0, &u) != 0) {
		dv_doh_req_fail(r, 400, T_TARGET);
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
	/* "{served path}/{client ID}": the ID is one DNS label */
	for (unsigned i = 0; i < d->opts.n_paths && !r->path; i++)
		if (dv_ident_from_path(path, plen, d->opts.paths[i],
				       r->client_id))
			r->path = d->opts.paths[i];
	if (!r->path) {
		dv_doh_req_fail(r, 404, T_404);
		return;
	}
	if (u.field_set & (1u << UF_QUERY)) {
		r->query_off = u.field_data[UF_QUERY].off;
		r->query_len = u.field_data[UF_QUERY].len;
	}
	if (r->method == M_POST) {
		if (!r->ct_ok)
			dv_doh_req_fail(r, 415, T_415);
		else if (cl_known && content_length > DV_DOH_MAX_BODY)
			dv_doh_req_fail(r, 413, T_413);
	}
}

/* Body bytes: counted always, kept for a POST still on track.  False
 * (and 413) when the body is over the limit. */
int dv_doh_req_body(req_t *r, const char *p, size_t n)
{
	r->body_seen += n;
	if (r->body_seen > DV_DOH_MAX_BODY) {
		r->status = 413;
		r->why = T_413;
		return DV_ELIMIT;
	}
	if (r->method != M_POST || r->status)
		return 0;
	if (req_grow(r, &r->body, &r->body_cap, r->body_len + n))
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
int dv_doh_req_finish(req_t *r, const uint8_t **msg, size_t *len)
{
	if (r->status)
		return r->status;
	if (r->method == M_GET) {
		const char *v;
		size_t vlen;
		if (!find_param(r->target + r->query_off, r->query_len, "dns",
				&v, &vlen)) {
			dv_doh_req_fail(r, 400, T_NODNS);
			return r->status;
		}
		/* the target is under max_header_bytes <= 65535, so the
		 * decoded message is always under 65535 bytes */
		if (req_grow(r, &r->body, &r->body_cap, vlen / 4 * 3 + 3))
			return -ENOMEM;
		ssize_t n = b64url_decode(v, vlen, r->body);
		if (n < 0) {
			dv_doh_req_fail(r, 400, T_B64);
			return r->status;
		}
		r->body_len = (size_t)n;
	}
	/*
	 * Only the header is judged here (what makes a 400 rather than a DNS
	 * answer: dv_wire_parse_query's DV_ESHORT, DV_ENOTQUERY and
	 * DV_EQDCOUNT, which it decides from the header alone, in this
	 * order); the core parses the message, once, and answers what is
	 * malformed past the header with FORMERR.
	 */
	if (r->body_len < DV_DNS_HDR) {
		dv_doh_req_fail(r, 400, T_SHORT);
		return r->status;
	}
	if (dv_get16(r->body + 2) & DV_FLAG_QR) {
		dv_doh_req_fail(r, 400, T_QR);
		return r->status;
	}
	if (dv_get16(r->body + 4) != 1) {
		dv_doh_req_fail(r, 400, T_QDCOUNT);
		return r->status;
	}
	*msg = r->body;
	*len = r->body_len;
	return 0;
}

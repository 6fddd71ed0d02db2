/*
 * The admin listener's request head parser.  Strict where it is cheap: a
 * method of upper-case letters, one space, a target of visible ASCII
 * starting with '/' (origin-form; "*" and absolute-form are refused), one
 * space, "HTTP/1.x", then field lines "name: value" up to an empty line.
 * Lines end in CRLF or a bare LF (RFC 9112 2.2 allows a recipient to accept
 * the latter).  The parse starts over on every call: heads are small
 * (DV_ADMIN_HEAD_MAX) and a connection sends one.
 */
#include "src/proto/admin_http.h"

#include <string.h>

#include "src/core/errors.h"

/* The end of the line starting at `p` (the index of its '\n'), or -1. */
static long line_end(const uint8_t *buf, size_t len, size_t p)
{
	const uint8_t *nl = memchr(buf + p, '\n', len - p);
	return nl ? (long)(nl - buf) : -1;
}

/* The line's length without its CR (if any). */
static size_t line_len(const uint8_t *buf, size_t start, size_t nl)
{
	size_t n = nl - start;
	if (n > 0 && buf[nl - 1] == '\r')
		n--;
	return n;
}

static bool is_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Check the bytes of a partial request line: garbage is refused before a
 * newline arrives.  Returns 0 or DV_EMALFORMED. */
static int check_partial_line(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = buf[i];
		if (c == '\r' && i + 1 == len)
			break;
		if (c < 0x20 || c >= 0x7f)
			return DV_EMALFORMED;
	}
	/* a method first: upper-case letters up to the first space */
	for (size_t i = 0; i < len && buf[i] != ' '; i++)
		if (buf[i] < 'A' || buf[i] > 'Z' || i >= 16)
			return DV_EMALFORMED;
	return 0;
}

static int parse_request_line(const uint8_t *l, size_t n, dv_admin_req_t *req)
{
	if (check_partial_line(l, n) != 0)
		return DV_EMALFORMED;
	const uint8_t *sp1 = memchr(l, ' ', n);
	if (!sp1 || sp1 == l)
		return DV_EMALFORMED;
	size_t mlen = (size_t)(sp1 - l);
	const uint8_t *t = sp1 + 1;
	const uint8_t *end = l + n;
	const uint8_t *sp2 = memchr(t, ' ', (size_t)(end - t));
	if (!sp2 || sp2 == t || *t != '/')
		return DV_EMALFORMED;
	const uint8_t *v = sp2 + 1;
	if (end - v != 8 || memcmp(v, "HTTP/1.", 7) != 0 || v[7] < '0' ||
	    v[7] > '9')
		return DV_EMALFORMED;
	if (mlen == 3 && memcmp(l, "GET", 3) == 0)
		req->method = DV_ADMIN_GET;
	else if (mlen == 4 && memcmp(l, "HEAD", 4) == 0)
		req->method = DV_ADMIN_HEAD;
	else if (mlen == 4 && memcmp(l, "POST", 4) == 0)
		req->method = DV_ADMIN_POST;
	else
		req->method = DV_ADMIN_OTHER;
	size_t plen = (size_t)(sp2 - t);
	const uint8_t *q = memchr(t, '?', plen);
	if (q)
		plen = (size_t)(q - t);
	req->path_too_long = plen >= sizeof(req->path);
	if (req->path_too_long)
		plen = 0;
	memcpy(req->path, t, plen);
	req->path[plen] = '\0';
	return 0;
}

/* A field line: a token, ':', then a value without control characters
 * (tab allowed).  Obsolete line folding (a line starting with a space) is
 * refused, as RFC 9112 5.2 lets a server do. */
static int check_field_line(const uint8_t *l, size_t n)
{
	const uint8_t *colon = memchr(l, ':', n);
	if (!colon || colon == l)
		return DV_EMALFORMED;
	for (const uint8_t *p = l; p < colon; p++)
		if (!is_tchar(*p))
			return DV_EMALFORMED;
	for (const uint8_t *p = colon + 1; p < l + n; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return DV_EMALFORMED;
	return 0;
}

int dv_admin_http_parse(const uint8_t *buf, size_t len, dv_admin_req_t *req)
{
	memset(req, 0, sizeof(*req));
	long nl = line_end(buf, len, 0);
	if (nl < 0)
		return check_partial_line(buf, len);
	int ret = parse_request_line(buf, line_len(buf, 0, (size_t)nl), req);
	if (ret != 0)
		return ret;
	size_t p = (size_t)nl + 1;
	for (;;) {
		nl = line_end(buf, len, p);
		if (nl < 0) {
			/* a partial field line: only its characters so far */
			for (size_t i = p; i < len; i++)
				if ((buf[i] < 0x20 && buf[i] != '\t' &&
				     buf[i] != '\r') ||
				    buf[i] == 0x7f)
					return DV_EMALFORMED;
			return 0;
		}
		size_t n = line_len(buf, p, (size_t)nl);
		if (n == 0) {
			size_t head = (size_t)nl + 1;
			return head > (size_t)INT32_MAX ? DV_EMALFORMED
							: (int)head;
		}
		if (check_field_line(buf + p, n) != 0)
			return DV_EMALFORMED;
		p = (size_t)nl + 1;
	}
}

#pragma once
/*
 * The DoH engine's insides (the engine itself is doh.h), shared by its
 * parts and by nothing else:
 *   doh_engine.c   the engine object, the public dv_doh_* functions, and
 *                  the dispatch to the protocol in use (dv_doh_ops_t)
 *   doh_request.c  the request checks both protocols share (method, path,
 *                  content-type, dns parameter, body, DNS header,
 *                  forwarded address) and the engine's own answer texts
 *   doh_h2.c       HTTP/2 through nghttp2
 *   doh_h1.c       HTTP/1.1 through http-parser
 *   doh_pool.c     the connection's pool of freed blocks (allocation
 *                  without malloc on the hot path)
 * Only src/proto/doh*.c include this header.  Each protocol's own types
 * (an HTTP/2 stream, an HTTP/1.1 response slot) stay in its file; the
 * engine struct only points at them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* the engine embeds its parser (one allocation per connection), so its
 * type must be complete here; http-parser is a single plain header */
#include <http_parser.h>

#include "src/core/ident.h"
#include "src/proto/doh.h"

/* nghttp2 stays behind doh_h2.c (same typedef as nghttp2.h's) */
typedef struct nghttp2_session nghttp2_session;

/* ---- the request, both protocols (doh_request.c) ---- */

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
	/* the client ID after it ("/dns-query/{id}"), "" if none */
	char client_id[DV_IDENT_MAX + 1];
	size_t query_off, query_len; /* query string within target */
	/* where target and body come from: a connection's pool (HTTP/2),
	 * or NULL for malloc (HTTP/1.1 keeps its two across requests) */
	struct dv_doh_pool *pool;
	char *target;
	size_t target_len, target_cap;
	uint8_t *body;
	size_t body_len, body_cap;
	fwd_t xff, fwd;
} req_t;

/* ---- the protocols ---- */

/*
 * What differs between HTTP/2 and HTTP/1.1, chosen once in dv_doh_new().
 * doh_engine.c does what both share (arguments, the sticky error, the drain flag,
 * an answer's size) and then calls through this table; each entry has the
 * contract of the public function it serves (doh.h), except:
 *   init     0 or -ENOMEM; deinit frees what init and the traffic took
 *            (not the engine itself)
 *   answer   the query `stream` gets `msg` (status 200, len already
 *            checked) or the error `status` with its text; returns 0,
 *            DV_ENOTFOUND (no query waiting), -ENOMEM or -EPROTO
 *   drain    called once, with d->draining already set
 */
typedef struct {
	int (*init)(dv_doh_t *d);
	void (*deinit)(dv_doh_t *d);
	ssize_t (*input)(dv_doh_t *d, const uint8_t *data, size_t len);
	ssize_t (*output)(dv_doh_t *d, uint8_t *buf, size_t cap);
	int (*answer)(dv_doh_t *d, uint32_t stream, unsigned status,
		      const uint8_t *msg, size_t len, uint32_t max_age);
	bool (*want_close)(const dv_doh_t *d);
	bool (*want_input)(const dv_doh_t *d); /* d->err is checked first */
	void (*drain)(dv_doh_t *d);
	bool (*receiving)(const dv_doh_t *d);
	bool (*output_ready)(const dv_doh_t *d);
} dv_doh_ops_t;

extern const dv_doh_ops_t dv_doh_h2_ops; /* doh_h2.c */
extern const dv_doh_ops_t dv_doh_h1_ops; /* doh_h1.c */

/*
 * ---- a connection's pool of freed blocks (doh_pool.c) ----
 *
 * Blocks up to 4096 bytes, by power-of-two class; at most
 * DV_DOH_POOL_KEEP bytes of freed blocks are kept for reuse.
 */
#define DV_DOH_POOL_CLASSES 8 /* 32, 64, ... 4096 bytes */
#define DV_DOH_POOL_KEEP (16 * 1024)

typedef struct dv_doh_pool {
	void *free[DV_DOH_POOL_CLASSES];
	size_t kept; /* bytes on the free lists, block headers included */
} dv_doh_pool_t;

void *dv_doh_pool_alloc(dv_doh_pool_t *p, size_t n);
void *dv_doh_pool_calloc(dv_doh_pool_t *p, size_t nmemb, size_t size);
void *dv_doh_pool_realloc(dv_doh_pool_t *p, void *ptr, size_t n);
void dv_doh_pool_free(dv_doh_pool_t *p, void *ptr);
/* Give every kept block back to libc. */
void dv_doh_pool_trim(dv_doh_pool_t *p);

/* Write v in decimal at buf (room for 20 digits); returns the length. */
static inline size_t dv_doh_utoa(char *buf, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

typedef struct h2s h2s_t;   /* an HTTP/2 stream (doh_h2.c) */
typedef struct slot slot_t; /* an HTTP/1.1 response slot (doh_h1.c) */

#define H1_HDR_MAX 512

struct dv_doh {
	const dv_doh_ops_t *ops;
	dv_doh_opts_t opts;
	dv_doh_cb_t cb;
	void *user;
	unsigned outstanding; /* queries handed out, not answered */
	size_t unsent;        /* answer bytes not yet output */
	int err;              /* sticky: input ends with this */
	bool draining;

	/* HTTP/2 */
	nghttp2_session *h2;
	dv_doh_pool_t pool; /* nghttp2's memory and our streams' */
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

/*
 * ---- response texts ----
 *
 * The bodies of the engine's own answers, all in one list (doh.h gives the
 * statuses).  Literals rather than variables: a text is only ever copied
 * out, never compared, and this way no part exports them.
 */
#define T_NODNS "400 bad request: missing dns parameter\n"
#define T_B64 "400 bad request: dns parameter is not valid base64url\n"
#define T_SHORT "400 bad request: DNS message shorter than 12 bytes\n"
#define T_QR "400 bad request: DNS message is a response (QR set)\n"
#define T_QDCOUNT                                                            \
	"400 bad request: DNS message must have exactly one question\n"
#define T_TARGET "400 bad request: invalid request target\n"
#define T_HOST "400 bad request: HTTP/1.1 needs Host\n"
#define T_HTTP "400 bad request: malformed HTTP request\n"
#define T_NAME_WS                                                            \
	"400 bad request: whitespace in a header field name or before "     \
	"its colon\n"
#define T_FOLD "400 bad request: obsolete line folding in the header section\n"
#define T_LF "400 bad request: header section line not ended by CRLF\n"
#define T_CR "400 bad request: bare CR in the header section\n"
#define T_404 "404 not found: no DoH service at this path\n"
#define T_405 "405 method not allowed: use GET or POST\n"
#define T_413 "413 payload too large: a DNS message is at most 65535 bytes\n"
#define T_415                                                                \
	"415 unsupported media type: POST needs "                            \
	"content-type application/dns-message\n"
#define T_431 "431 request header fields too large\n"
#define T_500 "500 internal server error\n"
#define T_505 "505 HTTP version not supported: use HTTP/1.1 or HTTP/2\n"

/* The reason phrase of `status` ("Error" for one http-parser does not
 * name). */
const char *dv_doh_reason(unsigned status);

/* The body of an error response: `why`, or "<code> <reason>\n" written
 * into `buf` (capacity `cap`). */
const char *dv_doh_error_text(unsigned status, const char *why, char *buf,
			      size_t cap);

/* ---- small helpers ---- */

/* Grow the array *pp (*cap elements of `elem` bytes) to hold `need`,
 * doubling from 64.  0 or -ENOMEM (*pp and *cap untouched). */
int dv_doh_grow(void *pp, size_t *cap, size_t need, size_t elem);

/* RFC 9110 OWS: optional whitespace. */
static inline bool ows(char c)
{
	return c == ' ' || c == '\t';
}

/* A header field name, case-insensitively. */
static inline bool name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* ---- the request checks (doh_request.c) ----
 *
 * A protocol feeds a req_t as the request arrives: the target
 * (dv_doh_req_target), the method (M_*, dv_doh_req_method for a token),
 * the header fields (dv_doh_req_count for every byte, dv_doh_req_header for
 * the ones dv_doh_req_wants), then dv_doh_req_head_done, the body
 * (dv_doh_req_body), and dv_doh_req_finish.  The first failure decides the
 * status (r->status, r->why), except 431 and 413, which win over anything
 * decided before.
 */

/* Ready for the next request, keeping the buffers. */
void dv_doh_req_clear(req_t *r);

/* Free the buffers (the req_t may be cleared or freed again). */
void dv_doh_req_free(req_t *r);

/* Answer `status` with text `why`, unless an answer is decided already. */
void dv_doh_req_fail(req_t *r, uint16_t status, const char *why);

/* Count header bytes; false (and 431) when over the limit. */
bool dv_doh_req_count(const dv_doh_t *d, req_t *r, size_t n);

/* Append to the request target.  0 or -ENOMEM. */
int dv_doh_req_target(req_t *r, const char *s, size_t n);

/* M_* for a method token. */
uint8_t dv_doh_req_method(const char *m, size_t n);

/* A regular (not pseudo) header field of the request. */
void dv_doh_req_header(const dv_doh_t *d, req_t *r, const char *name,
		       size_t nlen, const char *v, size_t vlen);

/* Header names whose values dv_doh_req_header() reads. */
bool dv_doh_req_wants(const char *name, size_t nlen);

/* The request head is complete: the checks that need no body. */
void dv_doh_req_head_done(const dv_doh_t *d, req_t *r, bool cl_known,
			  uint64_t content_length);

/* Body bytes: counted always, kept for a POST still on track.  0,
 * DV_ELIMIT (and 413) when the body is over the limit, -ENOMEM. */
int dv_doh_req_body(req_t *r, const char *p, size_t n);

/*
 * The request is complete: find the DNS message and judge it.  Returns 0
 * with the message in *msg and *len (r->body), an HTTP status to answer with
 * (r->why set), or -ENOMEM.
 */
int dv_doh_req_finish(req_t *r, const uint8_t **msg, size_t *len);

/* The client address to report, as text in `buf` (ADDR_TEXT bytes), or
 * NULL (not trusted, none, or the two headers disagree). */
const char *dv_doh_forwarded_for(const dv_doh_t *d, const req_t *r,
				 char *buf);

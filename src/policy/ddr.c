/*
 * DDR answers (ddr.h).
 *
 * One SVCB record per kind of encrypted listener and port (and DoH path),
 * in this order of priority: DoT (alpn dot), DoH (alpn h2,http/1.1 with
 * dohpath PATH{?dns}), DoQ (alpn doq) -- DoT first as Knot Resolver's
 * module does: every DDR client speaks DoT or DoH, UDP 853 is the port
 * most often blocked, and few stubs speak DoQ.  `port` when it is not the
 * kind's default (853, 443, 853); ipv4hint/ipv6hint the listeners'
 * addresses that are not wildcards (with auto: those the certificate has
 * as IP SANs).
 *
 * RFC 9462 4.2: a client accepts the designation only when the
 * certificate of the designated resolver has the IP address it sent the
 * _dns.resolver.arpa query to.  So with ddr.mode auto a listener answers
 * the SVCB only when its own address is one of the certificate's IP SANs
 * (a wildcard address cannot be checked); elsewhere, and for every other
 * name and type under resolver.arpa, the answer is NODATA (RFC 9462 8:
 * a resolver answers resolver.arpa itself and never forwards it, so the
 * local resolver's own designation, which would lead clients past
 * dnsveil's policy, never reaches them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/core/wire.h"
#include "src/policy/ddr.h"

#define TYPE_SVCB 64
#define MAX_RECORDS 16
#define MAX_HINTS 8
#define MAX_NOTES 16
#define RR_BYTES 4096

/* "\x08resolver\x04arpa\x00" */
static const uint8_t resolver_arpa[] = { 8,   'r', 'e', 's', 'o', 'l', 'v', 'e',
					 'r', 4,   'a', 'r', 'p', 'a', 0 };

typedef struct {
	dv_scheme_t kind;
	uint16_t port;
	const char *path; /* https: the listener's */
	unsigned n4, n6;
	uint8_t v4[MAX_HINTS][4];
	uint8_t v6[MAX_HINTS][16];
} rec_t;

struct dv_ddr {
	uint32_t ttl;
	char server[256];
	/* "_dns." + the server name, wire form, lowercased */
	uint8_t dns_name[DV_DNS_MAX_NAME + 1];
	size_t dns_name_len;
	/* by q->listener: whether the SVCB is answered there */
	bool answers[DV_MAX_URLS + 1];
	unsigned n_rec;
	rec_t rec[MAX_RECORDS];
	/* the SVCB records, each owned by a pointer to the question */
	uint8_t rr[RR_BYTES];
	size_t rr_len;
	char notes[MAX_NOTES][320];
	unsigned n_notes;
	char where[512]; /* the listeners that answer, for the log */
};

static bool encrypted(dv_scheme_t s)
{
	return s == DV_SCHEME_TLS || s == DV_SCHEME_HTTPS ||
	       s == DV_SCHEME_QUIC;
}

bool dv_ddr_wanted(const dv_config_t *cfg)
{
	if (cfg->ddr_mode == DV_DDR_OFF)
		return false;
	for (unsigned i = 0; i < cfg->n_listen; i++)
		if (encrypted(cfg->listen[i].scheme))
			return true;
	return false;
}

__attribute__((format(printf, 2, 3))) static void note(dv_ddr_t *d,
						       const char *fmt, ...)
{
	va_list ap;
	if (d->n_notes == MAX_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(d->notes[d->n_notes++], sizeof(d->notes[0]), fmt, ap);
	va_end(ap);
}

/* The listener's address: family, bytes, whether a wildcard. */
static int url_addr(const dv_url_t *u, const uint8_t **addr, bool *any)
{
	static const uint8_t zero[16];
	if (u->addr.ss_family == AF_INET) {
		*addr = (const uint8_t *)&((const struct sockaddr_in *)&u->addr)
				->sin_addr;
		*any = memcmp(*addr, zero, 4) == 0;
		return AF_INET;
	}
	*addr = ((const struct sockaddr_in6 *)&u->addr)->sin6_addr.s6_addr;
	*any = memcmp(*addr, zero, 16) == 0;
	return AF_INET6;
}

static bool cert_has_ip(const dv_cert_names_t *c, int family,
			const uint8_t *addr)
{
	for (unsigned i = 0; i < c->n_ip; i++)
		if (c->ip[i].family == family &&
		    memcmp(c->ip[i].addr, addr, family == AF_INET ? 4 : 16) ==
			    0)
			return true;
	return false;
}

/* RFC 6125 6.4.3: a "*." name covers one label more. */
static bool cert_has_name(const dv_cert_names_t *c, const char *name)
{
	const char *dot = strchr(name, '.');
	for (unsigned i = 0; i < c->n_dns; i++) {
		const char *n = c->dns[i];
		if (strcmp(n, name) == 0)
			return true;
		if (n[0] == '*' && n[1] == '.' && dot && dot != name &&
		    strcmp(n + 1, dot) == 0)
			return true;
	}
	return false;
}

static uint16_t default_port(dv_scheme_t kind)
{
	return kind == DV_SCHEME_HTTPS ? 443 : 853;
}

static rec_t *record_for(dv_ddr_t *d, const dv_url_t *u)
{
	uint16_t port = ntohs(((const struct sockaddr_in *)&u->addr)->sin_port);
	if (u->addr.ss_family == AF_INET6)
		port = ntohs(
			((const struct sockaddr_in6 *)&u->addr)->sin6_port);
	for (unsigned i = 0; i < d->n_rec; i++) {
		rec_t *r = &d->rec[i];
		if (r->kind == u->scheme && r->port == port &&
		    (r->kind != DV_SCHEME_HTTPS ||
		     strcmp(r->path, u->path) == 0))
			return r;
	}
	if (d->n_rec == MAX_RECORDS)
		return NULL;
	rec_t *r = &d->rec[d->n_rec++];
	r->kind = u->scheme;
	r->port = port;
	r->path = u->path;
	return r;
}

static size_t put_param(uint8_t *p, uint16_t key, const void *v, uint16_t len)
{
	dv_put16(p, key);
	dv_put16(p + 2, len);
	memcpy(p + 4, v, len);
	return 4u + len;
}

/* The SVCB record of `r`, priority `prio`, owned by the question (a
 * compression pointer; the target in the RDATA is never compressed,
 * RFC 9460 2.2). */
static int put_svcb(dv_ddr_t *d, const rec_t *r, uint16_t prio,
		    const uint8_t *target, size_t tlen)
{
	uint8_t rd[1024], v[300];
	size_t n = 0, vl;
	dv_put16(rd, prio);
	memcpy(rd + 2, target, tlen);
	n = 2 + tlen;
	static const uint8_t alpn_dot[] = "\x03"
					  "dot";
	static const uint8_t alpn_doq[] = "\x03"
					  "doq";
	static const uint8_t alpn_h2[] = "\x02"
					 "h2"
					 "\x08"
					 "http/1.1";
	if (r->kind == DV_SCHEME_TLS)
		n += put_param(rd + n, 1, alpn_dot, 4);
	else if (r->kind == DV_SCHEME_QUIC)
		n += put_param(rd + n, 1, alpn_doq, 4);
	else
		n += put_param(rd + n, 1, alpn_h2, 12);
	if (r->port != default_port(r->kind)) {
		dv_put16(v, r->port);
		n += put_param(rd + n, 3, v, 2);
	}
	if (r->n4) {
		for (unsigned i = 0; i < r->n4; i++)
			memcpy(v + 4 * i, r->v4[i], 4);
		n += put_param(rd + n, 4, v, (uint16_t)(4 * r->n4));
	}
	if (r->n6) {
		for (unsigned i = 0; i < r->n6; i++)
			memcpy(v + 16 * i, r->v6[i], 16);
		n += put_param(rd + n, 6, v, (uint16_t)(16 * r->n6));
	}
	if (r->kind == DV_SCHEME_HTTPS) {
		vl = (size_t)snprintf((char *)v, sizeof(v), "%s{?dns}",
				      r->path[0] ? r->path : "/dns-query");
		if (vl >= sizeof(v))
			return DV_ESPACE;
		n += put_param(rd + n, 7, v, (uint16_t)vl);
	}
	if (d->rr_len + 12 + n > sizeof(d->rr))
		return DV_ESPACE;
	uint8_t *p = d->rr + d->rr_len;
	dv_put16(p, 0xc000 | DV_DNS_HDR);
	dv_put16(p + 2, TYPE_SVCB);
	dv_put16(p + 4, 1); /* IN */
	dv_put32(p + 6, d->ttl);
	dv_put16(p + 10, (uint16_t)n);
	memcpy(p + 12, rd, n);
	d->rr_len += 12 + n;
	return 0;
}

static void add_hint(dv_ddr_t *d, rec_t *r, const dv_url_t *u,
		     const dv_cert_names_t *cert, bool on)
{
	const uint8_t *a;
	bool any;
	int fam = url_addr(u, &a, &any);
	if (any)
		return;
	if (!on && !cert_has_ip(cert, fam, a)) {
		note(d,
		     "ddr: %s: its address is not among the certificate's IP "
		     "SANs: not advertised as a hint%s",
		     u->text, "");
		return;
	}
	if (fam == AF_INET && r->n4 < MAX_HINTS)
		memcpy(r->v4[r->n4++], a, 4);
	else if (fam == AF_INET6 && r->n6 < MAX_HINTS)
		memcpy(r->v6[r->n6++], a, 16);
}

/* The server name: ddr.server-name, else the certificate's first DNS
 * name that is no wildcard. */
static const char *server_name(const dv_config_t *cfg,
			       const dv_cert_names_t *cert)
{
	if (cfg->ddr_server_name[0])
		return cfg->ddr_server_name;
	for (unsigned i = 0; cert->loaded && i < cert->n_dns; i++)
		if (cert->dns[i][0] != '*')
			return cert->dns[i];
	return NULL;
}

static int build(dv_ddr_t *d, const dv_config_t *cfg,
		 const dv_cert_names_t *cert, char *err, size_t err_len)
{
	bool on = cfg->ddr_mode == DV_DDR_ON;
	const char *name = server_name(cfg, cert);
	uint8_t target[DV_DNS_MAX_NAME + 1];
	int tlen;
	if (!name) {
		if (on) {
			snprintf(err, err_len,
				 "ddr.mode: on: no server name: set "
				 "ddr.server-name or give tls.cert a DNS "
				 "name");
			return DV_ECONFIG;
		}
		note(d, "ddr: off: no server name (set ddr.server-name%s%s)",
		     cert->loaded ? "" : " and tls.cert", "");
		return 0;
	}
	for (size_t i = 0; name[i] && i < sizeof(d->server) - 1; i++)
		d->server[i] = (char)(name[i] >= 'A' && name[i] <= 'Z'
					      ? name[i] + 32
					      : name[i]);
	tlen = dv_wire_name_from_text(target, sizeof(target), d->server);
	if (tlen < 0 || tlen + 5 > DV_DNS_MAX_NAME) {
		snprintf(err, err_len, "ddr.server-name: '%s': not usable",
			 d->server);
		return DV_ECONFIG;
	}
	if (!on && !cert_has_name(cert, d->server)) {
		note(d,
		     "ddr: off: the certificate does not cover the server "
		     "name %s%s (ddr.mode: on advertises it all the same)",
		     d->server, cert->loaded ? "" : " (no tls.cert)");
		d->server[0] = '\0';
		return 0;
	}
	memcpy(d->dns_name, "\x04_dns", 5);
	memcpy(d->dns_name + 5, target, (size_t)tlen);
	d->dns_name_len = 5 + (size_t)tlen;

	static const dv_scheme_t order[] = { DV_SCHEME_TLS, DV_SCHEME_HTTPS,
					     DV_SCHEME_QUIC };
	for (unsigned k = 0; k < 3; k++)
		for (unsigned i = 0; i < cfg->n_listen; i++) {
			const dv_url_t *u = &cfg->listen[i];
			if (u->scheme != order[k])
				continue;
			rec_t *r = record_for(d, u);
			if (r)
				add_hint(d, r, u, cert, on);
		}
	for (unsigned i = 0; i < d->n_rec; i++) {
		int ret = put_svcb(d, &d->rec[i], (uint16_t)(i + 1), target,
				   (size_t)tlen);
		if (ret < 0) {
			snprintf(err, err_len, "ddr: the answer is too large");
			return ret;
		}
	}
	/* where _dns.resolver.arpa is answered */
	for (unsigned i = 0; i < cfg->n_listen && i < DV_MAX_URLS; i++) {
		const dv_url_t *u = &cfg->listen[i];
		const uint8_t *a;
		bool any;
		int fam = url_addr(u, &a, &any);
		if (on) {
			d->answers[i + 1] = true;
		} else if (any) {
			note(d,
			     "ddr: %s: not answered there (NODATA): a wildcard "
			     "address cannot be checked against the "
			     "certificate's IP SANs (listen on the address, or "
			     "ddr.mode: on%s)",
			     u->text, "");
		} else if (!cert_has_ip(cert, fam, a)) {
			note(d,
			     "ddr: %s: not answered there (NODATA): the "
			     "certificate has no IP SAN for its address, so "
			     "clients could not verify the designation "
			     "(RFC 9462 4.2)%s",
			     u->text, "");
		} else {
			d->answers[i + 1] = true;
		}
		if (d->answers[i + 1]) {
			size_t l = strlen(d->where);
			snprintf(d->where + l, sizeof(d->where) - l, "%s%s",
				 l ? " " : "", u->text);
		}
	}
	return 0;
}

int dv_ddr_new(const dv_config_t *cfg, const dv_cert_names_t *cert,
	       dv_ddr_t **out, char *err, size_t err_len)
{
	*out = NULL;
	if (!dv_ddr_wanted(cfg))
		return 0;
	dv_ddr_t *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, err_len, "ddr: out of memory");
		return -ENOMEM;
	}
	d->ttl = cfg->ddr_ttl;
	int ret = build(d, cfg, cert, err, err_len);
	if (ret < 0) {
		free(d);
		return ret;
	}
	*out = d;
	return 0;
}

void dv_ddr_free(dv_ddr_t *d)
{
	free(d);
}

void dv_ddr_log(const dv_ddr_t *d)
{
	if (!d)
		return;
	if (d->n_rec) {
		char what[256] = "";
		for (unsigned i = 0; i < d->n_rec; i++) {
			const rec_t *r = &d->rec[i];
			size_t l = strlen(what);
			snprintf(what + l, sizeof(what) - l, "%s%s:%u",
				 l ? ", " : "",
				 r->kind == DV_SCHEME_TLS     ? "dot"
				 : r->kind == DV_SCHEME_HTTPS ? "h2"
							      : "doq",
				 r->port);
		}
		dv_log_info("ddr: _dns.resolver.arpa and _dns.%s: SVCB %s for "
			    "%s; answered on %s",
			    d->server, what, d->server,
			    d->where[0] ? d->where : "no listener");
	}
	for (unsigned i = 0; i < d->n_notes; i++)
		dv_log_info("%s", d->notes[i]);
}

static bool name_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t x = a[i], y = b[i];
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (x != y)
			return false;
	}
	return true;
}

int dv_ddr_answer(const dv_ddr_t *d, const dv_query_t *q, uint8_t *buf,
		  size_t cap, unsigned pad_block)
{
	const dv_wire_query_t *v = &q->view;
	const uint8_t *qn = q->wire + DV_DNS_HDR;
	size_t qlen = v->qname_len, soa_off;
	bool svcb = v->qtype == TYPE_SVCB || v->qtype == DV_TYPE_ANY;
	bool records;
	if (v->qclass != 1)
		return 0;
	if (qlen >= sizeof(resolver_arpa) &&
	    name_eq(qn + qlen - sizeof(resolver_arpa), resolver_arpa,
		    sizeof(resolver_arpa))) {
		/* resolver.arpa and below: a label boundary? */
		size_t off = 0;
		while (off < qlen - sizeof(resolver_arpa))
			off += 1u + qn[off];
		if (off != qlen - sizeof(resolver_arpa))
			return 0; /* "xresolver.arpa" */
		soa_off = DV_DNS_HDR + off;
		records = svcb && d->n_rec &&
			  qlen == 5 + sizeof(resolver_arpa) &&
			  name_eq(qn, (const uint8_t *)"\x04_dns", 5) &&
			  q->listener <= DV_MAX_URLS && d->answers[q->listener];
	} else if (d->dns_name_len && qlen == d->dns_name_len &&
		   name_eq(qn, d->dns_name, qlen)) {
		/* designated resolver discovery by name (RFC 9462 5) */
		soa_off = DV_DNS_HDR;
		records = svcb && d->n_rec;
	} else {
		return 0;
	}

	uint8_t tmp[DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + RR_BYTES + 64];
	size_t qend = v->question_end, pos;
	if (qend <= DV_DNS_HDR || qend > DV_DNS_HDR + DV_DNS_MAX_NAME + 4)
		return DV_ESPACE;
	memcpy(tmp + DV_DNS_HDR, q->wire + DV_DNS_HDR, qend - DV_DNS_HDR);
	pos = qend;
	uint16_t an = 0, ns = 0;
	if (records) {
		memcpy(tmp + pos, d->rr, d->rr_len);
		pos += d->rr_len;
		an = (uint16_t)d->n_rec;
	} else {
		/* NODATA: a SOA of the zone (resolver.arpa) or of the name,
		 * root MNAME and RNAME, the TTL as MINIMUM (RFC 2308) */
		uint8_t *p = tmp + pos;
		dv_put16(p, (uint16_t)(0xc000 | soa_off));
		dv_put16(p + 2, DV_TYPE_SOA);
		dv_put16(p + 4, 1);
		dv_put32(p + 6, d->ttl);
		dv_put16(p + 10, 22);
		p[12] = p[13] = 0;
		dv_put32(p + 14, 1);
		dv_put32(p + 18, 3600);
		dv_put32(p + 22, 600);
		dv_put32(p + 26, 86400);
		dv_put32(p + 30, d->ttl);
		pos += 34;
		ns = 1;
	}
	dv_put16(tmp, v->id);
	dv_put16(tmp + 2, (uint16_t)(DV_FLAG_QR | DV_FLAG_AA |
				     (v->flags & 0x7800) | DV_FLAG_RA));
	dv_put16(tmp + 4, 1);
	dv_put16(tmp + 6, an);
	dv_put16(tmp + 8, ns);
	dv_put16(tmp + 10, 0);
	dv_wire_resp_t r;
	int ret = dv_wire_parse_response(tmp, pos, &r);
	if (ret < 0 && ret != DV_ELIMIT)
		return ret;
	return dv_wire_answer(buf, cap, tmp, pos, &r, q->wire, v, 0,
			      q->answer_limit, 0xffff, NULL, pad_block);
}

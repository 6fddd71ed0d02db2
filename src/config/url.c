/*
 * The URL grammar of listeners and upstreams,
 * SCHEME://ADDRESS:PORT[/PATH][#NAME] with IP literals only, and the scheme
 * table that says which role each scheme may play.
 */
#include "src/config/schema.h"
#include "src/core/errors.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Schemes and addresses                                               */

static const struct {
	const char *name;
	bool listen;
	bool upstream;
} schemes[DV_SCHEME_COUNT] = {
#define DV_SCHEME_ROW(e, s, l, u) [e] = { s, l, u },
	DV_SCHEMES(DV_SCHEME_ROW)
#undef DV_SCHEME_ROW
};

const char *dv_scheme_name(dv_scheme_t s)
{
	if ((unsigned)s >= DV_SCHEME_COUNT)
		return "?";
	return schemes[s].name;
}

/* Schemes whose upstreams are checked against a certificate name. */
static bool scheme_has_name(dv_scheme_t s)
{
	return s == DV_SCHEME_TLS || s == DV_SCHEME_HTTPS || s == DV_SCHEME_QUIC;
}

static bool scheme_has_path(dv_scheme_t s)
{
	return s == DV_SCHEME_HTTPS || s == DV_SCHEME_HTTP;
}

void dv_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (buf == NULL || len == 0)
		return;
	if (sa == NULL) {
		snprintf(buf, len, "(none)");
		return;
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host,
			 (unsigned)ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", (int)sa->sa_family);
	}
}

/* ------------------------------------------------------------------ */
/* URLs                                                                */

/* A listener's option after '?' (cut off `rest`): "proxy-protocol", on
 * the schemes that carry a byte stream from a load balancer. */
static int parse_url_option(char *rest, dv_url_role_t role, dv_url_t *u,
			    char *err, size_t err_len)
{
	char *opt = strchr(rest, '?');

	/* anything else is left to the path's check ('?' is not allowed) */
	if (opt == NULL || strcmp(opt + 1, "proxy-protocol") != 0)
		return 0;
	*opt = '\0';
	if (role != DV_URL_LISTEN ||
	    (u->scheme != DV_SCHEME_TCP && u->scheme != DV_SCHEME_TLS &&
	     u->scheme != DV_SCHEME_HTTP && u->scheme != DV_SCHEME_HTTPS)) {
		dv_cfg_errf(err, err_len,
			    "?proxy-protocol is only for tcp://, tls://, "
			    "http:// and https:// listeners");
		return DV_ECONFIG;
	}
	u->proxy_protocol = true;
	return 0;
}

/* A TLS name as written after '#': host-name characters only. */
static bool valid_tls_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_'))
			return false;
	}
	return true;
}

/* Parse "1..65535" (decimal digits only) into *port. */
static bool parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return false;
	}
	if (v == 0)
		return false;
	*port = (uint16_t)v;
	return true;
}

int dv_url_parse(const char *text, dv_url_role_t role, dv_url_t *url,
		 char *err, size_t err_len)
{
	dv_url_t u;
	char buf[sizeof(u.text)];
	char *rest, *name, *path, *host, *port_s;
	const char *sep;
	size_t scheme_len;
	uint16_t port;
	int s;

	memset(&u, 0, sizeof(u));
	if (text == NULL || *text == '\0') {
		dv_cfg_errf(err, err_len, "empty URL");
		return DV_ECONFIG;
	}
	if (!dv_cfg_copy_str(u.text, sizeof(u.text), text)) {
		dv_cfg_errf(err, err_len,
			    "URL too long (at most %zu characters)",
			    sizeof(u.text) - 1);
		return DV_ECONFIG;
	}

	/* scheme */
	sep = strstr(text, "://");
	if (sep == NULL) {
		dv_cfg_errf(err, err_len,
			    "missing scheme (expected SCHEME://ADDRESS:PORT)");
		return DV_ECONFIG;
	}
	scheme_len = (size_t)(sep - text);
	for (s = 0; s < DV_SCHEME_COUNT; s++) {
		if (strlen(schemes[s].name) == scheme_len &&
		    strncasecmp(text, schemes[s].name, scheme_len) == 0)
			break;
	}
	if (s == DV_SCHEME_COUNT) {
		dv_cfg_errf(err, err_len, "unknown scheme '%.*s'",
			    (int)(scheme_len > 32 ? 32 : scheme_len), text);
		return DV_ECONFIG;
	}
	u.scheme = (dv_scheme_t)s;
	if (role == DV_URL_UPSTREAM && !schemes[s].upstream) {
		dv_cfg_errf(err, err_len,
			    "scheme '%s' can only be used by listeners",
			    schemes[s].name);
		return DV_ECONFIG;
	}
	if (role == DV_URL_LISTEN && !schemes[s].listen) {
		dv_cfg_errf(err, err_len,
			    "scheme '%s' can only be used by upstreams",
			    schemes[s].name);
		return DV_ECONFIG;
	}

	/* Split a private copy of "ADDRESS:PORT[/PATH][#NAME]". */
	memcpy(buf, sep + 3, strlen(sep + 3) + 1);
	rest = buf;
	if (parse_url_option(rest, role, &u, err, err_len) < 0)
		return DV_ECONFIG;
	name = strchr(rest, '#');
	if (name != NULL)
		*name++ = '\0';
	path = strchr(rest, '/');
	if (path != NULL) {
		size_t n = strlen(path);

		if (n >= sizeof(u.path)) {
			dv_cfg_errf(err, err_len,
				    "path too long (at most %zu characters)",
				    sizeof(u.path) - 1);
			return DV_ECONFIG;
		}
		memcpy(u.path, path, n + 1);
		*path = '\0';
	}

	/* address and port */
	host = rest;
	if (*host == '[') {
		char *end = strchr(host, ']');

		if (end == NULL) {
			dv_cfg_errf(err, err_len,
				    "missing ']' after IPv6 address");
			return DV_ECONFIG;
		}
		*end = '\0';
		host++;
		port_s = end + 1;
		if (*port_s != ':') {
			dv_cfg_errf(err, err_len,
				    "port missing (expected [ADDRESS]:PORT)");
			return DV_ECONFIG;
		}
		*port_s++ = '\0';
	} else {
		port_s = strchr(host, ':');
		if (port_s != NULL) {
			*port_s++ = '\0';
			if (strchr(port_s, ':') != NULL) {
				dv_cfg_errf(err, err_len,
					    "IPv6 address must be in brackets, "
					    "e.g. [::1]:53");
				return DV_ECONFIG;
			}
		}
	}
	if (*host == '\0') {
		dv_cfg_errf(err, err_len, "address missing");
		return DV_ECONFIG;
	}
	if (port_s == NULL || *port_s == '\0') {
		dv_cfg_errf(err, err_len,
			    "port missing (expected ADDRESS:PORT)");
		return DV_ECONFIG;
	}
	if (!parse_port(port_s, &port)) {
		dv_cfg_errf(err, err_len,
			    "invalid port '%.16s' (expected 1..65535)", port_s);
		return DV_ECONFIG;
	}
	if (rest[0] == '[') { /* bracketed: IPv6 only */
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&u.addr;

		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			goto bad_address;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		u.addr_len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&u.addr;

		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			goto bad_address;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		u.addr_len = sizeof(*in);
	}

	/* path */
	if (scheme_has_path(u.scheme)) {
		if (u.path[0] == '\0') {
			dv_cfg_errf(err, err_len,
				    "%s:// needs a path, e.g. "
				    "%s://%s%s%s:%u/dns-query",
				    schemes[s].name, schemes[s].name,
				    rest[0] == '[' ? "[" : "", host,
				    rest[0] == '[' ? "]" : "", (unsigned)port);
			return DV_ECONFIG;
		}
		for (const char *p = u.path; *p != '\0'; p++) {
			if ((unsigned char)*p <= ' ' || *p == 0x7f ||
			    *p == '?') {
				dv_cfg_errf(err, err_len,
					    "invalid character in path '%.64s'",
					    u.path);
				return DV_ECONFIG;
			}
		}
	} else if (u.path[0] != '\0') {
		dv_cfg_errf(err, err_len, "%s:// takes no path ('%.64s')",
			    schemes[s].name, u.path);
		return DV_ECONFIG;
	}

	/* #NAME: the name the upstream's certificate must carry */
	if (role == DV_URL_UPSTREAM && scheme_has_name(u.scheme)) {
		if (name == NULL || *name == '\0') {
			dv_cfg_errf(err, err_len,
				    "%s:// upstream needs #NAME, the name its "
				    "certificate must match (e.g. "
				    "%s://1.1.1.1:%s#cloudflare-dns.com)",
				    schemes[s].name, schemes[s].name,
				    u.scheme == DV_SCHEME_HTTPS
					    ? "443/dns-query"
					    : "853");
			return DV_ECONFIG;
		}
		if (!valid_tls_name(name)) {
			dv_cfg_errf(err, err_len, "invalid #NAME '%.64s'",
				    name);
			return DV_ECONFIG;
		}
		memcpy(u.name, name, strlen(name) + 1);
	} else if (name != NULL) {
		dv_cfg_errf(err, err_len,
			    "#NAME is only for tls://, https:// and quic:// "
			    "upstreams");
		return DV_ECONFIG;
	}

	*url = u;
	return 0;

bad_address:
	dv_cfg_errf(err, err_len,
		    "invalid address '%.64s' (IP literals only, "
		    "no host names)", host);
	return DV_ECONFIG;
}

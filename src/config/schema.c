/*
 * Configuration: the schema table and its typed items.
 *
 * Design note.  Every key lives once in `dv_cfg_schema[]` below: its place
 * in the YAML file, its type, the field it fills, its range, its default and
 * its doc line.  dv_config_defaults(), the loader, the command line (the
 * flags that set a config value point at a schema entry) and
 * dv_config_print_schema() all read that table, so a key cannot be
 * validated one way in the file and another way on the command line.
 *
 * The rest of the folder reads the table through schema.h: url.c (the
 * URL grammar), load.c (the YAML loader), validate.c (checks across keys)
 * and cli.c (the command line).
 */
#include "src/config/schema.h"
#include "src/core/errors.h"
#include "src/core/wire.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dv_cfg_errf(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

bool dv_cfg_copy_str(char *dst, size_t dst_len, const char *src)
{
	size_t n = strlen(src);

	if (n >= dst_len)
		return false;
	memcpy(dst, src, n + 1);
	return true;
}

/* ------------------------------------------------------------------ */
/* The schema                                                          */

static int parse_listen_url(const char *text, void *elem, char *why,
			    size_t why_len)
{
	return dv_url_parse(text, DV_URL_LISTEN, elem, why, why_len);
}

static int parse_upstream_url(const char *text, void *elem, char *why,
			      size_t why_len)
{
	return dv_url_parse(text, DV_URL_UPSTREAM, elem, why, why_len);
}

/* A DoH path as the request target must spell it: the listener URL's path
 * rules (see dv_url_parse), plus no '#'. */
static int parse_http_path(const char *text, void *elem, char *why,
			   size_t why_len)
{
	size_t n = strlen(text);

	if (text[0] != '/') {
		dv_cfg_errf(why, why_len, "must start with '/'");
		return DV_ECONFIG;
	}
	if (n >= DV_URL_PATH_MAX) {
		dv_cfg_errf(why, why_len, "too long (at most %d bytes)",
			    DV_URL_PATH_MAX - 1);
		return DV_ECONFIG;
	}
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '?' || *p == '#') {
			dv_cfg_errf(why, why_len,
				    "must not contain '?' or '#' "
				    "(a path only)");
			return DV_ECONFIG;
		}
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			dv_cfg_errf(why, why_len,
				    "must not contain spaces or control "
				    "characters");
			return DV_ECONFIG;
		}
	}
	memcpy(elem, text, n + 1);
	return 0;
}

int dv_cfg_parse_netmask(const char *text, void *elem, char *why,
			 size_t why_len)
{
	return dv_netmask_parse(text, elem, why, why_len);
}

/* pool.probe-name: a name the probe query can carry. */
static int check_dns_name(const char *text, char *why, size_t why_len)
{
	uint8_t wire[DV_DNS_MAX_NAME];

	if (dv_wire_name_from_text(wire, sizeof(wire), text) < 0) {
		dv_cfg_errf(why, why_len,
			    "not a DNS name (letters, digits, '-', '_', "
			    "labels of 1..63 separated by '.', or '.' for "
			    "the root)");
		return DV_ECONFIG;
	}
	return 0;
}

/* user:, group: a name as useradd takes it ([a-z_][a-z0-9_.-]*, a '$'
 * at the end) or a number; whether it exists is checked at start and by
 * --check-config (src/daemon/privileges.c), not here. */
static int check_account(const char *text, char *why, size_t why_len)
{
	if (!*text)
		return 0;
	bool digits = true;
	for (const char *p = text; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' ||
			  (c == '-' && p != text) || (c == '$' && !p[1]);
		if (!ok) {
			dv_cfg_errf(why, why_len,
				    "not a user or group name (letters, "
				    "digits, '_', '.', '-' not first) or "
				    "number");
			return DV_ECONFIG;
		}
		digits = digits && c >= '0' && c <= '9';
	}
	if (digits && strlen(text) > 9) {
		dv_cfg_errf(why, why_len, "not a user or group number");
		return DV_ECONFIG;
	}
	return 0;
}

/* A server name for policy.server-names: a DNS name, stored lowercased
 * without the trailing dot. */
static int parse_server_name(const char *text, void *elem, char *why,
			     size_t why_len)
{
	char *out = elem;
	size_t n = strlen(text);
	if (check_dns_name(text, why, why_len) != 0)
		return DV_ECONFIG;
	if (n > 0 && text[n - 1] == '.')
		n--;
	if (n == 0 || n >= 256) {
		dv_cfg_errf(why, why_len, "the root is no server name");
		return DV_ECONFIG;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(text[i] >= 'A' && text[i] <= 'Z' ? text[i] + 32
								 : text[i]);
	out[n] = '\0';
	return 0;
}

/* internal: a DNS name under which every name is internal (not the
 * root, which would keep every name from the fallback) */
static int parse_internal_name(const char *text, void *elem, char *why,
			       size_t why_len)
{
	if (parse_server_name(text, elem, why, why_len) == 0)
		return 0;
	if (check_dns_name(text, why, why_len) == 0)
		dv_cfg_errf(why, why_len,
			    "the root cannot be internal (no name would "
			    "ever reach the fallback): name a domain");
	return DV_ECONFIG;
}

static const dv_cfg_list_kind_t internal_names = {
	.type_name = "names", .one = "a DNS name", .many = "names",
	.unique = true, .parse = parse_internal_name,
};

static const dv_cfg_list_kind_t server_names = {
	.type_name = "names", .one = "a DNS name", .many = "names",
	.unique = true, .parse = parse_server_name,
};

/* admin.listen: http://ADDRESS:PORT, the path (if any) only "/". */
static int parse_admin_url(const char *text, void *elem, char *why,
			   size_t why_len)
{
	char buf[sizeof(((dv_url_t *)0)->text)];
	if (strncmp(text, "http://", 7) != 0) {
		dv_cfg_errf(why, why_len,
			    "the admin listener is plain HTTP: http://"
			    "ADDRESS:PORT");
		return DV_ECONFIG;
	}
	/* http:// listeners need a path in dv_url_parse(): give it "/" */
	if (!strchr(text + 7, '/') &&
	    (size_t)snprintf(buf, sizeof(buf), "%s/", text) < sizeof(buf))
		text = buf;
	int ret = dv_url_parse(text, DV_URL_LISTEN, elem, why, why_len);
	if (ret != 0)
		return ret;
	dv_url_t *u = elem;
	if (strcmp(u->path, "/") != 0) {
		dv_cfg_errf(why, why_len,
			    "takes no path (it serves /metrics, /healthz and "
			    "/readyz)");
		return DV_ECONFIG;
	}
	return 0;
}

static const dv_cfg_list_kind_t admin_urls = {
	.type_name = "urls", .one = "a URL", .many = "URLs", .unique = true,
	.parse = parse_admin_url,
};
static const dv_cfg_list_kind_t listen_urls = {
	.type_name = "urls", .one = "a URL", .many = "URLs",
	.parse = parse_listen_url,
};
static const dv_cfg_list_kind_t upstream_urls = {
	.type_name = "urls", .one = "a URL", .many = "URLs",
	.parse = parse_upstream_url,
};
static const dv_cfg_list_kind_t http_paths = {
	.type_name = "paths", .one = "a path", .many = "paths",
	.unique = true, .parse = parse_http_path,
};
static const dv_cfg_list_kind_t netmasks = {
	.type_name = "prefixes", .one = "an IP address or prefix",
	.many = "prefixes", .unique = true, .parse = dv_cfg_parse_netmask,
};

typedef char path_elem_t[DV_URL_PATH_MAX];
typedef char server_name_t[256];

static const char *const doq_retry_modes[] = {
	[DV_DOQ_RETRY_ALWAYS] = "always",
	[DV_DOQ_RETRY_UNDER_LOAD] = "under-load",
	[DV_DOQ_RETRY_NEVER] = "never",
	NULL,
};
static const char *const log_formats[] = {
	[DV_LOG_TEXT] = "text",
	[DV_LOG_JSON] = "json",
	NULL,
};
/* dv_qlog_mode_t (src/daemon/querylog.h): the same order */
static const char *const query_log_modes[] = {"off", "all", "errors", NULL};

static const char *const client_cert_modes[] = {
	[DV_CLIENT_CERT_OPTIONAL] = "optional",
	[DV_CLIENT_CERT_REQUIRE] = "require",
	NULL,
};
static const char *const doq_booleans[] = {"false", "true", NULL};
static const char *const booleans[] = {"false", "true", NULL};
static const char *const ddr_modes[] = {
	[DV_DDR_OFF] = "off", [DV_DDR_ON] = "on", [DV_DDR_AUTO] = "auto", NULL
};

/*
 * FIELD() is offsetof() plus a compile-time type check: comparing pointers
 * of distinct types is a constraint violation that gcc and clang report, so
 * an entry whose type does not match its field does not build.
 */
#define CFG_MEMBER(f) (((dv_config_t *)0)->f)
#define FIELD(f, ctype)                                                      \
	(offsetof(dv_config_t, f) + 0 * sizeof(&CFG_MEMBER(f) == (ctype *)0))
#define ARRAY_FIELD(f, ctype)                                                \
	(offsetof(dv_config_t, f) + 0 * sizeof(&CFG_MEMBER(f)[0] == (ctype *)0))

#define ITEM(sec, k, t, off) .section = sec, .key = k, .type = t, .offset = off
#define UINT(sec, k, f, lo, hi, d, dc)                                       \
	{ ITEM(sec, k, DV_CFG_UINT, FIELD(f, unsigned)), .min = lo,            \
	  .max = hi, .def = d, .doc = dc }
#define SIZE(sec, k, f, lo, hi, d, dc)                                       \
	{ ITEM(sec, k, DV_CFG_SIZE, FIELD(f, uint64_t)), .min = lo,            \
	  .max = hi, .def = d, .doc = dc }
#define STRING(sec, k, f, d, dc)                                             \
	{ ITEM(sec, k, DV_CFG_STRING, ARRAY_FIELD(f, char)),                   \
	  .aux = sizeof(CFG_MEMBER(f)), .max = sizeof(CFG_MEMBER(f)) - 1,      \
	  .def = d, .doc = dc }
/* A string whose value `chk` checks. */
#define STRING_CHECKED(sec, k, f, d, chk, dc)                                \
	{ ITEM(sec, k, DV_CFG_STRING, ARRAY_FIELD(f, char)),                   \
	  .aux = sizeof(CFG_MEMBER(f)), .max = sizeof(CFG_MEMBER(f)) - 1,      \
	  .def = d, .doc = dc, .check = chk }
#define LOGLEVEL(sec, k, f, d, dc)                                           \
	{ ITEM(sec, k, DV_CFG_LOGLEVEL, FIELD(f, dv_log_level_t)), .def = d,   \
	  .doc = dc }
#define ENUM(sec, k, f, nm, d, dc)                                           \
	{ ITEM(sec, k, DV_CFG_ENUM, FIELD(f, unsigned)), .names = nm,          \
	  .def = d, .doc = dc }
/* An array `f` of `ctype` counted by `n`; the default is the empty list.
 * The element must fit dv_cfg_item_set()'s buffer, or this does not
 * build. */
#define FITS_LIST_ELEM(ctype)                                                \
	(0 * sizeof(char[sizeof(ctype) <= LIST_ELEM_MAX ? 1 : -1]))
#define LIST(sec, k, f, ctype, n, kind, dc)                                  \
	{ ITEM(sec, k, DV_CFG_LIST,                                            \
	       ARRAY_FIELD(f, ctype) + FITS_LIST_ELEM(ctype)),                 \
	  .aux = FIELD(n, unsigned), .elem_size = sizeof(ctype),              \
	  .list = &(kind),                                                   \
	  .max = sizeof(CFG_MEMBER(f)) / sizeof(CFG_MEMBER(f)[0]), .doc = dc }
#define URLS(sec, k, f, n, kind, dc) LIST(sec, k, f, dv_url_t, n, kind, dc)


const dv_cfg_item_t dv_cfg_schema[] = {
	UINT(NULL, "workers", workers, 0, 256, "0",
	     "worker threads, each with its own event loop and sockets; "
	     "0 = one per CPU"),
	LOGLEVEL(NULL, "log-level", log_level, "info",
		 "error, warn, info or debug"),
	LOGLEVEL("log", "level", log_level, "info",
		 "the same as log-level (error, warn, info or debug)"),
	ENUM("log", "format", log_format, log_formats, "text",
	     "text (TIME LEVEL: MESSAGE) or json (one object per line: ts, "
	     "level, msg)"),
	ENUM("log", "queries", log_queries, query_log_modes, "off",
	     "the query log: off, all (every answer) or errors (answers "
	     "other than NOERROR and NXDOMAIN)"),
	UINT("log", "query-sample", log_query_sample, 1, 1000000, "1",
	     "log 1 in N of the answers log.queries chooses (per worker)"),
	STRING("log", "query-file", log_query_file, "",
	       "the file the query log is appended to; empty = stderr"),
	UINT("log", "query-buffer", log_query_buffer, 16, 1048576, "4096",
	     "query-log entries waiting per worker for the writer thread; "
	     "more are dropped and counted (querylog_dropped)"),
	STRING("dnstap", "socket", dnstap_socket, "",
	       "dnstap: the Frame Streams Unix socket (a collector such as "
	       "fstrm_capture) to send CLIENT_QUERY and CLIENT_RESPONSE "
	       "messages to; empty = off"),
	STRING("dnstap", "file", dnstap_file, "",
	       "dnstap: the Frame Streams file to write instead of a "
	       "socket; empty = off"),
	UINT("dnstap", "buffer", dnstap_buffer, 2, 16384, "8192",
	     "dnstap frames waiting per worker (rounded up to a power of "
	     "two); more are dropped and "
	     "counted (dnstap_dropped)"),
	ENUM("dnstap", "resolver", dnstap_resolver, booleans, "false",
	     "dnstap: also send each query to an upstream and each answer "
	     "read from one (RESOLVER_QUERY and RESOLVER_RESPONSE)"),
	URLS(NULL, "listen", listen, n_listen, listen_urls,
	     "addresses to serve clients on: udp, tcp, dns (udp + tcp), "
	     "tls, https, http, quic"),
	URLS(NULL, "upstream", upstream, n_upstream, upstream_urls,
	     "local resolvers every query not answered from the cache "
	     "goes to: udp, tcp, tls (DoT), https (DoH) URLs"),
	URLS(NULL, "fallback", fallback, n_fallback, upstream_urls,
	     "public resolvers (tls, https, udp, tcp URLs), also asked when "
	     "the upstreams are silent for pool.hedge-delay-ms, down or "
	     "degraded"),

	STRING("tls", "cert", tls_cert, "",
	       "PEM certificate chain, leaf first, for tls/https/quic "
	       "listeners"),
	STRING("tls", "key", tls_key, "", "PEM private key of tls.cert"),
	UINT("tls", "ticket-rotation-s", tls_ticket_rotation_s, 60, 604800,
	     "3600",
	     "lifetime of a session ticket key; the previous key is still "
	     "accepted for as long again"),
	STRING("tls", "ticket-key-file", tls_ticket_key_file, "",
	       "80 random bytes (raw or base64: openssl rand 80) shared by "
	       "every replica: DoT/DoH/DoQ session tickets and DoQ Retry "
	       "and NEW_TOKEN tokens are keyed from it, so a client resumes "
	       "on any replica; re-read when it changes (the previous key "
	       "still accepted until the next change); replaces "
	       "ticket-rotation-s; empty = random keys per process"),
	STRING("tls", "client-ca", tls_client_ca, "",
	       "PEM CA bundle that DoT, DoH and DoQ clients' certificates "
	       "are checked against (mTLS); a verified certificate names the "
	       "client ID (its first DNS name's first label, else its "
	       "subject CN) and wins over the SNI's and the DoH path's; "
	       "those listeners then issue no session tickets; empty = no "
	       "certificate asked for"),
	ENUM("tls", "client-cert", tls_client_cert, client_cert_modes,
	     "optional",
	     "with tls.client-ca: optional (a client without a valid "
	     "certificate has no certificate ID) or require (its handshake "
	     "fails)"),
	STRING("tls", "ca", tls_ca, "",
	       "CA bundle that upstream certificates are checked against; "
	       "empty = system store"),

	UINT("limits", "tcp-max-connections", tcp_max_connections, 1, 1000000,
	     "10000", "client TCP/TLS connections per worker"),
	UINT("limits", "tcp-max-inflight", tcp_max_inflight, 1, 65535, "128",
	     "queries in flight on one client connection before reading "
	     "from it stops"),
	UINT("limits", "tcp-idle-timeout-ms", tcp_idle_timeout_ms, 100,
	     3600000, "10000", "close an idle client connection after this"),
	UINT("limits", "tcp-max-output-bytes", tcp_max_output_bytes, 4096,
	     67108864, "262144",
	     "unsent bytes on one client connection before reading from it "
	     "stops"),
	UINT("limits", "tcp-write-timeout-ms", tcp_write_timeout_ms, 100,
	     3600000, "10000",
	     "close a client connection whose unsent answers have not moved "
	     "for this long (a client that stopped reading)"),
	SIZE("limits", "worker-max-output", worker_max_output_bytes,
	     64 * 1024, 64 * GIB, "32M",
	     "buffered answer bytes of all client TCP/TLS/DoH connections of "
	     "a worker (K, M, G = KiB, MiB, GiB); over it (until back under "
	     "half), a connection with unsent output reads no more until "
	     "that is sent"),
	UINT("limits", "max-inflight", max_inflight, 1, 1000000, "10000",
	     "queries in flight per worker"),
	UINT("limits", "udp-collect-rate", udp_collect_rate, 0, 100000000,
	     "70000",
	     "datagrams a second one worker reads (its UDP listeners "
	     "together) above which it waits 50 us before each poll, to read "
	     "more per wake-up: less CPU per query under heavy UDP load, up "
	     "to 50 us more latency; it stops under 80% of this; 0 = never"),
	UINT("limits", "tcp-read-timeout-ms", tcp_read_timeout_ms, 100,
	     600000, "5000",
	     "a client connection that starts a message must finish it "
	     "within this"),
	UINT("limits", "tls-handshake-timeout-ms", tls_handshake_timeout_ms,
	     100, 600000, "5000", "a TLS handshake must finish within this"),
	UINT("limits", "tls-handshakes-per-ip", tls_handshakes_per_ip, 0,
	     1000000, "500",
	     "under handshake pressure: full TLS/QUIC handshakes per second "
	     "one client address (IPv4 /32, IPv6 /64) gets back into its "
	     "bucket, all workers together; resumed ones cost a quarter; "
	     "0 = no per-address cap"),
	UINT("limits", "tls-handshake-burst", tls_handshake_burst, 1,
	     1000000, "1000",
	     "under handshake pressure: full handshakes one client address "
	     "may make at once (its bucket's depth), all workers together"),
	UINT("limits", "handshake-pressure", handshake_pressure, 0, 1000000,
	     "64",
	     "TLS and QUIC handshakes in progress on one worker at which the "
	     "per-address caps start (they stay on 1 s after); 0 = always on"),
	LIST("limits", "handshake-exempt", handshake_exempt, dv_netmask_t,
	     n_handshake_exempt, netmasks,
	     "client addresses or prefixes never capped (NAT gateways, load "
	     "balancers); doh.trusted-proxies are exempt too"),

	UINT("doq", "max-connections", doq_max_connections, 1, 1000000, "1024",
	     "QUIC connections per worker, half-open ones included; at the "
	     "limit a half-open, else an idle one makes room; when every "
	     "one is busy a new one is refused (CONNECTION_REFUSED)"),
	UINT("doq", "max-handshakes", doq_max_handshakes, 1, 1000000, "256",
	     "QUIC handshakes in progress (half-open connections) per "
	     "worker, within max-connections; at the limit a new client "
	     "makes room by closing the oldest one of the address holding "
	     "the most"),
	UINT("doq", "max-handshakes-per-address",
	     doq_max_handshakes_per_address, 1, 65536, "16",
	     "QUIC handshakes in progress per client address (IPv6: per "
	     "/64) per worker; more from that address are refused "
	     "(CONNECTION_REFUSED)"),
	UINT("doq", "max-streams", doq_max_streams, 1, 10000, "100",
	     "queries in flight on one connection (bidirectional stream "
	     "credit, given back as streams finish)"),
	UINT("doq", "idle-timeout-ms", doq_idle_timeout_ms, 1000, 3600000,
	     "30000", "close a QUIC connection idle this long"),
	ENUM("doq", "retry", doq_retry, doq_retry_modes, "under-load",
	     "stateless Retry address validation: always, under-load "
	     "(many handshakes in progress) or never"),
	ENUM("doq", "early-data", doq_early_data, doq_booleans, "false",
	     "accept 0-RTT queries from resuming clients (QUERY only, "
	     "RFC 9250 section 4.5)"),
	UINT("doq", "token-lifetime-s", doq_token_lifetime_s, 10, 2592000,
	     "86400",
	     "NEW_TOKEN tokens let a returning client skip Retry for this "
	     "long"),

	LIST("doh", "paths", doh_paths, path_elem_t, n_doh_paths, http_paths,
	     "extra URL paths every https/http listener also serves "
	     "(e.g. /dns-query/kids); '/' first, no '?' or '#'"),
	LIST("doh", "trusted-proxies", doh_trusted_proxies, dv_netmask_t,
	     n_doh_trusted_proxies, netmasks,
	     "proxies (IP addresses or prefixes) whose X-Forwarded-For / "
	     "Forwarded header names the client"),
	LIST("proxy-protocol", "from", proxy_from, dv_netmask_t, n_proxy_from,
	     netmasks,
	     "load balancers (IP addresses or prefixes) that may send a "
	     "PROXY v2 header on a ?proxy-protocol listener; others are "
	     "closed"),
	UINT("doh", "max-streams", doh_max_streams, 1, 1000, "100",
	     "HTTP/2 concurrent streams and pipelined HTTP/1.1 requests "
	     "per connection"),
	UINT("doh", "max-header-bytes", doh_max_header_bytes, 1024, 65536,
	     "8192",
	     "request target + header bytes per request; more is answered "
	     "431 (HTTP/2: a stream reset if more fields follow); also "
	     "bounds the header bytes an HTTP/2 connection may make us "
	     "decode"),

	URLS("admin", "listen", admin_listen, n_admin_listen, admin_urls,
	     "HTTP/1.1 admin listener (http://ADDRESS:PORT, e.g. "
	     "http://127.0.0.1:9153) serving /metrics (Prometheus), /healthz "
	     "and /readyz on a thread of its own; empty = off"),
	LIST("admin", "allow", admin_allow, dv_netmask_t, n_admin_allow,
	     netmasks,
	     "client addresses or prefixes the admin listener serves (others "
	     "get 403); empty = loopback only (127.0.0.0/8, ::1)"),
	UINT("admin", "max-connections", admin_max_connections, 1, 1024, "16",
	     "admin connections open at once; more wait in the kernel's "
	     "backlog"),
	UINT("admin", "timeout-ms", admin_timeout_ms, 100, 60000, "5000",
	     "an admin connection must send its request and take the answer "
	     "within this, or it is closed"),

	UINT("drain", "delay-ms", drain_delay_ms, 0, 600000, "5000",
	     "after SIGTERM, keep serving this long with /readyz failing "
	     "(lameduck: load balancers and Kubernetes stop sending), then "
	     "stop accepting; 0 = stop at once"),
	UINT("drain", "timeout-ms", drain_timeout_ms, 100, 600000, "10000",
	     "after the delay, queries in flight are answered and connections "
	     "closed within this; what is left then is cut (logged, counted) "
	     "and dnsveil exits 0 all the same"),

	STRING_CHECKED(NULL, "user", user, "", check_account,
		       "once every listener is bound, run as this user "
		       "(name or number; its primary group unless group: is "
		       "set), with every capability dropped; empty = stay"),
	STRING_CHECKED(NULL, "group", group, "", check_account,
		       "with user:, the group to run as (name or number); "
		       "empty = the user's primary group"),

	UINT("pool", "connections", upstream_connections, 1, 64, "2",
	     "TCP connections to each upstream server, per worker"),
	UINT("pool", "max-inflight", upstream_max_inflight, 1, 65535, "1024",
	     "queries in flight on one upstream connection (UDP: "
	     "pool.udp-max-inflight)"),
	UINT("pool", "timeout-ms", upstream_timeout_ms, 10, 60000, "1500",
	     "one attempt on one upstream server"),
	UINT("pool", "hedge-delay-ms", hedge_delay_ms, 0, 60000, "200",
	     "upstreams silent this long: also ask the fallback group"),
	UINT("pool", "query-timeout-ms", query_timeout_ms, 100, 60000, "3000",
	     "whole-query deadline, then SERVFAIL"),
	UINT("pool", "reconnect-min-ms", reconnect_min_ms, 1, 60000, "50",
	     "a down upstream is probed after this first delay"),
	UINT("pool", "reconnect-max-ms", reconnect_max_ms, 1, 600000, "5000",
	     "the probe delay doubles after each failed probe up to this"),
	UINT("pool", "idle-timeout-ms", upstream_idle_timeout_ms, 0, 86400000,
	     "60000",
	     "close an upstream connection idle this long (reopened on "
	     "demand); 0 = keep it open"),
	UINT("pool", "doq-max-streams", upstream_doq_max_streams, 0, 65535,
	     "0",
	     "quic:// upstreams: at most this many streams per QUIC "
	     "connection from the oldest unanswered one (knotd drops a "
	     "connection past 10); more open another connection; 0 = as "
	     "the server's credit allows, lowered on its own when a "
	     "connection goes silent"),
	UINT("pool", "down-after-failures", down_after_failures, 0, 1000, "3",
	     "consecutive failed or timed-out attempts that mark a server "
	     "down (a refused connection does at once); 0 = only refused "
	     "connections"),
	UINT("pool", "degraded-failures", degraded_failures, 0, 16, "4",
	     "failed or timed-out attempts among a server's last 16 that "
	     "mark it degraded; 0 = never"),
	UINT("pool", "slow-p95-ms", slow_p95_ms, 0, 60000, "250",
	     "a local server whose p95 answer latency is above this is "
	     "degraded: its queries also go to the fallback at once; "
	     "0 = off"),
	UINT("pool", "explore-pct", explore_pct, 0, 50, "2",
	     "percent of queries sent to a server other than the fastest "
	     "of its group, to keep measuring it"),
	STRING_CHECKED("pool", "probe-name", probe_name, ".", check_dns_name,
		       "name the probes of a down server ask for (type NS)"),
	ENUM("pool", "refused-is-final", refused_is_final, booleans, "true",
	     "a REFUSED answer from a local upstream is the client's answer "
	     "(the local resolver's policy stands) instead of a failure "
	     "that is asked again of the fallback"),
	ENUM("pool", "loopback-udp", loopback_udp, booleans, "true",
	     "a tcp:// upstream on a loopback address is also asked over "
	     "UDP for the misses of every client, whatever its transport, "
	     "and for prefetches (a truncated or lost answer is asked again "
	     "over TCP); false = TCP only"),
	UINT("pool", "udp-max-inflight", udp_max_inflight, 1, 65535, "64",
	     "UDP queries in flight to one upstream server per worker "
	     "(udp://, and loopback tcp:// with pool.loopback-udp; rounded "
	     "up to a power of two), each on a socket of its own; more "
	     "wait for one.  Keep workers x this under what the resolver's "
	     "UDP receive buffer holds (256 datagrams with Linux's default "
	     "208 KiB)"),
	UINT("pool", "udp-socket-queries", udp_socket_queries, 1, 65535,
	     "256",
	     "queries sent on one connected UDP socket to a loopback "
	     "upstream (udp://, and loopback tcp:// with pool.loopback-udp) "
	     "before it is closed and a new one, on a new random port, is "
	     "opened; a datagram on it that is not the awaited answer "
	     "retires it at once.  1 = a socket per query.  Upstreams "
	     "outside loopback always get a socket per query"),

	LIST(NULL, "internal", internal, server_name_t, n_internal,
	     internal_names,
	     "names whose queries (and their subdomains') go only to the "
	     "local upstreams, never to the fallback: SERVFAIL (EDE 22) "
	     "when the local group cannot answer"),

	LIST("policy", "server-names", server_names, server_name_t,
	     n_server_names, server_names,
	     "the names of the TLS certificate (e.g. dns.example for a "
	     "*.dns.example certificate): an SNI of one label more, "
	     "{id}.dns.example, carries the client ID {id} (DoT, DoQ); the "
	     "bare name carries none"),
	ENUM("policy", "clients-only", clients_only, booleans, "false",
	     "refuse (REFUSED, EDE 18) a query whose client ID (DoH path or "
	     "SNI) no clients: id entry matches"),
	ENUM("policy", "internal-special-use", internal_special_use, booleans,
	     "true",
	     "the special-use names (local, home.arpa, internal, "
	     "resolver.arpa, the reverse zones of private, link-local, "
	     "shared and documentation addresses) are internal too"),
	ENUM("policy", "internal-records", internal_records, booleans, "true",
	     "the owner names of every group's records: (and their "
	     "subdomains) are internal too"),
	STRING("policy", "cache-dir", policy_cache_dir, "/var/lib/dnsveil/lists",
	       "where the last good copy of each http(s):// list is kept "
	       "(NAME.list and NAME.meta), so that a restart with the list's "
	       "server down still blocks"),
	STRING("policy", "ca", policy_ca, "",
	       "CA bundle (PEM) that the certificates of https:// list "
	       "servers are checked against; empty = system store"),

	ENUM("ddr", "mode", ddr_mode, ddr_modes, "auto",
	     "DDR (RFC 9462): answer _dns.resolver.arpa SVCB with the "
	     "tls/https/quic listeners: auto = on the listeners whose address "
	     "the certificate has as an IP SAN, on = on every listener, "
	     "off = pass resolver.arpa on like any name"),
	STRING_CHECKED("ddr", "server-name", ddr_server_name, "",
		       check_dns_name,
		       "the SVCB target name; also answers _dns.NAME; empty = "
		       "the certificate's first DNS name that is no wildcard"),
	UINT("ddr", "ttl", ddr_ttl, 1, 86400, "300",
	     "TTL of the DDR answers (and of the NODATA SOA)"),

	SIZE("cache", "size", cache_size_bytes, 0, 64 * GIB, "64M",
	     "memory for cached answers (K, M, G = KiB, MiB, GiB); "
	     "0 disables the cache"),
	UINT("cache", "shards", cache_shards, 1, 4096, "64",
	     "independently locked parts of the cache"),
	UINT("cache", "min-ttl", cache_min_ttl, 0, 86400, "0",
	     "answers are kept at least this many seconds"),
	UINT("cache", "max-ttl", cache_max_ttl, 0, 604800, "86400",
	     "answers are kept at most this many seconds"),
	UINT("cache", "negative-max-ttl", cache_negative_max_ttl, 0, 86400,
	     "3600", "NXDOMAIN/NODATA answers are kept at most this many "
		     "seconds"),
	UINT("cache", "stale-max-age-s", cache_stale_max_age_s, 0, 604800,
	     "86400",
	     "serve-stale (RFC 8767): expired answers are kept this long and "
	     "served (TTL 30, EDE 3) when the upstreams fail; 0 disables"),
	UINT("cache", "stale-answer-timeout-ms", cache_stale_answer_timeout_ms,
	     0, 30000, "1800",
	     "a query with a stale answer waiting this long for the upstreams "
	     "gets the stale answer while the refresh continues; 0 = only "
	     "on failure"),
	UINT("cache", "servfail-ttl-s", cache_servfail_ttl_s, 0, 300, "5",
	     "upstream failures for a name are remembered (answered SERVFAIL "
	     "from the cache) this long; 0 disables"),
	UINT("cache", "prefetch-hits", cache_prefetch_hits, 0, 1000000, "10",
	     "an answer hit this often is refreshed before it expires; "
	     "0 disables prefetch"),
	UINT("cache", "prefetch-window-pct", cache_prefetch_window_pct, 1, 50,
	     "10",
	     "prefetch in the last this-percent of an answer's lifetime "
	     "(at least its last second)"),
};

#define SCHEMA_LEN (sizeof(dv_cfg_schema) / sizeof(dv_cfg_schema[0]))

/* The loader sizes its per-key arrays by DV_CFG_SCHEMA_MAX at compile time. */
_Static_assert(SCHEMA_LEN <= DV_CFG_SCHEMA_MAX,
	       "the schema outgrew DV_CFG_SCHEMA_MAX (schema.h)");

const dv_cfg_item_t *dv_cfg_schema_find(const char *section,
					const char *key)
{
	return dv_cfg_find_in(dv_cfg_schema, SCHEMA_LEN, section, key);
}

const char *dv_cfg_find_section(const char *name)
{
	for (size_t i = 0; i < SCHEMA_LEN; i++) {
		if (dv_cfg_schema[i].section != NULL &&
		    strcmp(dv_cfg_schema[i].section, name) == 0)
			return dv_cfg_schema[i].section;
	}
	return NULL;
}

void dv_config_defaults(dv_config_t *cfg)
{
	char why[256];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < SCHEMA_LEN; i++) {
		const dv_cfg_item_t *it = &dv_cfg_schema[i];

		dv_cfg_item_clear(it, cfg);
		if (it->def == NULL)
			continue;
		if (dv_cfg_item_set(it, cfg, it->def, why, sizeof(why)) != 0) {
			/* A schema bug, not a user error: never ship it. */
			fprintf(stderr, "dnsveil: bad default for %s: %s\n",
				it->key, why);
			abort();
		}
	}
}

void dv_config_print_schema(FILE *out)
{
	size_t n_policy = 0;
	while (dv_cfg_policy_schema[n_policy].key)
		n_policy++;
	dv_cfg_print_items(out, dv_cfg_schema, SCHEMA_LEN);
	dv_cfg_print_items(out, dv_cfg_policy_schema, n_policy);
}

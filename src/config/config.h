#pragma once
/*
 * Configuration: the YAML file, the command line on top of it, and the URL
 * grammar for listeners and upstreams.  Every key is declared once in the
 * schema table in config.c; validation, defaults and `--help-config` come
 * from that table.  Nothing here does I/O beyond reading the file.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "src/core/log.h"
#include "src/core/netmask.h"
#include "src/core/scheme.h"

const char *dv_scheme_name(dv_scheme_t s);


#define DV_URL_PATH_MAX 256
#define DV_URL_NAME_MAX 256

/* A parsed listener or upstream URL. */
typedef struct {
	dv_scheme_t scheme;
	struct sockaddr_storage addr; /* AF_INET or AF_INET6, port set */
	socklen_t addr_len;
	char path[DV_URL_PATH_MAX]; /* https/http: "/dns-query"; else "" */
	char name[DV_URL_NAME_MAX]; /* "#NAME" for tls/https/quic upstreams */
	char text[512];             /* the URL as given, for logs */
	/* "?proxy-protocol" (tcp/tls/http/https listeners): every connection
	 * starts with a PROXY v2 header from a `proxy-protocol.from` peer */
	bool proxy_protocol;
} dv_url_t;

typedef enum { DV_URL_LISTEN, DV_URL_UPSTREAM } dv_url_role_t;

/*
 * Parse `text` as a URL for `role`.  Returns 0, or DV_ECONFIG with a
 * human-readable reason in `err` (e.g. "unknown scheme 'ftp'",
 * "port missing", "invalid address '1.2.3'", "tls:// upstream needs
 * #NAME").  Only literal IP addresses are accepted, never host names:
 * dnsveil must not need DNS to reach its own upstreams.
 */
int dv_url_parse(const char *text, dv_url_role_t role, dv_url_t *url,
		 char *err, size_t err_len);

/* Format an address as "1.2.3.4:53" or "[::1]:53". */
void dv_addr_format(const struct sockaddr *sa, char *buf, size_t len);

#define DV_MAX_URLS 32
#define DV_DOH_MAX_PATHS 16            /* doh.paths */
#define DV_DOH_MAX_TRUSTED_PROXIES 32  /* doh.trusted-proxies */
#define DV_PROXY_MAX_FROM 32 /* proxy-protocol.from */
#define DV_MAX_HANDSHAKE_EXEMPT 32     /* limits.handshake-exempt */
#define DV_ADMIN_MAX_LISTEN 4          /* admin.listen */
#define DV_ADMIN_MAX_ALLOW 32          /* admin.allow */

typedef enum {
	DV_DOQ_RETRY_ALWAYS,
	DV_DOQ_RETRY_UNDER_LOAD,
	DV_DOQ_RETRY_NEVER,
} dv_doq_retry_t;

/* tls.client-cert: what a TLS listener does without a valid client
 * certificate (with tls.client-ca set) */
typedef enum {
	DV_CLIENT_CERT_OPTIONAL, /* the connection goes on, with no cert ID */
	DV_CLIENT_CERT_REQUIRE,  /* the handshake fails */
} dv_client_cert_t;


/* ---- the policy: lists, groups, clients (README "Policy") ---- */
#define DV_POLICY_NAME_MAX 64     /* list and group names, client IDs */
#define DV_POLICY_MAX_LISTS 32    /* bits of a list mask */
#define DV_POLICY_MAX_GROUPS 32
#define DV_POLICY_GROUP_LISTS 16  /* names under one block: or allow: */
#define DV_POLICY_MAX_ACTION 8    /* addresses of one action */
#define DV_POLICY_MAX_CLIENTS 256
#define DV_POLICY_CLIENT_CIDRS 8
#define DV_POLICY_MAX_SERVER_NAMES 8
#define DV_POLICY_MAX_RECORDS 1024     /* records: lines, all groups */
#define DV_POLICY_RECORD_BYTES 65536   /* their rdata, all groups */
#define DV_POLICY_MAX_INTERNAL 64      /* internal: names */
#define DV_RECORD_DEFAULT_TTL 300      /* of a records: line without one */
#define DV_POLICY_GROUP_UPSTREAMS 8    /* groups.NAME.upstream, .fallback */
/* upstream sets: 0 the top-level upstream:/fallback:, then one per
 * distinct groups.NAME.upstream/fallback pair (README "Per-group
 * upstreams") */
#define DV_MAX_UPSTREAM_SETS (1 + DV_POLICY_MAX_GROUPS)

typedef enum {
	DV_LIST_HOSTS,   /* "0.0.0.0 name name..." */
	DV_LIST_DOMAINS, /* one name a line */
	DV_LIST_ADBLOCK, /* "||name^", "@@||name^" */
	DV_LIST_RPZ,     /* a response policy zone's QNAME triggers */
} dv_list_format_t;

/* ddr.mode (README "Policy", "DDR") */
typedef enum {
	DV_DDR_OFF,  /* resolver.arpa is passed on as any name */
	DV_DDR_ON,   /* answered on every listener */
	DV_DDR_AUTO, /* answered where the certificate covers the address */
} dv_ddr_mode_t;

/* lists: NAME: {source, format, refresh-s, max-bytes, timeout-ms} */
typedef struct {
	char name[DV_POLICY_NAME_MAX];
	char source[512]; /* a file path or an http(s):// URL */
	unsigned format;  /* dv_list_format_t */
	unsigned refresh_s; /* 0: read at start only */
	uint64_t max_bytes; /* a URL's body; larger: the old copy stays */
	unsigned timeout_ms; /* a URL's whole transfer */
} dv_cfg_list_t;

typedef enum {
	DV_ACTION_NXDOMAIN,
	DV_ACTION_NODATA,
	DV_ACTION_REFUSED,
	DV_ACTION_NULL,      /* 0.0.0.0 / :: */
	DV_ACTION_ADDRESSES, /* the given addresses */
} dv_action_t;

/* What a UDP query over its group's rate limit gets. */
typedef enum { DV_RATE_TRUNCATE, DV_RATE_DROP } dv_rate_action_t;

/* One item of a group's `action:`: a keyword or an address. */
typedef struct {
	uint8_t kind;   /* dv_action_t; DV_ACTION_ADDRESSES: an address */
	uint8_t family; /* AF_INET or AF_INET6 for an address */
	uint8_t addr[16];
} dv_cfg_action_t;

typedef char dv_cfg_name_t[DV_POLICY_NAME_MAX];

/* groups: NAME: {block, allow, action, blocked-ttl} */
typedef struct {
	char name[DV_POLICY_NAME_MAX];
	dv_cfg_name_t block[DV_POLICY_GROUP_LISTS];
	unsigned n_block;
	dv_cfg_name_t allow[DV_POLICY_GROUP_LISTS];
	unsigned n_allow;
	dv_cfg_action_t action[DV_POLICY_MAX_ACTION];
	unsigned n_action;
	unsigned blocked_ttl;
	/* access control and rate limits (README "Access control and rate
	 * limits"): deny-from wins, a non-empty allow-from admits only its
	 * prefixes; rate_limit_qps 0: no limit, burst 0: the qps */
	dv_netmask_t allow_from[DV_POLICY_CLIENT_CIDRS];
	unsigned n_allow_from;
	dv_netmask_t deny_from[DV_POLICY_CLIENT_CIDRS];
	unsigned n_deny_from;
	unsigned rate_limit_qps, rate_limit_burst;
	unsigned rate_limit_action; /* dv_rate_action_t */
	unsigned rate_limit_v4, rate_limit_v6; /* prefix lengths */
	/* the group's own resolvers (upstream:, and fallback: for them);
	 * none: the top-level upstream: and fallback: */
	dv_url_t upstream[DV_POLICY_GROUP_UPSTREAMS];
	unsigned n_upstream;
	dv_url_t fallback[DV_POLICY_GROUP_UPSTREAMS];
	unsigned n_fallback;
	/* filled by the loader from the names above */
	uint32_t block_mask, allow_mask; /* bit i: lists[i] */
	/* its upstream set: 0 (the top-level one) without upstream:, else
	 * 1.. , the same for groups whose two URL lists are identical */
	unsigned upstream_set;
	/* lines of the group's name and of its block:, allow:, action: and
	 * fallback: keys, for messages */
	unsigned line, block_line, allow_line, action_line, fallback_line;
} dv_cfg_group_t;

/* One line of a group's `records:` (zone-file syntax), parsed at load. */
typedef struct {
	uint8_t owner[256]; /* wire form, lowercased */
	uint16_t owner_len;
	uint16_t type, rclass;
	uint16_t rdlen;
	uint32_t ttl;
	uint32_t rdata_off; /* in dv_config_t.record_data */
	uint8_t group;      /* index in groups */
	unsigned line;      /* of the line, for messages */
} dv_cfg_record_t;

/* clients: - {id | cidr | listener, group}; first match wins */
typedef struct {
	char id[DV_POLICY_NAME_MAX]; /* glob pattern; "" = any */
	dv_netmask_t cidr[DV_POLICY_CLIENT_CIDRS];
	unsigned n_cidr;             /* 0 = any address */
	char listener[DV_URL_NAME_MAX]; /* a `listen` URL as given; "" = any */
	char group[DV_POLICY_NAME_MAX];
	/* filled by the loader */
	unsigned group_index; /* in groups */
	unsigned line;        /* of the entry, for messages */
} dv_cfg_client_t;

/* Bits of dv_config_t.cli_set: which values the command line gave, so that
 * dv_config_validate() can name the flag rather than the file. */
enum {
	DV_CLI_SET_LISTEN = 1u << 0,
	DV_CLI_SET_UPSTREAM = 1u << 1,
	DV_CLI_SET_FALLBACK = 1u << 2,
	DV_CLI_SET_TLS_CERT = 1u << 3,
	DV_CLI_SET_TLS_KEY = 1u << 4,
	DV_CLI_SET_TLS_CA = 1u << 5,
	DV_CLI_SET_WORKERS = 1u << 6,
	DV_CLI_SET_ADMIN = 1u << 7,
	DV_CLI_SET_USER = 1u << 8,
	DV_CLI_SET_GROUP = 1u << 9,
};

typedef struct {
	/* top level */
	unsigned workers; /* 0 = number of CPUs */
	dv_log_level_t log_level; /* log-level, or log.level */

	/* log: */
	unsigned log_format;       /* dv_log_format_t: text, json */
	unsigned log_queries;      /* dv_qlog_mode_t: off, all, errors */
	unsigned log_query_sample; /* 1 in N of the queries chosen */
	char log_query_file[512];  /* "" = stderr */
	unsigned log_query_buffer; /* ring entries per worker */

	/* dnstap: (one of the two, or neither: off) */
	char dnstap_socket[108]; /* a Frame Streams Unix socket to connect to */
	char dnstap_file[512];   /* a Frame Streams file to write */
	unsigned dnstap_buffer;  /* frames waiting per worker before drops */
	unsigned dnstap_resolver; /* 0/1: RESOLVER_QUERY/RESPONSE too */

	dv_url_t listen[DV_MAX_URLS];
	unsigned n_listen;
	dv_url_t upstream[DV_MAX_URLS];
	unsigned n_upstream;
	dv_url_t fallback[DV_MAX_URLS];
	unsigned n_fallback;

	/* tls: */
	char tls_cert[512]; /* PEM chain, leaf first */
	char tls_key[512];
	char tls_ca[512]; /* trust bundle for upstream certs; "" = system */
	unsigned tls_ticket_rotation_s; /* session ticket key lifetime */
	/* key material shared by replicas (src/tls/keyfile.h); "" = off */
	char tls_ticket_key_file[512];
	/* client certificates (mTLS): the CA they must chain to ("" = none
	 * asked for) and dv_client_cert_t */
	char tls_client_ca[512];
	unsigned tls_client_cert;

	/* limits: (per worker unless said) */
	unsigned tcp_max_connections;   /* client TCP connections per worker */
	unsigned tcp_max_inflight;      /* queries in flight per client conn */
	unsigned udp_collect_rate; /* datagrams/s a worker collects above */
	unsigned tcp_idle_timeout_ms;   /* client TCP idle timeout */
	unsigned tcp_max_output_bytes;  /* unsent bytes per client conn before
					   reading stops */
	unsigned tcp_write_timeout_ms;  /* unsent output that does not move
					   this long closes the connection */
	uint64_t worker_max_output_bytes; /* buffered answer bytes of all
					     client conns of a worker */
	unsigned max_inflight;          /* queries in flight per worker */
	unsigned tcp_read_timeout_ms;   /* a started message must complete */
	unsigned tls_handshake_timeout_ms;
	/* handshake admission (src/core/hs_limit.h), TLS and QUIC: per client
	 * address (IPv4 /32, IPv6 /64), all workers together, applied only
	 * while a worker has handshake_pressure handshakes in progress */
	unsigned tls_handshakes_per_ip; /* refill per second; 0 = no cap */
	unsigned tls_handshake_burst;   /* bucket depth */
	unsigned handshake_pressure;    /* per worker; 0 = caps always on */
	dv_netmask_t handshake_exempt[DV_MAX_HANDSHAKE_EXEMPT];
	unsigned n_handshake_exempt;

	/* doq: (quic:// listeners) */
	unsigned doq_max_connections; /* per worker */
	unsigned doq_max_handshakes;  /* half-open connections per worker */
	unsigned doq_max_handshakes_per_address; /* ... per client address
						    (IPv6: /64), per worker */
	unsigned doq_max_streams;     /* bidirectional stream credit */
	unsigned doq_idle_timeout_ms;
	unsigned doq_retry;           /* dv_doq_retry_t */
	unsigned doq_early_data;      /* 0/1: accept 0-RTT */
	unsigned doq_token_lifetime_s;

	/* doh: (https:// and http:// listeners) */
	/* extra paths every DoH listener serves besides its URL's own
	 * ("/dns-query/kids"): '/' first, no '?' or '#', no duplicates */
	char doh_paths[DV_DOH_MAX_PATHS][DV_URL_PATH_MAX];
	unsigned n_doh_paths;
	/* peers whose X-Forwarded-For / Forwarded header names the client
	 * (no duplicates) */
	dv_netmask_t doh_trusted_proxies[DV_DOH_MAX_TRUSTED_PROXIES];
	unsigned n_doh_trusted_proxies;
	/* peers allowed to send a PROXY v2 header on ?proxy-protocol
	 * listeners (no duplicates) */
	dv_netmask_t proxy_from[DV_PROXY_MAX_FROM];
	unsigned n_proxy_from;
	unsigned doh_max_streams;      /* HTTP/2 concurrent streams, HTTP/1.1
					  pipelined requests, per connection */
	unsigned doh_max_header_bytes; /* request target + headers; more: 431 */

	/* admin: the HTTP listener for /metrics, /healthz, /readyz (none:
	 * off); the client addresses it serves (none: loopback only) */
	dv_url_t admin_listen[DV_ADMIN_MAX_LISTEN];
	unsigned n_admin_listen;
	dv_netmask_t admin_allow[DV_ADMIN_MAX_ALLOW];
	unsigned n_admin_allow;
	unsigned admin_max_connections; /* open at once */
	unsigned admin_timeout_ms;      /* request read + answer written */

	/* drain: what SIGTERM does (src/daemon/stop.c) */
	unsigned drain_delay_ms;   /* keep serving this long (lameduck) */
	unsigned drain_timeout_ms; /* then finish within this, or cut */

	/* user:, group: to run as once every listener is bound ("": stay) */
	char user[64];
	char group[64];

	/* upstream: */
	unsigned upstream_connections;  /* TCP conns per server per worker */
	unsigned upstream_max_inflight; /* queries in flight per upstream conn */
	unsigned upstream_timeout_ms;   /* one attempt on one server */
	unsigned hedge_delay_ms;        /* local pool silent this long ->
					   also ask the fallback group */
	unsigned query_timeout_ms;      /* whole query deadline -> SERVFAIL */
	unsigned reconnect_min_ms;      /* backoff for upstream reconnects */
	unsigned reconnect_max_ms;
	unsigned upstream_idle_timeout_ms; /* idle upstream conns; 0 = never */
	unsigned upstream_doq_max_streams; /* quic:// streams per conn; 0 = any */
	unsigned down_after_failures;   /* consecutive failures -> down */
	unsigned degraded_failures;     /* failures of the last 16 -> degraded */
	unsigned slow_p95_ms;           /* local p95 above -> degraded; 0 off */
	unsigned explore_pct;           /* fetches sent to a non-best server */
	char probe_name[256];           /* probes of a down server: NAME NS */
	unsigned refused_is_final;      /* 0/1: a local REFUSED is the answer */
	/* UDP to loopback resolvers (pool.c): a tcp:// upstream on loopback
	 * also takes every question but probes over UDP (0/1), and the UDP
	 * queries in flight per server and worker (more wait for an id), and
	 * the queries one connected socket to a loopback server carries
	 * (conn_udp.c; 1 = a socket per query) */
	unsigned loopback_udp;
	unsigned udp_max_inflight;
	unsigned udp_socket_queries;

	/* cache: */
	uint64_t cache_size_bytes; /* 0 disables the cache */
	unsigned cache_shards;
	unsigned cache_min_ttl;
	unsigned cache_max_ttl;
	unsigned cache_negative_max_ttl;
	unsigned cache_stale_max_age_s;         /* serve-stale window; 0 = off */
	unsigned cache_stale_answer_timeout_ms; /* RFC 8767 client timer */
	unsigned cache_servfail_ttl_s;          /* 0 = failures not cached */
	unsigned cache_prefetch_hits;           /* 0 = no prefetch */
	unsigned cache_prefetch_window_pct;

	/* lists:, groups:, clients:, policy: */
	dv_cfg_list_t lists[DV_POLICY_MAX_LISTS];
	unsigned n_lists;
	dv_cfg_group_t groups[DV_POLICY_MAX_GROUPS];
	unsigned n_groups;
	/* 1 + the distinct upstream sets of the groups (filled by the
	 * loader; 0 in a config it has not resolved: one set) */
	unsigned n_upstream_sets;
	dv_cfg_client_t clients[DV_POLICY_MAX_CLIENTS];
	unsigned n_clients;
	/* policy.server-names: the ID in a TLS SNI is its first label
	 * before one of these */
	char server_names[DV_POLICY_MAX_SERVER_NAMES][256];
	unsigned n_server_names;
	unsigned clients_only; /* 0/1: unknown client IDs are refused */
	/* groups.NAME.records: every group's, in file order */
	dv_cfg_record_t records[DV_POLICY_MAX_RECORDS];
	unsigned n_records;
	uint8_t record_data[DV_POLICY_RECORD_BYTES];
	uint32_t record_data_len;
	/* internal: names (lowercased text, no final dot) sent only to the
	 * local resolvers; and whether the special-use names and the
	 * names of local records are too */
	char internal[DV_POLICY_MAX_INTERNAL][256];
	unsigned n_internal;
	unsigned internal_special_use; /* 0/1 */
	unsigned internal_records;     /* 0/1 */
	/* policy.cache-dir: the last good copy of each URL list */
	char policy_cache_dir[256];
	/* policy.ca: CA bundle for https:// lists; "" = system store */
	char policy_ca[512];

	/* ddr: DDR (RFC 9462) answers for _dns.resolver.arpa */
	unsigned ddr_mode;         /* dv_ddr_mode_t */
	char ddr_server_name[256]; /* "": the certificate's first DNS name */
	unsigned ddr_ttl;

	/* where the values came from, for messages */
	char source[512]; /* config file path, or "" for built-in defaults */
	unsigned cli_set; /* DV_CLI_SET_* bits, set by dv_cli_apply() */
} dv_config_t;

/* Fill every field with the schema's defaults (no listeners/upstreams). */
void dv_config_defaults(dv_config_t *cfg);

/*
 * Load a YAML file over `cfg` (which should hold defaults).  Returns 0, or
 * DV_ECONFIG / -errno with a message in `err` of the form
 * "FILE:LINE: KEY: reason" (unknown key, wrong type, out of range, bad URL).
 */
int dv_config_load(dv_config_t *cfg, const char *path, char *err,
		   size_t err_len);

/* The same from memory (the fuzz target, tests); `name` stands for FILE in
 * messages and becomes cfg->source.  On any error `cfg` is left untouched;
 * so is it for dv_config_load(). */
int dv_config_load_buffer(dv_config_t *cfg, const char *name,
			  const void *data, size_t len, char *err,
			  size_t err_len);

/* Final checks after file + flags: at least one listener and one upstream,
 * schemes implemented, TLS files present where a scheme needs them.
 * `implemented` says which listener/upstream schemes this build serves.
 * Returns 0 or DV_ECONFIG with a message in `err`. */
int dv_config_validate(const dv_config_t *cfg, const bool *listen_implemented,
		       const bool *upstream_implemented, char *err,
		       size_t err_len);

/* Whether the address of `url` is this host's or a private network's:
 * loopback (127.0.0.0/8, ::1), RFC 1918, RFC 6598 (100.64.0.0/10),
 * link-local (169.254.0.0/16, fe80::/10) and fc00::/7. */
bool dv_url_is_local(const dv_url_t *url);
/* Whether the address of `url` is loopback (127.0.0.0/8, ::1). */
bool dv_url_is_loopback(const dv_url_t *url);
/* Whether the upstream `url` gets a UDP front connection (udp://, or
 * tcp:// on loopback with pool.loopback-udp): UDP sockets in flight. */
bool dv_url_has_udp_front(const dv_config_t *cfg, const dv_url_t *url);

/*
 * Upstream set `set` (0 .. dv_config_upstream_sets() - 1): its local
 * resolvers and its fallback (set 0: the top-level upstream: and
 * fallback:; set N: the lists of the first group that has it) and the
 * name the logs and metrics give it (NULL for set 0, else that group's
 * name).
 */
typedef struct {
	const dv_url_t *upstream, *fallback;
	unsigned n_upstream, n_fallback;
	const char *name;
} dv_upstream_set_t;
unsigned dv_config_upstream_sets(const dv_config_t *cfg);
void dv_config_upstream_set(const dv_config_t *cfg, unsigned set,
			    dv_upstream_set_t *out);

/* What a valid config should still be warned about at start-up (nothing is
 * refused): udp:// and tcp:// upstreams and fallbacks outside local
 * networks (dv_url_is_local), whose answers an off-path attacker can
 * spoof.  Calls `warn` with one line per warning; returns how many. */
unsigned dv_config_warnings(const dv_config_t *cfg,
			    void (*warn)(void *arg, const char *msg),
			    void *arg);

/* Command line. */
typedef struct {
	const char *config_path; /* -c FILE, NULL = none given */
	bool check_config;
	bool version;
	bool help;
	bool help_config; /* --help-config: dv_config_print_schema() */
} dv_cli_t;

/*
 * Parse argv: -c/--config FILE, --listen URL..., --upstream URL...,
 * --fallback URL..., --tls-cert, --tls-key, --ca, --workers N,
 * --check-config, --help-config, --version, --help.  Flags given on the
 * command line replace the corresponding config values: any --listen
 * replaces all file listeners, likewise --upstream and --fallback.
 * Because the file is read first, parsing happens in two steps:
 * dv_cli_parse() records the flags, dv_cli_apply() lays them over a loaded
 * config.
 * Returns 0 or DV_ECONFIG with a message in `err`.
 */
int dv_cli_parse(int argc, char **argv, dv_cli_t *cli, char *err,
		 size_t err_len);
int dv_cli_apply(int argc, char **argv, dv_config_t *cfg, char *err,
		 size_t err_len);

/* Print `dnsveil --help` text (usage + flags + URL grammar). */
void dv_cli_usage(FILE *out);
/* Print the schema: every key, type, range, default and doc line. */
void dv_config_print_schema(FILE *out);

#pragma once
/* The URL schemes of listeners and upstreams: which transport a query came
 * in on, and what a configured URL names. */

/* X(enum, "scheme", usable as listener, usable as upstream) */
#define DV_SCHEMES(X)                                                        \
	X(DV_SCHEME_UDP, "udp", true, true)                                  \
	X(DV_SCHEME_TCP, "tcp", true, true)                                  \
	X(DV_SCHEME_DNS, "dns", true, false)                                 \
	X(DV_SCHEME_TLS, "tls", true, true)                                  \
	X(DV_SCHEME_HTTPS, "https", true, true)                              \
	X(DV_SCHEME_HTTP, "http", true, false)                               \
	X(DV_SCHEME_QUIC, "quic", true, true)

typedef enum {
#define DV_SCHEME_ENUM(e, s, l, u) e,
	DV_SCHEMES(DV_SCHEME_ENUM)
#undef DV_SCHEME_ENUM
	DV_SCHEME_COUNT
} dv_scheme_t;

#pragma once
/*
 * Per-worker metrics beyond the flat counters of stats.h: counters by
 * transport and rcode, latency and EDNS-size histograms, connections per
 * transport.  Like dv_stats_t, only the owning worker writes them (plain
 * relaxed stores, no lock prefix, no lock); the admin listener's thread
 * reads them with relaxed loads and sums the workers (dv_metrics_sum).
 *
 * Histograms keep one count per bucket (not cumulative) and the sum of
 * the observed values in their own unit (microseconds, bytes); the
 * Prometheus exposition makes them cumulative and converts the unit.
 */
#include <stdint.h>

#include "src/core/scheme.h"

/* Upper bounds of the latency buckets, in microseconds (the last bucket
 * is +Inf). */
#define DV_LAT_BOUNDS_US                                                     \
	{ 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,      \
	  250000, 500000, 1000000, 2500000, 5000000 }
#define DV_LAT_NBOUNDS 15
/* Upper bounds of the EDNS UDP payload size buckets, in bytes. */
#define DV_EDNS_BOUNDS { 512, 1024, 1232, 1400, 1452, 2048, 4096 }
#define DV_EDNS_NBOUNDS 7

typedef struct {
	uint64_t bucket[DV_LAT_NBOUNDS + 1]; /* the last one: above all bounds */
	uint64_t sum;                         /* of the values, microseconds */
} dv_lat_hist_t;

typedef struct {
	uint64_t bucket[DV_EDNS_NBOUNDS + 1];
	uint64_t sum; /* bytes */
} dv_edns_hist_t;

/* The rcodes answers are counted by: X(enum, label) */
#define DV_RCODES(X)                                                         \
	X(DV_RC_NOERROR, "NOERROR")                                          \
	X(DV_RC_FORMERR, "FORMERR")                                          \
	X(DV_RC_SERVFAIL, "SERVFAIL")                                        \
	X(DV_RC_NXDOMAIN, "NXDOMAIN")                                        \
	X(DV_RC_NOTIMP, "NOTIMP")                                            \
	X(DV_RC_REFUSED, "REFUSED")                                          \
	X(DV_RC_BADVERS, "BADVERS")                                          \
	X(DV_RC_OTHER, "other")

typedef enum {
#define DV_RC_ENUM(e, s) e,
	DV_RCODES(DV_RC_ENUM)
#undef DV_RC_ENUM
	DV_RC_COUNT
} dv_rc_t;

/* Where an answer came from, for the latency histograms: X(enum, label) */
#define DV_SOURCES(X)                                                        \
	X(DV_SRC_LOCAL, "local")   /* made at once: FORMERR, NOTIMP, overload */ \
	X(DV_SRC_CACHE, "cache")   /* the cache, without waiting */          \
	X(DV_SRC_UPSTREAM, "upstream") /* waited for an upstream fetch */

typedef enum {
#define DV_SRC_ENUM(e, s) e,
	DV_SOURCES(DV_SRC_ENUM)
#undef DV_SRC_ENUM
	DV_SRC_COUNT
} dv_src_t;

typedef struct {
	uint64_t queries[DV_SCHEME_COUNT];
	uint64_t answers[DV_SCHEME_COUNT][DV_RC_COUNT];
	dv_lat_hist_t latency[DV_SCHEME_COUNT][DV_SRC_COUNT];
	/* queries with an OPT record, by the UDP payload size they asked
	 * for; and queries without one */
	dv_edns_hist_t edns_size;
	uint64_t no_edns;
	/* client connections (stream transports and QUIC) */
	uint64_t conn_accepted[DV_SCHEME_COUNT];
	uint64_t conn_closed[DV_SCHEME_COUNT];
} dv_metrics_t;

extern const uint32_t dv_lat_bounds_us[DV_LAT_NBOUNDS];
extern const uint32_t dv_edns_bounds[DV_EDNS_NBOUNDS];
extern const char *const dv_rc_names[DV_RC_COUNT];
extern const char *const dv_src_names[DV_SRC_COUNT];

#define DV_METRIC_ADD(p, n)                                                  \
	__atomic_store_n((p), *(p) + (n), __ATOMIC_RELAXED)
#define DV_METRIC_INC(p) DV_METRIC_ADD(p, 1)

/* Count `us` into `h` (owner thread only). */
static inline void dv_lat_observe(dv_lat_hist_t *h, uint64_t us)
{
	static const uint32_t b[DV_LAT_NBOUNDS] = DV_LAT_BOUNDS_US;
	unsigned i = 0;
	while (i < DV_LAT_NBOUNDS && us > b[i])
		i++;
	DV_METRIC_INC(&h->bucket[i]);
	DV_METRIC_ADD(&h->sum, us);
}

static inline void dv_edns_observe(dv_edns_hist_t *h, uint32_t size)
{
	static const uint32_t b[DV_EDNS_NBOUNDS] = DV_EDNS_BOUNDS;
	unsigned i = 0;
	while (i < DV_EDNS_NBOUNDS && size > b[i])
		i++;
	DV_METRIC_INC(&h->bucket[i]);
	DV_METRIC_ADD(&h->sum, size);
}

/* The rcode an answer is counted under: the header's (BADVERS needs the
 * OPT record's extended bits, so its maker says so). */
static inline dv_rc_t dv_rc_of(unsigned rcode)
{
	return rcode <= 5 ? (dv_rc_t)rcode : DV_RC_OTHER;
}

/* out += in, reading `in` with relaxed atomic loads (any thread). */
void dv_metrics_sum(dv_metrics_t *out, const dv_metrics_t *in);
void dv_lat_hist_sum(dv_lat_hist_t *out, const dv_lat_hist_t *in);
/* Observations held by `h`. */
uint64_t dv_lat_hist_count(const dv_lat_hist_t *h);

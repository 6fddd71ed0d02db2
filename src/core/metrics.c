#include "src/core/metrics.h"

#include <stddef.h>

const uint32_t dv_lat_bounds_us[DV_LAT_NBOUNDS] = DV_LAT_BOUNDS_US;
const uint32_t dv_edns_bounds[DV_EDNS_NBOUNDS] = DV_EDNS_BOUNDS;

const char *const dv_rc_names[DV_RC_COUNT] = {
#define DV_RC_NAME(e, s) [e] = s,
	DV_RCODES(DV_RC_NAME)
#undef DV_RC_NAME
};

const char *const dv_src_names[DV_SRC_COUNT] = {
#define DV_SRC_NAME(e, s) [e] = s,
	DV_SOURCES(DV_SRC_NAME)
#undef DV_SRC_NAME
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define SUM_ARRAY(o, i)                                                      \
	for (size_t k_ = 0; k_ < sizeof(o) / sizeof((o)[0]); k_++)          \
		(o)[k_] += LOAD(&(i)[k_])

void dv_lat_hist_sum(dv_lat_hist_t *out, const dv_lat_hist_t *in)
{
	SUM_ARRAY(out->bucket, in->bucket);
	out->sum += LOAD(&in->sum);
}

uint64_t dv_lat_hist_count(const dv_lat_hist_t *h)
{
	uint64_t n = 0;
	for (unsigned i = 0; i <= DV_LAT_NBOUNDS; i++)
		n += h->bucket[i];
	return n;
}

void dv_metrics_sum(dv_metrics_t *out, const dv_metrics_t *in)
{
	SUM_ARRAY(out->queries, in->queries);
	for (unsigned s = 0; s < DV_SCHEME_COUNT; s++) {
		SUM_ARRAY(out->answers[s], in->answers[s]);
		for (unsigned k = 0; k < DV_SRC_COUNT; k++)
			dv_lat_hist_sum(&out->latency[s][k],
					&in->latency[s][k]);
	}
	SUM_ARRAY(out->edns_size.bucket, in->edns_size.bucket);
	out->edns_size.sum += LOAD(&in->edns_size.sum);
	out->no_edns += LOAD(&in->no_edns);
	SUM_ARRAY(out->conn_accepted, in->conn_accepted);
	SUM_ARRAY(out->conn_closed, in->conn_closed);
}

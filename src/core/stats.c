#include "src/core/stats.h"

#include <inttypes.h>

void dv_stats_sum(dv_stats_t *out, const dv_stats_t *in)
{
#define DV_STATS_SUM(name, help)                                             \
	out->name += __atomic_load_n(&in->name, __ATOMIC_RELAXED);
	DV_STATS(DV_STATS_SUM)
#undef DV_STATS_SUM
}

void dv_stats_sum_upstream(dv_ustats_t *out, const dv_ustats_t *in)
{
#define DV_USTATS_SUM(name, help)                                            \
	out->name += __atomic_load_n(&in->name, __ATOMIC_RELAXED);
	DV_USTATS(DV_USTATS_SUM)
#undef DV_USTATS_SUM
}

void dv_stats_json(FILE *f, const dv_stats_t *st)
{
	const char *sep = "{";
#define DV_STATS_JSON(name, help)                                            \
	fprintf(f, "%s\"%s\":%" PRIu64, sep, #name, st->name);               \
	sep = ",";
	DV_STATS(DV_STATS_JSON)
#undef DV_STATS_JSON
	fputc('}', f);
}

/* A JSON string: URLs hold no control characters, but may hold '"'. */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned)(unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void dv_upstream_stats_json(FILE *f, const dv_upstream_stats_t *u,
			    unsigned n)
{
	fputs("\"upstreams\":[", f);
	for (unsigned i = 0; i < n; i++) {
		const dv_upstream_stats_t *x = &u[i];
		fputs(i ? ",{\"url\":" : "{\"url\":", f);
		json_string(f, x->url);
		if (x->set) { /* a group's own upstream set */
			fputs(",\"set\":", f);
			json_string(f, x->set);
		}
		fprintf(f,
			",\"group\":\"%s\",\"state\":\"%s\",\"workers_up\":%u,"
			"\"workers_degraded\":%u,\"workers_down\":%u",
			x->fallback ? "fallback" : "local",
			dv_health_state_name(x->state),
			x->n_state[DV_HEALTH_UP], x->n_state[DV_HEALTH_DEGRADED],
			x->n_state[DV_HEALTH_DOWN]);
#define DV_USTATS_JSON(name, help)                                           \
	fprintf(f, ",\"%s\":%" PRIu64, #name, x->st.name);
		DV_USTATS(DV_USTATS_JSON)
#undef DV_USTATS_JSON
		fprintf(f,
			",\"latency_samples\":%" PRIu64
			",\"latency_ewma_ms\":%.3f,\"latency_p95_ms\":%" PRIu32
			"}",
			x->samples, x->ewma_us / 1000.0, x->p95_ms);
	}
	fputc(']', f);
}

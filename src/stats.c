#include "src/stats.h"

#include <inttypes.h>

void dv_stats_sum(dv_stats_t *out, const dv_stats_t *in)
{
#define DV_STATS_SUM(name, help)                                             \
	out->name += __atomic_load_n(&in->name, __ATOMIC_RELAXED);
	DV_STATS(DV_STATS_SUM)
#undef DV_STATS_SUM
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

#include "src/daemon/cfgref.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	unsigned refs;
	dv_config_t cfg;
} cfgref_t;

static cfgref_t *ref_of(const dv_config_t *cfg)
{
	return (cfgref_t *)((char *)cfg - offsetof(cfgref_t, cfg));
}

const dv_config_t *dv_cfgref_new(const dv_config_t *src)
{
	cfgref_t *r = malloc(sizeof(*r));
	if (!r)
		return NULL;
	r->refs = 1;
	memcpy(&r->cfg, src, sizeof(r->cfg));
	return &r->cfg;
}

void dv_cfgref_hold(const dv_config_t *cfg)
{
	__atomic_add_fetch(&ref_of(cfg)->refs, 1, __ATOMIC_RELAXED);
}

void dv_cfgref_drop(const dv_config_t *cfg)
{
	if (cfg &&
	    __atomic_sub_fetch(&ref_of(cfg)->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(ref_of(cfg));
}

#pragma once
/*
 * A configuration shared by reference between the main thread and the
 * workers, for live reloads (reload.h): the main thread makes one copy of
 * each configuration it applies, every worker holds the one it serves
 * with, and every upstream pool the one it was built from (a pool kept
 * alive after a reload until its queries are answered).  The last drop
 * frees it.  Read-only once made.  hold/drop from any thread.
 */
#include "src/config/config.h"

/* A counted copy of `src`, held once; NULL when memory is short. */
const dv_config_t *dv_cfgref_new(const dv_config_t *src);
void dv_cfgref_hold(const dv_config_t *cfg);
/* NULL is a no-op. */
void dv_cfgref_drop(const dv_config_t *cfg);

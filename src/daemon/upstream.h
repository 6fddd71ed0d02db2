#pragma once
/*
 * The worker's upstream pool (src/upstream/pool.h), made from the worker:
 * its loop, its counters and its index (worker_pool.c).
 */
#include "src/config/config.h"
#include "src/upstream/pool.h"

typedef struct dv_worker dv_worker_t;

/* dv_pool_create() with the environment of worker `w`. */
dv_pool_t *dv_pool_new(dv_worker_t *w, const dv_config_t *cfg,
		       const dv_pool_report_t *report);

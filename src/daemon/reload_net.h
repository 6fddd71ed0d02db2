#pragma once
/*
 * What a reload does with listeners, upstreams and the settings the
 * workers read (reload_net.c, worker_reload.c).  Main thread.
 */
#include "src/daemon/reload.h"

/* The config the workers serve with now (the last one handed over). */
const dv_config_t *dv_reload_current(const dv_reload_t *r);
/* Every listener `next` adds can be bound (DV_ECONFIG and `err`:
 * `FILE: listen: URL: cannot bind: reason` when one cannot: then nothing
 * changed), and the TLS or QUIC context a new kind of listener needs is
 * made. */
int dv_reload_net_check(dv_reload_t *r, const dv_config_t *next, char *err,
			size_t err_len);
/* Hand `next` to every worker. */
void dv_reload_net_apply(dv_reload_t *r, const dv_config_t *next);
/* At exit, after the workers are freed. */
void dv_reload_net_free(dv_reload_t *r);

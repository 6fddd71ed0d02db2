#pragma once
/*
 * A worker's side of a configuration reload (worker_reload.c): what
 * worker.c calls.  Worker thread unless said.
 */
#include "src/daemon/worker.h"

/* Run the worker's async watcher (worker.c).  Any thread. */
void dv_worker_wake(dv_worker_t *w);
/* The main thread handed a config over (w->pending_cfg): apply it.  A
 * draining worker drops it. */
void dv_worker_reload_apply(dv_worker_t *w);
/* Client connections still open on listeners a reload removed. */
unsigned dv_worker_retired_conns(dv_worker_t *w);
/* Close the listeners a reload removed (the worker is ending; its
 * queries were answered). */
void dv_worker_retired_close(dv_worker_t *w);
/* Free what is left: pools a reload replaced, the timer, the config
 * references.  After the listeners are closed and the queries answered;
 * worker thread after its loop, or main thread if it never ran. */
void dv_worker_reload_free(dv_worker_t *w);

#pragma once
/*
 * The worker's runtime for the core's timers (src/core/timer.h): libev
 * watchers on the worker's loop, and the process's clocks.  The context
 * of dv_ev_timer_ops is the loop (struct ev_loop *).
 */
#include <ev.h>

#include "src/core/timer.h"

/* What a dv_timer_t's `impl` points to while the runtime holds it. */
typedef struct {
	ev_timer w;
	dv_timer_t *t;
} dv_ev_timer_t;

extern const dv_timer_ops_t dv_ev_timer_ops;

/* The watcher's callback (for harnesses that fire timers by hand, after
 * ev_timer_stop as libev does for a one-shot timer). */
void dv_ev_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

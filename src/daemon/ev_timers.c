/*
 * The core's timers on a libev loop: one watcher per dv_timer_t, made on
 * its first arm and freed by its cancel (the owner cancels before it frees
 * the timer), so a timer that fires and is armed again reuses it.
 */
#include "src/daemon/ev_timers.h"

#include <errno.h>
#include <stdlib.h>

#include "src/core/clock.h"

void dv_ev_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	dv_ev_timer_t *et = w->data;
	dv_timer_t *t = et->t;
	t->armed = false;
	t->cb(t); /* may cancel (and so free) et */
}

static uint64_t ev_now_ms(void *ctx)
{
	(void)ctx;
	return dv_now_ms();
}

static uint64_t ev_now_us(void *ctx)
{
	(void)ctx;
	return dv_now_us();
}

static uint32_t ev_now_s(void *ctx)
{
	(void)ctx;
	return dv_now_s();
}

static int ev_arm(void *ctx, dv_timer_t *t, uint64_t after_ms)
{
	struct ev_loop *loop = ctx;
	dv_ev_timer_t *et = t->impl;
	if (!et) {
		et = calloc(1, sizeof(*et));
		if (!et)
			return -ENOMEM;
		et->t = t;
		ev_init(&et->w, dv_ev_timer_cb);
		et->w.data = et;
		t->impl = et;
	}
	ev_timer_stop(loop, &et->w);
	ev_timer_set(&et->w, after_ms / 1000.0, 0.);
	ev_timer_start(loop, &et->w);
	t->armed = true;
	return 0;
}

static void ev_cancel(void *ctx, dv_timer_t *t)
{
	struct ev_loop *loop = ctx;
	dv_ev_timer_t *et = t->impl;
	if (et) {
		ev_timer_stop(loop, &et->w);
		free(et);
	}
	t->impl = NULL;
	t->armed = false;
}

const dv_timer_ops_t dv_ev_timer_ops = {
	.now_ms = ev_now_ms,
	.now_us = ev_now_us,
	.now_s = ev_now_s,
	.arm = ev_arm,
	.cancel = ev_cancel,
};

#pragma once
/*
 * Time and timers for code without I/O.  The core never reads a clock or
 * arms an event-loop watcher itself: the runtime that drives it (a worker
 * and its libev loop, or a test's fake clock) gives it a dv_timers_t.
 *
 * A timer is a small object embedded in its owner (a fetch, say): the
 * owner sets the callback with dv_timer_init(), arms it through the
 * runtime and, before the memory goes, cancels it.  `impl` belongs to the
 * runtime: whatever it needs to run the timer (a libev watcher), made on
 * the first arm and released by cancel.  Timers are one-shot; a timer
 * that fired may be armed again.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dv_timer dv_timer_t;
typedef void (*dv_timer_cb)(dv_timer_t *t);

struct dv_timer {
	dv_timer_cb cb; /* the owner's; called once per arm, on expiry */
	void *data;     /* the owner's */
	void *impl;     /* the runtime's; NULL until armed */
	bool armed;     /* armed and not yet fired or cancelled */
};

typedef struct dv_timer_ops {
	/* The monotonic clock in milliseconds. */
	uint64_t (*now_ms)(void *ctx);
	/* Optional: the same clock in microseconds, for the latency
	 * histograms (NULL: now_ms x 1000). */
	uint64_t (*now_us)(void *ctx);
	/* The cache's clock: monotonic seconds (src/core/cache.h). */
	uint32_t (*now_s)(void *ctx);
	/* Arm `t` to fire once, `after_ms` from now (re-arming one that is
	 * armed).  0, or -ENOMEM: the timer is not armed. */
	int (*arm)(void *ctx, dv_timer_t *t, uint64_t after_ms);
	/* Stop `t` if it is armed and release the runtime's part of it:
	 * afterwards the owner may free it.  A no-op on a timer that was
	 * never armed. */
	void (*cancel)(void *ctx, dv_timer_t *t);
} dv_timer_ops_t;

/* A runtime: its operations and their context. */
typedef struct {
	const dv_timer_ops_t *ops;
	void *ctx;
} dv_timers_t;

static inline void dv_timer_init(dv_timer_t *t, dv_timer_cb cb, void *data)
{
	t->cb = cb;
	t->data = data;
	t->impl = NULL;
	t->armed = false;
}

static inline uint64_t dv_timers_now_ms(const dv_timers_t *rt)
{
	return rt->ops->now_ms(rt->ctx);
}

static inline uint64_t dv_timers_now_us(const dv_timers_t *rt)
{
	if (rt->ops->now_us)
		return rt->ops->now_us(rt->ctx);
	return rt->ops->now_ms(rt->ctx) * 1000;
}

static inline uint32_t dv_timers_now_s(const dv_timers_t *rt)
{
	return rt->ops->now_s(rt->ctx);
}

static inline int dv_timer_arm(const dv_timers_t *rt, dv_timer_t *t,
			       uint64_t after_ms)
{
	return rt->ops->arm(rt->ctx, t, after_ms);
}

static inline void dv_timer_cancel(const dv_timers_t *rt, dv_timer_t *t)
{
	if (t->impl || t->armed)
		rt->ops->cancel(rt->ctx, t);
}

/*
 * The lameduck drain (src/daemon/stop.h): the main thread waits out
 * drain.delay-ms, tells the workers to drain, and waits for them, taking
 * signals all the while so that a second SIGTERM stops at once.
 */
#include "src/daemon/stop.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "src/core/clock.h"
#include "src/core/log.h"

/* How often the main thread looks whether the workers are done. */
#define POLL_MS 20

/* Wait for one of s->sigs up to `ms`: the signal, or 0 at the timeout. */
static int wait_signal(const dv_stop_t *s, uint64_t ms)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};
	siginfo_t si;
	int sig = sigtimedwait(s->sigs, &si, &ts);
	return sig < 0 ? 0 : sig;
}

/* A signal while draining: true when it means "stop now". */
static bool take_signal(const dv_stop_t *s, int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		return true;
	if (sig == SIGUSR1 && s->stats)
		s->stats(s->stats_arg);
	else if (sig == SIGHUP)
		dv_log_warn("SIGHUP ignored: dnsveil is draining");
	return false;
}

static void stop_now(const dv_stop_t *s, int sig)
{
	dv_log_warn("%s again: stopping at once", strsignal(sig));
	for (unsigned i = 0; i < s->n_workers; i++)
		dv_worker_stop(s->workers[i]);
}

static bool all_ended(const dv_stop_t *s)
{
	for (unsigned i = 0; i < s->n_workers; i++)
		if (!dv_worker_ended(s->workers[i]))
			return false;
	return true;
}

void dv_stop_drain(const dv_stop_t *s, int sig)
{
	const dv_config_t *cfg = s->cfg;
	uint64_t t0 = dv_now_ms();
	bool stopped = false;
	dv_log_info("%s: draining: /readyz fails, serving for drain.delay-ms "
		    "%u ms more, then finishing within drain.timeout-ms %u "
		    "ms (a second %s stops at once)",
		    strsignal(sig), cfg->drain_delay_ms, cfg->drain_timeout_ms,
		    strsignal(sig));
	uint64_t until = t0 + cfg->drain_delay_ms;
	for (uint64_t now = t0; now < until; now = dv_now_ms()) {
		int got = wait_signal(s, until - now);
		if (got && take_signal(s, got)) {
			stop_now(s, got);
			stopped = true;
			break;
		}
	}
	uint64_t t1 = dv_now_ms();
	if (!stopped) {
		dv_log_info("drain: listeners stop, %u ms after the signal",
			    (unsigned)(t1 - t0));
		for (unsigned i = 0; i < s->n_workers; i++)
			dv_worker_drain(s->workers[i]);
	}
	while (!all_ended(s)) {
		int got = wait_signal(s, POLL_MS);
		if (got && take_signal(s, got) && !stopped) {
			stop_now(s, got);
			stopped = true;
		}
	}
	for (unsigned i = 0; i < s->n_workers; i++)
		dv_worker_join(s->workers[i]);
	uint64_t t2 = dv_now_ms();
	dv_log_info("drain: done %u ms after the listeners stopped (%u ms "
		    "after the signal)",
		    (unsigned)(t2 - t1), (unsigned)(t2 - t0));
}

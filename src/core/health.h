#pragma once
/*
 * Health of one upstream server, as one worker sees it: a latency
 * estimator (EWMA and p95 of the recent answers) and the up / degraded /
 * down state machine, driven by the server's own answers, failures and
 * timeouts.  Pure code: it takes outcomes and times, returns states; the
 * pool (src/upstream/) does the I/O, the probes and the timers.
 *
 *   UP        answers come; the default.
 *   DEGRADED  still used, but ranked after UP servers of its group, and a
 *             local server in this state sends its fetches to the fallback
 *             group at once (as if the hedge had fired):
 *             - degraded_failures or more of its last 16 attempts failed
 *               or timed out, or
 *             - slow_p95_ms is set and the p95 of its last samples (at
 *               least DV_HEALTH_MIN_SAMPLES of them) is above it.
 *             It leaves the state as soon as neither holds.
 *   DOWN      a connection could not be opened (refused, unreachable, TLS
 *             handshake failed), or down_after consecutive attempts failed
 *             or timed out with no answer in between.  No client query goes
 *             to it; only probes do, and the first answer to one (any
 *             rcode: the server is there) brings it back (dv_health_up).
 *
 * Each worker has its own pool and so its own view of every server; the
 * views agree because each is driven by the same server's behaviour, but a
 * worker that sent nothing recently may see a change later than another.
 */
#include <stdbool.h>
#include <stdint.h>

/* X(enum, "name") */
#define DV_HEALTH_STATES(X)                                                  \
	X(DV_HEALTH_UP, "up")                                                \
	X(DV_HEALTH_DEGRADED, "degraded")                                    \
	X(DV_HEALTH_DOWN, "down")

typedef enum {
#define DV_HEALTH_ENUM(e, s) e,
	DV_HEALTH_STATES(DV_HEALTH_ENUM)
#undef DV_HEALTH_ENUM
	DV_HEALTH_STATE_COUNT
} dv_health_state_t;

const char *dv_health_state_name(dv_health_state_t s);

#define DV_HEALTH_SAMPLES 64    /* latency samples the p95 is taken over */
#define DV_HEALTH_MIN_SAMPLES 8 /* fewer: the p95 never makes it slow */
#define DV_HEALTH_WINDOW 16     /* attempts degraded_failures counts over */

typedef struct {
	unsigned down_after;        /* consecutive failures -> DOWN; 0 = never */
	unsigned degraded_failures; /* of the last 16 -> DEGRADED; 0 = never */
	unsigned slow_p95_ms;       /* p95 above -> DEGRADED; 0 = never */
} dv_health_conf_t;

typedef struct {
	dv_health_state_t state;
	bool slow;             /* the p95 is above slow_p95_ms */
	unsigned consecutive;  /* failed attempts since the last answer */
	uint16_t window;       /* last 16 attempts, bit set = failed */
	/* latency */
	uint32_t ring[DV_HEALTH_SAMPLES]; /* ms, oldest overwritten */
	unsigned n, head;                 /* samples held, next slot */
	uint64_t ewma_us;                 /* 0 until the first sample */
	uint32_t p95_ms;
} dv_health_t;

/* A fresh server: UP, no samples. */
void dv_health_init(dv_health_t *h);

/*
 * An answer came `latency_ms` after its query went out.  Updates the
 * EWMA (weight 1/8) and the p95, clears the consecutive failures and
 * returns the new state (a DOWN server stays DOWN: only dv_health_up()
 * brings it back).
 */
dv_health_state_t dv_health_answer(dv_health_t *h, uint32_t latency_ms,
				   const dv_health_conf_t *conf);

/* An attempt failed (lost connection) or timed out.  Returns the new
 * state. */
dv_health_state_t dv_health_failure(dv_health_t *h,
				    const dv_health_conf_t *conf);

/* A connection could not be opened: DOWN at once. */
dv_health_state_t dv_health_down(dv_health_t *h);

/* A probe was answered: the failure history is cleared and the state is
 * UP, or DEGRADED if its latency still says slow.  The samples stay. */
dv_health_state_t dv_health_up(dv_health_t *h, const dv_health_conf_t *conf);

/*
 * The p95 of `n` samples: the value at rank ceil(0.95 n) in ascending
 * order (for n = 64 the 4th largest, for n < 20 the largest).  0 when
 * n is 0.  `v` is not modified.  n <= 160.
 */
uint32_t dv_health_p95(const uint32_t *v, unsigned n);

/*
 * Choose a server among `n` (n <= 32) whose health is `h[i]`: servers in
 * `skip` (bit i) and DOWN ones are out.  The best is UP before DEGRADED,
 * then the lowest EWMA (a server without samples counts as 0, so it gets
 * measured), then the lowest index.  With `explore` and at least two
 * candidates, the candidate number `rot` modulo (candidates - 1) among
 * those that are not the best is returned instead, so a server that is
 * not chosen on merit is still measured now and then.  Returns the index,
 * or -1 when no server is left.
 */
int dv_health_pick(const dv_health_t *const *h, unsigned n, uint32_t skip,
		   bool explore, unsigned rot);

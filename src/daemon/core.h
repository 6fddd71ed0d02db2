#pragma once
/*
 * The query core: validation, cache, coalescing, and the hand-off to the
 * upstream pool.  Runs on the worker thread that received the query; shares
 * nothing with other workers but the cache.
 */
#include "src/core/clock.h"
#include "src/core/query.h"
#include "src/core/timer.h"
#include "src/core/wire.h"

typedef struct dv_worker dv_worker_t;
typedef struct dv_fetch dv_fetch_t;

/* room for a normalized question: header, name, type and class, OPT */
#define DV_FETCH_QWIRE_MAX (DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11)

/*
 * One upstream question of the core (after coalescing): the queries
 * waiting for it, and the question the pool is asked.
 */
struct dv_fetch {
	dv_worker_t *worker;
	dv_fetch_t *hnext; /* coalescing table chain */
	uint64_t hash;
	dv_query_t *waiters, *waiters_tail;
	unsigned n_waiters;
	uint8_t key[DV_WIRE_KEY_MAX];
	uint16_t key_len;
	/* the normalized upstream query */
	uint8_t qwire[DV_FETCH_QWIRE_MAX];
	uint16_t qlen;
	/* the pool's state of this fetch (set by its fetch_start, cleared by
	 * its fetch_cancel) */
	void *pool_job;
	/* the RFC 8767 client response timer (core.c), and whether it has
	 * fired (later waiters get the stale answer at once) */
	dv_timer_t stale;
	bool stale_fired;
};

/*
 * The upstream pool as the core sees it: a table the worker gives it with
 * the pool (struct dv_worker's pool_ops and pool), so that the core calls
 * no pool function by name and a test can put a fake pool in its place.
 */
typedef struct dv_core_pool_ops {
	/* Start resolving `f` (qwire and key filled).  The pool answers
	 * through dv_core_fetch_answer() or dv_core_fetch_fail(), possibly
	 * before this returns. */
	void (*fetch_start)(void *pool, dv_fetch_t *f);
	/* Stop every timer and attempt of `f`: the fetch is being freed. */
	void (*fetch_cancel)(void *pool, dv_fetch_t *f);
} dv_core_pool_ops_t;

/*
 * Hand a query to the core (which takes ownership).  Returns:
 *  0            the query has been or will be answered through q->reply;
 *  DV_ESHORT,
 *  DV_ENOTQUERY the message was dropped without an answer (counted) and
 *               `q` is already freed.  Only these two drop.
 */
int dv_core_submit(dv_query_t *q);

/* Upstream results for a fetch (called by the pool through the report
 * the worker gave it, exactly once each fetch): the first good answer, or
 * the failure with the EDE to report.  The fetch is freed before these
 * return. */
void dv_core_fetch_answer(dv_fetch_t *f, const uint8_t *wire, size_t len,
			  const dv_wire_resp_t *r);
void dv_core_fetch_fail(dv_fetch_t *f, uint16_t ede, const char *text);

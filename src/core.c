/*
 * The query lifecycle: validate, answer from the cache, coalesce identical
 * questions, hand the rest to the upstream pool, and deliver exactly one
 * answer per accepted query.
 */
#include "src/core.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "src/cache.h"
#include "src/errors.h"
#include "src/log.h"
#include "src/upstream.h"
#include "src/worker.h"

#define QUERY_POOL_MAX 4096 /* free objects kept per worker */

uint64_t dv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint32_t dv_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

/* ---- query objects ---- */

dv_query_t *dv_query_new(dv_worker_t *w, const uint8_t *wire, size_t len)
{
	if (len > DV_DNS_MAX_MSG)
		return NULL;
	dv_query_t *q = NULL;
#ifndef DV_NOPOOL
	if (w->free_queries) {
		q = w->free_queries;
		w->free_queries = q->next;
		w->n_free_queries--;
	}
#endif
	if (!q) {
		q = malloc(sizeof(*q));
		if (!q)
			return NULL;
	}
	memset(q, 0, offsetof(dv_query_t, inline_buf));
	q->worker = w;
	if (len <= DV_QUERY_INLINE) {
		q->wire = q->inline_buf;
	} else {
		q->wire = malloc(len);
		if (!q->wire) {
			free(q);
			return NULL;
		}
	}
	memcpy(q->wire, wire, len);
	q->len = (uint16_t)len;
	w->inflight++;
	return q;
}

void dv_query_free(dv_query_t *q)
{
	if (!q)
		return;
	dv_worker_t *w = q->worker;
	if (q->wire != q->inline_buf)
		free(q->wire);
	w->inflight--;
#ifndef DV_NOPOOL
	if (w->n_free_queries < QUERY_POOL_MAX) {
		q->next = w->free_queries;
		w->free_queries = q;
		w->n_free_queries++;
		return;
	}
#endif
	free(q);
}

/* ---- answering ---- */

static void finish(dv_query_t *q, const uint8_t *wire, size_t len)
{
	dv_worker_t *w = q->worker;
	DV_STAT_INC(&w->stats, answers);
	if (q->udp && len >= 4 && (wire[2] & 0x02))
		DV_STAT_INC(&w->stats, truncated);
	q->reply(q, wire, len);
	dv_query_free(q);
}

static unsigned pad_for(const dv_query_t *q)
{
	return q->view.edns_padding ? q->pad_block : 0;
}

static void reply_error(dv_query_t *q, uint8_t rcode, uint16_t ede,
			const char *text)
{
	dv_worker_t *w = q->worker;
	int len = dv_wire_error(w->scratch, sizeof(w->scratch), q->wire,
				&q->view, rcode, ede, text, pad_for(q));
	dv_require(len > 0); /* the scratch buffer fits any error answer */
	switch (rcode) {
	case DV_RCODE_FORMERR:
		DV_STAT_INC(&w->stats, formerr);
		break;
	case DV_RCODE_NOTIMP:
		DV_STAT_INC(&w->stats, notimp);
		break;
	case DV_RCODE_SERVFAIL:
		DV_STAT_INC(&w->stats, servfail);
		break;
	case DV_RCODE_REFUSED:
		DV_STAT_INC(&w->stats, refused);
		break;
	default:
		DV_STAT_INC(&w->stats, badvers);
		break;
	}
	finish(q, w->scratch, (size_t)len);
}

/* ---- coalescing table ---- */

/* Seeded per process so a client cannot aim many questions at one chain
 * of the coalescing table. */
static uint64_t hash_seed;

__attribute__((constructor)) static void hash_seed_init(void)
{
	if (getrandom(&hash_seed, sizeof(hash_seed), 0) != sizeof(hash_seed))
		hash_seed = dv_now_ms();
}

static uint64_t key_hash(const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ hash_seed;
	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static dv_fetch_t **fetch_slot(dv_worker_t *w, uint64_t hash,
			       const uint8_t *key, size_t key_len)
{
	dv_fetch_t **pp = &w->fetches[hash & w->fetch_mask];
	while (*pp) {
		dv_fetch_t *f = *pp;
		if (f->hash == hash && f->key_len == key_len &&
		    memcmp(f->key, key, key_len) == 0)
			break;
		pp = &f->hnext;
	}
	return pp;
}

static void fetch_unlink(dv_fetch_t *f)
{
	dv_worker_t *w = f->worker;
	dv_fetch_t **pp = fetch_slot(w, f->hash, f->key, f->key_len);
	dv_require(*pp == f);
	*pp = f->hnext;
	w->n_fetches--;
}

static void fetch_free(dv_fetch_t *f)
{
	dv_pool_fetch_cancel(f->worker->pool, f);
	free(f);
}

void dv_core_fetch_answer(dv_fetch_t *f, const uint8_t *wire, size_t len,
			  const dv_wire_resp_t *r)
{
	dv_worker_t *w = f->worker;
	fetch_unlink(f);
	if (w->cache)
		(void)dv_cache_store(w->cache, f->key, f->key_len, wire, len,
				     r, dv_now_s());
	dv_query_t *q = f->waiters;
	while (q) {
		dv_query_t *next = q->next;
		int n = dv_wire_answer(w->scratch, sizeof(w->scratch), wire,
				       len, r, q->wire, &q->view, 0,
				       q->answer_limit, 0xffff, NULL,
				       pad_for(q));
		if (n > 0)
			finish(q, w->scratch, (size_t)n);
		else
			reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
				    "unusable upstream answer");
		q = next;
	}
	fetch_free(f);
}

void dv_core_fetch_fail(dv_fetch_t *f, uint16_t ede, const char *text)
{
	fetch_unlink(f);
	dv_query_t *q = f->waiters;
	while (q) {
		dv_query_t *next = q->next;
		reply_error(q, DV_RCODE_SERVFAIL, ede, text);
		q = next;
	}
	fetch_free(f);
}

/* ---- submit ---- */

int dv_core_submit(dv_query_t *q)
{
	dv_worker_t *w = q->worker;
	int ret = dv_wire_parse_query(q->wire, q->len, &q->view);
	switch (ret) {
	case 0:
		break;
	case DV_ESHORT:
		DV_STAT_INC(&w->stats, dropped_short);
		dv_query_free(q);
		return ret;
	case DV_ENOTQUERY:
		DV_STAT_INC(&w->stats, dropped_response);
		dv_query_free(q);
		return ret;
	default: /* DV_EQDCOUNT, DV_EMALFORMED: the header is readable */
		DV_STAT_INC(&w->stats, queries);
		reply_error(q, DV_RCODE_FORMERR, 0xffff, NULL);
		return 0;
	}
	DV_STAT_INC(&w->stats, queries);
	const dv_config_t *cfg = w->cfg;
	q->start_ms = dv_worker_now_ms(w);
	q->deadline_ms = q->start_ms + cfg->query_timeout_ms;
	q->answer_limit = q->udp ? dv_wire_udp_limit(&q->view) : DV_DNS_MAX_MSG;

	if (DV_OPCODE(q->view.flags) != 0) {
		reply_error(q, DV_RCODE_NOTIMP, 0xffff, NULL);
		return 0;
	}
	if (q->view.has_opt && q->view.edns_version != 0) {
		reply_error(q, DV_RCODE_BADVERS, 0xffff, NULL);
		return 0;
	}

	uint8_t key[DV_WIRE_KEY_MAX];
	size_t key_len = dv_wire_key(key, q->wire, &q->view);
	if (w->cache) {
		int n = dv_cache_lookup(w->cache, key, key_len, dv_now_s(),
					w->scratch, sizeof(w->scratch),
					q->wire, &q->view, q->answer_limit,
					pad_for(q));
		if (n > 0) {
			DV_STAT_INC(&w->stats, cache_hits);
			finish(q, w->scratch, (size_t)n);
			return 0;
		}
		DV_STAT_INC(&w->stats, cache_misses);
	}
	if (w->inflight > cfg->max_inflight) {
		DV_STAT_INC(&w->stats, overload);
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER,
			    "dnsveil overloaded");
		return 0;
	}

	uint64_t hash = key_hash(key, key_len);
	dv_fetch_t **pp = fetch_slot(w, hash, key, key_len);
	if (*pp) {
		dv_fetch_t *f = *pp;
		DV_STAT_INC(&w->stats, coalesced);
		q->next = NULL;
		f->waiters_tail->next = q;
		f->waiters_tail = q;
		f->n_waiters++;
		return 0;
	}
	dv_fetch_t *f = calloc(1, sizeof(*f));
	if (!f) {
		reply_error(q, DV_RCODE_SERVFAIL, DV_EDE_OTHER, "out of memory");
		return 0;
	}
	f->worker = w;
	f->hash = hash;
	memcpy(f->key, key, key_len);
	f->key_len = (uint16_t)key_len;
	ret = dv_wire_upstream_query(f->qwire, sizeof(f->qwire), 0, q->wire,
				     &q->view);
	dv_require(ret > 0);
	f->qlen = (uint16_t)ret;
	f->ede = 0xffff;
	q->next = NULL;
	f->waiters = f->waiters_tail = q;
	f->n_waiters = 1;
	*pp = f;
	w->n_fetches++;
	dv_pool_fetch_start(w->pool, f);
	return 0;
}

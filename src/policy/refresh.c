/*
 * Lists at start and their refresh, off the query path (README "Policy").
 *
 * Design note.  Every list's rules sit in one suffix set, held by an
 * immutable snapshot (snap_t) that the state in use's snap points to
 * (p->cur->snap; a reload swaps the whole state: policy_reload.c).  A
 * refresher thread
 * wakes when a list is due: a file is stat()ed (a new size or modification
 * time means a new copy), a URL is fetched with If-None-Match and
 * If-Modified-Since (a 304 costs no parse and no swap).  When a list has a
 * new copy, the thread parses every list again into a new set (the others
 * from their files or their copies on disk), swaps the pointer and frees
 * the old snapshot once no worker can hold it.
 *
 * Reclamation is quiescent-state based, per loop turn, not per query: a
 * worker loads p->cur and its snap when its event loop wakes
 * (dv_policy_worker_enter, its turn counter made odd) and drops them
 * before the loop sleeps
 * (dv_policy_worker_leave, even again).  After the swap the refresher
 * waits until each worker is between turns or has begun another one; then
 * no worker holds the old snapshot.  The turn counter's store and the
 * snapshot's load are sequentially consistent on both sides, so a worker
 * the refresher sees between turns loads the new pointer in its next one.
 * Queries never wait: a decision reads the worker's snapshot, allocation
 * free, as before.
 *
 * A URL list's last good copy is kept in policy.cache-dir as NAME.list,
 * with NAME.meta (the URL, ETag and Last-Modified).  At start the URL is
 * fetched (conditionally, when the copy exists); if that fails the copy
 * is used, and with no copy the list starts empty with a warning: a dead
 * list server must not keep DNS down.  A failed, timed-out or oversized
 * fetch keeps the copy in use, and is counted and logged.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/policy/fetch.h"
#include "src/policy/policy_int.h"

#define MAX_WORKERS 256

bool dv_policy_no_fetch;

struct policy_rt {
	pthread_mutex_t lock;
	/* held by the refresher while it checks and swaps lists, and by a
	 * reload from its build to its swap: one builder at a time */
	pthread_mutex_t work;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC: stop */
	pthread_t thread;
	bool running, stop, curl;
	bool now; /* dv_policy_refresh_now: every list due at once */
	dv_policy_worker_t *workers[MAX_WORKERS];
	/* snapshots not freed because the refresher stopped while a worker
	 * might have held them: freed with the policy */
	snap_t *retired[4];
	unsigned n_retired;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void dv_policy_snap_free(snap_t *s)
{
	if (!s)
		return;
	dv_suffix_free(s->set);
	for (unsigned i = 0; i < DV_POLICY_MAX_LISTS; i++)
		dv_rpz_free(s->rpz[i]);
	free(s);
}

/* ---- the copies on disk ---- */

static void cache_path(const pstate_t *p, const list_t *l, const char *ext,
		       char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s.%s", p->cache_dir, l->name, ext);
}

/* The file a list's rules are read from: its own, or its URL's copy. */
static void list_path(const pstate_t *p, const list_t *l, char *out, size_t cap)
{
	if (l->url)
		cache_path(p, l, "list", out, cap);
	else
		snprintf(out, cap, "%s", l->source);
}

static int mkdir_p(const char *dir)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *s = buf + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(buf, 0750) != 0 && errno != EEXIST)
				return -errno;
			*s = c;
			if (!c)
				return 0;
		}
	}
}

/* NAME.meta: "url URL", "etag ETAG", "last-modified DATE" lines. */
static void meta_read(const pstate_t *p, list_t *l)
{
	char path[512], line[600], copy[512];
	l->etag[0] = l->last_modified[0] = '\0';
	cache_path(p, l, "list", copy, sizeof(copy));
	cache_path(p, l, "meta", path, sizeof(path));
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	bool same_url = false;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, "url ", 4) == 0)
			same_url = strcmp(line + 4, l->source) == 0;
		else if (strncmp(line, "etag ", 5) == 0)
			snprintf(l->etag, sizeof(l->etag), "%.255s", line + 5);
		else if (strncmp(line, "last-modified ", 14) == 0)
			snprintf(l->last_modified, sizeof(l->last_modified),
				 "%.63s", line + 14);
	}
	fclose(f);
	/* the copy of another URL (the source was changed) is not this
	 * list's: dropped.  Validators of no copy would ask for a 304 that
	 * leaves the list without its rules. */
	if (!same_url) {
		dv_log_info("policy: list %s: dropping %s, a copy of another "
			    "URL",
			    l->name, copy);
		unlink(copy);
		unlink(path);
	}
	if (!same_url || access(copy, R_OK) != 0)
		l->etag[0] = l->last_modified[0] = '\0';
}

static int meta_write(const pstate_t *p, const list_t *l)
{
	char path[512], tmp[520];
	cache_path(p, l, "meta", path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "url %s\netag %s\nlast-modified %s\n", l->source, l->etag,
		l->last_modified);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int ret = -errno;
		unlink(tmp);
		return ret;
	}
	return 0;
}

/* ---- building a snapshot ---- */

typedef struct {
	dv_suffix_set_t *set;
	unsigned list;
} add_ctx_t;

static int add_rule(void *ctx, const char *name, size_t len, bool except)
{
	add_ctx_t *a = ctx;
	return dv_suffix_add(a->set, name, len, a->list, except);
}

/*
 * Parse every list into a new snapshot, their counts into st[].  A URL
 * list without a copy is empty.  0, or a negative error (-ENOMEM, a file
 * list's -errno) with the list's index in *bad.
 */
static int snap_build(const dv_policy_t *pol, const pstate_t *p, snap_t **out,
		      dv_list_stats_t st[DV_POLICY_MAX_LISTS], unsigned *bad)
{
	snap_t *s = calloc(1, sizeof(*s));
	if (!s || !(s->set = dv_suffix_new(pol->seed))) {
		free(s);
		return -ENOMEM;
	}
	int ret = 0;
	for (unsigned i = 0; i < p->n_lists; i++) {
		const list_t *l = &p->lists[i];
		char path[512];
		list_path(p, l, path, sizeof(path));
		memset(&st[i], 0, sizeof(st[i]));
		add_ctx_t a = { .set = s->set, .list = i };
		if (l->format == DV_LIST_RPZ)
			ret = (s->rpz[i] = dv_rpz_new(pol->seed))
				      ? dv_rpz_parse_file(s->rpz[i], path,
							  &st[i])
				      : -ENOMEM;
		else
			ret = dv_list_parse_file(l->format, path, add_rule, &a,
						 &st[i]);
		if (ret == -ENOENT && l->url)
			ret = 0;
		if (ret < 0) {
			*bad = i;
			dv_policy_snap_free(s);
			return ret;
		}
	}
	dv_suffix_seal(s->set);
	*out = s;
	return 0;
}

/* ---- fetching and checking ---- */

enum { R_SAME, R_NEW };

/* A URL list: fetch into NAME.tmp, a 200 becomes NAME.list.  R_NEW,
 * R_SAME (304) or a negative error, logged. */
static int refresh_url(const dv_policy_t *pol, const pstate_t *p, list_t *l)
{
	char tmp[512], copy[512], why[256];
	cache_path(p, l, "tmp", tmp, sizeof(tmp));
	cache_path(p, l, "list", copy, sizeof(copy));
	dv_fetch_validators_t v;
	snprintf(v.etag, sizeof(v.etag), "%s", l->etag);
	snprintf(v.last_modified, sizeof(v.last_modified), "%s",
		 l->last_modified);
	int ret = dv_fetch(l->source, tmp, p->ca, l->max_bytes, l->timeout_ms,
			   &pol->rt->stop, &v, why, sizeof(why));
	if (ret == DV_FETCH_SAME) {
		unlink(tmp);
		return R_SAME;
	}
	if (ret == DV_FETCH_NEW && rename(tmp, copy) != 0) {
		ret = -errno;
		snprintf(why, sizeof(why), "%.180s: %s", copy, strerror(errno));
	}
	if (ret < 0) {
		unlink(tmp);
		dv_log_warn("policy: list %s: fetching %s failed (%s); the "
			    "last "
			    "good copy stays",
			    l->name, l->source, why);
		return ret;
	}
	memcpy(l->etag, v.etag, sizeof(l->etag));
	memcpy(l->last_modified, v.last_modified, sizeof(l->last_modified));
	int mret = meta_write(p, l);
	if (mret < 0)
		dv_log_warn("policy: list %s: cannot write its validators in "
			    "%s: %s",
			    l->name, p->cache_dir, dv_strerror(mret));
	return R_NEW;
}

/* A file list: R_NEW when its size or modification time changed. */
static int refresh_file(list_t *l)
{
	struct stat sb;
	if (stat(l->source, &sb) != 0) {
		int ret = -errno;
		dv_log_warn("policy: list %s: %s: %s; the copy in use stays",
			    l->name, l->source, dv_strerror(ret));
		return ret;
	}
	int64_t mt =
		(int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	if ((int64_t)sb.st_size == l->size && mt == l->mtime_ns)
		return R_SAME;
	l->size = (int64_t)sb.st_size;
	l->mtime_ns = mt;
	return R_NEW;
}

static void log_list(const list_t *l, const dv_list_stats_t *st)
{
	dv_log_info("policy: list %s (%s): %" PRIu64 " rules (%" PRIu64
		    " exceptions), %" PRIu64 " bad lines, %" PRIu64
		    " skipped, of %" PRIu64 " lines",
		    l->name, l->source, st->rules, st->exceptions, st->bad,
		    st->skipped, st->lines);
}

/* ---- the workers ---- */

int dv_policy_rt_register(const dv_policy_t *p, dv_policy_worker_t *w)
{
	policy_rt_t *rt = p->rt;
	int ret = -ENOSPC;
	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < MAX_WORKERS; i++)
		if (!rt->workers[i]) {
			rt->workers[i] = w;
			ret = 0;
			break;
		}
	pthread_mutex_unlock(&rt->lock);
	return ret;
}

void dv_policy_rt_unregister(const dv_policy_t *p, dv_policy_worker_t *w)
{
	policy_rt_t *rt = p->rt;
	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < MAX_WORKERS; i++)
		if (rt->workers[i] == w)
			rt->workers[i] = NULL;
	pthread_mutex_unlock(&rt->lock);
}

/*
 * A worker's first turn with a state it has not read before: its rate
 * limiter made when the state is the first with limits, and its buckets
 * started again when the limits changed (a bucket's key holds the
 * group's index, which a reload may give to another group).  Once per
 * reload and worker, at a turn's start, never within a query.
 */
static void new_state(dv_policy_worker_t *w, const pstate_t *st)
{
	w->gen = st->gen;
	if (st->rate_epoch == w->rate_epoch && (w->rl || !st->rate_limits))
		return;
	w->rate_epoch = st->rate_epoch;
	dv_ratelimit_free(w->rl);
	w->rl = NULL;
	if (st->rate_limits && !(w->rl = dv_ratelimit_new(RATE_TABLE_ENTRIES)))
		dv_log_error("policy: out of memory for the rate limiter: "
			     "rate-limit-qps is not applied by this worker");
}

void dv_policy_worker_enter(dv_policy_worker_t *w)
{
	if (w->turn & 1)
		return;
	__atomic_store_n(&w->turn, w->turn + 1, __ATOMIC_SEQ_CST);
	const pstate_t *st = __atomic_load_n(&w->p->cur, __ATOMIC_SEQ_CST);
	if (st->gen != w->gen)
		new_state(w, st);
	w->st = st;
	w->snap = __atomic_load_n(&st->snap, __ATOMIC_SEQ_CST);
}

void dv_policy_worker_leave(dv_policy_worker_t *w)
{
	if (!(w->turn & 1))
		return;
	w->st = NULL;
	w->snap = NULL;
	__atomic_store_n(&w->turn, w->turn + 1, __ATOMIC_RELEASE);
}

bool dv_policy_synchronize(dv_policy_t *p)
{
	policy_rt_t *rt = p->rt;
	uint64_t seen[MAX_WORKERS];
	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < MAX_WORKERS; i++)
		seen[i] = rt->workers[i]
				  ? __atomic_load_n(&rt->workers[i]->turn,
						    __ATOMIC_SEQ_CST)
				  : 0;
	pthread_mutex_unlock(&rt->lock);
	bool ok = true;
	for (unsigned i = 0; i < MAX_WORKERS && ok; i++) {
		if (!(seen[i] & 1))
			continue;
		for (;;) {
			pthread_mutex_lock(&rt->lock);
			dv_policy_worker_t *w = rt->workers[i];
			bool done = !w || __atomic_load_n(&w->turn,
							  __ATOMIC_SEQ_CST) !=
						  seen[i];
			bool stop = rt->stop;
			pthread_mutex_unlock(&rt->lock);
			if (done)
				break;
			if (stop) {
				ok = false;
				break;
			}
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	return ok;
}

void dv_policy_zero_slots(dv_policy_t *p, const bool *groups, const bool *lists)
{
	policy_rt_t *rt = p->rt;
	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < MAX_WORKERS; i++) {
		dv_policy_worker_t *w = rt->workers[i];
		for (unsigned k = 0; w && k < GROUP_SLOTS; k++)
			for (unsigned c = 0; groups[k] && c < GC_N; c++)
				__atomic_store_n(&w->group_ctr[k][c], 0,
						 __ATOMIC_RELAXED);
		for (unsigned k = 0; w && k < LIST_SLOTS; k++)
			for (unsigned c = 0; lists[k] && c < LC_N; c++)
				__atomic_store_n(&w->list_ctr[k][c], 0,
						 __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&rt->lock);
}

void dv_policy_work_lock(dv_policy_t *p)
{
	pthread_mutex_lock(&p->rt->work);
}

void dv_policy_work_unlock(dv_policy_t *p)
{
	pthread_mutex_unlock(&p->rt->work);
}

void dv_policy_state_lock(const dv_policy_t *p)
{
	pthread_mutex_lock(&p->rt->lock);
}

void dv_policy_state_unlock(const dv_policy_t *p)
{
	pthread_mutex_unlock(&p->rt->lock);
}

/* ---- the refresher ---- */

/* The lists due at `now` (every one with `all`): fetched or checked, and
 * when one has a new copy, a new snapshot built and swapped in. */
static void refresh_due(dv_policy_t *pol, pstate_t *p, uint64_t now, bool all)
{
	policy_rt_t *rt = pol->rt;
	int res[DV_POLICY_MAX_LISTS];
	bool any_new = false;
	for (unsigned i = 0; i < p->n_lists; i++) {
		list_t *l = &p->lists[i];
		res[i] = -1;
		if (!all && (!l->refresh_s || l->due_ms > now))
			continue;
		if (l->refresh_s)
			l->due_ms = now + (uint64_t)l->refresh_s * 1000;
		res[i] = l->url ? refresh_url(pol, p, l) : refresh_file(l);
		pthread_mutex_lock(&rt->lock);
		if (res[i] < 0)
			l->failures++;
		if (res[i] == R_SAME) {
			l->unchanged++;
			l->last_ok_s = (uint64_t)time(NULL);
		}
		pthread_mutex_unlock(&rt->lock);
		any_new |= res[i] == R_NEW;
	}
	if (!any_new)
		return;
	uint64_t t0 = mono_ms();
	dv_list_stats_t st[DV_POLICY_MAX_LISTS];
	unsigned bad = 0;
	snap_t *s = NULL;
	int ret = snap_build(pol, p, &s, st, &bad);
	if (ret < 0) {
		dv_log_warn("policy: list %s: cannot read a new copy: %s; the "
			    "copy in use stays",
			    p->lists[bad].name, dv_strerror(ret));
		pthread_mutex_lock(&rt->lock);
		for (unsigned i = 0; i < p->n_lists; i++)
			if (res[i] == R_NEW)
				p->lists[i].failures++;
		pthread_mutex_unlock(&rt->lock);
		return;
	}
	snap_t *old = __atomic_exchange_n(&p->snap, s, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < p->n_lists; i++) {
		p->lists[i].st = st[i];
		if (res[i] == R_NEW) {
			p->lists[i].loads++;
			p->lists[i].last_ok_s = (uint64_t)time(NULL);
			log_list(&p->lists[i], &st[i]);
		}
	}
	pthread_mutex_unlock(&rt->lock);
	dv_log_info("policy: %zu names in %zu KiB, built in %" PRIu64 " ms and "
								      "swapped "
								      "in",
		    dv_suffix_count(s->set), dv_suffix_bytes(s->set) / 1024,
		    mono_ms() - t0);
	if (dv_policy_synchronize(pol)) {
		dv_policy_snap_free(old);
		/* give the old set's pages back: glibc keeps freed heap
		 * memory of this thread's arena otherwise, and a 1,000,000-
		 * name list left RSS at 144 MiB instead of 57 after a few
		 * refreshes */
		malloc_trim(0);
		return;
	}
	pthread_mutex_lock(&rt->lock);
	if (rt->n_retired < sizeof(rt->retired) / sizeof(*rt->retired))
		rt->retired[rt->n_retired++] = old;
	pthread_mutex_unlock(&rt->lock);
}

static void *refresher(void *arg)
{
	dv_policy_t *p = arg;
	policy_rt_t *rt = p->rt;
	/* the workers come first: on a machine with as many workers as
	 * cores, a parse at the same weight takes a worker's time slices
	 * (p99 of cache hits from 0.25 to 7.6 ms while a 100,000-name list
	 * was rebuilt again and again, on 2 cores).  SCHED_IDLE: a waking
	 * worker always preempts the refresher (nice 19 alone left it to
	 * the wake-up granularity) */
	struct sched_param sp = { .sched_priority = 0 };
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0 &&
	    setpriority(PRIO_PROCESS, (id_t)gettid(), 19) != 0)
		dv_log_debug("policy: the list refresher keeps its priority: "
			     "%s",
			     strerror(errno));
	pthread_mutex_lock(&rt->lock);
	while (!rt->stop) {
		/* the state in use: a reload swaps it under this lock */
		const pstate_t *cur = p->cur;
		uint64_t now = mono_ms(), next = UINT64_MAX;
		for (unsigned i = 0; i < cur->n_lists; i++)
			if (cur->lists[i].refresh_s &&
			    cur->lists[i].due_ms < next)
				next = cur->lists[i].due_ms;
		bool all = rt->now;
		rt->now = false;
		if (next > now && !all) {
			if (next == UINT64_MAX)
				next = now + 3600 * 1000;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t ns =
				(uint64_t)ts.tv_nsec + (next - now) * 1000000;
			ts.tv_sec += (time_t)(ns / 1000000000);
			ts.tv_nsec = (long)(ns % 1000000000);
			pthread_cond_timedwait(&rt->cond, &rt->lock, &ts);
			continue;
		}
		pthread_mutex_unlock(&rt->lock);
		/* a reload swaps p->cur only under the work lock */
		pthread_mutex_lock(&rt->work);
		refresh_due(p, p->cur, now, all);
		pthread_mutex_unlock(&rt->work);
		pthread_mutex_lock(&rt->lock);
	}
	pthread_mutex_unlock(&rt->lock);
	return NULL;
}

int dv_policy_start_refresh(dv_policy_t *p)
{
	/* with lists, even none with a refresh-s: dv_policy_refresh_now */
	if (p->cur->n_lists == 0 || p->rt->running)
		return 0;
	int ret = pthread_create(&p->rt->thread, NULL, refresher, p);
	if (ret)
		return -ret;
	p->rt->running = true;
	return 0;
}

void dv_policy_refresh_now(dv_policy_t *p)
{
	policy_rt_t *rt = p->rt;
	pthread_mutex_lock(&rt->lock);
	rt->now = true;
	pthread_cond_signal(&rt->cond);
	pthread_mutex_unlock(&rt->lock);
}

/* ---- start and end ---- */

int dv_policy_rt_new(dv_policy_t *p)
{
	policy_rt_t *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rt->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&rt->lock, NULL);
	pthread_mutex_init(&rt->work, NULL);
	p->rt = rt;
	return 0;
}

/* The list `prev` has with the name, source and format of `cl`. */
static const list_t *same_list(const pstate_t *prev, const dv_cfg_list_t *cl)
{
	for (unsigned i = 0; prev && i < prev->n_lists; i++) {
		const list_t *l = &prev->lists[i];
		if (strcmp(l->name, cl->name) == 0 &&
		    strcmp(l->source, cl->source) == 0 &&
		    l->format == cl->format)
			return l;
	}
	return NULL;
}

/* Whether `prev`'s snapshot holds exactly the lists of `cfg`. */
static bool same_lists(const pstate_t *prev, const pstate_t *st,
		       const dv_config_t *cfg)
{
	if (!prev || !prev->snap || prev->n_lists != cfg->n_lists ||
	    strcmp(prev->cache_dir, st->cache_dir) != 0)
		return false;
	for (unsigned i = 0; i < cfg->n_lists; i++)
		if (same_list(prev, &cfg->lists[i]) != &prev->lists[i])
			return false;
	return true;
}

int dv_policy_lists_load(dv_policy_t *pol, pstate_t *p, pstate_t *prev,
			 const dv_config_t *cfg, char *err, size_t err_len)
{
	policy_rt_t *rt = pol->rt;
	snprintf(p->cache_dir, sizeof(p->cache_dir), "%s",
		 cfg->policy_cache_dir);
	snprintf(p->ca, sizeof(p->ca), "%s", cfg->policy_ca);
	uint64_t now = mono_ms();
	bool dir_made = false;
	for (unsigned i = 0; i < cfg->n_lists; i++) {
		const dv_cfg_list_t *cl = &cfg->lists[i];
		list_t *l = &p->lists[p->n_lists++];
		const list_t *old = same_list(prev, cl);
		if (old) {
			/* the same copy: its state and counters go on; the
			 * refresher does not run while a reload builds */
			pthread_mutex_lock(&rt->lock);
			*l = *old;
			pthread_mutex_unlock(&rt->lock);
			if (l->refresh_s != cl->refresh_s)
				l->due_ms =
					now + (uint64_t)cl->refresh_s * 1000;
			l->refresh_s = cl->refresh_s;
			l->max_bytes = cl->max_bytes;
			l->timeout_ms = cl->timeout_ms;
			if (l->format == DV_LIST_RPZ)
				p->rpz_mask |= 1u << i;
			continue;
		}
		snprintf(l->name, sizeof(l->name), "%s", cl->name);
		snprintf(l->source, sizeof(l->source), "%s", cl->source);
		l->format = cl->format;
		if (l->format == DV_LIST_RPZ)
			p->rpz_mask |= 1u << i;
		l->url = strncmp(cl->source, "http://", 7) == 0 ||
			 strncmp(cl->source, "https://", 8) == 0;
		l->refresh_s = cl->refresh_s;
		l->max_bytes = cl->max_bytes;
		l->timeout_ms = cl->timeout_ms;
		l->due_ms = now + (uint64_t)l->refresh_s * 1000;
		l->loads = 1;
		if (!l->url) {
			struct stat sb;
			if (stat(l->source, &sb) == 0) {
				l->size = (int64_t)sb.st_size;
				l->mtime_ns = (int64_t)sb.st_mtim.tv_sec *
						      1000000000 +
					      sb.st_mtim.tv_nsec;
			}
			l->last_ok_s = (uint64_t)time(NULL);
			continue;
		}
		if (!rt->curl) {
			if (dv_fetch_global_init() < 0) {
				snprintf(err, err_len,
					 "policy: libcurl would not start");
				return -EIO;
			}
			rt->curl = true;
		}
		if (!dir_made && !dv_policy_no_fetch) {
			int ret = mkdir_p(p->cache_dir);
			if (ret < 0)
				dv_log_warn("policy: policy.cache-dir %s: %s",
					    p->cache_dir, dv_strerror(ret));
			dir_made = true;
		}
		meta_read(p, l);
		int ret = dv_policy_no_fetch ? -EAGAIN : refresh_url(pol, p, l);
		char copy[512];
		cache_path(p, l, "list", copy, sizeof(copy));
		if (ret >= 0) {
			l->last_ok_s = (uint64_t)time(NULL);
		} else {
			l->failures += !dv_policy_no_fetch;
			if (access(copy, R_OK) == 0)
				dv_log_warn("policy: list %s: using the copy "
					    "kept in %s",
					    l->name, copy);
			else
				dv_log_warn("policy: list %s: no copy kept "
					    "in %s: the list is empty until "
					    "a fetch succeeds",
					    l->name, p->cache_dir);
		}
	}
	if (same_lists(prev, p, cfg)) {
		/* nothing to parse: the snapshot in use moves over (and is
		 * freed with this state, no longer with `prev`) */
		p->snap = prev->snap;
		p->own_snap = true;
		prev->own_snap = false;
		return 0;
	}
	dv_list_stats_t st[DV_POLICY_MAX_LISTS];
	unsigned bad = 0;
	snap_t *s = NULL;
	int ret = snap_build(pol, p, &s, st, &bad);
	if (ret < 0) {
		snprintf(err, err_len, "lists.%s.source: '%s': %s",
			 p->lists[bad].name, p->lists[bad].source,
			 dv_strerror(ret));
		return ret;
	}
	for (unsigned i = 0; i < p->n_lists; i++)
		p->lists[i].st = st[i];
	p->snap = s;
	p->own_snap = true;
	return 0;
}

void dv_policy_list_read(const dv_policy_t *p, unsigned i, list_t *out)
{
	pthread_mutex_lock(&p->rt->lock);
	*out = p->cur->lists[i];
	pthread_mutex_unlock(&p->rt->lock);
}

void dv_policy_rt_free(dv_policy_t *p)
{
	policy_rt_t *rt = p->rt;
	if (!rt)
		return;
	if (rt->running) {
		pthread_mutex_lock(&rt->lock);
		/* atomic: a fetch's progress callback reads it unlocked */
		__atomic_store_n(&rt->stop, true, __ATOMIC_RELAXED);
		pthread_cond_signal(&rt->cond);
		pthread_mutex_unlock(&rt->lock);
		pthread_join(rt->thread, NULL);
	}
	for (unsigned i = 0; i < rt->n_retired; i++)
		dv_policy_snap_free(rt->retired[i]);
	if (rt->curl)
		dv_fetch_global_cleanup();
	pthread_cond_destroy(&rt->cond);
	pthread_mutex_destroy(&rt->lock);
	pthread_mutex_destroy(&rt->work);
	free(rt);
	p->rt = NULL;
}

/*
 * The query log's rings and its writer thread (querylog.h).
 *
 * The writer drains every worker's ring in turn, formats the lines and
 * writes them in chunks of at most PIPE_BUF bytes, each after poll() says
 * the file takes more: a write of that size to a pipe that poll() calls
 * writable does not block, so a reader that stops reading stalls only the
 * writer (the rings fill and the workers drop), and the writer still sees
 * the request to stop.  Lines are never split between two writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/core/log.h"
#include "src/core/ring.h"
#include "src/daemon/querylog.h"

#define POLL_MS 200 /* a stalled file: how often the writer looks up */
#define IDLE_NS 10000000L /* nothing to write: how long the writer naps */

struct dv_qlog {
	dv_qlog_mode_t mode;
	bool json;
	unsigned sample;
	int fd;
	bool own_fd;
	unsigned n_rings;
	dv_ring_t *rings;
	unsigned *sample_count; /* per worker, its thread only */
	pthread_t thread;
	bool started;
	bool stop;   /* atomic */
	bool reopen; /* atomic: dv_qlog_reopen() asked */
	char path[512];
	/* the writer's */
	char out[PIPE_BUF];
	size_t out_len;
	bool write_failed;
};

int dv_qlog_new(const dv_config_t *cfg, unsigned n_workers, dv_qlog_t **out,
		char *err, size_t err_len)
{
	*out = NULL;
	if (cfg->log_queries == DV_QLOG_OFF)
		return 0;
	dv_qlog_t *l = calloc(1, sizeof(*l));
	if (!l)
		goto fail_nomem;
	l->mode = (dv_qlog_mode_t)cfg->log_queries;
	l->json = cfg->log_format == DV_LOG_JSON;
	l->sample = cfg->log_query_sample ? cfg->log_query_sample : 1;
	l->fd = STDERR_FILENO;
	if (cfg->log_query_file[0]) {
		/* O_NONBLOCK: a FIFO without its reader fails at once
		 * (ENXIO) rather than holding the start-up */
		l->fd = open(cfg->log_query_file,
			     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
				     O_NONBLOCK,
			     0640);
		if (l->fd < 0) {
			int e = errno;
			snprintf(err, err_len, "log.query-file: '%s': %s",
				 cfg->log_query_file, strerror(e));
			free(l);
			return -e;
		}
		l->own_fd = true;
		snprintf(l->path, sizeof(l->path), "%s", cfg->log_query_file);
	}
	l->n_rings = n_workers;
	l->rings = calloc(n_workers, sizeof(*l->rings));
	l->sample_count = calloc(n_workers, sizeof(*l->sample_count));
	if (!l->rings || !l->sample_count)
		goto fail_nomem;
	for (unsigned i = 0; i < n_workers; i++)
		if (dv_ring_init(&l->rings[i], cfg->log_query_buffer,
				 sizeof(dv_qlog_entry_t)) != 0)
			goto fail_nomem;
	*out = l;
	return 0;
fail_nomem:
	dv_qlog_free(l);
	snprintf(err, err_len, "query log: out of memory");
	return -ENOMEM;
}

void dv_qlog_answered(dv_qlog_t *l, unsigned worker, const dv_query_t *q,
		      const uint8_t *wire, size_t len, uint64_t now_us,
		      dv_stats_t *st)
{
	if (l->mode == DV_QLOG_ERRORS && len >= 4) {
		unsigned rcode = wire[3] & 0x0f;
		if (rcode == 0 || rcode == 3) /* NOERROR, NXDOMAIN */
			return;
	}
	if (l->sample > 1 && ++l->sample_count[worker] < l->sample)
		return;
	l->sample_count[worker] = 0;
	dv_ring_t *r = &l->rings[worker];
	dv_qlog_entry_t *e = dv_ring_reserve(r);
	if (!e) {
		DV_STAT_INC(st, querylog_dropped);
		return;
	}
	dv_qlog_entry_fill(e, q, wire, len, now_us);
	dv_ring_commit(r);
	DV_STAT_INC(st, querylog_entries);
}

static bool stopping(dv_qlog_t *l)
{
	return __atomic_load_n(&l->stop, __ATOMIC_ACQUIRE);
}

/* Write the buffered lines.  While the file takes nothing, wait in steps
 * of POLL_MS; when asked to stop meanwhile, give the rest up. */
static void flush(dv_qlog_t *l)
{
	size_t off = 0;
	while (off < l->out_len && !l->write_failed) {
		struct pollfd pfd = { .fd = l->fd, .events = POLLOUT };
		int pr = poll(&pfd, 1, POLL_MS);
		if (pr == 0) {
			/* stopping: the rest is given up, now and later */
			if (stopping(l))
				l->write_failed = true;
			continue;
		}
		if (pr < 0 && errno != EINTR)
			break;
		ssize_t n = write(l->fd, l->out + off, l->out_len - off);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno != EINTR && errno != EAGAIN) {
			dv_log_error("query log: write: %s; no more query "
				     "lines are written",
				     strerror(errno));
			l->write_failed = true;
		}
	}
	l->out_len = 0;
}

/* Move every entry the rings hold to the file.  Returns how many. */
static unsigned drain(dv_qlog_t *l)
{
	unsigned n = 0;
	char line[DV_QLOG_LINE_MAX];
	for (unsigned i = 0; i < l->n_rings; i++) {
		dv_ring_t *r = &l->rings[i];
		const dv_qlog_entry_t *e;
		while ((e = dv_ring_peek(r)) != NULL) {
			size_t len =
				dv_qlog_format(e, l->json, line, sizeof(line));
			dv_ring_release(r);
			n++;
			if (l->out_len + len > sizeof(l->out))
				flush(l);
			if (len > sizeof(l->out))
				len = sizeof(l->out);
			memcpy(l->out + l->out_len, line, len);
			l->out_len += len;
		}
	}
	if (l->out_len)
		flush(l);
	return n;
}

void dv_qlog_reopen(dv_qlog_t *l)
{
	if (l && l->own_fd)
		__atomic_store_n(&l->reopen, true, __ATOMIC_RELEASE);
}

/* The writer's side of dv_qlog_reopen(): the new file, or the old one kept
 * (and a line saying why).  A successful reopen also ends a failed state
 * (a FIFO's new reader). */
static void reopen_file(dv_qlog_t *l)
{
	__atomic_store_n(&l->reopen, false, __ATOMIC_RELEASE);
	int fd = open(l->path,
		      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK,
		      0640);
	if (fd < 0) {
		dv_log_error("query log: reopening '%s': %s; still writing to "
			     "the file opened before",
			     l->path, strerror(errno));
		return;
	}
	close(l->fd);
	l->fd = fd;
	l->write_failed = false;
	dv_log_info("query log: '%s' reopened", l->path);
}

static void *writer_main(void *arg)
{
	dv_qlog_t *l = arg;
	while (!stopping(l)) {
		if (__atomic_load_n(&l->reopen, __ATOMIC_ACQUIRE))
			reopen_file(l);
		if (drain(l) == 0) {
			struct timespec ts = { 0, IDLE_NS };
			nanosleep(&ts, NULL);
		}
	}
	drain(l); /* what the workers left */
	return NULL;
}

int dv_qlog_start(dv_qlog_t *l)
{
	int ret = pthread_create(&l->thread, NULL, writer_main, l);
	if (ret)
		return -ret;
	l->started = true;
	return 0;
}

void dv_qlog_free(dv_qlog_t *l)
{
	if (!l)
		return;
	if (l->started) {
		__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
		pthread_join(l->thread, NULL);
	}
	for (unsigned i = 0; l->rings && i < l->n_rings; i++)
		dv_ring_deinit(&l->rings[i]);
	free(l->rings);
	free(l->sample_count);
	if (l->own_fd)
		close(l->fd);
	free(l);
}

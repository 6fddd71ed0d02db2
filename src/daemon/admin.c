/*
 * The admin listener: its own thread and libev loop, a few bounded
 * connections, one request each (admin.h).
 *
 * A connection is read until its request head is complete (or refused:
 * 400 for bytes that cannot be HTTP/1.x, 431 past DV_ADMIN_HEAD_MAX), then
 * answered with "Connection: close"; after the answer our side is shut
 * down and the client's remaining bytes are read and dropped until it
 * closes, so that closing does not reset the answer away.  One timer, set
 * at accept to admin.timeout-ms, bounds the whole exchange: a client that
 * sends a byte a second or never reads its answer is closed when it fires.
 * At admin.max-connections the listening sockets stop being watched and
 * new clients wait in the kernel's backlog.
 */
#include "src/daemon/admin.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "src/core/clock.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/core/netmask.h"
#include "src/daemon/upstream.h"
#include "src/daemon/worker.h"
#include "src/proto/admin_http.h"
#include "src/upstream/pool.h"

typedef enum { AC_READ, AC_WRITE, AC_LINGER } ac_state_t;

typedef struct admin_conn {
	dv_admin_t *a;
	struct admin_conn *prev, *next;
	int fd;
	ac_state_t state;
	ev_io io;
	ev_timer timer;
	uint8_t in[DV_ADMIN_HEAD_MAX];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
} admin_conn_t;

struct dv_admin {
	dv_admin_view_t view;
	struct ev_loop *loop;
	ev_async stop;
	pthread_t thread;
	bool running;
	int fds[DV_ADMIN_MAX_LISTEN];
	ev_io lio[DV_ADMIN_MAX_LISTEN];
	unsigned n_fds;
	bool accepting;
	ev_timer resume; /* accepting again after EMFILE and the like */
	admin_conn_t *conns;
	unsigned n_conns;
	bool started, draining; /* set by main, read here (atomics) */
	dv_admin_stats_t st;
};

/* ---- the probes ---- */

bool dv_admin_healthy(const dv_admin_view_t *v, uint64_t now_ms, char *why,
		      size_t why_len)
{
	for (unsigned i = 0; i < v->n_workers; i++) {
		uint64_t hb = __atomic_load_n(&v->workers[i]->heartbeat_ms,
					      __ATOMIC_RELAXED);
		if (hb == 0)
			continue; /* not started yet: /readyz says so */
		if (now_ms > hb && now_ms - hb > DV_ADMIN_STALL_MS) {
			snprintf(why, why_len,
				 "worker %u: its loop has not turned for %llu "
				 "ms",
				 i, (unsigned long long)(now_ms - hb));
			return false;
		}
	}
	return true;
}

bool dv_admin_ready(const dv_admin_view_t *v, bool started, bool draining,
		    char *why, size_t why_len)
{
	if (draining) {
		snprintf(why, why_len, "draining");
		return false;
	}
	if (!started || v->n_workers == 0) {
		snprintf(why, why_len, "starting");
		return false;
	}
	/* usable: up or degraded in some worker (a reload may be replacing
	 * the pools: each worker's as it is) */
	bool usable = false;
	for (unsigned k = 0; k < v->n_workers && !usable; k++) {
		dv_worker_pool_lock(v->workers[k]);
		unsigned n_up = dv_worker_n_upstreams(v->workers[k]);
		for (unsigned i = 0; i < n_up && !usable; i++) {
			dv_upstream_stats_t u;
			memset(&u, 0, sizeof(u));
			dv_worker_upstream_stats_add(v->workers[k], i, &u);
			usable = u.n_state[DV_HEALTH_UP] +
				 u.n_state[DV_HEALTH_DEGRADED];
		}
		dv_worker_pool_unlock(v->workers[k]);
	}
	if (usable)
		return true;
	snprintf(why, why_len, "no usable upstream (every server is down)");
	return false;
}

/* ---- connections ---- */

static void listen_watch(dv_admin_t *a, bool on)
{
	if (a->accepting == on)
		return;
	for (unsigned i = 0; i < a->n_fds; i++) {
		if (on)
			ev_io_start(a->loop, &a->lio[i]);
		else
			ev_io_stop(a->loop, &a->lio[i]);
	}
	a->accepting = on;
}

static void conn_free(admin_conn_t *c)
{
	dv_admin_t *a = c->a;
	ev_io_stop(a->loop, &c->io);
	ev_timer_stop(a->loop, &c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->n_conns--;
	free(c->out);
	free(c);
	listen_watch(a, true);
}

/* Write what is left of the answer; then shut our side and linger. */
static void conn_write(admin_conn_t *c)
{
	dv_admin_t *a = c->a;
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (c->state != AC_WRITE) {
				ev_io_stop(a->loop, &c->io);
				ev_io_set(&c->io, c->fd, EV_WRITE);
				ev_io_start(a->loop, &c->io);
				c->state = AC_WRITE;
			}
			return;
		}
		if (n <= 0) {
			conn_free(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	shutdown(c->fd, SHUT_WR);
	ev_io_stop(a->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_READ);
	ev_io_start(a->loop, &c->io);
	c->state = AC_LINGER;
}

/* The answer: status line, fields, body (none for HEAD). */
static void respond(admin_conn_t *c, int code, const char *reason,
		    const char *ctype, const char *extra, const char *body,
		    size_t body_len, bool head_only)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		conn_free(c);
		return;
	}
	fprintf(f,
		"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		"Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
		code, reason, ctype, body_len, extra ? extra : "");
	if (!head_only && body_len)
		fwrite(body, 1, body_len, f);
	if (fclose(f) != 0) {
		free(buf);
		conn_free(c);
		return;
	}
	free(c->out);
	c->out = buf;
	c->out_len = len;
	c->out_off = 0;
	conn_write(c);
}

static void respond_text(admin_conn_t *c, int code, const char *reason,
			 const char *extra, const char *text, bool head_only)
{
	respond(c, code, reason, "text/plain; charset=utf-8", extra, text,
		strlen(text), head_only);
}

/* Longest a POST /reload waits for the main thread's reload. */
#define RELOAD_WAIT_MS 30000

void dv_admin_reload_done(dv_reload_stats_t *r, bool ok, const char *err)
{
	if (!r)
		return;
	snprintf(r->last_error, sizeof(r->last_error), "%s", ok ? "" : err);
	__atomic_store_n(&r->last_ok, ok, __ATOMIC_RELAXED);
	__atomic_add_fetch(&r->done, 1, __ATOMIC_RELEASE);
}

/*
 * POST /reload: SIGHUP to our own process, taken by the main thread like
 * any other (sigwaitinfo), and wait for the reload to finish.  This
 * thread serves no query, so waiting here costs the admin listener only.
 * Signals sent close together are one reload: whichever ends after this
 * request read the file after it.
 */
static void reload(admin_conn_t *c)
{
	dv_reload_stats_t *r = c->a->view.reload;
	uint64_t before = __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
	if (kill(getpid(), SIGHUP) != 0) {
		respond_text(c, 500, "Internal Server Error", NULL,
			     "cannot signal the main thread\n", false);
		return;
	}
	uint64_t until = dv_now_ms() + RELOAD_WAIT_MS;
	while (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) == before) {
		if (dv_now_ms() >= until) {
			respond_text(c, 503, "Service Unavailable", NULL,
				     "the reload did not finish in time\n",
				     false);
			return;
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	char text[600];
	if (__atomic_load_n(&r->last_ok, __ATOMIC_RELAXED)) {
		respond_text(c, 200, "OK", NULL, "reloaded\n", false);
		return;
	}
	snprintf(text, sizeof(text),
		 "configuration refused, the running one stays: %s\n",
		 r->last_error);
	respond_text(c, 500, "Internal Server Error", NULL, text, false);
}

static void route(admin_conn_t *c, const dv_admin_req_t *req)
{
	dv_admin_t *a = c->a;
	bool head_only = req->method == DV_ADMIN_HEAD;
	int which = strcmp(req->path, "/metrics") == 0   ? 0
		    : strcmp(req->path, "/healthz") == 0 ? 1
		    : strcmp(req->path, "/readyz") == 0  ? 2
		    : strcmp(req->path, "/reload") == 0 && a->view.reload
			    ? 4
			    : 3;
	a->st.requests[which]++;
	if (which == 4) {
		if (req->method != DV_ADMIN_POST)
			respond_text(c, 405, "Method Not Allowed",
				     "Allow: POST\r\n", "POST only\n", false);
		else
			reload(c);
		return;
	}
	if (which == 3) {
		respond_text(c, 404, "Not Found", NULL,
			     "not found: /metrics, /healthz, /readyz, "
			     "/reload\n",
			     head_only);
		return;
	}
	if (req->method == DV_ADMIN_OTHER || req->method == DV_ADMIN_POST) {
		respond_text(c, 405, "Method Not Allowed",
			     "Allow: GET, HEAD\r\n", "GET or HEAD only\n",
			     false);
		return;
	}
	char why[160], text[200];
	if (which == 1) {
		bool ok = dv_admin_healthy(&a->view, dv_now_ms(), why,
					   sizeof(why));
		snprintf(text, sizeof(text), ok ? "ok\n" : "unhealthy: %s\n",
			 why);
		respond_text(c, ok ? 200 : 503,
			     ok ? "OK" : "Service Unavailable", NULL, text,
			     head_only);
		return;
	}
	if (which == 2) {
		bool ok = dv_admin_ready(
			&a->view, __atomic_load_n(&a->started, __ATOMIC_ACQUIRE),
			__atomic_load_n(&a->draining, __ATOMIC_ACQUIRE), why,
			sizeof(why));
		snprintf(text, sizeof(text), ok ? "ready\n" : "not ready: %s\n",
			 why);
		respond_text(c, ok ? 200 : 503,
			     ok ? "OK" : "Service Unavailable", NULL, text,
			     head_only);
		return;
	}
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	if (!f) {
		conn_free(c);
		return;
	}
	dv_admin_metrics(f, &a->view, &a->st);
	if (fclose(f) != 0) {
		free(body);
		conn_free(c);
		return;
	}
	respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
		NULL, body, len, head_only);
	free(body);
}

static void conn_read(admin_conn_t *c)
{
	dv_admin_t *a = c->a;
	if (c->state == AC_LINGER) {
		uint8_t sink[1024];
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR &&
			       errno != EWOULDBLOCK))
			conn_free(c);
		return;
	}
	ssize_t n = recv(c->fd, c->in + c->in_len,
			 sizeof(c->in) - c->in_len, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)
			conn_free(c);
		return;
	}
	if (n == 0) {
		conn_free(c); /* closed before its request was whole */
		return;
	}
	c->in_len += (size_t)n;
	dv_admin_req_t req;
	int ret = dv_admin_http_parse(c->in, c->in_len, &req);
	if (ret > 0) {
		route(c, &req);
	} else if (ret < 0) {
		a->st.bad++;
		respond_text(c, 400, "Bad Request", NULL, "bad request\n",
			     false);
	} else if (c->in_len == sizeof(c->in)) {
		a->st.bad++;
		respond_text(c, 431, "Request Header Fields Too Large", NULL,
			     "request head too large\n", false);
	}
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	admin_conn_t *c = w->data;
	if (c->state == AC_WRITE && (revents & EV_WRITE))
		conn_write(c);
	else if (revents & EV_READ)
		conn_read(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	admin_conn_t *c = t->data;
	if (c->state != AC_LINGER)
		c->a->st.bad++;
	conn_free(c);
}

static bool peer_allowed(const dv_admin_t *a, const struct sockaddr *sa)
{
	const dv_config_t *cfg = a->view.cfg;
	if (cfg->n_admin_allow)
		return dv_netmask_match_any(cfg->admin_allow,
					    cfg->n_admin_allow, sa);
	static dv_netmask_t loopback[2];
	static bool init;
	if (!init) { /* only this thread reads it */
		dv_netmask_parse("127.0.0.0/8", &loopback[0], NULL, 0);
		dv_netmask_parse("::1", &loopback[1], NULL, 0);
		init = true;
	}
	return dv_netmask_match_any(loopback, 2, sa);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	dv_admin_t *a = w->data;
	while (a->n_conns < a->view.cfg->admin_max_connections) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(w->fd, (struct sockaddr *)&peer, &plen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE ||
			       errno == ENOBUFS || errno == ENOMEM)) {
			/* the client stays in the backlog: try again in a
			 * moment rather than spin on a readable socket */
			listen_watch(a, false);
			ev_timer_start(loop, &a->resume);
			return;
		}
		if (fd < 0)
			return; /* EAGAIN, or a client that went away */
		admin_conn_t *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->a = a;
		c->fd = fd;
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->n_conns++;
		ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, conn_timer_cb,
			      a->view.cfg->admin_timeout_ms / 1000.0, 0.);
		c->timer.data = c;
		ev_timer_start(loop, &c->timer);
		ev_io_start(loop, &c->io);
		if (!peer_allowed(a, (struct sockaddr *)&peer)) {
			a->st.refused++;
			respond_text(c, 403, "Forbidden", NULL,
				     "forbidden: not in admin.allow\n", false);
		}
	}
	listen_watch(a, false);
}

/* ---- the thread ---- */

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dv_admin_t *a = t->data;
	if (a->n_conns < a->view.cfg->admin_max_connections)
		listen_watch(a, true);
}

static void *admin_main(void *arg)
{
	dv_admin_t *a = arg;
	ev_run(a->loop, 0);
	return NULL;
}

static int bind_one(const dv_url_t *url)
{
	int fd = socket(url->addr.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (url->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&url->addr, url->addr_len) != 0 ||
	    listen(fd, 64) != 0) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

dv_admin_t *dv_admin_new(const dv_admin_view_t *view, char *err,
			 size_t err_len)
{
	dv_admin_t *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	a->view = *view;
	a->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!a->loop) {
		snprintf(err, err_len, "admin listener: no event loop");
		goto fail;
	}
	ev_async_init(&a->stop, stop_cb);
	ev_async_start(a->loop, &a->stop);
	ev_timer_init(&a->resume, resume_cb, 0.1, 0.);
	a->resume.data = a;
	const dv_config_t *cfg = view->cfg;
	for (unsigned i = 0; i < cfg->n_admin_listen; i++) {
		int fd = bind_one(&cfg->admin_listen[i]);
		if (fd < 0) {
			snprintf(err, err_len, "admin listener %s: %s",
				 cfg->admin_listen[i].text, dv_strerror(fd));
			goto fail;
		}
		a->fds[a->n_fds] = fd;
		ev_io_init(&a->lio[a->n_fds], accept_cb, fd, EV_READ);
		a->lio[a->n_fds].data = a;
		a->n_fds++;
	}
	listen_watch(a, true);
	return a;
fail:
	dv_admin_free(a);
	return NULL;
}

int dv_admin_start(dv_admin_t *a)
{
	int ret = pthread_create(&a->thread, NULL, admin_main, a);
	if (ret)
		return -ret;
	a->running = true;
	return 0;
}

void dv_admin_set_started(dv_admin_t *a)
{
	if (a)
		__atomic_store_n(&a->started, true, __ATOMIC_RELEASE);
}

void dv_admin_set_draining(dv_admin_t *a)
{
	if (a)
		__atomic_store_n(&a->draining, true, __ATOMIC_RELEASE);
}

void dv_admin_free(dv_admin_t *a)
{
	if (!a)
		return;
	if (a->running) {
		ev_async_send(a->loop, &a->stop);
		pthread_join(a->thread, NULL);
	}
	while (a->conns)
		conn_free(a->conns);
	if (a->loop) {
		listen_watch(a, false);
		ev_timer_stop(a->loop, &a->resume);
		ev_async_stop(a->loop, &a->stop);
		ev_loop_destroy(a->loop);
	}
	for (unsigned i = 0; i < a->n_fds; i++)
		close(a->fds[i]);
	free(a);
}

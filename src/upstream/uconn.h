#pragma once
/*
 * Inside the upstream pool (src/upstream/ only): the pool's servers, its
 * per-fetch jobs and their attempts, and the connection every protocol
 * module builds on.
 *
 * A connection is a generic header (dv_uconn_t: the server, the state, the
 * socket and its watchers, the id slots) embedded first in the module's own
 * struct, which holds what only that protocol needs (buffers, the TLS
 * object, the HTTP/2 or QUIC engine, per-slot stream data).  The pool
 * reaches a connection only through its ops table (dv_uconn_ops_t) and
 * never asks which protocol it speaks; a module reaches the pool only
 * through the dv_uconn_* / dv_uslot_* / dv_userver_* functions below.
 *
 * Connection states: CLOSED (no socket; may connect unless the server is
 * in back-off), CONNECTING (queries queue), HANDSHAKE (TLS or QUIC is not
 * up yet; queries keep queueing), OPEN.  A connection is never freed while
 * the pool lives: closing it stops its watchers, fails the attempts it
 * carried and keeps its buffers, so a close in the middle of a read or
 * write callback is always safe.
 */
#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "src/config/config.h"
#include "src/core/clock.h"
#include "src/core/health.h"
#include "src/core/rand.h"
#include "src/core/scheme.h"
#include "src/core/stats.h"
#include "src/core/wire.h"
#include "src/upstream/pool.h"

typedef enum { UC_CLOSED, UC_CONNECTING, UC_HANDSHAKE, UC_OPEN } uc_state_t;

typedef struct dv_job dv_job_t;
typedef struct dv_uconn dv_uconn_t;
typedef struct dv_uconn_ops dv_uconn_ops_t;
typedef struct dv_server dv_server_t;
typedef struct dv_tls_ctx dv_tls_ctx_t;
typedef struct dv_quic_tls_ctx dv_quic_tls_ctx_t;

#define DV_JOB_MAX_ATTEMPTS 4
/* the longest question the pool sends: the core's normalized question
 * (DV_FETCH_QWIRE_MAX, checked in pool.c) */
#define DV_UQUERY_MAX (DV_DNS_HDR + DV_DNS_MAX_NAME + 4 + 11)
#define NO_SLOT UINT32_MAX

/* One try of a job on one connection. */
typedef struct dv_attempt dv_attempt_t;
struct dv_attempt {
	dv_job_t *job; /* NULL when free */
	dv_uconn_t *conn;
	uint32_t slot;
	ev_timer timer; /* per-attempt timeout */
	bool fallback;
	/* waiting for a free id of `waiting`'s UDP front connection (not on
	 * a connection yet): its place in that server's queue */
	dv_server_t *waiting;
	dv_attempt_t *wnext, *wprev;
};

/*
 * The pool's side of one upstream question: a core fetch (the pool's
 * dv_pool_fetch_start) or a health probe of one server.  Its own copy of
 * the question, whose id each attempt patches; the paths tried, and the
 * fetch's hedge and deadline timers.
 */
struct dv_job {
	dv_pool_t *pool;
	dv_fetch_t *fetch;  /* the core's fetch it answers; NULL for a probe */
	dv_server_t *probe; /* the server a probe is for; NULL for a fetch */
	uint8_t qwire[DV_UQUERY_MAX];
	uint16_t qlen;
	bool fallback_started;
	bool local_only; /* an internal name: never to the fallback group */
	bool kept;       /* local_only and the fallback would have been asked */
	uint8_t retries; /* attempts sent again after their connection died */
	uint32_t tried_local, tried_fallback; /* servers tried (bit = index) */
	uint16_t ede; /* best EDE seen from an upstream */
	ev_timer hedge;
	ev_timer deadline;
	dv_attempt_t att[DV_JOB_MAX_ATTEMPTS];
};

/* One id of a connection.  What a protocol keeps per query (an HTTP/2
 * stream, a DoQ submission) lives in its module, by slot index. */
typedef struct {
	dv_attempt_t *att; /* NULL when free or abandoned */
	uint16_t id;
	bool busy; /* id reserved until answered or the connection closes */
	bool orphan; /* busy, its attempt gone: kept for the latency */
	uint32_t next_free, prev_free; /* doubly linked free list */
	uint64_t sent_ms;
} uslot_t;

/* The generic head of every connection (first member of the module's). */
struct dv_uconn {
	const dv_uconn_ops_t *ops;
	dv_server_t *server;
	uc_state_t state;
	int fd;
	ev_io rio, wio; /* data: the connection */
	uslot_t *slots;
	uint32_t n_slots, mask, free_head, busy;
	uint32_t orphans; /* busy slots whose attempt has ended */
	uint64_t last_rx_ms;
	/* ops->random_ids: busy slots by id (2 x n_slots entries) */
	uint32_t *id_table, id_mask;
	/* in the pool's list of connections to flush this turn */
	bool flush_queued;
	dv_uconn_t *flush_next;
};

/*
 * A connection module.  Required: create, destroy, connect, submit, stop.
 * Errors are negative (errors.h).
 */
struct dv_uconn_ops {
	/* Queries or answers may be lost and the socket is never "dead"
	 * (udp://): an abandoned id is freed at once, a timeout or a
	 * truncated answer is retried on the server's other connections, and
	 * a socket error means nobody is there. */
	bool lossy;
	/* All 16 bits of each id are random instead of naming the slot
	 * (udp://, where answers can be spoofed): the connection's id table
	 * finds the slot (dv_uconn_slot_of), and the module, which knows
	 * which of its sockets the answer came on, hands it to
	 * dv_uslot_answer(). */
	bool random_ids;
	/* connections per server (0: pool.connections), and how many of a
	 * local server's are opened at start (0: all) */
	unsigned conns, warm;
	/* Once per pool that has a server using these ops, in registry
	 * order (e.g. a client TLS context in p->tls; a failure is logged),
	 * and at the pool's end (must do nothing when pool_init did not
	 * run or another ops table already undid it). */
	int (*pool_init)(dv_pool_t *p);
	void (*pool_deinit)(dv_pool_t *p);
	/* Free what the module keeps in s->priv (e.g. a TLS session). */
	void (*server_deinit)(dv_server_t *s);
	/* A CLOSED connection of `s` with `max` ids (dv_uconn_init), its
	 * watchers initialized; NULL on allocation failure.  destroy frees
	 * it (the pool is going: no attempt is left on it). */
	dv_uconn_t *(*create)(dv_server_t *s, unsigned max);
	void (*destroy)(dv_uconn_t *c);
	/* Open a CLOSED connection: 0 (CONNECTING, HANDSHAKE or OPEN), or a
	 * negative error with the connection CLOSED (a refused connect
	 * counted with dv_userver_refused). */
	int (*connect)(dv_uconn_t *c);
	/* Send (or queue) the question `msg` for slot `slot`, whose id it
	 * already carries.  -ECONNREFUSED: nobody there (the pool counts the
	 * server refused); another error: not sent.  Must not fail other
	 * attempts synchronously (callers hold the fetch). */
	int (*submit)(dv_uconn_t *c, uint32_t slot, const uint8_t *msg,
		      size_t len);
	/* Slot `slot` is being released (optional): forget, or give up, the
	 * module's per-query state. */
	void (*release)(dv_uconn_t *c, uint32_t slot);
	/* Closing (dv_uconn_close), before the socket is closed: end the
	 * protocol's state, reset the buffers. */
	void (*stop)(dv_uconn_t *c, bool was_open);
	/* Worth opening another connection rather than adding to this one
	 * (optional; default: as soon as it carries a query). */
	bool (*crowded)(dv_uconn_t *c);
	/* Takes no new queries (optional; e.g. HTTP/2 GOAWAY received). */
	bool (*draining)(dv_uconn_t *c);
	/* Output still to be written (optional): not idle. */
	bool (*writing)(const dv_uconn_t *c);
	/* Send what submit queued (optional): called once per loop turn,
	 * before the worker sleeps, for each connection that asked with
	 * dv_uconn_want_flush() in that turn.  No caller holds a fetch: it
	 * may close the connection. */
	void (*flush)(dv_uconn_t *c);
};

/* Queries one UDP socket of server `s` carries (conn_udp.c): a loopback
 * server's pool.udp-socket-queries, 1 for any other. */
unsigned dv_uconn_udp_reuse(const dv_server_t *s);

/* The modules' ops tables, as the registry lists them. */
extern const dv_uconn_ops_t dv_uconn_udp_ops;  /* conn_udp.c */
extern const dv_uconn_ops_t dv_uconn_tcp_ops;  /* conn_stream.c */
extern const dv_uconn_ops_t dv_uconn_tls_ops;  /* conn_stream.c */
extern const dv_uconn_ops_t dv_uconn_h2_ops;   /* conn_h2.c */
extern const dv_uconn_ops_t dv_uconn_quic_ops; /* conn_quic.c */

/* One upstream protocol in the registry (registry.c). */
typedef struct dv_uproto {
	dv_scheme_t scheme;
	const dv_uconn_ops_t *conn;  /* the server's pooled connections */
	const dv_uconn_ops_t *front; /* tried first (udp://), or NULL */
	bool tls; /* needs the TLS library (dv_tls_init) */
} dv_uproto_t;

/* The registered protocol of `scheme`, or NULL; the i-th one, or NULL. */
const dv_uproto_t *dv_uproto_find(dv_scheme_t scheme);
const dv_uproto_t *dv_uproto_at(unsigned i);

struct dv_server {
	dv_pool_t *pool;
	dv_url_t url;
	bool fallback;
	const dv_uproto_t *proto;
	dv_uconn_t **conns;
	unsigned n_conns;
	dv_uconn_t *front; /* proto->front's connection, or NULL */
	/* the front takes every query (udp://); else (a tcp:// server on
	 * loopback, pool.loopback-udp) all but the probes, and not
	 * before front_off_until_ms (its UDP port was unreachable) */
	bool front_all;
	uint64_t front_off_until_ms;
	/* attempts waiting for a free id of the front, oldest first
	 * (pool.udp-max-inflight reached) */
	dv_attempt_t *wait_head, *wait_tail;
	void *priv;        /* the module's (e.g. the last TLS session) */
	unsigned backoff_ms; /* DOWN: delay before the next probe */
	dv_health_t health;
	ev_timer probe_timer;
	dv_job_t *probe; /* the probe query, at most one in flight */
	dv_ustats_t st;  /* written by the worker, read by the stats */
	dv_lat_hist_t latency; /* of its answers; as `st` */
	/* health.state, EWMA, p95, samples for other threads */
	unsigned pub_state;
	uint64_t pub_ewma_us;
	uint32_t pub_p95_ms, pub_samples;
};

struct dv_pool {
	struct ev_loop *loop;
	dv_stats_t *stats; /* the worker's */
	unsigned index;    /* the worker's, for the logs */
	const dv_config_t *cfg;
	const dv_pool_report_t *report; /* where fetches end */
	unsigned n_jobs; /* fetches started and not yet freed */
	void (*observe)(void *arg, const dv_pool_msg_t *m); /* or NULL */
	void *observe_arg;
	dv_server_t *servers; /* local first, then fallback */
	unsigned n_local, n_fallback;
	const char *set_name; /* set_name_buf, or NULL: set 0 */
	char set_name_buf[DV_POLICY_NAME_MAX]; /* its own copy: a reload frees
						 * the config that named it */
	char set_note[DV_POLICY_NAME_MAX + 8]; /* " (set NAME)" or "" */
	/* client contexts, made by the modules that use them (pool_init):
	 * one per worker, so no lock is shared between workers */
	dv_tls_ctx_t *tls;
	dv_quic_tls_ctx_t *quic_tls;
	dv_health_conf_t hconf[2]; /* [fallback]: slow-p95 is local only */
	unsigned explore_n[2], explore_rot[2]; /* per group [fallback] */
	ev_timer tick; /* idle connections, orphaned ids */
	/* sends the attempts waiting for a UDP front's ids once per loop
	 * turn, after that turn's answers freed them (running while any
	 * wait) */
	ev_prepare drain;
	unsigned n_waiting;
	/* connections whose queued output goes out at the end of this turn
	 * (ops->flush, from the drain watcher, which also runs while any) */
	dv_uconn_t *flush_head;
	dv_rand_t rng; /* ids and slot choice (dv_upool_rand) */
	uint8_t probe_qwire[DV_DNS_HDR + DV_DNS_MAX_NAME + 4];
	uint16_t probe_qlen;
	/* scratch for the modules: a datagram read, and an answer being
	 * rewritten (its id patched) while that datagram is still in use */
	uint8_t rxbuf[DV_DNS_MAX_MSG + 1];
	uint8_t answer[DV_DNS_MAX_MSG];
};

#define USTAT_INC(s, name) DV_STAT_INC(&(s)->st, name)

static inline uint64_t now_ms(void)
{
	return dv_now_ms();
}

/* ---- for the modules (uconn.c, pool.c) ---- */

/* Set up the generic part of `c` (zeroed by the caller): CLOSED, no
 * socket, an id table of `max` rounded up to a power of two (at most
 * 65536).  -ENOMEM.  dv_uconn_deinit frees the table. */
int dv_uconn_init(dv_uconn_t *c, const dv_uconn_ops_t *ops, dv_server_t *s,
		  unsigned max);
void dv_uconn_deinit(dv_uconn_t *c);
/* The socket is made (CONNECTING or further): count the connect. */
void dv_uconn_connects(dv_uconn_t *c);
/* Close `c` (no-op when CLOSED): ops->stop, the socket, then the
 * server's health (a connection never opened, or a lossy one, is a
 * refused server; an open one lost with `failure` a failure), and every
 * attempt it carried fails.  `why` is logged (debug). */
void dv_uconn_close(dv_uconn_t *c, bool failure, const char *why);
/* Close `c`, which died under its queries without their fault (e.g. a
 * server that went silent): no health failure is counted, and each
 * attempt it carried is sent again at once on the server's other (or a
 * fresh) connection while its fetch's deadline leaves time for it, else
 * fails. */
void dv_uconn_close_retry(dv_uconn_t *c, const char *why);
/* An answer read on `c`: matched by id (and question) to its slot; one
 * that matches no query in flight is dropped and counted (dropped). */
void dv_uconn_answer(dv_uconn_t *c, const uint8_t *wire, size_t len);
/* The busy slot whose query has id `id`, or NO_SLOT. */
uint32_t dv_uconn_slot_of(const dv_uconn_t *c, uint16_t id);
/* An answer for slot `i` (ops->random_ids: the module found it with
 * dv_uconn_slot_of and checked the socket; NO_SLOT when none): taken only
 * when the slot is busy with the same id and the question asked.  False
 * when it was not the awaited answer (too short, no query in flight, an
 * unknown id, another question): dropped, and counted unless too short. */
bool dv_uslot_answer(dv_uconn_t *c, uint32_t i, const uint8_t *wire,
		     size_t len);

/* 32 random bits from the pool's generator (seeded from the kernel on
 * first use; aborts when the kernel has no random bytes to give). */
uint32_t dv_upool_rand(dv_pool_t *p);

/* Reserve an id for attempt `a` (NO_SLOT when full); release it. */
uint32_t dv_uslot_take(dv_uconn_t *c, dv_attempt_t *a, uint64_t now);
void dv_uslot_release(dv_uconn_t *c, uint32_t i);
/* The query of busy slot `i` ended without an answer: release the slot
 * and fail its attempt (if it has one), or send the question again on
 * another connection of the server (retry: the server did not process
 * it). */
void dv_uslot_fail(dv_uconn_t *c, uint32_t i, bool timeout);
void dv_uslot_retry(dv_uconn_t *c, uint32_t i);
/* Whether `msg` answers the question of busy slot `i` (true when the
 * slot's attempt has ended). */
bool dv_uslot_asks(const dv_uconn_t *c, uint32_t i, const uint8_t *msg,
		   size_t len);

/* The health of a server, as its connections see it. */
void dv_userver_refused(dv_server_t *s);
void dv_userver_failure(dv_server_t *s);
bool dv_userver_usable(const dv_server_t *s);
/* The UDP front of a tcp:// server (not udp://) met a closed port: off
 * for a while, the server not charged. */
void dv_userver_front_off(dv_server_t *s);
/* The pool's drain watcher (waiting attempts), set up once. */
void dv_upool_drain_init(dv_pool_t *p);
/* `c` has queued output: its ops->flush runs at the end of this turn. */
void dv_uconn_want_flush(dv_uconn_t *c);

/* ---- between pool.c (the fetch path) and server.c (servers) ---- */

/* End attempt `a` without a good answer (timeout: its timer fired): the
 * next path, or the fetch fails. */
void dv_uattempt_fail(dv_attempt_t *a, bool timeout);
/* Stop attempt `a` (its job goes on, or is being freed). */
void dv_uattempt_detach(dv_attempt_t *a);
/* Attempt `a` (already off its connection, on server `s`) is sent again
 * on `s` (dv_uconn_close_retry), or fails when its fetch has no time
 * left for it or was retried too often. */
void dv_uattempt_retry(dv_attempt_t *a, dv_server_t *s);
/* `s` answered a query `ms` after it went out; a probe of it was
 * answered (it is back). */
void dv_userver_answered(dv_server_t *s, uint64_t ms);
void dv_userver_up(dv_server_t *s);
/* Probes of a DOWN server: the next one after its back-off, and the
 * timer that sends it (s->probe_timer). */
void dv_uprobe_schedule(dv_server_t *s);
void dv_uprobe_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

/*
 * The network side of a reload, on the main thread (reload_net.h): the
 * listeners a new config adds are checked bindable and the TLS contexts
 * they need are made before anything changes; then the config goes, as
 * one counted copy (cfgref.h), to every worker, which applies it on its
 * own loop (worker_reload.c).
 */
#include "src/daemon/reload_net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "src/core/clock.h"
#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/daemon/cfgref.h"
#include "src/daemon/transport.h"
#include "src/tls/quic_tls.h"
#include "src/tls/tls.h"
#include "src/upstream/registry.h"

const dv_config_t *dv_reload_current(const dv_reload_t *r)
{
	return r->live ? r->live : r->running;
}

static bool has_url(const dv_config_t *cfg, const dv_url_t *u)
{
	for (unsigned i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].scheme == u->scheme &&
		    strcmp(cfg->listen[i].text, u->text) == 0)
			return true;
	return false;
}

static bool has_scheme(const dv_config_t *cfg, dv_scheme_t s)
{
	for (unsigned i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].scheme == s)
			return true;
	return false;
}

static bool uses(dv_scheme_t s, int type)
{
	if (type == SOCK_DGRAM)
		return s == DV_SCHEME_UDP || s == DV_SCHEME_QUIC ||
		       s == DV_SCHEME_DNS;
	return s != DV_SCHEME_UDP && s != DV_SCHEME_QUIC;
}

/* The address is this process's already (a listener of the running config
 * on it with that socket type, "dns://" becoming "tcp://"): the workers
 * join their own SO_REUSEPORT group. */
static bool held(const dv_config_t *cur, const dv_url_t *u, int type)
{
	for (unsigned i = 0; i < cur->n_listen; i++) {
		const dv_url_t *c = &cur->listen[i];
		if (uses(c->scheme, type) && c->addr_len == u->addr_len &&
		    memcmp(&c->addr, &u->addr, u->addr_len) == 0)
			return true;
	}
	return false;
}

static const char *bind_hint(int ret)
{
	if (ret == -EACCES)
		return " (a port below 1024 needs CAP_NET_BIND_SERVICE, which "
		       "dnsveil dropped after start-up: restart it to add this "
		       "listener)";
	if (ret == -EADDRINUSE)
		return " (another process holds it, or a udp:// or quic:// "
		       "listener on it that a reload removed is still "
		       "finishing its queries: up to pool.query-timeout-ms)";
	return "";
}

static int probe_new_listeners(const dv_config_t *cur, const dv_config_t *next,
			       char *err, size_t err_len)
{
	for (unsigned i = 0; i < next->n_listen; i++) {
		const dv_url_t *u = &next->listen[i];
		if (has_url(cur, u))
			continue;
		int ret = 0;
		if (uses(u->scheme, SOCK_DGRAM) && !held(cur, u, SOCK_DGRAM))
			ret = dv_transport_bind_probe(u, SOCK_DGRAM);
		if (!ret && uses(u->scheme, SOCK_STREAM) &&
		    !held(cur, u, SOCK_STREAM))
			ret = dv_transport_bind_probe(u, SOCK_STREAM);
		if (!ret)
			continue;
		snprintf(err, err_len, "%s: listen: %s: cannot bind: %s%s",
			 next->source[0] ? next->source : "command line",
			 u->text, strerror(-ret), bind_hint(ret));
		return DV_ECONFIG;
	}
	return 0;
}

static bool has_tls_upstream(const dv_config_t *cfg)
{
	for (unsigned i = 0; i < cfg->n_upstream; i++)
		if (dv_upstream_scheme_tls(cfg->upstream[i].scheme))
			return true;
	for (unsigned i = 0; i < cfg->n_fallback; i++)
		if (dv_upstream_scheme_tls(cfg->fallback[i].scheme))
			return true;
	return false;
}

/* The server contexts of listener kinds the running config has none of
 * (made as at start, main.c tls_open), and the TLS library for them or
 * for tls:// and https:// upstreams. */
static int open_contexts(dv_reload_t *r, const dv_config_t *next, char *err,
			 size_t err_len)
{
	static const char *const dot_alpn[] = { "dot", NULL };
	static const char *const doh_alpn[] = { "h2", "http/1.1", NULL };
	dv_shared_t *sh = r->shared;
	bool dot = has_scheme(next, DV_SCHEME_TLS) && !sh->tls_dot;
	bool doh = has_scheme(next, DV_SCHEME_HTTPS) && !sh->tls_doh;
	bool doq = has_scheme(next, DV_SCHEME_QUIC) && !sh->tls_doq;
	if ((dot || doh || has_tls_upstream(next)) && !r->tls_ready) {
		if (dv_tls_init(next->tls_ticket_rotation_s) != 0) {
			snprintf(err, err_len, "cannot initialise TLS");
			return DV_ECONFIG;
		}
		r->tls_ready = true;
		if (r->tls_init)
			*r->tls_init = true;
		if (sh->keyfile)
			dv_tls_ticket_keyfile(sh->keyfile);
	}
	if (dot &&
	    !(sh->tls_dot = dv_tls_server_new(next->tls_cert, next->tls_key,
					      dot_alpn, err, err_len)))
		return DV_ECONFIG;
	if (doh &&
	    !(sh->tls_doh = dv_tls_server_new(next->tls_cert, next->tls_key,
					      doh_alpn, err, err_len)))
		return DV_ECONFIG;
	if (doq) {
		if (getrandom(sh->quic_secret, sizeof(sh->quic_secret), 0) !=
		    (ssize_t)sizeof(sh->quic_secret)) {
			snprintf(err, err_len,
				 "cannot read random bytes for QUIC");
			return DV_ECONFIG;
		}
		sh->tls_doq = dv_quic_tls_server_ctx_new(
			next->tls_cert, next->tls_key, "doq",
			next->doq_early_data != 0, err, err_len);
		if (!sh->tls_doq)
			return DV_ECONFIG;
		if (sh->keyfile)
			dv_quic_tls_ctx_keyfile(sh->tls_doq, sh->keyfile);
	}
	return 0;
}

int dv_reload_net_check(dv_reload_t *r, const dv_config_t *next, char *err,
			size_t err_len)
{
	int ret = probe_new_listeners(dv_reload_current(r), next, err, err_len);
	return ret ? ret : open_contexts(r, next, err, err_len);
}

/* `w` serves with `c`, or serves no more */
static bool applied(dv_worker_t *w, const dv_config_t *c)
{
	return __atomic_load_n(&w->applied_cfg, __ATOMIC_ACQUIRE) == c ||
	       dv_worker_ended(w);
}

void dv_reload_net_apply(dv_reload_t *r, const dv_config_t *next)
{
	const dv_config_t *c = dv_cfgref_new(next);
	if (!c) {
		dv_log_error("SIGHUP: out of memory: listeners, upstreams, "
			     "limits and the doh, doq and cache settings stay "
			     "as they were");
		return;
	}
	/* worker 0 hands it on to 1, and so on (worker.h reload_next) */
	if (r->n_workers)
		dv_worker_reconfigure(r->workers[0], c);
	dv_cfgref_drop(r->live);
	r->live = c;
	/* "reloaded" (and POST /reload's 200, READY=1) once every worker
	 * serves with it: the new listeners answer */
	uint64_t end = dv_now_ms() + 5000;
	for (unsigned i = 0; i < r->n_workers; i++) {
		dv_worker_t *w = r->workers[i];
		while (!applied(w, c) && dv_now_ms() < end) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		if (!applied(w, c))
			dv_log_warn("SIGHUP: worker %u has not applied the "
				    "configuration within 5 s; it will",
				    w->index);
	}
}

void dv_reload_net_free(dv_reload_t *r)
{
	dv_cfgref_drop(r->live);
	r->live = NULL;
}

/*
 * The DoQ server engine's optional limits that imitate other servers
 * (dv_doq_server_config_t.max_unfinished), for test servers standing in
 * for them.  Knot DNS 3.4 (libknot/quic: MAX_STREAMS_PER_CONN 10) keeps
 * its streams in an array from the oldest unfinished one (a stream is
 * finished when its answer is acknowledged or the client reset it) to
 * the newest; data on a stream that would make that array longer than 10
 * fails ngtcp2's recv_stream_data callback, and knotd then drops the
 * connection from its table without a CONNECTION_CLOSE: later packets of
 * it are ignored, so the client sees a server that went silent.  The
 * credit it advertises (initial_max_streams_bidi 1024) is never raised;
 * that is max_streams_total, in doq_server.c.
 */
#include "src/proto/doq_server_int.h"

bool dv_doq_sconn_over_limit(doq_conn_t *c, int64_t id)
{
	unsigned max = c->srv->cfg.max_unfinished;
	if (c->mute)
		return true;
	if (!max)
		return false;
	int64_t oldest = id;
	for (const doq_stream_t *s = c->streams; s; s = s->all_next)
		if (!s->closed && s->out.id < oldest)
			oldest = s->out.id;
	/* client bidi stream ids go up by 4 */
	if ((id - oldest) / 4 + 1 <= (int64_t)max)
		return false;
	c->mute = true;
	if (c->srv->cb.on_failure)
		c->srv->cb.on_failure(c->srv->app, c, "silenced",
				      "more unfinished streams than "
				      "max_unfinished");
	return true;
}

void dv_doq_sconn_credit_back(doq_conn_t *c)
{
	uint64_t cap = c->srv->cfg.max_streams_total;
	if (cap && c->credit >= cap)
		return;
	ngtcp2_conn_extend_max_streams_bidi(c->q.conn, 1);
	c->credit++;
}

unsigned dv_doq_server_open_conns(const dv_doq_server_t *srv)
{
	return srv->n_conns - srv->n_closing;
}

/* A reload: what new connections take from the config.  The handshake
 * caps size the server's tables at creation and stay. */
void dv_doq_server_set_limits(dv_doq_server_t *srv,
			      const dv_doq_server_config_t *cfg)
{
	srv->cfg.max_connections = cfg->max_connections;
	srv->cfg.max_streams = cfg->max_streams;
	srv->cfg.idle_timeout_ms = cfg->idle_timeout_ms;
	srv->cfg.handshake_timeout_ms = cfg->handshake_timeout_ms;
	srv->cfg.read_timeout_ms = cfg->read_timeout_ms;
	srv->cfg.token_lifetime_s = cfg->token_lifetime_s;
	srv->cfg.retry = cfg->retry;
}

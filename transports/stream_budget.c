/*
 * A stream connection's unsent output, and its worker's budget for all of
 * them together (limits.worker-max-output).
 *
 * What counts: each connection's output buffer (its capacity), what the
 * I/O layer holds of it (TLS records the socket did not take) and what the
 * application holds that it has not output yet (DoH: the answers its
 * HTTP/2 streams or HTTP/1.1 response queue keep until the client's flow
 * control or the order of responses lets them out).
 *
 * The worker goes over its budget when the sum reaches
 * limits.worker-max-output and is back under it when the sum falls under
 * half of that.  While it is over, a connection that has any unsent output
 * takes no more input (the socket is not read, and what was read is fed
 * to the application in small pieces, the budget checked between them),
 * so that many clients that do not read cannot together hold more than
 * the budget plus one piece's answers each; a connection with nothing
 * unsent still takes input, so a client that reads its answers is never
 * held up by those that don't.  Output the application holds only until
 * the client's own input releases it (HTTP/2 answers stalled by its
 * flow-control window) counts in the budget but does not stop input (the
 * client's WINDOW_UPDATE must get through); doh.max-streams bounds it per
 * connection.
 */
#include "transports/stream_conn.h"

#include "src/core/stats.h"
#include "src/daemon/worker.h"

/* The worker's buffered output moves by +add -sub: over the budget at the
 * limit (counted), back under it below half. */
static void budget_move(dv_worker_t *w, size_t add, size_t sub)
{
	w->stream_out_bytes += add;
	w->stream_out_bytes -= sub;
	uint64_t cap = w->cfg->worker_max_output_bytes;
	if (!w->stream_out_over && w->stream_out_bytes >= cap) {
		w->stream_out_over = true;
		DV_STAT_INC(&w->stats, tcp_output_over_budget);
	} else if (w->stream_out_over && w->stream_out_bytes < cap / 2) {
		w->stream_out_over = false;
	}
	DV_STAT_SET(&w->stats, tcp_output_bytes, w->stream_out_bytes);
}

void dv_stream_out_set_cap(conn_t *c, uint8_t *out, size_t cap)
{
	budget_move(c->pub.l->w, cap, c->out_cap);
	c->out = out;
	c->out_cap = cap;
}

void dv_stream_held_update(conn_t *c)
{
	const dv_stream_io_t *io = c->pub.l->io;
	const dv_stream_app_t *app = io->app;
	size_t io_held = io->unsent && c->pub.io_state
				 ? io->unsent((dv_stream_conn_t *)&c->pub)
				 : 0;
	size_t app_held = app->unsent && c->pub.app_state
				  ? app->unsent((dv_stream_conn_t *)&c->pub)
				  : 0;
	if (io_held == c->io_held && app_held == c->app_held)
		return;
	budget_move(c->pub.l->w, io_held + app_held, c->io_held + c->app_held);
	c->io_held = io_held;
	c->app_held = app_held;
}

size_t dv_stream_out_pending(const conn_t *c)
{
	const dv_stream_io_t *io = c->pub.l->io;
	size_t held = io->unsent && c->pub.io_state
			      ? io->unsent((dv_stream_conn_t *)&c->pub)
			      : 0;
	return dv_stream_out_buffered(c) + held;
}

bool dv_stream_out_full(const conn_t *c, size_t cap)
{
	size_t p = dv_stream_out_pending(c);
	return p >= cap || (p && c->pub.l->w->stream_out_over);
}

bool dv_stream_input_held(const conn_t *c)
{
	const dv_stream_app_t *app = c->pub.l->io->app;
	if (!c->pub.l->w->stream_out_over)
		return false;
	if (dv_stream_out_pending(c))
		return true;
	/* not output that waits for the client's input (HTTP/2 flow
	 * control): holding its input back would hold that output forever */
	return app->output_ready && c->pub.app_state &&
	       app->output_ready((dv_stream_conn_t *)&c->pub);
}

/*
 * DNS messages on a stream connection (RFC 1035 4.2.2, RFC 7766, RFC 7858):
 * the application of Do53 TCP and DoT on top of transports/stream.c.
 *
 * Messages are taken in place from the connection's read buffer
 * (src/proto/dns_framer.h: no copy until the query object) and handed to
 * the core one at a time, each only while the connection is under its
 * limits (limits.tcp-max-inflight queries in flight, limits.tcp-max-output-
 * bytes unsent): a cache hit is answered at once and never counts as in
 * flight, so the output cap is checked before every message.  Reading
 * stops at those limits and resumes at half of each.  Answers are framed
 * straight into the connection's output buffer as they come (so out of
 * order, RFC 7766 6.2.1.1), with an EDNS keepalive (RFC 7828) when the
 * query had one, padded on an encrypted transport (RFC 8467).
 *
 * A zero-length message breaks DoT framing (no DNS message is empty): the
 * connection is closed.  Over plain TCP it goes to the core, which drops
 * it as it drops any message too short to be DNS.  Neither is a PROXY
 * protocol header (a load balancer configured for it in front of a listener
 * without ?proxy-protocol): closed at once rather than read as a 3338-byte
 * message that never completes.
 */
#include <string.h>

#include "src/core/query.h"
#include "src/core/wire.h"
#include "src/daemon/worker.h"
#include "src/proto/dns_framer.h"
#include "src/proto/proxy.h"
#include "transports/stream.h"

/* The framing rules are the connection's application state (set at
 * open: never NULL while the application runs). */
static dv_dns_framer_t tcp_framer = {.min_len = 0, .max_len = 65535};
static dv_dns_framer_t dot_framer = {.min_len = 1, .max_len = 65535};

static const dv_config_t *CFG(const dv_stream_conn_t *c)
{
	return c->l->w->cfg;
}

static int dns_open(dv_stream_conn_t *c)
{
	c->app_state = c->l->io->encrypted ? &dot_framer : &tcp_framer;
	return 0;
}

static uint16_t keepalive_100ms(const dv_config_t *cfg)
{
	unsigned v = cfg->tcp_idle_timeout_ms / 100;
	return v > 0xffff ? 0xffff : (uint16_t)v;
}

static void dns_reply(dv_query_t *q, const uint8_t *wire, size_t len)
{
	dv_stream_conn_t *c = q->conn;
	if (!dv_stream_reply_begin(c)) {
		dv_stream_reply_end(c); /* frees a closed connection */
		return;
	}
	/* room for the answer plus an EDNS keepalive option and padding */
	size_t extra = q->view.edns_keepalive ? 6 + DV_PAD_BLOCK + 4 : 0;
	uint8_t *frame = dv_stream_out_reserve(c, DV_DNS_FRAME_PREFIX + len +
						       extra, 1024);
	if (!frame) {
		dv_stream_reply_end(c);
		return;
	}
	uint8_t *msg = frame + DV_DNS_FRAME_PREFIX;
	memcpy(msg, wire, len);
	if (q->view.edns_keepalive) {
		/* RFC 7828: answer with the idle timeout we apply */
		int n = dv_wire_add_keepalive(
			msg, len, len + extra, keepalive_100ms(CFG(c)),
			q->view.edns_padding ? q->pad_block : 0);
		if (n > 0)
			len = (size_t)n;
	}
	dv_dns_frame_prefix(frame, len);
	dv_stream_out_commit(c, DV_DNS_FRAME_PREFIX + len);
	dv_stream_reply_end(c);
}

/* Hand every whole message at the front of the input to the core, as long
 * as the connection is under its limits: how many bytes were taken. */
static ssize_t dns_input(dv_stream_conn_t *c, const uint8_t *data,
			 size_t len)
{
	const dv_config_t *cfg = CFG(c);
	const dv_dns_framer_t *f = c->app_state;
	size_t off = 0;
	dv_dns_msg_t m;
	while (dv_stream_under(c, cfg->tcp_max_inflight,
			       cfg->tcp_max_output_bytes)) {
		if (dv_proxy_v2_is_signature(data + off, len - off)) {
			/* a load balancer's PROXY header on a listener without
			 * ?proxy-protocol: its length prefix would make us
			 * wait for 3338 bytes until the read timeout */
			dv_stream_abort(c, "PROXY header on a listener "
					   "without ?proxy-protocol");
			return 0;
		}
		int r = dv_dns_framer_next(f, data, len, &off, &m);
		if (r == 0)
			break;
		if (r < 0) {
			/* RFC 7858 framing broken: no DNS message is empty */
			dv_stream_abort(c, "zero-length message");
			return 0;
		}
		dv_query_t *q = dv_stream_query(c, m.msg, m.len, dns_reply);
		if (!q) {
			dv_stream_abort(c, "out of memory");
			return 0;
		}
		(void)dv_stream_submit(c, q);
	}
	/* what is left is a message that has just started: its read
	 * timeout runs from now */
	if (off)
		dv_stream_progress(c);
	return (ssize_t)off;
}

/* Stop reading at the high marks, resume at half of each. */
static bool dns_want_read(dv_stream_conn_t *c, bool reading)
{
	const dv_config_t *cfg = CFG(c);
	if (reading)
		return dv_stream_under(c, cfg->tcp_max_inflight,
				       cfg->tcp_max_output_bytes);
	return dv_stream_under(c, cfg->tcp_max_inflight / 2 + 1,
			       cfg->tcp_max_output_bytes / 2 + 1);
}

static bool dns_input_ready(dv_stream_conn_t *c, const uint8_t *in,
			    size_t len)
{
	(void)c;
	return dv_dns_framer_need(in, len) <= len;
}

static size_t dns_input_need(dv_stream_conn_t *c, const uint8_t *in,
			     size_t len)
{
	(void)c;
	return dv_dns_framer_need(in, len);
}

const dv_stream_app_t dv_stream_dns_app = {
	.open = dns_open,
	.input = dns_input,
	.want_read = dns_want_read,
	.input_ready = dns_input_ready,
	.input_need = dns_input_need,
};

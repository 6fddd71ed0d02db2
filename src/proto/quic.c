/*
 * The QUIC glue both DoQ ends share.  See quic.h.
 */
#include "src/proto/quic.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	dv_quic_conn_t *q =
		(dv_quic_conn_t *)((char *)ref - offsetof(dv_quic_conn_t, ref));
	return q->conn;
}

void dv_quic_conn_init(dv_quic_conn_t *q, void *owner)
{
	q->ref.get_conn = get_conn;
	q->ref.user_data = owner;
}

int dv_quic_conn_set_tls(dv_quic_conn_t *q, dv_quic_tls_t *tls)
{
	if (!tls)
		return -ENOMEM;
	q->tls = tls;
	ngtcp2_conn_set_tls_native_handle(q->conn, dv_quic_tls_native(tls));
	return 0;
}

void dv_quic_conn_shed_tls(dv_quic_conn_t *q)
{
	if (!q->tls || !dv_quic_tls_native(q->tls))
		return;
	ngtcp2_conn_set_tls_native_handle(q->conn, NULL);
	dv_quic_tls_shed(q->tls);
}

void dv_quic_conn_release(dv_quic_conn_t *q)
{
	if (q->conn)
		ngtcp2_conn_del(q->conn);
	q->conn = NULL;
	dv_quic_tls_free(q->tls);
	q->tls = NULL;
}

#ifndef DV_NOPOOL
static void *mem_malloc(size_t size, void *user_data)
{
	return dv_pages_malloc(user_data, size);
}

static void mem_free(void *ptr, void *user_data)
{
	dv_pages_release(user_data, ptr);
}

static void *mem_calloc(size_t nmemb, size_t size, void *user_data)
{
	return dv_pages_calloc(user_data, nmemb, size);
}

static void *mem_realloc(void *ptr, size_t size, void *user_data)
{
	return dv_pages_realloc(user_data, ptr, size);
}
#endif

const ngtcp2_mem *dv_quic_mem_init(ngtcp2_mem *m, dv_pages_t *pages)
{
#ifdef DV_NOPOOL
	(void)m;
	(void)pages;
	return NULL;
#else
	if (!pages)
		return NULL;
	*m = (ngtcp2_mem){
		.user_data = pages,
		.malloc = mem_malloc,
		.free = mem_free,
		.calloc = mem_calloc,
		.realloc = mem_realloc,
	};
	return m;
#endif
}

void dv_quic_rand(uint8_t *dest, size_t len)
{
	while (len) {
		ssize_t n = getrandom(dest, len, 0);
		if (n <= 0)
			continue; /* EINTR; getrandom does not fail otherwise */
		dest += n;
		len -= (size_t)n;
	}
}

void dv_quic_rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *rctx)
{
	(void)rctx;
	dv_quic_rand(dest, len);
}

void dv_quic_cid_new(ngtcp2_cid *cid, size_t len, int prefix)
{
	cid->datalen = len;
	dv_quic_rand(cid->data, len);
	if (prefix >= 0)
		cid->data[0] = (uint8_t)prefix;
}

void dv_quic_path_to_ngtcp2(ngtcp2_path *np, const dv_quic_path_t *p)
{
	np->local.addr = (struct sockaddr *)&p->local;
	np->local.addrlen = p->local_len;
	np->remote.addr = (struct sockaddr *)&p->remote;
	np->remote.addrlen = p->remote_len;
	np->user_data = p->ctx;
}

/* After dv_quic_conn_shed_tls() there is no TLS session to read into; a
 * peer has nothing more to say in TLS then (QUIC has no KeyUpdate message
 * and no post-handshake client authentication, RFC 9001 sections 6 and
 * 4.4), so whatever CRYPTO data comes is an unexpected message. */
static int recv_crypto_data_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level,
			       uint64_t offset, const uint8_t *data,
			       size_t len, void *user_data)
{
	if (!ngtcp2_conn_get_tls_native_handle(conn)) {
		ngtcp2_conn_set_tls_alert(conn, 10); /* unexpected_message */
		return NGTCP2_ERR_CRYPTO;
	}
	return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data,
						 len, user_data);
}

void dv_quic_callbacks_init(ngtcp2_callbacks *cb)
{
	memset(cb, 0, sizeof(*cb));
	cb->recv_crypto_data = recv_crypto_data_cb;
	cb->encrypt = ngtcp2_crypto_encrypt_cb;
	cb->decrypt = ngtcp2_crypto_decrypt_cb;
	cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
	cb->update_key = ngtcp2_crypto_update_key_cb;
	cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
	cb->delete_crypto_cipher_ctx =
		ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
	cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
	cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
	cb->rand = dv_quic_rand_cb;
}

void dv_quic_settings_init(ngtcp2_settings *s, uint64_t now,
			   uint64_t handshake_timeout)
{
	ngtcp2_settings_default(s);
	s->initial_ts = now;
	s->handshake_timeout = handshake_timeout;
}

void dv_quic_params_init(ngtcp2_transport_params *p, uint64_t idle_timeout)
{
	ngtcp2_transport_params_default(p);
	p->initial_max_streams_uni = 0;
	p->max_idle_timeout = idle_timeout;
	p->active_connection_id_limit = 4;
}

uint8_t dv_quic_liberr(ngtcp2_conn *conn, int rv,
		       ngtcp2_connection_close_error *ce)
{
	if (rv == NGTCP2_ERR_CRYPTO) {
		uint8_t alert = ngtcp2_conn_get_tls_alert(conn);
		ngtcp2_connection_close_error_set_transport_error_tls_alert(
			ce, alert, NULL, 0);
		return alert;
	}
	ngtcp2_connection_close_error_set_transport_error_liberr(ce, rv, NULL,
								 0);
	return 0;
}

ngtcp2_ssize dv_quic_write_close(ngtcp2_conn *conn, ngtcp2_path_storage *ps,
				 uint8_t *buf, size_t cap,
				 const ngtcp2_connection_close_error *ce,
				 uint64_t now)
{
	ngtcp2_pkt_info pi;
	ngtcp2_path_storage_zero(ps);
	return ngtcp2_conn_write_connection_close(conn, &ps->path, &pi, buf,
						  cap, ce, now);
}

void dv_quic_update_tx_time(ngtcp2_conn *conn, uint64_t now)
{
	if (ngtcp2_conn_get_handshake_completed(conn))
		ngtcp2_conn_update_pkt_tx_time(conn, now);
}

ngtcp2_ssize dv_quic_write(ngtcp2_conn *conn, ngtcp2_path_storage *ps,
			   uint8_t *buf, size_t cap, uint64_t now,
			   const dv_quic_sendq_t *q, void *arg)
{
	ngtcp2_pkt_info pi;
	ngtcp2_path_storage_zero(ps);
	dv_quic_out_t *s = q->next(arg, NULL);
	for (;;) {
		ngtcp2_vec vec = {0};
		size_t nvec = 0;
		int64_t sid = -1;
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		if (s) {
			sid = s->id;
			vec.base = (uint8_t *)s->data + s->sent;
			vec.len = s->len - s->sent;
			nvec = 1;
			if (s->fin)
				flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		ngtcp2_ssize ndata = -1;
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(
			conn, &ps->path, &pi, buf, cap, &ndata, flags, sid,
			nvec ? &vec : NULL, nvec, now);
		if (s && ndata >= 0) {
			s->sent += (size_t)ndata;
			if (s->sent == s->len) { /* with the FIN, if asked */
				dv_quic_out_t *next = q->next(arg, s);
				q->done(arg, s);
				s = next;
			}
		}
		if (n == NGTCP2_ERR_WRITE_MORE && nvec)
			continue;
		if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED ||
		    n == NGTCP2_ERR_STREAM_SHUT_WR ||
		    n == NGTCP2_ERR_STREAM_NOT_FOUND) {
			dv_quic_out_t *next = s ? q->next(arg, s) : NULL;
			if (s)
				q->blocked(arg, s,
					   n != NGTCP2_ERR_STREAM_DATA_BLOCKED);
			s = next;
			continue;
		}
		return n;
	}
}

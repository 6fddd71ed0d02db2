/*
 * A server's TLS 1.3 connection leaves wolfSSL for our record layer
 * (tls13_rec.h) once its handshake is done: see dv_tls_detach() below.
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "src/core/log.h"
#include "src/tls/tls13_rec.h"
#include "src/tls/tls_int.h"

/*
 * The traffic secrets of a TLS 1.3 connection, for our record layer's
 * KeyUpdate (RFC 8446 §7.2).  Debian's wolfSSL 5.5.4 is built without its
 * secret callback (HAVE_SECRET_CALLBACK), but it keeps both application
 * traffic secrets inside its connection object for its own KeyUpdate.  So
 * they are found there by what they derive: a candidate counts only if
 * HKDF-Expand-Label(candidate, "key") and (..., "iv") are exactly the write
 * key and IV that wolfSSL exports for that side (wolfSSL_GetClientWriteKey
 * ...), which other bytes do with a chance under 2^-200.  Where they
 * sit is learned once per process by trying every offset (some
 * milliseconds, at the first TLS 1.3 handshake) and checked again the
 * same way for every connection; if the object holds no such secret the
 * connection keeps wolfSSL's record layer.
 */
static atomic_long secret_off[2] = { -1, -1 }; /* client, server */
static atomic_bool secret_scanned[2];

static bool secret_find(WOLFSSL *ssl, int side, unsigned suite,
			uint8_t *out)
{
	const uint8_t *key = side ? wolfSSL_GetServerWriteKey(ssl)
				  : wolfSSL_GetClientWriteKey(ssl);
	const uint8_t *iv = side ? wolfSSL_GetServerWriteIV(ssl)
				 : wolfSSL_GetClientWriteIV(ssl);
	const uint8_t *obj = (const uint8_t *)ssl;
	size_t size = malloc_usable_size(ssl);
	size_t hl = dv_tls13_hash_len(suite);
	if (!key || !iv || !hl || wolfSSL_GetIVSize(ssl) != 12 || size < hl)
		return false;
	long off = atomic_load(&secret_off[side]);
	if (off < 0 || (size_t)off > size - hl ||
	    !dv_tls13_secret_check(suite, obj + off, key, iv)) {
		if (atomic_exchange(&secret_scanned[side], true))
			return false;
		for (off = 0; (size_t)off <= size - hl; off++)
			if (dv_tls13_secret_check(suite, obj + off, key, iv))
				break;
		if ((size_t)off > size - hl) {
			dv_log_warn("tls: the TLS 1.3 traffic secrets are not "
				    "where this wolfSSL keeps them: TLS 1.3 "
				    "connections keep wolfSSL's record layer "
				    "(and its memory)");
			return false;
		}
		atomic_store(&secret_off[side], off);
	}
	memcpy(out, obj + off, hl);
	return true;
}

/*
 * After a server's TLS 1.3 handshake with one of the suites of
 * tls13_rec.h: the record layer becomes ours and wolfSSL's connection
 * object goes (with its session, transcript and buffers: most of what an
 * idle connection costs).  wolfSSL reads a record's header and then
 * exactly its body, so when its handshake is done it holds no byte past
 * the client's Finished: what the same read brought along (queries sent
 * right behind the Finished) is in rx_keep, not yet fed, and goes to our
 * record layer.  Its NewSessionTicket records were written (the sequence
 * number counts them), and what a caller may ask later (SNI, ALPN,
 * resumption, the certificate's client ID) is copied first.  Anything
 * else (TLS 1.2, another suite, bytes held inside wolfSSL) stays on
 * wolfSSL.
 */
void dv_tls_detach(dv_tls_t *t)
{
	WOLFSSL *ssl = t->ssl;
	unsigned suite = (unsigned)wolfSSL_get_current_cipher_suite(ssl);
	uint8_t rd[48], wr[48];
	word64 rd_seq = 0, wr_seq = 0;
	if (!t->own_io || wolfSSL_version(ssl) != TLS1_3_VERSION ||
	    !dv_tls13_hash_len(suite) || wolfSSL_has_pending(ssl) ||
	    wolfSSL_want_write(ssl))
		return;
	(void)wolfSSL_GetPeerSequenceNumber(ssl, &rd_seq);
	(void)wolfSSL_GetSequenceNumber(ssl, &wr_seq);
	if (secret_find(ssl, 0, suite, rd) && secret_find(ssl, 1, suite, wr))
		t->rec = dv_tls13_rec_new(suite, rd, rd_seq, wr, wr_seq);
	explicit_bzero(rd, sizeof(rd));
	explicit_bzero(wr, sizeof(wr));
	if (!t->rec)
		return;
	(void)dv_tls_sni(t);
	(void)dv_tls_alpn(t);
	t->resumed = wolfSSL_session_reused(ssl) == 1;
	t->ssl = NULL;
	wolfSSL_free(ssl);
}

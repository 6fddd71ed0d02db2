/*
 * wolfSSL behind the dv_tls_* seam.  See tls.h.
 */
#include "src/tls/tls.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/pem.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "src/core/errors.h"
#include "src/core/log.h"
#include "src/tls/cert_names.h"
#include "src/tls/keyfile.h"
#include "src/tls/sni.h"
#include "src/tls/tls13_rec.h"
#include "src/tls/tls_int.h"

/* ---- session ticket keys: process-wide, rotating ---- */

typedef struct {
	uint8_t name[WOLFSSL_TICKET_NAME_SZ];
	uint8_t key[CHACHA20_POLY1305_AEAD_KEYSIZE];
	time_t created;
	bool valid;
} ticket_key_t;

static struct {
	pthread_mutex_t lock;
	ticket_key_t cur, prev;
	unsigned rotation_s;
	/* tls.ticket-key-file: the keys come from there (and rotate when
	 * it changes) instead of from getrandom() on a schedule */
	dv_keyfile_t *kf;
	uint64_t kf_gen; /* of the copies in cur and prev */
} tickets = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void ticket_key_from(ticket_key_t *k, const dv_keyfile_keys_t *fk)
{
	static_assert(sizeof(k->name) == sizeof(fk->ticket_name),
		      "ticket name size");
	static_assert(sizeof(k->key) == sizeof(fk->ticket_key),
		      "ticket key size");
	memcpy(k->name, fk->ticket_name, sizeof(k->name));
	memcpy(k->key, fk->ticket_key, sizeof(k->key));
	k->valid = true;
}

/* Caller holds tickets.lock.  The file's keys as they are now. */
static void ticket_sync_file(void)
{
	if (dv_keyfile_generation(tickets.kf) == tickets.kf_gen)
		return;
	dv_keyfile_keys_t cur, prev;
	bool has_prev;
	tickets.kf_gen = dv_keyfile_get(tickets.kf, &cur, &prev, &has_prev);
	ticket_key_from(&tickets.cur, &cur);
	tickets.prev.valid = false;
	if (has_prev)
		ticket_key_from(&tickets.prev, &prev);
	memset(&cur, 0, sizeof(cur));
	memset(&prev, 0, sizeof(prev));
}

static int ticket_key_make(ticket_key_t *k, time_t now)
{
	if (getrandom(k->name, sizeof(k->name), 0) != sizeof(k->name) ||
	    getrandom(k->key, sizeof(k->key), 0) != sizeof(k->key))
		return -EIO;
	k->created = now;
	k->valid = true;
	return 0;
}

/* Caller holds tickets.lock. */
static void ticket_rotate_if_due(time_t now)
{
	if (tickets.kf) {
		ticket_sync_file();
		return;
	}
	if (tickets.cur.valid &&
	    now - tickets.cur.created < (time_t)tickets.rotation_s)
		return;
	ticket_key_t next;
	if (ticket_key_make(&next, now) != 0)
		return; /* keep the current key rather than none */
	tickets.prev = tickets.cur;
	tickets.cur = next;
}

/* The ticket callback's context on contexts that ask for client
 * certificates. */
static const char no_resumption;

static int ticket_cb(WOLFSSL *ssl, unsigned char key_name[16],
		     unsigned char iv[16], unsigned char mac[32], int enc,
		     unsigned char *ticket, int in_len, int *out_len,
		     void *user)
{
	(void)ssl;
	/* a context that asks for client certificates resumes nothing: a
	 * ticket would stand in for a certificate it does not carry */
	if (user == &no_resumption)
		return enc ? WOLFSSL_TICKET_RET_FATAL
			   : WOLFSSL_TICKET_RET_REJECT;
	time_t now = time(NULL);
	ticket_key_t k;
	bool old = false;
	pthread_mutex_lock(&tickets.lock);
	ticket_rotate_if_due(now);
	if (enc) {
		k = tickets.cur;
	} else if (tickets.cur.valid &&
		   memcmp(key_name, tickets.cur.name, 16) == 0) {
		k = tickets.cur;
	} else if (tickets.prev.valid &&
		   memcmp(key_name, tickets.prev.name, 16) == 0 &&
		   (tickets.kf || now - tickets.prev.created <
					  2 * (time_t)tickets.rotation_s)) {
		k = tickets.prev;
		old = true;
	} else {
		k.valid = false;
	}
	pthread_mutex_unlock(&tickets.lock);
	if (!k.valid)
		return enc ? WOLFSSL_TICKET_RET_FATAL : WOLFSSL_TICKET_RET_REJECT;
	if (in_len < 0)
		return WOLFSSL_TICKET_RET_FATAL;
	if (enc) {
		memcpy(key_name, k.name, 16);
		if (getrandom(iv, 16, 0) != 16)
			return WOLFSSL_TICKET_RET_FATAL;
		memset(mac, 0, 32);
		if (wc_ChaCha20Poly1305_Encrypt(k.key, iv, key_name, 16, ticket,
						(word32)in_len, ticket, mac))
			return WOLFSSL_TICKET_RET_FATAL;
		*out_len = in_len;
		return WOLFSSL_TICKET_RET_OK;
	}
	if (wc_ChaCha20Poly1305_Decrypt(k.key, iv, key_name, 16, ticket,
					(word32)in_len, mac, ticket))
		return WOLFSSL_TICKET_RET_REJECT;
	*out_len = in_len;
	/* a ticket under the previous key is honoured and replaced */
	return old ? WOLFSSL_TICKET_RET_CREATE : WOLFSSL_TICKET_RET_OK;
}

int dv_tls_init(unsigned ticket_rotation_s)
{
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		return -EIO;
	tickets.rotation_s = ticket_rotation_s ? ticket_rotation_s : 3600;
	pthread_mutex_lock(&tickets.lock);
	ticket_rotate_if_due(time(NULL));
	pthread_mutex_unlock(&tickets.lock);
	return 0;
}

void dv_tls_ticket_keyfile(dv_keyfile_t *kf)
{
	pthread_mutex_lock(&tickets.lock);
	tickets.kf = kf;
	tickets.kf_gen = 0;
	if (kf)
		ticket_sync_file();
	else
		ticket_rotate_if_due(time(NULL));
	pthread_mutex_unlock(&tickets.lock);
}

void dv_tls_thread_exit(void)
{
	/* wolfSSL's per-thread ECC fixed-point cache (FP_ECC) */
	wc_ecc_fp_free();
	dv_tls_io_thread_exit();
}

void dv_tls_cleanup(void)
{
	wc_ecc_fp_free();
	wolfSSL_Cleanup();
}

/* ---- server contexts ---- */

#define ALPN_MAX 4

struct dv_tls_ctx {
	pthread_mutex_t lock; /* guards `ssl_ctx` swaps against wolfSSL_new */
	WOLFSSL_CTX *ssl_ctx;
	/* tls.client-ca ("" none) and tls.client-cert require */
	char client_ca[512];
	bool client_require;
	/* ALPN protocols as length-prefixed wire strings */
	unsigned n_alpn;
	char alpn[ALPN_MAX][32];
};

static int alpn_select(WOLFSSL *ssl, const unsigned char **out,
		       unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	dv_tls_ctx_t *ctx = arg;
	for (unsigned i = 0; i < ctx->n_alpn; i++) {
		size_t want = strlen(ctx->alpn[i]);
		for (unsigned p = 0; p < inlen;) {
			unsigned l = in[p];
			if (p + 1 + l > inlen)
				break;
			if (l == want && memcmp(in + p + 1, ctx->alpn[i], l) == 0) {
				*out = in + p + 1;
				*outlen = (unsigned char)l;
				return SSL_TLSEXT_ERR_OK;
			}
			p += 1 + l;
		}
	}
	return SSL_TLSEXT_ERR_NOACK; /* carry on without ALPN */
}

/*
 * Does `key` belong to the leaf certificate of `cert`?  Sign a message with
 * the key and verify it with the certificate's public key: Debian's
 * wolfSSL 5.5.4 wolfSSL_CTX_check_private_key() accepts a wrong EC key, and
 * a pair that does not match fails every handshake while the log would say
 * all is well.
 */
static bool keypair_matches(const char *cert, const char *key)
{
	static const char msg[] = "dnsveil certificate/key check";
	unsigned char sig[1024];
	size_t sig_len = sizeof(sig);
	bool ok = false;
	WOLFSSL_X509 *x = NULL;
	WOLFSSL_EVP_PKEY *pub = NULL, *priv = NULL;
	WOLFSSL_BIO *bio = NULL;
	WOLFSSL_EVP_MD_CTX *md = NULL;

	x = wolfSSL_X509_load_certificate_file(cert, WOLFSSL_FILETYPE_PEM);
	if (!x || !(pub = wolfSSL_X509_get_pubkey(x)))
		goto out;
	if (!(bio = wolfSSL_BIO_new_file(key, "r")) ||
	    !(priv = wolfSSL_PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)))
		goto out;
	if (!(md = wolfSSL_EVP_MD_CTX_new()))
		goto out;
	if (wolfSSL_EVP_DigestSignInit(md, NULL, wolfSSL_EVP_sha256(), NULL,
				       priv) != WOLFSSL_SUCCESS ||
	    wolfSSL_EVP_DigestSignUpdate(md, msg, sizeof(msg)) !=
		    WOLFSSL_SUCCESS ||
	    wolfSSL_EVP_DigestSignFinal(md, sig, &sig_len) != WOLFSSL_SUCCESS)
		goto out;
	wolfSSL_EVP_MD_CTX_free(md);
	if (!(md = wolfSSL_EVP_MD_CTX_new()))
		goto out;
	ok = wolfSSL_EVP_DigestVerifyInit(md, NULL, wolfSSL_EVP_sha256(), NULL,
					  pub) == WOLFSSL_SUCCESS &&
	     wolfSSL_EVP_DigestVerifyUpdate(md, msg, sizeof(msg)) ==
		     WOLFSSL_SUCCESS &&
	     wolfSSL_EVP_DigestVerifyFinal(md, sig, sig_len) ==
		     WOLFSSL_SUCCESS;
out:
	wolfSSL_EVP_MD_CTX_free(md);
	wolfSSL_EVP_PKEY_free(priv);
	wolfSSL_BIO_free(bio);
	wolfSSL_EVP_PKEY_free(pub);
	wolfSSL_X509_free(x);
	return ok;
}

/* ---- client certificates (tls.client-ca) ---- */

/*
 * Called for every certificate of the client's chain.  A chain that does
 * not verify fails the handshake under tls.client-cert require; otherwise
 * the connection goes on and the certificate names no one (cert_bad).
 * The CertificateVerify signature is checked either way.
 */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	WOLFSSL *ssl = wolfSSL_X509_STORE_CTX_get_ex_data(
		store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
	dv_tls_t *t = ssl ? wolfSSL_get_app_data(ssl) : NULL;
	if (preverify)
		return 1;
	if (!t)
		return 0;
	t->cert_bad = true;
	return t->cert_require ? 0 : 1;
}

static int client_ca_apply(const dv_tls_ctx_t *ctx, WOLFSSL_CTX *c, char *err,
			   size_t err_len)
{
	if (wolfSSL_CTX_load_verify_locations(c, ctx->client_ca, NULL) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, err_len,
			 "tls.client-ca: %s: cannot load the CA certificates",
			 ctx->client_ca);
		return DV_ECONFIG;
	}
	int mode = WOLFSSL_VERIFY_PEER;
	if (ctx->client_require)
		mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	wolfSSL_CTX_set_verify(c, mode, verify_cb);
	/* no resumption: every connection shows its certificate */
	(void)wolfSSL_CTX_NoTicketTLSv12(c);
	(void)wolfSSL_CTX_no_ticket_TLSv13(c);
	(void)wolfSSL_CTX_set_session_cache_mode(c, WOLFSSL_SESS_CACHE_OFF);
	(void)wolfSSL_CTX_set_TicketEncCtx(c, (void *)&no_resumption);
	return 0;
}

/* The client ID of the verified certificate the client sent, if any. */
static void cert_id_read(dv_tls_t *t)
{
	if (t->cert_bad)
		return;
	WOLFSSL_X509_CHAIN *ch = wolfSSL_get_peer_chain(t->ssl);
	if (!ch || wolfSSL_get_chain_count(ch) < 1)
		return;
	const unsigned char *der = wolfSSL_get_chain_cert(ch, 0);
	int len = wolfSSL_get_chain_length(ch, 0);
	if (der && len > 0)
		(void)dv_tls_cert_der_id(der, (size_t)len, t->cert_id);
}

static WOLFSSL_CTX *ctx_build(dv_tls_ctx_t *ctx, const char *cert,
			      const char *key, char *err, size_t err_len)
{
	WOLFSSL_CTX *c = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!c) {
		snprintf(err, err_len, "cannot create a TLS context");
		return NULL;
	}
	if (wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		snprintf(err, err_len, "cannot require TLS 1.2");
		goto fail;
	}
	if (wolfSSL_CTX_use_certificate_chain_file(c, cert) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, err_len, "%s: cannot load the certificate chain",
			 cert);
		goto fail;
	}
	if (wolfSSL_CTX_use_PrivateKey_file(c, key, WOLFSSL_FILETYPE_PEM) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, err_len, "%s: cannot load the private key", key);
		goto fail;
	}
	if (wolfSSL_CTX_check_private_key(c) != WOLFSSL_SUCCESS ||
	    !keypair_matches(cert, key)) {
		snprintf(err, err_len, "%s does not match the certificate %s",
			 key, cert);
		goto fail;
	}
	wolfSSL_CTX_set_TicketEncCb(c, ticket_cb);
	wolfSSL_CTX_set_TicketHint(c, (int)tickets.rotation_s);
	if (ctx->n_alpn)
		wolfSSL_CTX_set_alpn_select_cb(c, alpn_select, ctx);
	if (ctx->client_ca[0] && client_ca_apply(ctx, c, err, err_len) != 0)
		goto fail;
	return c;
fail:
	wolfSSL_CTX_free(c);
	return NULL;
}

dv_tls_ctx_t *dv_tls_server_new(const char *cert, const char *key,
				const char *const *alpn, char *err,
				size_t err_len)
{
	dv_tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	for (; alpn && *alpn && ctx->n_alpn < ALPN_MAX; alpn++)
		snprintf(ctx->alpn[ctx->n_alpn++], sizeof(ctx->alpn[0]), "%s",
			 *alpn);
	ctx->ssl_ctx = ctx_build(ctx, cert, key, err, err_len);
	if (!ctx->ssl_ctx) {
		dv_tls_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

int dv_tls_server_client_ca(dv_tls_ctx_t *ctx, const char *ca_file,
			    bool require, char *err, size_t err_len)
{
	if (strlen(ca_file) >= sizeof(ctx->client_ca)) {
		snprintf(err, err_len, "tls.client-ca: path too long");
		return DV_ECONFIG;
	}
	snprintf(ctx->client_ca, sizeof(ctx->client_ca), "%s", ca_file);
	ctx->client_require = require;
	if (!ca_file[0])
		return 0;
	return client_ca_apply(ctx, ctx->ssl_ctx, err, err_len);
}

int dv_tls_server_reload(dv_tls_ctx_t *ctx, const char *cert,
			 const char *key, char *err, size_t err_len)
{
	WOLFSSL_CTX *next = ctx_build(ctx, cert, key, err, err_len);
	if (!next)
		return DV_ECONFIG;
	pthread_mutex_lock(&ctx->lock);
	WOLFSSL_CTX *old = ctx->ssl_ctx;
	ctx->ssl_ctx = next;
	pthread_mutex_unlock(&ctx->lock);
	wolfSSL_CTX_free(old); /* connections that use it hold a reference */
	return 0;
}

void dv_tls_ctx_free(dv_tls_ctx_t *ctx)
{
	if (!ctx)
		return;
	if (ctx->ssl_ctx)
		wolfSSL_CTX_free(ctx->ssl_ctx);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

/* ---- client contexts ---- */

dv_tls_ctx_t *dv_tls_client_new(const char *ca_file, char *err,
				size_t err_len)
{
	dv_tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	WOLFSSL_CTX *c = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (!c) {
		snprintf(err, err_len, "cannot create a TLS client context");
		goto fail;
	}
	ctx->ssl_ctx = c;
	if (wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		snprintf(err, err_len, "cannot require TLS 1.2");
		goto fail;
	}
	if (ca_file && ca_file[0]) {
		if (wolfSSL_CTX_load_verify_locations(c, ca_file, NULL) !=
		    WOLFSSL_SUCCESS) {
			snprintf(err, err_len,
				 "%s: cannot load the CA certificates",
				 ca_file);
			goto fail;
		}
	} else if (wolfSSL_CTX_load_system_CA_certs(c) != WOLFSSL_SUCCESS) {
		snprintf(err, err_len,
			 "cannot load the system CA certificates (use --ca)");
		goto fail;
	}
	wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER, NULL);
	(void)wolfSSL_CTX_UseSessionTicket(c);
	return ctx;
fail:
	dv_tls_ctx_free(ctx);
	return NULL;
}

/* ---- connections ---- */


static dv_tls_t *tls_new(dv_tls_ctx_t *ctx, int fd, bool own_io)
{
	dv_tls_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->fd = fd;
	t->own_io = own_io;
	pthread_mutex_lock(&ctx->lock);
	t->ssl = wolfSSL_new(ctx->ssl_ctx);
	pthread_mutex_unlock(&ctx->lock);
	if (!t->ssl || wolfSSL_set_fd(t->ssl, fd) != WOLFSSL_SUCCESS) {
		dv_tls_free(t);
		return NULL;
	}
	t->cert_require = ctx->client_require;
	(void)wolfSSL_set_app_data(t->ssl, t); /* verify_cb finds it */
	if (own_io)
		dv_tls_io_attach(t);
	return t;
}

dv_tls_t *dv_tls_new(dv_tls_ctx_t *ctx, int fd)
{
	return tls_new(ctx, fd, true);
}

/*
 * A thread that verifies certificates grows wolfSSL's per-thread ECC
 * cache.  The workers free it at exit only when the process has TLS
 * listeners, so a thread that makes client connections registers a key
 * whose destructor frees it too (freeing twice is harmless).
 */
static pthread_key_t fp_key;
static pthread_once_t fp_once = PTHREAD_ONCE_INIT;
static bool fp_key_ok;

static void fp_destroy(void *arg)
{
	(void)arg;
	wc_ecc_fp_free();
}

static void fp_key_make(void)
{
	fp_key_ok = pthread_key_create(&fp_key, fp_destroy) == 0;
}

static void fp_thread_register(void)
{
	static __thread bool done;
	if (done)
		return;
	done = true;
	pthread_once(&fp_once, fp_key_make);
	if (fp_key_ok)
		(void)pthread_setspecific(fp_key, &fp_key);
}

dv_tls_t *dv_tls_connect_new(dv_tls_ctx_t *ctx, int fd, const char *name,
			     const char *alpn, dv_tls_session_t *session)
{
	/* wolfSSL_UseALPN() takes a writable list */
	char alpn_buf[32];
	size_t alen = strlen(alpn);
	if (alen == 0 || alen >= sizeof(alpn_buf))
		return NULL;
	memcpy(alpn_buf, alpn, alen + 1);
	fp_thread_register();
	/* upstream connections keep wolfSSL's own socket I/O */
	dv_tls_t *t = tls_new(ctx, fd, false);
	if (!t)
		return NULL;
	size_t nlen = strlen(name);
	if (wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, name,
			   (unsigned short)nlen) != WOLFSSL_SUCCESS ||
	    wolfSSL_check_domain_name(t->ssl, name) != WOLFSSL_SUCCESS ||
	    wolfSSL_UseALPN(t->ssl, alpn_buf, (unsigned)alen,
			    WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) !=
		    WOLFSSL_SUCCESS) {
		dv_tls_free(t);
		return NULL;
	}
	/* a stale or foreign session only costs a full handshake */
	if (session)
		(void)wolfSSL_set_session(t->ssl, session);
	return t;
}

dv_tls_session_t *dv_tls_session_get(dv_tls_t *t)
{
	return wolfSSL_get1_session(t->ssl);
}

void dv_tls_session_free(dv_tls_session_t *s)
{
	if (s)
		wolfSSL_SESSION_free(s);
}

void dv_tls_free(dv_tls_t *t)
{
	if (!t)
		return;
	if (t->ssl)
		wolfSSL_free(t->ssl);
	dv_tls13_rec_free(t->rec);
	free(t->pt_keep);
	free(t->rx_keep);
	free(t->tx_keep);
	free(t);
}

int dv_tls_map_error(dv_tls_t *t, int ret)
{
	int e = wolfSSL_get_error(t->ssl, ret);
	switch (e) {
	case WOLFSSL_ERROR_WANT_READ:
		return DV_TLS_WANT_READ;
	case WOLFSSL_ERROR_WANT_WRITE:
		return DV_TLS_WANT_WRITE;
	case WOLFSSL_ERROR_ZERO_RETURN:
		return DV_TLS_EOF;
	case SOCKET_PEER_CLOSED_E:
	case SOCKET_ERROR_E:
		if (ret == 0)
			return DV_TLS_EOF;
		return -EPIPE;
	default:
		return e < 0 ? e : -EPROTO;
	}
}

/*
 * After a server handshake: give the kernel back the pages of wolfSSL's
 * session object that hold nothing but zeros.  Debian's wolfSSL keeps
 * the session (37.5 KiB) for the connection's life, most of it room for
 * a peer certificate chain a server without client certificates never
 * fills (8 of its 10 pages).  For private anonymous memory a page given
 * back with MADV_DONTNEED reads as zeros again and is faulted in anew if
 * written, so the object's contents do not change; only the worker that
 * owns the connection touches it, and a page wholly inside one heap
 * block holds no allocator data.
 */
static void release_zero_pages(void *p, size_t n)
{
	const uintptr_t page = 4096;
	uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)p + n) & ~(page - 1);
	for (; a < end; a += page) {
		const uint64_t *w = (const uint64_t *)a;
		size_t i = 0;
		while (i < page / 8 && w[i] == 0)
			i++;
		if (i == page / 8)
			(void)madvise((void *)a, page, MADV_DONTNEED);
	}
}

void dv_tls_handshake_done(dv_tls_t *t)
{
	cert_id_read(t);
	dv_tls_detach(t);
	if (!t->ssl)
		return;
	/* Debian's wolfSSL keeps the handshake's temporary arrays (client
	 * and server random, pre-master secret, pending message: 5.4 KiB)
	 * for the connection's life; a server has no use for them once the
	 * handshake is done (it asks for no renegotiation and exports no
	 * keying material) */
	wolfSSL_FreeArrays(t->ssl);
	/* a client's certificate chain sits in the session: its pages hold
	 * data and stay, only the all-zero ones go */
	WOLFSSL_SESSION *s = wolfSSL_get_session(t->ssl);
	if (s)
		release_zero_pages(s, malloc_usable_size(s));
}

int dv_tls_handshake(dv_tls_t *t)
{
	if (t->own_io)
		return dv_tls_io_handshake(t);
	int ret = wolfSSL_accept(t->ssl);
	if (ret == WOLFSSL_SUCCESS) {
		dv_tls_handshake_done(t);
		return 0;
	}
	return dv_tls_map_error(t, ret);
}

int dv_tls_connect(dv_tls_t *t)
{
	int ret = wolfSSL_connect(t->ssl);
	if (ret == WOLFSSL_SUCCESS)
		return 0;
	return dv_tls_map_error(t, ret);
}

bool dv_tls_cert_error(int ret)
{
	switch (ret) {
	case DOMAIN_NAME_MISMATCH:
	case IPADDR_MISMATCH:
	case VERIFY_CERT_ERROR:
	case ASN_NO_SIGNER_E:
	case ASN_AFTER_DATE_E:
	case ASN_BEFORE_DATE_E:
	case ASN_SIG_CONFIRM_E:
		return true;
	default:
		return false;
	}
}

ssize_t dv_tls_read(dv_tls_t *t, void *buf, size_t len)
{
	if (t->own_io)
		return dv_tls_io_read(t, buf, len);
	int n = wolfSSL_read(t->ssl, buf, len > INT32_MAX ? INT32_MAX
							    : (int)len);
	if (n > 0)
		return n;
	return dv_tls_map_error(t, n);
}

ssize_t dv_tls_write(dv_tls_t *t, const void *buf, size_t len)
{
	if (t->own_io)
		return dv_tls_io_write(t, buf, len);
	int n = wolfSSL_write(t->ssl, buf, len > INT32_MAX ? INT32_MAX
							     : (int)len);
	if (n > 0)
		return n;
	return dv_tls_map_error(t, n);
}

size_t dv_tls_pending(dv_tls_t *t)
{
	if (t->rec)
		return dv_tls_io_rec_pending(t);
	int n = wolfSSL_pending(t->ssl);
	return (n > 0 ? (size_t)n : 0) + t->rx_keep_len;
}

bool dv_tls_drained(dv_tls_t *t)
{
	return t->own_io && t->drained;
}

int dv_tls_flush(dv_tls_t *t)
{
	return t->own_io ? dv_tls_io_flush(t) : 0;
}

size_t dv_tls_unsent(dv_tls_t *t)
{
	return t->tx_keep_len - t->tx_keep_off;
}

void dv_tls_shutdown(dv_tls_t *t)
{
	if (t->own_io) {
		/* close_notify goes after whatever is still unsent */
		dv_tls_io_shutdown(t);
		return;
	}
	/* behind a record wolfSSL could not send yet, its shutdown sends from
	 * a stale buffer (seen as a heap overflow under ASan): the peer that
	 * stopped reading gets no close_notify */
	if (wolfSSL_want_write(t->ssl))
		return;
	(void)wolfSSL_shutdown(t->ssl);
}

const char *dv_tls_sni(dv_tls_t *t)
{
	if (!t->sni_read) {
		t->sni_read = true;
		/* only a host name counts (src/tls/sni.h).  wolfSSL keeps
		 * the name as a C string, so one with a NUL inside is seen
		 * cut at the NUL here, where DoQ's parser ignores it */
		const char *name =
			wolfSSL_get_servername(t->ssl, WOLFSSL_SNI_HOST_NAME);
		size_t len = name ? strlen(name) : 0;
		if (dv_sni_host_name(name, len) && len < sizeof(t->sni)) {
			memcpy(t->sni, name, len);
			t->sni[len] = 0;
		}
	}
	return t->sni[0] ? t->sni : NULL;
}

const char *dv_tls_cert_id(dv_tls_t *t)
{
	return t->cert_id[0] ? t->cert_id : NULL;
}

const char *dv_tls_alpn(dv_tls_t *t)
{
	if (!t->ssl)
		return t->alpn[0] ? t->alpn : NULL;
	char *name = NULL;
	unsigned short len = 0;
	if (wolfSSL_ALPN_GetProtocol(t->ssl, &name, &len) != WOLFSSL_SUCCESS ||
	    !name || len == 0 || len >= sizeof(t->alpn))
		return NULL;
	memcpy(t->alpn, name, len);
	t->alpn[len] = 0;
	return t->alpn;
}

bool dv_tls_resumed(dv_tls_t *t)
{
	if (!t->ssl)
		return t->resumed;
	return wolfSSL_session_reused(t->ssl) == 1;
}

const char *dv_tls_version(dv_tls_t *t)
{
	if (!t->ssl)
		return "TLSv1.3"; /* only TLS 1.3 leaves wolfSSL */
	return wolfSSL_get_version(t->ssl);
}

const char *dv_tls_error(dv_tls_t *t, int ret)
{
	static __thread char buf[128];
	if (ret == DV_TLS_EOF)
		return "closed";
	/* wolfSSL's codes lie between -100 and -1000; errno values below */
	if (ret < 0 && ret > -100)
		return strerror(-ret);
	wolfSSL_ERR_error_string_n((unsigned long)(-ret), buf, sizeof(buf));
	(void)t;
	return buf;
}

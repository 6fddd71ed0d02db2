/*
 * The QUIC TLS seam on GnuTLS (ngtcp2_crypto_gnutls).  See quic_tls.h.
 */
#include "src/tls/quic_tls.h"

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/errors.h"
#include "src/core/ident.h"
#include "src/tls/cert_names.h"
#include "src/tls/keyfile.h"
#include "src/tls/sni.h"

/* TLS 1.3 only, the AEADs QUIC allows, no middlebox compatibility mode */
#define PRIORITY                                                             \
	"%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:"          \
	"-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"

/*
 * 0-RTT replay protection: GnuTLS rejects a ClientHello outside its time
 * window itself and asks this table about the ones inside it.  A bounded
 * set-associative table of fingerprints shared by all workers; when a set
 * is full of live entries the oldest is replaced (a replay of that one
 * then gets through, which DNS queries tolerate: RFC 9250 §4.5).
 */
#define REPLAY_SETS 1024
#define REPLAY_WAYS 4

typedef struct {
	uint64_t fp;
	time_t expires;
} replay_entry_t;

/* A server's certificate and key, shared by the sessions that began
 * with it: a reload swaps in a new one and the old one goes with its
 * last session. */
typedef struct {
	gnutls_certificate_credentials_t cred;
	unsigned refs;
} cred_ref_t;

struct dv_quic_tls_ctx {
	bool server;
	/* server: the pair new sessions take (cred_lock guards the swap;
	 * taken once per new connection, never per packet) */
	cred_ref_t *srv;
	pthread_mutex_t cred_lock;
	bool early_data;
	gnutls_certificate_credentials_t cred;
	/* parsed once: gnutls_priority_set_direct() would parse PRIORITY
	 * again for every session and keep that copy (~8 KB) as long as
	 * the session, also while a handshake is only half done */
	gnutls_priority_t prio;
	gnutls_datum_t ticket_key;
	/* tls.ticket-key-file: the ticket key comes from there, as it is
	 * when each session starts (NULL: ticket_key, random) */
	dv_keyfile_t *keyfile;
	gnutls_anti_replay_t anti_replay;
	char alpn[32];
	/* tls.client-ca ("" none) and tls.client-cert require */
	char client_ca[512];
	bool client_require;
	pthread_mutex_t replay_lock;
	replay_entry_t replay[REPLAY_SETS][REPLAY_WAYS];
};

struct dv_quic_tls {
	/* the session's pointer (gnutls_session_set_ptr): ngtcp2's crypto
	 * helper finds the connection through it, and the extension
	 * callbacks find this struct (container_of) */
	ngtcp2_crypto_conn_ref ref;
	ngtcp2_crypto_conn_ref *caller_ref;
	dv_quic_tls_ctx_t *ctx;
	cred_ref_t *cred; /* server: the pair this session began with */
	gnutls_session_t s;
	char sni[DV_SNI_MAX + 1]; /* server: the host name the client sent */
	char refused[72];	  /* server: a name GnuTLS will refuse */
	/* server: the verified client certificate's ID, once worked out */
	bool cert_read;
	char cert_id[DV_IDENT_MAX + 1];
	/* server: what the session said, kept when it is shed */
	bool resumed, early;
};

static ngtcp2_conn *ref_get_conn(ngtcp2_crypto_conn_ref *ref)
{
	dv_quic_tls_t *t = ref->user_data;
	return t->caller_ref->get_conn(t->caller_ref);
}

static dv_quic_tls_t *session_tls(gnutls_session_t s)
{
	ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(s);
	return ref->user_data;
}

static void set_err(char *err, size_t len, const char *what, int rv)
{
	if (err && len)
		snprintf(err, len, "%s: %s", what, gnutls_strerror(rv));
}

static uint64_t fingerprint(const gnutls_datum_t *d)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over a random-rich key */
	for (unsigned i = 0; i < d->size; i++) {
		h ^= d->data[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int replay_add(void *ptr, time_t exp_time, const gnutls_datum_t *key,
		      const gnutls_datum_t *data)
{
	(void)data;
	dv_quic_tls_ctx_t *ctx = ptr;
	uint64_t fp = fingerprint(key);
	time_t now = time(NULL);
	replay_entry_t *set = ctx->replay[fp % REPLAY_SETS];
	int ret = 0;
	pthread_mutex_lock(&ctx->replay_lock);
	replay_entry_t *victim = &set[0];
	for (unsigned i = 0; i < REPLAY_WAYS; i++) {
		if (set[i].expires > now && set[i].fp == fp) {
			ret = GNUTLS_E_DB_ENTRY_EXISTS;
			goto out;
		}
		if (set[i].expires < victim->expires)
			victim = &set[i];
	}
	victim->fp = fp;
	victim->expires = exp_time;
out:
	pthread_mutex_unlock(&ctx->replay_lock);
	return ret;
}

static void cred_put(cred_ref_t *c)
{
	if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		gnutls_certificate_free_credentials(c->cred);
		free(c);
	}
}

/* Server credentials from `cert` and `key`: NULL with `err` when a file
 * does not parse or the key is not the certificate's. */
static cred_ref_t *cred_load(const char *cert, const char *key, char *err,
			     size_t err_len)
{
	cred_ref_t *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	int rv = gnutls_certificate_allocate_credentials(&c->cred);
	if (rv < 0) {
		set_err(err, err_len, "certificate credentials", rv);
		free(c);
		return NULL;
	}
	c->refs = 1;
	rv = gnutls_certificate_set_x509_key_file(c->cred, cert, key,
						  GNUTLS_X509_FMT_PEM);
	if (rv < 0) {
		char what[600];
		snprintf(what, sizeof(what), "%s / %s", cert, key);
		set_err(err, err_len, what, rv);
		cred_put(c);
		return NULL;
	}
	return c;
}

/* The client CA (tls.client-ca) into server credentials. */
static int cred_trust(cred_ref_t *c, const char *ca, char *err, size_t err_len)
{
	int rv = gnutls_certificate_set_x509_trust_file(c->cred, ca,
							GNUTLS_X509_FMT_PEM);
	if (rv > 0)
		return 0;
	if (rv == 0)
		snprintf(err, err_len, "tls.client-ca: %s: no certificates",
			 ca);
	else
		snprintf(err, err_len, "tls.client-ca: %s: %s", ca,
			 gnutls_strerror(rv));
	return DV_ECONFIG;
}

static dv_quic_tls_ctx_t *ctx_alloc(bool server, const char *alpn, char *err,
				    size_t err_len)
{
	size_t n = strlen(alpn);
	if (n == 0 || n >= sizeof(((dv_quic_tls_ctx_t *)0)->alpn)) {
		snprintf(err, err_len, "bad ALPN '%s'", alpn);
		return NULL;
	}
	dv_quic_tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	ctx->server = server;
	memcpy(ctx->alpn, alpn, n + 1);
	pthread_mutex_init(&ctx->replay_lock, NULL);
	pthread_mutex_init(&ctx->cred_lock, NULL);
	int rv = gnutls_certificate_allocate_credentials(&ctx->cred);
	if (rv < 0) {
		set_err(err, err_len, "certificate credentials", rv);
		pthread_mutex_destroy(&ctx->replay_lock);
		pthread_mutex_destroy(&ctx->cred_lock);
		free(ctx);
		return NULL;
	}
	rv = gnutls_priority_init(&ctx->prio, PRIORITY, NULL);
	if (rv < 0) {
		set_err(err, err_len, "priority", rv);
		dv_quic_tls_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

dv_quic_tls_ctx_t *dv_quic_tls_server_ctx_new(const char *cert,
					      const char *key,
					      const char *alpn,
					      bool early_data, char *err,
					      size_t err_len)
{
	dv_quic_tls_ctx_t *ctx = ctx_alloc(true, alpn, err, err_len);
	if (!ctx)
		return NULL;
	ctx->early_data = early_data;
	ctx->srv = cred_load(cert, key, err, err_len);
	if (!ctx->srv)
		goto fail;
	int rv = gnutls_session_ticket_key_generate(&ctx->ticket_key);
	if (rv < 0) {
		set_err(err, err_len, "ticket key", rv);
		goto fail;
	}
	rv = gnutls_anti_replay_init(&ctx->anti_replay);
	if (rv < 0) {
		set_err(err, err_len, "anti-replay", rv);
		goto fail;
	}
	gnutls_anti_replay_set_add_function(ctx->anti_replay, replay_add);
	gnutls_anti_replay_set_ptr(ctx->anti_replay, ctx);
	return ctx;
fail:
	dv_quic_tls_ctx_free(ctx);
	return NULL;
}

dv_quic_tls_ctx_t *dv_quic_tls_client_ctx_new(const char *ca_file,
					      const char *alpn, char *err,
					      size_t err_len)
{
	dv_quic_tls_ctx_t *ctx = ctx_alloc(false, alpn, err, err_len);
	if (!ctx)
		return NULL;
	int rv;
	if (ca_file && *ca_file)
		rv = gnutls_certificate_set_x509_trust_file(
			ctx->cred, ca_file, GNUTLS_X509_FMT_PEM);
	else
		rv = gnutls_certificate_set_x509_system_trust(ctx->cred);
	if (rv <= 0) {
		if (rv == 0)
			snprintf(err, err_len, "%s: no certificates",
				 ca_file && *ca_file ? ca_file
						     : "system trust store");
		else
			set_err(err, err_len,
				ca_file && *ca_file ? ca_file
						    : "system trust store",
				rv);
		dv_quic_tls_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

int dv_quic_tls_client_cert(dv_quic_tls_ctx_t *ctx, const char *cert,
			    const char *key, char *err, size_t err_len)
{
	int rv = gnutls_certificate_set_x509_key_file(ctx->cred, cert, key,
						      GNUTLS_X509_FMT_PEM);
	if (rv < 0) {
		char what[600];
		snprintf(what, sizeof(what), "%s / %s", cert, key);
		set_err(err, err_len, what, rv);
		return DV_ECONFIG;
	}
	return 0;
}

void dv_quic_tls_ctx_keyfile(dv_quic_tls_ctx_t *ctx, dv_keyfile_t *kf)
{
	ctx->keyfile = kf;
}

int dv_quic_tls_server_client_ca(dv_quic_tls_ctx_t *ctx, const char *ca_file,
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
	return cred_trust(ctx->srv, ca_file, err, err_len);
}

int dv_quic_tls_server_reload(dv_quic_tls_ctx_t *ctx, const char *cert,
			      const char *key, char *err, size_t err_len)
{
	cred_ref_t *next = cred_load(cert, key, err, err_len);
	if (!next)
		return DV_ECONFIG;
	if (ctx->client_ca[0] &&
	    cred_trust(next, ctx->client_ca, err, err_len) != 0) {
		cred_put(next);
		return DV_ECONFIG;
	}
	pthread_mutex_lock(&ctx->cred_lock);
	cred_ref_t *old = ctx->srv;
	ctx->srv = next;
	pthread_mutex_unlock(&ctx->cred_lock);
	cred_put(old); /* sessions that use it hold a reference */
	return 0;
}

void dv_quic_tls_ctx_free(dv_quic_tls_ctx_t *ctx)
{
	if (!ctx)
		return;
	cred_put(ctx->srv);
	pthread_mutex_destroy(&ctx->cred_lock);
	if (ctx->anti_replay)
		gnutls_anti_replay_deinit(ctx->anti_replay);
	if (ctx->ticket_key.data)
		gnutls_free(ctx->ticket_key.data);
	if (ctx->prio)
		gnutls_priority_deinit(ctx->prio);
	gnutls_certificate_free_credentials(ctx->cred);
	pthread_mutex_destroy(&ctx->replay_lock);
	free(ctx);
}

/*
 * Server: the ClientHello's server_name, read by dnsveil's own parser
 * before GnuTLS parses the message, so that DoQ records the SNI as the
 * wolfSSL listeners do (src/tls/sni.h): a host name is kept, anything else
 * ignored as if absent, a malformed list is a decode_error.
 *
 * GnuTLS (3.7, Debian 12) then still parses the name itself and fails the
 * handshake with illegal_parameter on one holding a byte other than a
 * letter, digit, '-' or '.', such as the "::1" of a client connecting to
 * [::1]: its server_name extension cannot be overridden (GnuTLS marks it
 * so) and the ClientHello cannot be rewritten (it is in the transcript).
 * Such a name is kept in `refused` so that the failure can say why.
 * IPv4 literals, trailing dots, bad hyphens and long labels pass GnuTLS
 * and are ignored here.  (HelloRetryRequest: the second ClientHello's
 * name replaces the first's.)
 */
static int ext_sni(void *ctx, unsigned tls_id, const unsigned char *data,
		   unsigned size)
{
	dv_quic_tls_t *t = ctx;
	if (tls_id != 0) /* server_name */
		return 0;
	const char *name;
	size_t n;
	if (dv_sni_parse(data, size, &name, &n) < 0)
		return GNUTLS_E_UNEXPECTED_EXTENSIONS_LENGTH; /* decode_error */
	if (dv_sni_host_name(name, n)) {
		memcpy(t->sni, name, n);
		t->sni[n] = 0;
		return 0;
	}
	for (size_t i = 0; name && i < n; i++) {
		char ch = name[i];
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') &&
		    !(ch >= '0' && ch <= '9') && ch != '-' && ch != '.') {
			snprintf(t->refused, sizeof(t->refused), "%.*s",
				 (int)(n < 64 ? n : 64), name);
			break;
		}
	}
	return 0;
}

/* Server, ClientHello: before GnuTLS parses it, read its SNI; after, refuse
 * it when it does not offer our ALPN. */
static int client_hello_hook(gnutls_session_t s, unsigned htype,
			     unsigned when, unsigned incoming,
			     const gnutls_datum_t *msg)
{
	(void)htype;
	(void)incoming;
	if (when == GNUTLS_HOOK_PRE) {
		dv_quic_tls_t *t = session_tls(s);
		t->sni[0] = 0;
		t->refused[0] = 0;
		int rv = gnutls_ext_raw_parse(t, ext_sni, msg,
					      GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
		/* a ClientHello GnuTLS cannot parse: its own error follows */
		return rv == GNUTLS_E_UNEXPECTED_EXTENSIONS_LENGTH ? rv : 0;
	}
	gnutls_datum_t alpn;
	if (gnutls_alpn_get_selected_protocol(s, &alpn) < 0)
		return GNUTLS_E_NO_APPLICATION_PROTOCOL;
	return 0;
}

static dv_quic_tls_t *session_new(dv_quic_tls_ctx_t *ctx,
				  ngtcp2_crypto_conn_ref *ref,
				  unsigned flags, char *err, size_t err_len)
{
	dv_quic_tls_t *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	t->ctx = ctx;
	int rv = gnutls_init(&t->s, flags);
	if (rv < 0) {
		set_err(err, err_len, "gnutls_init", rv);
		free(t);
		return NULL;
	}
	rv = gnutls_priority_set(t->s, ctx->prio); /* a reference, not a copy */
	if (rv < 0) {
		set_err(err, err_len, "priority", rv);
		goto fail;
	}
	gnutls_certificate_credentials_t cred = ctx->cred;
	if (ctx->server) {
		pthread_mutex_lock(&ctx->cred_lock);
		t->cred = ctx->srv;
		__atomic_add_fetch(&t->cred->refs, 1, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&ctx->cred_lock);
		cred = t->cred->cred;
	}
	rv = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, cred);
	if (rv < 0) {
		set_err(err, err_len, "credentials", rv);
		goto fail;
	}
	gnutls_datum_t alpn = {.data = (unsigned char *)ctx->alpn,
			       .size = (unsigned)strlen(ctx->alpn)};
	rv = gnutls_alpn_set_protocols(t->s, &alpn, 1, GNUTLS_ALPN_MANDATORY);
	if (rv < 0) {
		set_err(err, err_len, "ALPN", rv);
		goto fail;
	}
	t->caller_ref = ref;
	t->ref.get_conn = ref_get_conn;
	t->ref.user_data = t;
	gnutls_session_set_ptr(t->s, &t->ref);
	return t;
fail:
	dv_quic_tls_free(t);
	return NULL;
}

dv_quic_tls_t *dv_quic_tls_server_new(dv_quic_tls_ctx_t *ctx,
				      ngtcp2_crypto_conn_ref *ref)
{
	char err[128];
	unsigned flags = GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET |
			 GNUTLS_NO_END_OF_EARLY_DATA;
	if (ctx->early_data)
		flags |= GNUTLS_ENABLE_EARLY_DATA;
	dv_quic_tls_t *t = session_new(ctx, ref, flags, err, sizeof(err));
	if (!t)
		return NULL;
	int rv = 0;
	if (ctx->client_ca[0]) {
		/* no tickets: every connection shows its certificate; under
		 * require GnuTLS verifies it and fails the handshake */
		gnutls_certificate_server_set_request(
			t->s, ctx->client_require ? GNUTLS_CERT_REQUIRE
						  : GNUTLS_CERT_REQUEST);
		if (ctx->client_require)
			gnutls_session_set_verify_cert(t->s, NULL, 0);
	} else if (ctx->keyfile) {
		/* GnuTLS copies the key into the session */
		dv_keyfile_keys_t k;
		(void)dv_keyfile_get(ctx->keyfile, &k, NULL, NULL);
		gnutls_datum_t d = {k.quic_ticket, sizeof(k.quic_ticket)};
		rv = gnutls_session_ticket_enable_server(t->s, &d);
		memset(&k, 0, sizeof(k));
	} else {
		rv = gnutls_session_ticket_enable_server(t->s, &ctx->ticket_key);
	}
	if (rv < 0)
		goto fail;
	gnutls_handshake_set_hook_function(t->s, GNUTLS_HANDSHAKE_CLIENT_HELLO,
					   GNUTLS_HOOK_BOTH,
					   client_hello_hook);
	if (ngtcp2_crypto_gnutls_configure_server_session(t->s) != 0)
		goto fail;
	if (ctx->early_data) {
		gnutls_anti_replay_enable(t->s, ctx->anti_replay);
		/* QUIC carries 0-RTT itself; TLS must allow any amount */
		gnutls_record_set_max_early_data_size(t->s, 0xffffffffu);
	}
	return t;
fail:
	dv_quic_tls_free(t);
	return NULL;
}

dv_quic_tls_t *dv_quic_tls_client_new(dv_quic_tls_ctx_t *ctx,
				      ngtcp2_crypto_conn_ref *ref,
				      const char *name, const uint8_t *session,
				      size_t session_len, char *err,
				      size_t err_len)
{
	dv_quic_tls_t *t = session_new(
		ctx, ref,
		GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA |
			GNUTLS_NO_END_OF_EARLY_DATA,
		err, err_len);
	if (!t)
		return NULL;
	int rv;
	if (ngtcp2_crypto_gnutls_configure_client_session(t->s) != 0) {
		snprintf(err, err_len, "QUIC crypto set-up failed");
		goto fail;
	}
	if (name && *name) {
		rv = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, name,
					    strlen(name));
		if (rv < 0) {
			set_err(err, err_len, "SNI", rv);
			goto fail;
		}
		gnutls_session_set_verify_cert(t->s, name, 0);
	}
	if (session && session_len) {
		rv = gnutls_session_set_data(t->s, session, session_len);
		if (rv < 0) {
			set_err(err, err_len, "saved session", rv);
			goto fail;
		}
	}
	return t;
fail:
	dv_quic_tls_free(t);
	return NULL;
}

void dv_quic_tls_free(dv_quic_tls_t *t)
{
	if (!t)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	cred_put(t->cred); /* after the session that points to it */
	free(t);
}

void *dv_quic_tls_native(dv_quic_tls_t *t)
{
	return t->s;
}

/*
 * GnuTLS keeps, for as long as a session lives, about 10 KiB that a QUIC
 * connection no longer needs once its handshake is over: the session
 * object (7.3 KiB in GnuTLS 3.7), the ALPN and extension state, the
 * credentials reference.  QUIC's packet keys are not among them: ngtcp2's
 * crypto helper made its own cipher contexts from the secrets, and key
 * updates derive new keys from those.
 */
void dv_quic_tls_shed(dv_quic_tls_t *t)
{
	if (!t->s)
		return;
	(void)dv_quic_tls_cert_id(t); /* read from the session, kept */
	t->resumed = gnutls_session_is_resumed(t->s) != 0;
	t->early = (gnutls_session_get_flags(t->s) &
		    GNUTLS_SFLAGS_EARLY_DATA) != 0;
	gnutls_deinit(t->s);
	t->s = NULL;
	cred_put(t->cred); /* after the session that points to it */
	t->cred = NULL;
}

int dv_quic_tls_send_ticket(dv_quic_tls_t *t)
{
	if (t->ctx->client_ca[0] || !t->s)
		return 0; /* no resumption with client certificates */
	int rv = gnutls_session_ticket_send(t->s, 1, 0);
	return rv < 0 ? -1 : 0;
}

int dv_quic_tls_session_save(dv_quic_tls_t *t, uint8_t *buf, size_t cap)
{
	gnutls_datum_t d = {0};
	if (!t->s)
		return 0;
	if (gnutls_session_get_data2(t->s, &d) < 0 || !d.size) {
		gnutls_free(d.data);
		return 0;
	}
	int ret;
	if (d.size > cap) {
		ret = -1;
	} else {
		memcpy(buf, d.data, d.size);
		ret = (int)d.size;
	}
	gnutls_free(d.data);
	return ret;
}

bool dv_quic_tls_resumed(dv_quic_tls_t *t)
{
	if (!t->s)
		return t->resumed;
	return gnutls_session_is_resumed(t->s) != 0;
}

bool dv_quic_tls_early_data_accepted(dv_quic_tls_t *t)
{
	if (!t->s)
		return t->early;
	return (gnutls_session_get_flags(t->s) & GNUTLS_SFLAGS_EARLY_DATA) !=
	       0;
}

const char *dv_quic_tls_error(dv_quic_tls_t *t)
{
	if (!t->s)
		return NULL;
	return gnutls_alert_get_name(gnutls_alert_get(t->s));
}

const char *dv_quic_tls_alert_name(uint8_t alert)
{
	const char *name =
		gnutls_alert_get_name((gnutls_alert_description_t)alert);
	return name ? name : "unknown alert";
}

const char *dv_quic_tls_sni(dv_quic_tls_t *t)
{
	return t->sni[0] ? t->sni : NULL;
}

const char *dv_quic_tls_cert_id(dv_quic_tls_t *t)
{
	if (!t->cert_read && t->ctx->client_ca[0] && t->s) {
		ngtcp2_conn *conn = ref_get_conn(&t->ref);
		if (!conn || !ngtcp2_conn_get_handshake_completed(conn))
			return NULL;
		t->cert_read = true;
		unsigned status = 0, n = 0;
		const gnutls_datum_t *peers;
		if (gnutls_certificate_verify_peers2(t->s, &status) == 0 &&
		    status == 0 &&
		    (peers = gnutls_certificate_get_peers(t->s, &n)) && n > 0)
			(void)dv_tls_cert_der_id(peers[0].data, peers[0].size,
						 t->cert_id);
	}
	return t->cert_id[0] ? t->cert_id : NULL;
}

const char *dv_quic_tls_sni_refused(dv_quic_tls_t *t)
{
	return t->refused[0] ? t->refused : NULL;
}

bool dv_quic_tls_ticket_received(dv_quic_tls_t *t)
{
	if (!t->s)
		return false;
	return (gnutls_session_get_flags(t->s) &
		GNUTLS_SFLAGS_SESSION_TICKET) != 0;
}

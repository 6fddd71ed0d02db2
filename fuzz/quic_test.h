#pragma once
/*
 * What the DoQ server engine's unit test and fuzz target share: loopback
 * paths, one server configuration, and a throwaway certificate.
 *
 * The certificate lets them drive the DoQ server engine without the
 * files certs/make-dev-cert.sh makes (the fuzz replay and the unit test
 * run in any checkout): a fresh ECDSA P-256 key and a self-signed
 * certificate for "dns.test", written as PEM into a new directory under
 * $TMPDIR (or /tmp), never committed.  For tests only: GnuTLS is used
 * directly here, where src/ only reaches it through src/tls/quic_tls.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>

#include "src/proto/doq_server.h"

#define DV_TEST_CERT_NAME "dns.test"

static int dv_test_write(const char *path, const gnutls_datum_t *d)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	size_t n = fwrite(d->data, 1, d->size, f);
	return fclose(f) == 0 && n == d->size ? 0 : -1;
}

/* Make the pair; `cert` and `key` (cap bytes each) get their paths, and
 * `dir` (cap bytes) the directory to remove with dv_test_cert_remove.
 * 0 or -1. */
static int dv_test_cert(char *dir, char *cert, char *key, size_t cap)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, cap, "%s/dv-doq-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	if (snprintf(cert, cap, "%s/cert.pem", dir) >= (int)cap ||
	    snprintf(key, cap, "%s/key.pem", dir) >= (int)cap)
		return -1;
	gnutls_x509_privkey_t k = NULL;
	gnutls_x509_crt_t c = NULL;
	gnutls_datum_t d = {NULL, 0};
	int ok = -1;
	time_t now = time(NULL);
	if (gnutls_x509_privkey_init(&k) < 0 ||
	    gnutls_x509_privkey_generate(
		    k, GNUTLS_PK_ECDSA,
		    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0 ||
	    gnutls_x509_crt_init(&c) < 0)
		goto out;
	const char *errp = NULL;
	if (gnutls_x509_crt_set_version(c, 3) < 0 ||
	    gnutls_x509_crt_set_serial(c, "\x01", 1) < 0 ||
	    gnutls_x509_crt_set_activation_time(c, now - 3600) < 0 ||
	    gnutls_x509_crt_set_expiration_time(c, now + 30 * 86400) < 0 ||
	    gnutls_x509_crt_set_dn(c, "CN=" DV_TEST_CERT_NAME, &errp) < 0 ||
	    gnutls_x509_crt_set_subject_alt_name(
		    c, GNUTLS_SAN_DNSNAME, DV_TEST_CERT_NAME,
		    strlen(DV_TEST_CERT_NAME), GNUTLS_FSAN_SET) < 0 ||
	    gnutls_x509_crt_set_basic_constraints(c, 1, -1) < 0 ||
	    gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE |
						  GNUTLS_KEY_KEY_CERT_SIGN) < 0 ||
	    gnutls_x509_crt_set_key(c, k) < 0 ||
	    gnutls_x509_crt_sign2(c, c, k, GNUTLS_DIG_SHA256, 0) < 0)
		goto out;
	if (gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d) < 0 ||
	    dv_test_write(cert, &d) < 0)
		goto out;
	gnutls_free(d.data);
	d.data = NULL;
	if (gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d) < 0 ||
	    dv_test_write(key, &d) < 0)
		goto out;
	ok = 0;
out:
	gnutls_free(d.data);
	if (c)
		gnutls_x509_crt_deinit(c);
	if (k)
		gnutls_x509_privkey_deinit(k);
	return ok;
}

static void dv_test_cert_remove(const char *dir, const char *cert,
				const char *key)
{
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

/* ::1 or 127.0.0.1, port `port`, into `ss`. */
static void dv_test_loopback(struct sockaddr_storage *ss, socklen_t *len,
			     uint16_t port, bool v6)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr.s6_addr[15] = 1;
		a->sin6_port = htons(port);
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(0x7f000001);
		a->sin_port = htons(port);
		*len = sizeof(*a);
	}
}

/* A server path: the client at port 40000, the server at 853. */
static void dv_test_server_path(dv_quic_path_t *p, bool v6)
{
	memset(p, 0, sizeof(*p));
	dv_test_loopback(&p->local, &p->local_len, 853, v6);
	dv_test_loopback(&p->remote, &p->remote_len, 40000, v6);
}

/* A server of `max_connections` (half of them for handshakes, a quarter
 * per address), counting into `st`, with `secret`. */
static void dv_test_server_config(dv_doq_server_config_t *cfg,
				  dv_quic_tls_ctx_t *tls, dv_stats_t *st,
				  const uint8_t *secret, size_t secret_len,
				  unsigned max_connections,
				  dv_doq_server_retry_t retry)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->tls = tls;
	cfg->secret = secret;
	cfg->secret_len = secret_len;
	cfg->worker = 1;
	cfg->max_connections = max_connections;
	cfg->max_handshakes = max_connections / 2;
	cfg->max_handshakes_per_address = max_connections / 4;
	cfg->max_streams = 8;
	cfg->idle_timeout_ms = 30000;
	cfg->handshake_timeout_ms = 5000;
	cfg->read_timeout_ms = 2000;
	cfg->token_lifetime_s = 3600;
	cfg->retry = retry;
	cfg->stats = st;
}

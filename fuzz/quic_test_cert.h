#pragma once
/*
 * A throwaway certificate for driving the DoQ server engine without the
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

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

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

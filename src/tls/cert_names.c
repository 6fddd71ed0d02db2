/*
 * A certificate's subjectAltName, read with GnuTLS: Debian 12's wolfSSL
 * 5.5.4 is built without OPENSSL_EXTRA and WOLFSSL_IP_ALT_NAME, so its
 * X509 calls give the DNS names but not the IP addresses, which DDR needs
 * (RFC 9462 4.2: the client checks the resolver's IP address in them).
 * GnuTLS is linked for QUIC already (quic_tls_gnutls.c).
 */
#include "src/tls/cert_names.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "src/core/errors.h"
#include "src/core/ident.h"

static void add_name(dv_cert_names_t *out, int type, const char *buf,
		     size_t len)
{
	if (type == GNUTLS_SAN_DNSNAME && out->n_dns < DV_CERT_MAX_DNS &&
	    len > 0 && len < sizeof(out->dns[0])) {
		char *d = out->dns[out->n_dns++];
		for (size_t i = 0; i < len; i++)
			d[i] = (char)(buf[i] >= 'A' && buf[i] <= 'Z'
					      ? buf[i] + 32
					      : buf[i]);
		d[len] = '\0';
		if (len > 1 && d[len - 1] == '.')
			d[len - 1] = '\0';
	} else if (type == GNUTLS_SAN_IPADDRESS &&
		   out->n_ip < DV_CERT_MAX_IPS && (len == 4 || len == 16)) {
		out->ip[out->n_ip].family = len == 4 ? AF_INET : AF_INET6;
		memcpy(out->ip[out->n_ip].addr, buf, len);
		out->n_ip++;
	}
}

int dv_tls_cert_names(const char *path, dv_cert_names_t *out, char *err,
		      size_t err_len)
{
	gnutls_datum_t pem = { NULL, 0 };
	gnutls_x509_crt_t crt = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = gnutls_load_file(path, &pem);
	if (ret < 0) {
		snprintf(err, err_len, "'%s': %s", path, gnutls_strerror(ret));
		return DV_ECONFIG;
	}
	if (gnutls_x509_crt_init(&crt) < 0) {
		ret = -ENOMEM;
		goto fail_pem;
	}
	ret = gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		snprintf(err, err_len, "'%s': %s", path, gnutls_strerror(ret));
		ret = DV_ECONFIG;
		goto fail_crt;
	}
	for (unsigned seq = 0;; seq++) {
		char buf[256];
		size_t len = sizeof(buf);
		int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf,
								&len, NULL);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue; /* a name too long for DNS */
		if (type < 0)
			break;
		add_name(out, type, buf, len);
	}
	out->loaded = true;
	ret = 0;
fail_crt:
	gnutls_x509_crt_deinit(crt);
fail_pem:
	gnutls_free(pem.data);
	return ret;
}

size_t dv_tls_cert_der_id(const uint8_t *der, size_t der_len, char *out)
{
	gnutls_x509_crt_t crt;
	gnutls_datum_t d = { (unsigned char *)der, (unsigned)der_len };
	size_t n = 0, len;
	char buf[256];

	out[0] = '\0';
	if (der_len == 0 || der_len > UINT32_MAX ||
	    gnutls_x509_crt_init(&crt) < 0)
		return 0;
	if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0)
		goto out;
	for (unsigned seq = 0;; seq++) {
		len = sizeof(buf);
		int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf,
								&len, NULL);
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue; /* longer than any DNS name */
		if (type < 0)
			break;
		if (type == GNUTLS_SAN_DNSNAME) {
			/* the first DNS name decides, valid ID or not */
			n = dv_ident_from_cert_name(buf, len, out);
			goto out;
		}
	}
	len = sizeof(buf);
	if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
					  0, buf, &len) == 0)
		n = dv_ident_from_cert_name(buf, len, out);
out:
	gnutls_x509_crt_deinit(crt);
	return n;
}

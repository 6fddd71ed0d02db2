#pragma once
/*
 * The unit tests' TLS identity, for tests that run a wolfSSL server and
 * client in one process (test_tls_io.c, test_tls13_rec.c), and the
 * server side they share.  Include after cmocka.h and src/tls/tls.h.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A throw-away self-signed certificate for dns.test (EC P-256, a CA so
 * that the client can take it as its trust anchor) and its key. */
static const char cert_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIByzCCAXCgAwIBAgIUNZ/DizgsJTYFDXw0K/VnHC9dQUMwCgYIKoZIzj0EAwIw\n"
	"LzEaMBgGA1UECgwRZG5zdmVpbCB1bml0IHRlc3QxETAPBgNVBAMMCGRucy50ZXN0\n"
	"MCAXDTI2MTIwNTEyNTkzMVoYDzIxMjYxMTExMTI1OTMxWjAvMRowGAYDVQQKDBFk\n"
	"bnN2ZWlsIHVuaXQgdGVzdDERMA8GA1UEAwwIZG5zLnRlc3QwWTATBgcqhkjOPQIB\n"
	"BggqhkjOPQMBBwNCAATLan54APwlSSHKxHtwVla3PY6GjvihrC4GFCvmnqbOnKyY\n"
	"FDmKjl02ba5hwyNtIGCHeBaUJMDqQT2RgMJgc2nBo2gwZjAdBgNVHQ4EFgQUhWqi\n"
	"4AaQ02BFGmC0feOO3ty9UmgwHwYDVR0jBBgwFoAUhWqi4AaQ02BFGmC0feOO3ty9\n"
	"UmgwEwYDVR0RBAwwCoIIZG5zLnRlc3QwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjO\n"
	"PQQDAgNJADBGAiEA3NQ/w7wBPCEkR4P8QiWRmNbX+5MD9hmI4R0x1osTU2kCIQCE\n"
	"+X2FY8e49bDnhg8EJRjZMpw0EQxW9kGAnuEKzUJTsg==\n"
	"-----END CERTIFICATE-----\n";
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
			      "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
			      "rdWFSKrw/Ps3ouuk\n"
			      "9aa0Gh9GAeUX8hab5e+"
			      "mLTorrQChRANCAATLan54APwlSSHKxHtwVla3PY6Gjvih\n"
			      "rC4GFCvmnqbOnKyYFDmKjl02ba5hwyNtIGCHeBaUJMDqQT2R"
			      "gMJgc2nB\n"
			      "-----END PRIVATE KEY-----\n";

static void tls_test_write_tmp(char *path, const char *text)
{
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/*
 * cert_pem and key_pem written to new files (their paths into `cert` and
 * `key`, 32 bytes each, for the caller to unlink), a server context on
 * them with ALPN "dot", and a non-blocking socket pair in `fd`.
 */
static dv_tls_ctx_t *tls_test_server(char cert[32], char key[32], int fd[2])
{
	char err[256];
	strcpy(cert, "/tmp/dv-tls-cert-XXXXXX");
	strcpy(key, "/tmp/dv-tls-key-XXXXXX");
	tls_test_write_tmp(cert, cert_pem);
	tls_test_write_tmp(key, key_pem);
	static const char *const alpn[] = { "dot", NULL };
	dv_tls_ctx_t *ctx =
		dv_tls_server_new(cert, key, alpn, err, sizeof(err));
	assert_non_null(ctx);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
	for (int i = 0; i < 2; i++)
		fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK);
	return ctx;
}

#pragma once
/*
 * The unit tests' TLS identity, for tests that run a wolfSSL server and
 * client in one process (test_tls_io.c, test_tls13_rec.c).
 */

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

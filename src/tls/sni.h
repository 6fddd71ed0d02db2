#pragma once
/*
 * The server name a TLS client sent (SNI, RFC 6066 §3), as every TLS
 * listener of dnsveil treats it: DoT and DoH (wolfSSL, tls.c) and DoQ
 * (GnuTLS, quic_tls_gnutls.c) call the same check, so that a name is
 * recorded, or ignored, alike on all of them.
 *
 * Only a host name counts.  An IP literal ("::1", "127.0.0.1", which some
 * clients send when they were given an address) or anything else that is
 * not a host name is treated as if the client had sent no SNI: the
 * handshake goes on with the default certificate and the connection has
 * no name (q->sni NULL, "sni -" in the handshake's debug line).
 *
 * No TLS library here: plain bytes in, so the parser is unit-tested and
 * fuzzed (fuzz/fuzz_sni.c) on its own.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest host name an SNI may carry: RFC 1035's 255-octet wire name
 * is 253 characters of text (no trailing dot, as RFC 6066 asks). */
#define DV_SNI_MAX 253

/*
 * Whether the `len` bytes at `name` are a host name dnsveil records: 1 to
 * DV_SNI_MAX characters, dot-separated labels of 1 to 63 letters, digits
 * and hyphens that neither start nor end with a hyphen (RFC 1123 §2.1), no
 * trailing dot, and a last label that is not all digits (so no IPv4
 * literal in any form; an IPv6 literal fails on ':').  Any other byte
 * (NUL, '_', a space, non-ASCII) makes it not a host name.
 */
bool dv_sni_host_name(const char *name, size_t len);

/*
 * The extension_data of a ClientHello's server_name extension: a
 * ServerNameList (RFC 6066 §3).  On success *name / *len are its
 * host_name entry as sent (pointing into `ext`), or NULL / 0 when it has
 * none; whether that is a name to record is dv_sni_host_name()'s to say.
 * Entries of other name types are skipped (their data starts with a 16-bit
 * length, as RFC 6066 requires of new types).
 *
 * Returns 0, or DV_EMALFORMED when the list is not well formed: a length
 * that disagrees with the bytes, an empty list, an empty host_name, or two
 * host_name entries (RFC 6066: at most one name per type).  The TLS stack
 * answers that with a decode_error alert.
 */
int dv_sni_parse(const uint8_t *ext, size_t ext_len, const char **name,
		 size_t *len);

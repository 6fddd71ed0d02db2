#pragma once
/*
 * The TLS 1.3 record layer (RFC 8446 §5) of server connections once their
 * handshake is done: wolfSSL's connection object (10.8 KiB, its 37.5 KiB
 * session, the transcript, the handshake buffers) goes, and what a
 * connection keeps for the rest of its life is this: the two traffic
 * secrets (for KeyUpdate), two AEAD keys and IVs and two sequence numbers.
 *
 * I/O-free: records in, plaintext out; plaintext in, records out.  The
 * suites are TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 and
 * TLS_CHACHA20_POLY1305_SHA256 (wolfCrypt's AEADs).  Inside the TLS seam
 * only (tls_io.c); callers see tls.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct dv_tls13_rec dv_tls13_rec_t;

/* the cipher suites handled (IANA values) */
#define DV_TLS13_AES_128_GCM_SHA256 0x1301
#define DV_TLS13_AES_256_GCM_SHA384 0x1302
#define DV_TLS13_CHACHA20_POLY1305_SHA256 0x1303

/* Record content types and the alert descriptions sent. */
#define DV_TLS13_ALERT 21
#define DV_TLS13_HANDSHAKE 22
#define DV_TLS13_APPDATA 23
#define DV_TLS13_CLOSE_NOTIFY 0
#define DV_TLS13_UNEXPECTED_MESSAGE 10
#define DV_TLS13_BAD_RECORD_MAC 20
#define DV_TLS13_RECORD_OVERFLOW 22
#define DV_TLS13_DECODE_ERROR 50
#define DV_TLS13_ILLEGAL_PARAMETER 47
#define DV_TLS13_INTERNAL_ERROR 80
#define DV_TLS13_NO_ALERT 255 /* none to send: the peer sent one */

/* header + content type + AEAD tag of a sealed record */
#define DV_TLS13_OVERHEAD (5 + 1 + 16)
/* the most plaintext a record carries, and the largest record body */
#define DV_TLS13_MAX_PLAIN 16384
#define DV_TLS13_MAX_BODY (16384 + 256)

/* The hash length of `suite` (32 or 48), or 0 for a suite not handled. */
size_t dv_tls13_hash_len(unsigned suite);
/* Does traffic secret `secret` (hash length of `suite`) derive write key
 * `key` and IV `iv` (RFC 8446 §7.3)? */
bool dv_tls13_secret_check(unsigned suite, const uint8_t *secret,
			   const uint8_t *key, const uint8_t *iv);

/*
 * Record protection for `suite` from the client's (read) and server's
 * (write) application traffic secrets and the next sequence number of
 * each direction.  The secrets are copied.  NULL for a suite not handled,
 * or when out of memory.
 */
dv_tls13_rec_t *dv_tls13_rec_new(unsigned suite, const uint8_t *rd_secret,
				 uint64_t rd_seq, const uint8_t *wr_secret,
				 uint64_t wr_seq);
/* Zeroize and free; NULL is a no-op. */
void dv_tls13_rec_free(dv_tls13_rec_t *r);

/*
 * The length of the record at the start of `in` (header included) when it
 * is all there, 0 when more bytes are needed, or a negative error for a
 * header that no TLS 1.3 peer sends after its Finished (an outer type
 * other than application_data, a legacy version other than 0x0303, a body
 * shorter than a tag or longer than 2^14 + 256: -EPROTO, -EMSGSIZE).
 */
ssize_t dv_tls13_rec_len(const uint8_t *in, size_t len);

/*
 * Open the whole record `rec` (`len` bytes, dv_tls13_rec_len()) in place.
 * 0 with application data at *pt (*pt_len bytes, 0 for a record that
 * carried nothing for the caller: a KeyUpdate, applied here; one that asks
 * for ours makes the next seal or flush send it), DV_TLS_EOF for
 * close_notify, or a negative error after which the connection is over:
 * -EBADMSG (the record did not authenticate), -EPROTO (a message or alert
 * other than the above), -EMSGSIZE, -EOVERFLOW (the sequence number would
 * wrap).  dv_tls13_rec_alert_for() then gives the alert to send.
 */
int dv_tls13_rec_open(dv_tls13_rec_t *r, uint8_t *rec, size_t len,
		      uint8_t **pt, size_t *pt_len);
/* The alert description owed for the last error of dv_tls13_rec_open()
 * (DV_TLS13_NO_ALERT: none). */
uint8_t dv_tls13_rec_alert_for(const dv_tls13_rec_t *r);

/*
 * Seal `len` bytes (at most DV_TLS13_MAX_PLAIN) of content `type` as one
 * record into `out` (`cap` bytes), after the KeyUpdate the peer asked for
 * if one is owed.  Bytes written, or -ENOBUFS (no room, nothing written),
 * -EOVERFLOW (the sequence number would wrap), -EIO (the cipher failed).
 */
ssize_t dv_tls13_rec_seal(dv_tls13_rec_t *r, uint8_t type, const void *pt,
			  size_t len, uint8_t *out, size_t cap);
/* The KeyUpdate owed, if any, into `out`: bytes written (0: none owed),
 * or an error as dv_tls13_rec_seal(). */
ssize_t dv_tls13_rec_flush(dv_tls13_rec_t *r, uint8_t *out, size_t cap);
/* Seal a KeyUpdate (update_requested with `request`) and move our write
 * keys to the next generation: bytes written, or an error as
 * dv_tls13_rec_seal().  (The server sends one only when asked; this is
 * also the client's side for tests.) */
ssize_t dv_tls13_rec_update(dv_tls13_rec_t *r, bool request, uint8_t *out,
			    size_t cap);
/* Whether a KeyUpdate is owed to the peer. */
bool dv_tls13_rec_owes(const dv_tls13_rec_t *r);

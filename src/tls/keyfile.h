#pragma once
/*
 * The ticket-key file (tls.ticket-key-file): secret key material that
 * every replica behind a load balancer reads from the same file (a
 * Kubernetes Secret), so that a client moving between replicas resumes
 * its TLS session and skips the QUIC Retry round trip.
 *
 * The file holds 80 random bytes (`openssl rand 80 > ticket.key`), raw
 * or base64 (108 characters, whitespace ignored) — the size of nginx's
 * ssl_session_ticket_key files.  Every key dnsveil uses is derived from
 * those bytes with HKDF-SHA256 under its own label, so no two uses share
 * a key and the same file gives the same keys in every replica:
 *
 *   - the name and ChaCha20-Poly1305 key of DoT/DoH session tickets
 *     (src/tls/tls.c);
 *   - GnuTLS's 64-byte master key for DoQ session tickets
 *     (src/tls/quic_tls_gnutls.c);
 *   - the secret of DoQ address-validation tokens (Retry and NEW_TOKEN)
 *     and stateless resets (src/proto/doq_server*.c).
 *
 * The file is watched by a thread that stat()s it every second (a
 * Kubernetes Secret update swaps a `..data` symlink, which inotify on the
 * file itself would miss); when its bytes change, the keys rotate: the new
 * ones encrypt, the previous ones still decrypt until the next change.  A
 * file that does not read or has the wrong size is an error when it is
 * first loaded; on a later change it is logged and the keys stay.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DV_KEYFILE_SIZE 80 /* bytes of key material in the file */
#define DV_KEYFILE_QUIC_TOKEN 32 /* the DoQ token/reset secret */
#define DV_KEYFILE_QUIC_TICKET 64 /* GnuTLS's session ticket master key */

/* The keys derived from one version of the file. */
typedef struct {
	uint8_t ticket_name[16]; /* DoT/DoH ticket key name */
	uint8_t ticket_key[32]; /* DoT/DoH ChaCha20-Poly1305 key */
	uint8_t quic_ticket[DV_KEYFILE_QUIC_TICKET];
	uint8_t quic_token[DV_KEYFILE_QUIC_TOKEN];
} dv_keyfile_keys_t;

typedef struct dv_keyfile dv_keyfile_t;

/*
 * The 80 bytes of a file's contents `buf` (raw: exactly 80 bytes; else
 * base64 of 80 bytes, whitespace ignored) into `out`.  0, or DV_ECONFIG
 * with the reason (without the path) in `why`.
 */
int dv_keyfile_decode(const uint8_t *buf, size_t len,
		      uint8_t out[DV_KEYFILE_SIZE], char *why, size_t why_len);

/*
 * Read `path` and derive its keys into `out`.  0, or DV_ECONFIG with a
 * message naming the file and what is wrong with it in `err`.
 */
int dv_keyfile_read(const char *path, dv_keyfile_keys_t *out, char *err,
		    size_t err_len);

/* Load `path` (its keys become current, with no previous ones).  NULL
 * with a message in `err`. */
dv_keyfile_t *dv_keyfile_new(const char *path, char *err, size_t err_len);
/* Start watching the file (a thread).  0 or a negative error. */
int dv_keyfile_start(dv_keyfile_t *kf);
/* Stop the watcher and free.  NULL is a no-op. */
void dv_keyfile_free(dv_keyfile_t *kf);

/*
 * Look at the file once: when its bytes changed, rotate (current becomes
 * previous).  1 rotated, 0 unchanged, or a negative error (logged; the
 * keys stay).  The watcher calls this every second; tests call it too.
 */
int dv_keyfile_poll(dv_keyfile_t *kf);

/* A number that changes whenever the keys do (lock-free; for callers that
 * keep copies and want to know when to refresh them). */
uint64_t dv_keyfile_generation(const dv_keyfile_t *kf);
/*
 * Copy the current keys to `cur` and the previous ones to `prev` (may be
 * NULL); *has_prev (may be NULL) says whether there are previous ones.
 * Returns the generation of what was copied.
 */
uint64_t dv_keyfile_get(dv_keyfile_t *kf, dv_keyfile_keys_t *cur,
			dv_keyfile_keys_t *prev, bool *has_prev);

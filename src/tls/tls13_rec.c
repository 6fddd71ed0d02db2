/*
 * The TLS 1.3 record layer after the handshake (RFC 8446 §5, §4.6.3).
 * See tls13_rec.h.
 *
 * Each direction keeps its traffic secret, the AEAD key state derived from
 * it, the IV and the next sequence number.  A record's nonce is the IV
 * with the sequence number (64 bits, big-endian) XORed into its last 8
 * bytes, its additional data the 5-byte header (§5.2, §5.3).  A KeyUpdate
 * from the peer moves its direction to the next secret,
 * HKDF-Expand-Label(secret, "traffic upd", "", Hash.length), sequence 0;
 * one that asks for ours makes us owe one: it is sealed in front of the
 * next record we send (or by dv_tls13_rec_flush() at the end of the read
 * that met it) under the current keys, and ours move on after it.  Several
 * requests before we answer get one KeyUpdate, as §4.6.3 allows.
 */
#include "src/tls/tls13_rec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/kdf.h>

#include "src/core/errors.h"

#define SECRET_MAX 48
#define KEY_MAX 32
#define IV_LEN 12
#define TAG_LEN 16
#define HDR_LEN 5
#define HS_KEY_UPDATE 24

typedef struct {
	uint8_t secret[SECRET_MAX];
	uint8_t key[KEY_MAX]; /* ChaCha20-Poly1305 only: AES keeps its schedule */
	uint8_t iv[IV_LEN];
	uint64_t seq;
	Aes aes;
	bool aes_ready;
} dir_t;

struct dv_tls13_rec {
	unsigned suite;
	uint8_t hash_len, key_len;
	bool owe_update; /* the peer asked for our KeyUpdate */
	uint8_t alert;	 /* for the last error of open */
	dir_t rd, wr;
};

size_t dv_tls13_hash_len(unsigned suite)
{
	switch (suite) {
	case DV_TLS13_AES_128_GCM_SHA256:
	case DV_TLS13_CHACHA20_POLY1305_SHA256:
		return 32;
	case DV_TLS13_AES_256_GCM_SHA384:
		return 48;
	default:
		return 0;
	}
}

static size_t key_len_of(unsigned suite)
{
	return suite == DV_TLS13_AES_128_GCM_SHA256 ? 16 : 32;
}

static int expand_label(unsigned suite, const uint8_t *secret,
			const char *label, uint8_t *out, size_t out_len)
{
	size_t hl = dv_tls13_hash_len(suite);
	static const uint8_t proto[] = "tls13 ";
	int ret = wc_Tls13_HKDF_Expand_Label(
		out, (word32)out_len, secret, (word32)hl, proto,
		sizeof(proto) - 1, (const uint8_t *)label,
		(word32)strlen(label), NULL, 0,
		hl == 48 ? WC_SHA384 : WC_SHA256);
	return ret == 0 ? 0 : -EIO;
}

bool dv_tls13_secret_check(unsigned suite, const uint8_t *secret,
			   const uint8_t *key, const uint8_t *iv)
{
	uint8_t k[KEY_MAX], i[IV_LEN];
	size_t kl = key_len_of(suite);
	bool ok = dv_tls13_hash_len(suite) &&
		  expand_label(suite, secret, "key", k, kl) == 0 &&
		  memcmp(k, key, kl) == 0 &&
		  expand_label(suite, secret, "iv", i, IV_LEN) == 0 &&
		  memcmp(i, iv, IV_LEN) == 0;
	explicit_bzero(k, sizeof(k));
	explicit_bzero(i, sizeof(i));
	return ok;
}

static void dir_clear(dir_t *d)
{
	if (d->aes_ready)
		wc_AesFree(&d->aes);
	explicit_bzero(d, sizeof(*d));
}

/* Keys and IV of `d` from its secret, sequence 0 (or `seq`). */
static int dir_keys(const dv_tls13_rec_t *r, dir_t *d, uint64_t seq)
{
	uint8_t key[KEY_MAX];
	int ret = expand_label(r->suite, d->secret, "key", key, r->key_len);
	if (ret == 0)
		ret = expand_label(r->suite, d->secret, "iv", d->iv, IV_LEN);
	if (ret == 0 && r->suite == DV_TLS13_CHACHA20_POLY1305_SHA256) {
		memcpy(d->key, key, r->key_len);
	} else if (ret == 0) {
		if (!d->aes_ready) {
			if (wc_AesInit(&d->aes, NULL, INVALID_DEVID) != 0)
				ret = -EIO;
			else
				d->aes_ready = true;
		}
		if (ret == 0 &&
		    wc_AesGcmSetKey(&d->aes, key, r->key_len) != 0)
			ret = -EIO;
	}
	explicit_bzero(key, sizeof(key));
	d->seq = seq;
	return ret;
}

/* RFC 8446 §7.2: the next generation of `d`'s secret, and its keys. */
static int dir_update(const dv_tls13_rec_t *r, dir_t *d)
{
	uint8_t next[SECRET_MAX];
	int ret = expand_label(r->suite, d->secret, "traffic upd", next,
			       r->hash_len);
	if (ret == 0) {
		memcpy(d->secret, next, r->hash_len);
		ret = dir_keys(r, d, 0);
	}
	explicit_bzero(next, sizeof(next));
	return ret;
}

dv_tls13_rec_t *dv_tls13_rec_new(unsigned suite, const uint8_t *rd_secret,
				 uint64_t rd_seq, const uint8_t *wr_secret,
				 uint64_t wr_seq)
{
	size_t hl = dv_tls13_hash_len(suite);
	if (!hl)
		return NULL;
	dv_tls13_rec_t *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->suite = suite;
	r->hash_len = (uint8_t)hl;
	r->key_len = (uint8_t)key_len_of(suite);
	memcpy(r->rd.secret, rd_secret, hl);
	memcpy(r->wr.secret, wr_secret, hl);
	if (dir_keys(r, &r->rd, rd_seq) < 0 ||
	    dir_keys(r, &r->wr, wr_seq) < 0) {
		dv_tls13_rec_free(r);
		return NULL;
	}
	return r;
}

void dv_tls13_rec_free(dv_tls13_rec_t *r)
{
	if (!r)
		return;
	dir_clear(&r->rd);
	dir_clear(&r->wr);
	free(r);
}

static void nonce_of(const dir_t *d, uint8_t nonce[IV_LEN])
{
	memcpy(nonce, d->iv, IV_LEN);
	for (int i = 0; i < 8; i++)
		nonce[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

ssize_t dv_tls13_rec_len(const uint8_t *in, size_t len)
{
	if (len < HDR_LEN)
		return 0;
	/* after the Finished only protected records: no change_cipher_spec
	 * (§5: it is dropped only before the peer's Finished), no
	 * plaintext alert or handshake */
	if (in[0] != DV_TLS13_APPDATA || in[1] != 3 || in[2] != 3)
		return -EPROTO;
	size_t body = (size_t)in[3] << 8 | in[4];
	if (body > DV_TLS13_MAX_BODY)
		return -EMSGSIZE;
	if (body < 1 + TAG_LEN)
		return -EPROTO;
	return len < HDR_LEN + body ? 0 : (ssize_t)(HDR_LEN + body);
}

/* A handshake record: only KeyUpdate is expected (§4.6.3), and it ends
 * the record (§5.1: messages do not span a key change).  A message split
 * over records, a NewSessionTicket or a post-handshake authentication
 * answer we never asked for are unexpected. */
static int handshake_in(dv_tls13_rec_t *r, const uint8_t *m, size_t len)
{
	if (len < 4 || m[0] != HS_KEY_UPDATE) {
		r->alert = DV_TLS13_UNEXPECTED_MESSAGE;
		return -EPROTO;
	}
	size_t body = (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
	if (len != 4 + body) {
		/* cut short, or more behind a key change */
		r->alert = DV_TLS13_UNEXPECTED_MESSAGE;
		return -EPROTO;
	}
	if (body != 1) {
		r->alert = DV_TLS13_DECODE_ERROR;
		return -EPROTO;
	}
	if (m[4] > 1) {
		r->alert = DV_TLS13_ILLEGAL_PARAMETER;
		return -EPROTO;
	}
	if (dir_update(r, &r->rd) < 0) {
		r->alert = DV_TLS13_INTERNAL_ERROR;
		return -EIO;
	}
	if (m[4] == 1)
		r->owe_update = true;
	return 0;
}

int dv_tls13_rec_open(dv_tls13_rec_t *r, uint8_t *rec, size_t len,
		      uint8_t **pt, size_t *pt_len)
{
	*pt = NULL;
	*pt_len = 0;
	ssize_t whole = dv_tls13_rec_len(rec, len);
	if (whole <= 0 || (size_t)whole != len) {
		r->alert = whole == -EMSGSIZE ? DV_TLS13_RECORD_OVERFLOW
					      : DV_TLS13_UNEXPECTED_MESSAGE;
		return whole < 0 ? (int)whole : -EPROTO;
	}
	if (r->rd.seq == UINT64_MAX) {
		/* §5.3: rekey or close before the sequence number wraps */
		r->alert = DV_TLS13_CLOSE_NOTIFY;
		return -EOVERFLOW;
	}
	uint8_t nonce[IV_LEN];
	nonce_of(&r->rd, nonce);
	uint8_t *body = rec + HDR_LEN;
	size_t n = len - HDR_LEN - TAG_LEN;
	int ret;
	if (r->suite == DV_TLS13_CHACHA20_POLY1305_SHA256)
		ret = wc_ChaCha20Poly1305_Decrypt(r->rd.key, nonce, rec,
						  HDR_LEN, body, (word32)n,
						  body + n, body);
	else
		ret = wc_AesGcmDecrypt(&r->rd.aes, body, body, (word32)n,
				       nonce, IV_LEN, body + n, TAG_LEN, rec,
				       HDR_LEN);
	if (ret != 0) {
		r->alert = DV_TLS13_BAD_RECORD_MAC;
		return -EBADMSG;
	}
	r->rd.seq++;
	/* the content type is the last non-zero byte (§5.4) */
	while (n > 0 && body[n - 1] == 0)
		n--;
	if (n == 0) {
		r->alert = DV_TLS13_UNEXPECTED_MESSAGE;
		return -EPROTO;
	}
	uint8_t type = body[--n];
	if (n > DV_TLS13_MAX_PLAIN) {
		r->alert = DV_TLS13_RECORD_OVERFLOW;
		return -EMSGSIZE;
	}
	switch (type) {
	case DV_TLS13_APPDATA:
		*pt = body;
		*pt_len = n;
		return 0;
	case DV_TLS13_ALERT:
		/* close_notify ends the stream; any other alert is an error
		 * whatever its level says (§6) */
		if (n == 2 && body[1] == DV_TLS13_CLOSE_NOTIFY)
			return DV_TLS_EOF;
		r->alert = n == 2 ? DV_TLS13_NO_ALERT : DV_TLS13_DECODE_ERROR;
		return -ECONNRESET;
	case DV_TLS13_HANDSHAKE:
		return handshake_in(r, body, n);
	default:
		r->alert = DV_TLS13_UNEXPECTED_MESSAGE;
		return -EPROTO;
	}
}

uint8_t dv_tls13_rec_alert_for(const dv_tls13_rec_t *r)
{
	return r->alert;
}

bool dv_tls13_rec_owes(const dv_tls13_rec_t *r)
{
	return r->owe_update;
}

/* One record under the current write keys; no KeyUpdate owed first. */
static ssize_t seal_one(dv_tls13_rec_t *r, uint8_t type, const void *pt,
			size_t len, uint8_t *out, size_t cap)
{
	if (len > DV_TLS13_MAX_PLAIN)
		return -EMSGSIZE;
	if (cap < len + DV_TLS13_OVERHEAD)
		return -ENOBUFS;
	if (r->wr.seq == UINT64_MAX)
		return -EOVERFLOW;
	size_t body = len + 1 + TAG_LEN;
	out[0] = DV_TLS13_APPDATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(body >> 8);
	out[4] = (uint8_t)body;
	uint8_t *b = out + HDR_LEN;
	if (len)
		memmove(b, pt, len);
	b[len] = type;
	uint8_t nonce[IV_LEN];
	nonce_of(&r->wr, nonce);
	int ret;
	if (r->suite == DV_TLS13_CHACHA20_POLY1305_SHA256)
		ret = wc_ChaCha20Poly1305_Encrypt(r->wr.key, nonce, out,
						  HDR_LEN, b, (word32)(len + 1),
						  b, b + len + 1);
	else
		ret = wc_AesGcmEncrypt(&r->wr.aes, b, b, (word32)(len + 1),
				       nonce, IV_LEN, b + len + 1, TAG_LEN, out,
				       HDR_LEN);
	if (ret != 0)
		return -EIO;
	r->wr.seq++;
	return (ssize_t)(HDR_LEN + body);
}

ssize_t dv_tls13_rec_update(dv_tls13_rec_t *r, bool request, uint8_t *out,
			    size_t cap)
{
	const uint8_t ku[] = { HS_KEY_UPDATE, 0, 0, 1, request ? 1 : 0 };
	ssize_t n = seal_one(r, DV_TLS13_HANDSHAKE, ku, sizeof(ku), out, cap);
	if (n < 0)
		return n;
	r->owe_update = false; /* ours answers any request */
	if (dir_update(r, &r->wr) < 0)
		return -EIO;
	return n;
}

ssize_t dv_tls13_rec_flush(dv_tls13_rec_t *r, uint8_t *out, size_t cap)
{
	return r->owe_update ? dv_tls13_rec_update(r, false, out, cap) : 0;
}

ssize_t dv_tls13_rec_seal(dv_tls13_rec_t *r, uint8_t type, const void *pt,
			  size_t len, uint8_t *out, size_t cap)
{
	size_t need = len + DV_TLS13_OVERHEAD +
		      (r->owe_update ? 5 + DV_TLS13_OVERHEAD : 0);
	if (cap < need)
		return -ENOBUFS;
	ssize_t k = dv_tls13_rec_flush(r, out, cap);
	if (k < 0)
		return k;
	ssize_t n = seal_one(r, type, pt, len, out + k, cap - (size_t)k);
	if (n < 0)
		return n;
	return k + n;
}

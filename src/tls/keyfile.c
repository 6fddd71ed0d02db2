/*
 * The ticket-key file: read, derive, watch, rotate.  See keyfile.h.
 *
 * Design note.  Replicas never talk to each other; they agree on keys
 * only because they read the same bytes.  So a rotation is a change of
 * the file's bytes, not of its metadata: a `touch`, a Secret re-synced
 * with the same value or a ConfigMap reload that rewrites the same file
 * keeps the keys (and the previous ones), and only new bytes rotate.
 * The watcher compares what stat() says (device, inode, size, mtime,
 * ctime) before it reads, so an unchanged file costs one stat() a second.
 */
#include "src/tls/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "src/core/errors.h"
#include "src/core/log.h"

#define POLL_MS 1000
#define READ_MAX 4096 /* more than any base64 form of 80 bytes */

struct dv_keyfile {
	char path[512];
	pthread_mutex_t lock; /* guards cur, prev, has_prev, seen, material */
	dv_keyfile_keys_t cur, prev;
	bool has_prev;
	uint8_t material[DV_KEYFILE_SIZE]; /* the bytes cur came from */
	struct stat seen; /* the file as last looked at */
	_Atomic uint64_t gen;

	pthread_t thread;
	bool running, stop;
	pthread_cond_t cond;
};

static bool is_b64_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int dv_keyfile_decode(const uint8_t *buf, size_t len,
		      uint8_t out[DV_KEYFILE_SIZE], char *why, size_t why_len)
{
	if (len > READ_MAX) {
		snprintf(why, why_len, "more than %d bytes: expected %d",
			 READ_MAX, DV_KEYFILE_SIZE);
		return DV_ECONFIG;
	}
	if (len == DV_KEYFILE_SIZE) {
		memcpy(out, buf, DV_KEYFILE_SIZE);
		return 0;
	}
	char text[READ_MAX];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (is_b64_space(buf[i]))
			continue;
		text[n++] = (char)buf[i];
	}
	uint8_t raw[READ_MAX];
	word32 raw_len = sizeof(raw);
	if (n == 0 ||
	    Base64_Decode((const byte *)text, (word32)n, raw, &raw_len) != 0) {
		snprintf(why, why_len,
			 "%zu bytes: expected %d random bytes, raw or base64 "
			 "(openssl rand %d)",
			 len, DV_KEYFILE_SIZE, DV_KEYFILE_SIZE);
		return DV_ECONFIG;
	}
	if (raw_len != DV_KEYFILE_SIZE) {
		snprintf(why, why_len,
			 "base64 of %u bytes: expected %d (openssl rand %d)",
			 (unsigned)raw_len, DV_KEYFILE_SIZE, DV_KEYFILE_SIZE);
		return DV_ECONFIG;
	}
	memcpy(out, raw, DV_KEYFILE_SIZE);
	return 0;
}

static int derive_one(const uint8_t material[DV_KEYFILE_SIZE],
		      const char *label, uint8_t *out, size_t len)
{
	static const char salt[] = "dnsveil ticket-key-file v1";
	return wc_HKDF(WC_SHA256, material, DV_KEYFILE_SIZE, (const byte *)salt,
		       sizeof(salt) - 1, (const byte *)label,
		       (word32)strlen(label), out, (word32)len) == 0
		       ? 0
		       : -EIO;
}

static int derive(const uint8_t material[DV_KEYFILE_SIZE], dv_keyfile_keys_t *k)
{
	if (derive_one(material, "tls ticket name", k->ticket_name,
		       sizeof(k->ticket_name)) ||
	    derive_one(material, "tls ticket key", k->ticket_key,
		       sizeof(k->ticket_key)) ||
	    derive_one(material, "quic ticket key", k->quic_ticket,
		       sizeof(k->quic_ticket)) ||
	    derive_one(material, "quic token key", k->quic_token,
		       sizeof(k->quic_token)))
		return -EIO;
	return 0;
}

/* The file's 80 bytes and what fstat() said of it.  0 or DV_ECONFIG. */
static int read_material(const char *path, uint8_t out[DV_KEYFILE_SIZE],
			 struct stat *st, char *err, size_t err_len)
{
	char why[160];
	uint8_t buf[READ_MAX];
	ssize_t n = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, st) != 0) {
		snprintf(err, err_len, "tls.ticket-key-file: %s: %s", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return DV_ECONFIG;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		snprintf(err, err_len, "tls.ticket-key-file: %s: not a file",
			 path);
		return DV_ECONFIG;
	}
	size_t len = 0;
	while (len < sizeof(buf) &&
	       (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, err_len, "tls.ticket-key-file: %s: %s", path,
			 strerror(e));
		return DV_ECONFIG;
	}
	int ret = dv_keyfile_decode(buf, len, out, why, sizeof(why));
	memset(buf, 0, sizeof(buf));
	if (ret)
		snprintf(err, err_len, "tls.ticket-key-file: %s: %s", path,
			 why);
	return ret;
}

int dv_keyfile_read(const char *path, dv_keyfile_keys_t *out, char *err,
		    size_t err_len)
{
	uint8_t material[DV_KEYFILE_SIZE];
	struct stat st;
	int ret = read_material(path, material, &st, err, err_len);
	if (ret == 0 && derive(material, out) != 0) {
		snprintf(err, err_len, "tls.ticket-key-file: %s: HKDF failed",
			 path);
		ret = DV_ECONFIG;
	}
	memset(material, 0, sizeof(material));
	return ret;
}

dv_keyfile_t *dv_keyfile_new(const char *path, char *err, size_t err_len)
{
	dv_keyfile_t *kf = calloc(1, sizeof(*kf));
	if (!kf) {
		snprintf(err, err_len, "tls.ticket-key-file: out of memory");
		return NULL;
	}
	if (snprintf(kf->path, sizeof(kf->path), "%s", path) >=
	    (int)sizeof(kf->path)) {
		snprintf(err, err_len, "tls.ticket-key-file: path too long");
		free(kf);
		return NULL;
	}
	int ret = read_material(path, kf->material, &kf->seen, err, err_len);
	if (ret == 0 && derive(kf->material, &kf->cur) != 0) {
		snprintf(err, err_len, "tls.ticket-key-file: %s: HKDF failed",
			 path);
		ret = DV_ECONFIG;
	}
	if (ret) {
		memset(kf, 0, sizeof(*kf));
		free(kf);
		return NULL;
	}
	pthread_mutex_init(&kf->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&kf->cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_store(&kf->gen, 1);
	return kf;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int dv_keyfile_poll(dv_keyfile_t *kf)
{
	struct stat st;
	char err[700];
	/* stat() follows the ..data symlink a Secret update swaps */
	if (stat(kf->path, &st) != 0) {
		int e = errno;
		pthread_mutex_lock(&kf->lock);
		/* one line per disappearance, not one a second */
		bool news = kf->seen.st_ino != 0;
		memset(&kf->seen, 0, sizeof(kf->seen));
		pthread_mutex_unlock(&kf->lock);
		if (news)
			dv_log_error("tls.ticket-key-file: %s: %s; the keys "
				     "stay as they are",
				     kf->path, strerror(e));
		return -e;
	}
	pthread_mutex_lock(&kf->lock);
	bool same = same_file(&st, &kf->seen);
	pthread_mutex_unlock(&kf->lock);
	if (same)
		return 0;
	uint8_t material[DV_KEYFILE_SIZE];
	dv_keyfile_keys_t next;
	int ret = read_material(kf->path, material, &st, err, sizeof(err));
	if (ret == 0 && derive(material, &next) != 0) {
		snprintf(err, sizeof(err), "%s: HKDF failed", kf->path);
		ret = -EIO;
	}
	pthread_mutex_lock(&kf->lock);
	kf->seen = st; /* a bad version is reported once */
	bool rotate = ret == 0 &&
		      memcmp(material, kf->material, sizeof(material)) != 0;
	if (rotate) {
		kf->prev = kf->cur;
		kf->has_prev = true;
		kf->cur = next;
		memcpy(kf->material, material, sizeof(material));
		atomic_fetch_add(&kf->gen, 1);
	}
	pthread_mutex_unlock(&kf->lock);
	memset(material, 0, sizeof(material));
	memset(&next, 0, sizeof(next));
	if (ret) {
		dv_log_error("%s; the keys stay as they are", err);
		return ret;
	}
	if (rotate)
		dv_log_info("tls.ticket-key-file: %s changed: new session "
			    "tickets and QUIC tokens use its keys, the "
			    "previous keys are still accepted until the next "
			    "change",
			    kf->path);
	return rotate ? 1 : 0;
}

static void *watcher(void *arg)
{
	dv_keyfile_t *kf = arg;
	pthread_mutex_lock(&kf->lock);
	while (!kf->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + POLL_MS * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		if (pthread_cond_timedwait(&kf->cond, &kf->lock, &ts) !=
			    ETIMEDOUT ||
		    kf->stop)
			continue;
		pthread_mutex_unlock(&kf->lock);
		(void)dv_keyfile_poll(kf);
		pthread_mutex_lock(&kf->lock);
	}
	pthread_mutex_unlock(&kf->lock);
	return NULL;
}

int dv_keyfile_start(dv_keyfile_t *kf)
{
	if (kf->running)
		return 0;
	int ret = pthread_create(&kf->thread, NULL, watcher, kf);
	if (ret)
		return -ret;
	kf->running = true;
	return 0;
}

void dv_keyfile_free(dv_keyfile_t *kf)
{
	if (!kf)
		return;
	if (kf->running) {
		pthread_mutex_lock(&kf->lock);
		kf->stop = true;
		pthread_cond_signal(&kf->cond);
		pthread_mutex_unlock(&kf->lock);
		pthread_join(kf->thread, NULL);
	}
	pthread_cond_destroy(&kf->cond);
	pthread_mutex_destroy(&kf->lock);
	memset(kf, 0, sizeof(*kf));
	free(kf);
}

uint64_t dv_keyfile_generation(const dv_keyfile_t *kf)
{
	return atomic_load(&((dv_keyfile_t *)kf)->gen);
}

uint64_t dv_keyfile_get(dv_keyfile_t *kf, dv_keyfile_keys_t *cur,
			dv_keyfile_keys_t *prev, bool *has_prev)
{
	pthread_mutex_lock(&kf->lock);
	uint64_t gen = atomic_load(&kf->gen);
	if (cur)
		*cur = kf->cur;
	if (prev)
		*prev = kf->prev;
	if (has_prev)
		*has_prev = kf->has_prev;
	pthread_mutex_unlock(&kf->lock);
	return gen;
}

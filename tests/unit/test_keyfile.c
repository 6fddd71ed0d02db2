/*
 * Unit tests for src/tls/keyfile.c: the ticket-key file's two forms (raw
 * and base64) give the same keys, each use gets a key of its own, wrong
 * sizes are refused with the reason, and dv_keyfile_poll rotates only on
 * new bytes (current becomes previous), keeps the keys on a bad file and
 * takes the file back once it is good again.  The files live in a fresh
 * directory under /tmp; the watcher thread is not started (poll is called
 * directly, as the thread would).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "src/core/errors.h"
#include "src/tls/keyfile.h"

static char dir[64];
static char path[128];

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrst"
				"uvwxyz0123456789+/";

/* base64 of `len` bytes (a multiple of 3 for this test's 80+1 cases is not
 * needed: padding is written). */
static size_t b64(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64_chars[(v >> 18) & 63];
		out[o++] = b64_chars[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64_chars[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

/* Replace the file as a Secret update does: write aside, rename over. */
static void put(const void *data, size_t len)
{
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	FILE *f = fopen(tmp, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void material(uint8_t m[DV_KEYFILE_SIZE], uint8_t seed)
{
	for (int i = 0; i < DV_KEYFILE_SIZE; i++)
		m[i] = (uint8_t)(seed * 31 + i * 7);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/dv-keyfile-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ticket.key", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static void test_forms_and_labels(void **state)
{
	(void)state;
	uint8_t m[DV_KEYFILE_SIZE];
	char text[200], err[256];
	dv_keyfile_keys_t raw, enc, other;
	material(m, 1);
	put(m, sizeof(m));
	assert_int_equal(dv_keyfile_read(path, &raw, err, sizeof(err)), 0);
	size_t n = b64(m, sizeof(m), text);
	text[n++] = '\n';
	put(text, n);
	assert_int_equal(dv_keyfile_read(path, &enc, err, sizeof(err)), 0);
	assert_memory_equal(&raw, &enc, sizeof(raw));
	/* every use has its own key */
	assert_memory_not_equal(raw.ticket_key, raw.quic_token,
				sizeof(raw.quic_token));
	assert_memory_not_equal(raw.ticket_key, raw.quic_ticket,
				sizeof(raw.ticket_key));
	assert_memory_not_equal(raw.quic_ticket, raw.quic_token,
				sizeof(raw.quic_token));
	/* other bytes, other keys */
	material(m, 2);
	put(m, sizeof(m));
	assert_int_equal(dv_keyfile_read(path, &other, err, sizeof(err)), 0);
	assert_memory_not_equal(raw.ticket_name, other.ticket_name,
				sizeof(raw.ticket_name));
	assert_memory_not_equal(raw.quic_token, other.quic_token,
				sizeof(raw.quic_token));
}

static void test_bad_files(void **state)
{
	(void)state;
	uint8_t m[DV_KEYFILE_SIZE + 1];
	char text[200], err[256];
	dv_keyfile_keys_t k;
	material(m, 3);
	put(m, 79);
	assert_int_equal(dv_keyfile_read(path, &k, err, sizeof(err)),
			 DV_ECONFIG);
	assert_non_null(strstr(err, "79 bytes: expected 80"));
	assert_non_null(strstr(err, path));
	b64(m, 81, text);
	put(text, strlen(text));
	assert_int_equal(dv_keyfile_read(path, &k, err, sizeof(err)),
			 DV_ECONFIG);
	assert_non_null(strstr(err, "base64 of 81 bytes"));
	put("", 0);
	assert_int_equal(dv_keyfile_read(path, &k, err, sizeof(err)),
			 DV_ECONFIG);
	unlink(path);
	assert_int_equal(dv_keyfile_read(path, &k, err, sizeof(err)),
			 DV_ECONFIG);
	assert_non_null(strstr(err, "No such file"));
	assert_null(dv_keyfile_new(path, err, sizeof(err)));
	assert_null(dv_keyfile_new(dir, err, sizeof(err)));
	assert_non_null(strstr(err, "not a file"));
}

static void test_rotation(void **state)
{
	(void)state;
	uint8_t m1[DV_KEYFILE_SIZE], m2[DV_KEYFILE_SIZE], m3[DV_KEYFILE_SIZE];
	char err[256];
	dv_keyfile_keys_t k1, k2, k3, cur, prev;
	bool has_prev;
	material(m1, 11);
	material(m2, 12);
	material(m3, 13);
	put(m1, sizeof(m1));
	assert_int_equal(dv_keyfile_read(path, &k1, err, sizeof(err)), 0);
	put(m2, sizeof(m2));
	assert_int_equal(dv_keyfile_read(path, &k2, err, sizeof(err)), 0);
	put(m3, sizeof(m3));
	assert_int_equal(dv_keyfile_read(path, &k3, err, sizeof(err)), 0);

	put(m1, sizeof(m1));
	dv_keyfile_t *kf = dv_keyfile_new(path, err, sizeof(err));
	assert_non_null(kf);
	uint64_t g0 = dv_keyfile_get(kf, &cur, &prev, &has_prev);
	assert_memory_equal(&cur, &k1, sizeof(cur));
	assert_false(has_prev);
	assert_int_equal(dv_keyfile_poll(kf), 0); /* nothing changed */

	/* the same bytes in a new file: no rotation */
	put(m1, sizeof(m1));
	assert_int_equal(dv_keyfile_poll(kf), 0);
	assert_int_equal(dv_keyfile_generation(kf), g0);

	put(m2, sizeof(m2));
	assert_int_equal(dv_keyfile_poll(kf), 1);
	uint64_t g1 = dv_keyfile_get(kf, &cur, &prev, &has_prev);
	assert_true(g1 != g0);
	assert_memory_equal(&cur, &k2, sizeof(cur));
	assert_true(has_prev);
	assert_memory_equal(&prev, &k1, sizeof(prev));
	assert_int_equal(dv_keyfile_poll(kf), 0);

	/* a bad file: an error, the keys stay; reported once */
	put(m3, 40);
	assert_int_equal(dv_keyfile_poll(kf), DV_ECONFIG);
	assert_int_equal(dv_keyfile_poll(kf), 0);
	assert_int_equal(dv_keyfile_get(kf, &cur, &prev, NULL), g1);
	assert_memory_equal(&cur, &k2, sizeof(cur));
	/* gone: an error, the keys stay */
	unlink(path);
	assert_true(dv_keyfile_poll(kf) < 0);
	assert_memory_equal(&cur, &k2, sizeof(cur));

	put(m3, sizeof(m3));
	assert_int_equal(dv_keyfile_poll(kf), 1);
	dv_keyfile_get(kf, &cur, &prev, &has_prev);
	assert_memory_equal(&cur, &k3, sizeof(cur));
	assert_memory_equal(&prev, &k2, sizeof(prev));
	dv_keyfile_free(kf);
	dv_keyfile_free(NULL);
}

static void test_watcher_starts_and_stops(void **state)
{
	(void)state;
	uint8_t m[DV_KEYFILE_SIZE];
	char err[256];
	material(m, 21);
	put(m, sizeof(m));
	dv_keyfile_t *kf = dv_keyfile_new(path, err, sizeof(err));
	assert_non_null(kf);
	assert_int_equal(dv_keyfile_start(kf), 0);
	dv_keyfile_free(kf); /* joins the thread at once, not after 1 s */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forms_and_labels, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watcher_starts_and_stops,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

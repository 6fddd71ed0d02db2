/*
 * The ticket-key file (tls.ticket-key-file): bytes as the file's contents,
 * what dnsveil reads at start and on every change of the file.  Besides
 * memory errors it checks the decoder against what it promises:
 *  - exactly 80 bytes are the key material themselves, whatever they are;
 *  - anything else is accepted only as base64 of 80 bytes, and then the
 *    same text without its whitespace gives the same 80 bytes;
 *  - a refusal always says why.
 *
 * Input: the file's contents.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/errors.h"
#include "src/tls/keyfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[DV_KEYFILE_SIZE], again[DV_KEYFILE_SIZE];
	char why[160] = "";
	int ret = dv_keyfile_decode(data, size, out, why, sizeof(why));
	if (size == DV_KEYFILE_SIZE) {
		CHECK(ret == 0);
		CHECK(memcmp(out, data, size) == 0);
		return 0;
	}
	if (ret != 0) {
		CHECK(ret == DV_ECONFIG);
		CHECK(why[0] != '\0');
		return 0;
	}
	/* base64 of 80 bytes: at least 107 characters */
	CHECK(size >= 107);
	uint8_t *packed = malloc(size);
	CHECK(packed);
	size_t n = 0;
	for (size_t i = 0; i < size; i++)
		if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n' &&
		    data[i] != '\r')
			packed[n++] = data[i];
	if (n != DV_KEYFILE_SIZE) {
		CHECK(dv_keyfile_decode(packed, n, again, why, sizeof(why)) ==
		      0);
		CHECK(memcmp(out, again, sizeof(out)) == 0);
	}
	free(packed);
	return 0;
}

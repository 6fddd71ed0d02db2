#include "src/core/errors.h"

#include <string.h>

const char *dv_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define DV_ERR_CASE(name, off, text)                                         \
	case name:                                                           \
		return text;
		DV_ERRORS(DV_ERR_CASE)
#undef DV_ERR_CASE
	default:
		break;
	}
	if (err < 0 && err > DV_ERR_BASE)
		return strerror(-err);
	return "unknown error";
}

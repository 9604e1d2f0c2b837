/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mocks.h"

/*
 * open() links as open64 (_FILE_OFFSET_BITS=64). Only paths containing wrap_open64_match
 * (all when NULL) count; wrap_open64_before, when set, runs first on an armed call (a test
 * makes the race happen there, e.g. a process exits right before its /proc entry is opened).
 */
int __wrap_open64(const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (wrap_open64_armed > 0 && (!wrap_open64_match || strstr(path, wrap_open64_match))) {
		if (wrap_open64_skip > 0) {
			wrap_open64_skip--;
			return __real_open64(path, flags, mode);
		}
		wrap_open64_armed--;
		if (wrap_open64_before)
			wrap_open64_before(path);
		errno = mock_type(int);
		return -1;
	}
	return __real_open64(path, flags, mode);
}

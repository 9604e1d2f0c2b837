/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

int __wrap_fsync(int fd)
{
	wrap_fsync_calls++;
	if (wrap_fsync_armed > 0) {
		if (wrap_fsync_skip > 0) {
			wrap_fsync_skip--;
			return __real_fsync(fd);
		}
		wrap_fsync_armed--;

		errno = mock_type(int);
		return -1;
	}
	return __real_fsync(fd);
}

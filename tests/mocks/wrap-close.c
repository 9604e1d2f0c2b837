/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

int __wrap_close(int fd)
{
	if (wrap_close_armed > 0) {
		if (wrap_close_skip > 0) {
			wrap_close_skip--;
			return __real_close(fd);
		}
		wrap_close_armed--;
		(void) __real_close(fd); /* Linux closes the fd even on EIO */
		errno = mock_type(int);
		return -1;
	}
	return __real_close(fd);
}

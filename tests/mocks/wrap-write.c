/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

/* Armed: the queued value is an errno (> 0: fail) or -N (a short write of at most N bytes). */
ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	if (wrap_write_armed > 0) {
		int v;

		if (wrap_write_skip > 0) {
			wrap_write_skip--;
			return __real_write(fd, buf, len);
		}
		wrap_write_armed--;
		v = mock_type(int);
		if (v > 0) {
			errno = v;
			return -1;
		}
		if ((size_t) -v < len)
			len = (size_t) -v;
	}
	return __real_write(fd, buf, len);
}

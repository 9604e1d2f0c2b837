/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

ssize_t __wrap_read(int fd, void *buf, size_t len)
{
	if (wrap_read_armed > 0) {
		if (wrap_read_skip > 0) {
			wrap_read_skip--;
			return __real_read(fd, buf, len);
		}
		wrap_read_armed--;

		errno = mock_type(int);
		return -1;
	}
	return __real_read(fd, buf, len);
}

/*
 * The library is built with _FORTIFY_SOURCE: its reads into sized buffers are __read_chk. Both
 * take their values from the queue of __wrap_read (will_return(__wrap_read, errno)).
 */
ssize_t __wrap___read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (wrap_read_armed > 0)
		return __wrap_read(fd, buf, len);
	return __real___read_chk(fd, buf, len, buflen);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "mocks.h"

/*
 * pwrite links as pwrite64 with _FILE_OFFSET_BITS=64. Stage calls it from a copy thread, where
 * cmocka's mock queue (thread-local) is out of reach: the errno comes from wrap_pwrite64_errno.
 * Set the variables before the thread starts (pthread_create orders the writes).
 * wrap_pwrite64_observe, when set, is shown every call first (issue 15: what is written).
 */
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t offset)
{
	if (wrap_pwrite64_observe)
		wrap_pwrite64_observe(fd, buf, len, offset);
	if (wrap_pwrite64_armed > 0) {
		if (wrap_pwrite64_skip > 0) {
			wrap_pwrite64_skip--;
			return __real_pwrite64(fd, buf, len, offset);
		}
		wrap_pwrite64_armed--;
		errno = wrap_pwrite64_errno;
		return -1;
	}
	return __real_pwrite64(fd, buf, len, offset);
}

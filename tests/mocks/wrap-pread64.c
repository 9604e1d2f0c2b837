/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mocks.h"

/*
 * pread links as pread64 with _FILE_OFFSET_BITS=64. No fault injection: every call is shown
 * to wrap_pread64_observe when set (issue 15: into which buffers payloads are read; hashing
 * threads call it, so the observer must be thread-safe), then passed through.
 */
ssize_t __wrap_pread64(int fd, void *buf, size_t len, off_t offset)
{
	if (wrap_pread64_observe)
		wrap_pread64_observe(fd, buf, len, offset);
	return __real_pread64(fd, buf, len, offset);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mocks.h"

/* Not a fault injector: shows every write to the observer (when set), then passes through. */
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t offset)
{
	if (wrap_pwrite64_observe)
		wrap_pwrite64_observe(fd, buf, len, offset);
	return __real_pwrite64(fd, buf, len, offset);
}

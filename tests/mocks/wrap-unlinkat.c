/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

int __wrap_unlinkat(int dfd, const char *name, int flags)
{
	if (wrap_unlinkat_armed > 0) {
		if (wrap_unlinkat_skip > 0) {
			wrap_unlinkat_skip--;
			return __real_unlinkat(dfd, name, flags);
		}
		wrap_unlinkat_armed--;

		errno = mock_type(int);
		return -1;
	}
	return __real_unlinkat(dfd, name, flags);
}

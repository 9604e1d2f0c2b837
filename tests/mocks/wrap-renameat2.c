/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

int __wrap_renameat2(int olddfd, const char *oldname, int newdfd, const char *newname,
		     unsigned flags)
{
	if (wrap_renameat2_armed > 0) {
		if (wrap_renameat2_skip > 0) {
			wrap_renameat2_skip--;
			return __real_renameat2(olddfd, oldname, newdfd, newname, flags);
		}
		wrap_renameat2_armed--;
		errno = mock_type(int);
		return -1;
	}
	return __real_renameat2(olddfd, oldname, newdfd, newname, flags);
}

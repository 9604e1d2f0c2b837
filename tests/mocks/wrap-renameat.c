/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mocks.h"

int __wrap_renameat(int olddfd, const char *oldname, int newdfd, const char *newname)
{
	if (wrap_renameat_armed > 0) {
		if (wrap_renameat_skip > 0) {
			wrap_renameat_skip--;
			return __real_renameat(olddfd, oldname, newdfd, newname);
		}
		wrap_renameat_armed--;
		errno = mock_type(int);
		return -1;
	}
	return __real_renameat(olddfd, oldname, newdfd, newname);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The only attribute macros of the project, and the cleanup helpers built on them.
 * Every cleanup function accepts NULL / a negative fd and preserves errno.
 */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _printf_(a, b)	 __attribute__((format(printf, a, b)))
#define _cleanup_(f)	 __attribute__((cleanup(f)))
#define _noreturn_	 __attribute__((noreturn))
#define _unused_	 __attribute__((unused))
#define _fallthrough_	 __attribute__((fallthrough))
#define _cleanup_free_	 _cleanup_(freep)
#define _cleanup_close_	 _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

#define BK_DEFINE_CLEANUP(type, func)             \
	static inline void func##p(type *p)       \
	{                                         \
		if (*p) {                         \
			int _saved_errno = errno; \
			func(*p);                 \
			errno = _saved_errno;     \
		}                                 \
	}

#define TAKE_PTR(p)                     \
	({                              \
		__typeof__(p) _p = (p); \
		(p) = NULL;             \
		_p;                     \
	})
#define TAKE_FD(fd)             \
	({                      \
		int _fd = (fd); \
		(fd) = -EBADF;  \
		_fd;            \
	})

#define BK_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void freep(void *p)
{
	int saved_errno = errno;
	free(*(void **) p);
	errno = saved_errno;
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved_errno = errno;
		(void) close(*fd);
		errno = saved_errno;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f) {
		int saved_errno = errno;
		(void) fclose(*f);
		errno = saved_errno;
	}
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loop devices: attach an already open (and verified) file, or a byte range of it, to a free
 * loop device; detach; find the loop device backing a file. All of this needs root
 * (CAP_SYS_ADMIN) and /dev/loop-control. Never logs.
 */
#pragma once

#include <stdint.h>

#include "bk-err.h"

enum bk_loop_flags {
	BK_LOOP_READ_ONLY = 1 << 0,
	BK_LOOP_PARTSCAN = 1 << 1,
	BK_LOOP_AUTOCLEAR = 1 << 2,
};

/*
 * Attach a free loop device (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, retry on races) to fd itself
 * -- the very open file that was verified, never re-opened by path -- for the byte range
 * [offset, offset + size) (size 0: to the end of the file). *ret_path gets "/dev/loopN"
 * (malloc'ed); *ret_loop_fd (optional, may be NULL) an open O_CLOEXEC fd of the loop device.
 * With BK_LOOP_AUTOCLEAR the kernel detaches the device when its last user goes away
 * (the last fd closed and nothing mounted).
 * Returns 0, -EINVAL (bad flags, offset not 512-aligned, range beyond the end of the file),
 * -EBUSY (no free device after several retries), or -errno from the kernel.
 */
int bk_loop_attach(int fd, uint64_t offset, uint64_t size, unsigned flags, char **ret_path,
		   int *ret_loop_fd, struct bk_err *err);

/* Detach a loop device (LOOP_CLR_FD). -ENXIO when not attached. */
int bk_loop_detach(const char *path, struct bk_err *err);

/*
 * The loop device whose backing file is path (inode/device match through sysfs), 0 found,
 * -ENOENT none. *ret_path gets "/dev/loopN" (malloc'ed). When several devices back the same
 * file, the one mapping the whole file (offset 0, no size limit) is preferred, then the lowest
 * number.
 */
int bk_loop_find_by_file(const char *path, char **ret_path, struct bk_err *err);

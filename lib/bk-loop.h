/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loop devices: attach an already open (and verified) file, or a byte range of it, to a free
 * loop device; detach; find the loop device backing a file. All of this needs root
 * (CAP_SYS_ADMIN) and /dev/loop-control. Never logs.
 */
#pragma once

#include <stdbool.h>
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
 * fd may be a regular file or a block device. The device exposes size rounded down to 512
 * bytes. With BK_LOOP_AUTOCLEAR and ret_loop_fd NULL the device is gone again as soon as this
 * returns, unless something else holds it: pass ret_loop_fd and close it after the mount.
 * Returns 0, -EINVAL (bad flags, offset not 512-aligned, range beyond the end of the file),
 * -EBUSY (no free device after several retries), or -errno from the kernel. Needs root.
 */
int bk_loop_attach(int fd, uint64_t offset, uint64_t size, unsigned flags, char **ret_path,
		   int *ret_loop_fd, struct bk_err *err);

/*
 * Detach a loop device (LOOP_CLR_FD). -ENXIO when not attached, -ENOTTY when path is not a
 * loop device. A device still open or mounted elsewhere is detached by the kernel when its
 * last user goes away (the kernel turns on autoclear).
 */
int bk_loop_detach(const char *path, struct bk_err *err);

/*
 * The loop device whose backing file is path (inode/device match through sysfs), 0 found,
 * -ENOENT none. *ret_path gets "/dev/loopN" (malloc'ed). When several devices back the same
 * file, the first of bk_loop_list_by_file()'s order wins (whole file, partition scanning,
 * lowest number). The sysfs list of attached devices is walked; each one's backing inode is
 * read with LOOP_GET_STATUS64.
 */
int bk_loop_find_by_file(const char *path, char **ret_path, struct bk_err *err);

/* What a loop device maps (LOOP_GET_STATUS64 + sysfs). */
struct bk_loop_info {
	unsigned number;     /* N of /dev/loopN */
	uint64_t offset;     /* into the backing file */
	uint64_t size_limit; /* 0: to the end of the file */
	bool read_only;
	bool partscan;
	bool autoclear;
	uint64_t backing_dev; /* st_dev and st_ino of the backing file */
	uint64_t backing_ino;
};

/* Query the loop device path. -ENXIO when not attached, -ENOTTY when not a loop device. */
int bk_loop_get_info(const char *path, struct bk_loop_info *ret, struct bk_err *err);

/*
 * Every loop device whose backing file is the regular file path (inode/device match),
 * best first: whole-file mappings (offset 0, no size limit) before ranges, partition scanning
 * before none, then by number. *ret_paths is a NULL-terminated malloc'ed list of "/dev/loopN"
 * (free with bk_loop_strv_free()). Returns the number found (0: none) or -errno.
 */
int bk_loop_list_by_file(const char *path, char ***ret_paths, struct bk_err *err);

/* Free a list from bk_loop_list_by_file(); returns NULL. */
char **bk_loop_strv_free(char **l);

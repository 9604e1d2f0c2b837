/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mounting through libmount, plus the "is this block device in use" check. Needs root.
 * Never logs.
 */
#pragma once

#include <stdint.h>

#include "bk-err.h"

enum bk_mount_flags {
	BK_MOUNT_RDONLY = 1 << 0,
	BK_MOUNT_NOSUID_NODEV = 1 << 1,
};

/*
 * Mount through libmount (mnt_context): source, target, fstype (NULL: probe), flags, extra
 * options (may be NULL). Errors carry libmount's message.
 * Returns 0 or -errno (-ENOENT no such source or target, -EBUSY already mounted, ...).
 */
int bk_mount(const char *source, const char *target, const char *fstype, unsigned flags,
	     const char *options, struct bk_err *err);

enum bk_umount_flags {
	BK_UMOUNT_DETACH_LOOP = 1 << 0,
	BK_UMOUNT_LAZY = 1 << 1,
};

/*
 * Unmount target through libmount; with BK_UMOUNT_DETACH_LOOP also detach the loop device that
 * was its source (if any). -EINVAL "not a mount point".
 */
int bk_umount(const char *target, unsigned flags, struct bk_err *err);

/*
 * Read-only mount of [offset, offset+size) of fd (a verified bundle or bank file) at target:
 * bk_loop_attach(READ_ONLY|AUTOCLEAR) + bk_mount(RDONLY|NOSUID_NODEV); the loop device goes
 * away with the unmount. fstype: "squashfs", "erofs", "ext4".
 */
int bk_mount_loop_fd(int fd, uint64_t offset, uint64_t size, const char *fstype, const char *target,
		     struct bk_err *err);

/*
 * Is the block device in use (mounted or claimed anywhere, any namespace)? Tries
 * open(O_RDONLY|O_EXCL): 1 busy, 0 free, <0 error.
 */
int bk_blockdev_is_busy(const char *devpath, struct bk_err *err);

/*
 * The mount point, in this mount namespace, of the block device devpath (matched by device
 * number in /proc/self/mountinfo; the newest mount when there are several). Returns 0 with
 * *ret_target malloc'ed, -ENOENT when it is not mounted here, other -errno.
 */
int bk_mount_find_device(const char *devpath, char **ret_target, struct bk_err *err);

/* A mount of one of the devices bk_mount_find_holder() looked for. */
struct bk_mount_holder {
	pid_t pid;	  /* a live process whose mount namespace has the mount */
	char comm[32];	  /* its command name (/proc/PID/comm), "" when unknown */
	dev_t devno;	  /* which of the devices */
	char target[512]; /* where, in that process's mount namespace (cut if longer) */
};

/*
 * Is one of the block devices devs[0..n) mounted in the mount namespace of a live process,
 * any namespace? Reads /proc/PID/mountinfo once per mount namespace (processes that vanish
 * or cannot be read meanwhile are skipped: issue 16). A namespace that no process is in any
 * more (a killed process's, being torn down, or one kept by a bind mount of its nsfs file)
 * is not found: that is how a caller tells a mount that will go away from one that stays.
 * Returns 1 and *ret (optional), 0 when none is, -errno when /proc cannot be read.
 */
int bk_mount_find_holder(const dev_t *devs, size_t n, struct bk_mount_holder *ret,
			 struct bk_err *err);

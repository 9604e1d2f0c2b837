/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The disk every bank operation uses: found once per context (bk_op_get_disk()) and its
 * partitions mounted in a private mount namespace of the process (bk_op_mount_part()), so
 * temporary mounts never leak and vanish when the process exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bk-disk.h"
#include "bk-fs.h"
#include "bk-log.h"
#include "bk-mount.h"
#include "bk-op.h"

#define MNT_DIR BK_OP_RUN_DIR "/mnt"

bool bk_op_root_is_host(struct bk_op_ctx *ctx)
{
	struct stat a, b;

	if (fstat(ctx->root_fd, &a) < 0 || stat("/", &b) < 0)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int bk_op_get_disk(struct bk_op_ctx *ctx, struct bk_disk **ret, struct bk_err *err)
{
	_cleanup_close_ int state_dfd = -EBADF;
	char state_path[4096];
	struct bk_disk_where w = {
		.root_fd = ctx->root_fd,
		.root = ctx->root,
		.root_is_host = bk_op_root_is_host(ctx),
		.config = ctx->configured ? &ctx->config : NULL,
		.config_path = ctx->config_path,
		.state_dfd = -EBADF,
		.state_path = state_path,
	};
	int r;

	if (ctx->disk) {
		*ret = ctx->disk;
		return 0;
	}
	(void) snprintf(state_path, sizeof(state_path), "%s", bk_op_path(ctx, BK_OP_STATE_DIR));
	r = bk_op_open_dir(ctx, BK_OP_STATE_DIR, false, &state_dfd, NULL);
	if (r < 0 && r != -ENOENT)
		return bk_err_set(err, r, "cannot open '%s': %m", state_path);
	w.state_dfd = state_dfd;
	r = bk_disk_open(&w, &ctx->disk, err);
	if (r < 0)
		return r;
	*ret = ctx->disk;
	return 0;
}

/*
 * Once per process, before the first temporary mount: a mount namespace of our own, with "/"
 * made rprivate so nothing propagates back to the host. Must run before any thread starts
 * (unshare(CLONE_NEWNS) fails with EINVAL in a multi-threaded process).
 * The kernel moves our root and cwd into the new namespace, but open fds keep pointing into
 * the old one: ctx->root_fd is reopened (same number, checked to be the same directory) so
 * lookups beneath the root see the mounts we make.
 */
static int enter_private_namespace(struct bk_op_ctx *ctx, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat a, b;

	if (ctx->ns_private)
		return 0;
	if (unshare(CLONE_NEWNS) < 0)
		return bk_err_set(err, -errno, "cannot create a private mount namespace: %m");
	ctx->ns_private = true;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return bk_err_set(err, -errno,
				  "cannot make '/' private in our mount namespace: %m");

	fd = open(ctx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot reopen root '%s': %m", ctx->root);
	if (fstat(fd, &a) < 0 || fstat(ctx->root_fd, &b) < 0)
		return bk_err_set(err, -errno, "cannot stat root '%s': %m", ctx->root);
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return bk_err_set(err, -ESTALE, "root '%s' changed while we ran", ctx->root);
	if (dup3(fd, ctx->root_fd, O_CLOEXEC) < 0)
		return bk_err_set(err, -errno, "cannot reopen root '%s': %m", ctx->root);
	BK_DBG(MOUNT, "entered a private mount namespace");
	return 0;
}

/* The mount of part at relpath must be the root of that partition's filesystem. */
static int open_mounted(struct bk_op_ctx *ctx, const char *relpath, const char *dev, int *ret_fd,
			struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct statx stx;
	struct stat dst;

	fd = bk_open_beneath(ctx->root_fd, relpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, true);
	if (fd < 0)
		return bk_err_set(err, fd, "cannot open '%s': %m", bk_op_path(ctx, relpath));
	if (stat(dev, &dst) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", dev);
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", bk_op_path(ctx, relpath));
	if (makedev(stx.stx_dev_major, stx.stx_dev_minor) != dst.st_rdev ||
	    ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	     !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)))
		return bk_err_set(err, -ESTALE, "'%s' is not the mount of '%s'",
				  bk_op_path(ctx, relpath), dev);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int bk_op_mount_part(struct bk_op_ctx *ctx, enum bk_part_id part, bool rw, int *ret_dirfd,
		     struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	struct bk_disk *disk;
	char relpath[128], target[4096];
	const char *dev;
	int r;

	if (part < 0 || part >= _BK_PART_MAX)
		return bk_err_set(err, -EINVAL, "invalid partition %d", (int) part);
	r = bk_op_get_disk(ctx, &disk, err);
	if (r < 0)
		return r;
	dev = bk_disk_part_path(disk, part);
	if (!dev)
		return bk_err_set(err, -ENOENT, "the disk has no %s partition ('%s')",
				  bk_part_id_to_string(part), bk_part_id_to_name(part));
	(void) snprintf(relpath, sizeof(relpath), "%s/%s", MNT_DIR, bk_part_id_to_string(part));
	(void) snprintf(target, sizeof(target), "%s", bk_op_path(ctx, relpath));

	if (ctx->mounts[part].mounted && ctx->mounts[part].rw != rw) {
		r = bk_op_umount_part(ctx, part, err);
		if (r < 0)
			return r;
	}
	if (!ctx->mounts[part].mounted) {
		r = enter_private_namespace(ctx, err);
		if (r < 0)
			return r;
		r = bk_op_open_dir(ctx, relpath, true, &dfd, err);
		if (r < 0)
			return r;
		/* Read-write only when nobody else uses its bytes (issue 16). */
		if (rw) {
			r = bk_disk_part_wait_unused(disk, part, BK_DISK_TEARDOWN_TIMEOUT_MS, NULL,
						     err);
			if (r < 0)
				return bk_err_prefix(err, "%s partition",
						     bk_part_id_to_string(part));
		}
		r = bk_mount(dev, target, "ext4",
			     rw ? BK_MOUNT_NOSUID_NODEV : BK_MOUNT_RDONLY | BK_MOUNT_NOSUID_NODEV,
			     NULL, err);
		if (r < 0)
			return bk_err_prefix(err, "%s partition", bk_part_id_to_string(part));
		ctx->mounts[part].mounted = true;
		ctx->mounts[part].rw = rw;
	}
	return open_mounted(ctx, relpath, dev, ret_dirfd, err);
}

int bk_op_umount_part(struct bk_op_ctx *ctx, enum bk_part_id part, struct bk_err *err)
{
	char relpath[128];
	int r;

	if (part < 0 || part >= _BK_PART_MAX)
		return bk_err_set(err, -EINVAL, "invalid partition %d", (int) part);
	if (!ctx->mounts[part].mounted)
		return 0;
	(void) snprintf(relpath, sizeof(relpath), "%s/%s", MNT_DIR, bk_part_id_to_string(part));
	r = bk_umount(bk_op_path(ctx, relpath), 0, err);
	if (r < 0)
		return r;
	ctx->mounts[part].mounted = false;
	return 0;
}

int bk_op_disk_init(struct bk_op_ctx *ctx, const struct bk_disk_init_options *o,
		    struct bk_disk **ret, struct bk_err *err)
{
	_cleanup_close_ int state_dfd = -EBADF;
	int r;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	r = bk_op_open_dir(ctx, BK_OP_STATE_DIR, true, &state_dfd, err);
	if (r < 0)
		return r;
	return bk_disk_init(o, state_dfd, ret, err);
}

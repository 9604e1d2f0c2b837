/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <libmount.h>

#include "bk-fs.h"
#include "bk-log.h"
#include "bk-loop.h"
#include "bk-mount.h"

BK_DEFINE_CLEANUP(struct libmnt_context *, mnt_free_context)
BK_DEFINE_CLEANUP(struct libmnt_table *, mnt_unref_table)
BK_DEFINE_CLEANUP(struct libmnt_cache *, mnt_unref_cache)

#define LOOP_MAJOR 7

/*
 * The errno of a failed libmount operation: the mount(2)/umount(2) errno when the syscall
 * ran, libmount's own -errno otherwise.
 */
static int context_errno(struct libmnt_context *cxt, int rc)
{
	if (mnt_context_syscall_called(cxt) && mnt_context_get_syscall_errno(cxt) > 0)
		return -mnt_context_get_syscall_errno(cxt);
	if (rc < 0 && rc > -4096)
		return rc;
	return -EIO;
}

int bk_mount(const char *source, const char *target, const char *fstype, unsigned flags,
	     const char *options, struct bk_err *err)
{
	_cleanup_(mnt_free_contextp) struct libmnt_context *cxt = NULL;
	unsigned long mflags = 0;
	char buf[BUFSIZ] = "";
	int rc, r;

	if (flags & ~(unsigned) (BK_MOUNT_RDONLY | BK_MOUNT_NOSUID_NODEV))
		return bk_err_set(err, -EINVAL, "invalid mount flags 0x%x", flags);
	if (flags & BK_MOUNT_RDONLY)
		mflags |= MS_RDONLY;
	if (flags & BK_MOUNT_NOSUID_NODEV)
		mflags |= MS_NOSUID | MS_NODEV;

	cxt = mnt_new_context();
	if (!cxt)
		return bk_err_set(err, -ENOMEM, "out of memory");
	/* Exactly what we ask for: no /etc/fstab, no /sbin/mount.<type> helpers. */
	if (mnt_context_set_optsmode(cxt, MNT_OMODE_IGNORE | MNT_OMODE_NOTAB) < 0 ||
	    mnt_context_disable_helpers(cxt, 1) < 0 || mnt_context_set_source(cxt, source) < 0 ||
	    mnt_context_set_target(cxt, target) < 0 || mnt_context_set_mflags(cxt, mflags) < 0 ||
	    (fstype && mnt_context_set_fstype(cxt, fstype) < 0) ||
	    (options && mnt_context_set_options(cxt, options) < 0))
		return bk_err_set(err, -ENOMEM, "cannot set up the mount of '%s'", source);

	rc = mnt_context_mount(cxt);
	if (rc == 0 && mnt_context_get_status(cxt) == 1) {
		BK_DBG(MOUNT, "mounted %s on %s (%s, flags 0x%x)", source, target,
		       fstype ? fstype : "auto", flags);
		return 0;
	}
	r = context_errno(cxt, rc);
	(void) mnt_context_get_excode(cxt, rc, buf, sizeof(buf));
	if (buf[0] != '\0')
		return bk_err_set(err, r, "cannot mount '%s' on '%s': %s", source, target, buf);
	errno = -r;
	return bk_err_set(err, r, "cannot mount '%s' on '%s': %m", source, target);
}

/* The mount of target in this namespace (newest first); its source device or NULL. */
static int lookup_mount(const char *target, char **ret_source, dev_t *ret_devno, struct bk_err *err)
{
	_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
	_cleanup_(mnt_unref_cachep) struct libmnt_cache *cache = NULL;
	struct libmnt_fs *fs;
	const char *src;

	tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (!tb)
		return bk_err_set(err, -errno ? -errno : -EIO,
				  "cannot read '/proc/self/mountinfo': %m");
	cache = mnt_new_cache();
	if (!cache)
		return bk_err_set(err, -ENOMEM, "out of memory");
	(void) mnt_table_set_cache(tb, cache);
	fs = mnt_table_find_target(tb, target, MNT_ITER_BACKWARD);
	if (!fs)
		return bk_err_set(err, -EINVAL, "'%s' is not a mount point", target);
	src = mnt_fs_get_srcpath(fs);
	*ret_source = src ? strdup(src) : NULL;
	if (src && !*ret_source)
		return bk_err_set(err, -ENOMEM, "out of memory");
	*ret_devno = mnt_fs_get_devno(fs);
	return 0;
}

int bk_umount(const char *target, unsigned flags, struct bk_err *err)
{
	_cleanup_(mnt_free_contextp) struct libmnt_context *cxt = NULL;
	_cleanup_free_ char *source = NULL;
	char buf[BUFSIZ] = "";
	dev_t devno = 0;
	struct stat st;
	int rc, r;

	if (flags & ~(unsigned) (BK_UMOUNT_DETACH_LOOP | BK_UMOUNT_LAZY))
		return bk_err_set(err, -EINVAL, "invalid umount flags 0x%x", flags);
	r = lookup_mount(target, &source, &devno, err);
	if (r < 0)
		return r;

	cxt = mnt_new_context();
	if (!cxt)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (mnt_context_disable_helpers(cxt, 1) < 0 || mnt_context_set_target(cxt, target) < 0 ||
	    ((flags & BK_UMOUNT_LAZY) && mnt_context_enable_lazy(cxt, 1) < 0))
		return bk_err_set(err, -ENOMEM, "cannot set up the unmount of '%s'", target);

	rc = mnt_context_umount(cxt);
	if (rc != 0 || mnt_context_get_status(cxt) != 1) {
		r = context_errno(cxt, rc);
		(void) mnt_context_get_excode(cxt, rc, buf, sizeof(buf));
		if (buf[0] != '\0')
			return bk_err_set(err, r, "cannot unmount '%s': %s", target, buf);
		errno = -r;
		return bk_err_set(err, r, "cannot unmount '%s': %m", target);
	}
	BK_DBG(MOUNT, "unmounted %s (source %s)", target, source ? source : "-");

	if (!(flags & BK_UMOUNT_DETACH_LOOP) || !source)
		return 0;
	/* Only the whole loop device that was the source; never a partition of one. */
	if (stat(source, &st) < 0 || !S_ISBLK(st.st_mode) || major(st.st_rdev) != LOOP_MAJOR ||
	    st.st_rdev != devno)
		return 0;
	r = bk_loop_detach(source, err);
	if (r == -ENXIO || r == -ENOENT) {
		/* Autoclear was faster: the device is already gone, which is what we wanted. */
		if (err)
			bk_err_clear(err);
		return 0;
	}
	return r;
}

int bk_mount_loop_fd(int fd, uint64_t offset, uint64_t size, const char *fstype, const char *target,
		     struct bk_err *err)
{
	_cleanup_free_ char *dev = NULL;
	_cleanup_close_ int loop_fd = -EBADF;
	int r;

	r = bk_loop_attach(fd, offset, size, BK_LOOP_READ_ONLY | BK_LOOP_AUTOCLEAR, &dev, &loop_fd,
			   err);
	if (r < 0)
		return r;
	/*
	 * The mount holds the device from now on; closing loop_fd (cleanup) then leaves the
	 * mount as its last user, and a failed mount leaves no user: autoclear detaches it.
	 */
	return bk_mount(dev, target, fstype, BK_MOUNT_RDONLY | BK_MOUNT_NOSUID_NODEV, NULL, err);
}

int bk_blockdev_is_busy(const char *devpath, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;

	/* stat first: O_EXCL without O_CREAT on a non-device has no meaning. */
	if (stat(devpath, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", devpath);
	if (!S_ISBLK(st.st_mode))
		return bk_err_set(err, -ENOTBLK, "'%s' is not a block device", devpath);
	fd = open(devpath, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == EBUSY) {
			BK_DBG(MOUNT, "%s is busy", devpath);
			return 1;
		}
		return bk_err_set(err, -errno, "cannot open '%s': %m", devpath);
	}
	return 0;
}

int bk_mount_find_device(const char *devpath, char **ret_target, struct bk_err *err)
{
	_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
	struct libmnt_fs *fs;
	struct stat st;

	if (stat(devpath, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", devpath);
	if (!S_ISBLK(st.st_mode))
		return bk_err_set(err, -ENOTBLK, "'%s' is not a block device", devpath);
	tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (!tb)
		return bk_err_set(err, -errno ? -errno : -EIO,
				  "cannot read '/proc/self/mountinfo': %m");
	fs = mnt_table_find_devno(tb, st.st_rdev, MNT_ITER_BACKWARD);
	if (!fs)
		return -ENOENT;
	*ret_target = strdup(mnt_fs_get_target(fs));
	if (!*ret_target)
		return bk_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* The mount namespace inode of pid (0 when it cannot be read: the process is going away). */
static ino_t mntns_of(const char *pid)
{
	char path[sizeof("/proc//mountinfo") + NAME_MAX];
	struct stat st;

	(void) snprintf(path, sizeof(path), "/proc/%s/ns/mnt", pid);
	if (stat(path, &st) < 0)
		return 0;
	return st.st_ino;
}

int bk_mount_find_holder(const dev_t *devs, size_t n, struct bk_mount_holder *ret,
			 struct bk_err *err)
{
	_cleanup_free_ ino_t *seen = NULL;
	size_t n_seen = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int r = 0;

	d = opendir("/proc");
	if (!d)
		return bk_err_set(err, -errno, "cannot read '/proc': %m");
	while (r == 0 && (de = readdir(d))) {
		_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = NULL;
		char path[sizeof("/proc//mountinfo") + NAME_MAX];
		uint64_t pid;
		ino_t ns;
		bool dup = false;

		if (!isdigit((unsigned char) de->d_name[0]))
			continue;
		ns = mntns_of(de->d_name);
		if (ns == 0)
			continue;
		for (size_t i = 0; i < n_seen && !dup; i++)
			dup = seen[i] == ns;
		if (dup)
			continue;
		if (n_seen == cap) {
			ino_t *p = realloc(seen, (cap ? cap * 2 : 64) * sizeof(*seen));

			if (!p) {
				r = bk_err_set(err, -ENOMEM, "out of memory");
				break;
			}
			seen = p;
			cap = cap ? cap * 2 : 64;
		}
		seen[n_seen++] = ns;

		(void) snprintf(path, sizeof(path), "/proc/%s/mountinfo", de->d_name);
		tb = mnt_new_table_from_file(path);
		if (!tb)
			continue; /* gone, or not readable: not a live holder we can name */
		for (size_t i = 0; i < n && r == 0; i++) {
			struct libmnt_fs *fs = mnt_table_find_devno(tb, devs[i], MNT_ITER_FORWARD);
			_cleanup_close_ int cfd = -EBADF;

			if (!fs)
				continue;
			r = 1;
			if (!ret)
				break;
			*ret = (struct bk_mount_holder){ .devno = devs[i] };
			if (bk_parse_u64(de->d_name, &pid) == 0)
				ret->pid = (pid_t) pid;
			(void) snprintf(ret->target, sizeof(ret->target), "%s",
					mnt_fs_get_target(fs) ? mnt_fs_get_target(fs) : "?");
			(void) snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
			cfd = open(path, O_RDONLY | O_CLOEXEC);
			if (cfd >= 0) {
				ssize_t k = read(cfd, ret->comm, sizeof(ret->comm) - 1);

				ret->comm[k > 0 ? k : 0] = '\0';
				ret->comm[strcspn(ret->comm, "\n")] = '\0';
			}
		}
	}
	(void) closedir(d);
	return r;
}

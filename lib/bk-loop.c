/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-log.h"
#include "bk-loop.h"
#include "bk-probe.h"

BK_DEFINE_CLEANUP(DIR *, closedir)

/*
 * LOOP_CTL_GET_FREE hands out the same free device to every caller until one binds it: a
 * concurrent losetup (or another bankctl) can win the race, and LOOP_CONFIGURE then fails
 * with EBUSY. Ask again, a bounded number of times.
 */
#define ATTACH_RETRIES 64

#define ALL_FLAGS (BK_LOOP_READ_ONLY | BK_LOOP_PARTSCAN | BK_LOOP_AUTOCLEAR)

static int file_size(int fd, const struct stat *st, uint64_t *ret)
{
	uint64_t size;

	if (S_ISREG(st->st_mode)) {
		*ret = (uint64_t) st->st_size;
		return 0;
	}
	if (ioctl(fd, BLKGETSIZE64, &size) < 0)
		return -errno;
	*ret = size;
	return 0;
}

static int configure(int loop_fd, int fd, uint64_t offset, uint64_t size, unsigned flags)
{
	struct loop_config cfg = { 0 };
	char link[64];
	ssize_t n;

	cfg.fd = (uint32_t) fd;
	cfg.info.lo_offset = offset;
	cfg.info.lo_sizelimit = size;
	if (flags & BK_LOOP_READ_ONLY)
		cfg.info.lo_flags |= LO_FLAGS_READ_ONLY;
	if (flags & BK_LOOP_PARTSCAN)
		cfg.info.lo_flags |= LO_FLAGS_PARTSCAN;
	if (flags & BK_LOOP_AUTOCLEAR)
		cfg.info.lo_flags |= LO_FLAGS_AUTOCLEAR;
	/* Only for display (losetup -l); the kernel binds fd itself. */
	(void) snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, (char *) cfg.info.lo_file_name, LO_NAME_SIZE - 1);
	if (n < 0)
		cfg.info.lo_file_name[0] = '\0';

	if (ioctl(loop_fd, LOOP_CONFIGURE, &cfg) == 0)
		return 0;
	if (errno != ENOTTY && errno != EINVAL)
		return -errno;

	/* Kernels before 5.8: LOOP_SET_FD, then LOOP_SET_STATUS64 (not atomic, but works). */
	BK_DBG(MOUNT, "LOOP_CONFIGURE unsupported (%m), falling back to LOOP_SET_FD");
	if (ioctl(loop_fd, LOOP_SET_FD, fd) < 0)
		return -errno;
	if (ioctl(loop_fd, LOOP_SET_STATUS64, &cfg.info) < 0) {
		int r = -errno;

		(void) ioctl(loop_fd, LOOP_CLR_FD, 0);
		return r;
	}
	return 0;
}

int bk_loop_attach(int fd, uint64_t offset, uint64_t size, unsigned flags, char **ret_path,
		   int *ret_loop_fd, struct bk_err *err)
{
	_cleanup_close_ int ctl = -EBADF;
	uint64_t fsize = 0;
	struct stat st;
	int r;

	if (flags & ~ALL_FLAGS)
		return bk_err_set(err, -EINVAL, "invalid loop flags 0x%x", flags);
	if (offset % 512 != 0)
		return bk_err_set(err, -EINVAL, "loop offset %llu is not a multiple of 512",
				  (unsigned long long) offset);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat the file to attach: %m");
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return bk_err_set(err, -EINVAL,
				  "only regular files and block devices can back a loop device");
	r = file_size(fd, &st, &fsize);
	if (r < 0)
		return bk_err_set(err, r, "cannot get the size of the file to attach: %m");
	if (offset > fsize || (size > 0 && size > fsize - offset))
		return bk_err_set(
			err, -EINVAL,
			"loop range %llu+%llu lies beyond the end of the file (%llu bytes)",
			(unsigned long long) offset, (unsigned long long) size,
			(unsigned long long) fsize);

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return bk_err_set(err, -errno, "cannot open '/dev/loop-control': %m");

	for (unsigned attempt = 0; attempt < ATTACH_RETRIES; attempt++) {
		_cleanup_free_ char *path = NULL;
		_cleanup_close_ int loop_fd = -EBADF;
		char name[32];
		int n;

		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return bk_err_set(err, -errno, "cannot get a free loop device: %m");
		(void) snprintf(name, sizeof(name), "loop%d", n);
		r = bk_probe_devnode(name, &path, err);
		if (r < 0)
			return r;
		loop_fd = open(path, ((flags & BK_LOOP_READ_ONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (loop_fd < 0)
			return bk_err_set(err, -errno, "cannot open '%s': %m", path);

		r = configure(loop_fd, fd, offset, size, flags);
		if (r == -EBUSY) {
			BK_DBG(MOUNT, "%s was taken by someone else, retrying", path);
			continue;
		}
		if (r < 0)
			return bk_err_set(err, r, "cannot set up loop device '%s': %m", path);

		BK_DBG(MOUNT, "attached %s: offset %llu size %llu flags 0x%x", path,
		       (unsigned long long) offset, (unsigned long long) size, flags);
		if (ret_loop_fd)
			*ret_loop_fd = TAKE_FD(loop_fd);
		*ret_path = TAKE_PTR(path);
		return 0;
	}
	return bk_err_set(err, -EBUSY,
			  "cannot attach a loop device: every free device was taken "
			  "by others (%d tries)",
			  ATTACH_RETRIES);
}

int bk_loop_get_info(const char *path, struct bk_loop_info *ret, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct loop_info64 info = { 0 };

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", path);
	if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0) {
		if (errno == ENXIO)
			return bk_err_set(err, -ENXIO, "loop device '%s' is not attached", path);
		if (errno == ENOTTY || errno == EINVAL)
			return bk_err_set(err, -ENOTTY, "'%s' is not a loop device", path);
		return bk_err_set(err, -errno, "cannot query loop device '%s': %m", path);
	}
	*ret = (struct bk_loop_info){
		.number = info.lo_number,
		.offset = info.lo_offset,
		.size_limit = info.lo_sizelimit,
		.read_only = info.lo_flags & LO_FLAGS_READ_ONLY,
		.partscan = info.lo_flags & LO_FLAGS_PARTSCAN,
		.autoclear = info.lo_flags & LO_FLAGS_AUTOCLEAR,
		.backing_dev = info.lo_device,
		.backing_ino = info.lo_inode,
	};
	return 0;
}

int bk_loop_detach(const char *path, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", path);
	if (ioctl(fd, LOOP_CLR_FD, 0) < 0) {
		if (errno == ENXIO)
			return bk_err_set(err, -ENXIO, "loop device '%s' is not attached", path);
		if (errno == ENOTTY || errno == EINVAL)
			return bk_err_set(err, -ENOTTY, "'%s' is not a loop device", path);
		return bk_err_set(err, -errno, "cannot detach loop device '%s': %m", path);
	}
	BK_DBG(MOUNT, "detached %s", path);
	return 0;
}

char **bk_loop_strv_free(char **l)
{
	if (!l)
		return NULL;
	for (char **p = l; *p; p++)
		free(*p);
	free(l);
	return NULL;
}

struct candidate {
	char *path;
	unsigned rank; /* lower is better */
	unsigned number;
};

static int cmp_candidate(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->number < y->number ? -1 : x->number > y->number;
}

int bk_loop_list_by_file(const char *path, char ***ret_paths, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct candidate *c = NULL;
	size_t n = 0;
	char **list;
	struct stat st;
	struct dirent *de;

	if (stat(path, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", path);
	if (!S_ISREG(st.st_mode))
		return bk_err_set(err, -EINVAL, "'%s' is not a regular file", path);

	d = opendir("/sys/block");
	if (!d)
		return bk_err_set(err, -errno, "cannot open '/sys/block': %m");
	while ((de = readdir(d))) {
		_cleanup_free_ char *dev = NULL;
		struct bk_loop_info info;
		struct candidate *nc;
		char attr[PATH_MAX];

		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		/* The "loop" directory exists only while a file is attached. */
		(void) snprintf(attr, sizeof(attr), "%s/loop/backing_file", de->d_name);
		if (faccessat(dirfd(d), attr, F_OK, 0) < 0)
			continue;
		if (bk_probe_devnode(de->d_name, &dev, NULL) < 0)
			continue;
		if (bk_loop_get_info(dev, &info, NULL) < 0)
			continue;
		if (info.backing_ino != st.st_ino || info.backing_dev != st.st_dev)
			continue;
		nc = reallocarray(c, n + 1, sizeof(*c));
		if (!nc)
			goto fail;
		c = nc;
		c[n].number = info.number;
		c[n].rank = (info.offset != 0 || info.size_limit != 0 ? 2 : 0) +
			    (info.partscan ? 0 : 1);
		c[n].path = TAKE_PTR(dev);
		n++;
	}
	if (n > 1)
		qsort(c, n, sizeof(*c), cmp_candidate);
	list = calloc(n + 1, sizeof(char *));
	if (!list)
		goto fail;
	for (size_t i = 0; i < n; i++)
		list[i] = c[i].path;
	free(c);
	BK_DBG(MOUNT, "'%s' backs %zu loop device(s)", path, n);
	*ret_paths = list;
	return (int) n;
fail:
	for (size_t i = 0; i < n; i++)
		free(c[i].path);
	free(c);
	return bk_err_set(err, -ENOMEM, "out of memory");
}

int bk_loop_find_by_file(const char *path, char **ret_path, struct bk_err *err)
{
	char **list = NULL;
	char *first;
	int r;

	r = bk_loop_list_by_file(path, &list, err);
	if (r < 0)
		return r;
	if (r == 0) {
		bk_loop_strv_free(list);
		return bk_err_set(err, -ENOENT, "no loop device is attached to '%s'", path);
	}
	first = list[0];
	for (char **p = list + 1; *p; p++)
		free(*p);
	free(list);
	*ret_path = first;
	return 0;
}

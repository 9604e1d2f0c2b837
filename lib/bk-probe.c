/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <blkid.h>

#include "bk-fs.h"
#include "bk-log.h"
#include "bk-probe.h"

BK_DEFINE_CLEANUP(blkid_probe, blkid_free_probe)
BK_DEFINE_CLEANUP(DIR *, closedir)

/* Bound on the partitions we list (GPT allows 128 by default). */
#define MAX_PARTS 256

/* How long a node may take to appear after sysfs shows the device, before we create it. */
#define NODE_GRACE_MS 500

static int strdup_lower(const char *s, char **ret)
{
	char *c;

	if (!s) {
		*ret = NULL;
		return 0;
	}
	c = strdup(s);
	if (!c)
		return -ENOMEM;
	for (char *p = c; *p; p++)
		*p = (char) tolower((unsigned char) *p);
	*ret = c;
	return 0;
}

static int dup_value(blkid_probe pr, const char *name, char **ret)
{
	const char *v = NULL;

	if (blkid_probe_lookup_value(pr, name, &v, NULL) != 0 || !v) {
		*ret = NULL;
		return 0;
	}
	*ret = strdup(v);
	return *ret ? 0 : -ENOMEM;
}

bool bk_probe_content_is_empty(const struct bk_probe_content *c)
{
	return !c->pttype && !c->fstype;
}

void bk_probe_content_release(struct bk_probe_content *c)
{
	if (!c)
		return;
	free(c->pttype);
	free(c->ptuuid);
	free(c->fstype);
	free(c->fsuuid);
	free(c->fslabel);
	*c = (struct bk_probe_content){ 0 };
}

int bk_probe_content_fd(int fd, struct bk_probe_content *ret, struct bk_err *err)
{
	_cleanup_(blkid_free_probep) blkid_probe pr = NULL;
	struct bk_probe_content c = { 0 };
	int r;

	pr = blkid_new_probe();
	if (!pr)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = blkid_probe_set_device(pr, fd, 0, 0);
	if (r != 0)
		return bk_err_set(err, -EIO, "cannot set up libblkid probe: %m");
	(void) blkid_probe_enable_superblocks(pr, 1);
	(void) blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID |
							     BLKID_SUBLKS_LABEL);
	(void) blkid_probe_enable_partitions(pr, 1);

	errno = 0;
	r = blkid_do_safeprobe(pr);
	if (r == -2)
		return bk_err_set(err, -EINVAL, "ambiguous signatures (several filesystems)");
	if (r < 0)
		return bk_err_set(err, errno > 0 ? -errno : -EIO, "cannot probe: %m");
	if (r == 0) {
		if (dup_value(pr, "PTTYPE", &c.pttype) < 0 ||
		    dup_value(pr, "PTUUID", &c.ptuuid) < 0 ||
		    dup_value(pr, "TYPE", &c.fstype) < 0 || dup_value(pr, "UUID", &c.fsuuid) < 0 ||
		    dup_value(pr, "LABEL", &c.fslabel) < 0) {
			bk_probe_content_release(&c);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
	}
	BK_DBG(DISK, "probe fd %d: pttype=%s fstype=%s", fd, c.pttype ? c.pttype : "-",
	       c.fstype ? c.fstype : "-");
	*ret = c;
	return 0;
}

void bk_probe_part_release(struct bk_probe_part *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->uuid);
	free(p->type);
	*p = (struct bk_probe_part){ 0 };
}

void bk_probe_table_release(struct bk_probe_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_parts; i++)
		bk_probe_part_release(&t->parts[i]);
	free(t->parts);
	free(t->pttype);
	free(t->ptuuid);
	*t = (struct bk_probe_table){ 0 };
}

static int cmp_part(const void *a, const void *b)
{
	const struct bk_probe_part *x = a, *y = b;

	return x->partno < y->partno ? -1 : x->partno > y->partno;
}

int bk_probe_table_fd(int fd, struct bk_probe_table *ret, struct bk_err *err)
{
	_cleanup_(blkid_free_probep) blkid_probe pr = NULL;
	struct bk_probe_table t = { 0 };
	blkid_partlist ls;
	blkid_parttable tab;
	int n, r;

	pr = blkid_new_probe();
	if (!pr)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = blkid_probe_set_device(pr, fd, 0, 0);
	if (r != 0)
		return bk_err_set(err, -EIO, "cannot set up libblkid probe: %m");
	(void) blkid_probe_enable_superblocks(pr, 0);
	(void) blkid_probe_enable_partitions(pr, 1);

	errno = 0;
	ls = blkid_probe_get_partitions(pr);
	if (!ls)
		return bk_err_set(err, errno > 0 ? -errno : -ENOMEDIUM, "no partition table");
	tab = blkid_partlist_get_table(ls);
	if (!tab)
		return bk_err_set(err, -ENOMEDIUM, "no partition table");
	n = blkid_partlist_numof_partitions(ls);
	if (n < 0)
		return bk_err_set(err, -EINVAL, "cannot read the partition table");
	if (n > MAX_PARTS)
		return bk_err_set(err, -EINVAL, "partition table lists %d partitions, at most %d",
				  n, MAX_PARTS);

	t.size = (uint64_t) blkid_probe_get_size(pr);
	if (strdup_lower(blkid_parttable_get_type(tab), &t.pttype) < 0 ||
	    strdup_lower(blkid_parttable_get_id(tab), &t.ptuuid) < 0)
		goto fail;
	if (n > 0) {
		t.parts = calloc((size_t) n, sizeof(*t.parts));
		if (!t.parts)
			goto fail;
	}
	for (int i = 0; i < n; i++) {
		blkid_partition par = blkid_partlist_get_partition(ls, i);
		struct bk_probe_part *p = &t.parts[t.n_parts];
		const char *name;

		if (!par)
			continue;
		/* A nested (BSD, logical) partition has a parent table: not ours to list. */
		if (blkid_partition_get_table(par) != tab)
			continue;
		t.n_parts++;
		p->partno = (unsigned) blkid_partition_get_partno(par);
		p->start = (uint64_t) blkid_partition_get_start(par) * 512;
		p->size = (uint64_t) blkid_partition_get_size(par) * 512;
		name = blkid_partition_get_name(par);
		if (name && name[0] != '\0') {
			p->name = strdup(name);
			if (!p->name)
				goto fail;
		}
		if (strdup_lower(blkid_partition_get_uuid(par), &p->uuid) < 0)
			goto fail;
		if (blkid_partition_get_type_string(par)) {
			if (strdup_lower(blkid_partition_get_type_string(par), &p->type) < 0)
				goto fail;
		} else if (asprintf(&p->type, "0x%x", (unsigned) blkid_partition_get_type(par)) <
			   0) {
			p->type = NULL;
			goto fail;
		}
	}
	if (t.n_parts > 1)
		qsort(t.parts, t.n_parts, sizeof(*t.parts), cmp_part);
	BK_DBG(DISK, "table fd %d: %s %s, %zu partitions", fd, t.pttype ? t.pttype : "-",
	       t.ptuuid ? t.ptuuid : "-", t.n_parts);
	*ret = t;
	return 0;
fail:
	bk_probe_table_release(&t);
	return bk_err_set(err, -ENOMEM, "out of memory");
}

const struct bk_probe_part *bk_probe_table_find_name(const struct bk_probe_table *t,
						     const char *name)
{
	for (size_t i = 0; i < t->n_parts; i++)
		if (t->parts[i].name && strcmp(t->parts[i].name, name) == 0)
			return &t->parts[i];
	return NULL;
}

const struct bk_probe_part *bk_probe_table_find_type(const struct bk_probe_table *t,
						     const char *type)
{
	for (size_t i = 0; i < t->n_parts; i++)
		if (t->parts[i].type && strcasecmp(t->parts[i].type, type) == 0)
			return &t->parts[i];
	return NULL;
}

int bk_probe_part_entry(const char *devpath, struct bk_probe_part *ret, struct bk_err *err)
{
	_cleanup_(blkid_free_probep) blkid_probe pr = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct bk_probe_part p = { 0 };
	_cleanup_free_ char *number = NULL, *offset = NULL, *size = NULL;
	uint64_t v;
	struct stat st;
	int r;

	fd = open(devpath, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", devpath);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", devpath);
	if (!S_ISBLK(st.st_mode))
		return bk_err_set(err, -ENOTBLK, "'%s' is not a block device", devpath);

	pr = blkid_new_probe();
	if (!pr)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (blkid_probe_set_device(pr, fd, 0, 0) != 0)
		return bk_err_set(err, -EIO, "cannot set up libblkid probe for '%s': %m", devpath);
	(void) blkid_probe_enable_superblocks(pr, 0);
	(void) blkid_probe_enable_partitions(pr, 1);
	(void) blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);

	r = blkid_do_safeprobe(pr);
	if (r < 0)
		return bk_err_set(err, -EIO, "cannot probe '%s'", devpath);
	if (dup_value(pr, "PART_ENTRY_NUMBER", &number) < 0 ||
	    dup_value(pr, "PART_ENTRY_OFFSET", &offset) < 0 ||
	    dup_value(pr, "PART_ENTRY_SIZE", &size) < 0 ||
	    dup_value(pr, "PART_ENTRY_NAME", &p.name) < 0)
		goto fail;
	if (!number)
		return bk_err_set(err, -ENXIO, "'%s' is not a partition", devpath);
	if (bk_parse_u64(number, &v) < 0 || v == 0 || v > UINT_MAX) {
		bk_probe_part_release(&p);
		return bk_err_set(err, -EINVAL, "'%s': bad partition number '%s'", devpath, number);
	}
	p.partno = (unsigned) v;
	if (offset && bk_parse_u64(offset, &v) == 0)
		p.start = v * 512;
	if (size && bk_parse_u64(size, &v) == 0)
		p.size = v * 512;
	{
		_cleanup_free_ char *uuid = NULL, *type = NULL;

		if (dup_value(pr, "PART_ENTRY_UUID", &uuid) < 0 ||
		    dup_value(pr, "PART_ENTRY_TYPE", &type) < 0 ||
		    strdup_lower(uuid, &p.uuid) < 0 || strdup_lower(type, &p.type) < 0)
			goto fail;
	}
	*ret = p;
	return 0;
fail:
	bk_probe_part_release(&p);
	return bk_err_set(err, -ENOMEM, "out of memory");
}

/* Read a small sysfs attribute (one line, newline stripped) of dirfd. */
static int read_attr(int dirfd, const char *name, char *buf, size_t len)
{
	_cleanup_close_ int fd = -EBADF;
	ssize_t n;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = bk_pread_full(fd, buf, len - 1, 0);
	if (n < 0)
		return (int) n;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int parse_devnum(const char *s, dev_t *ret)
{
	unsigned maj, min;
	char extra;

	if (sscanf(s, "%u:%u%c", &maj, &min, &extra) != 2)
		return -EINVAL;
	*ret = makedev(maj, min);
	return 0;
}

int bk_probe_blockdev_name(int fd, char **ret_name, struct bk_err *err)
{
	char link[64], target[PATH_MAX];
	const char *base;
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat device: %m");
	if (!S_ISBLK(st.st_mode))
		return bk_err_set(err, -ENOTBLK, "not a block device");
	(void) snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(st.st_rdev),
			minor(st.st_rdev));
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return bk_err_set(err, -errno, "cannot read '%s': %m", link);
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	*ret_name = strdup(base);
	if (!*ret_name)
		return bk_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	(void) clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

	(void) nanosleep(&ts, NULL);
}

/*
 * Make sure /dev/<name> is the block device devnum: wait up to grace_ms for devtmpfs or udev,
 * then create it. A node of the wrong device (a stale node of our own in a tmpfs /dev) is
 * replaced.
 */
static int ensure_node(const char *name, dev_t devnum, unsigned grace_ms, char **ret_path,
		       struct bk_err *err)
{
	_cleanup_free_ char *path = NULL;
	uint64_t deadline = now_ms() + grace_ms;
	struct stat st;

	if (strchr(name, '/') || strchr(name, '!'))
		return bk_err_set(err, -EINVAL, "unsupported device name '%s'", name);
	if (asprintf(&path, "/dev/%s", name) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");

	for (;;) {
		if (stat(path, &st) == 0) {
			if (S_ISBLK(st.st_mode) && st.st_rdev == devnum) {
				*ret_path = TAKE_PTR(path);
				return 0;
			}
			if (!S_ISBLK(st.st_mode))
				return bk_err_set(err, -EEXIST,
						  "'%s' exists and is not a block device", path);
		} else if (errno != ENOENT)
			return bk_err_set(err, -errno, "cannot stat '%s': %m", path);
		if (now_ms() >= deadline)
			break;
		sleep_ms(10);
	}

	/* No devtmpfs, no udev (a container): make the node ourselves. */
	BK_DBG(DISK, "creating device node %s (%u:%u)", path, major(devnum), minor(devnum));
	if (stat(path, &st) == 0 && unlink(path) < 0)
		return bk_err_set(err, -errno, "cannot remove stale device node '%s': %m", path);
	if (mknod(path, S_IFBLK | 0600, devnum) < 0 && errno != EEXIST)
		return bk_err_set(err, -errno, "cannot create device node '%s': %m", path);
	if (stat(path, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", path);
	if (!S_ISBLK(st.st_mode) || st.st_rdev != devnum)
		return bk_err_set(err, -EEXIST, "'%s' is not device %u:%u", path, major(devnum),
				  minor(devnum));
	*ret_path = TAKE_PTR(path);
	return 0;
}

int bk_probe_devnode(const char *name, char **ret_path, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char sys[PATH_MAX], buf[64];
	dev_t devnum;
	int r;

	if (!bk_filename_is_valid(name))
		return bk_err_set(err, -EINVAL, "invalid device name '%s'", name);
	(void) snprintf(sys, sizeof(sys), "/sys/class/block/%s", name);
	dfd = open(sys, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return bk_err_set(err, -errno, "no block device '%s': %m", name);
	r = read_attr(dfd, "dev", buf, sizeof(buf));
	if (r < 0)
		return bk_err_set(err, r, "cannot read '%s/dev': %m", sys);
	r = parse_devnum(buf, &devnum);
	if (r < 0)
		return bk_err_set(err, r, "bad device number '%s' in '%s/dev'", buf, sys);
	return ensure_node(name, devnum, NODE_GRACE_MS, ret_path, err);
}

/* The partitions among the children of the disk's sysfs directory (partno 0: all). */
static int list_kernel_parts(int diskfd, unsigned partno, struct bk_probe_kpart **ret)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct bk_probe_kpart *l = NULL;
	struct dirent *de;
	int fd, n = 0;

	fd = openat(diskfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		(void) close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		_cleanup_close_ int pfd = -EBADF;
		struct bk_probe_kpart kp = { 0 }, *nl;
		char buf[64];
		uint64_t v;

		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(kp.name))
			continue;
		pfd = openat(diskfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0)
			continue;
		if (read_attr(pfd, "partition", buf, sizeof(buf)) < 0)
			continue;
		if (bk_parse_u64(buf, &v) < 0 || v == 0 || v > UINT_MAX)
			continue;
		if (partno != 0 && v != partno)
			continue;
		kp.partno = (unsigned) v;
		if (read_attr(pfd, "dev", buf, sizeof(buf)) < 0 ||
		    parse_devnum(buf, &kp.devnum) < 0)
			goto fail;
		/* sysfs start and size are in 512-byte sectors whatever the logical block size. */
		if (read_attr(pfd, "start", buf, sizeof(buf)) < 0 || bk_parse_u64(buf, &v) < 0)
			goto fail;
		kp.start = v * 512;
		if (read_attr(pfd, "size", buf, sizeof(buf)) < 0 || bk_parse_u64(buf, &v) < 0)
			goto fail;
		kp.size = v * 512;
		memcpy(kp.name, de->d_name, strlen(de->d_name) + 1);
		nl = reallocarray(l, (size_t) n + 1, sizeof(*l));
		if (!nl) {
			free(l);
			return -ENOMEM;
		}
		l = nl;
		l[n++] = kp;
	}
	*ret = l;
	return n;
fail:
	free(l);
	return -EIO;
}

static int open_disk_sysfs(int fd, struct bk_err *err)
{
	char sys[64];
	struct stat st;
	int dfd;

	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat device: %m");
	if (!S_ISBLK(st.st_mode))
		return bk_err_set(err, -ENOTBLK, "not a block device");
	(void) snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(st.st_rdev),
			minor(st.st_rdev));
	dfd = open(sys, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", sys);
	return dfd;
}

int bk_probe_kernel_parts(int fd, struct bk_probe_kpart **ret, struct bk_err *err)
{
	_cleanup_close_ int diskfd = -EBADF;
	int n;

	diskfd = open_disk_sysfs(fd, err);
	if (diskfd < 0)
		return diskfd;
	n = list_kernel_parts(diskfd, 0, ret);
	if (n < 0)
		return bk_err_set(err, n, "cannot list the kernel's partitions: %m");
	return n;
}

int bk_probe_kernel_part(int fd, unsigned partno, struct bk_probe_kpart *ret, struct bk_err *err)
{
	_cleanup_close_ int diskfd = -EBADF;
	_cleanup_free_ struct bk_probe_kpart *l = NULL;
	int n;

	if (partno == 0)
		return bk_err_set(err, -EINVAL, "invalid partition number 0");
	diskfd = open_disk_sysfs(fd, err);
	if (diskfd < 0)
		return diskfd;
	n = list_kernel_parts(diskfd, partno, &l);
	if (n < 0)
		return bk_err_set(err, n, "cannot list the kernel's partitions: %m");
	if (n == 0)
		return -ENOENT;
	*ret = l[0];
	return 0;
}

int bk_probe_part_node(int fd, unsigned partno, unsigned timeout_ms, char **ret_path,
		       struct bk_err *err)
{
	uint64_t deadline = now_ms() + timeout_ms;
	struct bk_probe_kpart kp;
	int r;

	for (;;) {
		r = bk_probe_kernel_part(fd, partno, &kp, err);
		if (r == 0)
			break;
		if (r != -ENOENT)
			return r;
		if (now_ms() >= deadline)
			return bk_err_set(err, -ETIMEDOUT,
					  "the kernel did not show partition %u within %u ms",
					  partno, timeout_ms);
		sleep_ms(10);
	}
	BK_DBG(DISK, "partition %u is %s (%u:%u)", partno, kp.name, major(kp.devnum),
	       minor(kp.devnum));
	return ensure_node(kp.name, kp.devnum, NODE_GRACE_MS, ret_path, err);
}

char **bk_probe_strv_free(char **l)
{
	if (!l)
		return NULL;
	for (char **p = l; *p; p++)
		free(*p);
	free(l);
	return NULL;
}

static int disk_has_part(const char *name, const char *partname, const char *type, char **ret_path)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct bk_probe_table t = { 0 };
	bool found;
	int r;

	r = bk_probe_devnode(name, &path, NULL);
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	r = bk_probe_table_fd(fd, &t, NULL);
	if (r < 0)
		return r;
	found = bk_probe_table_find_name(&t, partname) ||
		(type && bk_probe_table_find_type(&t, type));
	bk_probe_table_release(&t);
	if (!found)
		return 0;
	*ret_path = TAKE_PTR(path);
	return 1;
}

int bk_probe_find_disks(const char *name, const char *type, char ***ret_disks, struct bk_err *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	char **disks = NULL;
	size_t n = 0;
	struct dirent *de;

	d = opendir("/sys/block");
	if (!d)
		return bk_err_set(err, -errno, "cannot open '/sys/block': %m");
	disks = calloc(1, sizeof(char *));
	if (!disks)
		return bk_err_set(err, -ENOMEM, "out of memory");
	while ((de = readdir(d))) {
		_cleanup_close_ int dfd = -EBADF;
		char buf[64], *path = NULL, **l;
		uint64_t size;
		int r;

		if (de->d_name[0] == '.')
			continue;
		dfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			continue;
		if (read_attr(dfd, "size", buf, sizeof(buf)) < 0 || bk_parse_u64(buf, &size) < 0 ||
		    size == 0)
			continue;
		r = disk_has_part(de->d_name, name, type, &path);
		BK_DBG(DISK, "scan %s for '%s': %d", de->d_name, name, r);
		if (r <= 0)
			continue;
		l = reallocarray(disks, n + 2, sizeof(char *));
		if (!l) {
			free(path);
			bk_probe_strv_free(disks);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
		disks = l;
		disks[n++] = path;
		disks[n] = NULL;
	}
	*ret_disks = disks;
	return (int) n;
}

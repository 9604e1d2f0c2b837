/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk-disk.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-loop.h"
#include "bk-mount.h"
#include "bk-probe.h"

struct part {
	bool present;
	char *path;
	unsigned partno;
	char *name;
	char *uuid;
	char *type;
	uint64_t size;
};

struct bk_disk {
	enum bk_disk_source source;
	char *device; /* whole disk node */
	char *image;  /* image file or NULL */
	char *guid;
	int disk_fd;   /* open whole disk: keeps a loop device alive */
	bool attached; /* we attached the loop device */
	struct part parts[_BK_PART_MAX];
};

static const char *const source_names[_BK_DISK_SOURCE_MAX] = {
	[BK_DISK_SOURCE_CONFIG_PARTS] = "config-partitions",
	[BK_DISK_SOURCE_CONFIG_DEVICE] = "config-device",
	[BK_DISK_SOURCE_RECORD] = "disk.json",
	[BK_DISK_SOURCE_PROBE] = "probe",
	[BK_DISK_SOURCE_INIT] = "init",
};

const char *bk_disk_source_to_string(enum bk_disk_source s)
{
	if (s < 0 || s >= _BK_DISK_SOURCE_MAX)
		return NULL;
	return source_names[s];
}

static void part_release(struct part *p)
{
	free(p->path);
	free(p->name);
	free(p->uuid);
	free(p->type);
	*p = (struct part){ 0 };
}

struct bk_disk *bk_disk_free(struct bk_disk *d)
{
	if (!d)
		return NULL;
	for (int i = 0; i < _BK_PART_MAX; i++)
		part_release(&d->parts[i]);
	free(d->device);
	free(d->image);
	free(d->guid);
	if (d->disk_fd >= 0)
		(void) close(d->disk_fd);
	free(d);
	return NULL;
}

static struct bk_disk *disk_new(enum bk_disk_source source)
{
	struct bk_disk *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->source = source;
	d->disk_fd = -EBADF;
	return d;
}

const char *bk_disk_part_path(const struct bk_disk *d, enum bk_part_id id)
{
	if (id < 0 || id >= _BK_PART_MAX || !d->parts[id].present)
		return NULL;
	return d->parts[id].path;
}

int bk_disk_get_part(const struct bk_disk *d, enum bk_part_id id, struct bk_disk_part *ret)
{
	const struct part *p;

	if (id < 0 || id >= _BK_PART_MAX || !d->parts[id].present)
		return -ENOENT;
	p = &d->parts[id];
	*ret = (struct bk_disk_part){
		.path = p->path,
		.partno = p->partno,
		.name = p->name,
		.uuid = p->uuid,
		.type = p->type,
		.size = p->size,
	};
	return 0;
}

/* Every block device that reaches the bytes of partition p of d (at most max of them). */
struct alias {
	char path[64];
	dev_t devno;
};

/* Whether the block device at dev (/dev/loopN) has partitions: /sys/class/block/loopN/loopNp*. */
static bool loop_has_partitions(const char *dev)
{
	const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
	char path[96];
	size_t len = strlen(name);
	struct dirent *de;
	bool found = false;
	DIR *dir;

	(void) snprintf(path, sizeof(path), "/sys/class/block/%s", name);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir)))
		found = strncmp(de->d_name, name, len) == 0 && de->d_name[len] == 'p';
	(void) closedir(dir);
	return found;
}

static size_t part_aliases(const struct bk_disk *d, const struct part *p, struct alias *a,
			   size_t max)
{
	char **list = NULL;
	struct stat st;
	size_t n = 0;

	if (stat(p->path, &st) == 0 && S_ISBLK(st.st_mode)) {
		(void) snprintf(a[n].path, sizeof(a[n].path), "%s", p->path);
		a[n++].devno = st.st_rdev;
	}
	if (!d->image || bk_loop_list_by_file(d->image, &list, NULL) < 0)
		return n;
	for (char **l = list; *l && n < max; l++) {
		struct bk_loop_info info;

		if ((d->device && strcmp(*l, d->device) == 0) ||
		    bk_loop_get_info(*l, &info, NULL) < 0)
			continue;
		/*
		 * A range of the image (losetup -o) may be the bank as a whole device. A device of
		 * the whole image reaches the bank through its partition, whether the kernel
		 * scanned it (losetup -P) or partx added it; only a device with no partitions at
		 * all reaches it as a whole. Its whole node is never the alias when it has
		 * partitions: one of them mounted (the boot partition, say) claims the whole
		 * device, which says nothing about the bank.
		 */
		bool whole = info.offset != 0 || info.size_limit != 0 || p->partno == 0;

		if (!whole) {
			(void) snprintf(a[n].path, sizeof(a[n].path), "%sp%u", *l, p->partno);
			if (stat(a[n].path, &st) < 0)
				whole = !loop_has_partitions(*l);
			else if (!S_ISBLK(st.st_mode))
				continue;
		}
		if (whole)
			(void) snprintf(a[n].path, sizeof(a[n].path), "%s", *l);
		if (stat(a[n].path, &st) == 0 && S_ISBLK(st.st_mode)) {
			a[n].devno = st.st_rdev;
			n++;
		}
	}
	bk_loop_strv_free(list);
	return n;
}

/* A kernel holder of the device (device mapper, md): /sys/dev/block/M:N/holders/ not empty. */
static bool has_kernel_holder(dev_t devno)
{
	char path[96];
	struct dirent *de;
	bool found = false;
	DIR *dir;

	(void) snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/holders", major(devno),
			minor(devno));
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir)))
		found = de->d_name[0] != '.';
	(void) closedir(dir);
	return found;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

int bk_disk_part_wait_unused(const struct bk_disk *d, enum bk_part_id id, unsigned timeout_ms,
			     unsigned *ret_waited_ms, struct bk_err *err)
{
	const struct part *p;
	uint64_t start = monotonic_ms();
	int r;

	if (id < 0 || id >= _BK_PART_MAX || !d->parts[id].present)
		return bk_err_set(err, -ENOENT, "the disk has no %s partition",
				  bk_part_id_to_string(id));
	p = &d->parts[id];
	for (;;) {
		struct alias a[16], busy[16];
		struct bk_mount_holder h;
		size_t n, n_busy = 0;
		unsigned waited = (unsigned) (monotonic_ms() - start);

		n = part_aliases(d, p, a, BK_ELEMENTSOF(a));
		for (size_t i = 0; i < n; i++) {
			r = bk_blockdev_is_busy(a[i].path, NULL);
			if (r > 0)
				busy[n_busy++] = a[i];
		}
		if (n_busy == 0) {
			if (waited > 0)
				BK_DBG(DISK, "'%s' is free after %u ms", p->path, waited);
			if (ret_waited_ms)
				*ret_waited_ms = waited;
			return 0;
		}

		/* A live process's mount, or a kernel holder, stays: refuse now. */
		{
			dev_t devs[BK_ELEMENTSOF(busy)];

			for (size_t i = 0; i < n_busy; i++)
				devs[i] = busy[i].devno;
			r = bk_mount_find_holder(devs, n_busy, &h, err);
			if (r < 0)
				return r;
		}
		for (size_t i = 0; i < n_busy; i++) {
			const char *via = strcmp(busy[i].path, p->path) == 0 ? NULL : busy[i].path;

			if (r > 0 && h.devno == busy[i].devno)
				return bk_err_set(
					err, -EBUSY,
					"'%s' is in use: mounted by pid %d (%s) at '%s'%s%s",
					p->path, (int) h.pid, h.comm[0] ? h.comm : "?", h.target,
					via ? " through " : "", via ? via : "");
			if (has_kernel_holder(busy[i].devno))
				return bk_err_set(
					err, -EBUSY,
					"'%s' is in use: claimed by a kernel driver (%s/holders)",
					p->path, busy[i].path);
		}

		if (waited >= timeout_ms)
			return bk_err_set(
				err, -EBUSY,
				"'%s' is still in use after %u.%u s although no process has it mounted%s%s: "
				"the mount namespace of a killed run that the kernel has not torn down, a "
				"bind mount of a namespace file (/proc/PID/ns/mnt) keeping one alive, or a "
				"program holding the device open exclusively",
				p->path, waited / 1000, waited % 1000 / 100,
				strcmp(busy[0].path, p->path) == 0 ? "" : ", through ",
				strcmp(busy[0].path, p->path) == 0 ? "" : busy[0].path);
		if (waited == 0)
			BK_DBG(DISK, "'%s' is busy, no process has it mounted: waiting", p->path);
		(void) usleep(50 * 1000);
	}
}

enum bk_disk_source bk_disk_get_source(const struct bk_disk *d)
{
	return d->source;
}

const char *bk_disk_device(const struct bk_disk *d)
{
	return d->device;
}

const char *bk_disk_image(const struct bk_disk *d)
{
	return d->image;
}

const char *bk_disk_guid(const struct bk_disk *d)
{
	return d->guid;
}

bool bk_disk_is_attached(const struct bk_disk *d)
{
	return d->attached;
}

static int strdup_opt(const char *s, char **ret)
{
	*ret = NULL;
	if (!s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

/* Fill p; takes path (even on failure). */
static int set_part(struct part *p, char *path, unsigned partno, const char *name, const char *uuid,
		    const char *type, uint64_t size)
{
	part_release(p);
	p->present = true;
	p->path = path;
	p->partno = partno;
	p->size = size;
	if (strdup_opt(name, &p->name) < 0 || strdup_opt(uuid, &p->uuid) < 0 ||
	    strdup_opt(type, &p->type) < 0)
		return -ENOMEM;
	return 0;
}

/* "/proc/self/fd/N": reopens exactly what fd is (the device or file we checked). */
static void fd_path(int fd, char *buf, size_t len)
{
	(void) snprintf(buf, len, "/proc/self/fd/%d", fd);
}

static bool is_partition(int fd)
{
	char sys[64];
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	(void) snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/partition", major(st.st_rdev),
			minor(st.st_rdev));
	return access(sys, F_OK) == 0;
}

/*
 * The partitions of the whole disk d->disk_fd, found by name (docs/disk.md): tell the kernel
 * about those it lacks (BLKPG), wait for their nodes. Bank A and B are required.
 */
static int load_partitions(struct bk_disk *d, const char *display, struct bk_err *err)
{
	struct bk_probe_table t = { 0 };
	struct bk_err perr = { 0 };
	int r;

	r = bk_probe_table_fd(d->disk_fd, &t, &perr);
	if (r == -ENOMEDIUM)
		return bk_err_set(err, -ENOENT, "disk '%s' holds no partition table", display);
	if (r < 0)
		return bk_err_set(err, r, "disk '%s': %s", display, perr.msg);
	if (t.ptuuid) {
		d->guid = strdup(t.ptuuid);
		if (!d->guid) {
			r = bk_err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < _BK_PART_MAX; i++) {
		const struct bk_probe_part *tp =
			bk_probe_table_find_name(&t, bk_part_id_to_name(i));
		char *node = NULL;

		/* A bank whose name was changed is still found by its own type GUID. */
		if (!tp && (i == BK_PART_BANK_A || i == BK_PART_BANK_B))
			tp = bk_probe_table_find_type(&t, bk_part_id_to_type(i));

		if (!tp) {
			if (i == BK_PART_BANK_A || i == BK_PART_BANK_B) {
				r = bk_err_set(
					err, -ENOENT,
					"disk '%s' has no partition named '%s' (or of type %s)",
					display, bk_part_id_to_name(i), bk_part_id_to_type(i));
				goto out;
			}
			continue;
		}
		r = bk_gpt_kernel_add(d->disk_fd, tp, err);
		if (r >= 0)
			r = bk_probe_part_node(d->disk_fd, tp->partno, BK_DISK_NODE_TIMEOUT_MS,
					       &node, err);
		if (r < 0) {
			(void) bk_err_prefix(err, "disk '%s' partition '%s'", display, tp->name);
			goto out;
		}
		if (set_part(&d->parts[i], node, tp->partno, tp->name, tp->uuid, tp->type,
			     tp->size) < 0) {
			r = bk_err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	r = 0;
out:
	bk_probe_table_release(&t);
	return r;
}

/*
 * Reach the image file open at fd through a loop device: reuse one that maps the whole file
 * with partition scanning, or attach one (PARTSCAN|AUTOCLEAR) that dies with d->disk_fd.
 */
static int open_image(struct bk_disk *d, int fd, struct bk_err *err)
{
	char self[64];
	char **list = NULL;
	int wfd, r;

	fd_path(fd, self, sizeof(self));
	r = bk_loop_list_by_file(self, &list, err);
	if (r < 0)
		return r;
	for (char **p = list; *p; p++) {
		struct bk_loop_info info;
		int lfd;

		if (bk_loop_get_info(*p, &info, NULL) < 0 || info.offset != 0 ||
		    info.size_limit != 0 || !info.partscan || info.read_only)
			continue;
		lfd = open(*p, O_RDONLY | O_CLOEXEC);
		if (lfd < 0)
			continue;
		BK_DBG(DISK, "reusing %s for '%s'", *p, d->image);
		d->disk_fd = lfd;
		d->device = strdup(*p);
		bk_loop_strv_free(list);
		return d->device ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
	}
	bk_loop_strv_free(list);

	/*
	 * A loop device is as writable as the fd it is attached with: reopen the same file
	 * read-write (stage mounts a bank read-write), read-only when that is all we may.
	 */
	wfd = open(self, O_RDWR | O_CLOEXEC);
	r = bk_loop_attach(wfd >= 0 ? wfd : fd, 0, 0, BK_LOOP_PARTSCAN | BK_LOOP_AUTOCLEAR,
			   &d->device, &d->disk_fd, err);
	if (wfd >= 0)
		(void) close(wfd);
	if (r < 0)
		return bk_err_prefix(err, "image '%s'", d->image);
	d->attached = true;
	return 0;
}

/*
 * Open the whole disk: fd is the opened target (block device or image file), display its
 * name for messages and image_path what d->image records.
 */
static int open_whole(struct bk_disk *d, int fd, const char *display, struct bk_err *err)
{
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", display);
	if (S_ISREG(st.st_mode)) {
		d->image = strdup(display);
		if (!d->image)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = open_image(d, fd, err);
		if (r < 0)
			return r;
	} else if (S_ISBLK(st.st_mode)) {
		char self[64];

		if (is_partition(fd))
			return bk_err_set(err, -EINVAL, "'%s' is a partition, not a whole disk",
					  display);
		fd_path(fd, self, sizeof(self));
		d->disk_fd = open(self, O_RDONLY | O_CLOEXEC);
		if (d->disk_fd < 0)
			return bk_err_set(err, -errno, "cannot open '%s': %m", display);
		d->device = strdup(display);
		if (!d->device)
			return bk_err_set(err, -ENOMEM, "out of memory");
	} else
		return bk_err_set(err, -EINVAL, "'%s' is neither a block device nor a regular file",
				  display);
	return load_partitions(d, display, err);
}

/*
 * A path from system.conf: device nodes (/dev/...) are host paths; anything else is resolved
 * beneath the root (openat2 RESOLVE_BENEATH), like every other configured path.
 */
static int open_configured(const struct bk_disk_where *w, const char *key, const char *path,
			   int flags, int *ret_fd, char **ret_display, struct bk_err *err)
{
	_cleanup_free_ char *display = NULL;
	int fd;

	if (path[0] != '/')
		return bk_err_set(err, -EINVAL,
				  "'%s': [disk] %s must be an absolute path, not '%s'",
				  w->config_path, key, path);
	if (w->root_is_host || strncmp(path, "/dev/", 5) == 0) {
		display = strdup(path);
		if (!display)
			return bk_err_set(err, -ENOMEM, "out of memory");
		fd = open(path, flags | O_CLOEXEC);
	} else {
		const char *sep = w->root[strlen(w->root) - 1] == '/' ? "" : "/";

		if (asprintf(&display, "%s%s%s", w->root, sep, path + 1) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		fd = bk_open_beneath(w->root_fd, path + 1, flags | O_CLOEXEC, 0, false);
		if (fd < 0)
			errno = -fd;
	}
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s' ([disk] %s in '%s'): %m", display,
				  key, w->config_path);
	*ret_fd = fd;
	*ret_display = TAKE_PTR(display);
	return 0;
}

/* A single configured partition device ([disk] bank-a/bank-b/boot). */
static int set_configured_part(struct bk_disk *d, const struct bk_disk_where *w, enum bk_part_id id,
			       const char *key, const char *path, struct bk_err *err)
{
	_cleanup_free_ char *display = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct part *p = &d->parts[id];
	struct bk_probe_part entry = { 0 };
	struct stat st;
	int r;

	r = open_configured(w, key, path, O_RDONLY | O_NONBLOCK, &fd, &display, err);
	if (r < 0)
		return r;
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", display);
	if (!S_ISBLK(st.st_mode))
		return bk_err_set(err, -ENOTBLK, "'%s' ([disk] %s in '%s') is not a block device",
				  display, key, w->config_path);
	part_release(p);
	p->present = true;
	p->path = TAKE_PTR(display);
	/* Best effort: a configured device need not be a GPT partition. */
	if (bk_probe_part_entry(p->path, &entry, NULL) == 0) {
		p->partno = entry.partno;
		p->size = entry.size;
		p->name = TAKE_PTR(entry.name);
		p->uuid = TAKE_PTR(entry.uuid);
		p->type = TAKE_PTR(entry.type);
		bk_probe_part_release(&entry);
	} else if (ioctl(fd, BLKGETSIZE64, &p->size) < 0)
		p->size = 0;
	return 0;
}

static int open_from_record(struct bk_disk *d, const struct bk_disk_where *w, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	_cleanup_close_ int fd = -EBADF;
	const char *path = NULL, *guid = NULL;
	struct bk_err rerr = { 0 };
	char rec[PATH_MAX];
	int r;

	(void) snprintf(rec, sizeof(rec), "%s/%s", w->state_path, BK_DISK_RECORD);
	/* No record is not an error here: discovery goes on (bk_disk_open()). */
	r = bk_json_read_at(w->state_dfd, BK_DISK_RECORD, BK_DISK_RECORD_MAX_SIZE, &o, &rerr);
	if (r == -ENOENT)
		return r;
	if (r < 0)
		return bk_err_set(err, r, "'%s': %s", rec, rerr.msg);
	r = bk_json_get_string(o, "path", true, &path, err);
	if (r >= 0)
		r = bk_json_get_string(o, "disk_guid", true, &guid, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", rec);

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open disk '%s' recorded in '%s': %m", path,
				  rec);
	r = open_whole(d, fd, path, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", rec);
	if (!d->guid || strcasecmp(d->guid, guid) != 0)
		return bk_err_set(err, -ESTALE,
				  "disk '%s' recorded in '%s' no longer holds the table disk init "
				  "wrote (disk GUID %s, found %s)",
				  path, rec, guid, d->guid ? d->guid : "none");
	return 0;
}

static int open_by_probe(struct bk_disk *d, struct bk_err *err)
{
	char **disks = NULL;
	_cleanup_close_ int fd = -EBADF;
	int n, r;

	n = bk_probe_find_disks(BK_GPT_NAME_BANK_A, BK_GPT_TYPE_BANK_A, &disks, err);
	if (n < 0)
		return n;
	if (n == 0) {
		bk_probe_strv_free(disks);
		return -ENOENT;
	}
	if (n > 1) {
		r = bk_err_set(err, -ENOTUNIQ,
			       "several disks hold a bank A partition '%s' ('%s', '%s'%s): set "
			       "[disk] device",
			       BK_GPT_NAME_BANK_A, disks[0], disks[1], n > 2 ? ", ..." : "");
		bk_probe_strv_free(disks);
		return r;
	}
	fd = open(disks[0], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		r = bk_err_set(err, -errno, "cannot open '%s': %m", disks[0]);
	else
		r = open_whole(d, fd, disks[0], err);
	bk_probe_strv_free(disks);
	return r;
}

int bk_disk_open(const struct bk_disk_where *w, struct bk_disk **ret, struct bk_err *err)
{
	_cleanup_(bk_disk_freep) struct bk_disk *d = NULL;
	const struct bk_config *c = w->config;
	int r;

	if (c && c->bank_a && c->bank_b) {
		d = disk_new(BK_DISK_SOURCE_CONFIG_PARTS);
		if (!d)
			return bk_err_set(err, -ENOMEM, "out of memory");
	} else if (c && c->disk) {
		_cleanup_free_ char *display = NULL;
		_cleanup_close_ int fd = -EBADF;

		d = disk_new(BK_DISK_SOURCE_CONFIG_DEVICE);
		if (!d)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = open_configured(w, "device", c->disk, O_RDONLY | O_NONBLOCK, &fd, &display,
				    err);
		if (r < 0)
			return r;
		r = open_whole(d, fd, display, err);
		if (r < 0)
			return bk_err_prefix(err, "[disk] device in '%s'", w->config_path);
	} else {
		d = disk_new(BK_DISK_SOURCE_RECORD);
		if (!d)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = w->state_dfd >= 0 ? open_from_record(d, w, err) : -ENOENT;
		if (r == -ENOENT && !bk_err_is_set(err) && w->root_is_host) {
			d->source = BK_DISK_SOURCE_PROBE;
			r = open_by_probe(d, err);
		}
		if (r == -ENOENT && !bk_err_is_set(err))
			return bk_err_set(err, -ENOENT,
					  "no bootbank disk found: set [disk] in '%s' or run "
					  "'bankctl disk init TARGET'",
					  w->config_path);
		if (r < 0)
			return r;
	}

	/* Explicit partition devices win over what was found by name. */
	if (c && c->bank_a) {
		r = set_configured_part(d, w, BK_PART_BANK_A, "bank-a", c->bank_a, err);
		if (r < 0)
			return r;
	}
	if (c && c->bank_b) {
		r = set_configured_part(d, w, BK_PART_BANK_B, "bank-b", c->bank_b, err);
		if (r < 0)
			return r;
	}
	if (c && c->boot) {
		r = set_configured_part(d, w, BK_PART_BOOT, "boot", c->boot, err);
		if (r < 0)
			return r;
	}
	BK_DBG(DISK, "disk from %s: %s (bank A %s, bank B %s)", bk_disk_source_to_string(d->source),
	       d->device ? d->device : "-", bk_disk_part_path(d, BK_PART_BANK_A),
	       bk_disk_part_path(d, BK_PART_BANK_B));
	*ret = TAKE_PTR(d);
	return 0;
}

/* --- disk init ---------------------------------------------------------------------------- */

/* The last line of a helper's output (from its last 4 KiB), for the error message. */
static void last_line(int fd, char *buf, size_t len)
{
	char tmp[4096];
	uint64_t offset = 0;
	struct stat st;
	char *end, *start;
	ssize_t n;

	buf[0] = '\0';
	if (fstat(fd, &st) < 0)
		return;
	if ((uint64_t) st.st_size > sizeof(tmp) - 1)
		offset = (uint64_t) st.st_size - (sizeof(tmp) - 1);
	n = bk_pread_full(fd, tmp, sizeof(tmp) - 1, offset);
	if (n <= 0)
		return;
	tmp[n] = '\0';
	end = tmp + strlen(tmp);
	while (end > tmp && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		*--end = '\0';
	start = strrchr(tmp, '\n');
	start = start ? start + 1 : tmp;
	n = (ssize_t) strlen(start);
	if ((size_t) n >= len)
		n = (ssize_t) len - 1; /* cut: the message stays one bounded line */
	memcpy(buf, start, (size_t) n);
	buf[n] = '\0';
}

/*
 * Run argv (posix_spawn, never a shell) with stdin from /dev/null and stdout+stderr captured.
 * PATH first, then /usr/sbin and /sbin (root's tools, when PATH lacks them).
 */
static int spawn_wait(char *const argv[], struct bk_err *err)
{
	static const char *const fallbacks[] = { "/usr/sbin/", "/sbin/" };
	posix_spawn_file_actions_t fa;
	_cleanup_close_ int out = -EBADF;
	char line[256];
	pid_t pid = 0;
	int r, status;

	out = memfd_create("bootbank-tool-output", MFD_CLOEXEC);
	if (out < 0)
		return bk_err_set(err, -errno, "cannot create an output buffer: %m");
	r = posix_spawn_file_actions_init(&fa);
	if (r != 0)
		return bk_err_set(err, -r, "cannot run '%s': %s", argv[0], strerror(r));
	r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, out, 1);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, out, 2);
	if (r == 0) {
		r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
		for (size_t i = 0; r == ENOENT && i < BK_ELEMENTSOF(fallbacks); i++) {
			char path[PATH_MAX];

			(void) snprintf(path, sizeof(path), "%s%s", fallbacks[i], argv[0]);
			r = posix_spawn(&pid, path, &fa, NULL, argv, environ);
		}
	}
	(void) posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return bk_err_set(err, -r, "cannot run '%s': %s", argv[0], strerror(r));

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bk_err_set(err, -errno, "cannot wait for '%s': %m", argv[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	last_line(out, line, sizeof(line));
	if (WIFEXITED(status))
		return bk_err_set(err, -EIO, "'%s' failed with exit code %d%s%s", argv[0],
				  WEXITSTATUS(status), line[0] ? ": " : "", line);
	return bk_err_set(err, -EIO, "'%s' was killed by signal %d", argv[0],
			  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* run_tool: spawn_wait() for a const argv. */
static int run_tool(const char *const args[], struct bk_err *err)
{
	char *argv[16] = { NULL };
	size_t n = 0;
	int r;

	/* posix_spawn wants char *const argv[]: give it copies rather than casting away const. */
	for (; args[n]; n++) {
		assert(n + 1 < BK_ELEMENTSOF(argv));
		argv[n] = strdup(args[n]);
		if (!argv[n]) {
			r = bk_err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	r = spawn_wait(argv, err);
fail:
	for (size_t i = 0; i < n; i++)
		free(argv[i]);
	return r;
}

static int mkfs_ext4(const char *dev, const char *label, struct bk_err *err)
{
	/* -F: no "contains a file system, proceed?" question (mke2fs still refuses a mounted
	 * device); -q: quiet; the label is the partition name. */
	const char *const argv[] = { "mkfs.ext4", "-q", "-F", "-L", label, dev, NULL };
	int r;

	BK_DBG(DISK, "mkfs.ext4 -L %s %s", label, dev);
	r = run_tool(argv, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot make ext4 on '%s'", dev);
	return 0;
}

static int mkfs_vfat(const char *dev, struct bk_err *err)
{
	const char *const argv[] = { "mkfs.vfat", "-n", BK_DISK_ESP_LABEL, dev, NULL };
	int r;

	BK_DBG(DISK, "mkfs.vfat -n %s %s", BK_DISK_ESP_LABEL, dev);
	r = run_tool(argv, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot make FAT on '%s'", dev);
	return 0;
}

/* Is tool an executable in PATH, /usr/sbin or /sbin (where spawn_wait() looks)? */
static bool have_tool(const char *tool)
{
	_cleanup_free_ char *path = NULL;
	const char *env = getenv("PATH");

	if (asprintf(&path, "%s:/usr/sbin:/sbin", env ? env : "") < 0)
		return false;
	for (char *save = NULL, *dir = strtok_r(path, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		char file[PATH_MAX];

		if (!dir[0])
			continue;
		(void) snprintf(file, sizeof(file), "%s/%s", dir, tool);
		if (access(file, X_OK) == 0)
			return true;
	}
	return false;
}

/* The BIOS boot partition holds no filesystem: zero it, so nothing old is found in it. */
static int zero_part(const char *dev, uint64_t size, struct bk_err *err)
{
	static const char zeros[64 * 1024];
	_cleanup_close_ int fd = -EBADF;

	fd = open(dev, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", dev);
	for (uint64_t off = 0; off < size;) {
		size_t n = size - off < sizeof(zeros) ? (size_t) (size - off) : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, (off_t) off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return bk_err_set(err, w < 0 ? -errno : -EIO, "cannot clear '%s': %m", dev);
		off += (uint64_t) w;
	}
	if (fsync(fd) < 0)
		return bk_err_set(err, -errno, "cannot sync '%s': %m", dev);
	return 0;
}

/* The filesystem disk init makes on a partition (NULL: none). */
static const char *part_fs(enum bk_part_id id)
{
	switch (id) {
	case BK_PART_BIOS_BOOT:
		return NULL;
	case BK_PART_ESP:
		return "vfat";
	case BK_PART_BOOT:
	case BK_PART_BANK_A:
	case BK_PART_BANK_B:
	case BK_PART_DATA:
	case _BK_PART_MAX:
	case _BK_PART_INVALID:
	default:
		return "ext4";
	}
}

static int make_fs(const struct bk_gpt_part *gp, const char *node, struct bk_err *err)
{
	switch (gp->id) {
	case BK_PART_BIOS_BOOT:
		return zero_part(node, gp->size, err);
	case BK_PART_ESP:
		return mkfs_vfat(node, err);
	case BK_PART_BOOT:
	case BK_PART_BANK_A:
	case BK_PART_BANK_B:
	case BK_PART_DATA:
	case _BK_PART_MAX:
	case _BK_PART_INVALID:
	default:
		return mkfs_ext4(node, bk_part_id_to_name(gp->id), err);
	}
}

/* Is the whole disk, or any loop device of the image, claimed? Names the culprit. */
static int check_not_busy(int fd, const char *target, bool image, struct bk_err *err)
{
	char self[64];
	char **list = NULL;
	int r;

	fd_path(fd, self, sizeof(self));
	if (!image) {
		r = bk_blockdev_is_busy(self, err);
		if (r < 0)
			return bk_err_prefix(err, "target '%s'", target);
		if (r > 0)
			return bk_err_set(err, -EBUSY,
					  "target '%s' is in use (mounted or claimed by another "
					  "program)",
					  target);
		return 0;
	}
	r = bk_loop_list_by_file(self, &list, err);
	if (r < 0)
		return bk_err_prefix(err, "target '%s'", target);
	for (char **p = list; *p; p++) {
		r = bk_blockdev_is_busy(*p, NULL);
		if (r > 0) {
			r = bk_err_set(err, -EBUSY,
				       "target '%s' is in use: its loop device '%s' is mounted or "
				       "claimed",
				       target, *p);
			bk_loop_strv_free(list);
			return r;
		}
	}
	bk_loop_strv_free(list);
	return 0;
}

static int check_empty(int fd, const char *target, bool force, struct bk_err *err)
{
	struct bk_probe_content c = { 0 };
	int r;

	r = bk_probe_content_fd(fd, &c, err);
	if (r < 0)
		return bk_err_prefix(err, "target '%s'", target);
	if (!bk_probe_content_is_empty(&c) && !force) {
		if (c.pttype)
			r = bk_err_set(
				err, -EEXIST,
				"target '%s' already holds a %s partition table (use --force "
				"to overwrite it)",
				target, c.pttype);
		else
			r = bk_err_set(err, -EEXIST,
				       "target '%s' already holds a %s filesystem (use --force to "
				       "overwrite it)",
				       target, c.fstype);
	}
	bk_probe_content_release(&c);
	return r;
}

/* Other (idle) loop devices of the image keep the old partitions: bring them up to date. */
static void resync_other_loops(const struct bk_disk *d, int image_fd)
{
	char self[64];
	char **list = NULL;

	fd_path(image_fd, self, sizeof(self));
	if (bk_loop_list_by_file(self, &list, NULL) < 0)
		return;
	for (char **p = list; *p; p++) {
		struct bk_probe_table t = { 0 };
		struct bk_loop_info info;
		_cleanup_close_ int fd = -EBADF;

		if (strcmp(*p, d->device) == 0 || bk_loop_get_info(*p, &info, NULL) < 0 ||
		    !info.partscan || info.offset != 0 || info.size_limit != 0)
			continue;
		fd = open(*p, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || bk_probe_table_fd(fd, &t, NULL) < 0)
			continue;
		if (bk_gpt_sync_kernel(fd, &t, NULL) < 0)
			BK_DBG(DISK, "cannot update the partitions of %s, ignoring", *p);
		bk_probe_table_release(&t);
	}
	bk_loop_strv_free(list);
}

static int write_record(const struct bk_disk *d, const struct bk_disk_init_options *o,
			const struct bk_gpt_layout *l, int state_dfd, struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *rec = json_object_new_object();
	struct json_object *parts = json_object_new_array();

	if (!rec || !parts) {
		json_object_put(parts);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	/* bk_json_add() owns parts from here on, even when it fails. */
	if (bk_json_add_u64(rec, "version", BK_DISK_RECORD_VERSION) < 0 ||
	    bk_json_add_string(rec, "target", o->target) < 0 ||
	    bk_json_add_string(rec, "path", d->image ? d->image : d->device) < 0 ||
	    bk_json_add_bool(rec, "image", d->image != NULL) < 0 ||
	    bk_json_add_string(rec, "disk_guid", l->disk_guid) < 0 ||
	    bk_json_add_u64(rec, "size", l->disk_size) < 0 ||
	    bk_json_add_u64(rec, "sector_size", l->sector_size) < 0 ||
	    bk_json_add(rec, "partitions", parts) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < l->n_parts; i++) {
		const struct bk_gpt_part *p = &l->parts[i];
		struct json_object *e = json_object_new_object();

		if (!e || json_object_array_add(parts, e) < 0) {
			json_object_put(e);
			return bk_err_set(err, -ENOMEM, "out of memory");
		}
		if (bk_json_add_string(e, "part", bk_part_id_to_string(p->id)) < 0 ||
		    bk_json_add_u64(e, "partno", p->partno) < 0 ||
		    bk_json_add_string(e, "name", bk_part_id_to_name(p->id)) < 0 ||
		    bk_json_add_string(e, "uuid", p->uuid) < 0 ||
		    bk_json_add_string(e, "type", bk_part_id_to_type(p->id)) < 0 ||
		    bk_json_add_u64(e, "start", p->start) < 0 ||
		    bk_json_add_u64(e, "size", p->size) < 0 ||
		    bk_json_add_string(e, "filesystem", part_fs(p->id)) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}
	return bk_json_write_atomic_at(state_dfd, BK_DISK_RECORD, rec, 0644, 0, err);
}

int bk_disk_init(const struct bk_disk_init_options *o, int state_dfd, struct bk_disk **ret_disk,
		 struct bk_err *err)
{
	_cleanup_(bk_disk_freep) struct bk_disk *d = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct bk_gpt_request req = { 0 };
	struct bk_gpt_layout l;
	char abs[PATH_MAX];
	struct stat st;
	bool image;
	int r;

	fd = open(o->target, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open target '%s': %m", o->target);
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat target '%s': %m", o->target);
	image = S_ISREG(st.st_mode);
	if (!image && !S_ISBLK(st.st_mode))
		return bk_err_set(err, -EINVAL,
				  "target '%s' is neither a block device nor a regular file",
				  o->target);
	if (!image && is_partition(fd))
		return bk_err_set(err, -EINVAL, "target '%s' is a partition, not a whole disk",
				  o->target);

	/* Busy first: refused even with --force. */
	r = check_not_busy(fd, o->target, image, err);
	if (r < 0)
		return r;
	r = check_empty(fd, o->target, o->force, err);
	if (r < 0)
		return r;

	req.boot_size = o->boot_size;
	req.bank_size = o->bank_size;
	req.data_size = o->data_size;
	req.bios_boot = o->bios_boot;
	req.esp_size = o->esp_size;
	if (image) {
		req.disk_size = (uint64_t) st.st_size;
		req.sector_size = 512; /* what the loop device will have */
	} else {
		int ss = 0;

		if (ioctl(fd, BLKGETSIZE64, &req.disk_size) < 0 || ioctl(fd, BLKSSZGET, &ss) < 0)
			return bk_err_set(err, -errno, "cannot get the size of target '%s': %m",
					  o->target);
		req.sector_size = (unsigned) ss;
	}
	r = bk_gpt_layout_compute(&req, &l, err);
	if (r < 0)
		return bk_err_prefix(err, "target '%s'", o->target);
	/* Before anything is written: a missing tool must not leave half a disk. */
	if (o->esp_size && !have_tool("mkfs.vfat"))
		return bk_err_set(err, -ENOENT,
				  "cannot make the EFI System Partition: 'mkfs.vfat' not found "
				  "(install dosfstools)");

	d = disk_new(BK_DISK_SOURCE_INIT);
	if (!d)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (image) {
		if (!realpath(o->target, abs))
			return bk_err_set(err, -errno, "cannot resolve '%s': %m", o->target);
		d->image = strdup(abs);
		if (!d->image)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = bk_loop_attach(fd, 0, 0, BK_LOOP_PARTSCAN | BK_LOOP_AUTOCLEAR, &d->device,
				   &d->disk_fd, err);
		if (r < 0)
			return bk_err_prefix(err, "target '%s'", o->target);
		d->attached = true;
	} else {
		char self[64];

		if (!realpath(o->target, abs))
			return bk_err_set(err, -errno, "cannot resolve '%s': %m", o->target);
		d->device = strdup(abs);
		if (!d->device)
			return bk_err_set(err, -ENOMEM, "out of memory");
		fd_path(fd, self, sizeof(self));
		d->disk_fd = open(self, O_RDWR | O_CLOEXEC);
		if (d->disk_fd < 0)
			return bk_err_set(err, -errno, "cannot open target '%s': %m", o->target);
	}

	r = bk_gpt_write(d->disk_fd, d->device, &l, err);
	if (r < 0)
		return bk_err_prefix(err, "target '%s'", o->target);
	if (image)
		resync_other_loops(d, fd);

	for (size_t i = 0; i < l.n_parts; i++) {
		const struct bk_gpt_part *gp = &l.parts[i];
		char *node = NULL;

		r = bk_probe_part_node(d->disk_fd, gp->partno, BK_DISK_NODE_TIMEOUT_MS, &node, err);
		if (r < 0)
			return bk_err_prefix(err, "target '%s' partition %u", o->target,
					     gp->partno);
		if (set_part(&d->parts[gp->id], node, gp->partno, bk_part_id_to_name(gp->id),
			     gp->uuid, bk_part_id_to_type(gp->id), gp->size) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = make_fs(gp, node, err);
		if (r < 0)
			return r;
	}
	d->guid = strdup(l.disk_guid);
	if (!d->guid)
		return bk_err_set(err, -ENOMEM, "out of memory");

	r = write_record(d, o, &l, state_dfd, err);
	if (r < 0)
		return r;
	*ret_disk = TAKE_PTR(d);
	return 0;
}

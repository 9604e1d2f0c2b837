/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl disk init|probe, and the disk every bank verb uses: found once per process
 * (bankctl_get_disk()) and its partitions mounted in a private mount namespace of bankctl
 * (bankctl_mount_part()), so temporary mounts never leak and vanish when bankctl exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-disk.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-mount.h"
#include "bk-probe.h"

#define MNT_DIR BANKCTL_RUN_DIR "/mnt"

static const struct bankctl_verb verb_disk = { "disk", NULL, "disk init|probe ...",
					       "partition a disk for bootbank, or show it" };
static const struct bankctl_verb verb_init = {
	"disk init", NULL,
	"disk init TARGET [--bank-size SIZE] [--boot-size SIZE] [--data-size SIZE] [--bios-boot] "
	"[--esp-size SIZE] [--force]",
	"partition TARGET (block device or image file): boot, bank A, bank B, [data] (ext4), "
	"[BIOS boot partition], [EFI System Partition (FAT)]"
};
static const struct bankctl_verb verb_probe = {
	"disk probe", NULL, "disk probe [--usage] [--json]",
	"show the bootbank disk: each partition's device, name, UUID, size, filesystem, use; "
	"--usage mounts each ext4 read-only (privately) to measure it"
};

/* Per process: the disk, and which partitions this process mounted (and how). */
static struct bk_disk *disk_cache;
static bool ns_private;
static struct {
	bool mounted;
	bool rw;
} mounts[_BK_PART_MAX];

static bool root_is_host(struct bankctl *ctx)
{
	struct stat a, b;

	if (fstat(ctx->root_fd, &a) < 0 || stat("/", &b) < 0)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int bankctl_get_disk(struct bankctl *ctx, struct bk_disk **ret, struct bk_err *err)
{
	_cleanup_close_ int state_dfd = -EBADF;
	char state_path[4096];
	struct bk_disk_where w = {
		.root_fd = ctx->root_fd,
		.root = ctx->root,
		.root_is_host = root_is_host(ctx),
		.config = ctx->configured ? &ctx->config : NULL,
		.config_path = ctx->config_path,
		.state_dfd = -EBADF,
		.state_path = state_path,
	};
	int r;

	if (disk_cache) {
		*ret = disk_cache;
		return 0;
	}
	(void) snprintf(state_path, sizeof(state_path), "%s", bankctl_path(ctx, BANKCTL_STATE_DIR));
	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, false, &state_dfd, NULL);
	if (r < 0 && r != -ENOENT)
		return bk_err_set(err, r, "cannot open '%s': %m", state_path);
	w.state_dfd = state_dfd;
	r = bk_disk_open(&w, &disk_cache, err);
	if (r < 0)
		return r;
	*ret = disk_cache;
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
static int enter_private_namespace(struct bankctl *ctx, struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat a, b;

	if (ns_private)
		return 0;
	if (unshare(CLONE_NEWNS) < 0)
		return bk_err_set(err, -errno, "cannot create a private mount namespace: %m");
	ns_private = true;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return bk_err_set(err, -errno,
				  "cannot make '/' private in our mount namespace: %m");

	fd = open(ctx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot reopen root '%s': %m", ctx->root);
	if (fstat(fd, &a) < 0 || fstat(ctx->root_fd, &b) < 0)
		return bk_err_set(err, -errno, "cannot stat root '%s': %m", ctx->root);
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return bk_err_set(err, -ESTALE, "root '%s' changed while bankctl ran", ctx->root);
	if (dup3(fd, ctx->root_fd, O_CLOEXEC) < 0)
		return bk_err_set(err, -errno, "cannot reopen root '%s': %m", ctx->root);
	BK_DBG(MOUNT, "entered a private mount namespace");
	return 0;
}

/* The mount of part at relpath must be the root of that partition's filesystem. */
static int open_mounted(struct bankctl *ctx, const char *relpath, const char *dev, int *ret_fd,
			struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct statx stx;
	struct stat dst;

	fd = bk_open_beneath(ctx->root_fd, relpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, true);
	if (fd < 0)
		return bk_err_set(err, fd, "cannot open '%s': %m", bankctl_path(ctx, relpath));
	if (stat(dev, &dst) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", dev);
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", bankctl_path(ctx, relpath));
	if (makedev(stx.stx_dev_major, stx.stx_dev_minor) != dst.st_rdev ||
	    ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	     !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)))
		return bk_err_set(err, -ESTALE, "'%s' is not the mount of '%s'",
				  bankctl_path(ctx, relpath), dev);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int bankctl_mount_part(struct bankctl *ctx, enum bk_part_id part, bool rw, int *ret_dirfd,
		       struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	struct bk_disk *disk;
	char relpath[128], target[4096];
	const char *dev;
	int r;

	if (part < 0 || part >= _BK_PART_MAX)
		return bk_err_set(err, -EINVAL, "invalid partition %d", (int) part);
	r = bankctl_get_disk(ctx, &disk, err);
	if (r < 0)
		return r;
	dev = bk_disk_part_path(disk, part);
	if (!dev)
		return bk_err_set(err, -ENOENT, "the disk has no %s partition ('%s')",
				  bk_part_id_to_string(part), bk_part_id_to_name(part));
	(void) snprintf(relpath, sizeof(relpath), "%s/%s", MNT_DIR, bk_part_id_to_string(part));
	(void) snprintf(target, sizeof(target), "%s", bankctl_path(ctx, relpath));

	if (mounts[part].mounted && mounts[part].rw != rw) {
		r = bankctl_umount_part(ctx, part, err);
		if (r < 0)
			return r;
	}
	if (!mounts[part].mounted) {
		r = enter_private_namespace(ctx, err);
		if (r < 0)
			return r;
		r = bankctl_open_dir(ctx, relpath, true, &dfd, err);
		if (r < 0)
			return r;
		if (rw)
			r = bk_disk_part_wait_unused(disk, part, BK_DISK_TEARDOWN_TIMEOUT_MS, NULL,
						     err);
		if (r < 0)
			return bk_err_prefix(err, "%s partition", bk_part_id_to_string(part));
		r = bk_mount(dev, target, "ext4",
			     rw ? BK_MOUNT_NOSUID_NODEV : BK_MOUNT_RDONLY | BK_MOUNT_NOSUID_NODEV,
			     NULL, err);
		if (r < 0)
			return bk_err_prefix(err, "%s partition", bk_part_id_to_string(part));
		mounts[part].mounted = true;
		mounts[part].rw = rw;
	}
	return open_mounted(ctx, relpath, dev, ret_dirfd, err);
}

int bankctl_umount_part(struct bankctl *ctx, enum bk_part_id part, struct bk_err *err)
{
	char relpath[128];
	int r;

	if (part < 0 || part >= _BK_PART_MAX)
		return bk_err_set(err, -EINVAL, "invalid partition %d", (int) part);
	if (!mounts[part].mounted)
		return 0;
	(void) snprintf(relpath, sizeof(relpath), "%s/%s", MNT_DIR, bk_part_id_to_string(part));
	r = bk_umount(bankctl_path(ctx, relpath), 0, err);
	if (r < 0)
		return r;
	mounts[part].mounted = false;
	return 0;
}

/* --- output ------------------------------------------------------------------------------- */

struct part_state {
	bool present;
	struct bk_disk_part p;
	char *fstype;
	char *fslabel;
	char *mountpoint; /* in the caller's mount namespace */
	bool busy;
	bool has_usage;
	uint64_t used, avail; /* bytes, with has_usage */
};

static void part_states_release(struct part_state s[_BK_PART_MAX])
{
	for (int i = 0; i < _BK_PART_MAX; i++) {
		free(s[i].fstype);
		free(s[i].fslabel);
		free(s[i].mountpoint);
	}
}

/* Filesystem, use and mount point of a partition device (best effort: unknown stays NULL). */
static void probe_state(struct part_state *s)
{
	struct bk_probe_content c = { 0 };
	int fd;

	fd = open(s->p.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		if (bk_probe_content_fd(fd, &c, NULL) == 0) {
			s->fstype = TAKE_PTR(c.fstype);
			s->fslabel = TAKE_PTR(c.fslabel);
			bk_probe_content_release(&c);
		}
		(void) close(fd);
	}
	s->busy = bk_blockdev_is_busy(s->p.path, NULL) > 0;
	if (bk_mount_find_device(s->p.path, &s->mountpoint, NULL) < 0)
		s->mountpoint = NULL;
}

/*
 * Used and available bytes of an ext4 partition: mounted read-only in bankctl's private
 * namespace (bankctl_mount_part()), measured, unmounted.
 */
static int measure_usage(struct bankctl *ctx, enum bk_part_id id, struct part_state *s,
			 struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	struct statvfs sv;
	int r;

	if (!s->fstype || strcmp(s->fstype, "ext4") != 0)
		return 0;
	r = bankctl_mount_part(ctx, id, false, &dfd, err);
	if (r < 0)
		return r;
	if (fstatvfs(dfd, &sv) < 0)
		return bk_err_set(err, -errno, "cannot measure the %s partition: %m",
				  bk_part_id_to_string(id));
	s->has_usage = true;
	s->used = (uint64_t) (sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	s->avail = (uint64_t) sv.f_bavail * sv.f_frsize;
	closep(&dfd);
	return bankctl_umount_part(ctx, id, err);
}

static int collect(struct bankctl *ctx, const struct bk_disk *d, bool usage,
		   struct part_state s[_BK_PART_MAX], struct bk_err *err)
{
	for (int i = 0; i < _BK_PART_MAX; i++)
		s[i] = (struct part_state){ 0 };
	for (int i = 0; i < _BK_PART_MAX; i++) {
		int r;

		if (bk_disk_get_part(d, (enum bk_part_id) i, &s[i].p) < 0)
			continue;
		s[i].present = true;
		probe_state(&s[i]);
		if (!usage)
			continue;
		r = measure_usage(ctx, (enum bk_part_id) i, &s[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_u64_or_null(struct json_object *o, const char *key, bool set, uint64_t v)
{
	if (set)
		return bk_json_add_u64(o, key, v);
	return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
}

static struct json_object *part_to_json(enum bk_part_id id, const struct part_state *s)
{
	_cleanup_(json_object_putp) struct json_object *e = json_object_new_object();
	int r;

	if (!e)
		return NULL;
	r = bk_json_add_string(e, "part", bk_part_id_to_string(id));
	if (r >= 0)
		r = bk_json_add_string(e, "device", s->p.path);
	if (r >= 0)
		r = bk_json_add_u64(e, "partno", s->p.partno);
	if (r >= 0)
		r = bankctl_json_add_nullable(e, "name", s->p.name);
	if (r >= 0)
		r = bankctl_json_add_nullable(e, "uuid", s->p.uuid);
	if (r >= 0)
		r = bankctl_json_add_nullable(e, "type", s->p.type);
	if (r >= 0)
		r = bk_json_add_u64(e, "size", s->p.size);
	if (r >= 0)
		r = bankctl_json_add_nullable(e, "filesystem", s->fstype);
	if (r >= 0)
		r = bankctl_json_add_nullable(e, "label", s->fslabel);
	if (r >= 0)
		r = bk_json_add_bool(e, "busy", s->busy);
	if (r >= 0)
		r = bankctl_json_add_nullable(e, "mountpoint", s->mountpoint);
	if (r >= 0)
		r = add_u64_or_null(e, "used", s->has_usage, s->used);
	if (r >= 0)
		r = add_u64_or_null(e, "available", s->has_usage, s->avail);
	return r < 0 ? NULL : TAKE_PTR(e);
}

static struct json_object *disk_to_json(const struct bk_disk *d,
					const struct part_state s[_BK_PART_MAX], const char *record)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	_cleanup_(json_object_putp) struct json_object *parts = json_object_new_array();

	if (!o || !parts)
		return NULL;
	if (bk_json_add_string(o, "source", bk_disk_source_to_string(bk_disk_get_source(d))) < 0 ||
	    bankctl_json_add_nullable(o, "device", bk_disk_device(d)) < 0 ||
	    bankctl_json_add_nullable(o, "image", bk_disk_image(d)) < 0 ||
	    bankctl_json_add_nullable(o, "disk_guid", bk_disk_guid(d)) < 0 ||
	    bankctl_json_add_nullable(o, "record", record) < 0)
		return NULL;
	for (int i = 0; i < _BK_PART_MAX; i++) {
		struct json_object *e;

		if (!s[i].present)
			continue;
		e = part_to_json((enum bk_part_id) i, &s[i]);
		if (!e || json_object_array_add(parts, e) < 0) {
			json_object_put(e);
			return NULL;
		}
	}
	if (bk_json_add(o, "partitions", TAKE_PTR(parts)) < 0)
		return NULL;
	return TAKE_PTR(o);
}

static void print_disk_text(const struct bk_disk *d, const struct part_state s[_BK_PART_MAX],
			    bool usage)
{
	printf("disk %s (%s)\n", bk_disk_device(d) ? bk_disk_device(d) : "-",
	       bk_disk_source_to_string(bk_disk_get_source(d)));
	if (bk_disk_image(d))
		printf("  image      %s%s\n", bk_disk_image(d),
		       bk_disk_is_attached(d) ? " (loop device detached when bankctl exits)" : "");
	if (bk_disk_guid(d))
		printf("  disk GUID  %s\n", bk_disk_guid(d));
	printf("  %-9s %-16s %-2s %-14s %-36s %9s %-6s %-6s", "PART", "DEVICE", "#", "NAME", "UUID",
	       "SIZE", "FS", "USE");
	if (usage)
		printf(" %9s %9s", "USED", "FREE");
	putchar('\n');
	for (int i = 0; i < _BK_PART_MAX; i++) {
		const struct part_state *p = &s[i];
		char num[16] = "-";

		if (!p->present)
			continue;
		if (p->p.partno)
			(void) snprintf(num, sizeof(num), "%u", p->p.partno);
		printf("  %-9s %-16s %-2s %-14s %-36s %5llu MiB %-6s %-6s",
		       bk_part_id_to_string((enum bk_part_id) i), p->p.path, num,
		       p->p.name ? p->p.name : "-", p->p.uuid ? p->p.uuid : "-",
		       (unsigned long long) (p->p.size >> 20), p->fstype ? p->fstype : "-",
		       p->busy ? "busy" : "free");
		if (usage && p->has_usage)
			printf(" %5llu MiB %5llu MiB", (unsigned long long) (p->used >> 20),
			       (unsigned long long) (p->avail >> 20));
		if (p->mountpoint)
			printf(" mounted on %s", p->mountpoint);
		putchar('\n');
	}
}

static int print_disk(struct bankctl *ctx, const struct bk_disk *d, bool usage, const char *record,
		      struct bk_err *err)
{
	struct part_state s[_BK_PART_MAX];
	int r;

	r = collect(ctx, d, usage, s, err);
	if (r >= 0 && ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = disk_to_json(d, s, record);

		if (o)
			fputs(bk_json_to_string(o, true), stdout);
		else
			r = bk_err_set(err, -ENOMEM, "out of memory");
	} else if (r >= 0) {
		print_disk_text(d, s, usage);
		if (record)
			printf("recorded in '%s'\n", record);
	}
	part_states_release(s);
	return r;
}

/* --- verbs -------------------------------------------------------------------------------- */

static int parse_size_arg(const char *opt, const char *arg, uint64_t *ret)
{
	int r = bk_parse_size(arg, ret);

	if (r < 0 || *ret == 0)
		return bankctl_usage(&verb_init, "invalid size '%s' for %s", arg, opt);
	return 0;
}

static int disk_init(struct bankctl *ctx, int argc, char **argv)
{
	enum {
		ARG_BANK_SIZE = 0x100,
		ARG_BOOT_SIZE,
		ARG_DATA_SIZE,
		ARG_BIOS_BOOT,
		ARG_ESP_SIZE,
		ARG_FORCE
	};
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "bank-size", required_argument, NULL, ARG_BANK_SIZE },
		{ "boot-size", required_argument, NULL, ARG_BOOT_SIZE },
		{ "data-size", required_argument, NULL, ARG_DATA_SIZE },
		{ "bios-boot", no_argument, NULL, ARG_BIOS_BOOT },
		{ "esp-size", required_argument, NULL, ARG_ESP_SIZE },
		{ "force", no_argument, NULL, ARG_FORCE },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_(bk_disk_freep) struct bk_disk *disk = NULL;
	_cleanup_close_ int state_dfd = -EBADF;
	struct bk_disk_init_options o = { 0 };
	struct bk_err err = { 0 };
	char record[4096];
	int c, r;

	/* Options may follow TARGET (no "+": getopt permutes). */
	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		switch (c) {
		case ARG_BANK_SIZE:
			r = parse_size_arg("--bank-size", optarg, &o.bank_size);
			break;
		case ARG_BOOT_SIZE:
			r = parse_size_arg("--boot-size", optarg, &o.boot_size);
			break;
		case ARG_DATA_SIZE:
			r = parse_size_arg("--data-size", optarg, &o.data_size);
			break;
		case ARG_BIOS_BOOT:
			o.bios_boot = true;
			r = 0;
			break;
		case ARG_ESP_SIZE:
			r = parse_size_arg("--esp-size", optarg, &o.esp_size);
			break;
		case ARG_FORCE:
			o.force = true;
			r = 0;
			break;
		default:
			r = bankctl_common_option(ctx, c, &verb_init) <= 0 ? BK_EXIT_USAGE : 0;
			break;
		}
		if (r != 0)
			return BK_EXIT_USAGE;
	}
	if (optind >= argc)
		return bankctl_usage(&verb_init, "missing TARGET");
	o.target = argv[optind++];
	if (optind < argc)
		return bankctl_usage(&verb_init, "unexpected argument '%s'", argv[optind]);

	r = bankctl_lock(ctx, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = bankctl_open_dir(ctx, BANKCTL_STATE_DIR, true, &state_dfd, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = bk_disk_init(&o, state_dfd, &disk, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	(void) snprintf(record, sizeof(record), "%s/%s", bankctl_path(ctx, BANKCTL_STATE_DIR),
			BK_DISK_RECORD);
	if (!ctx->json)
		printf("initialised '%s'\n", o.target);
	r = print_disk(ctx, disk, false, record, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	return BK_EXIT_OK;
}

static int disk_probe(struct bankctl *ctx, int argc, char **argv)
{
	enum { ARG_USAGE = 0x100 };
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "usage", no_argument, NULL, ARG_USAGE },
		{ NULL, 0, NULL, 0 },
	};
	struct bk_err err = { 0 };
	struct bk_disk *disk;
	bool usage = false;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+jhw", longopts, NULL)) != -1) {
		if (c == ARG_USAGE)
			usage = true;
		else if (bankctl_common_option(ctx, c, &verb_probe) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(&verb_probe, "unexpected argument '%s'", argv[optind]);

	r = bankctl_get_disk(ctx, &disk, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = print_disk(ctx, disk, usage, NULL, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	return BK_EXIT_OK;
}

int bankctl_disk(struct bankctl *ctx, int argc, char **argv)
{
	if (argc < 2)
		return bankctl_usage(&verb_disk, "missing sub-command (init or probe)");
	if (strcmp(argv[1], "init") == 0)
		return disk_init(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "probe") == 0)
		return disk_probe(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		printf("usage: bankctl %s\n       bankctl %s\n%s\n", verb_init.usage,
		       verb_probe.usage, verb_disk.help);
		return BK_EXIT_OK;
	}
	return bankctl_usage(&verb_disk, "unknown sub-command '%s'", argv[1]);
}

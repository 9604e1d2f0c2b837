/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl disk init|probe: partition a disk for bootbank, or show the one the operations use
 * (bk_op_get_disk(), bk_op_mount_part()).
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
	r = bk_op_mount_part(&ctx->op, id, false, &dfd, err);
	if (r < 0)
		return r;
	if (fstatvfs(dfd, &sv) < 0)
		return bk_err_set(err, -errno, "cannot measure the %s partition: %m",
				  bk_part_id_to_string(id));
	s->has_usage = true;
	s->used = (uint64_t) (sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	s->avail = (uint64_t) sv.f_bavail * sv.f_frsize;
	closep(&dfd);
	return bk_op_umount_part(&ctx->op, id, err);
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
		r = bk_op_json_add_nullable(e, "name", s->p.name);
	if (r >= 0)
		r = bk_op_json_add_nullable(e, "uuid", s->p.uuid);
	if (r >= 0)
		r = bk_op_json_add_nullable(e, "type", s->p.type);
	if (r >= 0)
		r = bk_json_add_u64(e, "size", s->p.size);
	if (r >= 0)
		r = bk_op_json_add_nullable(e, "filesystem", s->fstype);
	if (r >= 0)
		r = bk_op_json_add_nullable(e, "label", s->fslabel);
	if (r >= 0)
		r = bk_json_add_bool(e, "busy", s->busy);
	if (r >= 0)
		r = bk_op_json_add_nullable(e, "mountpoint", s->mountpoint);
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
	    bk_op_json_add_nullable(o, "device", bk_disk_device(d)) < 0 ||
	    bk_op_json_add_nullable(o, "image", bk_disk_image(d)) < 0 ||
	    bk_op_json_add_nullable(o, "disk_guid", bk_disk_guid(d)) < 0 ||
	    bk_op_json_add_nullable(o, "record", record) < 0)
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

static int parse_size_arg(const struct bankctl *ctx, const char *opt, const char *arg,
			  uint64_t *ret)
{
	int r = bk_parse_size(arg, ret);

	if (r < 0 || *ret == 0)
		return bankctl_usage(ctx->verb, "invalid size '%s' for %s", arg, opt);
	return 0;
}

int bankctl_disk_init(struct bankctl *ctx, int argc, char **argv)
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
	struct bk_disk_init_options o = { 0 };
	struct bk_err err = { 0 };
	char record[4096];
	int c, r;

	/* Options may follow TARGET (no "+": getopt permutes). */
	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		switch (c) {
		case ARG_BANK_SIZE:
			r = parse_size_arg(ctx, "--bank-size", optarg, &o.bank_size);
			break;
		case ARG_BOOT_SIZE:
			r = parse_size_arg(ctx, "--boot-size", optarg, &o.boot_size);
			break;
		case ARG_DATA_SIZE:
			r = parse_size_arg(ctx, "--data-size", optarg, &o.data_size);
			break;
		case ARG_BIOS_BOOT:
			o.bios_boot = true;
			r = 0;
			break;
		case ARG_ESP_SIZE:
			r = parse_size_arg(ctx, "--esp-size", optarg, &o.esp_size);
			break;
		case ARG_FORCE:
			o.force = true;
			r = 0;
			break;
		default:
			r = bankctl_common_option(ctx, c, ctx->verb) <= 0 ? BK_EXIT_USAGE : 0;
			break;
		}
		if (r != 0)
			return BK_EXIT_USAGE;
	}
	if (optind >= argc)
		return bankctl_usage(ctx->verb, "missing TARGET");
	o.target = argv[optind++];
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_disk_init(&ctx->op, &o, &disk, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	(void) snprintf(record, sizeof(record), "%s/%s", bk_op_path(&ctx->op, BK_OP_STATE_DIR),
			BK_DISK_RECORD);
	if (!ctx->json)
		printf("initialised '%s'\n", o.target);
	r = print_disk(ctx, disk, false, record, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	return BK_EXIT_OK;
}

int bankctl_disk_probe(struct bankctl *ctx, int argc, char **argv)
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
		else if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);

	r = bk_op_get_disk(&ctx->op, &disk, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = print_disk(ctx, disk, usage, NULL, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	return BK_EXIT_OK;
}

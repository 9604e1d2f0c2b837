/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Block device probing over libblkid (read-only): what a device holds (partition table,
 * filesystem), the partition table of a whole disk (names, UUIDs, types), the device nodes
 * of partitions (through sysfs, created when no udev/devtmpfs does it), and the scan of every
 * block device for a partition name. Never logs. Probing needs read access to the device
 * (root for real disks; a regular image file works for anyone).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bk-err.h"

/* What a device (or image file) holds, first signature found. */
struct bk_probe_content {
	char *pttype; /* "gpt", "dos", ... or NULL */
	char *ptuuid; /* disk GUID / MBR id, or NULL */
	char *fstype; /* "ext4", "squashfs", ... or NULL */
	char *fsuuid;
	char *fslabel;
};

/*
 * Probe the content of fd (block device or regular file) for a partition table and for a
 * filesystem (or other superblock: raid, swap, LUKS). Fields not found stay NULL. Returns
 * 0 (anything found or not), -ENOMEM, -EIO, or -EINVAL when signatures are ambiguous (two
 * filesystems claim the device). Reads the device; no locking.
 */
int bk_probe_content_fd(int fd, struct bk_probe_content *ret, struct bk_err *err);

/* True when a partition table or a filesystem was found. */
bool bk_probe_content_is_empty(const struct bk_probe_content *c);

void bk_probe_content_release(struct bk_probe_content *c);

/* One partition of a table, as libblkid reads it. Sizes in bytes. */
struct bk_probe_part {
	unsigned partno; /* 1-based */
	char *name;	 /* GPT partition name (PARTLABEL), NULL when none */
	char *uuid;	 /* GPT partition UUID (PARTUUID), lowercase */
	char *type;	 /* GPT type GUID (lowercase) or MBR type "0x83" */
	uint64_t start;
	uint64_t size;
};

struct bk_probe_table {
	char *pttype;  /* "gpt", "dos" */
	char *ptuuid;  /* disk GUID (lowercase) */
	uint64_t size; /* of the whole device in bytes */
	size_t n_parts;
	struct bk_probe_part *parts; /* sorted by partno */
};

/*
 * Read the partition table of fd (a whole disk or an image file). Returns 0, -ENOMEDIUM
 * "no partition table" when there is none, -EINVAL when it is corrupt or ambiguous, other
 * -errno. Partitions without a name get name NULL.
 */
int bk_probe_table_fd(int fd, struct bk_probe_table *ret, struct bk_err *err);

void bk_probe_table_release(struct bk_probe_table *t);

/* The partition named name (exact, case-sensitive), or NULL. */
const struct bk_probe_part *bk_probe_table_find_name(const struct bk_probe_table *t,
						     const char *name);

/* The first partition of type GUID type (case-insensitive), or NULL. */
const struct bk_probe_part *bk_probe_table_find_type(const struct bk_probe_table *t,
						     const char *type);

/*
 * The partition entry of a partition device (devpath, e.g. "/dev/sda2"): libblkid reads the
 * parent disk's table. *ret is filled like one element of bk_probe_table. Returns 0, -ENOENT
 * (no such device), -ENOTBLK (not a block device), -ENXIO (not a partition of a table
 * libblkid understands).
 */
int bk_probe_part_entry(const char *devpath, struct bk_probe_part *ret, struct bk_err *err);

void bk_probe_part_release(struct bk_probe_part *p);

/*
 * The kernel name ("loop0", "sda", "nvme0n1p2") of the block device fd is open on, from
 * sysfs (/sys/dev/block/MAJ:MIN). Returns 0, -ENOTBLK, -ENOENT (sysfs does not know it).
 */
int bk_probe_blockdev_name(int fd, char **ret_name, struct bk_err *err);

/*
 * The device node of partition partno of the whole disk open at fd, "/dev/<kernel name>".
 * Waits up to timeout_ms for the kernel to announce the partition in sysfs, then for the node
 * (devtmpfs or udev). When no node appears -- a container whose /dev is a plain tmpfs, no
 * udev -- creates it with mknod() from the sysfs dev numbers. Checks that the node found is
 * the right device (st_rdev). Returns 0, -ETIMEDOUT (the kernel never showed the partition),
 * -ENOTBLK, other -errno. Needs root to create nodes.
 */
int bk_probe_part_node(int fd, unsigned partno, unsigned timeout_ms, char **ret_path,
		       struct bk_err *err);

/* A partition as the kernel sees it (sysfs), sizes in bytes. */
struct bk_probe_kpart {
	unsigned partno;
	uint64_t start;
	uint64_t size;
	dev_t devnum;
	char name[64]; /* kernel name, "loop0p2" */
};

/*
 * Partition partno of the whole disk open at fd as the kernel has it now (no waiting).
 * Returns 0, -ENOENT when the kernel has no such partition, -ENOTBLK, other -errno.
 */
int bk_probe_kernel_part(int fd, unsigned partno, struct bk_probe_kpart *ret, struct bk_err *err);

/*
 * Every partition the kernel has for the whole disk at fd (any order). *ret is malloc'ed
 * (NULL when none). Returns the number or -errno.
 */
int bk_probe_kernel_parts(int fd, struct bk_probe_kpart **ret, struct bk_err *err);

/*
 * The device node for the block device with kernel name name ("loop3"), created like above
 * when missing. Returns 0, -ENOENT (no such device in sysfs), other -errno.
 */
int bk_probe_devnode(const char *name, char **ret_path, struct bk_err *err);

/*
 * Scan every whole disk in /sys/block (skipping empty ones) with libblkid for a partition
 * named name or, when type is not NULL, of partition type GUID type. *ret_disks gets a
 * NULL-terminated, malloc'ed list of "/dev/<disk>" paths (maybe empty). Devices that cannot be
 * opened are skipped. Returns the number of disks found or -errno. Reads every disk: root
 * only, and slow on many disks.
 */
int bk_probe_find_disks(const char *name, const char *type, char ***ret_disks, struct bk_err *err);

/* Free a NULL-terminated list of strings; returns NULL. */
char **bk_probe_strv_free(char **l);

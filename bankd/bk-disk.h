/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The bootbank disk: where the boot partition and the banks are (discovery), and `disk init`
 * (partition a disk or image file, make the filesystems, record it). docs/disk.md describes
 * the layout and the discovery order. Needs root. Never logs.
 *
 * A disk found in an image file is reached through a loop device: an existing one of the same
 * file is reused, otherwise one is attached with partition scanning and autoclear; either way
 * the struct bk_disk holds an open fd of it, so the device lives exactly as long as the
 * struct (or the process).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bk-config.h"
#include "bk-err.h"
#include "bk-gpt.h"

/* The record disk init writes in the state directory (ROOT/var/lib/bootbank). */
#define BK_DISK_RECORD		"disk.json"
#define BK_DISK_RECORD_MAX_SIZE (64 * 1024)
#define BK_DISK_RECORD_VERSION	1

/* How long partition device nodes may take to show up (kernel, devtmpfs, udev). */
#define BK_DISK_NODE_TIMEOUT_MS 5000

/* The FAT volume label of the ESP (at most 11 characters, upper case). */
#define BK_DISK_ESP_LABEL "BOOTBANKESP"

struct bk_disk;

enum bk_disk_source {
	BK_DISK_SOURCE_CONFIG_PARTS,  /* [disk] bank-a and bank-b (and boot) in system.conf */
	BK_DISK_SOURCE_CONFIG_DEVICE, /* [disk] device: partitions found by name within it */
	BK_DISK_SOURCE_RECORD,	      /* var/lib/bootbank/disk.json written by disk init */
	BK_DISK_SOURCE_PROBE,	      /* libblkid scan of every disk (root "/" only) */
	BK_DISK_SOURCE_INIT,	      /* the disk bk_disk_init() just wrote */
	_BK_DISK_SOURCE_MAX,
	_BK_DISK_SOURCE_INVALID = -EINVAL,
};

/* "config-partitions", "config-device", "disk.json", "probe", "init". */
const char *bk_disk_source_to_string(enum bk_disk_source s);

/* Where discovery looks; every field is borrowed for the duration of bk_disk_open(). */
struct bk_disk_where {
	int root_fd;			/* the root (--root), O_DIRECTORY */
	const char *root;		/* its path, for messages and for config paths beneath it */
	bool root_is_host;		/* the root is "/": step 4 (probe every disk) is allowed */
	const struct bk_config *config; /* [disk] keys; NULL: none */
	const char *config_path;	/* for messages */
	int state_dfd;		/* ROOT/var/lib/bootbank, or -EBADF when it does not exist */
	const char *state_path; /* for messages */
};

/*
 * Find the disk, in this order (the first that is configured or present wins):
 *   1. [disk] bank-a and bank-b (both set): those devices; boot from [disk] boot (optional);
 *   2. [disk] device: a whole block device or an image file; partitions by name within it;
 *   3. state_dfd/disk.json: the target recorded by disk init; its disk GUID must match;
 *   4. only when root_is_host: every disk probed with libblkid for a partition named
 *      bootbank_a (exactly one disk must have one).
 * In 2-4, [disk] bank-a, bank-b, boot still override single partitions. Device paths under
 * /dev/ are host paths; other paths from the configuration are resolved beneath the root.
 * Partitions the kernel does not know yet are added with BLKPG; missing device nodes are
 * created. Bank A and bank B must exist; boot and data are optional.
 * Returns 0; -ENOENT (nothing configured or found, a configured device missing, no partition
 * named bootbank_a/b), -ESTALE (disk.json names a disk whose GUID changed), -ENOTUNIQ (step 4
 * found several disks), -EINVAL (a bad record), other -errno.
 */
int bk_disk_open(const struct bk_disk_where *where, struct bk_disk **ret, struct bk_err *err);

/* Free the disk (and close its loop device fd: an autoclear device goes away). NULL ok. */
struct bk_disk *bk_disk_free(struct bk_disk *d);
BK_DEFINE_CLEANUP(struct bk_disk *, bk_disk_free)

/* The device node of a partition, or NULL when the disk has none (boot, data optional). */
const char *bk_disk_part_path(const struct bk_disk *d, enum bk_part_id id);

/* What is known of a partition; strings are borrowed from d (NULL when unknown). */
struct bk_disk_part {
	const char *path; /* device node */
	unsigned partno;  /* 0: unknown (a configured device that is not a GPT partition) */
	const char *name; /* PARTLABEL */
	const char *uuid; /* PARTUUID */
	const char *type; /* type GUID */
	uint64_t size;	  /* bytes, 0 unknown */
};

/* 0, or -ENOENT when the disk has no such partition. */
int bk_disk_get_part(const struct bk_disk *d, enum bk_part_id id, struct bk_disk_part *ret);

/* How long bk_disk_part_wait_unused() waits for a killed run's mounts to go away. */
#define BK_DISK_TEARDOWN_TIMEOUT_MS 10000

/*
 * Wait until the partition id is used by no one, in any mount namespace, before it is
 * written or its filesystem mounted read-write (issue 16). Used means: its device cannot be
 * opened O_EXCL (mounted or claimed anywhere), and, for a disk in an image file, the same
 * partition through any other loop device of that file, or another loop device that maps a
 * range of it, is claimed: two block devices of the same bytes would make two filesystem
 * instances of one bank, each with its own cache, and corrupt it (checksum errors, EBADMSG).
 * A partition that a live process has mounted (bk_mount_find_holder()), or that a kernel
 * holder (device mapper, md) claims, is refused at once with -EBUSY and a message naming the
 * process, mount point and device. Otherwise the claim belongs to a mount namespace no process
 * is in any more, which the kernel tears down asynchronously after a kill (its autoclear loop
 * device goes with it): this polls every 50 ms for up to timeout_ms, then fails with -EBUSY
 * and a message saying so. Returns 0 when unused (*ret_waited_ms, optional: how long it
 * waited), -EBUSY, -ENOENT (no such partition), other -errno. Blocks; needs root.
 */
int bk_disk_part_wait_unused(const struct bk_disk *d, enum bk_part_id id, unsigned timeout_ms,
			     unsigned *ret_waited_ms, struct bk_err *err);

enum bk_disk_source bk_disk_get_source(const struct bk_disk *d);
const char *bk_disk_device(const struct bk_disk *d); /* whole disk node, NULL for source 1 */
const char *bk_disk_image(const struct bk_disk *d);  /* image file, NULL for a block device */
const char *bk_disk_guid(const struct bk_disk *d);   /* GPT disk GUID, NULL when unknown */
/* True when the disk is reached through a loop device this process attached (autoclear). */
bool bk_disk_is_attached(const struct bk_disk *d);

struct bk_disk_init_options {
	const char *target; /* block device or regular file, as given */
	uint64_t boot_size; /* 0: default (64 MiB) */
	uint64_t bank_size; /* 0: split what is left */
	uint64_t data_size; /* 0: no data partition */
	bool bios_boot;	    /* a 1 MiB BIOS boot partition (GRUB i386-pc on GPT) */
	uint64_t esp_size;  /* 0: no EFI System Partition; else its size, made FAT (mkfs.vfat) */
	bool force;	    /* overwrite an existing partition table or filesystem */
};

/*
 * Partition target (docs/disk.md): refuse a partition, a busy target (mounted or claimed, also
 * through a loop device of an image file: -EBUSY, even with force), a target that already
 * holds a partition table or filesystem (-EEXIST unless force) and one too small for the
 * layout (-ENOSPC). An image file is attached to a loop device with partition scanning and
 * autoclear. Writes the GPT (bk_gpt_write(), under flock), makes ext4 with mkfs.ext4
 * (posix_spawn, no shell) on boot, banks and data, labelled like the partition, zeroes the
 * BIOS boot partition, makes FAT on the ESP with mkfs.vfat (label BK_DISK_ESP_LABEL; with
 * esp_size, mkfs.vfat must be installed: -ENOENT before anything is written), and records the
 * result atomically in state_dfd/disk.json. *ret_disk is the new disk (source INIT), ready for
 * bk_disk_part_path(). Blocks for the mkfs runs; needs root.
 */
int bk_disk_init(const struct bk_disk_init_options *o, int state_dfd, struct bk_disk **ret_disk,
		 struct bk_err *err);

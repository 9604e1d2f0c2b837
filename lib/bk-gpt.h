/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The bootbank GPT layout (docs/disk.md) and the libfdisk glue that writes it: computing the
 * layout (pure), writing the table under flock(LOCK_EX) on the whole disk, and telling the
 * kernel about the partitions with BLKPG (works on kernels without partition table parsers
 * and on loop devices). Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"
#include "bk-probe.h"
#include "bk-select.h"

/* Partition type GUIDs (lowercase). The bank types are ours, generated once for bootbank. */
#define BK_GPT_TYPE_BANK_A    "8fac4a25-9f88-4344-9db7-f999d75f48ca"
#define BK_GPT_TYPE_BANK_B    "de5994dd-6548-4003-9e5b-cc3557945f8f"
#define BK_GPT_TYPE_LINUX_FS  "0fc63daf-8483-4772-8e79-3d69d8477de4" /* boot, data */
#define BK_GPT_TYPE_BIOS_BOOT "21686148-6449-6e6f-744e-656564454649" /* GRUB i386-pc core */
#define BK_GPT_TYPE_ESP	      "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" /* EFI System Partition */

/* Partition names (PARTLABEL); also the ext4 labels mkfs gives them. */
#define BK_GPT_NAME_BOOT   "bootbank_boot"
#define BK_GPT_NAME_BANK_A "bootbank_a"
#define BK_GPT_NAME_BANK_B "bootbank_b"
#define BK_GPT_NAME_DATA   "bootbank_data"
#define BK_GPT_NAME_BIOS   "bootbank_bios"
#define BK_GPT_NAME_ESP	   "bootbank_esp"

#define BK_GPT_ALIGN		 (UINT64_C(1) << 20)  /* partitions start and end on 1 MiB */
#define BK_GPT_DEFAULT_BOOT_SIZE (UINT64_C(64) << 20) /* partition 1 */
#define BK_GPT_MIN_PART_SIZE	 (UINT64_C(8) << 20)  /* smallest partition we create */
#define BK_GPT_MAX_PARTS	 128		      /* entries of the table we write */
#define BK_GPT_BIOS_BOOT_SIZE	 (UINT64_C(1) << 20)  /* --bios-boot: GRUB's core.img */

/*
 * The partitions of a bootbank disk, in table order: each present one gets the next
 * partition number (boot 1, bank A 2, bank B 3, then data, BIOS boot, ESP when asked for).
 * Discovery goes by name (and the banks' type), never by number.
 */
enum bk_part_id {
	BK_PART_BOOT,
	BK_PART_BANK_A,
	BK_PART_BANK_B,
	BK_PART_DATA,
	BK_PART_BIOS_BOOT, /* no filesystem: GRUB for BIOS embeds its core image here */
	BK_PART_ESP,	   /* FAT: the firmware loads EFI/BOOT/BOOTX64.EFI from it */
	_BK_PART_MAX,
	_BK_PART_INVALID = -EINVAL,
};

/* "boot", "bank-a", "bank-b", "data", "bios-boot", "esp" */
const char *bk_part_id_to_string(enum bk_part_id id);
enum bk_part_id bk_part_id_from_string(const char *s);
const char *bk_part_id_to_name(enum bk_part_id id); /* "bootbank_boot", ... */
const char *bk_part_id_to_type(enum bk_part_id id); /* type GUID */
enum bk_part_id bk_part_id_from_bank(enum bk_bank_id bank);

/* What disk init asks for. Sizes in bytes; 0 = default. */
struct bk_gpt_request {
	uint64_t disk_size;
	unsigned sector_size; /* logical, 512 or 4096 */
	uint64_t boot_size;   /* 0: BK_GPT_DEFAULT_BOOT_SIZE */
	uint64_t bank_size;   /* 0: split what is left after boot and data between A and B */
	uint64_t data_size;   /* 0: no data partition */
	bool bios_boot;	      /* a BIOS boot partition of BK_GPT_BIOS_BOOT_SIZE */
	uint64_t esp_size;    /* 0: no EFI System Partition */
};

struct bk_gpt_part {
	enum bk_part_id id;
	unsigned partno; /* 1-based */
	uint64_t start;	 /* bytes */
	uint64_t size;	 /* bytes */
	char uuid[37];	 /* filled by bk_gpt_write() */
};

struct bk_gpt_layout {
	uint64_t disk_size;
	unsigned sector_size;
	size_t n_parts;
	struct bk_gpt_part parts[_BK_PART_MAX];
	char disk_guid[37]; /* filled by bk_gpt_write() */
};

/*
 * Compute the layout: partitions 1 boot, 2 bank A, 3 bank B, then data (with data_size), the
 * BIOS boot partition (with bios_boot) and the ESP (with esp_size), numbered in that order
 * without gaps. layout->parts is in that (table) order. Physically, contiguous from 1 MiB:
 * BIOS boot, ESP, boot, bank A, bank B, data; each size rounded up to 1 MiB, all inside the
 * usable area of a GPT with 128 entries (and its backup at the end). Pure.
 * Returns 0; -EINVAL (sector size not 512/4096, a size below BK_GPT_MIN_PART_SIZE); -ENOSPC
 * when the disk is too small ("needs at least N MiB, has M MiB").
 */
int bk_gpt_layout_compute(const struct bk_gpt_request *req, struct bk_gpt_layout *ret,
			  struct bk_err *err);

/*
 * Write a new GPT with layout to the whole disk (or image file) fd through libfdisk:
 * takes flock(LOCK_EX) on fd for the change (waits up to 10 s: -EBUSY), wipes old
 * signatures, creates the label and the partitions, writes, fsyncs, and, for a block device,
 * makes the kernel's partitions match the new table (bk_gpt_sync_kernel()). Fills
 * layout->disk_guid and every part's uuid. path is for messages and libfdisk. The sector
 * size libfdisk sees must match layout->sector_size (-EINVAL). Needs write access; destroys
 * whatever table the disk had.
 */
int bk_gpt_write(int fd, const char *path, struct bk_gpt_layout *layout, struct bk_err *err);

/*
 * Make the kernel's partitions of the whole disk fd match t: partitions the kernel has but t
 * does not (or with another start or size) are deleted with BLKPG_DEL_PARTITION, missing ones
 * added with BLKPG_ADD_PARTITION. -EBUSY when a partition to delete is in use. Needs root and
 * a disk that allows partitions (loop devices: BK_LOOP_PARTSCAN). Caller holds the flock.
 */
int bk_gpt_sync_kernel(int fd, const struct bk_probe_table *t, struct bk_err *err);

/*
 * Make sure the kernel has partition p of the whole disk fd (add it with BLKPG when missing).
 * Returns 0 (present, same start and size), 1 (added), -ESTALE when the kernel has a
 * partition with that number but another start or size (the table changed under it), other
 * -errno. Does not delete anything.
 */
int bk_gpt_kernel_add(int fd, const struct bk_probe_part *p, struct bk_err *err);

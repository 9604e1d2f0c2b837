/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/blkpg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libfdisk.h>

#include "bk-gpt.h"
#include "bk-log.h"

BK_DEFINE_CLEANUP(struct fdisk_context *, fdisk_unref_context)
BK_DEFINE_CLEANUP(struct fdisk_partition *, fdisk_unref_partition)
BK_DEFINE_CLEANUP(struct fdisk_parttype *, fdisk_unref_parttype)

#define MIB		  (UINT64_C(1) << 20)
#define GPT_ENTRY_BYTES	  (BK_GPT_MAX_PARTS * 128)
#define FLOCK_TIMEOUT_MS  10000
#define FLOCK_INTERVAL_MS 50

static const struct {
	const char *string;
	const char *name;
	const char *type;
} parts[_BK_PART_MAX] = {
	[BK_PART_BOOT] = { "boot", BK_GPT_NAME_BOOT, BK_GPT_TYPE_LINUX_FS },
	[BK_PART_BANK_A] = { "bank-a", BK_GPT_NAME_BANK_A, BK_GPT_TYPE_BANK_A },
	[BK_PART_BANK_B] = { "bank-b", BK_GPT_NAME_BANK_B, BK_GPT_TYPE_BANK_B },
	[BK_PART_DATA] = { "data", BK_GPT_NAME_DATA, BK_GPT_TYPE_LINUX_FS },
	[BK_PART_BIOS_BOOT] = { "bios-boot", BK_GPT_NAME_BIOS, BK_GPT_TYPE_BIOS_BOOT },
	[BK_PART_ESP] = { "esp", BK_GPT_NAME_ESP, BK_GPT_TYPE_ESP },
};

const char *bk_part_id_to_string(enum bk_part_id id)
{
	if (id < 0 || id >= _BK_PART_MAX)
		return NULL;
	return parts[id].string;
}

enum bk_part_id bk_part_id_from_string(const char *s)
{
	if (!s)
		return _BK_PART_INVALID;
	for (int i = 0; i < _BK_PART_MAX; i++)
		if (strcmp(parts[i].string, s) == 0)
			return (enum bk_part_id) i;
	return _BK_PART_INVALID;
}

const char *bk_part_id_to_name(enum bk_part_id id)
{
	if (id < 0 || id >= _BK_PART_MAX)
		return NULL;
	return parts[id].name;
}

const char *bk_part_id_to_type(enum bk_part_id id)
{
	if (id < 0 || id >= _BK_PART_MAX)
		return NULL;
	return parts[id].type;
}

enum bk_part_id bk_part_id_from_bank(enum bk_bank_id bank)
{
	switch (bank) {
	case BK_BANK_A:
		return BK_PART_BANK_A;
	case BK_BANK_B:
		return BK_PART_BANK_B;
	case _BK_BANK_MAX:
	case _BK_BANK_INVALID:
	default:
		return _BK_PART_INVALID;
	}
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static uint64_t align_down(uint64_t v, uint64_t a)
{
	return v / a * a;
}

static unsigned long long mib(uint64_t bytes)
{
	return (unsigned long long) (bytes / MIB + (bytes % MIB != 0));
}

static int check_min(const char *what, uint64_t size, struct bk_err *err)
{
	if (size < BK_GPT_MIN_PART_SIZE)
		return bk_err_set(err, -EINVAL,
				  "%s size %llu bytes is below the minimum of %llu MiB", what,
				  (unsigned long long) size, mib(BK_GPT_MIN_PART_SIZE));
	return 0;
}

/* a + b, saturating: a huge request is "too small a disk", never a wrapped-around fit. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_align_up(uint64_t v)
{
	return v > UINT64_MAX - BK_GPT_ALIGN ? UINT64_MAX : align_up(v, BK_GPT_ALIGN);
}

int bk_gpt_layout_compute(const struct bk_gpt_request *req, struct bk_gpt_layout *ret,
			  struct bk_err *err)
{
	struct bk_gpt_layout l = { 0 };
	uint64_t ss = req->sector_size, entry_sectors, n_sectors, start, end, avail;
	uint64_t boot, bank, data, bios, esp, fixed, need;
	uint64_t sizes[_BK_PART_MAX];
	static const enum bk_part_id physical[] = {
		BK_PART_BIOS_BOOT, BK_PART_ESP,	   BK_PART_BOOT,
		BK_PART_BANK_A,	   BK_PART_BANK_B, BK_PART_DATA
	};
	int r;

	_Static_assert(BK_ELEMENTSOF(physical) == _BK_PART_MAX, "every partition has a place");

	if (ss != 512 && ss != 4096)
		return bk_err_set(err, -EINVAL, "unsupported sector size %llu",
				  (unsigned long long) ss);
	boot = req->boot_size ? req->boot_size : BK_GPT_DEFAULT_BOOT_SIZE;
	r = check_min("boot partition", boot, err);
	if (r >= 0 && req->bank_size)
		r = check_min("bank", req->bank_size, err);
	if (r >= 0 && req->data_size)
		r = check_min("data partition", req->data_size, err);
	if (r >= 0 && req->esp_size)
		r = check_min("EFI System Partition", req->esp_size, err);
	if (r < 0)
		return r;
	boot = sat_align_up(boot);
	data = req->data_size ? sat_align_up(req->data_size) : 0;
	bios = req->bios_boot ? BK_GPT_BIOS_BOOT_SIZE : 0;
	esp = req->esp_size ? sat_align_up(req->esp_size) : 0;
	/* Everything but the banks. */
	fixed = sat_add(sat_add(boot, data), sat_add(bios, esp));

	/* GPT: protective MBR, header, entries at the start; entries, header at the end. */
	entry_sectors = GPT_ENTRY_BYTES / ss;
	n_sectors = req->disk_size / ss;
	start = align_up((2 + entry_sectors) * ss, BK_GPT_ALIGN);
	end = n_sectors > 2 * (2 + entry_sectors) ?
		      align_down((n_sectors - 1 - entry_sectors) * ss, BK_GPT_ALIGN) :
		      0;
	avail = end > start ? end - start : 0;

	if (req->bank_size) {
		bank = sat_align_up(req->bank_size);
		need = sat_add(fixed, sat_add(bank, bank));
	} else {
		need = sat_add(fixed, 2 * BK_GPT_MIN_PART_SIZE);
		bank = avail > fixed ? align_down((avail - fixed) / 2, BK_GPT_ALIGN) : 0;
	}
	if (need > avail || bank < BK_GPT_MIN_PART_SIZE)
		return bk_err_set(err, -ENOSPC,
				  "too small for the layout: needs at least %llu MiB, has %llu MiB",
				  mib(sat_add(need, start + BK_GPT_ALIGN)),
				  (unsigned long long) (req->disk_size / MIB));

	l.disk_size = req->disk_size;
	l.sector_size = (unsigned) ss;
	sizes[BK_PART_BOOT] = boot;
	sizes[BK_PART_BANK_A] = bank;
	sizes[BK_PART_BANK_B] = bank;
	sizes[BK_PART_DATA] = data;
	sizes[BK_PART_BIOS_BOOT] = bios;
	sizes[BK_PART_ESP] = esp;
	/* Table order: the next number for each present partition. */
	for (int i = 0; i < _BK_PART_MAX; i++) {
		if (sizes[i] == 0)
			continue;
		l.parts[l.n_parts] = (struct bk_gpt_part){
			.id = (enum bk_part_id) i,
			.partno = (unsigned) l.n_parts + 1,
			.size = sizes[i],
		};
		l.n_parts++;
	}
	/* Disk order: the BIOS boot partition and the ESP first, then boot, banks, data. */
	for (size_t k = 0; k < BK_ELEMENTSOF(physical); k++)
		for (size_t i = 0; i < l.n_parts; i++)
			if (l.parts[i].id == physical[k]) {
				l.parts[i].start = start;
				start += l.parts[i].size;
			}
	BK_DBG(DISK, "layout for %llu bytes: %zu partitions, %llu MiB per bank",
	       (unsigned long long) req->disk_size, l.n_parts, (unsigned long long) (bank / MIB));
	*ret = l;
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

	(void) nanosleep(&ts, NULL);
}

/*
 * flock(LOCK_EX) on the whole disk: udev (and systemd-udevd's "block device locking") probes
 * only when it gets LOCK_SH, so it never sees a half-written table. Bounded wait.
 */
static int lock_disk(int fd, const char *path, struct bk_err *err)
{
	for (unsigned waited = 0;; waited += FLOCK_INTERVAL_MS) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return bk_err_set(err, -errno, "cannot lock '%s': %m", path);
		if (waited >= FLOCK_TIMEOUT_MS)
			return bk_err_set(err, -EBUSY, "'%s' is locked by another program (flock)",
					  path);
		sleep_ms(FLOCK_INTERVAL_MS);
	}
}

static void copy_lower(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; src && src[i] && i + 1 < len; i++)
		dst[i] = (char) tolower((unsigned char) src[i]);
	dst[i] = '\0';
}

static int add_partition(struct fdisk_context *cxt, const struct bk_gpt_layout *l,
			 const struct bk_gpt_part *p, struct bk_err *err)
{
	_cleanup_(fdisk_unref_partitionp) struct fdisk_partition *pa = NULL;
	_cleanup_(fdisk_unref_parttypep) struct fdisk_parttype *type = NULL;
	struct fdisk_label *lb = fdisk_get_label(cxt, NULL);
	int r;

	pa = fdisk_new_partition();
	if (!pa)
		return bk_err_set(err, -ENOMEM, "out of memory");
	type = fdisk_label_parse_parttype(lb, bk_part_id_to_type(p->id));
	if (!type)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (fdisk_partition_set_start(pa, p->start / l->sector_size) < 0 ||
	    fdisk_partition_set_size(pa, p->size / l->sector_size) < 0 ||
	    fdisk_partition_size_explicit(pa, 1) < 0 ||
	    fdisk_partition_set_partno(pa, p->partno - 1) < 0 ||
	    fdisk_partition_set_name(pa, bk_part_id_to_name(p->id)) < 0 ||
	    fdisk_partition_set_type(pa, type) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = fdisk_add_partition(cxt, pa, NULL);
	if (r < 0)
		return bk_err_set(err, r, "cannot add partition %u (%s): %m", p->partno,
				  bk_part_id_to_name(p->id));
	return 0;
}

/* Read back what libfdisk wrote: GUIDs, and that start and size are what we asked for. */
static int read_back(struct fdisk_context *cxt, struct bk_gpt_layout *l, struct bk_err *err)
{
	_cleanup_free_ char *id = NULL;
	int r;

	r = fdisk_get_disklabel_id(cxt, &id);
	if (r < 0 || !id)
		return bk_err_set(err, r < 0 ? r : -EIO, "cannot read the new disk GUID");
	copy_lower(l->disk_guid, sizeof(l->disk_guid), id);
	for (size_t i = 0; i < l->n_parts; i++) {
		_cleanup_(fdisk_unref_partitionp) struct fdisk_partition *pa = NULL;
		struct bk_gpt_part *p = &l->parts[i];

		r = fdisk_get_partition(cxt, p->partno - 1, &pa);
		if (r < 0)
			return bk_err_set(err, r, "cannot read back partition %u: %m", p->partno);
		if (fdisk_partition_get_start(pa) * l->sector_size != p->start ||
		    fdisk_partition_get_size(pa) * l->sector_size != p->size)
			return bk_err_set(err, -EIO,
					  "partition %u was created at another place than asked",
					  p->partno);
		copy_lower(p->uuid, sizeof(p->uuid), fdisk_partition_get_uuid(pa));
	}
	return 0;
}

static int write_table(int fd, const char *path, struct bk_gpt_layout *l, struct bk_err *err)
{
	_cleanup_(fdisk_unref_contextp) struct fdisk_context *cxt = NULL;
	int r;

	cxt = fdisk_new_context();
	if (!cxt)
		return bk_err_set(err, -ENOMEM, "out of memory");
	(void) fdisk_disable_dialogs(cxt, 1);
	/* By fd: the very device we checked and locked; libfdisk does not close it. */
	r = fdisk_assign_device_by_fd(cxt, fd, path, 0);
	if (r < 0)
		return bk_err_set(err, r, "libfdisk cannot use '%s': %m", path);
	if (fdisk_get_sector_size(cxt) != l->sector_size)
		return bk_err_set(err, -EINVAL, "'%s': sector size %lu, the layout assumed %u",
				  path, fdisk_get_sector_size(cxt), l->sector_size);
	if (fdisk_get_nsectors(cxt) * l->sector_size != l->disk_size)
		return bk_err_set(err, -ESTALE, "'%s' changed size since the layout was computed",
				  path);
	/* Remove old filesystem/RAID/table signatures libblkid finds, with the write. */
	(void) fdisk_enable_wipe(cxt, 1);
	r = fdisk_create_disklabel(cxt, "gpt");
	if (r < 0)
		return bk_err_set(err, r, "cannot create a GPT on '%s': %m", path);
	for (size_t i = 0; i < l->n_parts; i++) {
		r = add_partition(cxt, l, &l->parts[i], err);
		if (r < 0)
			return bk_err_prefix(err, "'%s'", path);
	}
	r = fdisk_write_disklabel(cxt);
	if (r < 0)
		return bk_err_set(err, r, "cannot write the partition table to '%s': %m", path);
	r = read_back(cxt, l, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", path);
	if (fsync(fd) < 0)
		return bk_err_set(err, -errno, "cannot sync '%s': %m", path);
	return 0;
}

int bk_gpt_write(int fd, const char *path, struct bk_gpt_layout *layout, struct bk_err *err)
{
	struct bk_probe_table t = { 0 };
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", path);
	r = lock_disk(fd, path, err);
	if (r < 0)
		return r;

	r = write_table(fd, path, layout, err);
	if (r >= 0 && S_ISBLK(st.st_mode)) {
		r = bk_probe_table_fd(fd, &t, err);
		if (r >= 0)
			r = bk_gpt_sync_kernel(fd, &t, err);
		if (r < 0)
			(void) bk_err_prefix(err, "'%s'", path);
		bk_probe_table_release(&t);
	}
	(void) flock(fd, LOCK_UN);
	if (r < 0)
		return r;
	BK_DBG(DISK, "wrote GPT %s to %s", layout->disk_guid, path);
	return 0;
}

static int blkpg(int fd, int op, unsigned partno, uint64_t start, uint64_t size)
{
	struct blkpg_partition bp = {
		.start = (long long) start,
		.length = (long long) size,
		.pno = (int) partno,
	};
	struct blkpg_ioctl_arg a = {
		.op = op,
		.datalen = sizeof(bp),
		.data = &bp,
	};

	if (ioctl(fd, BLKPG, &a) < 0)
		return -errno;
	return 0;
}

static const struct bk_probe_part *table_part(const struct bk_probe_table *t, unsigned partno)
{
	for (size_t i = 0; i < t->n_parts; i++)
		if (t->parts[i].partno == partno)
			return &t->parts[i];
	return NULL;
}

int bk_gpt_sync_kernel(int fd, const struct bk_probe_table *t, struct bk_err *err)
{
	_cleanup_free_ struct bk_probe_kpart *kp = NULL;
	int n, r;

	n = bk_probe_kernel_parts(fd, &kp, err);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		const struct bk_probe_part *p = table_part(t, kp[i].partno);

		if (p && p->start == kp[i].start && p->size == kp[i].size)
			continue;
		r = blkpg(fd, BLKPG_DEL_PARTITION, kp[i].partno, 0, 0);
		if (r < 0)
			return bk_err_set(err, r,
					  "cannot remove old partition %u (%s) from the kernel: %m",
					  kp[i].partno, kp[i].name);
		BK_DBG(DISK, "BLKPG removed %s", kp[i].name);
	}
	for (size_t i = 0; i < t->n_parts; i++) {
		r = bk_gpt_kernel_add(fd, &t->parts[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

int bk_gpt_kernel_add(int fd, const struct bk_probe_part *p, struct bk_err *err)
{
	struct bk_probe_kpart kp;
	int r;

	r = bk_probe_kernel_part(fd, p->partno, &kp, err);
	if (r == 0) {
		if (kp.start == p->start && kp.size == p->size)
			return 0;
		return bk_err_set(err, -ESTALE,
				  "the kernel's partition %u (%s) differs from the partition table",
				  p->partno, kp.name);
	}
	if (r != -ENOENT)
		return r;
	r = blkpg(fd, BLKPG_ADD_PARTITION, p->partno, p->start, p->size);
	if (r < 0 && r != -EBUSY)
		return bk_err_set(err, r, "cannot add partition %u to the kernel: %m", p->partno);
	/* -EBUSY: someone (udev, a parallel scan) added it meanwhile; check it. */
	if (r == -EBUSY) {
		r = bk_probe_kernel_part(fd, p->partno, &kp, err);
		if (r < 0)
			return bk_err_set(err, r, "cannot add partition %u to the kernel: busy",
					  p->partno);
		if (kp.start != p->start || kp.size != p->size)
			return bk_err_set(
				err, -ESTALE,
				"the kernel's partition %u (%s) differs from the partition table",
				p->partno, kp.name);
		return 0;
	}
	BK_DBG(DISK, "BLKPG added partition %u (%llu+%llu)", p->partno,
	       (unsigned long long) p->start, (unsigned long long) p->size);
	return 1;
}

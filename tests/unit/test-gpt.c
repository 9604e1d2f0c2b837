/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GPT layout computation (pure) and, on a sparse regular file (no root needed), the
 * libfdisk write read back through libblkid (bk-probe).
 */
#include <errno.h>

#include "bk-test.h"

#include "bk-gpt.h"
#include "bk-probe.h"

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

static int setup(void **state)
{
	return bk_test_dir_setup(state);
}

static int teardown(void **state)
{
	return bk_test_dir_teardown(state);
}

static void test_part_id_strings(void **state)
{
	assert_string_equal(bk_part_id_to_string(BK_PART_BOOT), "boot");
	assert_string_equal(bk_part_id_to_string(BK_PART_BANK_B), "bank-b");
	assert_int_equal(bk_part_id_from_string("bank-a"), BK_PART_BANK_A);
	assert_int_equal(bk_part_id_from_string("data"), BK_PART_DATA);
	assert_int_equal(bk_part_id_from_string("bank-c"), _BK_PART_INVALID);
	assert_int_equal(bk_part_id_from_string(NULL), _BK_PART_INVALID);
	assert_null(bk_part_id_to_string(_BK_PART_MAX));
	assert_string_equal(bk_part_id_to_name(BK_PART_BOOT), "bootbank_boot");
	assert_string_equal(bk_part_id_to_name(BK_PART_BANK_A), "bootbank_a");
	assert_string_equal(bk_part_id_to_name(BK_PART_DATA), "bootbank_data");
	assert_string_equal(bk_part_id_to_type(BK_PART_BANK_A), BK_GPT_TYPE_BANK_A);
	assert_string_equal(bk_part_id_to_type(BK_PART_BOOT), BK_GPT_TYPE_LINUX_FS);
	assert_string_not_equal(BK_GPT_TYPE_BANK_A, BK_GPT_TYPE_BANK_B);
	assert_int_equal(bk_part_id_from_bank(BK_BANK_A), BK_PART_BANK_A);
	assert_int_equal(bk_part_id_from_bank(BK_BANK_B), BK_PART_BANK_B);
	assert_int_equal(bk_part_id_from_bank(_BK_BANK_INVALID), _BK_PART_INVALID);
	assert_string_equal(bk_part_id_to_string(BK_PART_BIOS_BOOT), "bios-boot");
	assert_int_equal(bk_part_id_from_string("esp"), BK_PART_ESP);
	assert_string_equal(bk_part_id_to_name(BK_PART_BIOS_BOOT), "bootbank_bios");
	assert_string_equal(bk_part_id_to_name(BK_PART_ESP), "bootbank_esp");
	assert_string_equal(bk_part_id_to_type(BK_PART_BIOS_BOOT),
			    "21686148-6449-6e6f-744e-656564454649");
	assert_string_equal(bk_part_id_to_type(BK_PART_ESP),
			    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
}

/* --bios-boot and --esp-size: numbered after boot/A/B(/data), placed first on the disk. */
static void test_layout_bios_boot_and_esp(void **state)
{
	struct bk_gpt_request req = {
		.disk_size = GIB, .sector_size = 512, .bios_boot = true, .esp_size = 100 * MIB + 1
	};
	struct bk_gpt_layout l;
	struct bk_err err = { 0 };

	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), 0);
	assert_int_equal(l.n_parts, 5);
	/* Table order: boot 1, A 2, B 3, BIOS boot 4, ESP 5. */
	assert_int_equal(l.parts[0].id, BK_PART_BOOT);
	assert_int_equal(l.parts[0].partno, 1);
	assert_int_equal(l.parts[1].id, BK_PART_BANK_A);
	assert_int_equal(l.parts[1].partno, 2);
	assert_int_equal(l.parts[2].id, BK_PART_BANK_B);
	assert_int_equal(l.parts[2].partno, 3);
	assert_int_equal(l.parts[3].id, BK_PART_BIOS_BOOT);
	assert_int_equal(l.parts[3].partno, 4);
	assert_int_equal(l.parts[4].id, BK_PART_ESP);
	assert_int_equal(l.parts[4].partno, 5);
	/* Disk order: BIOS boot at 1 MiB (1 MiB), ESP (101 MiB, rounded up), boot, A, B. */
	assert_true(l.parts[3].start == MIB && l.parts[3].size == MIB);
	assert_true(l.parts[4].start == 2 * MIB && l.parts[4].size == 101 * MIB);
	assert_true(l.parts[0].start == 103 * MIB && l.parts[0].size == 64 * MIB);
	assert_true(l.parts[1].start == 167 * MIB);
	/* The banks split what is left: 1022 - 1 - 101 - 64 = 856. */
	assert_true(l.parts[1].size == 428 * MIB && l.parts[2].size == 428 * MIB);
	assert_true(l.parts[2].start == 595 * MIB);
	assert_true(l.parts[2].start + l.parts[2].size <= GIB - 33 * 512);

	/* With data: data 4, BIOS boot 5, ESP 6; data last on the disk. */
	req.data_size = 10 * MIB;
	req.bios_boot = false;
	req.esp_size = 8 * MIB;
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_int_equal(l.n_parts, 5);
	assert_int_equal(l.parts[3].id, BK_PART_DATA);
	assert_int_equal(l.parts[3].partno, 4);
	assert_int_equal(l.parts[4].id, BK_PART_ESP);
	assert_int_equal(l.parts[4].partno, 5);
	assert_true(l.parts[4].start == MIB);
	assert_true(l.parts[0].start == 9 * MIB);
	assert_true(l.parts[3].start == l.parts[2].start + l.parts[2].size);
	req.bios_boot = true;
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_int_equal(l.n_parts, 6);
	assert_int_equal(l.parts[4].id, BK_PART_BIOS_BOOT);
	assert_int_equal(l.parts[4].partno, 5);
	assert_int_equal(l.parts[5].partno, 6);
	assert_true(l.parts[4].start == MIB && l.parts[5].start == 2 * MIB);

	/* They count towards the minimum: 82 MiB fits the plain layout, not with them. */
	req = (struct bk_gpt_request){ .disk_size = 82 * MIB, .sector_size = 512 };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	req.bios_boot = true;
	bk_err_clear(&err);
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -ENOSPC);
	assert_string_equal(err.msg, "too small for the layout: needs at least 83 MiB, has 82 MiB");
	req.disk_size = 83 * MIB;
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	req.esp_size = 8 * MIB;
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), -ENOSPC);

	/* An ESP below the minimum is refused. */
	bk_err_clear(&err);
	req = (struct bk_gpt_request){ .disk_size = GIB, .sector_size = 512, .esp_size = MIB };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -EINVAL);
	assert_string_equal(
		err.msg, "EFI System Partition size 1048576 bytes is below the minimum of 8 MiB");
}

static void test_layout_default_splits_the_rest(void **state)
{
	struct bk_gpt_request req = { .disk_size = GIB, .sector_size = 512 };
	struct bk_gpt_layout l;
	struct bk_err err = { 0 };

	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), 0);
	assert_int_equal(l.n_parts, 3);
	/* 1 GiB: usable 1 MiB .. 1023 MiB (backup GPT at the end), boot 64 MiB, banks 479. */
	assert_int_equal(l.parts[0].id, BK_PART_BOOT);
	assert_int_equal(l.parts[0].partno, 1);
	assert_true(l.parts[0].start == MIB);
	assert_true(l.parts[0].size == 64 * MIB);
	assert_int_equal(l.parts[1].id, BK_PART_BANK_A);
	assert_int_equal(l.parts[1].partno, 2);
	assert_true(l.parts[1].start == 65 * MIB);
	assert_true(l.parts[1].size == 479 * MIB);
	assert_int_equal(l.parts[2].id, BK_PART_BANK_B);
	assert_int_equal(l.parts[2].partno, 3);
	assert_true(l.parts[2].start == 544 * MIB);
	assert_true(l.parts[2].size == 479 * MIB);
	assert_true(l.parts[2].start + l.parts[2].size <= GIB - 33 * 512);
}

static void test_layout_with_data_and_sizes(void **state)
{
	struct bk_gpt_request req = { .disk_size = GIB,
				      .sector_size = 512,
				      .boot_size = 10 * MIB + 1,
				      .data_size = 100 * MIB };
	struct bk_gpt_layout l;

	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_int_equal(l.n_parts, 4);
	assert_true(l.parts[0].size == 11 * MIB); /* rounded up to 1 MiB */
	assert_true(l.parts[1].size == (1022 - 11 - 100) / 2 * MIB);
	assert_true(l.parts[1].size == l.parts[2].size);
	assert_int_equal(l.parts[3].id, BK_PART_DATA);
	assert_int_equal(l.parts[3].partno, 4);
	assert_true(l.parts[3].size == 100 * MIB);
	assert_true(l.parts[3].start == l.parts[2].start + l.parts[2].size);

	/* An explicit bank size leaves the rest of the disk free. */
	req = (struct bk_gpt_request){ .disk_size = GIB,
				       .sector_size = 512,
				       .bank_size = 200 * MIB };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_int_equal(l.n_parts, 3);
	assert_true(l.parts[1].size == 200 * MIB && l.parts[2].size == 200 * MIB);
	assert_true(l.parts[2].start == (1 + 64 + 200) * MIB);

	/* 4 KiB sectors: entries take 4 sectors, the layout stays MiB aligned. */
	req = (struct bk_gpt_request){ .disk_size = GIB, .sector_size = 4096 };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_true(l.parts[0].start == MIB);
	assert_true(l.parts[1].size == 479 * MIB);
}

static void test_layout_too_small(void **state)
{
	struct bk_gpt_request req = { .disk_size = 32 * MIB, .sector_size = 512 };
	struct bk_gpt_layout l = { .n_parts = 42 };
	struct bk_err err = { 0 };

	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -ENOSPC);
	assert_string_equal(err.msg, "too small for the layout: needs at least 82 MiB, has 32 MiB");
	assert_int_equal(l.n_parts, 42); /* untouched */

	/* The minimum the message names is enough. */
	req.disk_size = 82 * MIB;
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_true(l.parts[1].size == 8 * MIB);
	req.disk_size = 81 * MIB;
	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), -ENOSPC);

	bk_err_clear(&err);
	req = (struct bk_gpt_request){ .disk_size = GIB,
				       .sector_size = 512,
				       .bank_size = 600 * MIB };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "needs at least 1266 MiB, has 1024 MiB"));

	bk_err_clear(&err);
	req = (struct bk_gpt_request){ .disk_size = GIB, .sector_size = 512, .bank_size = 2 * GIB };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -ENOSPC);
	assert_string_equal(err.msg,
			    "too small for the layout: needs at least 4162 MiB, has 1024 MiB");

	/* Sizes near 2^64 saturate instead of wrapping around into a fit. */
	bk_err_clear(&err);
	req = (struct bk_gpt_request){ .disk_size = GIB,
				       .sector_size = 512,
				       .bank_size = UINT64_MAX - 4096 };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "too small for the layout"));
}

static void test_layout_bad_requests(void **state)
{
	struct bk_gpt_request req = { .disk_size = GIB, .sector_size = 1024 };
	struct bk_gpt_layout l;
	struct bk_err err = { 0 };

	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -EINVAL);
	assert_string_equal(err.msg, "unsupported sector size 1024");

	bk_err_clear(&err);
	req = (struct bk_gpt_request){ .disk_size = GIB, .sector_size = 512, .boot_size = MIB };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "boot partition size 1048576 bytes is below the minimum of 8 MiB");

	bk_err_clear(&err);
	req = (struct bk_gpt_request){ .disk_size = GIB, .sector_size = 512, .data_size = 4096 };
	assert_int_equal(bk_gpt_layout_compute(&req, &l, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "data partition size 4096 bytes"));
}

static int make_image(struct bk_test_dir *d, const char *name, uint64_t size)
{
	int fd = openat(d->dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t) size), 0);
	return fd;
}

static void test_write_and_probe_image(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_gpt_request req = { .disk_size = 256 * MIB,
				      .sector_size = 512,
				      .data_size = 16 * MIB };
	struct bk_probe_content c = { 0 };
	struct bk_probe_table t = { 0 };
	struct bk_gpt_layout l;
	struct bk_err err = { 0 };
	int fd = make_image(d, "disk.img", req.disk_size);

	/* An empty image holds nothing. */
	assert_int_equal(bk_probe_content_fd(fd, &c, &err), 0);
	assert_true(bk_probe_content_is_empty(&c));
	assert_int_equal(bk_probe_table_fd(fd, &t, &err), -ENOMEDIUM);
	assert_string_equal(err.msg, "no partition table");

	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_gpt_write(fd, "disk.img", &l, &err), 0);
	assert_int_equal(strlen(l.disk_guid), 36);
	for (size_t i = 0; i < l.n_parts; i++)
		assert_int_equal(strlen(l.parts[i].uuid), 36);
	assert_string_not_equal(l.parts[1].uuid, l.parts[2].uuid);

	assert_int_equal(bk_probe_content_fd(fd, &c, NULL), 0);
	assert_false(bk_probe_content_is_empty(&c));
	assert_string_equal(c.pttype, "gpt");
	assert_null(c.fstype);
	bk_probe_content_release(&c);

	assert_int_equal(bk_probe_table_fd(fd, &t, NULL), 0);
	assert_string_equal(t.pttype, "gpt");
	assert_string_equal(t.ptuuid, l.disk_guid);
	assert_true(t.size == 256 * MIB);
	assert_int_equal(t.n_parts, 4);
	for (size_t i = 0; i < 4; i++) {
		const struct bk_probe_part *p = &t.parts[i];

		assert_int_equal(p->partno, i + 1);
		assert_string_equal(p->name, bk_part_id_to_name(l.parts[i].id));
		assert_string_equal(p->type, bk_part_id_to_type(l.parts[i].id));
		assert_string_equal(p->uuid, l.parts[i].uuid);
		assert_true(p->start == l.parts[i].start);
		assert_true(p->size == l.parts[i].size);
	}
	assert_ptr_equal(bk_probe_table_find_name(&t, "bootbank_b"), &t.parts[2]);
	assert_null(bk_probe_table_find_name(&t, "bootbank_c"));
	bk_probe_table_release(&t);

	/* BIOS boot and ESP: libfdisk writes them where asked, numbers 5 and 6 at the start. */
	{
		struct bk_gpt_layout l3;

		req.bios_boot = true;
		req.esp_size = 8 * MIB;
		assert_int_equal(bk_gpt_layout_compute(&req, &l3, NULL), 0);
		assert_int_equal(bk_gpt_write(fd, "disk.img", &l3, NULL), 0);
		assert_int_equal(bk_probe_table_fd(fd, &t, NULL), 0);
		assert_int_equal(t.n_parts, 6);
		for (size_t i = 0; i < 6; i++) {
			const struct bk_probe_part *p = &t.parts[i];

			assert_int_equal(p->partno, l3.parts[i].partno);
			assert_string_equal(p->name, bk_part_id_to_name(l3.parts[i].id));
			assert_string_equal(p->type, bk_part_id_to_type(l3.parts[i].id));
			assert_true(p->start == l3.parts[i].start);
			assert_true(p->size == l3.parts[i].size);
		}
		assert_string_equal(t.parts[4].type, BK_GPT_TYPE_BIOS_BOOT);
		assert_true(t.parts[4].start == MIB);
		assert_string_equal(t.parts[5].type, BK_GPT_TYPE_ESP);
		assert_true(t.parts[5].start == 2 * MIB);
		bk_probe_table_release(&t);
		req.bios_boot = false;
		req.esp_size = 0;
	}

	/* Writing again (init --force) replaces the table: new GUIDs, no data partition. */
	{
		struct bk_gpt_layout l2;
		char old_guid[37];

		memcpy(old_guid, l.disk_guid, sizeof(old_guid));
		req.data_size = 0;
		assert_int_equal(bk_gpt_layout_compute(&req, &l2, NULL), 0);
		assert_int_equal(bk_gpt_write(fd, "disk.img", &l2, NULL), 0);
		assert_string_not_equal(l2.disk_guid, old_guid);
		assert_int_equal(bk_probe_table_fd(fd, &t, NULL), 0);
		assert_int_equal(t.n_parts, 3);
		assert_string_equal(t.ptuuid, l2.disk_guid);
		bk_probe_table_release(&t);
	}
	close(fd);
}

static void test_write_refuses_a_changed_disk(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_gpt_request req = { .disk_size = 128 * MIB, .sector_size = 512 };
	struct bk_gpt_layout l;
	struct bk_err err = { 0 };
	struct bk_probe_table t = { 0 };
	int fd = make_image(d, "grown.img", 256 * MIB);

	assert_int_equal(bk_gpt_layout_compute(&req, &l, NULL), 0);
	assert_int_equal(bk_gpt_write(fd, "grown.img", &l, &err), -ESTALE);
	assert_string_equal(err.msg, "'grown.img' changed size since the layout was computed");
	assert_int_equal(bk_probe_table_fd(fd, &t, NULL), -ENOMEDIUM); /* nothing written */
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_part_id_strings),
		cmocka_unit_test(test_layout_default_splits_the_rest),
		cmocka_unit_test(test_layout_with_data_and_sizes),
		cmocka_unit_test(test_layout_too_small),
		cmocka_unit_test(test_layout_bad_requests),
		cmocka_unit_test(test_layout_bios_boot_and_esp),
		cmocka_unit_test_setup_teardown(test_write_and_probe_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_refuses_a_changed_disk, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

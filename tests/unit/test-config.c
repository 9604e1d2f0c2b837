/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "bk-test.h"

#include "bk-config.h"

static void test_config_defaults(void **state)
{
	struct bk_config c;

	assert_int_equal(bk_config_init(&c), 0);
	assert_string_equal(c.bootloader, "file");
	assert_string_equal(c.keyring, "/etc/bootbank/keyring.pem");
	assert_string_equal(c.depot, "/var/lib/bootbank/depot");
	assert_true(c.check_time);
	assert_int_equal(c.tries, 3);
	assert_null(c.compatible);
	bk_config_release(&c);
	assert_null(c.bootloader);
}

static void test_config_full_file(void **state)
{
	struct bk_config c;
	struct bk_err err = { 0 };
	const char *text = "# bootbank\n"
			   "[system]\n"
			   "compatible = acme-x86_64\n"
			   "bootloader = grub\n"
			   "\n"
			   "[keyring]\n"
			   "path = /etc/bootbank/ca.pem\n"
			   "check-time = no\n"
			   "[depot]\n"
			   "path = /srv/depot\n"
			   "[disk]\n"
			   "bank-a = /dev/sda2\n"
			   "bank-b = /dev/sda3\n"
			   "[boot]\n"
			   "tries = 5\n"
			   "[livepatch]\n"
			   "hook-timeout-sec = 10\n"
			   "freeze-batch = 1\n";

	assert_int_equal(bk_config_init(&c), 0);
	assert_int_equal(bk_config_load_string(&c, text, "t.conf", &err), 0);
	assert_string_equal(c.compatible, "acme-x86_64");
	assert_string_equal(c.bootloader, "grub");
	assert_string_equal(c.keyring, "/etc/bootbank/ca.pem");
	assert_false(c.check_time);
	assert_string_equal(c.depot, "/srv/depot");
	assert_string_equal(c.bank_a, "/dev/sda2");
	assert_string_equal(c.bank_b, "/dev/sda3");
	assert_int_equal(c.tries, 5);
	assert_int_equal(c.hook_timeout_sec, 10);
	assert_int_equal(c.freeze_batch, 1);
	bk_config_release(&c);
}

static void test_config_remediation_live_patch_mode(void **state)
{
	struct bk_config c;
	struct bk_err err = { 0 };

	assert_int_equal(bk_config_init(&c), 0);
	assert_string_equal(c.live_patch_mode, "auto");
	assert_int_equal(bk_config_load_string(&c, "[remediation]\nlive-patch-mode = enforce\n",
					       "t.conf", &err),
			 0);
	assert_string_equal(c.live_patch_mode, "enforce");
	assert_int_equal(bk_config_load_string(&c, "[remediation]\nlive-patch-mode = never\n",
					       "t.conf", &err),
			 -EINVAL);
	assert_string_equal(err.msg,
			    "'t.conf':2: remediation.live-patch-mode: unknown value 'never'");
	bk_config_release(&c);
	assert_null(c.live_patch_mode);
}

static void expect_error(const char *text, const char *msg)
{
	struct bk_config c;
	struct bk_err err = { 0 };

	assert_int_equal(bk_config_init(&c), 0);
	assert_int_equal(bk_config_load_string(&c, text, "/etc/bootbank/system.conf", &err),
			 -EINVAL);
	if (strcmp(err.msg, msg) != 0)
		fail_msg("expected \"%s\", got \"%s\"", msg, err.msg);
	assert_null(strchr(err.msg, '\n'));
	bk_config_release(&c);
}

static void test_config_errors_name_file_and_line(void **state)
{
	expect_error("[system]\ncompatible = a\ncolour = blue\n",
		     "'/etc/bootbank/system.conf':3: unknown key 'colour' in section [system]");
	expect_error("[sytem]\ncompatible = a\n",
		     "'/etc/bootbank/system.conf':2: unknown section [sytem]");
	expect_error("compatible = a\n", "'/etc/bootbank/system.conf':1: unknown section []");
	expect_error(
		"[boot]\ntries = 0\n",
		"'/etc/bootbank/system.conf':2: boot.tries must be a number from 1 to 100, not '0'");
	expect_error(
		"[boot]\ntries = 3x\n",
		"'/etc/bootbank/system.conf':2: boot.tries must be a number from 1 to 100, not '3x'");
	expect_error("[system]\nbootloader = lilo\n",
		     "'/etc/bootbank/system.conf':2: system.bootloader: unknown value 'lilo'");
	expect_error(
		"[depot]\npath = relative/dir\n",
		"'/etc/bootbank/system.conf':2: depot.path must be an absolute path, not 'relative/dir'");
	expect_error(
		"[keyring]\ncheck-time = sometimes\n",
		"'/etc/bootbank/system.conf':2: keyring.check-time must be yes or no, not 'sometimes'");
	expect_error(
		"[system]\nno equals sign here\n",
		"'/etc/bootbank/system.conf':2: syntax error (expected [section] or key = value)");
	expect_error(
		"[livepatch]\nfreeze-batch = -1\n",
		"'/etc/bootbank/system.conf':2: livepatch.freeze-batch must be a number from 0 "
		"to 100000, not '-1'");
	/* The first problem wins. */
	expect_error("[system]\nx = 1\ny = 2\n",
		     "'/etc/bootbank/system.conf':2: unknown key 'x' in section [system]");
}

static void test_config_load_at(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_config c;
	struct bk_err err = { 0 };
	int fd;

	assert_int_equal(bk_config_init(&c), 0);
	assert_int_equal(bk_config_load_at(&c, d->dfd, "system.conf", "x/system.conf", &err),
			 -ENOENT);
	assert_false(bk_err_is_set(&err));

	bk_test_write(d->dfd, "system.conf", "[system]\ncompatible = z\n");
	assert_int_equal(bk_config_load_at(&c, d->dfd, "system.conf", "x/system.conf", &err), 0);
	assert_string_equal(c.compatible, "z");

	fd = openat(d->dfd, "nul.conf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_int_equal(write(fd, "[system]\0x", 10), 10);
	close(fd);
	assert_int_equal(bk_config_load_at(&c, d->dfd, "nul.conf", "nul.conf", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NUL"));
	bk_config_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_full_file),
		cmocka_unit_test(test_config_errors_name_file_and_line),
		cmocka_unit_test(test_config_remediation_live_patch_mode),
		cmocka_unit_test_setup_teardown(test_config_load_at, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

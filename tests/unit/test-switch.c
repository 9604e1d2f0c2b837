/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parts of bk-switch that need no root: revision ids and the current/previous pointers. */
#include <errno.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-switch.h"

static int setup(void **state)
{
	wrap_reset();
	return bk_test_dir_setup(state);
}

static int teardown(void **state)
{
	wrap_reset();
	return bk_test_dir_teardown(state);
}

static void test_rev_id_is_valid(void **state)
{
	assert_true(bk_rev_id_is_valid("acme-os-1.10.0"));
	assert_true(bk_rev_id_is_valid("r1+build.7_x"));
	assert_false(bk_rev_id_is_valid(NULL));
	assert_false(bk_rev_id_is_valid(""));
	assert_false(bk_rev_id_is_valid(".r1"));
	assert_false(bk_rev_id_is_valid("-r1"));
	assert_false(bk_rev_id_is_valid("r/1"));
	assert_false(bk_rev_id_is_valid("r 1"));
	assert_false(bk_rev_id_is_valid(
		"r12345678901234567890123456789012345678901234567890123456789012345"));
}

static void test_pointer_set_get_replace_remove(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char *id = NULL, target[64];
	ssize_t n;

	assert_int_equal(bk_rev_pointer_get(d->dfd, BK_REV_CURRENT, &id, &err), -ENOENT);
	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, "r1", &err), 0);
	n = readlinkat(d->dfd, BK_REV_CURRENT, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "rev/r1");
	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, "r2", &err), 0);
	assert_int_equal(bk_rev_pointer_get(d->dfd, BK_REV_CURRENT, &id, &err), 0);
	assert_string_equal(id, "r2");
	free(id);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);

	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, "bad/id", &err), -EINVAL);
	assert_string_equal(err.msg, "invalid revision id 'bad/id'");
	bk_err_clear(&err);

	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, NULL, &err), 0);
	assert_int_equal(bk_rev_pointer_get(d->dfd, BK_REV_CURRENT, &id, &err), -ENOENT);
	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, NULL, &err), 0);
}

static void test_pointer_foreign_target(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char *id = NULL;

	assert_int_equal(symlinkat("/etc", d->dfd, BK_REV_CURRENT), 0);
	assert_int_equal(bk_rev_pointer_get(d->dfd, BK_REV_CURRENT, &id, &err), -EBADMSG);
	assert_string_equal(err.msg, "pointer 'current' does not point into 'rev/'");
	bk_err_clear(&err);
	assert_int_equal(unlinkat(d->dfd, BK_REV_CURRENT, 0), 0);
	assert_int_equal(symlinkat("rev/../x", d->dfd, BK_REV_CURRENT), 0);
	assert_int_equal(bk_rev_pointer_get(d->dfd, BK_REV_CURRENT, &id, &err), -EBADMSG);
	assert_null(id);
}

static void test_pointer_failed_rename_keeps_old(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char *id = NULL;

	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, "r1", &err), 0);
	wrap_renameat_armed = 1;
	will_return(__wrap_renameat, EIO);
	assert_int_equal(bk_rev_pointer_set(d->dfd, BK_REV_CURRENT, "r2", &err), -EIO);
	assert_string_equal(err.msg, "cannot replace pointer 'current': Input/output error");
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
	assert_int_equal(bk_rev_pointer_get(d->dfd, BK_REV_CURRENT, &id, NULL), 0);
	assert_string_equal(id, "r1");
	free(id);
}

static void test_pointer_cleanup(void **state)
{
	struct bk_test_dir *d = *state;

	/* What a kill between symlinkat() and renameat() leaves, and what it must not touch. */
	assert_int_equal(symlinkat("rev/r2", d->dfd, ".#current.0123abcd"), 0);
	assert_int_equal(symlinkat("rev/r1", d->dfd, ".#previous.0123abcd"), 0);
	assert_int_equal(symlinkat("rev/r1", d->dfd, BK_REV_CURRENT), 0);
	bk_test_write(d->dfd, ".#current.regular", "not ours to remove here");
	assert_int_equal(bk_rev_pointer_cleanup(d->dfd), 2);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 1);
	assert_int_equal(faccessat(d->dfd, BK_REV_CURRENT, F_OK, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(bk_rev_pointer_cleanup(d->dfd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rev_id_is_valid),
		cmocka_unit_test_setup_teardown(test_pointer_set_get_replace_remove, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pointer_foreign_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pointer_failed_rename_keeps_old, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pointer_cleanup, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

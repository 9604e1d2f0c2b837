/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The depot: file names, listing order (versions numerically), remove, unreadable files. */
#include <errno.h>

#include "bk-test.h"

#include "bk-cleanup.h"
#include "bk-depot.h"

static void test_depot_file_name(void **state)
{
	_cleanup_free_ char *a = NULL, *b = NULL;
	char *c = NULL;

	assert_int_equal(bk_depot_file_name("acme-os", "1.10.0", &a), 0);
	assert_string_equal(a, "acme-os_1.10.0.bbi");
	/* '_' in a name is fine: versions never contain one, the last '_' splits. */
	assert_int_equal(bk_depot_file_name("acme_os", "2.0-rc.1", &b), 0);
	assert_string_equal(b, "acme_os_2.0-rc.1.bbi");
	assert_int_equal(bk_depot_file_name("acme", "1_0", &c), -EINVAL);
	assert_int_equal(bk_depot_file_name("a/b", "1.0", &c), -EINVAL);
	assert_int_equal(bk_depot_file_name("..", "1.0", &c), -EINVAL);
	assert_int_equal(bk_depot_file_name("acme", "../1", &c), -EINVAL);
	assert_int_equal(bk_depot_file_name(NULL, "1", &c), -EINVAL);
	assert_null(c);
}

static void test_depot_list_and_remove(void **state)
{
	struct bk_test_dir *dir = *state;
	struct bk_depot_entry *v = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;

	/* Not bundles: listed with their error, after the readable ones; other names ignored. */
	bk_test_write(dir->dfd, "junk_1.0.bbi", "not a bundle");
	bk_test_write(dir->dfd, "notes.txt", "ignored");
	bk_test_write(dir->dfd, ".#acme_1.0.bbi.1234", "a temp file: ignored");
	assert_int_equal(mkdirat(dir->dfd, "dir.bbi", 0755), 0);
	assert_int_equal(bk_depot_list(dir->dfd, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].file, "junk_1.0.bbi");
	assert_null(v[0].manifest);
	assert_non_null(strstr(v[0].error, "header: truncated"));
	bk_depot_entries_free(v, n);

	assert_int_equal(bk_depot_remove(dir->dfd, "junk", "1.0", &err), 0);
	assert_int_equal(bk_test_count_prefix(dir->dfd, "junk"), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_depot_remove(dir->dfd, "junk", "1.0", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no image 'junk' version '1.0' in the depot"));
	bk_err_clear(&err);
	assert_int_equal(bk_depot_remove(dir->dfd, "dir", "bbi", &err), -EINVAL);
	bk_err_clear(&err);
	/* A directory with the right name is not an image. */
	assert_int_equal(mkdirat(dir->dfd, "x_1.bbi", 0755), 0);
	assert_int_equal(bk_depot_remove(dir->dfd, "x", "1", &err), -ENOENT);

	assert_int_equal(bk_depot_list(dir->dfd, &v, &n, &err), 0);
	assert_int_equal(n, 0);
	bk_depot_entries_free(v, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_depot_file_name),
		cmocka_unit_test_setup_teardown(test_depot_list_and_remove, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

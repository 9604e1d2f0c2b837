/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "bk-test.h"

#include "bk-fs.h"
#include "bk-workload.h"

static struct bk_workload make(const char *name, const char *cgroup, const char *unit,
			       const char *view, bool no_fsr)
{
	struct bk_workload w = {
		.name = strdup(name),
		.cgroup = cgroup ? strdup(cgroup) : NULL,
		.unit = unit ? strdup(unit) : NULL,
		.view = strdup(view),
		.no_fsr = no_fsr,
		.added = 1700000000,
	};

	return w;
}

static void test_workload_names_and_views(void **state)
{
	struct bk_err err = { 0 };
	char *norm = NULL;

	assert_true(bk_workload_name_is_valid("acme"));
	assert_true(bk_workload_name_is_valid("vm-01@host.x_y"));
	assert_false(bk_workload_name_is_valid(""));
	assert_false(bk_workload_name_is_valid(".hidden"));
	assert_false(bk_workload_name_is_valid("-x"));
	assert_false(bk_workload_name_is_valid("a/b"));
	assert_false(bk_workload_name_is_valid("a b"));
	assert_false(bk_workload_name_is_valid(
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));

	assert_int_equal(bk_view_path_normalize("/opt//acme/", &norm, &err), 0);
	assert_string_equal(norm, "/opt/acme");
	free(norm);
	assert_int_equal(bk_view_path_normalize("opt/acme", NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "invalid view 'opt/acme': not an absolute path");
	bk_err_clear(&err);
	assert_int_equal(bk_view_path_normalize("/opt/../etc", NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "invalid view '/opt/../etc': bad component '..'");
	bk_err_clear(&err);
	assert_int_equal(bk_view_path_normalize("//", NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "invalid view '//': cannot be the root directory");
}

static void test_workload_save_load_list_remove(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_workload a = make("zeta", "bk/zeta", NULL, "/opt/acme", false);
	struct bk_workload b = make("alpha", NULL, "acme.service", "/srv/view", true);
	struct bk_workload got = { 0 }, *all = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;

	assert_int_equal(bk_workload_save(d->dfd, &a, true, &err), 0);
	assert_int_equal(bk_workload_save(d->dfd, &b, true, &err), 0);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);

	assert_int_equal(bk_workload_load(d->dfd, "alpha", &got, &err), 0);
	assert_string_equal(got.unit, "acme.service");
	assert_null(got.cgroup);
	assert_string_equal(got.view, "/srv/view");
	assert_true(got.no_fsr);
	assert_int_equal(got.added, 1700000000);
	bk_workload_release(&got);

	/* Sorted by name, temp files ignored. */
	bk_test_write(d->dfd, ".#zeta.json.1234", "{");
	assert_int_equal(bk_workload_list(d->dfd, &all, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].name, "alpha");
	assert_string_equal(all[1].name, "zeta");
	assert_string_equal(all[1].cgroup, "bk/zeta");
	assert_false(all[1].no_fsr);
	bk_workloads_free(all, n);

	/* Adding again is refused, and leaves the first untouched. */
	free(a.view);
	a.view = strdup("/other");
	assert_int_equal(bk_workload_save(d->dfd, &a, true, &err), -EEXIST);
	assert_string_equal(err.msg, "workload 'zeta' already exists");
	assert_int_equal(bk_workload_load(d->dfd, "zeta", &got, &err), 0);
	assert_string_equal(got.view, "/opt/acme");
	bk_workload_release(&got);

	assert_int_equal(bk_workload_remove(d->dfd, "zeta", &err), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_workload_remove(d->dfd, "zeta", &err), -ENOENT);
	assert_string_equal(err.msg, "no workload 'zeta'");
	bk_err_clear(&err);
	assert_int_equal(bk_workload_load(d->dfd, "zeta", &got, &err), -ENOENT);
	assert_string_equal(err.msg, "no workload 'zeta'");
	bk_workload_release(&a);
	bk_workload_release(&b);
}

static void test_workload_validate(void **state)
{
	struct bk_workload both = make("x", "a/b", "x.service", "/v", false);
	struct bk_workload none = make("x", NULL, NULL, "/v", false);
	struct bk_workload badcg = make("x", "a/../b", NULL, "/v", false);
	struct bk_workload badname = make("a b", "a", NULL, "/v", false);
	struct bk_err err = { 0 };

	assert_int_equal(bk_workload_validate(&both, &err), -EINVAL);
	assert_string_equal(err.msg, "workload 'x' needs exactly one of cgroup and unit");
	bk_err_clear(&err);
	assert_int_equal(bk_workload_validate(&none, &err), -EINVAL);
	bk_err_clear(&err);
	assert_int_equal(bk_workload_validate(&badcg, &err), -EINVAL);
	assert_string_equal(err.msg, "workload 'x': invalid cgroup path 'a/../b'");
	bk_err_clear(&err);
	assert_int_equal(bk_workload_validate(&badname, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid workload name 'a b'"));
	bk_workload_release(&both);
	bk_workload_release(&none);
	bk_workload_release(&badcg);
	bk_workload_release(&badname);
}

static void test_workload_malformed_file(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_workload got = { 0 }, *all = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;

	bk_test_write(d->dfd, "bad.json", "{\"name\": \"bad\", \"cgroup\": \"a\"}");
	assert_int_equal(bk_workload_load(d->dfd, "bad", &got, &err), -ENOEXEC);
	assert_string_equal(err.msg, "'bad.json': missing field 'view'");
	bk_err_clear(&err);
	bk_test_write(d->dfd, "other.json",
		      "{\"name\": \"someone\", \"cgroup\": \"a\", \"view\": \"/v\"}");
	assert_int_equal(bk_workload_load(d->dfd, "other", &got, &err), -ENOEXEC);
	assert_string_equal(err.msg, "'other.json': it names workload 'someone'");
	bk_err_clear(&err);
	assert_int_equal(bk_workload_list(d->dfd, &all, &n, &err), -ENOEXEC);
	assert_null(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_workload_names_and_views),
		cmocka_unit_test_setup_teardown(test_workload_save_load_list_remove,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test(test_workload_validate),
		cmocka_unit_test_setup_teardown(test_workload_malformed_file, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-fs.h"
#include "bk-json.h"

static int setup(void **state)
{
	wrap_reset();
	return bk_test_dir_setup(state);
}

static void test_json_parse_strict(void **state)
{
	struct json_object *o = NULL;
	struct bk_err err = { 0 };
	char deep[200];
	const char *s;

	s = "{\"a\": 1}  \n";
	assert_int_equal(bk_json_parse(s, strlen(s), &o, &err), 0);
	json_object_put(o);

	s = "{\"a\": 1} x";
	assert_int_equal(bk_json_parse(s, strlen(s), &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "offset"));
	bk_err_clear(&err);

	s = "{\"a\": 1";
	assert_int_equal(bk_json_parse(s, strlen(s), &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid JSON"));
	bk_err_clear(&err);

	s = "{\"a\": 1,}"; /* strict mode refuses trailing commas */
	assert_int_equal(bk_json_parse(s, strlen(s), &o, &err), -EINVAL);
	bk_err_clear(&err);

	assert_int_equal(bk_json_parse("{\"a\":\0}", 7, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NUL"));
	bk_err_clear(&err);

	memset(deep, '[', sizeof(deep));
	assert_int_equal(bk_json_parse(deep, sizeof(deep), &o, &err), -EINVAL);
	bk_err_clear(&err);

	assert_int_equal(bk_json_parse("", 0, &o, &err), -EINVAL);
}

static void test_json_typed_getters(void **state)
{
	struct json_object *o = NULL, *arr = NULL;
	struct bk_err err = { 0 };
	const char *str = "unset";
	uint64_t u = 7;
	bool b = false;
	const char *s = "{\"name\": \"os\", \"size\": 18446744073709551615, \"neg\": -1, "
			"\"live\": true, \"list\": [1], \"num\": \"12\"}";

	assert_int_equal(bk_json_parse(s, strlen(s), &o, &err), 0);
	assert_int_equal(bk_json_get_string(o, "name", true, &str, &err), 0);
	assert_string_equal(str, "os");
	assert_int_equal(bk_json_get_u64(o, "size", true, UINT64_MAX, &u, &err), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(bk_json_get_bool(o, "live", true, &b, &err), 0);
	assert_true(b);
	assert_int_equal(bk_json_get_array(o, "list", true, &arr, &err), 0);
	assert_int_equal(json_object_array_length(arr), 1);

	assert_int_equal(bk_json_get_string(o, "missing", false, &str, &err), 1);
	assert_string_equal(str, "os");
	assert_false(bk_err_is_set(&err));

	assert_int_equal(bk_json_get_string(o, "missing", true, &str, &err), -EINVAL);
	assert_string_equal(err.msg, "missing field 'missing'");
	bk_err_clear(&err);
	assert_int_equal(bk_json_get_u64(o, "num", true, 100, &u, &err), -EINVAL);
	assert_string_equal(err.msg, "field 'num' must be an integer");
	bk_err_clear(&err);
	assert_int_equal(bk_json_get_u64(o, "neg", true, 100, &u, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "negative"));
	bk_err_clear(&err);
	assert_int_equal(bk_json_get_u64(o, "size", true, 100, &u, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "out of range"));
	bk_err_clear(&err);
	assert_int_equal(bk_json_get_bool(o, "name", true, &b, &err), -EINVAL);
	bk_err_clear(&err);
	assert_int_equal(bk_json_get_object(o, "list", true, &arr, &err), -EINVAL);
	bk_err_clear(&err);

	{
		char *copy = NULL;

		assert_int_equal(bk_json_dup_string(o, "name", true, &copy, &err), 0);
		assert_string_equal(copy, "os");
		free(copy);
		copy = NULL;
		assert_int_equal(bk_json_dup_string(o, "missing", false, &copy, &err), 1);
		assert_null(copy);
		assert_int_equal(bk_json_dup_string(o, "num", true, &copy, &err), 0);
		free(copy);
		copy = NULL;
		assert_int_equal(bk_json_dup_string(o, "live", true, &copy, &err), -EINVAL);
		assert_null(copy);
	}
	json_object_put(o);
}

static void test_json_nul_in_string(void **state)
{
	struct json_object *o = NULL;
	struct bk_err err = { 0 };
	const char *str = NULL;
	const char *s = "{\"name\": \"a\\u0000b\"}";

	assert_int_equal(bk_json_parse(s, strlen(s), &o, &err), 0);
	assert_int_equal(bk_json_get_string(o, "name", true, &str, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NUL"));
	json_object_put(o);
}

static void test_json_write_read_atomic(void **state)
{
	struct bk_test_dir *d = *state;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *back = NULL;
	struct bk_err err = { 0 };
	const char *str = NULL;
	uint64_t u = 0;
	char buf[256];

	assert_int_equal(bk_json_add_string(o, "state", "good"), 0);
	assert_int_equal(bk_json_add_u64(o, "generation", 1ull << 40), 0);
	assert_int_equal(bk_json_add_bool(o, "live", false), 0);
	assert_int_equal(bk_json_add_string(o, "bad_reason", NULL), 0);
	assert_int_equal(bk_json_write_atomic_at(d->dfd, "record.json", o, 0644, 0, &err), 0);
	assert_int_equal(
		bk_json_write_atomic_at(d->dfd, "record.json", o, 0644, BK_WRITE_NOREPLACE, &err),
		-EEXIST);
	bk_err_clear(&err);
	assert_true(bk_test_read(d->dfd, "record.json", buf, sizeof(buf)) > 0);
	assert_int_equal(buf[strlen(buf) - 1], '\n');

	assert_int_equal(bk_json_read_at(d->dfd, "record.json", 4096, &back, &err), 0);
	assert_int_equal(bk_json_get_string(back, "state", true, &str, &err), 0);
	assert_string_equal(str, "good");
	assert_true(json_object_object_get_ex(back, "bad_reason", NULL));
	assert_int_equal(bk_json_get_string(back, "bad_reason", false, &str, &err), 1);
	assert_int_equal(bk_json_get_u64(back, "generation", true, UINT64_MAX, &u, &err), 0);
	assert_true(u == 1ull << 40);
	json_object_put(back);

	/* A failing fsync leaves the old document. */
	assert_int_equal(bk_json_add_string(o, "state", "bad"), 0);
	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	assert_int_equal(bk_json_write_atomic_at(d->dfd, "record.json", o, 0644, 0, &err), -EIO);
	assert_int_equal(bk_json_read_at(d->dfd, "record.json", 4096, &back, &err), 0);
	assert_int_equal(bk_json_get_string(back, "state", true, &str, &err), 0);
	assert_string_equal(str, "good");
	json_object_put(back);
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);

	bk_err_clear(&err);
	bk_test_write(d->dfd, "broken.json", "{\"a\":");
	assert_int_equal(bk_json_read_at(d->dfd, "broken.json", 4096, &back, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'broken.json'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_parse_strict),
		cmocka_unit_test(test_json_typed_getters),
		cmocka_unit_test(test_json_nul_in_string),
		cmocka_unit_test_setup_teardown(test_json_write_read_atomic, setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

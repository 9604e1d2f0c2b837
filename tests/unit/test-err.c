/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "bk-test.h"

#include "bk-err.h"

static void test_err_set_keeps_first_cause(void **state)
{
	struct bk_err err = { 0 };

	assert_false(bk_err_is_set(&err));
	assert_int_equal(bk_err_set(&err, -ENOENT, "cannot open '%s': %m", "x"), -ENOENT);
	assert_string_equal(err.msg, "cannot open 'x': No such file or directory");
	assert_int_equal(errno, ENOENT);
	assert_int_equal(bk_err_set(&err, -EIO, "outer"), -EIO);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg, "cannot open 'x': No such file or directory");
	assert_true(bk_err_is_set(&err));
	bk_err_clear(&err);
	assert_false(bk_err_is_set(&err));
	assert_string_equal(err.msg, "");
}

static void test_err_set_null_and_positive(void **state)
{
	struct bk_err err = { 0 };

	assert_int_equal(bk_err_set(NULL, -EIO, "nothing"), -EIO);
	assert_int_equal(errno, EIO);
	/* A positive code is a caller bug: never report success. */
	assert_int_equal(bk_err_set(&err, 5, "bad"), -EINVAL);
}

static void test_err_prefix_adds_context(void **state)
{
	struct bk_err err = { 0 };
	char longprefix[600];

	assert_int_equal(bk_err_prefix(&err, "nothing to prefix"), -EINVAL);
	bk_err_set(&err, -EIO, "cannot read");
	assert_int_equal(bk_err_prefix(&err, "bank %s", "A"), -EIO);
	assert_string_equal(err.msg, "bank A: cannot read");

	memset(longprefix, 'p', sizeof(longprefix) - 1);
	longprefix[sizeof(longprefix) - 1] = '\0';
	bk_err_prefix(&err, "%s", longprefix);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	assert_int_equal(err.msg[0], 'p');
}

static void test_err_suffix_adds_what_followed(void **state)
{
	struct bk_err err = { 0 };
	char longtext[600];

	assert_int_equal(bk_err_suffix(&err, "; nothing to add to"), -EINVAL);
	bk_err_set(&err, -EIO, "stage failed");
	assert_int_equal(bk_err_suffix(&err, "; %s", "undone"), -EIO);
	assert_string_equal(err.msg, "stage failed; undone");

	memset(longtext, 's', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	bk_err_suffix(&err, "%s", longtext);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	assert_int_equal(strncmp(err.msg, "stage failed; undone", 20), 0);
}

static void test_err_recode(void **state)
{
	struct bk_err err = { 0 };

	bk_err_set(&err, -EINVAL, "field 'x' must be a string");
	assert_int_equal(bk_err_recode(&err, -ENOEXEC), -ENOEXEC);
	assert_int_equal(err.code, -ENOEXEC);
	assert_string_equal(err.msg, "field 'x' must be a string");
}

static void test_exit_codes_table(void **state)
{
	static const struct {
		int r, code;
	} table[] = {
		{ 0, BK_EXIT_OK },
		{ -EBUSY, BK_EXIT_BUSY },
		{ -EWOULDBLOCK, BK_EXIT_BUSY },
		{ -ENOENT, BK_EXIT_NOT_FOUND },
		{ -EBADMSG, BK_EXIT_VERIFY },
		{ -EKEYREJECTED, BK_EXIT_VERIFY },
		{ -EKEYEXPIRED, BK_EXIT_VERIFY },
		{ -ENOEXEC, BK_EXIT_MALFORMED },
		{ -EUCLEAN, BK_EXIT_CORRUPT },
		{ -EIO, BK_EXIT_IO },
		{ -EMEDIUMTYPE, BK_EXIT_REFUSED },
		{ -EKEYREVOKED, BK_EXIT_REFUSED },
		{ -ENOSPC, BK_EXIT_NOSPACE },
		{ -EPERM, BK_EXIT_FAILURE },
	};

	for (size_t i = 0; i < BK_ELEMENTSOF(table); i++)
		assert_int_equal(bk_exit_code_from_errno(table[i].r), table[i].code);
	for (int c = 0; c < _BK_EXIT_MAX; c++)
		assert_non_null(bk_exit_code_to_string(c));
	assert_null(bk_exit_code_to_string(_BK_EXIT_MAX));
	assert_null(bk_exit_code_to_string(-1));
	assert_string_equal(bk_exit_code_to_string(BK_EXIT_BUSY), "busy");
}

/* Every exit code but 0 has its own D-Bus error name, well-formed and distinct (issue 10). */
static void test_exit_codes_dbus_errors(void **state)
{
	static const struct {
		int code;
		const char *name;
	} table[] = {
		{ BK_EXIT_FAILURE, "org.bootbank.Error.Failed" },
		{ BK_EXIT_USAGE, "org.bootbank.Error.Usage" },
		{ BK_EXIT_BUSY, "org.bootbank.Error.Busy" },
		{ BK_EXIT_NOT_FOUND, "org.bootbank.Error.NotFound" },
		{ BK_EXIT_VERIFY, "org.bootbank.Error.Verification" },
		{ BK_EXIT_MALFORMED, "org.bootbank.Error.Malformed" },
		{ BK_EXIT_CORRUPT, "org.bootbank.Error.Corrupt" },
		{ BK_EXIT_IO, "org.bootbank.Error.IO" },
		{ BK_EXIT_REFUSED, "org.bootbank.Error.Refused" },
		{ BK_EXIT_NOSPACE, "org.bootbank.Error.NoSpace" },
	};

	assert_int_equal(BK_ELEMENTSOF(table), _BK_EXIT_MAX - 1);
	for (size_t i = 0; i < BK_ELEMENTSOF(table); i++)
		assert_string_equal(bk_exit_code_to_dbus_error(table[i].code), table[i].name);
	for (int a = 1; a < _BK_EXIT_MAX; a++)
		for (int b = a + 1; b < _BK_EXIT_MAX; b++)
			assert_string_not_equal(bk_exit_code_to_dbus_error(a),
						bk_exit_code_to_dbus_error(b));
	assert_int_equal(bk_exit_code_from_errno(-EBUSY), BK_EXIT_BUSY);
	assert_string_equal(bk_exit_code_to_dbus_error(bk_exit_code_from_errno(-EUCLEAN)),
			    "org.bootbank.Error.Corrupt");
	assert_null(bk_exit_code_to_dbus_error(BK_EXIT_OK));
	assert_null(bk_exit_code_to_dbus_error(_BK_EXIT_MAX));
	assert_null(bk_exit_code_to_dbus_error(-1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err_set_keeps_first_cause),
		cmocka_unit_test(test_err_set_null_and_positive),
		cmocka_unit_test(test_err_prefix_adds_context),
		cmocka_unit_test(test_err_suffix_adds_what_followed),
		cmocka_unit_test(test_err_recode),
		cmocka_unit_test(test_exit_codes_table),
		cmocka_unit_test(test_exit_codes_dbus_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

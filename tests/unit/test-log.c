/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <syslog.h>

#include "bk-test.h"

#include "bk-log.h"

static int traced;

/* Count formatting: the argument is only evaluated when the mask is on. */
static int side_effect(void)
{
	return ++traced;
}

static void reset_mask(const char *env)
{
	if (env)
		setenv("LIBBOOTBANK_DEBUG", env, 1);
	else
		unsetenv("LIBBOOTBANK_DEBUG");
	bk_debug_mask = 0;
	bk_debug_init();
}

static void test_debug_mask_parsing(void **state)
{
	reset_mask(NULL);
	assert_int_equal(bk_debug_mask, BK_DEBUG_INIT);
	reset_mask("fs,lock");
	assert_true(bk_debug_mask & BK_DEBUG_FS);
	assert_true(bk_debug_mask & BK_DEBUG_LOCK);
	assert_false(bk_debug_mask & BK_DEBUG_CONFIG);
	reset_mask("all");
	assert_true(bk_debug_mask & BK_DEBUG_REV);
	reset_mask("bogus,,config");
	assert_true(bk_debug_mask & BK_DEBUG_CONFIG);
	assert_false(bk_debug_mask & BK_DEBUG_FS);
}

static void test_debug_off_costs_no_formatting(void **state)
{
	traced = 0;
	reset_mask("lock");
	BK_DBG(FS, "value %d", side_effect());
	assert_int_equal(traced, 0);
	BK_DBG(LOCK, "value %d", side_effect());
	assert_int_equal(traced, 1);
	reset_mask(NULL);
}

static void test_log_levels(void **state)
{
	assert_int_equal(bk_log_level_from_string("err"), LOG_ERR);
	assert_int_equal(bk_log_level_from_string("error"), LOG_ERR);
	assert_int_equal(bk_log_level_from_string("debug"), LOG_DEBUG);
	assert_int_equal(bk_log_level_from_string("6"), LOG_INFO);
	assert_int_equal(bk_log_level_from_string("loud"), -EINVAL);
	assert_int_equal(bk_log_level_from_string(NULL), -EINVAL);

	traced = 0;
	bk_log_max_level = LOG_ERR;
	bk_log(LOG_INFO, "dropped %d", side_effect());
	assert_int_equal(traced, 0);
	assert_int_equal(bk_log_errno(LOG_INFO, -EIO, "x"), -EIO);
	assert_int_equal(bk_log_errno(LOG_INFO, EIO, "x"), -EIO);
	bk_log_max_level = LOG_INFO;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_debug_mask_parsing),
		cmocka_unit_test(test_debug_off_costs_no_formatting),
		cmocka_unit_test(test_log_levels),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-maint.h"

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

static void test_maint_set_get_clear(void **state)
{
	struct bk_test_dir *d = *state;
	char reason[] = "live patch from 'r1' to 'r2'", op[] = "livepatch", from[] = "r1",
	     to[] = "r2", boot[] = "0f4d3e2a-0000-4000-8000-000000000000";
	struct bk_maint m = { .operation = op,
			      .reason = reason,
			      .from = from,
			      .to = to,
			      .phase = BK_MAINT_PHASE_SWITCHING,
			      .started = 1700000000,
			      .pid = 42,
			      .boot_id = boot };
	struct bk_maint got = { 0 };
	struct bk_err err = { 0 };

	assert_false(bk_maint_is_set(d->dfd));
	assert_int_equal(bk_maint_get(d->dfd, &got, &err), 0);
	assert_int_equal(bk_maint_check(d->dfd, "stage", &err), 0);

	assert_int_equal(bk_maint_set(d->dfd, &m, &err), 0);
	assert_true(bk_maint_is_set(d->dfd));
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
	assert_int_equal(bk_maint_get(d->dfd, &got, &err), 1);
	assert_string_equal(got.operation, "livepatch");
	assert_string_equal(got.from, "r1");
	assert_string_equal(got.to, "r2");
	assert_string_equal(got.boot_id, boot);
	assert_int_equal(got.phase, BK_MAINT_PHASE_SWITCHING);
	assert_int_equal(got.started, 1700000000);
	assert_int_equal(got.pid, 42);
	bk_maint_release(&got);

	/* The verbs it blocks get one line with the time and the reason, and -EBUSY. */
	assert_int_equal(bk_maint_check(d->dfd, "stage", &err), -EBUSY);
	assert_string_equal(err.msg, "busy: stage refused, partial maintenance mode since "
				     "2023-11-14T22:13:20Z (live patch from 'r1' to 'r2')");
	assert_int_equal(bk_exit_code_from_errno(err.code), BK_EXIT_BUSY);

	/* Moving to the next phase is one more atomic replace. */
	m.phase = BK_MAINT_PHASE_COMMITTED;
	assert_int_equal(bk_maint_set(d->dfd, &m, &err), 0);
	assert_int_equal(bk_maint_get(d->dfd, &got, &err), 1);
	assert_int_equal(got.phase, BK_MAINT_PHASE_COMMITTED);
	bk_maint_release(&got);

	assert_int_equal(bk_maint_clear(d->dfd, &err), 0);
	assert_false(bk_maint_is_set(d->dfd));
	assert_int_equal(bk_maint_clear(d->dfd, &err), 0);
}

static void test_maint_failed_write_keeps_old_flag(void **state)
{
	struct bk_test_dir *d = *state;
	char op[] = "livepatch", to[] = "r2";
	struct bk_maint m = { .operation = op, .to = to, .phase = BK_MAINT_PHASE_SWITCHING };
	struct bk_maint got = { 0 };
	struct bk_err err = { 0 };

	assert_int_equal(bk_maint_set(d->dfd, &m, &err), 0);
	m.phase = BK_MAINT_PHASE_COMMITTED;
	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	assert_int_equal(bk_maint_set(d->dfd, &m, &err), -EIO);
	assert_non_null(strstr(err.msg, "maintenance.json"));
	assert_int_equal(bk_test_count_prefix(d->dfd, ".#"), 0);
	assert_int_equal(bk_maint_get(d->dfd, &got, NULL), 1);
	assert_int_equal(got.phase, BK_MAINT_PHASE_SWITCHING);
	bk_maint_release(&got);
}

static void test_maint_malformed_counts_as_set(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_maint got = { 0 };
	struct bk_err err = { 0 };

	bk_test_write(d->dfd, BK_MAINT_FILE,
		      "{\"operation\": \"livepatch\", \"to\": \"r2\", "
		      "\"phase\": \"dancing\"}");
	assert_true(bk_maint_is_set(d->dfd));
	assert_int_equal(bk_maint_get(d->dfd, &got, &err), -ENOEXEC);
	assert_string_equal(err.msg, "'maintenance.json': unknown phase 'dancing'");
	bk_err_clear(&err);
	assert_int_equal(bk_maint_check(d->dfd, "activate", &err), -EBUSY);
	assert_string_equal(err.msg, "busy: activate refused, partial maintenance mode is set "
				     "('maintenance.json' exists)");
}

static void test_maint_bank_fields(void **state)
{
	struct bk_test_dir *d = *state;
	char op[] = "livepatch", to[] = "r2", bank[] = "B";
	struct bk_maint m = { .operation = op,
			      .to = to,
			      .phase = BK_MAINT_PHASE_STAGING,
			      .bank = bank,
			      .bank_generation = 7,
			      .bank_generation_before = 3 };
	struct bk_maint got = { 0 };
	struct bk_err err = { 0 };

	assert_int_equal(bk_maint_set(d->dfd, &m, &err), 0);
	assert_int_equal(bk_maint_get(d->dfd, &got, &err), 1);
	assert_int_equal(got.phase, BK_MAINT_PHASE_STAGING);
	assert_string_equal(got.bank, "B");
	assert_int_equal(got.bank_generation, 7);
	assert_int_equal(got.bank_generation_before, 3);
	bk_maint_release(&got);
	assert_null(got.bank);

	/* Without a bank, none is read back. */
	m.bank = NULL;
	assert_int_equal(bk_maint_set(d->dfd, &m, &err), 0);
	assert_int_equal(bk_maint_get(d->dfd, &got, &err), 1);
	assert_null(got.bank);
	assert_int_equal(got.bank_generation, 0);
	bk_maint_release(&got);
}

static void test_maint_phase_names(void **state)
{
	assert_string_equal(bk_maint_phase_to_string(BK_MAINT_PHASE_STAGING), "staging");
	assert_string_equal(bk_maint_phase_to_string(BK_MAINT_PHASE_PREPARING), "preparing");
	assert_int_equal(bk_maint_phase_from_string("committed"), BK_MAINT_PHASE_COMMITTED);
	assert_int_equal(bk_maint_phase_from_string("x"), _BK_MAINT_PHASE_INVALID);
	assert_null(bk_maint_phase_to_string(_BK_MAINT_PHASE_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_maint_set_get_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maint_failed_write_keeps_old_flag, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_maint_malformed_counts_as_set, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_maint_bank_fields, setup, teardown),
		cmocka_unit_test(test_maint_phase_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

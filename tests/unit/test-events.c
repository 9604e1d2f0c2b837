/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-events.h"

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

static struct bk_event ev(uint64_t t, const char *step, const char *result, const char *msg)
{
	static char task[] = "0123456789abcdef", op[] = "livepatch";
	static char steps[8][64], results[8][16], msgs[8][256];
	static int k;

	k = (k + 1) % 8;
	snprintf(steps[k], sizeof(steps[k]), "%s", step);
	snprintf(results[k], sizeof(results[k]), "%s", result);
	snprintf(msgs[k], sizeof(msgs[k]), "%s", msg);
	return (struct bk_event){ .time_ms = t,
				  .task = task,
				  .operation = op,
				  .step = steps[k],
				  .result = results[k],
				  .duration_us = 1500,
				  .message = msgs[k] };
}

static void append_ok(int dfd, struct bk_event e, uint64_t max)
{
	struct bk_err err = { 0 };

	assert_int_equal(bk_events_append(dfd, &e, max, &err), 0);
}

static void test_events_append_read(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	size_t n = 0, skipped = 9;
	char buf[4096];

	/* No log yet: no events, not an error. */
	assert_int_equal(bk_events_read(d->dfd, 0, &evs, &n, &skipped, &err), 0);
	assert_int_equal(n, 0);
	assert_null(evs);

	append_ok(d->dfd, ev(1700000000123, "stage", "ok", "acme 1.1 into bank B"), 0);
	append_ok(d->dfd, ev(1700000001000, "switch-over", "failed", "line 1\nline 2 \"q\""), 0);
	/* One JSON object per line, newline-terminated. */
	assert_true(bk_test_read(d->dfd, BK_EVENTS_FILE, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"step\":\"stage\""));
	assert_int_equal(buf[strlen(buf) - 1], '\n');
	{
		int lines = 0;

		for (const char *c = buf; *c; c++)
			lines += *c == '\n';
		assert_int_equal(lines, 2);
	}

	assert_int_equal(bk_events_read(d->dfd, 0, &evs, &n, &skipped, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(skipped, 0);
	assert_int_equal(evs[0].time_ms, 1700000000123);
	assert_string_equal(evs[0].step, "stage");
	assert_string_equal(evs[0].operation, "livepatch");
	assert_string_equal(evs[0].task, "0123456789abcdef");
	assert_int_equal(evs[0].duration_us, 1500);
	assert_string_equal(evs[1].message, "line 1\nline 2 \"q\"");
	assert_string_equal(evs[1].result, "failed");
	evs = bk_events_free(evs, n);

	/* The last one only. */
	assert_int_equal(bk_events_read(d->dfd, 1, &evs, &n, NULL, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(evs[0].step, "switch-over");
	bk_events_free(evs, n);
}

static void test_events_torn_line(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_event *evs = NULL, last = { 0 };
	struct bk_err err = { 0 };
	size_t n = 0, skipped = 0;
	char buf[4096];

	append_ok(d->dfd, ev(1, "a", "ok", "first"), 0);
	/* A crash in the middle of the next write left half a line. */
	assert_true(bk_test_read(d->dfd, BK_EVENTS_FILE, buf, sizeof(buf)) > 0);
	strcat(buf, "{\"time\":2,\"task\":\"x\",\"step\":\"b\",\"res");
	bk_test_write(d->dfd, BK_EVENTS_FILE, buf);

	assert_int_equal(bk_events_read(d->dfd, 0, &evs, &n, &skipped, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(skipped, 1);
	assert_string_equal(evs[0].step, "a");
	evs = bk_events_free(evs, n);

	/* The next event gets a line of its own; the torn one stays skipped. */
	append_ok(d->dfd, ev(3, "c", "failed", "third"), 0);
	assert_int_equal(bk_events_read(d->dfd, 0, &evs, &n, &skipped, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(skipped, 1);
	assert_string_equal(evs[1].step, "c");
	assert_string_equal(evs[1].message, "third");
	bk_events_free(evs, n);
	assert_int_equal(bk_events_last_failure(d->dfd, &last, &err), 1);
	assert_string_equal(last.step, "c");
	bk_event_release(&last);
}

static void test_events_rotation(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_event *evs = NULL, last = { 0 };
	struct bk_err err = { 0 };
	struct stat st;
	size_t n = 0;
	char step[32];

	/* A bound of 600 bytes: about 4 events of ~150 bytes per file. */
	append_ok(d->dfd, ev(1, "early", "failed", "an old failure"), 600);
	for (int i = 0; i < 40; i++) {
		snprintf(step, sizeof(step), "s%02d", i);
		append_ok(d->dfd, ev((uint64_t) 10 + (uint64_t) i, step, "ok", "fine"), 600);
		assert_int_equal(fstatat(d->dfd, BK_EVENTS_FILE, &st, 0), 0);
		assert_true(st.st_size < 600 + 300);
	}
	assert_int_equal(fstatat(d->dfd, BK_EVENTS_OLD_FILE, &st, 0), 0);
	assert_true(st.st_size >= 600);
	assert_int_equal(bk_test_count_prefix(d->dfd, "events"), 2);

	/* Both files are read, oldest first; the oldest events are gone. */
	assert_int_equal(bk_events_read(d->dfd, 0, &evs, &n, NULL, &err), 0);
	assert_true(n >= 4 && n < 20);
	assert_string_equal(evs[n - 1].step, "s39");
	for (size_t i = 1; i < n; i++)
		assert_true(evs[i - 1].time_ms < evs[i].time_ms);
	bk_events_free(evs, n);
	/* The early failure rotated out. */
	assert_int_equal(bk_events_last_failure(d->dfd, &last, &err), 0);

	/* A failure in the older file is still found. */
	append_ok(d->dfd, ev(100, "late", "failed", "a newer failure"), 600);
	for (int i = 0; i < 5; i++)
		append_ok(d->dfd, ev((uint64_t) 200 + (uint64_t) i, "after", "ok", "fine"), 600);
	assert_int_equal(bk_events_last_failure(d->dfd, &last, &err), 1);
	assert_string_equal(last.step, "late");
	assert_string_equal(last.message, "a newer failure");
	bk_event_release(&last);
}

static void test_events_message_cut(void **state)
{
	struct bk_test_dir *d = *state;
	char big[BK_EVENTS_MESSAGE_MAX * 2];
	struct bk_event *evs = NULL, e;
	struct bk_err err = { 0 };
	size_t n = 0;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	e = ev(5, "hook", "ok", "");
	e.message = big;
	append_ok(d->dfd, e, 0);
	assert_int_equal(bk_events_read(d->dfd, 0, &evs, &n, NULL, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(strlen(evs[0].message), BK_EVENTS_MESSAGE_MAX);
	bk_events_free(evs, n);
}

static void test_events_fsync_failure(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_event e = ev(7, "stage", "ok", "x");
	struct bk_err err = { 0 };

	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	assert_int_equal(bk_events_append(d->dfd, &e, 0, &err), -EIO);
	assert_string_equal(err.msg, "cannot sync 'events.jsonl': Input/output error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_events_append_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_torn_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_message_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_fsync_failure, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

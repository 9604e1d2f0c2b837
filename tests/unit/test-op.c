/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The operations layer (bankd/bk-op*.h) in a sandbox root with the file backend: the context,
 * the lock and its recovery, events and observer calls, results and their JSON, and that an
 * operation never writes to stdout or stderr.
 */
#include "bk-test-boot.h"

#include "bk-events.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-lock.h"
#include "bk-log.h"
#include "bk-op-boot.h"
#include "bk-op-recover.h"
#include "bk-op-status.h"
#include "bk-op.h"

struct seen {
	int n_messages;
	char last_message[512];
	int last_level;
};

static void on_message(void *userdata, int level, const char *text)
{
	struct seen *s = userdata;

	s->n_messages++;
	s->last_level = level;
	snprintf(s->last_message, sizeof(s->last_message), "%s", text);
}

struct fixture {
	struct bk_test_dir dir;
	struct bk_op_ctx ctx;
	struct seen seen;
	int saved_out, saved_err; /* stdout and stderr while an operation runs */
	char out_path[96];
};

static void write_file(struct fixture *f, const char *rel, const char *text)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s/%s')\" && printf '%%s' '%s' > '%s/%s'",
		 f->dir.path, rel, text, f->dir.path, rel);
	assert_int_equal(system(cmd), 0);
}

/* A configured sandbox: the file backend, its state seeded with state_text. */
static void open_sandbox(struct fixture *f, const char *state_text)
{
	struct bk_err err = { 0 };
	struct bk_boot *b = NULL;

	write_file(f, "etc/bootbank/system.conf",
		   "[system]\nbootloader = file\ncompatible = test\n");
	assert_int_equal(bk_op_ctx_open(&f->ctx, f->dir.path, NULL, &err), 0);
	assert_true(f->ctx.configured);
	f->ctx.obs.message = on_message;
	f->ctx.obs.userdata = &f->seen;
	if (state_text) {
		struct bk_boot_env env = { f->ctx.root_fd, f->ctx.root, &f->ctx.config };

		assert_int_equal(bk_boot_open("file", &env, &b, &err), 0);
		bk_test_boot_save(b, state_text);
		bk_boot_free(b);
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	bk_test_dir_open(&f->dir);
	f->ctx.root_fd = -EBADF;
	f->ctx.lock_fd = -EBADF;
	f->saved_out = f->saved_err = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	bk_op_ctx_release(&f->ctx);
	bk_test_dir_close(&f->dir);
	free(f);
	return 0;
}

/* Send stdout and stderr to a file while an operation runs. */
static void capture_begin(struct fixture *f)
{
	int fd;

	snprintf(f->out_path, sizeof(f->out_path), "%s.out", f->dir.path);
	fflush(stdout);
	fflush(stderr);
	fd = open(f->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	f->saved_out = dup(STDOUT_FILENO);
	f->saved_err = dup(STDERR_FILENO);
	assert_true(dup2(fd, STDOUT_FILENO) >= 0 && dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
}

/* Restore them; the operation must have written nothing there. */
static void capture_end_assert_silent(struct fixture *f)
{
	struct stat st;

	fflush(stdout);
	fflush(stderr);
	assert_true(dup2(f->saved_out, STDOUT_FILENO) >= 0);
	assert_true(dup2(f->saved_err, STDERR_FILENO) >= 0);
	close(f->saved_out);
	close(f->saved_err);
	assert_int_equal(stat(f->out_path, &st), 0);
	unlink(f->out_path);
	assert_int_equal(st.st_size, 0);
}

/* The newest event: its operation and result must be these. */
static void assert_last_event(struct fixture *f, const char *operation, const char *result)
{
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;

	assert_int_equal(bk_op_events(&f->ctx, 1, &evs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(evs[0].operation, operation);
	assert_string_equal(evs[0].result, result);
	bk_events_free(evs, n);
}

static void test_op_ctx_unconfigured(void **state)
{
	struct fixture *f = *state;
	struct bk_op_status st;
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	struct json_object *o;
	size_t n = 1;

	assert_int_equal(bk_op_ctx_open(&f->ctx, f->dir.path, NULL, &err), 0);
	assert_false(f->ctx.configured);
	assert_true(f->ctx.root_fd >= 0);
	/* Reads on an unconfigured root create nothing. */
	assert_int_equal(bk_op_events(&f->ctx, 0, &evs, &n, &err), 0);
	assert_int_equal(n, 0);
	bk_op_status_load(&f->ctx, &st);
	o = bk_op_status_to_json(&f->ctx, &st);
	assert_non_null(o);
	assert_false(json_object_get_boolean(json_object_object_get(o, "configured")));
	json_object_put(o);
	bk_op_status_release(&st);
	assert_int_equal(faccessat(f->dir.dfd, "var", F_OK, 0), -1);
	assert_int_equal(faccessat(f->dir.dfd, "run", F_OK, 0), -1);
}

static void test_op_ctx_bad_root(void **state)
{
	struct fixture *f = *state;
	struct bk_err err = { 0 };
	char path[128];

	snprintf(path, sizeof(path), "%s/missing", f->dir.path);
	assert_int_equal(bk_op_ctx_open(&f->ctx, path, NULL, &err), -ENOENT);
	assert_true(f->ctx.root_fd < 0);
	assert_non_null(strstr(err.msg, "cannot open root"));
}

static void test_op_activate_events_and_result(void **state)
{
	struct fixture *f = *state;
	struct bk_op_boot_result res;
	struct bk_err err = { 0 };
	struct json_object *o;
	int r;

	open_sandbox(f, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");

	/* Nothing staged: refused, and the refusal is an event (the lock was ours). */
	capture_begin(f);
	r = bk_op_activate(&f->ctx, _BK_BANK_INVALID, 0, &res, &err);
	capture_end_assert_silent(f);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(err.msg, "no staged bank to activate"));
	assert_last_event(f, "activate", "failed");

	bk_op_ctx_release(&f->ctx);
	open_sandbox(f, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	err = (struct bk_err){ 0 };
	capture_begin(f);
	r = bk_op_activate(&f->ctx, _BK_BANK_INVALID, 2, &res, &err);
	capture_end_assert_silent(f);
	assert_int_equal(r, 0);
	assert_int_equal(res.bank, BK_BANK_B);
	assert_int_equal(res.d.state.bank[BK_BANK_B].tries_left, 2);
	assert_int_equal(res.d.state.bank[BK_BANK_B].generation, 2);
	assert_last_event(f, "activate", "ok");

	o = bk_op_boot_result_to_json(&res);
	assert_non_null(o);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "verb")), "activate");
	assert_string_equal(json_object_get_string(json_object_object_get(o, "bank")), "B");
	assert_non_null(json_object_object_get(o, "boot"));
	json_object_put(o);
}

static void test_op_busy_without_event(void **state)
{
	struct fixture *f = *state;
	struct bk_op_boot_result res;
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	int dfd = -1, lock_fd = -1;
	size_t n = 1;

	open_sandbox(f, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	assert_int_equal(bk_mkdir_p_at(f->dir.dfd, BK_OP_RUN_DIR, 0755, &dfd, &err), 0);
	/* A second open file description: another process's lock, as flock sees it. */
	assert_int_equal(bk_lock_acquire(dfd, "run", false, &lock_fd, &err), 0);

	capture_begin(f);
	assert_int_equal(bk_op_roll(&f->ctx, true, &res, &err), -EBUSY);
	capture_end_assert_silent(f);
	assert_non_null(strstr(err.msg, "busy"));
	assert_true(f->ctx.lock_fd < 0);
	/* No lock, no event. */
	assert_int_equal(bk_op_events(&f->ctx, 0, &evs, &n, &err), 0);
	assert_int_equal(n, 0);
	bk_lock_release(lock_fd);
	close(dfd);
}

static void test_op_recovery_reports_through_observer(void **state)
{
	struct fixture *f = *state;
	const struct bk_op_recovery *rec = NULL;
	struct bk_op_boot_result res;
	struct bk_err err = { 0 };

	open_sandbox(f, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");
	write_file(f, "var/lib/bootbank/.#boot.json.abc123", "x");

	capture_begin(f);
	assert_int_equal(bk_op_roll(&f->ctx, true, &res, &err), 0);
	capture_end_assert_silent(f);
	assert_int_equal(f->seen.n_messages, 1);
	assert_int_equal(f->seen.last_level, LOG_NOTICE);
	assert_string_equal(f->seen.last_message, "recovered: removed 1 stale temporary file");
	assert_int_equal(faccessat(f->dir.dfd, "var/lib/bootbank/.#boot.json.abc123", F_OK, 0), -1);

	/* The recover operation itself reports nothing through messages: it returns it. */
	write_file(f, "var/lib/bootbank/.#x.def456", "x");
	bk_op_ctx_release(&f->ctx);
	open_sandbox(f, NULL);
	f->seen = (struct seen){ 0 };
	assert_int_equal(bk_op_recover(&f->ctx, &rec, &err), 0);
	assert_int_equal(f->seen.n_messages, 0);
	assert_true(bk_op_recovery_did_something(rec));
	assert_int_equal(rec->stale, 1);
	assert_false(rec->interrupted);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_op_ctx_unconfigured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_op_ctx_bad_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_op_activate_events_and_result, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_op_busy_without_event, setup, teardown),
		cmocka_unit_test_setup_teardown(test_op_recovery_reports_through_observer, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

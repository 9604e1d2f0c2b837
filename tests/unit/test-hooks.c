/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <sys/stat.h>

#include "bk-test.h"

#include "bk-hooks.h"

static const struct bk_hook_env env = {
	.old_rev = "r1",
	.new_rev = "r2",
	.old_version = "1.0",
	.new_version = "2.0",
};

static void hook(struct bk_test_dir *d, const char *name, const char *body)
{
	char text[4096];

	snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);
	bk_test_write(d->dfd, name, text);
	assert_int_equal(fchmodat(d->dfd, name, 0755, 0), 0);
}

static void test_hooks_none(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };
	char missing[128];

	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &env, 1000, &run, &err), 0);
	assert_int_equal(run->n_results, 0);
	run = bk_hook_run_free(run);

	snprintf(missing, sizeof(missing), "%s/nope", d->path);
	assert_int_equal(bk_hooks_run(missing, BK_HOOK_APPLY, &env, 1000, &run, &err), 0);
	assert_int_equal(run->n_results, 0);
	bk_hook_run_free(run);
}

static void test_hooks_order_argv_env_and_output(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };
	char expect[512];

	hook(d, "20-second", "echo \"second $1\"");
	hook(d, "10-first",
	     "echo \"$0|$1|$2|$3|$BOOTBANK_PHASE|$BOOTBANK_HOOK|$BOOTBANK_OLD_REV|"
	     "$BOOTBANK_NEW_REV|$BOOTBANK_OLD_VERSION|$BOOTBANK_NEW_VERSION|$HOME\"; "
	     "echo oops >&2");
	/* Not hooks: no NN- prefix, not executable, a backup file. */
	hook(d, "README", "exit 99");
	bk_test_write(d->dfd, "30-not-executable", "#!/bin/sh\nexit 99\n");
	hook(d, "40-backup~", "exit 99");

	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_APPLY, &env, 30000, &run, &err), 0);
	assert_int_equal(run->n_results, 2);
	assert_string_equal(run->results[0].name, "10-first");
	snprintf(expect, sizeof(expect), "%s/10-first|apply|r1|r2|apply|10-first|r1|r2|1.0|2.0|\n",
		 d->path);
	assert_string_equal(run->results[0].out, expect);
	assert_string_equal(run->results[0].errout, "oops\n");
	assert_int_equal(run->results[0].status, 0);
	assert_string_equal(run->results[1].name, "20-second");
	assert_string_equal(run->results[1].out, "second apply\n");
	assert_null(run->veto_hook);
	bk_hook_run_free(run);
}

/* BOOTBANK_DRY_RUN=1 only for a pre-check's dry run (docs/remediation.md). */
static void test_hooks_dry_run_env(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_env dry = env;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };

	hook(d, "10-dry", "echo \"dry=${BOOTBANK_DRY_RUN-unset}\"");
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &env, 30000, &run, &err), 0);
	assert_string_equal(run->results[0].out, "dry=unset\n");
	run = bk_hook_run_free(run);
	dry.dry_run = true;
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &dry, 30000, &run, &err), 0);
	assert_string_equal(run->results[0].out, "dry=1\n");
	bk_hook_run_free(run);
}

static void test_hooks_scan_veto(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };

	hook(d, "10-ok", "echo fine");
	hook(d, "20-veto",
	     "echo 'found: 2 sessions'; echo noise >&2; "
	     "printf 'sessions are open\\n\\n' >&2; exit 10");
	hook(d, "30-never", "touch ran; exit 0");

	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &env, 30000, &run, &err), -ECANCELED);
	assert_string_equal(err.msg,
			    "scan hook '20-veto' vetoed the live patch: sessions are open");
	assert_int_equal(run->n_results, 2);
	assert_string_equal(run->veto_hook, "20-veto");
	assert_string_equal(run->veto_reason, "sessions are open");
	assert_string_equal(run->results[1].out, "found: 2 sessions\n");
	assert_int_equal(run->results[1].status, 10);
	assert_int_equal(faccessat(d->dfd, "ran", F_OK, 0), -1);
	bk_hook_run_free(run);
}

static void test_hooks_failure_and_apply_goes_on(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };

	hook(d, "10-fail", "echo broken >&2; exit 3");
	hook(d, "20-after", "echo after");

	/* scan: a failing hook (exit 1-9) stops the live patch too. */
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &env, 30000, &run, &err), -EPROTO);
	assert_string_equal(err.msg, "scan hook '10-fail' failed with exit status 3");
	assert_int_equal(run->n_results, 1);
	run = bk_hook_run_free(run);

	/* apply: reported, but every hook runs. */
	bk_err_clear(&err);
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_APPLY, &env, 30000, &run, &err), -EPROTO);
	assert_string_equal(err.msg, "apply hook '10-fail' failed with exit status 3");
	assert_int_equal(run->n_results, 2);
	assert_string_equal(run->results[1].out, "after\n");
	bk_hook_run_free(run);
}

static void test_hooks_timeout_kills(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };

	/* The background child keeps the pipes open: the timeout must still end it all. */
	hook(d, "10-slow", "sleep 30 & echo started; sleep 30");
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_REVERT, &env, 300, &run, &err), -EPROTO);
	assert_string_equal(err.msg, "revert hook '10-slow' timed out after 300 ms");
	assert_true(run->results[0].timed_out);
	assert_true(run->results[0].duration_ms < 5000);
	assert_string_equal(run->results[0].out, "started\n");
	bk_hook_run_free(run);
}

static void test_hooks_output_is_bounded(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };

	hook(d, "10-chatty", "head -c 200000 /dev/zero | tr '\\0' x");
	/* Faster than we read: the hook's end of the pipe must block, not fail with EAGAIN. */
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_APPLY, &env, 30000, &run, &err), 0);
	assert_int_equal(run->results[0].status, 0);
	assert_int_equal(strlen(run->results[0].out), BK_HOOK_OUTPUT_MAX);
	assert_true(run->results[0].out_truncated);
	bk_hook_run_free(run);
}

static void test_hooks_group_writable_refused(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };
	char expect[256];

	hook(d, "10-ok", "touch ran");
	hook(d, "20-open", "exit 0");
	assert_int_equal(fchmodat(d->dfd, "20-open", 0775, 0), 0);
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &env, 5000, &run, &err), -EPERM);
	snprintf(expect, sizeof(expect),
		 "hook '%s/20-open' is writable by group or others, refusing to run hooks",
		 d->path);
	assert_string_equal(err.msg, expect);
	assert_null(run);
	assert_int_equal(faccessat(d->dfd, "ran", F_OK, 0), -1);
}

static void test_hooks_last_line(void **state)
{
	char *s;

	s = bk_hook_last_line("a\nb\n\n  \n");
	assert_string_equal(s, "b");
	free(s);
	s = bk_hook_last_line("");
	assert_string_equal(s, "");
	free(s);
	s = bk_hook_last_line("only");
	assert_string_equal(s, "only");
	free(s);
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void test_hooks_parse_restarts(void **state)
{
	char **v = NULL;
	size_t n = 99;

	/* Claims among findings; blanks, CR; duplicates dropped; bad names and lookalikes not. */
	assert_int_equal(bk_hook_parse_restarts("found: acme busy\n"
						"restart vm1\n"
						"restart\t  vm2@x.y-z \r\n"
						"restart vm1\n"
						" restart vm3\n"
						"restarted vm4\n"
						"restart the world\n"
						"restart ../etc\n"
						"restart\n"
						"Restart vm5\n"
						"restart vm6",
						&v, &n),
			 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0], "vm1");
	assert_string_equal(v[1], "vm2@x.y-z");
	assert_string_equal(v[2], "vm6");
	free_strv(v, n);

	v = (char **) 1;
	assert_int_equal(bk_hook_parse_restarts("nothing to restart\n", &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	assert_int_equal(bk_hook_parse_restarts("", &v, &n), 0);
	assert_int_equal(n, 0);
}

static void test_hooks_parse_restarts_bounded(void **state)
{
	size_t len = (BK_HOOK_RESTARTS_MAX + 1) * 16, pos = 0;
	char *out = malloc(len), **v = NULL;
	size_t n = 0;

	assert_non_null(out);
	for (int i = 0; i < BK_HOOK_RESTARTS_MAX; i++)
		pos += (size_t) snprintf(out + pos, len - pos, "restart w%d\n", i);
	assert_int_equal(bk_hook_parse_restarts(out, &v, &n), 0);
	assert_int_equal(n, BK_HOOK_RESTARTS_MAX);
	free_strv(v, n);
	(void) snprintf(out + pos, len - pos, "restart one-more\n");
	assert_int_equal(bk_hook_parse_restarts(out, &v, &n), -E2BIG);
	free(out);
}

static void test_hooks_scan_claims_and_env(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_hook_run *run = NULL;
	struct bk_err err = { 0 };
	struct bk_hook_env e = env;

	e.nofsr_workloads = "vm1 vm2";
	e.restart_workloads = "vm9";
	hook(d, "10-claim",
	     "echo \"nofsr=$BOOTBANK_NOFSR_WORKLOADS restart=$BOOTBANK_RESTART_WORKLOADS\"; "
	     "for w in $BOOTBANK_NOFSR_WORKLOADS; do [ $w = vm1 ] && echo \"restart $w\"; done; "
	     "exit 0");
	hook(d, "20-count", "ls >/dev/null");
	assert_int_equal(bk_hooks_count(d->path, &err), 2);

	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_SCAN, &e, 30000, &run, &err), 0);
	assert_string_equal(run->results[0].out, "nofsr=vm1 vm2 restart=vm9\nrestart vm1\n");
	assert_int_equal(run->results[0].n_restarts, 1);
	assert_string_equal(run->results[0].restarts[0], "vm1");
	assert_true(bk_hook_run_restarts(run, "vm1"));
	assert_false(bk_hook_run_restarts(run, "vm2"));
	run = bk_hook_run_free(run);

	/* Only scan hooks claim: apply output is just output. */
	assert_int_equal(bk_hooks_run(d->path, BK_HOOK_APPLY, &e, 30000, &run, &err), 0);
	assert_int_equal(run->results[0].n_restarts, 0);
	assert_false(bk_hook_run_restarts(run, "vm1"));
	bk_hook_run_free(run);
}

static void test_hooks_count(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_err err = { 0 };
	char missing[128];

	snprintf(missing, sizeof(missing), "%s/nope", d->path);
	assert_int_equal(bk_hooks_count(missing, &err), 0);
	hook(d, "README", "exit 0");
	assert_int_equal(bk_hooks_count(d->path, &err), 0);
	hook(d, "10-x", "exit 0");
	assert_int_equal(bk_hooks_count(d->path, &err), 1);
	assert_int_equal(fchmodat(d->dfd, "10-x", 0777, 0), 0);
	assert_int_equal(bk_hooks_count(d->path, &err), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hooks_parse_restarts),
		cmocka_unit_test(test_hooks_parse_restarts_bounded),
		cmocka_unit_test_setup_teardown(test_hooks_scan_claims_and_env, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_count, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_none, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_order_argv_env_and_output,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_scan_veto, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_failure_and_apply_goes_on,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_timeout_kills, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_output_is_bounded, bk_test_dir_setup,
						bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_hooks_group_writable_refused,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test(test_hooks_last_line),
		cmocka_unit_test_setup_teardown(test_hooks_dry_run_env, bk_test_dir_setup,
						bk_test_dir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

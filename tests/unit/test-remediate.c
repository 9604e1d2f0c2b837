/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Remediation operations (bankd/bk-op-remediate.h) in a sandbox root with the file backend and
 * no disk: the live-patch modes, the desired state (read, refused without a depot image,
 * corrupt, cleared), the compliance states that need no disk (unknown, each with its reason),
 * the JSON of a scan, events_in_task, and that none of it prints.
 */
#include "bk-test-boot.h"

#include "bk-events.h"
#include "bk-json.h"
#include "bk-op-boot.h"
#include "bk-op-remediate.h"
#include "bk-op.h"

struct fixture {
	struct bk_test_dir dir;
	struct bk_op_ctx ctx;
};

static void write_file(struct fixture *f, const char *rel, const char *text)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s/%s')\" && printf '%%s' '%s' > '%s/%s'",
		 f->dir.path, rel, text, f->dir.path, rel);
	assert_int_equal(system(cmd), 0);
}

static void open_sandbox(struct fixture *f, const char *conf_extra, const char *state_text)
{
	char conf[256];
	struct bk_err err = { 0 };
	struct bk_boot *b = NULL;

	snprintf(conf, sizeof(conf), "[system]\nbootloader = file\ncompatible = test\n%s",
		 conf_extra ? conf_extra : "");
	write_file(f, "etc/bootbank/system.conf", conf);
	assert_int_equal(bk_op_ctx_open(&f->ctx, f->dir.path, NULL, &err), 0);
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

static size_t n_events(struct fixture *f)
{
	struct bk_event *evs = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;

	assert_int_equal(bk_op_events(&f->ctx, 0, &evs, &n, &err), 0);
	bk_events_free(evs, n);
	return n;
}

static void test_remediate_modes_and_states_to_string(void **state)
{
	assert_string_equal(bk_lp_mode_to_string(BK_LP_MODE_ENFORCE), "enforce");
	assert_int_equal(bk_lp_mode_from_string("disable"), BK_LP_MODE_DISABLE);
	assert_int_equal(bk_lp_mode_from_string("auto"), BK_LP_MODE_AUTO);
	assert_int_equal(bk_lp_mode_from_string("never"), _BK_LP_MODE_INVALID);
	assert_int_equal(bk_lp_mode_from_string(NULL), _BK_LP_MODE_INVALID);
	assert_null(bk_lp_mode_to_string(_BK_LP_MODE_MAX));
	assert_string_equal(bk_compliance_to_string(BK_COMPLIANT_PENDING_REBOOT),
			    "compliant-pending-reboot");
	assert_int_equal(bk_compliance_exit_code(BK_COMPLIANT), 0);
	assert_int_equal(bk_compliance_exit_code(BK_NON_COMPLIANT), 20);
	assert_int_equal(bk_compliance_exit_code(BK_COMPLIANT_PENDING_REBOOT), 21);
	assert_int_equal(bk_compliance_exit_code(BK_INCOMPATIBLE), 22);
	assert_int_equal(bk_compliance_exit_code(BK_UNKNOWN), 23);
}

static void test_remediate_desired_state(void **state)
{
	struct fixture *f = *state;
	struct bk_op_desired d;
	struct bk_err err = { 0 };

	open_sandbox(f, "[remediation]\nlive-patch-mode = enforce\n", NULL);
	assert_int_equal(bk_op_desired_get(&f->ctx, &d, &err), 1);

	/* Not in the depot: refused, nothing written, the refusal is an event. */
	assert_int_equal(
		bk_op_desired_set(&f->ctx, "acme-os", "1.1", _BK_LP_MODE_INVALID, &d, &err),
		-ENOENT);
	assert_string_equal(err.msg,
			    "no image 'acme-os 1.1' in the depot (bankctl depot import IMAGE.bbi)");
	assert_int_equal(bk_op_desired_get(&f->ctx, &d, NULL), 1);
	assert_int_equal(n_events(f), 1);

	write_file(f, "var/lib/bootbank/desired.json",
		   "{ \"format\": 1, \"name\": \"acme-os\", \"version\": \"1.1\", "
		   "\"live_patch_mode\": \"enforce\", \"set\": 1700000000 }");
	assert_int_equal(bk_op_desired_get(&f->ctx, &d, NULL), 0);
	assert_string_equal(d.name, "acme-os");
	assert_string_equal(d.version, "1.1");
	assert_int_equal(d.mode, BK_LP_MODE_ENFORCE);
	assert_int_equal(d.set, 1700000000);

	write_file(f, "var/lib/bootbank/desired.json",
		   "{ \"format\": 1, \"name\": \"acme-os\", \"version\": \"1.1\", "
		   "\"live_patch_mode\": \"sometimes\" }");
	err = (struct bk_err){ 0 };
	assert_int_equal(bk_op_desired_get(&f->ctx, &d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "corrupt desired state 'desired.json'"));

	assert_int_equal(bk_op_desired_clear(&f->ctx, &err), 0);
	assert_int_equal(bk_op_desired_get(&f->ctx, &d, NULL), 1);
	assert_int_equal(bk_op_desired_clear(&f->ctx, &err), 1);
}

static void test_remediate_scan_unknown_with_reasons(void **state)
{
	struct fixture *f = *state;
	struct bk_op_scan_result s;
	struct json_object *o;
	struct bk_booted booted = { .bank = BK_BANK_A, .reason = BK_REASON_PRIMARY, .time = 1 };

	open_sandbox(f, NULL, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	bk_op_scan(&f->ctx, &s);
	assert_int_equal(s.state, BK_UNKNOWN);
	assert_string_equal(s.reason, "no desired image is set (bankctl desired set NAME VERSION)");
	o = bk_op_scan_to_json(&s);
	assert_non_null(o);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "state")), "unknown");
	assert_int_equal(json_object_get_int(json_object_object_get(o, "exit_code")), 23);
	assert_null(json_object_object_get(o, "desired"));
	json_object_put(o);

	write_file(f, "var/lib/bootbank/desired.json",
		   "{ \"format\": 1, \"name\": \"acme-os\", \"version\": \"1.1\", "
		   "\"live_patch_mode\": \"auto\", \"set\": 1 }");
	bk_op_scan(&f->ctx, &s);
	assert_int_equal(s.state, BK_UNKNOWN);
	assert_non_null(strstr(s.reason, "the booted bank is unknown"));

	{
		int dfd = -EBADF;

		assert_int_equal(bk_op_open_dir(&f->ctx, BK_OP_RUN_DIR, true, &dfd, NULL), 0);
		assert_int_equal(bk_booted_write_at(dfd, "run/bootbank", &booted, NULL), 0);
		close(dfd);
	}
	bk_op_scan(&f->ctx, &s);
	assert_int_equal(s.state, BK_UNKNOWN);
	assert_string_equal(s.reason, "the content of the booted bank A cannot be read");
	assert_true(s.has_desired);
	assert_true(s.has_booted);
	assert_int_equal(s.next, BK_BANK_A);

	write_file(f, "var/lib/bootbank/bootstate.json", "garbage");
	bk_op_scan(&f->ctx, &s);
	assert_int_equal(s.state, BK_UNKNOWN);
	assert_non_null(strstr(s.reason, "cannot read the boot state: corrupt boot state"));
}

static void test_remediate_events_in_task(void **state)
{
	struct fixture *f = *state;
	struct bk_op_boot_result res;
	struct bk_err err = { 0 };

	open_sandbox(f, NULL, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	f->ctx.events_in_task = true;
	assert_int_equal(bk_op_activate(&f->ctx, BK_BANK_B, 0, &res, &err), 0);
	assert_int_equal(n_events(f), 0); /* the caller's task records the step */
	f->ctx.events_in_task = false;
	assert_int_equal(bk_op_mark(&f->ctx, false, "B", NULL, &res, &err), 0);
	assert_int_equal(n_events(f), 1);
}

static void test_remediate_precheck_without_desired(void **state)
{
	struct fixture *f = *state;
	struct bk_op_precheck_result p;
	struct json_object *o;
	struct bk_err err = { 0 };

	open_sandbox(f, NULL, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_int_equal(bk_op_precheck(&f->ctx, BK_LP_MODE_AUTO, NULL, &p, &err), 0);
	assert_int_equal(p.n_checks, 1);
	assert_string_equal(p.checks[0].name, "desired image");
	assert_int_equal(p.checks[0].result, BK_CHECK_FAIL);
	assert_false(p.live_possible);
	assert_false(p.reboot_possible);
	assert_int_equal(p.chosen, -1);
	assert_string_equal(p.reboot_why,
			    "desired image: no desired image is set (bankctl desired set)");
	o = bk_op_precheck_to_json(&p);
	assert_non_null(o);
	assert_null(json_object_object_get(o, "chosen"));
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remediate_modes_and_states_to_string),
		cmocka_unit_test_setup_teardown(test_remediate_desired_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remediate_scan_unknown_with_reasons, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_remediate_events_in_task, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remediate_precheck_without_desired, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

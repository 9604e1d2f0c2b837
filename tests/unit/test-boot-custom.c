/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `custom` boot state backend: RAUC's custom bootloader convention, run against the fake
 * executable tests/fake-bin/custom-backend (copied beneath a mkdtemp() root, where system.conf
 * names it), which keeps its primary and good/bad states in files and records every call.
 * What bankctl tells it, what it reads back, the loader's answers winning, failures of the
 * executable (exit status, garbage, a hang), and the configuration checks.
 */
#include <errno.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-boot.h"
#include "bk-config.h"

#define EXE	  "usr/lib/bootbank/custom-backend"
#define SIDE_FILE "var/lib/bootbank/custom-backend.state"

struct fixture {
	struct bk_test_dir dir;
	struct bk_config config;
	struct bk_boot *boot;
	char fake[128]; /* BK_FAKE_DIR */
};

static void copy_fake(struct fixture *f)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "mkdir -p '%s/usr/lib/bootbank' '%s/fake' && cp tests/fake-bin/custom-backend "
		 "'%s/" EXE "'",
		 f->dir.path, f->dir.path, f->dir.path);
	assert_int_equal(system(cmd), 0);
}

static int open_backend(struct fixture *f, struct bk_boot **ret, struct bk_err *err)
{
	struct bk_boot_env env = { f->dir.dfd, f->dir.path, &f->config };

	return bk_boot_open("custom", &env, ret, err);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct bk_test_dir *d;
	struct bk_err err = { 0 };
	void *p;

	wrap_reset();
	assert_non_null(f);
	bk_test_dir_setup(&p);
	d = p;
	f->dir = *d;
	free(d);
	copy_fake(f);
	snprintf(f->fake, sizeof(f->fake), "%s/fake", f->dir.path);
	setenv("BK_FAKE_DIR", f->fake, 1);
	unsetenv("BK_FAKE_FAIL");
	unsetenv("BK_FAKE_SAY");
	unsetenv("BK_FAKE_HANG");
	assert_int_equal(bk_config_init(&f->config), 0);
	assert_int_equal(bk_config_load_string(&f->config,
					       "[system]\nbootloader = custom\n[boot]\n"
					       "custom-backend = /" EXE "\n",
					       "system.conf", &err),
			 0);
	assert_int_equal(open_backend(f, &f->boot, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	struct bk_test_dir *d = malloc(sizeof(*d));

	wrap_reset();
	f->boot = bk_boot_free(f->boot);
	bk_config_release(&f->config);
	assert_non_null(d);
	*d = f->dir;
	free(f);
	return bk_test_dir_teardown((void **) &d);
}

static struct bk_boot_data data_of(const char *text)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };

	bk_boot_data_init(&d);
	assert_int_equal(bk_bootstate_parse(text, &d.state, &err), 0);
	return d;
}

static void save_ok(struct fixture *f, const char *text)
{
	struct bk_boot_data d = data_of(text);
	struct bk_err err = { 0 };

	if (bk_boot_save(f->boot, &d, &err) < 0)
		fail_msg("save '%s' failed: %s", text, err.msg);
}

static void assert_state(struct fixture *f, const char *want)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char text[BK_BOOTSTATE_TEXT_MAX];

	if (bk_boot_load(f->boot, &d, &err) < 0)
		fail_msg("load failed: %s", err.msg);
	assert_int_equal(bk_bootstate_format(&d.state, text, sizeof(text)), 0);
	assert_string_equal(text, want);
}

/* The fake's file name (calls, primary, state.A, ...) into buf; "" when absent. */
static void fake_read(struct fixture *f, const char *name, char *buf, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "fake/%s", name);
	if (bk_test_read(f->dir.dfd, path, buf, len) < 0)
		buf[0] = '\0';
}

static void fake_write(struct fixture *f, const char *name, const char *text)
{
	char path[64];

	snprintf(path, sizeof(path), "fake/%s", name);
	bk_test_write(f->dir.dfd, path, text);
}

static void clear_calls(struct fixture *f)
{
	(void) unlinkat(f->dir.dfd, "fake/calls", 0);
}

static void assert_calls(struct fixture *f, const char *want)
{
	char buf[1024];

	fake_read(f, "calls", buf, sizeof(buf));
	assert_string_equal(buf, want);
	clear_calls(f);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_custom_config(void **state)
{
	struct fixture *f = *state;
	struct bk_boot *b = (struct bk_boot *) 0x1;
	struct bk_err err = { 0 };
	struct bk_config c;
	struct bk_boot_env env = { f->dir.dfd, f->dir.path, &c };
	char want[256];

	snprintf(want, sizeof(want), "%s/" EXE " (state: %s/" SIDE_FILE ")", f->dir.path,
		 f->dir.path);
	assert_string_equal(bk_boot_location(f->boot), want);

	assert_int_equal(bk_config_init(&c), 0);
	assert_int_equal(bk_boot_open("custom", &env, &b, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "needs [boot] custom-backend in system.conf"));
	assert_int_equal(
		bk_config_load_string(&c, "[boot]\ncustom-backend = /usr/lib/nope\n", "s", &err),
		0);
	bk_err_clear(&err);
	assert_int_equal(bk_boot_open("custom", &env, &b, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "cannot find the custom backend '"));
	assert_non_null(strstr(err.msg, "/usr/lib/nope'"));
	bk_config_release(&c);

	assert_int_equal(fchmodat(f->dir.dfd, EXE, 0644, 0), 0);
	bk_err_clear(&err);
	assert_int_equal(open_backend(f, &b, &err), -EACCES);
	assert_non_null(strstr(err.msg, "is not an executable file"));
	assert_ptr_equal(b, (struct bk_boot *) 0x1);
}

/* What bankctl tells the executable, in RAUC's words, and only what changes. */
static void test_custom_calls(void **state)
{
	struct fixture *f = *state;
	char buf[64];

	assert_state(f, "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\n");

	save_ok(f, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state A good\n"
			"set-state B good\nset-primary B\n");
	fake_read(f, "primary", buf, sizeof(buf));
	assert_string_equal(buf, "B\n");
	assert_state(f, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	clear_calls(f);

	/* The same again: nothing to tell. A try taken: still nothing RAUC can hold. */
	save_ok(f, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	save_ok(f, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\n"
			"get-primary\nget-state A\nget-state B\n");

	/* mark-bad: demoted, and the primary follows the model (fallback to A). */
	save_ok(f, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state B bad\nset-primary A\n");

	/* rollback pin to ... A is what boots anyway; a pin on B needs B eligible: activate. */
	save_ok(f, "A=good:1:0:1 B=staged:3:3:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state B good\nset-primary B\n");
	save_ok(f, "A=good:1:0:1 B=staged:3:3:1 floor=1 pin=A");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-primary A\n");
	assert_state(f, "A=good:1:0:1 B=staged:3:3:1 floor=1 pin=A");
	clear_calls(f);

	/* stage begin of B (the alternate): bad to the loader, which holds no image there. */
	save_ok(f, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state B bad\n");
}

/* The loader's answers win: what a RAUC-style loader (or `rauc status mark-*`) did. */
static void test_custom_loader_wins(void **state)
{
	struct fixture *f = *state;
	struct bk_boot_data d;
	struct bk_err err = { 0 };

	save_ok(f, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	/* The loader ran out of tries on B, marked it bad and fell back to A: no pin. */
	fake_write(f, "state.B", "bad\n");
	fake_write(f, "primary", "A\n");
	assert_state(f, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");

	/*
	 * Marked good outside bankctl (a bad bank, confirmed): good. The loader's primary stays
	 * A (RAUC's mark-good does not move it), so A is what boots: a pin on A.
	 */
	save_ok(f, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	fake_write(f, "state.B", "good\n");
	assert_state(f, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=A");

	/* set-primary to the other bank outside bankctl: a rollback (pin), if eligible. */
	save_ok(f, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");
	fake_write(f, "primary", "A\n");
	assert_state(f, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=A");
	/* ... not when that bank cannot boot */
	save_ok(f, "A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");
	fake_write(f, "primary", "A\n");
	assert_state(f, "A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");

	/* A staged bank that was never activated stays so, whatever the loader says. */
	save_ok(f, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	fake_write(f, "state.B", "good\n");
	assert_state(f, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");

	/* Extras live in the side file. */
	d = data_of("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_B, "no tries left", &err), 0);
	d.has_last = true;
	d.last = (struct bk_booted){ BK_BANK_A, BK_REASON_FALLBACK, 77 };
	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), 0);
	assert_string_equal(d.bad_reason[BK_BANK_B], "no tries left");
	assert_true(d.has_last && d.last.reason == BK_REASON_FALLBACK && d.last.time == 77);
}

static void test_custom_failures(void **state)
{
	struct fixture *f = *state;
	struct bk_boot_data d = data_of("A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	struct bk_err err = { 0 };
	char side[512], side2[512];

	save_ok(f, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	assert_true(bk_test_read(f->dir.dfd, SIDE_FILE, side, sizeof(side)) > 0);

	/* The executable refuses: its words in the message, the side file as it was. */
	setenv("BK_FAKE_FAIL", "set-primary", 1);
	assert_int_equal(bk_boot_save(f->boot, &d, &err), -EIO);
	assert_non_null(strstr(err.msg, "custom backend '"));
	assert_non_null(strstr(err.msg, " set-primary B' failed (exit 3): fake: set-primary "
					"refused on purpose"));
	assert_true(bk_test_read(f->dir.dfd, SIDE_FILE, side2, sizeof(side2)) > 0);
	assert_string_equal(side, side2);
	setenv("BK_FAKE_FAIL", "get-state", 1);
	bk_err_clear(&err);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), -EIO);
	assert_non_null(strstr(err.msg, "get-state A' failed (exit 3)"));
	unsetenv("BK_FAKE_FAIL");

	/* Garbage: a malformed store (exit 6). */
	setenv("BK_FAKE_SAY", "maybe", 1);
	bk_err_clear(&err);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "printed 'maybe', not A or B"));
	unsetenv("BK_FAKE_SAY");

	/* A hang: killed after the time limit. */
	setenv("BK_FAKE_HANG", "get-primary", 1);
	setenv("BOOTBANK_CUSTOM_TIMEOUT_MS", "300", 1);
	bk_err_clear(&err);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), -EIO);
	assert_non_null(strstr(err.msg, "get-primary' did not finish within 300 ms"));
	unsetenv("BK_FAKE_HANG");
	unsetenv("BOOTBANK_CUSTOM_TIMEOUT_MS");

	/* A corrupt side file. */
	bk_test_write(f->dir.dfd, SIDE_FILE, "state A=good B=bad\n");
	bk_err_clear(&err);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "corrupt boot state '"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_custom_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_custom_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_custom_loader_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_custom_failures, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `custom` boot state backend: RAUC's custom bootloader convention, run against the fake
 * executable tests/fake-bin/custom-backend (copied beneath a mkdtemp() root, where system.conf
 * names it), which keeps its primary and good/bad states in files and records every call.
 * What bankctl tells it, what it reads back, the loader's answers winning, failures of the
 * executable (exit status, garbage, a hang), and the configuration checks.
 */
#include <errno.h>

#include "bk-test-boot.h"

#define EXE	  "usr/lib/bootbank/custom-backend"
#define SIDE_FILE "var/lib/bootbank/custom-backend.state"

static void copy_fake(struct bk_test_boot *f)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "mkdir -p '%s/usr/lib/bootbank' '%s/fake' && cp tests/fake-bin/custom-backend "
		 "'%s/" EXE "'",
		 f->dir.path, f->dir.path, f->dir.path);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	struct bk_test_boot *f = bk_test_boot_new();
	struct bk_err err = { 0 };
	char fake[128];

	copy_fake(f);
	snprintf(fake, sizeof(fake), "%s/fake", f->dir.path);
	setenv("BK_FAKE_DIR", fake, 1);
	unsetenv("BK_FAKE_FAIL");
	unsetenv("BK_FAKE_SAY");
	unsetenv("BK_FAKE_HANG");
	assert_int_equal(bk_config_load_string(&f->config,
					       "[system]\nbootloader = custom\n[boot]\n"
					       "custom-backend = /" EXE "\n",
					       "system.conf", &err),
			 0);
	assert_int_equal(bk_test_boot_open(f, "custom", &f->boot, &err), 0);
	*state = f;
	return 0;
}

/* The fake's file name (calls, primary, state.A, ...) into buf; "" when absent. */
static void fake_read(struct bk_test_boot *f, const char *name, char *buf, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "fake/%s", name);
	if (bk_test_read(f->dir.dfd, path, buf, len) < 0)
		buf[0] = '\0';
}

static void fake_write(struct bk_test_boot *f, const char *name, const char *text)
{
	char path[64];

	snprintf(path, sizeof(path), "fake/%s", name);
	bk_test_write(f->dir.dfd, path, text);
}

static void clear_calls(struct bk_test_boot *f)
{
	(void) unlinkat(f->dir.dfd, "fake/calls", 0);
}

static void assert_calls(struct bk_test_boot *f, const char *want)
{
	char buf[1024];

	fake_read(f, "calls", buf, sizeof(buf));
	assert_string_equal(buf, want);
	clear_calls(f);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_custom_config(void **state)
{
	struct bk_test_boot *f = *state;
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
	assert_int_equal(bk_test_boot_open(f, "custom", &b, &err), -EACCES);
	assert_non_null(strstr(err.msg, "is not an executable file"));
	assert_ptr_equal(b, (struct bk_boot *) 0x1);
}

/* What bankctl tells the executable, in RAUC's words, and only what changes. */
static void test_custom_calls(void **state)
{
	struct bk_test_boot *f = *state;
	char buf[64];

	bk_test_boot_assert_state(f->boot, "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\n");

	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state A good\n"
			"set-state B good\nset-primary B\n");
	fake_read(f, "primary", buf, sizeof(buf));
	assert_string_equal(buf, "B\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	clear_calls(f);

	/* The same again: nothing to tell. A try taken: still nothing RAUC can hold. */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\n"
			"get-primary\nget-state A\nget-state B\n");

	/* mark-bad: demoted, and the primary follows the model (fallback to A). */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state B bad\nset-primary A\n");

	/* rollback pin to ... A is what boots anyway; a pin on B needs B eligible: activate. */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:3:3:1 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state B good\nset-primary B\n");
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:3:3:1 floor=1 pin=A");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-primary A\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=staged:3:3:1 floor=1 pin=A");
	clear_calls(f);

	/* stage begin of B (the alternate): bad to the loader, which holds no image there. */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_calls(f, "get-primary\nget-state A\nget-state B\nset-state B bad\n");
}

/* The loader's answers win: what a RAUC-style loader (or `rauc status mark-*`) did. */
static void test_custom_loader_wins(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d;
	struct bk_err err = { 0 };

	bk_test_boot_save(f->boot, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	/* The loader ran out of tries on B, marked it bad and fell back to A: no pin. */
	fake_write(f, "state.B", "bad\n");
	fake_write(f, "primary", "A\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");

	/*
	 * Marked good outside bankctl (a bad bank, confirmed): good. The loader's primary stays
	 * A (RAUC's mark-good does not move it), so A is what boots: a pin on A.
	 */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	fake_write(f, "state.B", "good\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=A");

	/* set-primary to the other bank outside bankctl: a rollback (pin), if eligible. */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");
	fake_write(f, "primary", "A\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=A");
	/* ... not when that bank cannot boot */
	bk_test_boot_save(f->boot, "A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");
	fake_write(f, "primary", "A\n");
	bk_test_boot_assert_state(f->boot, "A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");

	/* A staged bank that was never activated stays so, whatever the loader says. */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	fake_write(f, "state.B", "good\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");

	/* Extras live in the side file. */
	d = bk_test_boot_data("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
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
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	struct bk_err err = { 0 };
	char side[512], side2[512];

	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
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
		cmocka_unit_test_setup_teardown(test_custom_config, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_custom_calls, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_custom_loader_wins, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_custom_failures, setup, bk_test_boot_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The boot state store: the registry, the `file` backend (real files in a mkdtemp() root,
 * fault injection on fsync and renameat), the booted record and the kernel command line.
 */
#include <errno.h>

#include "bk-test-boot.h"

#define STATE_DIR  "var/lib/bootbank"
#define STATE_FILE "var/lib/bootbank/bootstate.json"

static int setup(void **state)
{
	struct bk_test_boot *f = bk_test_boot_new();
	struct bk_err err = { 0 };

	assert_int_equal(bk_test_boot_open(f, "file", &f->boot, &err), 0);
	*state = f;
	return 0;
}

/* Temp files ".#..." left in the state directory. */
static int count_temps(struct bk_test_boot *f)
{
	int dfd = openat(f->dir.dfd, STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int n;

	assert_true(dfd >= 0);
	n = bk_test_count_prefix(dfd, ".#");
	close(dfd);
	return n;
}

static struct bk_boot_data sample(void)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };

	bk_boot_data_init(&d);
	assert_int_equal(
		bk_bootstate_parse("A=good:3:0:2 B=bad:4:0:3 floor=2 pin=A", &d.state, &err), 0);
	assert_int_equal(
		bk_boot_data_set_bad_reason(&d, BK_BANK_B, "kernel panic \"x\" at boot", &err), 0);
	d.has_last = true;
	d.last = (struct bk_booted){ BK_BANK_A, BK_REASON_ROLLBACK, 1763800000 };
	return d;
}

static void test_boot_registry(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_env env = { f->dir.dfd, f->dir.path, &f->config };
	struct bk_boot *b = (struct bk_boot *) 0x1;
	struct bk_err err = { 0 };
	bool seen_file = false;
	size_t i;

	assert_true(bk_boot_backend_exists("file"));
	assert_false(bk_boot_backend_exists("lilo"));
	assert_false(bk_boot_backend_exists(NULL));
	for (i = 0; i < 16 && bk_boot_backend_name(i); i++)
		if (strcmp(bk_boot_backend_name(i), "file") == 0)
			seen_file = true;
	assert_true(seen_file);
	assert_true(i < 16);

	assert_int_equal(bk_boot_open("lilo", &env, &b, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err.msg, "boot state backend 'lilo' is not available (available: "));
	assert_non_null(strstr(err.msg, "file"));
	assert_ptr_equal(b, (struct bk_boot *) 0x1); /* untouched */

	assert_string_equal(bk_boot_name(f->boot), "file");
	assert_true(bk_boot_features(f->boot) & BK_BOOT_KEEPS_BAD_REASON);
	assert_true(bk_boot_features(f->boot) & BK_BOOT_KEEPS_LAST_BOOT);
	{
		char want[128];

		snprintf(want, sizeof(want), "%s/%s", f->dir.path, STATE_FILE);
		assert_string_equal(bk_boot_location(f->boot), want);
	}
	assert_null(bk_boot_free(NULL));
}

static void test_boot_file_missing_means_empty(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char text[BK_BOOTSTATE_TEXT_MAX];

	memset(&d, 0x5a, sizeof(d));
	assert_int_equal(bk_boot_load(f->boot, &d, &err), 0);
	assert_int_equal(bk_bootstate_format(&d.state, text, sizeof(text)), 0);
	assert_string_equal(text, "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none");
	assert_false(d.has_last);
	assert_string_equal(d.bad_reason[0], "");
	/* Loading created nothing. */
	assert_int_equal(bk_test_count_prefix(f->dir.dfd, ""), 2); /* "." and ".." */

	/* The directory alone, without the file: empty as well. */
	bk_test_mkdir_p(f->dir.dfd, STATE_DIR);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), 0);
	assert_false(bk_err_is_set(&err));
}

static void test_boot_file_roundtrip(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = sample(), back;
	struct bk_err err = { 0 };
	char buf[4096];
	struct stat st;

	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_int_equal(fstatat(f->dir.dfd, STATE_FILE, &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_true(bk_test_read(f->dir.dfd, STATE_FILE, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"format\": 1"));
	assert_non_null(strstr(buf, "\"pin\": \"A\""));
	assert_non_null(strstr(buf, "\"bad_reason\": \"kernel panic \\\"x\\\" at boot\""));
	assert_non_null(strstr(buf, "\"time\": 1763800000"));

	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_memory_equal(&back.state, &d.state, sizeof(d.state));
	assert_string_equal(back.bad_reason[BK_BANK_B], "kernel panic \"x\" at boot");
	assert_string_equal(back.bad_reason[BK_BANK_A], "");
	assert_true(back.has_last);
	assert_int_equal(back.last.bank, BK_BANK_A);
	assert_int_equal(back.last.reason, BK_REASON_ROLLBACK);
	assert_true(back.last.time == 1763800000);

	/* A bank that is no longer bad loses its reason. */
	d.state.bank[BK_BANK_B].state = BK_BANK_GOOD;
	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_string_equal(back.bad_reason[BK_BANK_B], "");
	d.state.bank[BK_BANK_B].state = BK_BANK_BAD;

	/* No pin, no last boot: null and absent. */
	d.state.pin = _BK_BANK_INVALID;
	d.has_last = false;
	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_true(bk_test_read(f->dir.dfd, STATE_FILE, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"pin\": null"));
	assert_null(strstr(buf, "last_boot"));
	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_int_equal(back.state.pin, _BK_BANK_INVALID);
	assert_false(back.has_last);
	assert_int_equal(count_temps(f), 0);
	assert_false(bk_err_is_set(&err));
}

/* A valid document with one substitution. */
static const char good_doc[] =
	"{ \"format\": 1,\n"
	"  \"banks\": { \"A\": { \"state\": \"good\", \"generation\": 1, \"tries_left\": 0, "
	"\"epoch\": 1 },\n"
	"             \"B\": { \"state\": \"staged\", \"generation\": 0, \"tries_left\": 0, "
	"\"epoch\": 2 } },\n"
	"  \"floor\": 1, \"pin\": null }\n";

static void test_boot_file_corrupt_is_an_error(void **state)
{
	static const struct {
		const char *from, *to, *msg;
	} cases[] = {
		{ "{ \"format\"", "", "invalid JSON" },
		{ "\"format\": 1", "\"format\": 2", "unsupported format 2" },
		{ "\"format\": 1,", "", "missing field 'format'" },
		{ "\"state\": \"good\"", "\"state\": \"fine\"", "bank A: unknown state 'fine'" },
		{ "\"state\": \"good\"", "\"state\": 3", "bank A: field 'state' must be a string" },
		{ "\"tries_left\": 0, \"epoch\": 2", "\"tries_left\": 101, \"epoch\": 2",
		  "bank B: field 'tries_left' out of range (max 100)" },
		{ "\"generation\": 1", "\"generation\": -1",
		  "bank A: field 'generation' must not be negative" },
		{ "\"epoch\": 1 }", "\"epoch\": 1, \"colour\": 1 }",
		  "bank A: unknown field 'colour'" },
		{ "\"B\": {", "\"C\": {", "banks: unknown field 'C'" },
		{ "\"floor\": 1,", "\"floor\": \"1\",", "field 'floor' must be an integer" },
		{ "\"floor\": 1,", "", "missing field 'floor'" },
		{ ", \"pin\": null", "", "missing field 'pin'" },
		{ "\"pin\": null", "\"pin\": \"C\"", "field 'pin' must be \"A\", \"B\" or null" },
		{ "\"pin\": null", "\"pin\": null, \"extra\": true", "unknown field 'extra'" },
		{ "\"pin\": null", "\"pin\": null, \"last_boot\": { \"bank\": \"A\" }",
		  "last_boot: missing field 'reason'" },
		{ "\"pin\": null",
		  "\"pin\": null, \"last_boot\": { \"bank\": \"A\", \"reason\": \"whim\", \"time\": 1 }",
		  "last_boot: unknown reason 'whim'" },
		{ "\"epoch\": 1 }", "\"epoch\": 1, \"bad_reason\": \"a\\nb\" }",
		  "bank A: bad reason must be one line" },
		{ "}\n", "} []\n", "invalid JSON at offset" },
		{ "{ \"format\": 1,", "[ 1 ] ", "invalid JSON" },
	};
	struct bk_test_boot *f = *state;

	bk_test_mkdir_p(f->dir.dfd, STATE_DIR);
	for (size_t i = 0; i < BK_ELEMENTSOF(cases); i++) {
		char doc[1024], back[1024], want[256];
		struct bk_boot_data d;
		struct bk_err err = { 0 };
		const char *at = strstr(good_doc, cases[i].from);
		size_t pre;

		assert_non_null(at);
		pre = (size_t) (at - good_doc);
		snprintf(doc, sizeof(doc), "%.*s%s%s", (int) pre, good_doc, cases[i].to,
			 at + strlen(cases[i].from));
		bk_test_write(f->dir.dfd, STATE_FILE, doc);

		memset(&d, 0x5a, sizeof(d));
		if (bk_boot_load(f->boot, &d, &err) != -ENOEXEC || !strstr(err.msg, cases[i].msg)) {
			print_error("case %zu: got '%s'\n", i, err.msg);
			fail();
		}
		snprintf(want, sizeof(want), "corrupt boot state '%s/%s': ", f->dir.path,
			 STATE_FILE);
		assert_true(strncmp(err.msg, want, strlen(want)) == 0);
		assert_null(strchr(err.msg, '\n'));
		/* Never reset or rewritten. */
		assert_true(bk_test_read(f->dir.dfd, STATE_FILE, back, sizeof(back)) >= 0);
		assert_string_equal(back, doc);
	}

	/* The original document is fine (the cases above test what they claim). */
	{
		struct bk_boot_data d;
		struct bk_err err = { 0 };

		bk_test_write(f->dir.dfd, STATE_FILE, good_doc);
		assert_int_equal(bk_boot_load(f->boot, &d, &err), 0);
		assert_int_equal(d.state.bank[BK_BANK_B].state, BK_BANK_STAGED);
		assert_true(d.state.bank[BK_BANK_B].epoch == 2);
	}

	/* An empty file and a directory in its place are corrupt too. */
	{
		struct bk_boot_data d;
		struct bk_err err = { 0 };

		bk_test_write(f->dir.dfd, STATE_FILE, "");
		assert_int_equal(bk_boot_load(f->boot, &d, &err), -ENOEXEC);
		assert_int_equal(unlinkat(f->dir.dfd, STATE_FILE, 0), 0);
		assert_int_equal(mkdirat(f->dir.dfd, STATE_FILE, 0755), 0);
		bk_err_clear(&err);
		assert_int_equal(bk_boot_load(f->boot, &d, &err), -ENOEXEC);
		assert_non_null(strstr(err.msg, "not a regular file"));
	}
}

static void test_boot_file_save_refuses_invalid_data(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = sample();
	struct bk_err err = { 0 };

	d.state.bank[BK_BANK_A].tries_left = 1000;
	assert_int_equal(bk_boot_save(f->boot, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "refusing to save the boot state to '"));
	assert_non_null(strstr(err.msg, "bank A: tries_left 1000 is above 100"));
	assert_int_equal(faccessat(f->dir.dfd, STATE_FILE, F_OK, 0), -1);

	d = sample();
	d.bad_reason[BK_BANK_A][0] = '\t';
	bk_err_clear(&err);
	assert_int_equal(bk_boot_save(f->boot, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bank A: bad reason must be one line"));
	assert_int_equal(faccessat(f->dir.dfd, "var", F_OK, 0), -1);
}

static void test_boot_file_save_failures_keep_the_old_state(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = sample(), back;
	struct bk_err err = { 0 };
	char before[4096], after[4096];

	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_true(bk_test_read(f->dir.dfd, STATE_FILE, before, sizeof(before)) > 0);
	d.state.pin = BK_BANK_B;

	/* fsync of the temp file fails. */
	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	assert_int_equal(bk_boot_save(f->boot, &d, &err), -EIO);
	assert_non_null(strstr(err.msg, "cannot save '"));
	assert_non_null(strstr(err.msg, "bootstate.json"));
	assert_true(bk_test_read(f->dir.dfd, STATE_FILE, after, sizeof(after)) > 0);
	assert_string_equal(after, before);
	assert_int_equal(count_temps(f), 0);

	/* The rename fails. */
	wrap_reset();
	bk_err_clear(&err);
	wrap_renameat_armed = 1;
	will_return(__wrap_renameat, EIO);
	assert_int_equal(bk_boot_save(f->boot, &d, &err), -EIO);
	assert_true(bk_test_read(f->dir.dfd, STATE_FILE, after, sizeof(after)) > 0);
	assert_string_equal(after, before);
	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_int_equal(back.state.pin, BK_BANK_A);
}

static void test_boot_file_save_removes_its_stale_temps(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = sample();
	struct bk_err err = { 0 };
	int dfd;

	bk_test_mkdir_p(f->dir.dfd, STATE_DIR);
	bk_test_write(f->dir.dfd, STATE_DIR "/.#bootstate.json.1a2b3c", "half");
	bk_test_write(f->dir.dfd, STATE_DIR "/.#depot.json.1a2b3c", "someone else's");
	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	dfd = openat(f->dir.dfd, STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(bk_test_count_prefix(dfd, ".#bootstate.json."), 0);
	assert_int_equal(bk_test_count_prefix(dfd, ".#depot.json."), 1);
	close(dfd);
}

static void test_boot_bad_reason_text(void **state)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char longtext[BK_BOOT_BAD_REASON_MAX + 2];

	bk_boot_data_init(&d);
	assert_int_equal(
		bk_boot_data_set_bad_reason(&d, BK_BANK_A, "health check 'db' failed", &err), 0);
	assert_string_equal(d.bad_reason[BK_BANK_A], "health check 'db' failed");
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_A, "two\nlines", &err), -EINVAL);
	assert_string_equal(d.bad_reason[BK_BANK_A], "health check 'db' failed");
	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	bk_err_clear(&err);
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_A, longtext, &err), -EINVAL);
	assert_string_equal(err.msg, "bad reason is longer than 200 bytes");
	longtext[BK_BOOT_BAD_REASON_MAX] = '\0';
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_A, longtext, &err), 0);
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_A, NULL, &err), 0);
	assert_string_equal(d.bad_reason[BK_BANK_A], "");
	assert_int_equal(bk_boot_data_set_bad_reason(&d, _BK_BANK_INVALID, "x", &err), -EINVAL);
}

static void test_boot_cmdline(void **state)
{
	struct bk_booted b = { BK_BANK_B, BK_REASON_NONE, 7 };
	struct bk_err err = { 0 };

	assert_int_equal(
		bk_booted_parse_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda2 quiet\n", &b, &err), 1);
	assert_int_equal(b.bank, BK_BANK_B); /* untouched */
	assert_int_equal(
		bk_booted_parse_cmdline("root=/dev/sda2 bootbank.bank=A bootbank.reason=fallback "
					"quiet\n",
					&b, &err),
		0);
	assert_int_equal(b.bank, BK_BANK_A);
	assert_int_equal(b.reason, BK_REASON_FALLBACK);
	assert_true(b.time == 0);
	/* The last word wins, like the kernel's own parameters. */
	assert_int_equal(bk_booted_parse_cmdline("bootbank.bank=A bootbank.bank=B", &b, &err), 0);
	assert_int_equal(b.bank, BK_BANK_B);
	assert_int_equal(b.reason, _BK_REASON_INVALID); /* not given */
	assert_int_equal(bk_booted_parse_cmdline("xbootbank.bank=A", &b, &err), 1);
	assert_int_equal(bk_booted_parse_cmdline("bootbank.bank=AB", &b, &err), -EINVAL);
	assert_string_equal(err.msg, "kernel command line: invalid bootbank.bank='AB'");
	bk_err_clear(&err);
	assert_int_equal(bk_booted_parse_cmdline("bootbank.bank=A bootbank.reason=whim", &b, &err),
			 -EINVAL);
	assert_string_equal(err.msg, "kernel command line: invalid bootbank.reason='whim'");
	assert_int_equal(bk_booted_parse_cmdline("", &b, &err), 1);
}

static void test_boot_booted_record(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_booted b = { BK_BANK_B, BK_REASON_EMERGENCY, 1763800001 }, back;
	struct bk_err err = { 0 };
	char buf[256];

	assert_int_equal(bk_booted_read_at(f->dir.dfd, "X/booted.json", &back, &err), -ENOENT);
	assert_int_equal(bk_booted_write_at(f->dir.dfd, "X/booted.json", &b, &err), 0);
	assert_true(bk_test_read(f->dir.dfd, BK_BOOTED_FILE, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"bank\": \"B\""));
	assert_non_null(strstr(buf, "\"reason\": \"emergency\""));
	assert_int_equal(bk_booted_read_at(f->dir.dfd, "X/booted.json", &back, &err), 0);
	assert_int_equal(back.bank, BK_BANK_B);
	assert_int_equal(back.reason, BK_REASON_EMERGENCY);
	assert_true(back.time == 1763800001);

	bk_test_write(f->dir.dfd, BK_BOOTED_FILE, "{\"bank\": \"C\", \"reason\": \"primary\"}");
	assert_int_equal(bk_booted_read_at(f->dir.dfd, "X/booted.json", &back, &err), -ENOEXEC);
	assert_string_equal(err.msg, "corrupt boot record 'X/booted.json': field 'bank' must be A "
				     "or B");
	bk_err_clear(&err);
	bk_test_write(f->dir.dfd, BK_BOOTED_FILE, "{\"bank\": \"A\"");
	assert_int_equal(bk_booted_read_at(f->dir.dfd, "X/booted.json", &back, &err), -ENOEXEC);
	bk_err_clear(&err);
	b.bank = _BK_BANK_INVALID;
	assert_int_equal(bk_booted_write_at(f->dir.dfd, "X/booted.json", &b, &err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_boot_registry, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_boot_file_missing_means_empty, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_boot_file_roundtrip, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_boot_file_corrupt_is_an_error, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_boot_file_save_refuses_invalid_data, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_boot_file_save_failures_keep_the_old_state,
						setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_boot_file_save_removes_its_stale_temps, setup,
						bk_test_boot_teardown),
		cmocka_unit_test(test_boot_bad_reason_text),
		cmocka_unit_test(test_boot_cmdline),
		cmocka_unit_test_setup_teardown(test_boot_booted_record, setup,
						bk_test_boot_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

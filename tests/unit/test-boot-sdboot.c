/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `systemd-boot` boot state backend: Boot Loader Specification entries with boot counting
 * in the file names, beneath a mkdtemp() root with an ESP at ROOT/boot/efi. The names and
 * contents bankctl writes, what it reads back (and the documented losses), the renames
 * systemd-boot and systemd-bless-boot make (as the Boot Loader Specification and
 * systemd-bless-boot(8) describe them; tests/integ/sdboot-bless.sh runs the real
 * systemd-bless-boot), the installer's template, malformed stores, and a failing write.
 */
#include <errno.h>

#include "bk-test-boot.h"

#define ESP	"boot/efi"
#define ENTRIES ESP "/loader/entries"

static int setup(void **state)
{
	struct bk_test_boot *f = bk_test_boot_new();
	struct bk_err err = { 0 };

	bk_test_mkdir_p(f->dir.dfd, ESP "/loader");
	assert_int_equal(bk_test_boot_open(f, "systemd-boot", &f->boot, &err), 0);
	*state = f;
	return 0;
}

/* The names in the entries directory, sorted, joined by blanks. */
static void entry_names(struct bk_test_boot *f, char *buf, size_t len)
{
	int dfd = openat(f->dir.dfd, ENTRIES, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent **list;
	int n;

	buf[0] = '\0';
	if (dfd < 0)
		return;
	n = scandirat(dfd, ".", &list, NULL, alphasort);
	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		if (list[i]->d_name[0] != '.') {
			if (buf[0])
				strncat(buf, " ", len - strlen(buf) - 1);
			strncat(buf, list[i]->d_name, len - strlen(buf) - 1);
		}
		free(list[i]);
	}
	free(list);
	close(dfd);
}

static void assert_names(struct bk_test_boot *f, const char *want)
{
	char names[512];

	entry_names(f, names, sizeof(names));
	assert_string_equal(names, want);
}

static void entry_rename(struct bk_test_boot *f, const char *from, const char *to)
{
	char a[128], b[128];

	snprintf(a, sizeof(a), "%s/%s", ENTRIES, from);
	snprintf(b, sizeof(b), "%s/%s", ENTRIES, to);
	assert_int_equal(renameat(f->dir.dfd, a, f->dir.dfd, b), 0);
}

static void read_entry(struct bk_test_boot *f, const char *name, char *buf, size_t len)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", ENTRIES, name);
	assert_true(bk_test_read(f->dir.dfd, path, buf, len) > 0);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_sdboot_no_esp(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");
	struct bk_err err = { 0 };
	struct bk_boot *b;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s/boot'", f->dir.path);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(bk_test_boot_open(f, "systemd-boot", &b, &err), 0);
	assert_non_null(strstr(bk_boot_location(b), "no ESP with a loader/ directory"));
	assert_int_equal(bk_boot_load(b, &d, &err), 0);
	assert_int_equal(d.state.bank[BK_BANK_A].state, BK_BANK_EMPTY);
	d = bk_test_boot_data("A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");
	assert_int_equal(bk_boot_save(b, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "install systemd-boot first (bootctl install"));
	bk_boot_free(b);

	/* ROOT/efi comes first. */
	bk_test_mkdir_p(f->dir.dfd, "efi/loader");
	bk_test_mkdir_p(f->dir.dfd, ESP "/loader");
	assert_int_equal(bk_test_boot_open(f, "systemd-boot", &b, &err), 0);
	snprintf(cmd, sizeof(cmd), "%s/efi/loader/entries", f->dir.path);
	assert_string_equal(bk_boot_location(b), cmd);
	bk_boot_free(b);
}

/* Every state's file name and what reads back. */
static void test_sdboot_names(void **state)
{
	static const struct {
		const char *state, *names, *back;
	} cases[] = {
		{ "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none", "", NULL },
		{ "A=staged:0:0:1 B=empty:0:0:0 floor=0 pin=none", "bootbank-a+0.conf", NULL },
		{ "A=staged:1:3:1 B=empty:0:0:0 floor=0 pin=none", "bootbank-a+3.conf", NULL },
		{ "A=trying:1:2:1 B=empty:0:0:0 floor=0 pin=none", "bootbank-a+2-1.conf", NULL },
		{ "A=good:1:0:1 B=staged:2:100:2 floor=1 pin=none",
		  "bootbank-a.conf bootbank-b+100.conf", NULL },
		{ "A=good:1:0:1 B=trying:2:99:2 floor=1 pin=A",
		  "bootbank-a.conf bootbank-b+99-1.conf", NULL },
		/* systemd-boot's rename after one more try: DONE counts on */
		{ "A=good:1:0:1 B=trying:2:98:2 floor=1 pin=A",
		  "bootbank-a.conf bootbank-b+98-2.conf", NULL },
		{ "A=good:1:0:1 B=bad:2:0:2 floor=1 pin=none",
		  "bootbank-a.conf bootbank-b+0-2.conf", NULL },
		/* no tries left but not yet marked bad: the same name as bad (documented loss) */
		{ "A=good:1:0:1 B=trying:2:0:2 floor=1 pin=none",
		  "bootbank-a.conf bootbank-b+0-2.conf",
		  "A=good:1:0:1 B=bad:2:0:2 floor=1 pin=none" },
		{ "A=good:4294967295:0:4294967295 B=empty:0:0:0 floor=4294967295 pin=none",
		  "bootbank-a.conf", NULL },
	};
	struct bk_test_boot *f = *state;

	for (size_t i = 0; i < BK_ELEMENTSOF(cases); i++) {
		bk_test_boot_save(f->boot, cases[i].state);
		assert_names(f, cases[i].names);
		bk_test_boot_assert_state(f->boot, cases[i].back ? cases[i].back : cases[i].state);
	}
}

/* The body: generation in version, pin in sort-key, epoch and reason in comments. */
static void test_sdboot_contents(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:3:0:2 B=bad:4:0:3 floor=2 pin=A"), back;
	struct bk_err err = { 0 };
	char buf[2048];

	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_B, "kernel panic at boot", &err),
			 0);
	d.has_last = true;
	d.last = (struct bk_booted){ BK_BANK_A, BK_REASON_ROLLBACK, 1763800000 };
	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	read_entry(f, "bootbank-a.conf", buf, sizeof(buf));
	assert_non_null(strstr(buf, "\nversion 3\n"));
	assert_non_null(strstr(buf, "\nsort-key bootbank-0\n"));
	assert_non_null(strstr(buf, "\n# bootbank-epoch 2\n"));
	assert_non_null(strstr(buf, "\nlinux /bootbank/a/vmlinuz\n"));
	assert_non_null(strstr(buf, "\noptions bootbank.bank=A\n"));
	read_entry(f, "bootbank-b+0-0.conf", buf, sizeof(buf));
	assert_non_null(strstr(buf, "\nversion 4\n"));
	assert_non_null(strstr(buf, "\nsort-key bootbank-1\n"));
	assert_non_null(strstr(buf, "\n# bootbank-bad-reason kernel panic at boot\n"));
	assert_true(bk_test_read(f->dir.dfd, ESP "/loader/bootbank.state", buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "format 1\nfloor 2\npin A\nlast A rollback 1763800000\n");

	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_memory_equal(&back.state, &d.state, sizeof(d.state));
	assert_string_equal(back.bad_reason[BK_BANK_B], "kernel panic at boot");
	assert_true(back.has_last);
	assert_int_equal(back.last.reason, BK_REASON_ROLLBACK);
	assert_true(back.last.time == 1763800000);

	/* Saving the same again writes nothing new (no needless writes to the ESP). */
	{
		struct stat st1, st2;

		assert_int_equal(fstatat(f->dir.dfd, ENTRIES "/bootbank-a.conf", &st1, 0), 0);
		assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
		assert_int_equal(fstatat(f->dir.dfd, ENTRIES "/bootbank-a.conf", &st2, 0), 0);
		assert_true(st1.st_ino == st2.st_ino);
	}
}

/*
 * The loader's renames: systemd-boot takes a try (+LEFT-DONE -> +LEFT-1-DONE+1, +LEFT ->
 * +LEFT-1-1), systemd-bless-boot good (no counter) and bad (+0-DONE). bankctl reads each as
 * the model's state after that event.
 */
static void test_sdboot_loader_renames(void **state)
{
	struct bk_test_boot *f = *state;

	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	assert_names(f, "bootbank-a.conf bootbank-b+3.conf");
	entry_rename(f, "bootbank-b+3.conf", "bootbank-b+2-1.conf"); /* a boot of B */
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	entry_rename(f, "bootbank-b+2-1.conf", "bootbank-b+1-2.conf"); /* and another */
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=trying:2:1:1 floor=1 pin=none");
	entry_rename(f, "bootbank-b+1-2.conf", "bootbank-b+0-2.conf"); /* bless-boot bad */
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	entry_rename(f, "bootbank-b+0-2.conf", "bootbank-b.conf"); /* bless-boot good */
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");

	/* bankctl's mark-bad keeps DONE, so bless-boot's view of the same boot agrees. */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	entry_rename(f, "bootbank-b+3.conf", "bootbank-b+2-1.conf");
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	assert_names(f, "bootbank-a.conf bootbank-b+0-1.conf");
	/* a try taken by bankctl (boot --simulate) moves DONE like systemd-boot does */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	assert_names(f, "bootbank-a.conf bootbank-b+2-1.conf");
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=trying:2:1:1 floor=1 pin=none");
	assert_names(f, "bootbank-a.conf bootbank-b+1-2.conf");
	/* stage begin: the entry goes */
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_names(f, "bootbank-a.conf");
}

/* The installer's template, its lines kept across saves, bootbank.bank= ours. */
static void test_sdboot_template(void **state)
{
	struct bk_test_boot *f = *state;
	char buf[2048];

	bk_test_write(f->dir.dfd, ESP "/loader/bootbank-a.template",
		      "title Acme OS (bank A)\nlinux /acme/a/Image\ninitrd /acme/a/initrd\n"
		      "devicetree /acme/a/board.dtb\n"
		      "options root=PARTLABEL=bootbank_a quiet bootbank.bank=B\nversion 99\n");
	bk_test_boot_save(f->boot, "A=staged:1:3:1 B=empty:0:0:0 floor=0 pin=none");
	read_entry(f, "bootbank-a+3.conf", buf, sizeof(buf));
	assert_non_null(strstr(buf, "\ntitle Acme OS (bank A)\n"));
	assert_non_null(strstr(buf, "\ndevicetree /acme/a/board.dtb\n"));
	assert_non_null(strstr(buf, "\noptions root=PARTLABEL=bootbank_a quiet bootbank.bank=A\n"));
	assert_null(strstr(buf, "version 99"));
	assert_non_null(strstr(buf, "\nversion 1\n"));

	/* A hand edit of the entry survives the next save (only bankctl's lines change). */
	bk_test_write(f->dir.dfd, ENTRIES "/bootbank-a+3.conf", "");
	{
		char edited[2048];

		snprintf(edited, sizeof(edited), "%s", buf);
		*strstr(edited, "quiet") = 'Q';
		bk_test_write(f->dir.dfd, ENTRIES "/bootbank-a+3.conf", edited);
	}
	bk_test_boot_save(f->boot, "A=trying:1:2:1 B=empty:0:0:0 floor=0 pin=A");
	read_entry(f, "bootbank-a+2-1.conf", buf, sizeof(buf));
	assert_non_null(strstr(buf, "Quiet bootbank.bank=A\n"));
	assert_non_null(strstr(buf, "\nsort-key bootbank-0\n"));
	assert_null(strstr(buf, "sort-key bootbank-1"));
}

static void test_sdboot_malformed(void **state)
{
	static const struct {
		const char *name, *content, *msg;
	} cases[] = {
		{ "bootbank-a+x.conf", "", "'bootbank-a+x.conf' is not a bootbank entry name" },
		{ "bootbank-a+03.conf", "", "'bootbank-a+03.conf' is not a bootbank entry name" },
		{ "bootbank-a+1-2-3.conf", "", "is not a bootbank entry name" },
		{ "bootbank-b+1.conf", "title hand-made\n",
		  "'bootbank-b+1.conf' lacks bankctl's 'version' or '# bootbank-epoch' line" },
		{ "bootbank-b.conf", "version 1\n# bootbank-epoch 01\n", "bad epoch '01'" },
		{ "bootbank-b.conf", "version x\n# bootbank-epoch 1\n", "version 'x' is not" },
		{ "bootbank-a+2.conf", "version 1\n# bootbank-epoch 1\n",
		  "two entries for bank A: 'bootbank-a" },
	};
	struct bk_test_boot *f = *state;

	for (size_t i = 0; i < BK_ELEMENTSOF(cases); i++) {
		struct bk_boot_data d;
		struct bk_err err = { 0 };
		char path[128], cmd[256];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", f->dir.path, ENTRIES);
		assert_int_equal(system(cmd), 0);
		bk_test_boot_save(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");
		snprintf(path, sizeof(path), "%s/%s", ENTRIES, cases[i].name);
		bk_test_write(f->dir.dfd, path, cases[i].content);
		assert_int_equal(bk_boot_load(f->boot, &d, &err), -ENOEXEC);
		if (!strstr(err.msg, cases[i].msg) || !strstr(err.msg, "corrupt boot state"))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
		/* never rewritten over */
		d = bk_test_boot_data("A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");
		bk_err_clear(&err);
		assert_int_equal(bk_boot_save(f->boot, &d, &err), -ENOEXEC);
	}

	/* Other entries are the installer's business: ignored. */
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", f->dir.path, ENTRIES);
		assert_int_equal(system(cmd), 0);
	}
	bk_test_boot_save(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");
	bk_test_write(f->dir.dfd, ENTRIES "/debian-6.1.conf", "title Debian\n");
	bk_test_write(f->dir.dfd, ENTRIES "/bootbank-ab.conf", "title not ours\n");
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");

	/* The side file. */
	bk_test_write(f->dir.dfd, ESP "/loader/bootbank.state", "format 1\nfloor 1\npin C\n");
	{
		struct bk_boot_data d;
		struct bk_err err = { 0 };

		assert_int_equal(bk_boot_load(f->boot, &d, &err), -ENOEXEC);
		assert_non_null(strstr(err.msg, "bootbank.state: unexpected line 'pin C'"));
	}
}

/* A write that fails leaves the previous state, and no temp file. */
static void test_sdboot_failing_write(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	struct bk_err err = { 0 };
	int dfd;

	bk_test_boot_save(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	assert_int_equal(bk_boot_save(f->boot, &d, &err), -EIO);
	assert_non_null(strstr(err.msg, "cannot save '"));
	wrap_reset();
	bk_test_boot_assert_state(f->boot, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_names(f, "bootbank-a.conf");
	dfd = openat(f->dir.dfd, ENTRIES, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(bk_test_count_prefix(dfd, ".#"), 0);
	close(dfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sdboot_no_esp, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_sdboot_names, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_sdboot_contents, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_sdboot_loader_renames, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_sdboot_template, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_sdboot_malformed, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_sdboot_failing_write, setup,
						bk_test_boot_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

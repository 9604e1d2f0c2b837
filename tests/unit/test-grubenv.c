/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GRUB environment block (bootloader-hooks/bk-grubenv.c) and the `grub` boot state backend
 * (bk-boot-grub.c): exact size, round trips, GRUB's parsing rules, interoperability with
 * grub-editenv in both directions (run with posix_spawn; those cases skip when it is not
 * installed), the backend's store on real files in a mkdtemp() root, and a failing rename.
 */
#include <errno.h>
#include <spawn.h>
#include <sys/wait.h>

#include "bk-test.h"
#include "mocks.h"

#include "bk-boot-grub.h"
#include "bk-boot.h"
#include "bk-config.h"
#include "bk-grubenv.h"

#define STORE_DIR  "boot/bootbank"
#define STORE_FILE "boot/bootbank/grubenv"

/* --- helpers ------------------------------------------------------------------------------ */

/* Format e into a NUL-terminated 1024-byte buffer. */
static void format_ok(const struct bk_grubenv *e, char buf[BK_GRUBENV_SIZE + 1])
{
	struct bk_err err = { 0 };

	assert_int_equal(bk_grubenv_format(e, buf, BK_GRUBENV_SIZE, &err), 0);
	buf[BK_GRUBENV_SIZE] = '\0';
}

static struct bk_grubenv *parse_ok(const char *buf, size_t len)
{
	struct bk_grubenv *e = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_grubenv_parse(buf, len, &e, &err), 0);
	assert_non_null(e);
	return e;
}

/* A 1024-byte block from text (header included by the caller), padded with '#'. */
static void block(char buf[BK_GRUBENV_SIZE], const char *text)
{
	size_t n = strlen(text);

	assert_true(n <= BK_GRUBENV_SIZE);
	memcpy(buf, text, n);
	memset(buf + n, '#', BK_GRUBENV_SIZE - n);
}

static const char *grub_editenv_path(void)
{
	static const char *const candidates[] = { "/usr/bin/grub-editenv", "/bin/grub-editenv",
						  "/usr/local/bin/grub-editenv" };

	for (size_t i = 0; i < BK_ELEMENTSOF(candidates); i++)
		if (access(candidates[i], X_OK) == 0)
			return candidates[i];
	return NULL;
}

/*
 * Run grub-editenv with the arguments args (NULL-terminated, without argv[0]); its stdout
 * goes to out (may be NULL). Returns its exit status; skips the test when grub-editenv is not
 * installed.
 */
static int run_editenv(const char *const *args, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	const char *path = grub_editenv_path();
	char *argv[16] = { NULL };
	int pfd[2], status = -1;
	size_t len = 0, n_args = 0;
	pid_t pid;

	if (!path)
		skip();
	argv[0] = strdup(path);
	assert_non_null(argv[0]);
	for (; args[n_args]; n_args++) {
		assert_true(n_args + 2 < BK_ELEMENTSOF(argv));
		argv[n_args + 1] = strdup(args[n_args]);
		assert_non_null(argv[n_args + 1]);
	}
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	assert_int_equal(posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO), 0);
	assert_int_equal(posix_spawn(&pid, path, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	for (;;) {
		char sink[256];
		char *dst = out && len + 1 < outlen ? out + len : sink;
		size_t room = out && len + 1 < outlen ? outlen - 1 - len : sizeof(sink);
		ssize_t n = read(pfd[0], dst, room);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (dst != sink)
			len += (size_t) n;
	}
	close(pfd[0]);
	if (out)
		out[len] = '\0';
	assert_int_equal(waitpid(pid, &status, 0), pid);
	for (size_t i = 0; i <= n_args; i++)
		free(argv[i]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* --- the block ---------------------------------------------------------------------------- */

static void test_grubenv_empty_is_1024_bytes(void **state)
{
	struct bk_grubenv *e = bk_grubenv_new();
	char buf[BK_GRUBENV_SIZE + 1];
	const char *name, *value;
	size_t it = 0;

	assert_non_null(e);
	format_ok(e, buf);
	assert_memory_equal(buf, BK_GRUBENV_HEADER, strlen(BK_GRUBENV_HEADER));
	for (size_t i = strlen(BK_GRUBENV_HEADER); i < BK_GRUBENV_SIZE; i++)
		assert_int_equal(buf[i], '#');
	e = bk_grubenv_free(e);

	e = parse_ok(buf, BK_GRUBENV_SIZE);
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 1);
	assert_null(bk_grubenv_free(e));
}

static void test_grubenv_round_trip_keeps_order_and_escapes(void **state)
{
	struct bk_grubenv *e = bk_grubenv_new(), *back;
	struct bk_err err = { 0 };
	char buf[BK_GRUBENV_SIZE + 1], again[BK_GRUBENV_SIZE + 1];
	const char *name, *value;
	size_t it = 0;

	assert_int_equal(bk_grubenv_set(e, "zeta", "1", &err), 0);
	assert_int_equal(bk_grubenv_set(e, "alpha", "back\\slash", &err), 0);
	assert_int_equal(bk_grubenv_set(e, "multi", "line1\nline2", &err), 0);
	assert_int_equal(bk_grubenv_set(e, "empty", "", &err), 0);
	assert_int_equal(bk_grubenv_set(e, "hash", "#not a comment=", &err), 0);
	format_ok(e, buf);
	/* The escapes are GRUB's: a backslash before '\\' and before '\n'. */
	assert_non_null(strstr(buf, "\nalpha=back\\\\slash\nmulti=line1\\\nline2\nempty=\n"));

	back = parse_ok(buf, BK_GRUBENV_SIZE);
	assert_int_equal(bk_grubenv_next(back, &it, &name, &value), 0);
	assert_string_equal(name, "zeta");
	assert_int_equal(bk_grubenv_next(back, &it, &name, &value), 0);
	assert_string_equal(name, "alpha");
	assert_string_equal(value, "back\\slash");
	assert_int_equal(bk_grubenv_next(back, &it, &name, &value), 0);
	assert_string_equal(value, "line1\nline2");
	assert_int_equal(bk_grubenv_next(back, &it, &name, &value), 0);
	assert_string_equal(name, "empty");
	assert_string_equal(value, "");
	assert_int_equal(bk_grubenv_next(back, &it, &name, &value), 0);
	assert_string_equal(value, "#not a comment=");
	assert_int_equal(bk_grubenv_next(back, &it, &name, &value), 1);

	/* Byte for byte the same block again. */
	format_ok(back, again);
	assert_memory_equal(buf, again, BK_GRUBENV_SIZE);
	bk_grubenv_free(back);
	bk_grubenv_free(e);
}

static void test_grubenv_parse_follows_grub(void **state)
{
	char buf[BK_GRUBENV_SIZE];
	struct bk_grubenv *e;
	struct bk_err err = { 0 };
	const char *name, *value;
	size_t it = 0;

	/* Comments are skipped (also one with an escaped newline); the last duplicate is what
	 * load_env leaves set. */
	block(buf, BK_GRUBENV_HEADER "# a comment \\\n still the comment\nx=1\ny=2\nx=3\n");
	e = parse_ok(buf, sizeof(buf));
	assert_string_equal(bk_grubenv_get(e, "x"), "3");
	assert_string_equal(bk_grubenv_get(e, "y"), "2");
	assert_null(bk_grubenv_get(e, "still the comment"));
	/* set() changes the first occurrence in place and drops the later one. */
	assert_int_equal(bk_grubenv_set(e, "x", "4", &err), 0);
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 0);
	assert_string_equal(name, "x");
	assert_string_equal(value, "4");
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 0);
	assert_string_equal(name, "y");
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 1);
	assert_int_equal(bk_grubenv_unset(e, "y"), 1);
	assert_int_equal(bk_grubenv_unset(e, "y"), 0);
	bk_grubenv_free(e);

	/* A line without '=' runs into the next line's name, as in GRUB. */
	block(buf, BK_GRUBENV_HEADER "junk\na=b\n");
	e = parse_ok(buf, sizeof(buf));
	assert_string_equal(bk_grubenv_get(e, "junk\na"), "b");
	bk_grubenv_free(e);

	/* A value running into the end stops the parse: what came before is kept. */
	memset(buf, 'v', sizeof(buf));
	memcpy(buf, BK_GRUBENV_HEADER "ok=1\nbroken=", strlen(BK_GRUBENV_HEADER) + 12);
	e = parse_ok(buf, sizeof(buf));
	assert_string_equal(bk_grubenv_get(e, "ok"), "1");
	assert_null(bk_grubenv_get(e, "broken"));
	bk_grubenv_free(e);
}

static void test_grubenv_rejects_what_grub_rejects(void **state)
{
	char buf[BK_GRUBENV_SIZE];
	struct bk_grubenv *e = NULL;
	struct bk_err err = { 0 };

	block(buf, BK_GRUBENV_HEADER "a=1\n");
	assert_int_equal(bk_grubenv_parse(buf, 1000, &e, &err), -ENOEXEC);
	assert_string_equal(err.msg, "is 1000 bytes, not 1024");
	assert_null(e);

	bk_err_clear(&err);
	block(buf, "# GRUB Environment Blok\na=1\n");
	assert_int_equal(bk_grubenv_parse(buf, sizeof(buf), &e, &err), -ENOEXEC);
	assert_string_equal(err.msg, "no 'GRUB Environment Block' header");

	bk_err_clear(&err);
	block(buf, BK_GRUBENV_HEADER "a=1\n");
	buf[40] = '\0';
	assert_int_equal(bk_grubenv_parse(buf, sizeof(buf), &e, &err), -ENOEXEC);
	assert_string_equal(err.msg, "NUL byte at offset 40");
	assert_null(e);
}

static void test_grubenv_set_refuses_unreadable_names_and_overflow(void **state)
{
	struct bk_grubenv *e = bk_grubenv_new();
	struct bk_err err = { 0 };
	char big[600], buf[BK_GRUBENV_SIZE], want[80];

	assert_int_equal(bk_grubenv_set(e, "", "x", &err), -EINVAL);
	assert_int_equal(bk_grubenv_set(e, "#x", "x", &err), -EINVAL);
	assert_int_equal(bk_grubenv_set(e, "a=b", "x", &err), -EINVAL);
	assert_int_equal(bk_grubenv_set(e, "a\nb", "x", &err), -EINVAL);
	assert_string_equal(err.msg, "invalid grubenv variable name ''");
	assert_true(bk_grubenv_name_is_valid("bootbank_A_state"));

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(bk_grubenv_set(e, "one", big, &err), 0);
	assert_int_equal(bk_grubenv_format(e, buf, sizeof(buf), &err), 0);
	assert_int_equal(bk_grubenv_set(e, "two", big, &err), 0);
	bk_err_clear(&err);
	assert_int_equal(bk_grubenv_format(e, buf, sizeof(buf), &err), -ENOSPC);
	snprintf(want, sizeof(want), "the variables need %zu bytes, a grubenv holds 1024",
		 strlen(BK_GRUBENV_HEADER) + 2 * (3 + 1 + strlen(big) + 1));
	assert_string_equal(err.msg, want);
	bk_grubenv_free(e);
}

/* --- interoperability with grub-editenv ---------------------------------------------------- */

static void test_grubenv_grub_editenv_reads_ours(void **state)
{
	struct bk_test_dir *d = *state;
	struct bk_grubenv *e = bk_grubenv_new();
	struct bk_err err = { 0 };
	char buf[BK_GRUBENV_SIZE + 1], path[128], out[2048];
	const char *const argv[] = { path, "list", NULL };

	assert_int_equal(bk_grubenv_set(e, "bootbank_A_state", "good", &err), 0);
	assert_int_equal(bk_grubenv_set(e, "saved_entry", "a\\b", &err), 0);
	assert_int_equal(bk_grubenv_set(e, "bootbank_pin", "", &err), 0);
	format_ok(e, buf);
	bk_grubenv_free(e);
	bk_test_write(d->dfd, "grubenv", buf);
	snprintf(path, sizeof(path), "%s/grubenv", d->path);

	assert_int_equal(run_editenv(argv, out, sizeof(out)), 0);
	assert_string_equal(out, "bootbank_A_state=good\nsaved_entry=a\\b\nbootbank_pin=\n");
}

static void test_grubenv_we_read_grub_editenv(void **state)
{
	struct bk_test_dir *d = *state;
	char path[128], buf[BK_GRUBENV_SIZE + 8];
	const char *const create[] = { path, "create", NULL };
	const char *const set[] = { path, "set", "x=1", "back=a\\b", "bootbank_B_tries=12", NULL };
	const char *const set2[] = { path, "set", "x=22", NULL };
	const char *const unset[] = { path, "unset", "back", NULL };
	struct bk_grubenv *e;
	const char *name, *value;
	size_t it = 0;

	snprintf(path, sizeof(path), "%s/grubenv", d->path);
	assert_int_equal(run_editenv(create, NULL, 0), 0);
	assert_int_equal(run_editenv(set, NULL, 0), 0);
	assert_int_equal(bk_test_read(d->dfd, "grubenv", buf, sizeof(buf)), BK_GRUBENV_SIZE);
	e = parse_ok(buf, BK_GRUBENV_SIZE);
	assert_string_equal(bk_grubenv_get(e, "x"), "1");
	assert_string_equal(bk_grubenv_get(e, "back"), "a\\b");
	assert_string_equal(bk_grubenv_get(e, "bootbank_B_tries"), "12");
	bk_grubenv_free(e);

	/* grub-editenv rewrites in place (a longer value shifts the rest): still ours to read. */
	assert_int_equal(run_editenv(set2, NULL, 0), 0);
	assert_int_equal(run_editenv(unset, NULL, 0), 0);
	assert_int_equal(bk_test_read(d->dfd, "grubenv", buf, sizeof(buf)), BK_GRUBENV_SIZE);
	e = parse_ok(buf, BK_GRUBENV_SIZE);
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 0);
	assert_string_equal(name, "x");
	assert_string_equal(value, "22");
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 0);
	assert_string_equal(name, "bootbank_B_tries");
	assert_int_equal(bk_grubenv_next(e, &it, &name, &value), 1);
	bk_grubenv_free(e);
}

/* --- the mapping -------------------------------------------------------------------------- */

static void test_grubenv_state_variables_fit_the_first_sector(void **state)
{
	struct bk_grubenv *old = bk_grubenv_new(), *e = NULL;
	struct bk_bootstate s, back;
	struct bk_err err = { 0 };
	char buf[BK_GRUBENV_SIZE + 1];
	char *pin;

	/* The longest values: every boot state variable must end before byte 512, whatever
	 * else the block holds, so a torn two-sector write cannot mix them. */
	assert_int_equal(bk_bootstate_parse("A=staged:4294967295:100:4294967295 "
					    "B=trying:4294967295:100:4294967295 "
					    "floor=4294967295 pin=B",
					    &s, &err),
			 0);
	assert_int_equal(
		bk_grubenv_set(old, "saved_entry", "something-long-from-another-tool", &err), 0);
	assert_int_equal(bk_grubenv_set(old, "bootbank_A_state", "bad", &err), 0);
	assert_int_equal(bk_boot_grub_encode(old, &s, &e, &err), 0);
	format_ok(e, buf);
	pin = strstr(buf, "\nbootbank_pin=B\n");
	assert_non_null(pin);
	assert_true(pin + strlen("\nbootbank_pin=B\n") - buf <= 512);
	assert_non_null(
		strstr(buf, "bootbank_pin=B\nsaved_entry=something-long-from-another-tool\n"));
	assert_true(strstr(buf, "bootbank_A_state=staged\nbootbank_A_gen=") ==
		    buf + strlen(BK_GRUBENV_HEADER));

	assert_int_equal(bk_boot_grub_decode(e, &back, &err), 0);
	assert_memory_equal(&back, &s, sizeof(s));
	bk_grubenv_free(e);
	bk_grubenv_free(old);
}

static void test_grubenv_decode_refuses_what_the_script_distrusts(void **state)
{
	static const struct {
		const char *name, *value, *msg;
	} bad[] = {
		{ "bootbank_A_tries", "03",
		  "bootbank_A_tries: '03' is not a decimal number of at most 10 digits without "
		  "leading zeros" },
		{ "bootbank_B_gen", "12345678901", NULL },
		{ "bootbank_floor", "-1", NULL },
		{ "bootbank_A_epoch", "", NULL },
		{ "bootbank_B_state", "Good", "bootbank_B_state: unknown state 'Good'" },
		{ "bootbank_pin", "a", "bootbank_pin: 'a' is not A, B or empty" },
	};
	struct bk_bootstate s;

	for (size_t i = 0; i < BK_ELEMENTSOF(bad); i++) {
		struct bk_grubenv *e = bk_grubenv_new();
		struct bk_err err = { 0 };

		assert_int_equal(bk_grubenv_set(e, bad[i].name, bad[i].value, &err), 0);
		assert_int_equal(bk_boot_grub_decode(e, &s, &err), -ENOEXEC);
		if (bad[i].msg)
			assert_string_equal(err.msg, bad[i].msg);
		else
			assert_non_null(strstr(err.msg, bad[i].name));
		bk_grubenv_free(e);
	}
}

/* --- the backend on real files ------------------------------------------------------------ */

struct fixture {
	struct bk_test_dir dir;
	struct bk_config config;
	struct bk_boot *boot;
};

static int backend_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct bk_boot_env env;
	struct bk_err err = { 0 };
	void *p;

	wrap_reset();
	assert_non_null(f);
	bk_test_dir_setup(&p);
	f->dir = *(struct bk_test_dir *) p;
	free(p);
	assert_int_equal(bk_config_init(&f->config), 0);
	env = (struct bk_boot_env){ f->dir.dfd, f->dir.path, &f->config };
	assert_int_equal(bk_boot_open("grub", &env, &f->boot, &err), 0);
	*state = f;
	return 0;
}

static int backend_teardown(void **state)
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

static int store_dfd(struct fixture *f)
{
	int dfd = openat(f->dir.dfd, STORE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(dfd >= 0);
	return dfd;
}

static void make_store_dir(struct fixture *f)
{
	assert_int_equal(mkdirat(f->dir.dfd, "boot", 0755), 0);
	assert_int_equal(mkdirat(f->dir.dfd, STORE_DIR, 0755), 0);
}

static struct bk_boot_data sample(const char *text)
{
	struct bk_boot_data d;
	struct bk_err err = { 0 };

	bk_boot_data_init(&d);
	assert_int_equal(bk_bootstate_parse(text, &d.state, &err), 0);
	return d;
}

static void test_grubenv_backend_absent_store_is_two_empty_banks(void **state)
{
	struct fixture *f = *state;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char loc[256];

	assert_string_equal(bk_boot_name(f->boot), "grub");
	snprintf(loc, sizeof(loc), "%s/" STORE_FILE, f->dir.path);
	assert_string_equal(bk_boot_location(f->boot), loc);
	assert_int_equal(bk_boot_load(f->boot, &d, &err), 0);
	assert_int_equal(d.state.bank[BK_BANK_A].state, BK_BANK_EMPTY);
	assert_int_equal(d.state.pin, _BK_BANK_INVALID);
	/* open and load create nothing */
	assert_int_equal(faccessat(f->dir.dfd, "boot", F_OK, 0), -1);
}

static void test_grubenv_backend_save_load_round_trip(void **state)
{
	struct fixture *f = *state;
	struct bk_boot_data d = sample("A=good:1:0:1 B=trying:2:3:2 floor=1 pin=A"), back;
	struct bk_err err = { 0 };
	char buf[2048], list[1024], path[160];
	const char *const argv[] = { path, "list", NULL };
	struct stat st;
	int dfd;

	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_int_equal(fstatat(f->dir.dfd, STORE_FILE, &st, 0), 0);
	assert_int_equal(st.st_size, BK_GRUBENV_SIZE);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(bk_test_read(f->dir.dfd, STORE_FILE, buf, sizeof(buf)), BK_GRUBENV_SIZE);
	assert_non_null(strstr(buf, BK_GRUBENV_HEADER "bootbank_A_state=good\nbootbank_A_gen=1\n"
						      "bootbank_A_tries=0\nbootbank_A_epoch=1\n"
						      "bootbank_B_state=trying\nbootbank_B_gen=2\n"
						      "bootbank_B_tries=3\nbootbank_B_epoch=2\n"
						      "bootbank_floor=1\nbootbank_pin=A\n#"));
	dfd = store_dfd(f);
	assert_int_equal(bk_test_count_prefix(dfd, ".#"), 0);
	close(dfd);

	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_memory_equal(&back.state, &d.state, sizeof(d.state));

	/* ... and grub-editenv, GRUB's own reader, sees the same. */
	snprintf(path, sizeof(path), "%s/" STORE_FILE, f->dir.path);
	assert_int_equal(run_editenv(argv, list, sizeof(list)), 0);
	assert_non_null(strstr(list, "bootbank_B_tries=3\n"));
	assert_non_null(strstr(list, "bootbank_pin=A\n"));
}

static void test_grubenv_backend_keeps_other_variables(void **state)
{
	struct fixture *f = *state;
	struct bk_boot_data d = sample("A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	struct bk_err err = { 0 };
	char buf[BK_GRUBENV_SIZE], got[2048];
	int fd;

	make_store_dir(f);
	block(buf, BK_GRUBENV_HEADER "saved_entry=x\nbootbank_A_state=bad\nodd\\\\=v\n");
	fd = openat(f->dir.dfd, STORE_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t) sizeof(buf));
	close(fd);

	assert_int_equal(bk_boot_save(f->boot, &d, &err), 0);
	assert_int_equal(bk_test_read(f->dir.dfd, STORE_FILE, got, sizeof(got)), BK_GRUBENV_SIZE);
	/* ours first, then the others in their order, names byte for byte */
	assert_non_null(strstr(got, "bootbank_pin=\nsaved_entry=x\nodd\\\\=v\n#"));
	assert_null(strstr(got, "bootbank_A_state=bad"));
}

static void test_grubenv_backend_corrupt_store_is_left_alone(void **state)
{
	static const struct {
		const char *text;
		size_t len;
		const char *msg;
	} cases[] = {
		{ BK_GRUBENV_HEADER "bootbank_A_state=good\n", 100, "is 100 bytes, not 1024" },
		{ BK_GRUBENV_HEADER "bootbank_A_tries=03\n", BK_GRUBENV_SIZE,
		  "bootbank_A_tries: '03' is not" },
		{ BK_GRUBENV_HEADER "bootbank_B_state=trying\nbootbank_B_tries=101\n",
		  BK_GRUBENV_SIZE, "tries_left 101 is above 100" },
	};
	struct fixture *f = *state;
	struct bk_boot_data d = sample("A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none"), got;

	make_store_dir(f);
	for (size_t i = 0; i < BK_ELEMENTSOF(cases); i++) {
		struct bk_err err = { 0 };
		char buf[BK_GRUBENV_SIZE], back[2048], want[300];
		int fd;

		block(buf, cases[i].text);
		fd = openat(f->dir.dfd, STORE_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, buf, cases[i].len), (ssize_t) cases[i].len);
		close(fd);

		assert_int_equal(bk_boot_load(f->boot, &got, &err), -ENOEXEC);
		snprintf(want, sizeof(want), "corrupt boot state '%s/%s': ", f->dir.path,
			 STORE_FILE);
		assert_true(strncmp(err.msg, want, strlen(want)) == 0);
		assert_non_null(strstr(err.msg, cases[i].msg));

		bk_err_clear(&err);
		assert_int_equal(bk_boot_save(f->boot, &d, &err), -ENOEXEC);
		assert_true(strncmp(err.msg, want, strlen(want)) == 0);
		assert_int_equal(bk_test_read(f->dir.dfd, STORE_FILE, back, sizeof(back)),
				 (ssize_t) cases[i].len);
		assert_memory_equal(back, buf, cases[i].len);
	}
}

static void test_grubenv_backend_failed_rename_keeps_old_store(void **state)
{
	struct fixture *f = *state;
	struct bk_boot_data d1 = sample("A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	struct bk_boot_data d2 = sample("A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none"), back;
	struct bk_err err = { 0 };
	int dfd;

	assert_int_equal(bk_boot_save(f->boot, &d1, &err), 0);
	wrap_renameat_armed = 1;
	will_return(__wrap_renameat, EIO);
	assert_int_equal(bk_boot_save(f->boot, &d2, &err), -EIO);
	assert_non_null(strstr(err.msg, "grubenv"));
	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_memory_equal(&back.state, &d1.state, sizeof(d1.state));
	dfd = store_dfd(f);
	assert_int_equal(bk_test_count_prefix(dfd, ".#"), 0);

	/* A temp file of a killed save is removed by the next one. */
	bk_test_write(dfd, ".#grubenv.deadbeef", "partial");
	assert_int_equal(bk_boot_save(f->boot, &d2, &err), 0);
	assert_int_equal(bk_test_count_prefix(dfd, ".#"), 0);
	close(dfd);
	assert_int_equal(bk_boot_load(f->boot, &back, &err), 0);
	assert_memory_equal(&back.state, &d2.state, sizeof(d2.state));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grubenv_empty_is_1024_bytes),
		cmocka_unit_test(test_grubenv_round_trip_keeps_order_and_escapes),
		cmocka_unit_test(test_grubenv_parse_follows_grub),
		cmocka_unit_test(test_grubenv_rejects_what_grub_rejects),
		cmocka_unit_test(test_grubenv_set_refuses_unreadable_names_and_overflow),
		cmocka_unit_test_setup_teardown(test_grubenv_grub_editenv_reads_ours,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test_setup_teardown(test_grubenv_we_read_grub_editenv,
						bk_test_dir_setup, bk_test_dir_teardown),
		cmocka_unit_test(test_grubenv_state_variables_fit_the_first_sector),
		cmocka_unit_test(test_grubenv_decode_refuses_what_the_script_distrusts),
		cmocka_unit_test_setup_teardown(
			test_grubenv_backend_absent_store_is_two_empty_banks, backend_setup,
			backend_teardown),
		cmocka_unit_test_setup_teardown(test_grubenv_backend_save_load_round_trip,
						backend_setup, backend_teardown),
		cmocka_unit_test_setup_teardown(test_grubenv_backend_keeps_other_variables,
						backend_setup, backend_teardown),
		cmocka_unit_test_setup_teardown(test_grubenv_backend_corrupt_store_is_left_alone,
						backend_setup, backend_teardown),
		cmocka_unit_test_setup_teardown(test_grubenv_backend_failed_rename_keeps_old_store,
						backend_setup, backend_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

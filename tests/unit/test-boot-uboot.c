/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `uboot` boot state backend: the U-Boot environment through libubootenv, in files beneath
 * a mkdtemp() root (ROOT/etc/fw_env.config naming ROOT/var/lib/bootbank/uboot/env.0 and .1).
 * Interoperability with fw_printenv/fw_setenv (run with posix_spawn; skipped when
 * libubootenv-tool is missing), the redundant copies (a torn write of the new copy leaves the
 * old state, a failing write changes nothing), the blank and corrupt stores, and the
 * variables' checks. fsync is wrapped: the backend's own flush of the copies must be checked.
 */
#include <errno.h>
#include <linux/fs.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "bk-test-boot.h"

#include "bk-boot-uboot.h"

#define ENV_DIR	 "var/lib/bootbank/uboot"
#define ENV0	 ENV_DIR "/env.0"
#define ENV1	 ENV_DIR "/env.1"
#define ENV_SIZE 0x4000

static int setup(void **state)
{
	struct bk_test_boot *f = bk_test_boot_new();

	bk_test_mkdir_p(f->dir.dfd, "etc/bootbank");
	bk_test_mkdir_p(f->dir.dfd, ENV_DIR);
	*state = f;
	return 0;
}

/*
 * ROOT/host-fw_env.config: the same copies with host paths, for fw_printenv -c (in a static
 * buffer, valid until the next call).
 */
static const char *host_config(struct bk_test_boot *f)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/host-fw_env.config", f->dir.path);
	return path;
}

/* An env file of size bytes, every byte fill (0x00 or 0xff: never written). */
static void make_env(struct bk_test_boot *f, const char *name, size_t size, int fill)
{
	char *buf = malloc(size);
	int fd;

	assert_non_null(buf);
	memset(buf, fill, size);
	fd = openat(f->dir.dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, size), (ssize_t) size);
	close(fd);
	free(buf);
}

/* ROOT/etc/fw_env.config with n copies (1 or 2) of size bytes, and the host-path twin. */
static void write_config(struct bk_test_boot *f, int n, size_t size)
{
	char text[512], host[512];

	if (n == 2) {
		snprintf(text, sizeof(text), "# bootbank test\n/%s 0x0 0x%zx\n/%s 0 %zx\n", ENV0,
			 size, ENV1, size);
		snprintf(host, sizeof(host), "%s/%s 0x0 0x%zx\n%s/%s 0x0 0x%zx\n", f->dir.path,
			 ENV0, size, f->dir.path, ENV1, size);
	} else {
		snprintf(text, sizeof(text), "/%s 0x0 0x%zx\n", ENV0, size);
		snprintf(host, sizeof(host), "%s/%s 0x0 0x%zx\n", f->dir.path, ENV0, size);
	}
	bk_test_write(f->dir.dfd, "etc/fw_env.config", text);
	bk_test_write(f->dir.dfd, "host-fw_env.config", host);
}

/* The usual sandbox: two blank copies and the board's default environment. */
static void redundant_store(struct bk_test_boot *f)
{
	write_config(f, 2, ENV_SIZE);
	make_env(f, ENV0, ENV_SIZE, 0);
	make_env(f, ENV1, ENV_SIZE, 0);
	bk_test_write(f->dir.dfd, BK_BOOT_UBOOT_DEFAULT_ENV,
		      "bootcmd=load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}\n"
		      "bootdelay=2\n");
}

static struct bk_boot *open_ok(struct bk_test_boot *f)
{
	struct bk_boot *b = NULL;
	struct bk_err err = { 0 };

	assert_int_equal(bk_test_boot_open(f, "uboot", &b, &err), 0);
	return b;
}

/* Run argv (no shell), stdout into out; returns the exit status, -1 when it cannot run. */
static int run(const char *const *argv, char *out, size_t len)
{
	posix_spawn_file_actions_t fa;
	char *args[16] = { NULL };
	int pipefd[2], status;
	size_t n = 0;
	pid_t pid;

	/* posix_spawn wants char *const[]; memcpy keeps the strings' constness honest. */
	for (size_t i = 0; argv[i] && i < BK_ELEMENTSOF(args) - 1; i++)
		memcpy(&args[i], &argv[i], sizeof(args[i]));
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, args[0], &fa, NULL, args, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	for (;;) {
		ssize_t k = read(pipefd[0], out + n, len - 1 - n);

		if (k <= 0)
			break;
		n += (size_t) k;
	}
	out[n] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool have_tool(const char *name)
{
	char cmd[128], out[64];
	const char *argv[] = { "sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd), "command -v %s", name);
	return run(argv, out, sizeof(out)) == 0;
}

/* fw_printenv -c HOSTCONFIG -n NAME into out (trailing newline removed); its exit status. */
static int fw_printenv(struct bk_test_boot *f, const char *name, char *out, size_t len)
{
	const char *argv[] = { "fw_printenv", "-c", host_config(f), "-n", name, NULL };
	int r = run(argv, out, len);

	out[strcspn(out, "\n")] = '\0';
	return r;
}

/* Whether fw_printenv lists NAME (fw_printenv -n prints nothing and succeeds when it is not). */
static bool fw_has(struct bk_test_boot *f, const char *name)
{
	const char *argv[] = { "fw_printenv", "-c", host_config(f), NULL };
	char out[8192], key[128];

	assert_int_equal(run(argv, out, sizeof(out)), 0);
	snprintf(key, sizeof(key), "\n%s=", name);
	return strncmp(out, key + 1, strlen(key + 1)) == 0 || strstr(out, key);
}

/* fw_setenv -c HOSTCONFIG NAME [VALUE] (no value: delete); its exit status. */
static int fw_setenv(struct bk_test_boot *f, const char *name, const char *value)
{
	const char *argv[] = { "fw_setenv", "-c", host_config(f), name, value, NULL };
	char out[256];

	return run(argv, out, sizeof(out));
}

/* --- tests ------------------------------------------------------------------------------- */

static void test_uboot_registry_and_location(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot *b;
	char want[256];

	redundant_store(f);
	assert_true(bk_boot_backend_exists("uboot"));
	b = open_ok(f);
	assert_string_equal(bk_boot_name(b), "uboot");
	assert_true(bk_boot_features(b) & BK_BOOT_KEEPS_BAD_REASON);
	assert_true(bk_boot_features(b) & BK_BOOT_KEEPS_LAST_BOOT);
	snprintf(want, sizeof(want), "%s/%s + %s/%s", f->dir.path, ENV0, f->dir.path, ENV1);
	assert_string_equal(bk_boot_location(b), want);
	bk_boot_free(b);
}

static void test_uboot_config_errors(void **state)
{
	static const struct {
		const char *text;
		int code;
		const char *msg;
	} cases[] = {
		{ NULL, -ENOENT, "fw_env.config': No such file or directory (the uboot backend" },
		{ "# nothing\n\n", -EINVAL, "fw_env.config' names no environment copy" },
		{ "/var/lib/bootbank/uboot/env.0 0x0\n", -EINVAL,
		  "fw_env.config':1: expected 'DEVICE OFFSET SIZE [SECTOR-SIZE [SECTORS]]'" },
		{ "#\n/a 0 4000\n/b 0 4000\n/c 0 4000\n", -EINVAL,
		  "fw_env.config':4: more than two environment copies" },
		{ "/a 0 4000\n/b 0 8000\n", -EINVAL, "the two copies differ in size" },
		{ "/a 0 0x4\n", -EINVAL, "fw_env.config':1: offset or size out of range" },
		{ "relative 0 4000\n", -EINVAL, "device 'relative' is not an absolute path" },
		{ "/../../../etc/passwd 0 4000\n", -EXDEV, "cannot open the U-Boot environment" },
	};
	struct bk_test_boot *f = *state;

	for (size_t i = 0; i < BK_ELEMENTSOF(cases); i++) {
		struct bk_boot *b = (struct bk_boot *) 0x1;
		struct bk_err err = { 0 };

		(void) unlinkat(f->dir.dfd, "etc/fw_env.config", 0);
		if (cases[i].text)
			bk_test_write(f->dir.dfd, "etc/fw_env.config", cases[i].text);
		assert_int_equal(bk_test_boot_open(f, "uboot", &b, &err), cases[i].code);
		if (!strstr(err.msg, cases[i].msg))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
		assert_ptr_equal(b, (struct bk_boot *) 0x1);
	}
}

static void test_uboot_absent_and_blank(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=staged:0:0:1 B=empty:0:0:0 floor=0 pin=none");
	struct bk_err err = { 0 };
	struct bk_boot *b;
	char buf[64];

	write_config(f, 2, ENV_SIZE);
	/* The devices do not exist: two empty banks, and nothing is created. */
	b = open_ok(f);
	bk_test_boot_assert_state(b, "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none");
	assert_int_equal(bk_boot_save(b, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "env.0' does not exist"));
	assert_int_equal(faccessat(f->dir.dfd, ENV0, F_OK, 0), -1);
	bk_boot_free(b);

	/* One copy of two: a broken configuration, not an empty store. */
	make_env(f, ENV0, ENV_SIZE, 0);
	b = open_ok(f);
	bk_err_clear(&err);
	assert_int_equal(bk_boot_load(b, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "env.1' does not exist"));
	bk_boot_free(b);
	d = bk_test_boot_data("A=staged:0:0:1 B=empty:0:0:0 floor=0 pin=none");

	/* Never written (zeros, or 0xff like erased flash): two empty banks. */
	make_env(f, ENV0, ENV_SIZE, 0);
	make_env(f, ENV1, ENV_SIZE, 0xff);
	b = open_ok(f);
	bk_test_boot_assert_state(b, "A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none");
	/* No default environment: refused, the store is left blank. */
	bk_err_clear(&err);
	assert_int_equal(bk_boot_save(b, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "the U-Boot environment was never written"));
	assert_non_null(strstr(err.msg, BK_BOOT_UBOOT_DEFAULT_ENV));
	assert_int_equal(bk_test_read(f->dir.dfd, ENV0, buf, 2), 1);
	assert_int_equal(buf[0], 0);

	/* With the board's default environment: saved on top of it. */
	bk_test_write(f->dir.dfd, BK_BOOT_UBOOT_DEFAULT_ENV, "bootcmd=run distro_bootcmd\n");
	bk_err_clear(&err);
	assert_int_equal(bk_boot_save(b, &d, &err), 0);
	bk_test_boot_assert_state(b, "A=staged:0:0:1 B=empty:0:0:0 floor=0 pin=none");
	bk_boot_free(b);
	if (have_tool("fw_printenv")) {
		assert_int_equal(fw_printenv(f, "bootcmd", buf, sizeof(buf)), 0);
		assert_string_equal(buf, "run distro_bootcmd");
	}
}

static void test_uboot_roundtrip_and_copies(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:3:0:2 B=bad:4:0:3 floor=2 pin=A"), back;
	struct bk_err err = { 0 };
	struct bk_boot *b;
	unsigned char c0[5], c1[5];

	redundant_store(f);
	b = open_ok(f);
	assert_int_equal(
		bk_boot_data_set_bad_reason(&d, BK_BANK_B, "kernel panic \"x\" at boot", &err), 0);
	d.has_last = true;
	d.last = (struct bk_booted){ BK_BANK_A, BK_REASON_ROLLBACK, 1763800000 };
	assert_int_equal(bk_boot_save(b, &d, &err), 0);
	assert_int_equal(bk_boot_load(b, &back, &err), 0);
	assert_memory_equal(&back.state, &d.state, sizeof(d.state));
	assert_string_equal(back.bad_reason[BK_BANK_B], "kernel panic \"x\" at boot");
	assert_string_equal(back.bad_reason[BK_BANK_A], "");
	assert_true(back.has_last);
	assert_int_equal(back.last.bank, BK_BANK_A);
	assert_int_equal(back.last.reason, BK_REASON_ROLLBACK);
	assert_true(back.last.time == 1763800000);

	/*
	 * The redundant copies: the first save went to copy 1 (flag 1), the next goes to copy 0
	 * with a higher flag, and copy 1 still holds the previous state.
	 */
	d.state.bank[BK_BANK_B].state = BK_BANK_GOOD; /* drops its reason */
	d.state.pin = _BK_BANK_INVALID;
	d.has_last = false;
	assert_int_equal(bk_boot_save(b, &d, &err), 0);
	{
		int fd0 = openat(f->dir.dfd, ENV0, O_RDONLY | O_CLOEXEC);
		int fd1 = openat(f->dir.dfd, ENV1, O_RDONLY | O_CLOEXEC);

		assert_int_equal(pread(fd0, c0, 5, 0), 5);
		assert_int_equal(pread(fd1, c1, 5, 0), 5);
		close(fd0);
		close(fd1);
	}
	assert_int_equal(c1[4], 1);
	assert_int_equal(c0[4], 2);
	assert_int_equal(bk_boot_load(b, &back, &err), 0);
	assert_string_equal(back.bad_reason[BK_BANK_B], "");
	assert_int_equal(back.state.pin, _BK_BANK_INVALID);
	assert_false(back.has_last);
	bk_test_boot_assert_state(b, "A=good:3:0:2 B=good:4:0:3 floor=2 pin=none");
	bk_boot_free(b);
}

/* A torn write of the new copy (power cut): the other copy still holds the previous state. */
static void test_uboot_torn_write_keeps_old_state(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot *b;
	int fd;

	redundant_store(f);
	b = open_ok(f);
	bk_test_boot_save(b, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none"); /* copy 1 */
	bk_test_boot_save(b, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none"); /* copy 0 */
	bk_test_boot_assert_state(b, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");

	/* Copy 0 half written: its tail is what an erase left. */
	fd = openat(f->dir.dfd, ENV0, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	{
		char zeros[ENV_SIZE / 2] = { 0 };

		assert_int_equal(pwrite(fd, zeros, sizeof(zeros), ENV_SIZE / 2), ENV_SIZE / 2);
		/* and a flipped byte in the data, in case the tail was zero already */
		assert_int_equal(pwrite(fd, "X", 1, 6), 1);
	}
	close(fd);
	bk_test_boot_assert_state(b, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");

	/* The next save writes the broken copy again, and the state moves on. */
	bk_test_boot_save(b, "A=good:1:0:1 B=trying:2:1:1 floor=1 pin=none");
	bk_test_boot_assert_state(b, "A=good:1:0:1 B=trying:2:1:1 floor=1 pin=none");
	bk_boot_free(b);
}

/* A write that fails: the error names the store, and the previous state still loads. */
static void test_uboot_failing_write(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	struct bk_err err = { 0 };
	struct bk_boot *b;
	int fd, flags = FS_IMMUTABLE_FL, r;

	redundant_store(f);
	b = open_ok(f);
	bk_test_boot_save(b, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none"); /* copy 1 current */

	/* Copy 0, the one the next save writes, cannot be opened for writing. */
	fd = openat(f->dir.dfd, ENV0, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	r = ioctl(fd, FS_IOC_SETFLAGS, &flags);
	if (r < 0) {
		close(fd);
		bk_boot_free(b);
		skip(); /* no immutable flag here (filesystem or privileges) */
	}
	r = bk_boot_save(b, &d, &err);
	flags = 0;
	assert_int_equal(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
	close(fd);
	assert_true(r < 0);
	assert_non_null(strstr(err.msg, "cannot save '"));
	assert_non_null(strstr(err.msg, "cannot write the U-Boot environment"));
	bk_test_boot_assert_state(b, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");

	/* The backend's own flush fails: reported (the new copy may or may not be durable). */
	wrap_fsync_armed = 1;
	will_return(__wrap_fsync, EIO);
	bk_err_clear(&err);
	assert_int_equal(bk_boot_save(b, &d, &err), -EIO);
	assert_non_null(strstr(err.msg, "cannot flush '"));
	wrap_reset();
	bk_boot_free(b);
}

/* The variables do not fit: -ENOSPC, nothing written. */
static void test_uboot_full(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	struct bk_err err = { 0 };
	char reason[BK_BOOT_BAD_REASON_MAX + 1];
	struct bk_boot *b;

	write_config(f, 2, 0x180);
	make_env(f, ENV0, 0x180, 0);
	make_env(f, ENV1, 0x180, 0);
	bk_test_write(f->dir.dfd, BK_BOOT_UBOOT_DEFAULT_ENV, "bootdelay=0\n");
	b = open_ok(f);
	bk_test_boot_save(b, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	memset(reason, 'r', BK_BOOT_BAD_REASON_MAX);
	reason[BK_BOOT_BAD_REASON_MAX] = '\0';
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_B, reason, &err), 0);
	assert_int_equal(bk_boot_save(b, &d, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "do not fit the 384-byte U-Boot environment"));
	bk_test_boot_assert_state(b, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	bk_boot_free(b);
}

static void test_uboot_corrupt(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d = bk_test_boot_data("A=good:1:0:1 B=empty:0:0:0 floor=0 pin=none");
	struct bk_err err = { 0 };
	struct bk_boot *b;
	char buf[8];

	/* Both copies hold bytes, neither a valid CRC: corrupt, never rewritten. */
	redundant_store(f);
	make_env(f, ENV0, ENV_SIZE, 'x');
	make_env(f, ENV1, ENV_SIZE, 'y');
	b = open_ok(f);
	assert_int_equal(bk_boot_load(b, &d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "corrupt boot state '"));
	assert_non_null(strstr(err.msg, "no copy of the U-Boot environment has a valid CRC"));
	bk_err_clear(&err);
	assert_int_equal(bk_boot_save(b, &d, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "corrupt boot state '"));
	assert_int_equal(bk_test_read(f->dir.dfd, ENV0, buf, 3), 2);
	assert_string_equal(buf, "xx");
	bk_boot_free(b);
}

/* Values bankctl never writes: corrupt (exit 6), the message names the variable. */
static void test_uboot_malformed_values(void **state)
{
	static const struct {
		const char *name, *value, *msg;
	} cases[] = {
		{ "bootbank_A_tries", "03", "bootbank_A_tries: '03' is not a canonical decimal" },
		{ "bootbank_A_gen", "1a", "bootbank_A_gen: '1a' is not a canonical decimal" },
		{ "bootbank_B_epoch", "+1", "bootbank_B_epoch: '+1' is not a canonical decimal" },
		{ "bootbank_A_state", "fine", "bootbank_A_state: unknown state 'fine'" },
		{ "bootbank_pin", "C", "bootbank_pin: 'C' is not A or B" },
		{ "bootbank_pin", "AB", "bootbank_pin: 'AB' is not A or B" },
		{ "bootbank_last", "A primary",
		  "bootbank_last: 'A primary' is not 'BANK REASON TIME'" },
		{ "bootbank_last", "A sideways 1", "bootbank_last: unknown reason 'sideways'" },
		{ "bootbank_A_tries", "101", "tries_left 101 is above 100" },
		{ "bootbank_floor", "4294967296", "floor" },
	};
	struct bk_test_boot *f = *state;
	struct bk_boot *b;

	if (!have_tool("fw_setenv"))
		skip();
	redundant_store(f);
	b = open_ok(f);
	for (size_t i = 0; i < BK_ELEMENTSOF(cases); i++) {
		struct bk_boot_data d;
		struct bk_err err = { 0 };

		bk_test_boot_save(b, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
		assert_int_equal(fw_setenv(f, cases[i].name, cases[i].value), 0);
		assert_int_equal(bk_boot_load(b, &d, &err), -ENOEXEC);
		if (!strstr(err.msg, cases[i].msg) || !strstr(err.msg, "corrupt boot state '"))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
	}
	bk_boot_free(b);
}

/* fw_printenv reads what the backend writes, the backend what fw_setenv writes. */
static void test_uboot_fw_tools_interop(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	struct bk_boot *b;
	char buf[256];

	if (!have_tool("fw_printenv") || !have_tool("fw_setenv"))
		skip();
	redundant_store(f);
	b = open_ok(f);
	d = bk_test_boot_data("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=B");
	assert_int_equal(bk_boot_data_set_bad_reason(&d, BK_BANK_B, "no tries left", &err), 0);
	d.has_last = true;
	d.last = (struct bk_booted){ BK_BANK_B, BK_REASON_FALLBACK, 42 };
	assert_int_equal(bk_boot_save(b, &d, &err), 0);

	assert_int_equal(fw_printenv(f, "bootbank_B_state", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "bad");
	assert_int_equal(fw_printenv(f, "bootbank_B_gen", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2");
	assert_int_equal(fw_printenv(f, "bootbank_pin", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "B");
	assert_int_equal(fw_printenv(f, "bootbank_B_bad_reason", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "no tries left");
	assert_int_equal(fw_printenv(f, "bootbank_last", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "B fallback 42");
	/* The board's own variables survive every save. */
	assert_int_equal(fw_printenv(f, "bootdelay", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2");
	/* No pin, no reason: the variables are gone (U-Boot has no empty values). */
	d = bk_test_boot_data("A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_boot_save(b, &d, &err), 0);
	assert_false(fw_has(f, "bootbank_pin"));
	assert_false(fw_has(f, "bootbank_B_bad_reason"));
	assert_false(fw_has(f, "bootbank_last"));
	assert_true(fw_has(f, "bootbank_A_state"));

	/* fw_setenv writes (the other copy, as the backend would): the backend reads it. */
	assert_int_equal(fw_setenv(f, "bootbank_B_state", "bad"), 0);
	assert_int_equal(fw_setenv(f, "bootbank_B_bad_reason", "marked at the prompt"), 0);
	assert_int_equal(fw_setenv(f, "bootbank_pin", "A"), 0);
	assert_int_equal(fw_setenv(f, "bootbank_key", "rollback"), 0);
	assert_int_equal(bk_boot_load(b, &d, &err), 0);
	bk_test_boot_assert_state(b, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=A");
	assert_string_equal(d.bad_reason[BK_BANK_B], "marked at the prompt");
	/* A save drops the operator's one-boot key. */
	assert_int_equal(bk_boot_save(b, &d, &err), 0);
	assert_false(fw_has(f, "bootbank_key"));
	assert_int_equal(fw_setenv(f, "bootbank_A_state", NULL), 0); /* deleted: empty bank */
	bk_test_boot_assert_state(b, "A=empty:1:0:1 B=bad:2:0:1 floor=1 pin=A");
	bk_boot_free(b);
}

/* One copy (a board without CONFIG_SYS_REDUNDAND_ENVIRONMENT): works, with fw_printenv too. */
static void test_uboot_single_copy(void **state)
{
	struct bk_test_boot *f = *state;
	struct bk_boot *b;
	char buf[64], want[128];

	write_config(f, 1, ENV_SIZE);
	make_env(f, ENV0, ENV_SIZE, 0xff);
	bk_test_write(f->dir.dfd, BK_BOOT_UBOOT_DEFAULT_ENV, "bootdelay=0\n");
	b = open_ok(f);
	snprintf(want, sizeof(want), "%s/%s", f->dir.path, ENV0);
	assert_string_equal(bk_boot_location(b), want);
	bk_test_boot_save(b, "A=trying:1:2:1 B=empty:0:0:0 floor=0 pin=none");
	bk_test_boot_assert_state(b, "A=trying:1:2:1 B=empty:0:0:0 floor=0 pin=none");
	if (have_tool("fw_printenv")) {
		assert_int_equal(fw_printenv(f, "bootbank_A_tries", buf, sizeof(buf)), 0);
		assert_string_equal(buf, "2");
	}
	bk_boot_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_uboot_registry_and_location, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_config_errors, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_absent_and_blank, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_roundtrip_and_copies, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_torn_write_keeps_old_state, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_failing_write, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_full, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_corrupt, setup, bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_malformed_values, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_fw_tools_interop, setup,
						bk_test_boot_teardown),
		cmocka_unit_test_setup_teardown(test_uboot_single_copy, setup,
						bk_test_boot_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

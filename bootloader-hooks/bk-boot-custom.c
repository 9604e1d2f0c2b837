/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `custom` backend: an executable (system.conf `[boot] custom-backend`) that speaks RAUC's
 * custom bootloader convention, so a script written for RAUC keeps working
 * (docs/custom-backend.md):
 *
 *   EXE get-primary             prints the bootname of the primary bank ("A" or "B")
 *   EXE set-primary BANK        the bank to boot next
 *   EXE get-state BANK          prints "good" or "bad"
 *   EXE set-state BANK good|bad
 *   EXE get-current             prints the booted bank (not called: the kernel command line
 *                               tells bootbank which bank booted)
 *
 * It is run with posix_spawn and an argv (no shell), stdin from /dev/null, within a time
 * limit; exit status 0 is success, stdout is the answer, the first line of stderr goes into
 * the error message.
 *
 * That convention holds two facts per bank (good or bad) and one choice (primary). The rest of
 * the boot state (generations, tries, epochs, floor, pin, bad reasons, last boot) lives in a
 * side file, ROOT/var/lib/bootbank/custom-backend.state, replaced atomically. A save writes
 * the side file first, then tells the executable what changed: set-state bad for banks that
 * are no longer eligible, set-state good for eligible ones, set-primary for the bank the model
 * boots next. A load reads the side file and lets the executable's answers win: a bank it
 * calls bad is bad (its loader gave up on it, or someone marked it), a bad or trying bank it
 * calls good is good (marked good outside bankctl), and a primary other than the model's
 * choice is a rollback to it (a pin), when that bank is eligible.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk-boot-backend.h"
#include "bk-fs.h"
#include "bk-log.h"

#define SIDE_DIR       "var/lib/bootbank"
#define SIDE_FILE      "custom-backend.state"
#define SIDE_MAX_SIZE  4096
#define RUN_TIMEOUT_MS 30000
#define OUTPUT_MAX     4096

struct custom_priv {
	char exe[PATH_MAX]; /* the executable as spawned (beneath the root in a sandbox) */
};

static struct custom_priv *priv(struct bk_boot *b)
{
	return b->priv;
}

static int custom_open(struct bk_boot *b, struct bk_err *err)
{
	const char *root = b->env.root;
	const char *exe = b->env.config ? b->env.config->custom_backend : NULL;
	bool host = strcmp(root, "/") == 0;
	const char *sep = root[0] != '\0' && root[strlen(root) - 1] == '/' ? "" : "/";
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int n;

	if (!exe || exe[0] != '/')
		return bk_err_set(err, -EINVAL,
				  "the custom boot state backend needs [boot] custom-backend in "
				  "system.conf (an absolute path)");
	/* A host path: beneath the root in a sandbox, like every path of system.conf. */
	fd = bk_open_beneath(b->env.root_fd, exe + 1, O_PATH | O_CLOEXEC, 0, false);
	n = snprintf(priv(b)->exe, sizeof(priv(b)->exe), "%s%s", host ? "" : root, exe);
	if (n < 0 || (size_t) n >= sizeof(priv(b)->exe))
		return bk_err_set(err, -ENAMETOOLONG, "custom backend path '%s' is too long", exe);
	if (fd < 0)
		return bk_err_set(err, fd, "cannot find the custom backend '%s': %s", priv(b)->exe,
				  strerror(-fd));
	if (fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "cannot stat the custom backend '%s': %m",
				  priv(b)->exe);
	if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
		return bk_err_set(err, -EACCES, "the custom backend '%s' is not an executable file",
				  priv(b)->exe);
	n = snprintf(b->location, sizeof(b->location), "%s (state: %s%s%s/%s)", priv(b)->exe, root,
		     sep, SIDE_DIR, SIDE_FILE);
	if (n < 0 || (size_t) n >= sizeof(b->location))
		return bk_err_set(err, -ENAMETOOLONG, "root '%s' is too long", root);
	return 0;
}

/* --- running the executable --------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RUN_TIMEOUT_MS, or BOOTBANK_CUSTOM_TIMEOUT_MS from the environment (tests shorten it). */
static int timeout_ms(void)
{
	const char *e = secure_getenv("BOOTBANK_CUSTOM_TIMEOUT_MS");
	uint64_t v;

	if (e && bk_parse_u64(e, &v) == 0 && v > 0 && v <= RUN_TIMEOUT_MS)
		return (int) v;
	return RUN_TIMEOUT_MS;
}

/*
 * Run EXE verb [args...]; its stdout (trailing blanks removed) into out. Returns 0, or -EIO
 * with a message naming the command: it could not start, exited non-zero or by a signal, or
 * did not finish within RUN_TIMEOUT_MS (then it is killed).
 */
static int run(struct bk_boot *b, const char *const *args, char *out, size_t outlen,
	       struct bk_err *err)
{
	char *argv[5] = { NULL };
	char errbuf[256] = "";
	size_t n_out = 0, n_err = 0;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	int64_t deadline = now_ms() + timeout_ms();
	bool timed_out = false;
	char cmd[128];
	pid_t pid;
	int status, r;

	/* posix_spawn takes char *const[]; the strings are not modified. */
	memcpy(&argv[0], &(const char *){ priv(b)->exe }, sizeof(char *));
	for (size_t i = 0; i < 3 && args[i]; i++)
		memcpy(&argv[i + 1], &args[i], sizeof(char *));
	snprintf(cmd, sizeof(cmd), "%s%s%s%s%s", args[0], args[1] ? " " : "", args[1] ?: "",
		 args[1] && args[2] ? " " : "", args[1] && args[2] ? args[2] : "");

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		r = -errno;
		if (outp[0] >= 0) {
			close(outp[0]);
			close(outp[1]);
		}
		return bk_err_set(err, r, "cannot run the custom backend: %m");
	}
	r = posix_spawn_file_actions_init(&fa);
	if (r == 0)
		r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	if (r == 0)
		r = posix_spawn(&pid, priv(b)->exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(outp[1]);
	close(errp[1]);
	if (r != 0) {
		close(outp[0]);
		close(errp[0]);
		return bk_err_set(err, -EIO, "cannot run the custom backend '%s %s': %s",
				  priv(b)->exe, cmd, strerror(r));
	}
	BK_DBG(BOOT, "custom backend: %s %s (pid %d)", priv(b)->exe, cmd, (int) pid);

	/* Read both pipes until both are closed or the time is up. */
	for (int open_fds = 2; open_fds > 0;) {
		struct pollfd p[2] = { { outp[0], POLLIN, 0 }, { errp[0], POLLIN, 0 } };
		int64_t left = deadline - now_ms();

		if (left <= 0) {
			timed_out = true;
			break;
		}
		r = poll(p, 2, (int) left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		for (int i = 0; i < 2; i++) {
			char buf[512];
			ssize_t k;

			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			k = read(p[i].fd, buf, sizeof(buf));
			if (k <= 0) {
				if (i == 0) {
					close(outp[0]);
					outp[0] = -1;
				} else {
					close(errp[0]);
					errp[0] = -1;
				}
				open_fds--;
				continue;
			}
			if (i == 0) {
				size_t c = (size_t) k < outlen - 1 - n_out ? (size_t) k :
									     outlen - 1 - n_out;

				memcpy(out + n_out, buf, c);
				n_out += c;
			} else {
				size_t c = (size_t) k < sizeof(errbuf) - 1 - n_err ?
						   (size_t) k :
						   sizeof(errbuf) - 1 - n_err;

				memcpy(errbuf + n_err, buf, c);
				n_err += c;
			}
		}
	}
	if (outp[0] >= 0)
		close(outp[0]);
	if (errp[0] >= 0)
		close(errp[0]);
	if (timed_out)
		(void) kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return bk_err_set(err, -EIO, "custom backend '%s %s': cannot wait: %m",
					  priv(b)->exe, cmd);

	out[n_out] = '\0';
	while (n_out > 0 && strchr(" \t\r\n", out[n_out - 1]))
		out[--n_out] = '\0';
	errbuf[n_err] = '\0';
	errbuf[strcspn(errbuf, "\n")] = '\0';
	if (timed_out)
		return bk_err_set(err, -EIO, "custom backend '%s %s' did not finish within %d ms",
				  priv(b)->exe, cmd, timeout_ms());
	if (WIFSIGNALED(status))
		return bk_err_set(err, -EIO, "custom backend '%s %s' was killed by signal %d",
				  priv(b)->exe, cmd, WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		return bk_err_set(err, -EIO, "custom backend '%s %s' failed (exit %d)%s%s",
				  priv(b)->exe, cmd, WEXITSTATUS(status), errbuf[0] ? ": " : "",
				  errbuf);
	return 0;
}

/* get-primary: *ret A, B, or _BK_BANK_INVALID (no output: no primary yet). */
static int get_primary(struct bk_boot *b, enum bk_bank_id *ret, struct bk_err *err)
{
	const char *args[] = { "get-primary", NULL };
	char out[OUTPUT_MAX];
	int r;

	r = run(b, args, out, sizeof(out), err);
	if (r < 0)
		return r;
	if (out[0] == '\0') {
		*ret = _BK_BANK_INVALID;
		return 0;
	}
	if (strcmp(out, "A") != 0 && strcmp(out, "B") != 0)
		return bk_err_set(err, -ENOEXEC,
				  "custom backend 'get-primary' printed '%.64s', not A or B", out);
	*ret = bk_bank_id_from_string(out);
	return 0;
}

/* get-state BANK: *ret_good. */
static int get_state(struct bk_boot *b, enum bk_bank_id id, bool *ret_good, struct bk_err *err)
{
	const char *args[] = { "get-state", bk_bank_id_to_string(id), NULL };
	char out[OUTPUT_MAX];
	int r;

	r = run(b, args, out, sizeof(out), err);
	if (r < 0)
		return r;
	if (strcmp(out, "good") != 0 && strcmp(out, "bad") != 0)
		return bk_err_set(err, -ENOEXEC,
				  "custom backend 'get-state %s' printed '%.64s', not good or bad",
				  bk_bank_id_to_string(id), out);
	*ret_good = strcmp(out, "good") == 0;
	return 0;
}

/* --- the side file -------------------------------------------------------------------------- */

/*
 * "state A=good:2:0:1 B=trying:3:1:1 floor=1 pin=none" (bk_bootstate_format()), then
 * optional "reason BANK TEXT" and "last BANK REASON TIME" lines.
 */
static int read_side(struct bk_boot *b, struct bk_boot_data *d, bool *ret_found, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *text = NULL;
	bool have_state = false;
	char *save = NULL;
	int r;

	*ret_found = false;
	dfd = bk_open_beneath(b->env.root_fd, SIDE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return bk_err_set(err, dfd, "cannot open the directory of '%s': %s", SIDE_FILE,
				  strerror(-dfd));
	r = bk_read_file_at(dfd, SIDE_FILE, SIDE_MAX_SIZE, &text, NULL, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r == -EFBIG || r == -EBADFD)
		return bk_err_recode(err, -ENOEXEC);
	if (r < 0)
		return r;

	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "state ", 6) == 0 && !have_state) {
			r = bk_bootstate_parse(line + 6, &d->state, err);
			if (r < 0)
				return bk_err_recode(err, -ENOEXEC);
			have_state = true;
		} else if (strncmp(line, "reason ", 7) == 0 && (line[7] == 'A' || line[7] == 'B') &&
			   line[8] == ' ') {
			r = bk_boot_data_set_bad_reason(
				d, bk_bank_id_from_string((char[]){ line[7], '\0' }), line + 9,
				err);
			if (r < 0)
				return bk_err_recode(err, -ENOEXEC);
		} else if (strncmp(line, "last ", 5) == 0) {
			char bank[2], reason[16], time[24];
			int n = 0;

			if (sscanf(line + 5, "%1[AB] %15[a-z] %23[0-9]%n", bank, reason, time,
				   &n) != 3 ||
			    line[5 + n] != '\0' || bk_boot_reason_from_string(reason) < 0 ||
			    bk_parse_u64(time, &d->last.time) < 0)
				return bk_err_set(err, -ENOEXEC, "%s: bad line '%s'", SIDE_FILE,
						  line);
			d->last.bank = bk_bank_id_from_string(bank);
			d->last.reason = bk_boot_reason_from_string(reason);
			d->has_last = true;
		} else {
			return bk_err_set(err, -ENOEXEC, "%s: unexpected line '%.64s'", SIDE_FILE,
					  line);
		}
	}
	if (!have_state)
		return bk_err_set(err, -ENOEXEC, "%s has no state line", SIDE_FILE);
	*ret_found = true;
	return 0;
}

static int write_side(struct bk_boot *b, const struct bk_boot_data *d, struct bk_err *err)
{
	char text[BK_BOOTSTATE_TEXT_MAX + 2 * (BK_BOOT_BAD_REASON_MAX + 16) + 64];
	char state[BK_BOOTSTATE_TEXT_MAX];
	_cleanup_close_ int dfd = -EBADF;
	size_t pos;
	int r;

	r = bk_bootstate_format(&d->state, state, sizeof(state));
	if (r < 0)
		return bk_err_set(err, r, "cannot format the boot state");
	pos = (size_t) snprintf(text, sizeof(text), "state %s\n", state);
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (d->state.bank[i].state == BK_BANK_BAD && d->bad_reason[i][0] != '\0')
			pos += (size_t) snprintf(text + pos, sizeof(text) - pos, "reason %s %s\n",
						 bk_bank_id_to_string((enum bk_bank_id) i),
						 d->bad_reason[i]);
	if (d->has_last)
		pos += (size_t) snprintf(text + pos, sizeof(text) - pos, "last %s %s %llu\n",
					 bk_bank_id_to_string(d->last.bank),
					 bk_boot_reason_to_string(d->last.reason) ?: "none",
					 (unsigned long long) d->last.time);
	r = bk_mkdir_p_at(b->env.root_fd, SIDE_DIR, 0755, &dfd, err);
	if (r < 0)
		return r;
	return bk_write_atomic_at(dfd, SIDE_FILE, text, pos, 0644, 0, err);
}

/* The side file's text into *ret (NULL when there is none). */
static int read_side_text(struct bk_boot *b, char **ret, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	*ret = NULL;
	dfd = bk_open_beneath(b->env.root_fd, SIDE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return bk_err_set(err, dfd, "cannot open the directory of '%s': %s", SIDE_FILE,
				  strerror(-dfd));
	r = bk_read_file_at(dfd, SIDE_FILE, SIDE_MAX_SIZE, ret, NULL, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	return r < 0 ? r : 0;
}

/* Put back the side file as it was (text NULL: there was none). Best effort. */
static void restore_side(struct bk_boot *b, const char *text)
{
	_cleanup_close_ int dfd = -EBADF;

	dfd = bk_open_beneath(b->env.root_fd, SIDE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd < 0)
		return;
	if (!text) {
		if (unlinkat(dfd, SIDE_FILE, 0) == 0)
			(void) bk_fsync_dir(dfd);
		return;
	}
	if (bk_write_atomic_at(dfd, SIDE_FILE, text, strlen(text), 0644, 0, NULL) < 0)
		BK_DBG(BOOT, "cannot restore '%s'", SIDE_FILE);
}

/* --- load and save ---------------------------------------------------------------------------- */

/* The bank the loader should boot next for s (the model without the key), or invalid. */
static enum bk_bank_id next_bank(const struct bk_bootstate *s)
{
	struct bk_boot_decision d;

	if (bk_select_decide(s, false, &d, NULL) < 0)
		return _BK_BANK_INVALID;
	return d.bank;
}

static int custom_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err)
{
	struct bk_boot_data d = *ret;
	enum bk_bank_id primary, expected;
	bool found, good[_BK_BANK_MAX];
	int r;

	r = read_side(b, &d, &found, err);
	if (r < 0)
		return r;
	r = get_primary(b, &primary, err);
	for (int i = 0; i < _BK_BANK_MAX && r >= 0; i++)
		r = get_state(b, (enum bk_bank_id) i, &good[i], err);
	if (r < 0)
		return r;

	/*
	 * The loader's answers win over what bankctl last wrote (see the top of the file). A save
	 * told the loader "good" exactly for the eligible banks: only a different answer is news.
	 */
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		struct bk_bank_boot *bb = &d.state.bank[i];
		bool eligible = bk_bank_is_eligible(&d.state, (enum bk_bank_id) i);

		if (!good[i] && eligible) {
			bb->state = BK_BANK_BAD;
			bb->tries_left = 0;
		} else if (good[i] && !eligible &&
			   (bb->state == BK_BANK_BAD || bb->state == BK_BANK_TRYING)) {
			bb->state = BK_BANK_GOOD;
			bb->tries_left = 0;
			d.bad_reason[i][0] = '\0';
		}
	}
	/* A loader that fell back chose what the model chooses now; anything else is a rollback. */
	expected = next_bank(&d.state);
	if (primary != _BK_BANK_INVALID && primary != expected &&
	    bk_bank_is_eligible(&d.state, primary))
		d.state.pin = primary;
	*ret = d;
	return 0;
}

static int set_state(struct bk_boot *b, enum bk_bank_id id, bool good, struct bk_err *err)
{
	const char *args[] = { "set-state", bk_bank_id_to_string(id), good ? "good" : "bad", NULL };
	char out[OUTPUT_MAX];

	return run(b, args, out, sizeof(out), err);
}

static int custom_save(struct bk_boot *b, const struct bk_boot_data *d, struct bk_err *err)
{
	_cleanup_free_ char *old = NULL;
	enum bk_bank_id primary, want = next_bank(&d->state);
	bool good[_BK_BANK_MAX];
	int r;

	/* What the loader holds now, to tell it only what changes. */
	r = get_primary(b, &primary, err);
	for (int i = 0; i < _BK_BANK_MAX && r >= 0; i++)
		r = get_state(b, (enum bk_bank_id) i, &good[i], err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);

	r = read_side_text(b, &old, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	r = write_side(b, d, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);

	/* Demotions first, then promotions, then the choice: no step adds a bootable bank early. */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < _BK_BANK_MAX; i++) {
			bool eligible = bk_bank_is_eligible(&d->state, (enum bk_bank_id) i);

			if (eligible != (pass == 1) || eligible == good[i])
				continue;
			r = set_state(b, (enum bk_bank_id) i, eligible, err);
			if (r < 0)
				goto restore;
		}
	if (want != _BK_BANK_INVALID && want != primary) {
		const char *args[] = { "set-primary", bk_bank_id_to_string(want), NULL };
		char out[OUTPUT_MAX];

		r = run(b, args, out, sizeof(out), err);
		if (r < 0)
			goto restore;
	}
	return 0;

restore:
	/*
	 * The executable refused: put the old side file back (best effort), so the next load
	 * combines the loader's unchanged answers with the state bankctl had told it.
	 */
	restore_side(b, old);
	return bk_err_prefix(err, "cannot save '%s'", b->location);
}

const struct bk_boot_ops bk_boot_custom_ops = {
	.name = "custom",
	.features = BK_BOOT_KEEPS_BAD_REASON | BK_BOOT_KEEPS_LAST_BOOT,
	.priv_size = sizeof(struct custom_priv),
	.open = custom_open,
	.load = custom_load,
	.save = custom_save,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `grub` backend: the boot state in a grubenv, ROOT/boot/bootbank/grubenv (the boot
 * partition is mounted on /boot), read by GRUB's load_env and rewritten in place by its
 * save_env (bootloader-hooks/grub/bootbank-select.cfg). bankctl replaces the file atomically
 * (temp file, fsync, rename, fsync of the directory) and then makes the new file visible to a
 * reader that does not replay the journal: GRUB reads the filesystem's main metadata only.
 * docs/grub.md describes the variables, docs/crash-safety.md why a torn write is harmless.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bk-boot-backend.h"
#include "bk-boot-grub.h"
#include "bk-fs.h"
#include "bk-log.h"

#ifndef EXT4_IOC_CHECKPOINT
/* Linux 5.13 (fs/ext4/ext4.h; not in the uapi headers of Debian 12). */
#define EXT4_IOC_CHECKPOINT _IOW('f', 43, uint32_t)
#endif
#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

/* The largest number the loader script accepts: 10 digits (BK_GENERATION_MAX fits). */
#define GRUB_NUMBER_DIGITS_MAX 10

static const char *const state_vars[] = {
	"bootbank_A_state",
	"bootbank_A_gen",
	"bootbank_A_tries",
	"bootbank_A_epoch",
	"bootbank_B_state",
	"bootbank_B_gen",
	"bootbank_B_tries",
	"bootbank_B_epoch",
	"bootbank_floor",
	"bootbank_pin",
	NULL,
};

/* Index of the first variable of bank id in state_vars (four per bank). */
static const char *bank_var(enum bk_bank_id id, int field)
{
	return state_vars[(int) id * 4 + field];
}

enum { VAR_STATE, VAR_GEN, VAR_TRIES, VAR_EPOCH };
#define VAR_FLOOR (_BK_BANK_MAX * 4)
#define VAR_PIN	  (_BK_BANK_MAX * 4 + 1)

/* A canonical decimal as the loader script reads it (no sign, no leading zero). */
static int get_number(const struct bk_grubenv *e, const char *name, uint64_t *ret,
		      struct bk_err *err)
{
	const char *v = bk_grubenv_get(e, name);
	size_t len;

	if (!v) {
		*ret = 0;
		return 0;
	}
	len = strlen(v);
	if (len == 0 || len > GRUB_NUMBER_DIGITS_MAX || strspn(v, "0123456789") != len ||
	    (v[0] == '0' && len > 1))
		return bk_err_set(err, -ENOEXEC,
				  "%s: '%s' is not a decimal number of at most %d "
				  "digits without leading zeros",
				  name, v, GRUB_NUMBER_DIGITS_MAX);
	/* At most 10 digits: cannot overflow. */
	return bk_parse_u64(v, ret) < 0 ?
		       bk_err_set(err, -ENOEXEC, "%s: bad number '%s'", name, v) :
		       0;
}

int bk_boot_grub_decode(const struct bk_grubenv *e, struct bk_bootstate *ret, struct bk_err *err)
{
	struct bk_bootstate s;
	const char *v;
	int r;

	bk_bootstate_init(&s);
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		struct bk_bank_boot *b = &s.bank[i];
		enum bk_bank_id id = (enum bk_bank_id) i;

		v = bk_grubenv_get(e, bank_var(id, VAR_STATE));
		if (v) {
			b->state = bk_bank_state_from_string(v);
			if (b->state < 0)
				return bk_err_set(err, -ENOEXEC, "%s: unknown state '%s'",
						  bank_var(id, VAR_STATE), v);
		}
		r = get_number(e, bank_var(id, VAR_GEN), &b->generation, err);
		if (r < 0)
			return r;
		r = get_number(e, bank_var(id, VAR_TRIES), &b->tries_left, err);
		if (r < 0)
			return r;
		r = get_number(e, bank_var(id, VAR_EPOCH), &b->epoch, err);
		if (r < 0)
			return r;
	}
	r = get_number(e, state_vars[VAR_FLOOR], &s.floor, err);
	if (r < 0)
		return r;

	v = bk_grubenv_get(e, state_vars[VAR_PIN]);
	if (v && v[0] != '\0') {
		/* Exactly "A" or "B": the loader script compares strings. */
		if (strcmp(v, "A") == 0)
			s.pin = BK_BANK_A;
		else if (strcmp(v, "B") == 0)
			s.pin = BK_BANK_B;
		else
			return bk_err_set(err, -ENOEXEC, "%s: '%s' is not A, B or empty",
					  state_vars[VAR_PIN], v);
	}
	*ret = s;
	return 0;
}

int bk_boot_grub_encode(const struct bk_grubenv *old, const struct bk_bootstate *s,
			struct bk_grubenv **ret, struct bk_err *err)
{
	_cleanup_(bk_grubenv_freep) struct bk_grubenv *e = NULL;
	char num[24];
	int r;

	r = bk_bootstate_check(s, err);
	if (r < 0)
		return r;
	e = bk_grubenv_new();
	if (!e)
		return bk_err_set(err, -ENOMEM, "out of memory");

	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_boot *b = &s->bank[i];
		enum bk_bank_id id = (enum bk_bank_id) i;

		r = bk_grubenv_set(e, bank_var(id, VAR_STATE), bk_bank_state_to_string(b->state),
				   err);
		if (r < 0)
			return r;
		(void) snprintf(num, sizeof(num), "%llu", (unsigned long long) b->generation);
		r = bk_grubenv_set(e, bank_var(id, VAR_GEN), num, err);
		if (r < 0)
			return r;
		(void) snprintf(num, sizeof(num), "%llu", (unsigned long long) b->tries_left);
		r = bk_grubenv_set(e, bank_var(id, VAR_TRIES), num, err);
		if (r < 0)
			return r;
		(void) snprintf(num, sizeof(num), "%llu", (unsigned long long) b->epoch);
		r = bk_grubenv_set(e, bank_var(id, VAR_EPOCH), num, err);
		if (r < 0)
			return r;
	}
	(void) snprintf(num, sizeof(num), "%llu", (unsigned long long) s->floor);
	r = bk_grubenv_set(e, state_vars[VAR_FLOOR], num, err);
	if (r < 0)
		return r;
	r = bk_grubenv_set(e, state_vars[VAR_PIN],
			   s->pin == _BK_BANK_INVALID ? "" : bk_bank_id_to_string(s->pin), err);
	if (r < 0)
		return r;

	if (old) {
		r = bk_grubenv_copy_except(e, old, state_vars, err);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(e);
	return 0;
}

static int grub_open(struct bk_boot *b, struct bk_err *err)
{
	const char *root = b->env.root;
	const char *sep = root[0] != '\0' && root[strlen(root) - 1] == '/' ? "" : "/";
	int n;

	n = snprintf(b->location, sizeof(b->location), "%s%s%s/%s", root, sep, BK_BOOT_GRUB_DIR,
		     BK_BOOT_GRUB_FILE);
	if (n < 0 || (size_t) n >= sizeof(b->location))
		return bk_err_set(err, -ENAMETOOLONG, "root '%s' is too long", root);
	return 0;
}

/*
 * Read and parse the grubenv in dfd. Returns 0 with *ret (NULL when there is no file),
 * -ENOEXEC (not a grubenv: message), or -errno for I/O.
 */
static int read_env(int dfd, const char *location, struct bk_grubenv **ret, struct bk_err *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r;

	r = bk_read_file_at(dfd, BK_BOOT_GRUB_FILE, BK_GRUBENV_SIZE, &buf, &len, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		*ret = NULL;
		return 0;
	}
	if (r == -EFBIG) {
		bk_err_clear(err);
		return bk_err_set(err, -ENOEXEC, "larger than %d bytes", BK_GRUBENV_SIZE);
	}
	if (r == -EBADFD) {
		bk_err_clear(err);
		return bk_err_set(err, -ENOEXEC, "not a regular file");
	}
	if (r < 0) {
		bk_err_clear(err);
		return bk_err_set(err, r, "cannot read '%s': %m", location);
	}
	return bk_grubenv_parse(buf, len, ret, err);
}

static int grub_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err)
{
	_cleanup_(bk_grubenv_freep) struct bk_grubenv *e = NULL;
	_cleanup_close_ int dfd = -EBADF;
	int r;

	dfd = bk_open_beneath(b->env.root_fd, BK_BOOT_GRUB_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			      0, false);
	if (dfd == -ENOENT)
		return 0; /* never written: both banks empty */
	if (dfd < 0)
		return bk_err_set(err, dfd, "cannot open the directory of '%s': %m", b->location);

	r = read_env(dfd, b->location, &e, err);
	if (r < 0)
		return r;
	if (!e)
		return 0;
	return bk_boot_grub_decode(e, &ret->state, err);
}

/*
 * FIFREEZE + FITHAW: the kernel writes every dirty metadata block to its final place, which
 * is what a reader without journal replay needs. A watchdog child thaws the filesystem if we
 * die between the two calls (ostree does the same): a frozen /boot would hang the host. The
 * child uses the raw syscall so that nothing interposed on ioctl() can keep it from thawing.
 */
static void freeze_thaw(int fd)
{
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid < 0) {
		(void) close(pfd[0]);
		(void) close(pfd[1]);
		return;
	}
	if (pid == 0) {
		(void) close(pfd[1]);
		while (read(pfd[0], &c, 1) < 0 && errno == EINTR)
			;
		(void) syscall(SYS_ioctl, fd, FITHAW, 0);
		_exit(0);
	}
	(void) close(pfd[0]);
	if (ioctl(fd, FIFREEZE, 0) < 0)
		BK_DBG(BOOT, "FIFREEZE: %m, ignoring");
	else if (ioctl(fd, FITHAW, 0) < 0)
		BK_DBG(BOOT, "FITHAW: %m (the watchdog thaws)");
	(void) close(pfd[1]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/*
 * Make the committed rename visible to GRUB, which reads the filesystem without replaying its
 * journal: syncfs() writes the metadata back (an error here is reported: the new file may not
 * be what GRUB sees); then the journal is checkpointed (ext4, Linux >= 5.13) or the filesystem
 * frozen and thawed (ext4 without the ioctl, XFS). Both need CAP_SYS_ADMIN; without it (a
 * sandbox) or on a filesystem without a journal, syncfs() is all there is to do.
 */
static int flush_for_loader(int dfd, const char *location, struct bk_err *err)
{
	struct statfs sfs;
	uint32_t flags = 0;

	if (syncfs(dfd) < 0)
		return bk_err_set(err, -errno, "cannot flush the filesystem of '%s': %m", location);
	if (fstatfs(dfd, &sfs) < 0)
		return 0;
	if (sfs.f_type == EXT4_SUPER_MAGIC) {
		if (ioctl(dfd, EXT4_IOC_CHECKPOINT, &flags) == 0)
			return 0;
		BK_DBG(BOOT, "EXT4_IOC_CHECKPOINT: %m, freezing instead");
		if (errno == EPERM)
			return 0;
		freeze_thaw(dfd);
	} else if (sfs.f_type == XFS_SUPER_MAGIC) {
		freeze_thaw(dfd);
	}
	return 0;
}

static int grub_save(struct bk_boot *b, const struct bk_boot_data *d, struct bk_err *err)
{
	_cleanup_(bk_grubenv_freep) struct bk_grubenv *old = NULL;
	_cleanup_(bk_grubenv_freep) struct bk_grubenv *e = NULL;
	_cleanup_close_ int dfd = -EBADF;
	char buf[BK_GRUBENV_SIZE];
	struct bk_err e2 = { 0 };
	int r;

	r = bk_mkdir_p_at(b->env.root_fd, BK_BOOT_GRUB_DIR, 0755, &dfd, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	/* Our own leftovers of a save that was killed; the save goes on regardless. */
	(void) bk_remove_temps_of_at(dfd, BK_BOOT_GRUB_FILE, NULL);

	/*
	 * Keep the variables that are not ours. A file that is not a grubenv is left for a person
	 * (docs/banks.md: a corrupt store is never reset), as load would.
	 */
	r = read_env(dfd, b->location, &old, &e2);
	if (r >= 0 && old) {
		struct bk_bootstate cur;

		r = bk_boot_grub_decode(old, &cur, &e2);
		if (r >= 0)
			r = bk_bootstate_check(&cur, &e2) < 0 ? -ENOEXEC : 0;
	}
	if (r == -ENOEXEC)
		return bk_err_set(err, r, "corrupt boot state '%s': %s", b->location, e2.msg);
	if (r < 0)
		return bk_err_set(err, r, "cannot save '%s': %s", b->location, e2.msg);

	r = bk_boot_grub_encode(old, &d->state, &e, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	r = bk_grubenv_format(e, buf, sizeof(buf), err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	r = bk_write_atomic_at(dfd, BK_BOOT_GRUB_FILE, buf, sizeof(buf), 0644, 0, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	return flush_for_loader(dfd, b->location, err);
}

const struct bk_boot_ops bk_boot_grub_ops = {
	.name = "grub",
	.features = 0,
	.open = grub_open,
	.load = grub_load,
	.save = grub_save,
};

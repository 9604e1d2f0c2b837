/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `uboot` backend: the boot state in U-Boot environment variables, read and written with
 * libubootenv (the library behind fw_printenv/fw_setenv), so U-Boot's boot script
 * (bootloader-hooks/uboot/boot.cmd), fw_printenv and bankctl see the same variables.
 *
 * Where: ROOT/etc/fw_env.config, the file fw_printenv reads, names one or two copies
 * ("DEVICE OFFSET SIZE [SECTOR-SIZE [SECTORS]]" per line). With two copies (U-Boot's redundant
 * environment) a save writes the copy that is not current, with a higher flag byte, so a
 * power cut leaves the old copy valid: that is the atomic step (docs/crash-safety.md, "U-Boot
 * environment"). libubootenv ignores the result of its own fsync, so the backend fsyncs the
 * copies again and checks that.
 *
 * On the host (root "/") the device names go to libubootenv as they are, exactly as
 * fw_printenv uses them. Under a sandbox root they are host paths resolved beneath the root
 * (like every path in system.conf): the backend opens them beneath the root and hands
 * libubootenv "/proc/self/fd/N".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libuboot.h>

#include "bk-boot-backend.h"
#include "bk-boot-uboot.h"
#include "bk-fs.h"
#include "bk-log.h"

#define CONFIG_MAX_SIZE (16 * 1024)
#define ENV_SIZE_MIN	16u	    /* CRC, flag and a little room */
#define ENV_SIZE_MAX	(16u << 20) /* far above any real board (a few KiB to 256 KiB) */

const char *const bk_boot_uboot_vars[BK_BOOT_UBOOT_N_VARS] = {
	"bootbank_A_state", "bootbank_A_gen",	     "bootbank_A_tries",
	"bootbank_A_epoch", "bootbank_B_state",	     "bootbank_B_gen",
	"bootbank_B_tries", "bootbank_B_epoch",	     "bootbank_floor",
	"bootbank_pin",	    "bootbank_A_bad_reason", "bootbank_B_bad_reason",
	"bootbank_last",    "bootbank_key",	     "bootbank_t",
};

/*
 * The last two names are not boot state: bootbank_key is the operator's rollback request and
 * bootbank_t the scratch variable of boot.cmd. Neither must survive in the store (the script
 * deletes both before it saves); a save deletes them too.
 */
enum {
	VAR_FLOOR = 8,
	VAR_PIN = 9,
	VAR_BAD_REASON_A = 10,
	VAR_LAST = 12,
	VAR_KEY = 13,
	VAR_SCRATCH = 14,
};

struct uboot_copy {
	char *devname; /* as fw_env.config names it (host path) */
	char *libname; /* what libubootenv opens: devname, or /proc/self/fd/N in a sandbox */
	char *shown;   /* for messages: the path beneath the root */
	int fd;	       /* sandbox: the device opened beneath the root; -EBADF otherwise */
	bool absent;   /* the device does not exist (yet) */
	long long offset;
	size_t size;
	size_t sector_size;
	unsigned long sectors;
};

struct uboot_priv {
	struct uboot_copy copy[2];
	size_t n_copies;
	char config[PATH_MAX + 32];
};

static struct uboot_priv *priv(struct bk_boot *b)
{
	return b->priv;
}

/* --- the mapping ---------------------------------------------------------------------------- */

static const char *var_name(int bank, int field)
{
	return bk_boot_uboot_vars[bank * 4 + field];
}

static void set_var(struct bk_boot_uboot_var *v, const char *name, const char *value)
{
	v->name = name;
	v->absent = !value;
	snprintf(v->value, sizeof(v->value), "%s", value ? value : "");
}

static void set_num(struct bk_boot_uboot_var *v, const char *name, uint64_t n)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, n);
	set_var(v, name, buf);
}

int bk_boot_uboot_encode(const struct bk_boot_data *d, struct bk_boot_uboot_var *ret,
			 struct bk_err *err)
{
	int r;

	r = bk_bootstate_check(&d->state, err);
	if (r < 0)
		return r;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_boot *bb = &d->state.bank[i];
		const char *reason = d->bad_reason[i];

		set_var(&ret[i * 4], var_name(i, 0), bk_bank_state_to_string(bb->state));
		set_num(&ret[i * 4 + 1], var_name(i, 1), bb->generation);
		set_num(&ret[i * 4 + 2], var_name(i, 2), bb->tries_left);
		set_num(&ret[i * 4 + 3], var_name(i, 3), bb->epoch);
		/* A reason only means something while the bank is bad (docs/banks.md). */
		if (!memchr(reason, '\0', sizeof(d->bad_reason[i])))
			return bk_err_set(err, -EINVAL, "bank %s: bad reason is not terminated",
					  bk_bank_id_to_string((enum bk_bank_id) i));
		set_var(&ret[VAR_BAD_REASON_A + i], bk_boot_uboot_vars[VAR_BAD_REASON_A + i],
			bb->state == BK_BANK_BAD && reason[0] != '\0' ? reason : NULL);
	}
	set_num(&ret[VAR_FLOOR], bk_boot_uboot_vars[VAR_FLOOR], d->state.floor);
	set_var(&ret[VAR_PIN], bk_boot_uboot_vars[VAR_PIN], bk_bank_id_to_string(d->state.pin));
	if (d->has_last) {
		char buf[64];

		if (!bk_bank_id_to_string(d->last.bank))
			return bk_err_set(err, -EINVAL, "last boot: invalid bank %d",
					  (int) d->last.bank);
		snprintf(buf, sizeof(buf), "%s %s %" PRIu64, bk_bank_id_to_string(d->last.bank),
			 bk_boot_reason_to_string(d->last.reason) ?: "none", d->last.time);
		set_var(&ret[VAR_LAST], bk_boot_uboot_vars[VAR_LAST], buf);
	} else {
		set_var(&ret[VAR_LAST], bk_boot_uboot_vars[VAR_LAST], NULL);
	}
	set_var(&ret[VAR_KEY], bk_boot_uboot_vars[VAR_KEY], NULL);
	set_var(&ret[VAR_SCRATCH], bk_boot_uboot_vars[VAR_SCRATCH], NULL);
	return 0;
}

/* A canonical decimal: digits only, no leading zero (except "0" itself), fits 64 bits. */
static int parse_canonical(const char *name, const char *s, uint64_t *ret, struct bk_err *err)
{
	if ((s[0] == '0' && s[1] != '\0') || bk_parse_u64(s, ret) < 0)
		return bk_err_set(err, -ENOEXEC, "%s: '%s' is not a canonical decimal", name, s);
	return 0;
}

static int decode_last(const char *s, struct bk_boot_data *d, struct bk_err *err)
{
	const char *name = bk_boot_uboot_vars[VAR_LAST];
	char bank[8], reason[16], time[24];
	struct bk_booted last;
	int n = 0;

	/* "BANK REASON TIME": three words separated by single blanks. */
	if (sscanf(s, "%7[AB] %15[a-z] %23[0-9]%n", bank, reason, time, &n) != 3 || s[n] != '\0' ||
	    strlen(bank) != 1)
		return bk_err_set(err, -ENOEXEC, "%s: '%s' is not 'BANK REASON TIME'", name, s);
	last.bank = bk_bank_id_from_string(bank);
	last.reason = bk_boot_reason_from_string(reason);
	if (last.reason < 0)
		return bk_err_set(err, -ENOEXEC, "%s: unknown reason '%s'", name, reason);
	if (parse_canonical(name, time, &last.time, err) < 0)
		return -ENOEXEC;
	d->last = last;
	d->has_last = true;
	return 0;
}

int bk_boot_uboot_decode(char *(*get)(const char *name, void *userdata), void *userdata,
			 struct bk_boot_data *ret, struct bk_err *err)
{
	struct bk_boot_data d = *ret;
	int r = 0;

	for (int i = 0; i < BK_BOOT_UBOOT_N_VARS && r == 0; i++) {
		const char *name = bk_boot_uboot_vars[i];
		_cleanup_free_ char *v = NULL;
		uint64_t *num = NULL;

		if (i == VAR_KEY || i == VAR_SCRATCH)
			continue;
		errno = 0;
		v = get(name, userdata);
		if (!v && errno == ENOMEM)
			return bk_err_set(err, -ENOMEM, "out of memory");
		if (!v)
			continue; /* absent: the default of bk_boot_data_init() */

		if (i < 8) {
			struct bk_bank_boot *bb = &d.state.bank[i / 4];

			switch (i % 4) {
			case 0:
				bb->state = bk_bank_state_from_string(v);
				if (bb->state < 0)
					r = bk_err_set(err, -ENOEXEC, "%s: unknown state '%s'",
						       name, v);
				break;
			case 1:
				num = &bb->generation;
				break;
			case 2:
				num = &bb->tries_left;
				break;
			default:
				num = &bb->epoch;
				break;
			}
		} else if (i == VAR_FLOOR) {
			num = &d.state.floor;
		} else if (i == VAR_PIN) {
			d.state.pin = bk_bank_id_from_string(v);
			if (d.state.pin < 0 || strlen(v) != 1)
				r = bk_err_set(err, -ENOEXEC, "%s: '%s' is not A or B", name, v);
		} else if (i == VAR_LAST) {
			r = decode_last(v, &d, err);
		} else {
			r = bk_boot_data_set_bad_reason(&d, (enum bk_bank_id)(i - VAR_BAD_REASON_A),
							v, err);
			if (r < 0)
				r = bk_err_prefix(err, "%s", name);
			if (r < 0)
				r = bk_err_recode(err, -ENOEXEC);
		}
		if (num)
			r = parse_canonical(name, v, num, err);
	}
	if (r < 0)
		return r;
	*ret = d;
	return 0;
}

/* --- fw_env.config ------------------------------------------------------------------------- */

/*
 * One line of fw_env.config, as libubootenv reads it (sscanf "%ms %lli %zx %zx %lx": offset in
 * C notation, sizes in hex with or without 0x). libubootenv skips a line it cannot read;
 * bankctl refuses it, so a typo cannot silently leave one copy.
 */
static int parse_config_line(const char *line, struct uboot_copy *c, const char *config,
			     unsigned lineno, struct bk_err *err)
{
	char *dev = NULL;
	long long offset = 0;
	size_t size = 0, sector_size = 0;
	unsigned long sectors = 0;
	int n;

	n = sscanf(line, "%ms %lli %zx %zx %lx", &dev, &offset, &size, &sector_size, &sectors);
	if (n < 3) {
		free(dev);
		return bk_err_set(err, -EINVAL,
				  "'%s':%u: expected 'DEVICE OFFSET SIZE [SECTOR-SIZE [SECTORS]]'",
				  config, lineno);
	}
	if (offset < 0 || size < ENV_SIZE_MIN || size > ENV_SIZE_MAX) {
		free(dev);
		return bk_err_set(err, -EINVAL, "'%s':%u: offset or size out of range", config,
				  lineno);
	}
	c->devname = dev;
	c->offset = offset;
	c->size = size;
	c->sector_size = sector_size;
	c->sectors = sectors;
	return 0;
}

static int parse_config(struct uboot_priv *p, char *text, struct bk_err *err)
{
	unsigned lineno = 0;
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int r;

		lineno++;
		line += strspn(line, " \t");
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (p->n_copies == 2)
			return bk_err_set(err, -EINVAL, "'%s':%u: more than two environment copies",
					  p->config, lineno);
		r = parse_config_line(line, &p->copy[p->n_copies], p->config, lineno, err);
		if (r < 0)
			return r;
		p->n_copies++;
	}
	if (p->n_copies == 0)
		return bk_err_set(err, -EINVAL, "'%s' names no environment copy", p->config);
	if (p->n_copies == 2 && p->copy[0].size != p->copy[1].size)
		return bk_err_set(err, -EINVAL, "'%s': the two copies differ in size", p->config);
	return 0;
}

/* Resolve copy c's device for this root (see the top of the file). */
static int resolve_copy(struct bk_boot *b, struct uboot_copy *c, struct bk_err *err)
{
	const char *root = b->env.root;
	bool host = strcmp(root, "/") == 0;
	int fd;

	if (asprintf(&c->shown, "%s%s", host ? "" : root, c->devname) < 0) {
		c->shown = NULL;
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	if (host) {
		struct stat st;

		c->libname = strdup(c->devname);
		if (!c->libname)
			return bk_err_set(err, -ENOMEM, "out of memory");
		/* A UBI volume ("/dev/ubi0:env") is no path: libubootenv resolves it. */
		c->absent =
			!strchr(c->devname, ':') && stat(c->devname, &st) < 0 && errno == ENOENT;
		return 0;
	}

	if (c->devname[0] != '/')
		return bk_err_set(err, -EINVAL, "'%s': device '%s' is not an absolute path",
				  priv(b)->config, c->devname);
	fd = bk_open_beneath(b->env.root_fd, c->devname + 1, O_RDONLY | O_CLOEXEC | O_NOCTTY, 0,
			     false);
	if (fd == -ENOENT) {
		c->absent = true;
		return 0;
	}
	if (fd < 0)
		return bk_err_set(err, fd, "cannot open the U-Boot environment '%s': %s", c->shown,
				  strerror(-fd));
	c->fd = fd;
	if (asprintf(&c->libname, "/proc/self/fd/%d", fd) < 0) {
		c->libname = NULL;
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static void uboot_close(struct bk_boot *b)
{
	struct uboot_priv *p = priv(b);

	for (size_t i = 0; i < BK_ELEMENTSOF(p->copy); i++) {
		struct uboot_copy *c = &p->copy[i];

		free(c->devname);
		free(c->libname);
		free(c->shown);
		if (c->fd >= 0)
			(void) close(c->fd);
		c->fd = -EBADF;
	}
}

static int do_open(struct bk_boot *b, struct bk_err *err)
{
	const char *root = b->env.root;
	const char *sep = root[0] != '\0' && root[strlen(root) - 1] == '/' ? "" : "/";
	struct uboot_priv *p = priv(b);
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int dfd = -EBADF;
	struct bk_err e = { 0 };
	int n, r;

	n = snprintf(p->config, sizeof(p->config), "%s%s%s", root, sep, BK_BOOT_UBOOT_CONFIG);
	if (n < 0 || (size_t) n >= sizeof(p->config))
		return bk_err_set(err, -ENAMETOOLONG, "root '%s' is too long", root);

	dfd = bk_open_beneath(b->env.root_fd, "etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (dfd < 0)
		return bk_err_set(err, dfd,
				  "cannot read '%s': %s (the uboot backend needs it, "
				  "see docs/uboot.md)",
				  p->config, strerror(-dfd));
	r = bk_read_file_at(dfd, "fw_env.config", CONFIG_MAX_SIZE, &text, NULL, &e);
	if (r < 0)
		return bk_err_set(err, r,
				  "cannot read '%s': %s (the uboot backend needs it, "
				  "see docs/uboot.md)",
				  p->config, r == -ENOENT ? strerror(ENOENT) : e.msg);
	r = parse_config(p, text, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < p->n_copies; i++) {
		r = resolve_copy(b, &p->copy[i], err);
		if (r < 0)
			return r;
	}

	if (p->n_copies == 2)
		n = snprintf(b->location, sizeof(b->location), "%s + %s", p->copy[0].shown,
			     p->copy[1].shown);
	else
		n = snprintf(b->location, sizeof(b->location), "%s", p->copy[0].shown);
	if (n < 0 || (size_t) n >= sizeof(b->location))
		return bk_err_set(err, -ENAMETOOLONG, "U-Boot environment path is too long");
	return 0;
}

static int uboot_open(struct bk_boot *b, struct bk_err *err)
{
	struct uboot_priv *p = priv(b);
	int r;

	p->copy[0].fd = p->copy[1].fd = -EBADF;
	r = do_open(b, err);
	if (r < 0)
		uboot_close(b); /* bk_boot_open() does not call close after a failed open */
	return r;
}

/* --- load and save --------------------------------------------------------------------------- */

/*
 * A libubootenv context for the copies. libubootenv 0.3's libuboot_configure() always sets up
 * two copies (it cannot describe a single one), so the copies go through its configuration
 * parser instead: the lines of fw_env.config with each device replaced by what libubootenv
 * must open, in a memfd.
 */
static int ctx_open(const struct uboot_priv *p, struct uboot_ctx **ret)
{
	struct uboot_ctx *ctx = NULL;
	_cleanup_close_ int fd = -EBADF;
	char path[64];
	int r;

	fd = memfd_create("bootbank-fw_env.config", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < p->n_copies; i++) {
		const struct uboot_copy *c = &p->copy[i];

		if (dprintf(fd, "%s 0x%llx 0x%zx 0x%zx 0x%lx\n", c->libname, c->offset, c->size,
			    c->sector_size, c->sectors) < 0)
			return -errno;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	r = libuboot_initialize(&ctx, NULL);
	if (r < 0)
		return r;
	r = libuboot_read_config(ctx, path);
	if (r < 0) {
		libuboot_exit(ctx);
		return r;
	}
	*ret = ctx;
	return 0;
}

static void ctx_free(struct uboot_ctx *ctx)
{
	if (!ctx)
		return;
	libuboot_close(ctx);
	libuboot_exit(ctx);
}

BK_DEFINE_CLEANUP(struct uboot_ctx *, ctx_free)

/* Every byte of copy c is 0x00, or every byte 0xff (erased flash): never written. */
static int copy_is_blank(const struct uboot_copy *c)
{
	_cleanup_free_ unsigned char *buf = malloc(c->size);
	_cleanup_close_ int fd = -EBADF;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	fd = open(c->libname, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	n = bk_pread_full(fd, buf, c->size, (uint64_t) c->offset);
	if (n < 0)
		return (int) n;
	if ((size_t) n != c->size)
		return false;
	for (size_t i = 1; i < c->size; i++)
		if (buf[i] != buf[0])
			return false;
	return buf[0] == 0x00 || buf[0] == 0xff;
}

static bool all_blank(const struct uboot_priv *p)
{
	for (size_t i = 0; i < p->n_copies; i++)
		if (copy_is_blank(&p->copy[i]) != 1)
			return false;
	return true;
}

/* How many copies do not exist (yet). */
static size_t n_absent(const struct uboot_priv *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n_copies; i++)
		if (p->copy[i].absent)
			n++;
	return n;
}

/*
 * Open the environment into *ret_ctx. Returns 0 (valid), 1 (never written: every copy blank),
 * -ENOEXEC (no copy has a valid CRC), or -errno for I/O.
 */
static int env_open(struct bk_boot *b, struct uboot_ctx **ret_ctx, struct bk_err *err)
{
	struct uboot_priv *p = priv(b);
	_cleanup_(ctx_freep) struct uboot_ctx *ctx = NULL;
	int r;

	r = ctx_open(p, &ctx);
	if (r < 0)
		return bk_err_set(err, r < -1 ? r : -EINVAL,
				  "libubootenv refuses the environment of '%s'", p->config);
	r = libuboot_open(ctx);
	if (r == -ENODATA) {
		if (!all_blank(p))
			return bk_err_set(err, -ENOEXEC,
					  "no copy of the U-Boot environment has a valid CRC");
		*ret_ctx = TAKE_PTR(ctx);
		return 1;
	}
	if (r < 0)
		return bk_err_set(err, -EIO, "cannot read the U-Boot environment '%s'",
				  b->location);
	*ret_ctx = TAKE_PTR(ctx);
	return 0;
}

static char *get_var(const char *name, void *userdata)
{
	return libuboot_get_env(userdata, name);
}

static int uboot_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err)
{
	_cleanup_(ctx_freep) struct uboot_ctx *ctx = NULL;
	int r;

	/*
	 * Devices that do not exist yet hold no boot state: both banks empty. One copy of two
	 * missing is a broken configuration, not an empty store.
	 */
	if (n_absent(priv(b)) == priv(b)->n_copies)
		return 0;
	for (size_t i = 0; i < priv(b)->n_copies; i++)
		if (priv(b)->copy[i].absent)
			return bk_err_set(err, -ENOENT,
					  "the U-Boot environment copy '%s' does not exist",
					  priv(b)->copy[i].shown);
	r = env_open(b, &ctx, err);
	if (r == 1)
		return 0; /* never written: U-Boot runs its default environment, no bank */
	if (r < 0)
		return r;
	return bk_boot_uboot_decode(get_var, ctx, ret, err);
}

/* libubootenv does not check its fsync: flush every copy again, checked. */
static int flush_copies(const struct uboot_priv *p, struct bk_err *err)
{
	for (size_t i = 0; i < p->n_copies; i++) {
		_cleanup_close_ int fd = -EBADF;

		fd = open(p->copy[i].libname, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return bk_err_set(err, -errno, "cannot open '%s' to flush it: %m",
					  p->copy[i].shown);
		if (fsync(fd) < 0)
			return bk_err_set(err, -errno, "cannot flush '%s': %m", p->copy[i].shown);
	}
	return 0;
}

static int uboot_save(struct bk_boot *b, const struct bk_boot_data *d, struct bk_err *err)
{
	struct bk_boot_uboot_var vars[BK_BOOT_UBOOT_N_VARS];
	_cleanup_(ctx_freep) struct uboot_ctx *ctx = NULL;
	struct uboot_priv *p = priv(b);
	int r;

	r = bk_boot_uboot_encode(d, vars, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	for (size_t i = 0; i < p->n_copies; i++)
		if (p->copy[i].absent)
			return bk_err_set(err, -ENOENT,
					  "cannot save '%s': the U-Boot environment '%s' does not "
					  "exist",
					  b->location, p->copy[i].shown);

	r = env_open(b, &ctx, err);
	if (r == -ENOEXEC)
		return bk_err_prefix(err, "corrupt boot state '%s'", b->location);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	if (r == 1) {
		/*
		 * Never written: U-Boot runs its built-in default environment. A store holding
		 * only our variables would replace it (no bootcmd: the board stops booting), so
		 * start from the board's default environment, as `fw_setenv --defenv` does.
		 */
		_cleanup_close_ int fd = -EBADF;
		char path[64];

		fd = bk_open_beneath(b->env.root_fd, BK_BOOT_UBOOT_DEFAULT_ENV,
				     O_RDONLY | O_CLOEXEC | O_NOCTTY, 0, false);
		if (fd < 0)
			return bk_err_set(
				err, -ENOENT,
				"cannot save '%s': the U-Boot environment was never "
				"written; save it once from U-Boot ('saveenv'), or put the "
				"board's default environment in '%s%s%s'",
				b->location, strcmp(b->env.root, "/") == 0 ? "" : b->env.root, "/",
				BK_BOOT_UBOOT_DEFAULT_ENV);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		r = libuboot_load_file(ctx, path);
		if (r < 0)
			return bk_err_set(err, -EINVAL, "cannot read the default environment '%s'",
					  BK_BOOT_UBOOT_DEFAULT_ENV);
	}

	for (size_t i = 0; i < BK_ELEMENTSOF(vars); i++) {
		r = libuboot_set_env(ctx, vars[i].name, vars[i].absent ? NULL : vars[i].value);
		if (r < 0)
			return bk_err_set(err, r == -ENOMEM ? -ENOMEM : -EPERM,
					  "cannot save '%s': cannot set %s", b->location,
					  vars[i].name);
	}

	/*
	 * Check the room first: libubootenv 0.3 leaks its buffer when the variables do not fit.
	 * Each variable is "name=value\0", then a closing NUL, after the CRC (and the flag byte of
	 * a redundant copy).
	 */
	{
		size_t need = 1 + 4 + (p->n_copies == 2 ? 1 : 0);

		for (void *it = libuboot_iterator(ctx, NULL); it; it = libuboot_iterator(ctx, it))
			need += strlen(libuboot_getname(it)) + strlen(libuboot_getvalue(it)) + 2;
		if (need > p->copy[0].size)
			r = -ENOMEM;
		else
			r = 0;
	}
	errno = 0;
	if (r == 0)
		r = libuboot_env_store(ctx);
	if (r == -ENOMEM)
		return bk_err_set(err, -ENOSPC,
				  "cannot save '%s': the variables do not fit the %zu-byte U-Boot "
				  "environment",
				  b->location, p->copy[0].size);
	if (r < 0) {
		/* libubootenv returns -1 (a failed write) or -EBADF (cannot open). */
		int e = r < -1 && r != -EBADF ? r : errno > 0 ? -errno : -EIO;

		return bk_err_set(err, e,
				  "cannot save '%s': cannot write the U-Boot environment: %s",
				  b->location, strerror(-e));
	}
	r = flush_copies(p, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	return 0;
}

const struct bk_boot_ops bk_boot_uboot_ops = {
	.name = "uboot",
	.features = BK_BOOT_KEEPS_BAD_REASON | BK_BOOT_KEEPS_LAST_BOOT,
	.priv_size = sizeof(struct uboot_priv),
	.open = uboot_open,
	.close = uboot_close,
	.load = uboot_load,
	.save = uboot_save,
};

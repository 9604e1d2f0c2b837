/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The `systemd-boot` backend: the boot state as Boot Loader Specification type 1 entries, one
 * per bank, with the boot counter in the file name, so systemd-boot counts the tries and
 * systemd-bless-boot marks the boot good or bad by renaming the same file bankctl reads
 * (docs/systemd-boot.md).
 *
 *   ESP/loader/entries/bootbank-a[+LEFT[-DONE]].conf   bank A (absent: empty)
 *   ESP/loader/entries/bootbank-b[+LEFT[-DONE]].conf   bank B
 *   ESP/loader/bootbank.state                          floor, pin, last boot
 *
 * The bank's state is the counter in the name:
 *   no counter    good (systemd-bless-boot good removes the counter)
 *   +N            staged, N tries (never booted: no DONE part); +0 = not activated
 *   +N-D, N > 0   trying, N tries left (systemd-boot renames +N-D to +(N-1)-(D+1) at a boot)
 *   +0-D          bad (systemd-bless-boot bad, or no tries left)
 * Its generation is the entry's `version` (systemd-boot boots the highest version first), the
 * pin its `sort-key` (bootbank-0 for the pinned bank sorts first, bootbank-1 otherwise), the
 * epoch and the bad reason are comments. What BLS cannot say, the side file keeps.
 *
 * ESP: the first of ROOT/efi, ROOT/boot/efi, ROOT/boot that holds a loader/ directory
 * (`bootctl install` creates it). Every file is replaced atomically (temp file, fsync,
 * rename, fsync of the directory); a save changes up to three files, one atomic step each
 * (docs/crash-safety.md, "systemd-boot entries").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk-boot-backend.h"
#include "bk-fs.h"
#include "bk-log.h"

#define ENTRIES_DIR    "loader/entries"
#define LOADER_DIR     "loader"
#define STATE_FILE     "bootbank.state"
#define STATE_FORMAT   1
#define ENTRY_MAX_SIZE (64 * 1024)

static const char *const esp_candidates[] = { "efi", "boot/efi", "boot" };
static const char *const entry_prefix[_BK_BANK_MAX] = { "bootbank-a", "bootbank-b" };
static const char *const template_name[_BK_BANK_MAX] = { "bootbank-a.template",
							 "bootbank-b.template" };

struct sdboot_priv {
	const char *esp; /* relative to the root; NULL when no ESP was found */
};

/* One bank's entry as found on disk. */
struct entry {
	char name[NAME_MAX + 1]; /* "" when the bank has no entry */
	bool counted;		 /* the name carries +LEFT[-DONE] */
	bool has_done;
	uint64_t left, done;
	char *body; /* the file's content (NULL when no entry) */
};

static void entry_release(struct entry *e)
{
	free(e->body);
	e->body = NULL;
}

static struct sdboot_priv *priv(struct bk_boot *b)
{
	return b->priv;
}

static int sdboot_open(struct bk_boot *b, struct bk_err *err)
{
	const char *root = b->env.root;
	const char *sep = root[0] != '\0' && root[strlen(root) - 1] == '/' ? "" : "/";
	int n;

	for (size_t i = 0; i < BK_ELEMENTSOF(esp_candidates); i++) {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", esp_candidates[i], LOADER_DIR);
		fd = bk_open_beneath(b->env.root_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
				     false);
		if (fd >= 0) {
			(void) close(fd);
			priv(b)->esp = esp_candidates[i];
			break;
		}
	}
	if (priv(b)->esp)
		n = snprintf(b->location, sizeof(b->location), "%s%s%s/%s", root, sep, priv(b)->esp,
			     ENTRIES_DIR);
	else
		n = snprintf(b->location, sizeof(b->location),
			     "%s%s{efi,boot/efi,boot}/%s (no ESP with a loader/ directory)", root,
			     sep, ENTRIES_DIR);
	if (n < 0 || (size_t) n >= sizeof(b->location))
		return bk_err_set(err, -ENAMETOOLONG, "root '%s' is too long", root);
	return 0;
}

/* Open ESP/rel beneath the root: an fd, or -errno. */
static int open_esp_dir(struct bk_boot *b, const char *rel)
{
	char path[64];

	snprintf(path, sizeof(path), "%s/%s", priv(b)->esp, rel);
	return bk_open_beneath(b->env.root_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
}

/* --- names ---------------------------------------------------------------------------------- */

/* A decimal without sign or leading zero, up to a non-digit; *end gets the rest. */
static int parse_counter(const char *s, const char **end, uint64_t *ret)
{
	char buf[24];
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n >= sizeof(buf) || (s[0] == '0' && n > 1))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (bk_parse_u64(buf, ret) < 0)
		return -EINVAL;
	*end = s + n;
	return 0;
}

/*
 * Which bank a file of the entries directory belongs to: 0 (A), 1 (B), -ENOENT (not ours),
 * -ENOEXEC (ours by its prefix but not a name we write). Fills *e's name and counter.
 */
static int parse_entry_name(const char *name, struct entry *e)
{
	size_t len = strlen(name);

	if (len < 5 || strcmp(name + len - 5, ".conf") != 0)
		return -ENOENT;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		size_t plen = strlen(entry_prefix[i]);
		const char *p = name + plen;

		if (strncmp(name, entry_prefix[i], plen) != 0)
			continue;
		if (p[0] != '.' && p[0] != '+')
			return -ENOENT; /* "bootbank-ab.conf": someone else's */
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", name);
		if (strcmp(p, ".conf") == 0)
			return i;
		if (parse_counter(p + 1, &p, &e->left) < 0)
			return -ENOEXEC;
		e->counted = true;
		if (p[0] == '-') {
			if (parse_counter(p + 1, &p, &e->done) < 0)
				return -ENOEXEC;
			e->has_done = true;
		}
		return strcmp(p, ".conf") == 0 ? i : -ENOEXEC;
	}
	return -ENOENT;
}

/* Both banks' entries (absent ones with an empty name). Returns 0 or -ENOEXEC/-errno. */
static int scan_entries(int dfd, struct entry ret[_BK_BANK_MAX], struct bk_err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct dirent *de;
	DIR *dir;
	int r = 0;

	memset(ret, 0, sizeof(struct entry) * _BK_BANK_MAX);
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot read '%s': %m", ENTRIES_DIR);
	dir = fdopendir(fd);
	if (!dir)
		return bk_err_set(err, -errno, "cannot read '%s': %m", ENTRIES_DIR);
	fd = -EBADF; /* owned by dir */
	while (r == 0 && (de = readdir(dir))) {
		struct entry e;
		int bank = parse_entry_name(de->d_name, &e);

		if (bank == -ENOENT)
			continue;
		if (bank < 0)
			r = bk_err_set(
				err, -ENOEXEC,
				"'%s' is not a bootbank entry name (bootbank-a[+LEFT[-DONE]].conf)",
				de->d_name);
		else if (ret[bank].name[0] != '\0')
			r = bk_err_set(err, -ENOEXEC, "two entries for bank %s: '%s' and '%s'",
				       bk_bank_id_to_string((enum bk_bank_id) bank), ret[bank].name,
				       e.name);
		else
			ret[bank] = e;
	}
	closedir(dir);
	if (r < 0)
		return r;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		if (ret[i].name[0] == '\0')
			continue;
		r = bk_read_file_at(dfd, ret[i].name, ENTRY_MAX_SIZE, &ret[i].body, NULL, err);
		if (r < 0) {
			for (int k = 0; k < _BK_BANK_MAX; k++)
				entry_release(&ret[k]);
			return r == -EFBIG || r == -EBADFD ? bk_err_recode(err, -ENOEXEC) : r;
		}
	}
	return 0;
}

/* The entry name for a bank in state bb (NULL for an empty bank). done: DONE to keep. */
static void entry_name_for(enum bk_bank_id id, const struct bk_bank_boot *bb, uint64_t done,
			   char *buf, size_t len)
{
	const char *p = entry_prefix[id];

	switch (bb->state) {
	case BK_BANK_GOOD:
		snprintf(buf, len, "%s.conf", p);
		break;
	case BK_BANK_STAGED:
		snprintf(buf, len, "%s+%" PRIu64 ".conf", p, bb->tries_left);
		break;
	case BK_BANK_TRYING:
		/* trying with no tries left is +0-D, which reads back as bad (docs). */
		snprintf(buf, len, "%s+%" PRIu64 "-%" PRIu64 ".conf", p, bb->tries_left, done);
		break;
	case BK_BANK_BAD:
		snprintf(buf, len, "%s+0-%" PRIu64 ".conf", p, done);
		break;
	case BK_BANK_EMPTY:
	case _BK_BANK_STATE_MAX:
	case _BK_BANK_STATE_INVALID:
	default:
		buf[0] = '\0';
		break;
	}
}

/* --- entry bodies ------------------------------------------------------------------------------
 */

/* A line of ours: rewritten on every save, never kept from the old body or the template. */
static bool managed_line(const char *line, size_t len)
{
	static const char *const keys[] = { "version", "sort-key" };

	if (len >= 11 && strncmp(line, "# bootbank-", 11) == 0)
		return true;
	if (len >= 10 && strncmp(line, "# bootbank", 10) == 0)
		return true;
	for (size_t i = 0; i < BK_ELEMENTSOF(keys); i++) {
		size_t k = strlen(keys[i]);

		if (len > k && strncmp(line, keys[i], k) == 0 &&
		    (line[k] == ' ' || line[k] == '\t'))
			return true;
	}
	return false;
}

/* Read "# bootbank-epoch N", "# bootbank-bad-reason TEXT" and "version N" from an entry. */
static int parse_body(const char *body, const char *name, struct bk_bank_boot *bb,
		      char reason[BK_BOOT_BAD_REASON_MAX + 1], struct bk_err *err)
{
	bool have_version = false, have_epoch = false;
	const char *line = body;

	while (*line) {
		size_t len = strcspn(line, "\n");
		char buf[256];

		if (len < sizeof(buf)) {
			memcpy(buf, line, len);
			buf[len] = '\0';
			if (strncmp(buf, "version ", 8) == 0) {
				if (buf[8] == '0' && buf[9] != '\0')
					return bk_err_set(err, -ENOEXEC,
							  "'%s': version '%s' is not a generation",
							  name, buf + 8);
				if (bk_parse_u64(buf + 8, &bb->generation) < 0)
					return bk_err_set(err, -ENOEXEC,
							  "'%s': version '%s' is not a generation",
							  name, buf + 8);
				have_version = true;
			} else if (strncmp(buf, "# bootbank-epoch ", 17) == 0) {
				if ((buf[17] == '0' && buf[18] != '\0') ||
				    bk_parse_u64(buf + 17, &bb->epoch) < 0)
					return bk_err_set(err, -ENOEXEC, "'%s': bad epoch '%s'",
							  name, buf + 17);
				have_epoch = true;
			} else if (strncmp(buf, "# bootbank-bad-reason ", 22) == 0) {
				if (strlen(buf + 22) > BK_BOOT_BAD_REASON_MAX)
					return bk_err_set(err, -ENOEXEC,
							  "'%s': bad reason too long", name);
				memcpy(reason, buf + 22, strlen(buf + 22) + 1);
			}
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	if (!have_version || !have_epoch)
		return bk_err_set(err, -ENOEXEC,
				  "'%s' lacks bankctl's 'version' or '# bootbank-epoch' line",
				  name);
	return 0;
}

/*
 * The body to write for bank id: bankctl's lines, then every other line of base (the old
 * entry, the installer's template or the default), with `options` carrying bootbank.bank=X.
 */
static char *make_body(enum bk_bank_id id, const struct bk_boot_data *d, const char *base)
{
	const struct bk_bank_boot *bb = &d->state.bank[id];
	const char *bank = bk_bank_id_to_string(id);
	bool pinned = d->state.pin == id, have_options = false;
	char *out = NULL;
	size_t size = 0;
	FILE *f;

	f = open_memstream(&out, &size);
	if (!f)
		return NULL;
	fprintf(f,
		"# bootbank: bank %s, written by bankctl (docs/systemd-boot.md): the file name\n"
		"# bootbank: carries the boot counter, version the generation, sort-key the pin.\n",
		bank);
	fprintf(f, "# bootbank-epoch %" PRIu64 "\n", bb->epoch);
	if (bb->state == BK_BANK_BAD && d->bad_reason[id][0] != '\0')
		fprintf(f, "# bootbank-bad-reason %s\n", d->bad_reason[id]);
	fprintf(f, "sort-key bootbank-%d\n", pinned ? 0 : 1);
	fprintf(f, "version %" PRIu64 "\n", bb->generation);

	for (const char *line = base; *line;) {
		size_t len = strcspn(line, "\n");

		if (len > 0 && !managed_line(line, len)) {
			if (len > 8 && strncmp(line, "options", 7) == 0 &&
			    (line[7] == ' ' || line[7] == '\t')) {
				/* options without any bootbank.bank= word, then ours. */
				const char *w = line + 7;

				have_options = true;
				fputs("options", f);
				while (w < line + len) {
					size_t sp = strspn(w, " \t");
					size_t wl;

					w += sp;
					wl = strcspn(w, " \t\n");
					if (w + wl > line + len)
						wl = (size_t) (line + len - w);
					if (wl > 0 && strncmp(w, "bootbank.bank=", 14) != 0)
						fprintf(f, " %.*s", (int) wl, w);
					w += wl;
				}
				fprintf(f, " bootbank.bank=%s\n", bank);
			} else {
				fprintf(f, "%.*s\n", (int) len, line);
			}
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	if (!have_options)
		fprintf(f, "options bootbank.bank=%s\n", bank);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* The installer's template for bank id, or the default body (kernel and initrd on the ESP). */
static int read_template(struct bk_boot *b, enum bk_bank_id id, char **ret, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char *buf = NULL;
	int r;

	dfd = open_esp_dir(b, LOADER_DIR);
	if (dfd < 0)
		return bk_err_set(err, dfd, "cannot open '%s/%s': %s", priv(b)->esp, LOADER_DIR,
				  strerror(-dfd));
	r = bk_read_file_at(dfd, template_name[id], ENTRY_MAX_SIZE, &buf, NULL, err);
	if (r == -ENOENT) {
		const char *x = id == BK_BANK_A ? "a" : "b";

		bk_err_clear(err);
		if (asprintf(&buf,
			     "title bootbank %s\nlinux /bootbank/%s/vmlinuz\ninitrd "
			     "/bootbank/%s/initrd.img\n",
			     bk_bank_id_to_string(id), x, x) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		*ret = buf;
		return 0;
	}
	if (r < 0)
		return r;
	*ret = buf;
	return 0;
}

/* --- the side file ------------------------------------------------------------------------------
 */

/* "format 1", "floor N", "pin A|B|none", optional "last BANK REASON TIME". */
static int parse_state_file(const char *text, struct bk_boot_data *d, struct bk_err *err)
{
	bool have_format = false, have_floor = false, have_pin = false;
	const char *line = text;

	while (*line) {
		size_t len = strcspn(line, "\n");
		char buf[128], w1[16], w2[24], w3[24];
		int n = 0;

		if (len >= sizeof(buf))
			return bk_err_set(err, -ENOEXEC, "%s: line too long", STATE_FILE);
		memcpy(buf, line, len);
		buf[len] = '\0';
		line += len;
		if (*line == '\n')
			line++;
		if (buf[0] == '#' || buf[0] == '\0')
			continue;
		if (sscanf(buf, "format %23[0-9]%n", w2, &n) == 1 && buf[n] == '\0') {
			if (strcmp(w2, "1") != 0)
				return bk_err_set(err, -ENOEXEC, "%s: unsupported format %s",
						  STATE_FILE, w2);
			have_format = true;
		} else if (sscanf(buf, "floor %23[0-9]%n", w2, &n) == 1 && buf[n] == '\0' &&
			   (w2[0] != '0' || w2[1] == '\0') &&
			   bk_parse_u64(w2, &d->state.floor) == 0) {
			have_floor = true;
		} else if (sscanf(buf, "pin %15s%n", w1, &n) == 1 && buf[n] == '\0' &&
			   (strcmp(w1, "none") == 0 || strcmp(w1, "A") == 0 ||
			    strcmp(w1, "B") == 0)) {
			d->state.pin = strcmp(w1, "none") == 0 ? _BK_BANK_INVALID :
								 bk_bank_id_from_string(w1);
			have_pin = true;
		} else if (sscanf(buf, "last %1[AB] %15[a-z] %23[0-9]%n", w1, w2, w3, &n) == 3 &&
			   buf[n] == '\0' && bk_boot_reason_from_string(w2) >= 0 &&
			   bk_parse_u64(w3, &d->last.time) == 0) {
			d->last.bank = bk_bank_id_from_string(w1);
			d->last.reason = bk_boot_reason_from_string(w2);
			d->has_last = true;
		} else {
			return bk_err_set(err, -ENOEXEC, "%s: unexpected line '%s'", STATE_FILE,
					  buf);
		}
	}
	if (!have_format || !have_floor || !have_pin)
		return bk_err_set(err, -ENOEXEC, "%s lacks a format, floor or pin line",
				  STATE_FILE);
	return 0;
}

/* --- load and save ------------------------------------------------------------------------------
 */

static int sdboot_load(struct bk_boot *b, struct bk_boot_data *ret, struct bk_err *err)
{
	struct entry e[_BK_BANK_MAX];
	struct bk_boot_data d = *ret;
	_cleanup_close_ int dfd = -EBADF, ldfd = -EBADF;
	_cleanup_free_ char *text = NULL;
	int r;

	if (!priv(b)->esp)
		return 0; /* no ESP: nothing was ever written */

	ldfd = open_esp_dir(b, LOADER_DIR);
	if (ldfd < 0)
		return bk_err_set(err, ldfd, "cannot open '%s': %s", b->location, strerror(-ldfd));
	r = bk_read_file_at(ldfd, STATE_FILE, 4096, &text, NULL, err);
	if (r == -ENOENT)
		bk_err_clear(err);
	else if (r == -EFBIG || r == -EBADFD)
		return bk_err_recode(err, -ENOEXEC);
	else if (r < 0)
		return r;
	else {
		r = parse_state_file(text, &d, err);
		if (r < 0)
			return r;
	}

	dfd = open_esp_dir(b, ENTRIES_DIR);
	if (dfd == -ENOENT) {
		*ret = d;
		return 0;
	}
	if (dfd < 0)
		return bk_err_set(err, dfd, "cannot open '%s': %s", b->location, strerror(-dfd));
	r = scan_entries(dfd, e, err);
	if (r < 0)
		return r;
	for (int i = 0; i < _BK_BANK_MAX && r == 0; i++) {
		struct bk_bank_boot *bb = &d.state.bank[i];

		if (e[i].name[0] == '\0') {
			*bb = (struct bk_bank_boot){ BK_BANK_EMPTY, 0, 0, 0 };
			continue;
		}
		if (!e[i].counted) {
			bb->state = BK_BANK_GOOD;
			bb->tries_left = 0;
		} else if (!e[i].has_done) {
			bb->state = BK_BANK_STAGED;
			bb->tries_left = e[i].left;
		} else {
			bb->state = e[i].left > 0 ? BK_BANK_TRYING : BK_BANK_BAD;
			bb->tries_left = e[i].left;
		}
		r = parse_body(e[i].body, e[i].name, bb, d.bad_reason[i], err);
		if (r == 0 && bb->state != BK_BANK_BAD)
			d.bad_reason[i][0] = '\0';
	}
	for (int i = 0; i < _BK_BANK_MAX; i++)
		entry_release(&e[i]);
	if (r < 0)
		return r;
	*ret = d;
	return 0;
}

/* Write (dfd, name) with body unless it holds exactly that already. */
static int write_if_changed(int dfd, const char *name, const char *old, const char *body,
			    struct bk_err *err)
{
	if (old && strcmp(old, body) == 0)
		return 0;
	return bk_write_atomic_at(dfd, name, body, strlen(body), 0644, 0, err);
}

static int save_bank(struct bk_boot *b, int dfd, enum bk_bank_id id, const struct entry *cur,
		     const struct bk_boot_data *d, struct bk_err *err)
{
	const struct bk_bank_boot *bb = &d->state.bank[id];
	_cleanup_free_ char *tmpl = NULL, *body = NULL;
	char name[NAME_MAX + 1];
	uint64_t done;
	int r;

	if (bb->state == BK_BANK_EMPTY) {
		if (cur->name[0] == '\0')
			return 0;
		if (unlinkat(dfd, cur->name, 0) < 0)
			return bk_err_set(err, -errno, "cannot remove '%s': %m", cur->name);
		if (bk_fsync_dir(dfd) < 0)
			return bk_err_set(err, -errno, "cannot flush '%s': %m", ENTRIES_DIR);
		return 0;
	}

	/*
	 * DONE (tries used) is the loader's count: kept as found, so that systemd-bless-boot,
	 * which renames +LEFT-DONE as it booted, finds the file. A new count starts at 1 when a
	 * try taken by bankctl (boot --simulate) lowers LEFT below what the name says.
	 */
	done = cur->has_done ? cur->done : 0;
	if (bb->state == BK_BANK_TRYING && cur->counted && bb->tries_left < cur->left)
		done += cur->left - bb->tries_left;
	else if (bb->state == BK_BANK_TRYING && done == 0)
		done = 1;
	entry_name_for(id, bb, done, name, sizeof(name));

	if (!cur->body) {
		r = read_template(b, id, &tmpl, err);
		if (r < 0)
			return r;
	}
	body = make_body(id, d, cur->body ? cur->body : tmpl);
	if (!body)
		return bk_err_set(err, -ENOMEM, "out of memory");

	/* Content first, under the old name (one atomic replace), then the counter (a rename). */
	r = write_if_changed(dfd, cur->name[0] ? cur->name : name, cur->body, body, err);
	if (r < 0)
		return r;
	if (cur->name[0] != '\0' && strcmp(cur->name, name) != 0) {
		if (renameat(dfd, cur->name, dfd, name) < 0)
			return bk_err_set(err, -errno, "cannot rename '%s' to '%s': %m", cur->name,
					  name);
		if (bk_fsync_dir(dfd) < 0)
			return bk_err_set(err, -errno, "cannot flush '%s': %m", ENTRIES_DIR);
	}
	return 0;
}

static int sdboot_save(struct bk_boot *b, const struct bk_boot_data *d, struct bk_err *err)
{
	struct entry e[_BK_BANK_MAX];
	_cleanup_close_ int dfd = -EBADF, ldfd = -EBADF;
	_cleanup_free_ char *text = NULL;
	struct bk_err e2 = { 0 };
	int r = 0;

	if (!priv(b)->esp)
		return bk_err_set(err, -ENOENT,
				  "cannot save '%s': install systemd-boot first (bootctl install "
				  "creates ESP/loader)",
				  b->location);
	ldfd = open_esp_dir(b, LOADER_DIR);
	if (ldfd < 0)
		return bk_err_set(err, ldfd, "cannot save '%s': %s", b->location, strerror(-ldfd));
	r = bk_mkdir_p_at(ldfd, "entries", 0755, &dfd, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	(void) bk_remove_stale_temps_at(dfd, NULL);
	r = scan_entries(dfd, e, &e2);
	if (r == -ENOEXEC)
		return bk_err_set(err, r, "corrupt boot state '%s': %s", b->location, e2.msg);
	if (r < 0)
		return bk_err_set(err, r, "cannot save '%s': %s", b->location, e2.msg);
	/* A corrupt store is never rewritten (docs/banks.md): check what we would build on. */
	for (int i = 0; i < _BK_BANK_MAX && r == 0; i++) {
		struct bk_bank_boot bb;
		char reason[BK_BOOT_BAD_REASON_MAX + 1];

		if (e[i].body)
			r = parse_body(e[i].body, e[i].name, &bb, reason, &e2);
	}
	if (r == 0) {
		struct bk_boot_data side;

		bk_boot_data_init(&side);
		r = bk_read_file_at(ldfd, STATE_FILE, 4096, &text, NULL, &e2);
		if (r == -ENOENT)
			r = 0;
		else if (r >= 0)
			r = parse_state_file(text, &side, &e2);
		else
			(void) bk_err_recode(&e2, -ENOEXEC);
		free(text);
		text = NULL;
	}
	if (r < 0) {
		for (int i = 0; i < _BK_BANK_MAX; i++)
			entry_release(&e[i]);
		return bk_err_set(err, -ENOEXEC, "corrupt boot state '%s': %s", b->location,
				  e2.msg);
	}

	/* Banks that lose eligibility first: a crash in between never adds a bootable bank. */
	for (int pass = 0; pass < 2 && r == 0; pass++)
		for (int i = 0; i < _BK_BANK_MAX && r == 0; i++)
			if (bk_bank_is_eligible(&d->state, (enum bk_bank_id) i) == (pass == 1))
				r = save_bank(b, dfd, (enum bk_bank_id) i, &e[i], d, err);
	for (int i = 0; i < _BK_BANK_MAX; i++)
		entry_release(&e[i]);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);

	if (d->has_last)
		r = asprintf(
			&text, "format %d\nfloor %" PRIu64 "\npin %s\nlast %s %s %" PRIu64 "\n",
			STATE_FORMAT, d->state.floor, bk_bank_id_to_string(d->state.pin) ?: "none",
			bk_bank_id_to_string(d->last.bank),
			bk_boot_reason_to_string(d->last.reason) ?: "none", d->last.time);
	else
		r = asprintf(&text, "format %d\nfloor %" PRIu64 "\npin %s\n", STATE_FORMAT,
			     d->state.floor, bk_bank_id_to_string(d->state.pin) ?: "none");
	if (r < 0) {
		text = NULL;
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_write_atomic_at(ldfd, STATE_FILE, text, strlen(text), 0644, 0, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot save '%s'", b->location);
	return 0;
}

const struct bk_boot_ops bk_boot_sdboot_ops = {
	.name = "systemd-boot",
	.features = BK_BOOT_KEEPS_BAD_REASON | BK_BOOT_KEEPS_LAST_BOOT,
	.priv_size = sizeof(struct sdboot_priv),
	.open = sdboot_open,
	.load = sdboot_load,
	.save = sdboot_save,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The /etc carry-forward at stage time (docs/initramfs.md, "/etc"; bk-op-etc.h). The layer is
 * an overlayfs upper directory: regular files, symbolic links, directories (an opaque one has
 * the xattr trusted.overlay.opaque), whiteouts (character devices 0/0); all are copied with
 * their owner, mode, times and extended attributes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "bk-cleanup.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-mount.h"
#include "bk-op-etc.h"
#include "bk-sha256.h"

void bk_op_etc_carry_release(struct bk_op_etc_carry *c)
{
	for (size_t i = 0; i < c->n_conflicts; i++)
		free(c->conflicts[i]);
	free(c->conflicts);
	c->conflicts = NULL;
	c->n_conflicts = 0;
}

/* ---- removing and copying a tree ---------------------------------------------------------- */

/* Remove (dfd, name), a directory with everything in it or anything else; 0 when absent. */
static int remove_tree_at(int dfd, const char *name, unsigned depth)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > BK_OP_ETC_MAX_DEPTH)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		(void) close(fd);
		return r;
	}
	while (r >= 0 && (errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = remove_tree_at(dirfd(d), de->d_name, depth + 1);
	}
	if (r >= 0 && errno != 0)
		r = -errno;
	(void) closedir(d);
	if (r < 0)
		return r;
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}

/* Every extended attribute of sfd onto dfd (trusted.overlay.opaque among them). */
static int copy_xattrs(int sfd, int dfd)
{
	_cleanup_free_ char *names = NULL, *val = NULL;
	ssize_t n, vn;

	n = flistxattr(sfd, NULL, 0);
	if (n < 0)
		return errno == ENOTSUP ? 0 : -errno;
	if (n == 0)
		return 0;
	names = malloc((size_t) n);
	val = malloc(XATTR_SIZE_MAX);
	if (!names || !val)
		return -ENOMEM;
	n = flistxattr(sfd, names, (size_t) n);
	if (n < 0)
		return -errno;
	for (char *p = names; p < names + n; p += strlen(p) + 1) {
		/* a file handle of the previous image's lower filesystem: meaningless over the new
		 */
		if (strcmp(p, "trusted.overlay.origin") == 0)
			continue;
		vn = fgetxattr(sfd, p, val, XATTR_SIZE_MAX);
		if (vn < 0)
			return -errno;
		if (fsetxattr(dfd, p, val, (size_t) vn, 0) < 0)
			return -errno;
	}
	return 0;
}

/* Owner, mode, extended attributes and times of st onto fd (a regular file or directory). */
static int copy_attrs(int sfd, int fd, const struct stat *st)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	int r;

	if (fchown(fd, st->st_uid, st->st_gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0)
		return -errno;
	r = copy_xattrs(sfd, fd);
	if (r < 0)
		return r;
	return futimens(fd, ts) < 0 ? -errno : 0;
}

static int copy_data(int sfd, int fd)
{
	char buf[65536];
	ssize_t n;

	for (;;) {
		n = read(sfd, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		if (bk_write_full(fd, buf, (size_t) n) < 0)
			return -errno;
	}
}

struct walk {
	int old_etc; /* the booted image's /etc, -1 when unknown */
	int new_etc; /* the new image's /etc, -1 when it has none */
	char rel[PATH_MAX];
	struct bk_op_etc_carry *c;
	struct bk_err *err;
};

/* lstat (etc, rel) without following a symbolic link anywhere: 0, -ENOENT, or -errno. */
static int stat_in(int etc, const char *rel, struct stat *st)
{
	_cleanup_close_ int pfd = -EBADF;
	_cleanup_free_ char *dir = NULL;
	const char *slash = strrchr(rel, '/');

	if (etc < 0)
		return -ENOENT;
	if (!slash)
		return fstatat(etc, rel, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	dir = strndup(rel, (size_t) (slash - rel));
	if (!dir)
		return -ENOMEM;
	pfd = bk_open_beneath(etc, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, true);
	if (pfd < 0)
		return pfd == -ENOTDIR ? -ENOENT : pfd;
	return fstatat(pfd, slash + 1, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* Are the files (a, rel) and (b, rel), of sizes known equal, the same bytes? 1 yes, 0 no. */
static int same_bytes(int a, int b, const char *rel)
{
	_cleanup_close_ int fa = -EBADF, fb = -EBADF;
	char ba[16384], bb[16384];
	ssize_t na, nb;

	fa = bk_open_beneath(a, rel, O_RDONLY | O_CLOEXEC, 0, true);
	fb = bk_open_beneath(b, rel, O_RDONLY | O_CLOEXEC, 0, true);
	if (fa < 0 || fb < 0)
		return 0;
	for (;;) {
		na = bk_read_full(fa, ba, sizeof(ba));
		nb = bk_read_full(fb, bb, sizeof(bb));
		if (na < 0 || nb < 0 || na != nb || memcmp(ba, bb, (size_t) na) != 0)
			return 0;
		if (na == 0)
			return 1;
	}
}

/*
 * Did the new image change rel, compared with the booted image? 1 changed, 0 the same. A path
 * that cannot be compared (no booted image, a symbolic link on its way) counts as changed: a
 * conflict reported too often is better than one not reported.
 */
static int image_changed(const struct walk *w)
{
	struct stat so, sn;
	char lo[PATH_MAX], ln[PATH_MAX];
	ssize_t no, nn;
	int ro, rn;

	if (w->old_etc < 0)
		return 1;
	ro = stat_in(w->old_etc, w->rel, &so);
	rn = stat_in(w->new_etc, w->rel, &sn);
	if (ro == -ENOENT && rn == -ENOENT)
		return 0;
	if (ro < 0 || rn < 0 || (so.st_mode & S_IFMT) != (sn.st_mode & S_IFMT))
		return 1;
	if (S_ISREG(so.st_mode))
		return so.st_size != sn.st_size || !same_bytes(w->old_etc, w->new_etc, w->rel);
	if (S_ISLNK(so.st_mode)) {
		_cleanup_close_ int po = -EBADF, pn = -EBADF;
		char *slash = strrchr(w->rel, '/');
		const char *base = slash ? slash + 1 : w->rel;

		if (slash) {
			*slash = '\0';
			po = bk_open_beneath(w->old_etc, w->rel, O_PATH | O_DIRECTORY | O_CLOEXEC,
					     0, true);
			pn = bk_open_beneath(w->new_etc, w->rel, O_PATH | O_DIRECTORY | O_CLOEXEC,
					     0, true);
			*slash = '/';
			if (po < 0 || pn < 0)
				return 1;
		}
		no = readlinkat(slash ? po : w->old_etc, base, lo, sizeof(lo));
		nn = readlinkat(slash ? pn : w->new_etc, base, ln, sizeof(ln));
		return no < 0 || nn < 0 || no != nn || memcmp(lo, ln, (size_t) no) != 0;
	}
	if (S_ISDIR(so.st_mode))
		return 0;
	return so.st_rdev != sn.st_rdev;
}

static int add_conflict(struct walk *w)
{
	char **l = realloc(w->c->conflicts, (w->c->n_conflicts + 1) * sizeof(char *));

	if (!l)
		return -ENOMEM;
	w->c->conflicts = l;
	if (asprintf(&l[w->c->n_conflicts], "/etc/%s", w->rel) < 0)
		return -ENOMEM;
	w->c->n_conflicts++;
	return 0;
}

/*
 * Copy the entry name of sdfd into ddfd (w->rel is its path in the layer, empty for the layer's
 * top directory), and judge every non-directory against the two images.
 */
static int copy_entry(struct walk *w, int sdfd, int ddfd, const char *name, unsigned depth)
{
	_cleanup_close_ int sfd = -EBADF, fd = -EBADF;
	size_t rel_len = strlen(w->rel);
	struct stat st;
	int r;

	if (fstatat(sdfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return bk_err_set(w->err, -errno, "cannot stat '%s': %m", w->rel);
	if (depth > BK_OP_ETC_MAX_DEPTH)
		return bk_err_set(w->err, -ELOOP, "'%s': more than %d levels", w->rel,
				  BK_OP_ETC_MAX_DEPTH);
	if (S_ISDIR(st.st_mode)) {
		struct dirent *de;
		DIR *d;

		if (mkdirat(ddfd, name, 0700) < 0)
			return bk_err_set(w->err, -errno, "cannot make '%s': %m", w->rel);
		sfd = openat(sdfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		fd = openat(ddfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0 || fd < 0)
			return bk_err_set(w->err, -errno, "cannot open '%s': %m", w->rel);
		r = dup(sfd);
		d = r < 0 ? NULL : fdopendir(r);
		if (!d) {
			if (r >= 0)
				(void) close(r);
			return bk_err_set(w->err, -errno, "cannot read '%s': %m", w->rel);
		}
		r = 0;
		while (r >= 0 && (errno = 0, de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (snprintf(w->rel + rel_len, sizeof(w->rel) - rel_len, "%s%s",
				     rel_len ? "/" : "",
				     de->d_name) >= (int) (sizeof(w->rel) - rel_len)) {
				r = bk_err_set(w->err, -ENAMETOOLONG,
					       "a path under '%s' is too long", w->rel);
				break;
			}
			r = copy_entry(w, dirfd(d), fd, de->d_name, depth + 1);
			w->rel[rel_len] = '\0';
		}
		if (r >= 0 && errno != 0)
			r = bk_err_set(w->err, -errno, "cannot read '%s': %m", w->rel);
		(void) closedir(d);
		if (r < 0)
			return r;
		r = copy_attrs(sfd, fd, &st);
		if (r < 0)
			return bk_err_set(w->err, r, "cannot copy the attributes of '%s': %s",
					  w->rel, strerror(-r));
		w->c->n_entries++;
		return 0;
	}

	if (S_ISREG(st.st_mode)) {
		sfd = openat(sdfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0)
			return bk_err_set(w->err, -errno, "cannot open '%s': %m", w->rel);
		fd = openat(ddfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return bk_err_set(w->err, -errno, "cannot make '%s': %m", w->rel);
		r = copy_data(sfd, fd);
		if (r >= 0)
			r = copy_attrs(sfd, fd, &st);
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		struct timespec ts[2] = { st.st_atim, st.st_mtim };
		ssize_t n = readlinkat(sdfd, name, target, sizeof(target) - 1);

		if (n < 0)
			return bk_err_set(w->err, -errno, "cannot read the link '%s': %m", w->rel);
		target[n] = '\0';
		r = symlinkat(target, ddfd, name) < 0 ||
				    fchownat(ddfd, name, st.st_uid, st.st_gid,
					     AT_SYMLINK_NOFOLLOW) < 0 ||
				    utimensat(ddfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 ?
			    -errno :
			    0;
	} else {
		/* A whiteout (character device 0/0), or another special file the admin made. */
		struct timespec ts[2] = { st.st_atim, st.st_mtim };

		r = mknodat(ddfd, name, st.st_mode, st.st_rdev) < 0 ||
				    fchownat(ddfd, name, st.st_uid, st.st_gid,
					     AT_SYMLINK_NOFOLLOW) < 0 ||
				    fchmodat(ddfd, name, st.st_mode & 07777, 0) < 0 ||
				    utimensat(ddfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 ?
			    -errno :
			    0;
	}
	if (r < 0)
		return bk_err_set(w->err, r, "cannot copy '%s': %s", w->rel, strerror(-r));
	w->c->n_entries++;
	if (image_changed(w)) {
		r = add_conflict(w);
		if (r < 0)
			return bk_err_set(w->err, r, "out of memory");
	}
	return 0;
}

/* ---- the carry ---------------------------------------------------------------------------- */

/* The image's rootfs payload: its name and filesystem; NULL when it has none it can mount. */
static const struct bk_payload *rootfs_payload(const struct bk_manifest *m)
{
	for (size_t i = 0; i < m->n_payloads; i++)
		if (m->payloads[i].type == BK_PAYLOAD_ROOTFS &&
		    (m->payloads[i].fs == BK_FS_SQUASHFS || m->payloads[i].fs == BK_FS_EROFS ||
		     m->payloads[i].fs == BK_FS_EXT4))
			return &m->payloads[i];
	return NULL;
}

static int carry(struct bk_op_ctx *ctx, int layers, enum bk_bank_id from, enum bk_bank_id to,
		 const struct bk_bank_record *rec, struct walk *w, struct bk_err *err)
{
	_cleanup_close_ int from_dfd = -EBADF, new_dfd = -EBADF;
	char hex[BK_SHA256_HEX_LEN + 2];
	char tname[8], nname[16], oname[16];
	int r;

	(void) snprintf(tname, sizeof(tname), "%s", bk_bank_id_to_string(to));
	(void) snprintf(nname, sizeof(nname), "%s.new", tname);
	(void) snprintf(oname, sizeof(oname), "%s.old", tname);
	from_dfd = openat(layers, bk_bank_id_to_string(from),
			  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (from_dfd < 0)
		return bk_err_set(err, -errno, "cannot open bank %s's layer: %m",
				  bk_bank_id_to_string(from));
	/* What a killed run left. */
	r = remove_tree_at(layers, nname, 0);
	if (r >= 0)
		r = remove_tree_at(layers, oname, 0);
	if (r < 0)
		return bk_err_set(err, r, "cannot remove a previous '%s': %s", nname, strerror(-r));
	if (mkdirat(layers, nname, 0755) < 0)
		return bk_err_set(err, -errno, "cannot make '%s': %m", nname);
	new_dfd = openat(layers, nname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (new_dfd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", nname);
	w->rel[0] = '\0';
	r = copy_entry(w, from_dfd, new_dfd, "upper", 0);
	if (r < 0)
		return r;
	w->c->n_entries--; /* the layer's top directory is no entry of /etc */
	/* overlayfs needs an empty work directory on the same filesystem */
	if (mkdirat(new_dfd, "work", 0755) < 0)
		return bk_err_set(err, -errno, "cannot make '%s/work': %m", nname);
	bk_sha256_to_hex(rec->manifest_sha256, hex);
	(void) strcat(hex, "\n");
	/* Durable before it takes the old layer's place (the image file last: it is the commit). */
	if (syncfs(new_dfd) < 0)
		return bk_err_set(err, -errno, "cannot sync the data partition: %m");
	r = bk_write_atomic_at(new_dfd, "image", hex, strlen(hex), 0644, 0, err);
	if (r < 0)
		return r;
	if (renameat(layers, tname, layers, oname) < 0 && errno != ENOENT)
		return bk_err_set(err, -errno, "cannot move bank %s's old layer aside: %m", tname);
	if (renameat(layers, nname, layers, tname) < 0)
		return bk_err_set(err, -errno, "cannot put the new layer in place: %m");
	r = bk_fsync_dir(layers);
	if (r < 0)
		return bk_err_set(err, r, "cannot sync the layers' directory: %s", strerror(-r));
	r = remove_tree_at(layers, oname, 0);
	if (r < 0)
		bk_op_log(ctx, LOG_WARNING, "cannot remove bank %s's old /etc layer: %s, ignoring",
			  tname, strerror(-r));
	return 0;
}

int bk_op_etc_carry(struct bk_op_ctx *ctx, enum bk_bank_id from, enum bk_bank_id to, int bundle_fd,
		    const struct bk_manifest *m, const struct bk_bank_record *rec,
		    struct bk_op_etc_carry *c, struct bk_err *err)
{
	_cleanup_close_ int layers = -EBADF, upper = -EBADF, mnt_dfd = -EBADF;
	_cleanup_free_ char *mnt = NULL;
	_cleanup_free_ struct walk *w = NULL;
	const struct bk_payload *p;
	char name[16];
	int r;

	*c = (struct bk_op_etc_carry){ .from = from };
	layers = bk_open_beneath(ctx->root_fd, BK_OP_ETC_LAYERS_DIR,
				 O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (layers < 0) {
		(void) snprintf(c->skipped, sizeof(c->skipped),
				"no /etc layers in %s (not booted by the bootbank boot method)",
				bk_op_path(ctx, BK_OP_ETC_LAYERS_DIR));
		return 0;
	}
	(void) snprintf(name, sizeof(name), "%s/upper", bk_bank_id_to_string(from));
	upper = openat(layers, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (upper < 0) {
		(void) snprintf(c->skipped, sizeof(c->skipped), "bank %s has no /etc layer",
				bk_bank_id_to_string(from));
		return 0;
	}
	p = rootfs_payload(m);
	if (!p) {
		(void) snprintf(c->skipped, sizeof(c->skipped),
				"the image has no rootfs payload: no /etc to carry into");
		return 0;
	}
	c->tried = true;

	w = calloc(1, sizeof(*w));
	if (!w)
		return bk_err_set(err, -ENOMEM, "out of memory");
	w->c = c;
	w->err = err;
	w->old_etc = bk_open_beneath(ctx->root_fd, BK_OP_ETC_BOOTED_ETC,
				     O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (w->old_etc < 0)
		w->old_etc = -1;
	w->new_etc = -1;

	/* The new image's rootfs, read-only, from the bank just written. */
	r = bk_mkdir_p_at(ctx->root_fd, BK_OP_ETC_NEW_ROOTFS, 0700, &mnt_dfd, err);
	if (r < 0)
		goto out;
	mnt = strdup(bk_op_path(ctx, BK_OP_ETC_NEW_ROOTFS));
	if (!mnt) {
		r = bk_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/*
	 * From the bundle (its bytes were hashed as they were written), not from the bank: a
	 * loop device lets go of its file only after the unmount, and the bank is unmounted
	 * right after this (it would still be busy).
	 */
	r = bk_mount_loop_fd(bundle_fd, p->offset, p->size, bk_payload_fs_to_string(p->fs), mnt,
			     err);
	if (r < 0) {
		(void) bk_err_prefix(err, "cannot mount the rootfs payload '%s'", p->name);
		goto out;
	}
	w->new_etc = bk_open_beneath(ctx->root_fd, BK_OP_ETC_NEW_ROOTFS "/etc",
				     O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (w->new_etc < 0)
		w->new_etc = -1;

	r = carry(ctx, layers, from, to, rec, w, err);
	if (w->new_etc >= 0)
		(void) close(w->new_etc);
	(void) bk_umount(mnt, BK_UMOUNT_DETACH_LOOP, NULL);
out:
	if (w->old_etc >= 0)
		(void) close(w->old_etc);
	if (r < 0) {
		char nname[16];

		(void) snprintf(nname, sizeof(nname), "%s.new", bk_bank_id_to_string(to));
		(void) remove_tree_at(layers, nname, 0);
		bk_op_etc_carry_release(c);
		c->n_entries = 0;
		(void) snprintf(c->skipped, sizeof(c->skipped), "%s", err ? err->msg : "failed");
		return r;
	}
	c->done = true;
	return 0;
}

struct json_object *bk_op_etc_carry_to_json(const struct bk_op_etc_carry *c)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *a;

	if (!o)
		return NULL;
	if (!c->done) {
		if (bk_json_add_string(o, "skipped", c->skipped) < 0)
			return NULL;
		return TAKE_PTR(o);
	}
	a = json_object_new_array();
	if (bk_json_add_string(o, "from", bk_bank_id_to_string(c->from)) < 0 ||
	    bk_json_add_u64(o, "entries", c->n_entries) < 0 || bk_json_add(o, "conflicts", a) < 0)
		return NULL;
	for (size_t i = 0; i < c->n_conflicts; i++)
		if (json_object_array_add(a, json_object_new_string(c->conflicts[i])) < 0)
			return NULL;
	return TAKE_PTR(o);
}

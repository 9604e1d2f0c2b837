/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The revision and workload operations (bankd/bk-op-rev.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-cgroup.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-manifest.h"
#include "bk-op-live.h"
#include "bk-op-rev.h"
#include "bk-op.h"
#include "bk-rev.h"
#include "bk-sha256.h"

/* The live payload of the image in the bank (manifest.json, checked against bank.json). */
static int bank_live_payload(int bank_dfd, struct bk_manifest **ret_m,
			     const struct bk_payload **ret_p, struct bk_err *err)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;
	_cleanup_free_ char *buf = NULL;
	struct bk_manifest *m = NULL;
	uint8_t d[BK_SHA256_LEN];
	size_t len;
	int r;

	r = bk_bank_record_read_at(bank_dfd, &rec, err);
	if (r < 0)
		return r;
	r = bk_read_file_at(bank_dfd, BK_BANK_MANIFEST_FILE, BK_MANIFEST_MAX_SIZE, &buf, &len, err);
	if (r < 0)
		return r;
	if (bk_sha256_buf(buf, len, d) < 0 || memcmp(d, rec->manifest_sha256, sizeof(d)) != 0)
		return bk_err_set(err, -EUCLEAN, "'%s' does not match the bank's record",
				  BK_BANK_MANIFEST_FILE);
	r = bk_manifest_parse(buf, len, 0, &m, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < m->n_payloads; i++)
		if (m->payloads[i].live &&
		    (m->payloads[i].fs == BK_FS_SQUASHFS || m->payloads[i].fs == BK_FS_EROFS)) {
			*ret_p = &m->payloads[i];
			*ret_m = m;
			return 1;
		}
	bk_manifest_free(m);
	return 0;
}

/* Add {"id", "bank", "base"} to the list of what restore mounted. */
static int add_mounted(struct json_object *mounted, const char *id, const char *bank, bool base)
{
	struct json_object *o = json_object_new_object();

	if (!o || json_object_array_add(mounted, o) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	if (bk_json_add_string(o, "id", id) < 0 || bk_op_json_add_nullable(o, "bank", bank) < 0 ||
	    bk_json_add_bool(o, "base", base) < 0)
		return -ENOMEM;
	return 0;
}

/* Hash and mount rev from fd; a failure is a warning (the others are still restored). */
static bool restore_one(struct bk_op_ctx *ctx, struct bk_op_live *live, struct bk_rev *rev, int fd,
			struct json_object *mounted)
{
	struct bk_err err = { 0 };
	int r;

	r = bk_rev_hash_fd(fd, rev, &err);
	if (r >= 0)
		r = bk_rev_mount_fd(live->run_dfd, live->run_path, rev, fd, &err);
	if (r < 0) {
		bk_op_log(ctx, LOG_WARNING, "%s, ignoring", err.msg);
		return false;
	}
	(void) add_mounted(mounted, rev->id, rev->bank, false);
	return true;
}

/*
 * The booted bank's base revision: the live payload of the image it holds, unless a revision
 * of that payload out of this bank is recorded already. Returns 0 or -errno.
 */
static int restore_base(struct bk_op_live *live, int revs_dfd, const char *x, int bank_dfd,
			const char *bank_path, const struct bk_rev *revs, size_t n,
			struct json_object *mounted, struct bk_err *err)
{
	_cleanup_(bk_manifest_freep) struct bk_manifest *m = NULL;
	_cleanup_free_ char *id = NULL;
	_cleanup_close_ int fd = -EBADF;
	const struct bk_payload *p = NULL;
	char hex[BK_SHA256_HEX_LEN + 1];
	struct bk_rev rev = { 0 }, old = { 0 };
	int r;

	r = bank_live_payload(bank_dfd, &m, &p, err);
	if (r <= 0)
		return r == -ENOENT ? 0 : r;
	bk_sha256_to_hex(p->sha256, hex);
	for (size_t i = 0; i < n; i++)
		if (revs[i].bank && strcmp(revs[i].bank, x) == 0 &&
		    strcmp(revs[i].digest, hex) == 0)
			return 0;
	if (asprintf(&id, "%s-%s", m->name, m->version) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (char *c = id; *c; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-",
			    *c))
			*c = '_';
	if (strlen(id) > BK_REV_ID_MAX)
		id[BK_REV_ID_MAX] = '\0';
	if (!bk_rev_id_is_valid(id))
		id[0] = 'r';
	if (bk_rev_load(revs_dfd, id, &old, NULL) == 0) {
		/* That name is taken by another payload: the bank's comes second. */
		bk_rev_release(&old);
		free(id);
		if (asprintf(&id, "%.60s-%s", m->name, x) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		if (!bk_rev_id_is_valid(id) || bk_rev_load(revs_dfd, id, &old, NULL) == 0) {
			bk_rev_release(&old);
			return 0;
		}
	}
	fd = openat(bank_dfd, p->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return bk_err_set(err, -errno, "bank %s: cannot open '%s': %m", x, p->name);
	rev.id = TAKE_PTR(id);
	rev.image = strdup(m->name);
	rev.version = strdup(m->version);
	rev.payload = strdup(p->name);
	rev.fstype = strdup(bk_payload_fs_to_string(p->fs));
	rev.digest = strdup(hex);
	rev.bank = strdup(x);
	rev.size = p->size;
	rev.created = (uint64_t) time(NULL);
	if (asprintf(&rev.source, "%s/%s", bank_path, p->name) < 0)
		rev.source = NULL;
	if (!rev.image || !rev.version || !rev.payload || !rev.fstype || !rev.digest || !rev.bank ||
	    !rev.source) {
		bk_rev_release(&rev);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_rev_hash_fd(fd, &rev, err);
	if (r >= 0)
		r = bk_rev_save(revs_dfd, &rev, true, err);
	if (r >= 0) {
		r = bk_rev_mount_fd(live->run_dfd, live->run_path, &rev, fd, err);
		if (r < 0)
			(void) bk_rev_remove_meta(revs_dfd, rev.id, NULL);
		else
			(void) add_mounted(mounted, rev.id, x, true);
	}
	bk_rev_release(&rev);
	return r;
}

/* ---- rev add ----------------------------------------------------------------------------- */

int bk_op_rev_add(struct bk_op_ctx *ctx, struct bk_rev *rev, char **ret_mount_path,
		  struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_close_ int fd = -EBADF, revs_dfd = -EBADF;
	bool saved = false;
	struct stat st;
	int r;

	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r >= 0)
		r = bk_maint_check(live.state_dfd, "rev add", err);
	if (r < 0)
		goto out;

	/* Hash and mount the very same open file. */
	fd = open(rev->source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = bk_err_set(err, -errno, "cannot open payload '%s': %m", rev->source);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = bk_err_set(err, -EINVAL, "payload '%s' is not a regular file", rev->source);
		goto out;
	}
	/* Hashed, then mounted from the same fd: nobody but root may change it in between. */
	r = bk_bundle_check_trusted(fd, rev->source, err);
	if (r >= 0)
		r = bk_rev_hash_fd(fd, rev, err);
	if (r >= 0)
		r = bk_rev_validate(rev, err);
	if (r >= 0)
		r = bk_mkdir_p_at(live.state_dfd, BK_REVISIONS_DIR, 0755, &revs_dfd, err);
	if (r < 0)
		goto out;
	/* Metadata first: a crash before the mount leaves a revision that restore mounts. */
	r = bk_rev_save(revs_dfd, rev, true, err);
	if (r < 0)
		goto out;
	saved = true;
	r = bk_rev_mount_fd(live.run_dfd, live.run_path, rev, fd, err);
	if (r >= 0 && ret_mount_path &&
	    asprintf(ret_mount_path, "%s/%s/%s", live.run_path, BK_REV_DIR, rev->id) < 0)
		*ret_mount_path = NULL;
out:
	if (r < 0 && saved)
		(void) bk_rev_remove_meta(revs_dfd, rev->id, NULL);
	bk_op_live_close(&live);
	return r;
}

/* ---- rev switch -------------------------------------------------------------------------- */

int bk_op_rev_switch(struct bk_op_ctx *ctx, const char *id, bool no_beneath,
		     struct bk_lp_report **ret_rep, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_rev rev = { 0 };
	int r;

	*ret_rep = NULL;
	if (!bk_rev_id_is_valid(id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", id);
	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r < 0)
		goto out;
	if (no_beneath)
		live.lp.view_flags |= BK_VIEW_NO_BENEATH;
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = revs_dfd < 0 ? bk_err_set(err, -ENOENT, "no revision '%s'", id) :
			   bk_rev_load(revs_dfd, id, &rev, err);
	if (r < 0)
		goto out;
	r = bk_livepatch_switch(&live.lp, id, ret_rep, err);
	if (*ret_rep && (*ret_rep)->hook_warning)
		bk_op_log(ctx, LOG_WARNING, "%s, ignoring", (*ret_rep)->hook_warning);
	if (r < 0 && *ret_rep && (*ret_rep)->rolled_back)
		(void) bk_err_prefix(err, "switch to '%s' rolled back", id);
out:
	bk_rev_release(&rev);
	bk_op_live_close(&live);
	return r;
}

/* ---- rev gc ------------------------------------------------------------------------------ */

static int gc_item(struct json_object *out, const char *id, const char *why, const char *where)
{
	struct json_object *order = json_object_object_get(out, "order");
	struct json_object *o = json_object_new_object(), *k;

	if (!o || json_object_array_add(order, o) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	if (bk_json_add_string(o, "id", id) < 0 || bk_json_add_bool(o, "removed", !why) < 0 ||
	    bk_op_json_add_nullable(o, "reason", why) < 0 ||
	    bk_op_json_add_nullable(o, "where", where) < 0)
		return -ENOMEM;
	if (!why)
		return json_object_array_add(json_object_object_get(out, "removed"),
					     json_object_new_string(id)) < 0 ?
			       -ENOMEM :
			       0;
	k = json_object_new_object();
	if (!k || json_object_array_add(json_object_object_get(out, "kept"), k) < 0) {
		json_object_put(k);
		return -ENOMEM;
	}
	if (bk_json_add_string(k, "id", id) < 0 || bk_json_add_string(k, "reason", why) < 0 ||
	    bk_op_json_add_nullable(k, "where", where) < 0)
		return -ENOMEM;
	return 0;
}

int bk_op_rev_gc(struct bk_op_ctx *ctx, uint64_t keep, struct json_object **ret, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	_cleanup_free_ char *current = NULL, *previous = NULL;
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_rev *revs = NULL;
	size_t n = 0;
	int r;

	if (!out || bk_json_add(out, "removed", json_object_new_array()) < 0 ||
	    bk_json_add(out, "kept", json_object_new_array()) < 0 ||
	    bk_json_add(out, "order", json_object_new_array()) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r < 0)
		goto out;
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd >= 0) {
		r = bk_rev_list(revs_dfd, &revs, &n, err);
		if (r < 0)
			goto out;
	}
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, NULL);

	/* Oldest first; the newest `keep` are kept whatever they are. */
	for (size_t i = 0; i + keep < n; i++) {
		const char *id = revs[i].id;
		_cleanup_free_ char *where = NULL;
		const char *why = NULL;
		dev_t dev;

		if (current && strcmp(id, current) == 0)
			why = "current";
		else if (previous && strcmp(id, previous) == 0)
			why = "previous";
		else if (bk_rev_is_mounted(live.run_dfd, id) &&
			 bk_rev_dev(live.run_dfd, id, &dev, NULL) == 0) {
			r = bk_rev_in_use(live.run_path, id, dev, &where, err);
			if (r < 0)
				goto out;
			if (r > 0)
				why = "in use";
		}
		if (!why) {
			r = bk_rev_umount(live.run_dfd, live.run_path, id, err);
			if (r >= 0)
				r = bk_rev_remove_meta(revs_dfd, id, err);
			if (r < 0)
				goto out;
		}
		r = gc_item(out, id, why, where);
		if (r < 0) {
			(void) bk_err_set(err, r, "out of memory");
			goto out;
		}
	}
	/* A bank whose revisions are all gone need not stay mounted. */
	for (int b = 0; b < _BK_BANK_MAX; b++) {
		r = bk_op_live_bank_release(ctx, &live, (enum bk_bank_id) b, err);
		if (r < 0)
			goto out;
	}
	r = 0;
	*ret = TAKE_PTR(out);
out:
	bk_revs_free(revs, n);
	bk_op_live_close(&live);
	return r;
}

/* ---- rev restore ------------------------------------------------------------------------- */

int bk_op_rev_restore(struct bk_op_ctx *ctx, struct json_object **ret, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	_cleanup_free_ char *current = NULL, *recorded = NULL, *bank_path = NULL;
	_cleanup_close_ int revs_dfd = -EBADF, bank_dfd = -EBADF;
	struct json_object *mounted = json_object_new_array();
	const char *x = NULL, *pick = NULL;
	struct bk_booted booted;
	struct bk_rev *revs = NULL;
	size_t n = 0;
	int r;

	if (!out || bk_json_add(out, "mounted", mounted) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r >= 0)
		r = bk_mkdir_p_at(live.state_dfd, BK_REVISIONS_DIR, 0755, &revs_dfd, err);
	if (r >= 0)
		r = bk_rev_list(revs_dfd, &revs, &n, err);
	if (r < 0)
		goto out;

	/* Revisions out of a bank come back only when that bank is the one booted. */
	if (ctx->configured && bk_op_booted(ctx, &booted, NULL, NULL) == 0) {
		x = bk_bank_id_to_string(booted.bank);
		r = bk_op_live_bank_open(ctx, &live, booted.bank, &bank_dfd, &bank_path, err);
		if (r < 0 && r != -ENOENT) {
			bk_op_log(ctx, LOG_WARNING, "%s, ignoring the revisions of bank %s",
				  err->msg, x);
			x = NULL;
		}
		if (r == -ENOENT)
			x = NULL; /* no bootbank disk: no bank to restore from */
		bk_err_clear(err);
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int fd = -EBADF;

		if (bk_rev_is_mounted(live.run_dfd, revs[i].id))
			continue;
		if (revs[i].bank) {
			if (!x || strcmp(revs[i].bank, x) != 0)
				continue; /* another bank's: it comes back when that one boots */
			fd = openat(bank_dfd, revs[i].payload ? revs[i].payload : "",
				    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
		} else {
			fd = open(revs[i].source, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		}
		if (fd < 0) {
			bk_op_log(ctx, LOG_WARNING, "revision '%s': cannot open '%s': %m, ignoring",
				  revs[i].id, revs[i].source);
			continue;
		}
		if (!revs[i].bank) {
			struct bk_err e = { 0 };

			/* A file of anyone's: hashed, then mounted; root's alone (issue 17). */
			if (bk_bundle_check_trusted(fd, revs[i].source, &e) < 0) {
				bk_op_log(ctx, LOG_WARNING, "revision '%s': %s, ignoring",
					  revs[i].id, e.msg);
				continue;
			}
		}
		(void) restore_one(ctx, &live, &revs[i], fd, mounted);
	}
	if (x) {
		r = restore_base(&live, revs_dfd, x, bank_dfd, bank_path, revs, n, mounted, err);
		if (r < 0) {
			bk_op_log(ctx, LOG_WARNING, "bank %s: %s, ignoring", x, err->msg);
			bk_err_clear(err);
		}
		bk_revs_free(revs, n);
		revs = NULL;
		n = 0;
		r = bk_rev_list(revs_dfd, &revs, &n, err);
		if (r < 0)
			goto out;
	}

	/*
	 * current: the last committed revision, when it came back; else the newest of the
	 * booted bank's (after a reboot into the other bank, that bank's revisions are the ones
	 * in service).
	 */
	if (bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL) == -ENOENT) {
		if (bk_read_file_at(revs_dfd, BK_REV_CURRENT_REC, BK_REV_ID_MAX + 2, &recorded,
				    NULL, NULL) == 0) {
			recorded[strcspn(recorded, "\n")] = '\0';
			if (bk_rev_is_mounted(live.run_dfd, recorded))
				pick = recorded;
		}
		for (size_t i = 0; i < n && x; i++) {
			const struct bk_rev *rv = &revs[n - 1 - i];

			if (pick && strcmp(pick, rv->id) == 0)
				break; /* the recorded one is the booted bank's, or newer */
			if (rv->bank && strcmp(rv->bank, x) == 0 &&
			    bk_rev_is_mounted(live.run_dfd, rv->id)) {
				pick = rv->id;
				break;
			}
		}
		if (pick) {
			r = bk_rev_pointer_set(live.run_dfd, BK_REV_CURRENT, pick, err);
			if (r < 0)
				goto out;
		}
	}
	if (bk_op_json_add_nullable(out, "current", pick) < 0) {
		r = bk_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (x) {
		(void) close(TAKE_FD(bank_dfd));
		r = bk_op_live_bank_release(ctx, &live, booted.bank, err);
		if (r < 0) {
			bk_op_log(ctx, LOG_WARNING, "%s, ignoring", err->msg);
			bk_err_clear(err);
		}
	}
	r = 0;
	*ret = TAKE_PTR(out);
out:
	bk_revs_free(revs, n);
	bk_op_live_close(&live);
	return r;
}

/* ---- workload add, remove ---------------------------------------------------------------- */

int bk_op_workload_add(struct bk_op_ctx *ctx, const struct bk_workload *w, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(bk_cgroup_freep) struct bk_cgroup *cg = NULL;
	_cleanup_close_ int wdfd = -EBADF;
	int r;

	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r >= 0)
		r = bk_maint_check(live.state_dfd, "workload add", err);
	/* A cgroup given by path must exist; a unit may be registered before it starts. */
	if (r >= 0 && w->cgroup)
		r = bk_cgroup_open(NULL, w->cgroup, &cg, err);
	if (r >= 0)
		r = bk_mkdir_p_at(live.state_dfd, BK_WORKLOADS_DIR, 0755, &wdfd, err);
	if (r >= 0)
		r = bk_workload_save(wdfd, w, true, err);
	bk_op_live_close(&live);
	return r;
}

int bk_op_workload_remove(struct bk_op_ctx *ctx, const char *name, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_close_ int wdfd = -EBADF;
	int r;

	if (!bk_workload_name_is_valid(name))
		return bk_err_set(err, -EINVAL, "invalid workload name '%s'", name);
	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r >= 0)
		r = bk_mkdir_p_at(live.state_dfd, BK_WORKLOADS_DIR, 0755, &wdfd, err);
	if (r >= 0)
		r = bk_workload_remove(wdfd, name, err);
	bk_op_live_close(&live);
	return r;
}

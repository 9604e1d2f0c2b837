/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The live-patch operations (docs/livepatch.md): the paths beneath the root, the banks mounted
 * in the host's mount namespace for revisions, the recovery of an interrupted live patch;
 * livepatch apply (pre-check, partial maintenance mode, stage and activate the alternate bank,
 * mount the revision from the bank copy, scan hooks, switch-over, apply hooks), livepatch
 * rollback and status, each step an event and a task log line through the observer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bk-bank.h"
#include "bk-bundle.h"
#include "bk-cms.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-manifest.h"
#include "bk-mount.h"
#include "bk-op-live.h"
#include "bk-op-recover.h"
#include "bk-op-stage.h"
#include "bk-op.h"
#include "bk-rev.h"
#include "bk-select.h"
#include "bk-sha256.h"
#include "bk-switch.h"
#include "bk-workload.h"

int bk_op_live_open(struct bk_op_ctx *ctx, struct bk_op_live *live, struct bk_err *err)
{
	char *real;
	int r;

	*live = (struct bk_op_live){ .state_dfd = -EBADF, .run_dfd = -EBADF };
	real = realpath(ctx->root, NULL);
	if (!real)
		return bk_err_set(err, -errno, "cannot resolve root '%s': %m", ctx->root);
	live->root_real = real;
	if (asprintf(&live->run_path, "%s%s" BK_OP_RUN_DIR, real,
		     strcmp(real, "/") == 0 ? "" : "/") < 0 ||
	    asprintf(&live->hooks_dir, "%s%s" BK_OP_ETC_DIR "/livepatch.d", real,
		     strcmp(real, "/") == 0 ? "" : "/") < 0) {
		live->run_path = live->hooks_dir = NULL;
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_op_open_dir(ctx, BK_OP_STATE_DIR, true, &live->state_dfd, err);
	if (r < 0)
		return r;
	r = bk_op_open_dir(ctx, BK_OP_RUN_DIR, true, &live->run_dfd, err);
	if (r < 0)
		return r;
	live->lp = (struct bk_livepatch_ctx){
		.state_dfd = live->state_dfd,
		.run_dfd = live->run_dfd,
		.run_path = live->run_path,
		.hooks_dir = live->hooks_dir,
		.hook_timeout_ms = ctx->config.hook_timeout_sec * 1000,
		.freeze_timeout_ms = ctx->config.freeze_timeout_ms,
		.freeze_batch = ctx->config.freeze_batch,
	};
	return 0;
}

void bk_op_live_close(struct bk_op_live *live)
{
	closep(&live->state_dfd);
	closep(&live->run_dfd);
	free(live->root_real);
	free(live->run_path);
	free(live->hooks_dir);
	*live = (struct bk_op_live){ .state_dfd = -EBADF, .run_dfd = -EBADF };
}

/* ---- the banks in the host's mount namespace -------------------------------------------- */

#define BANK_MNT_DIR "bank"

static bool is_mount_root(int dfd, const char *path, dev_t *ret_dev)
{
	struct statx stx;

	if (statx(dfd, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
		return false;
	if (ret_dev)
		*ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int bk_op_live_bank_open(struct bk_op_ctx *ctx, struct bk_op_live *live, enum bk_bank_id bank,
			 int *ret_dfd, char **ret_path, struct bk_err *err)
{
	_cleanup_close_ int dir_dfd = -EBADF, fd = -EBADF;
	_cleanup_free_ char *target = NULL;
	const char *x = bk_bank_id_to_string(bank);
	struct bk_disk *disk;
	struct stat dst;
	const char *dev;
	dev_t mdev;
	int r;

	r = bk_op_get_disk(ctx, &disk, err);
	if (r < 0)
		return r;
	dev = bk_disk_part_path(disk, bk_part_id_from_bank(bank));
	if (!dev)
		return bk_err_set(err, -ENOENT, "the disk has no bank %s", x);
	if (stat(dev, &dst) < 0)
		return bk_err_set(err, -errno, "cannot stat '%s': %m", dev);
	if (asprintf(&target, "%s/" BANK_MNT_DIR "/%s", live->run_path, x) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	r = bk_mkdir_p_at(live->run_dfd, BANK_MNT_DIR, 0755, &dir_dfd, err);
	if (r < 0)
		return r;
	if (mkdirat(dir_dfd, x, 0755) < 0 && errno != EEXIST)
		return bk_err_set(err, -errno, "cannot create '%s': %m", target);
	if (!is_mount_root(dir_dfd, x, &mdev)) {
		/* Read-only, where every mount namespace made from the host's sees it. */
		r = bk_mount(dev, target, "ext4", BK_MOUNT_RDONLY | BK_MOUNT_NOSUID_NODEV, NULL,
			     err);
		if (r < 0)
			return bk_err_prefix(err, "bank %s", x);
	} else if (mdev != dst.st_rdev) {
		return bk_err_set(err, -ESTALE, "'%s' is not the mount of bank %s ('%s')", target,
				  x, dev);
	}
	if (!is_mount_root(dir_dfd, x, &mdev))
		return bk_err_set(err, -ESTALE, "'%s' is not a mount point", target);
	fd = openat(dir_dfd, x, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", target);
	if (mdev != dst.st_rdev)
		return bk_err_set(err, -ESTALE, "'%s' is not the mount of bank %s ('%s')", target,
				  x, dev);
	*ret_dfd = TAKE_FD(fd);
	if (ret_path)
		*ret_path = TAKE_PTR(target);
	return 0;
}

/* Is a mounted revision a copy out of bank x? */
static int bank_in_use(struct bk_op_live *live, const char *x, struct bk_err *err)
{
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_rev *revs = NULL;
	size_t n = 0;
	int r, used = 0;

	revs_dfd = openat(live->state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd < 0)
		return 0;
	r = bk_rev_list(revs_dfd, &revs, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && !used; i++)
		used = revs[i].bank && strcmp(revs[i].bank, x) == 0 &&
		       bk_rev_is_mounted(live->run_dfd, revs[i].id);
	bk_revs_free(revs, n);
	return used;
}

int bk_op_live_bank_release(struct bk_op_ctx *ctx, struct bk_op_live *live, enum bk_bank_id bank,
			    struct bk_err *err)
{
	_cleanup_close_ int dir_dfd = -EBADF;
	_cleanup_free_ char *target = NULL;
	const char *x = bk_bank_id_to_string(bank);
	int r;

	dir_dfd = openat(live->run_dfd, BANK_MNT_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_dfd < 0 || !is_mount_root(dir_dfd, x, NULL))
		return 0;
	r = bank_in_use(live, x, err);
	if (r != 0)
		return r < 0 ? r : 0;
	if (asprintf(&target, "%s/" BANK_MNT_DIR "/%s", live->run_path, x) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	/* The loop device of a revision just unmounted lets go of its file a moment later. */
	for (int i = 0;; i++) {
		struct bk_err e = { 0 };

		r = bk_umount(target, 0, &e);
		if (r != -EBUSY || i >= 200) {
			if (r < 0)
				*err = e;
			break;
		}
		(void) usleep(10000);
	}
	if (r < 0)
		return bk_err_prefix(err, "bank %s", x);
	(void) unlinkat(dir_dfd, x, AT_REMOVEDIR);
	return 0;
}

/* ---- the boot choice follows the revision in service --------------------------------------- */

struct live_ud {
	struct bk_op_ctx *ctx;
	struct bk_op_live *live;
	struct bk_op_task *task;
};

/* The bank a revision was mounted from; _BK_BANK_INVALID when none (or it has no metadata). */
static enum bk_bank_id rev_bank(struct bk_op_live *live, const char *id)
{
	_cleanup_close_ int revs_dfd = -EBADF;
	enum bk_bank_id bank = _BK_BANK_INVALID;
	struct bk_rev rev = { 0 };

	if (!id)
		return bank;
	revs_dfd = openat(live->state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd >= 0 && bk_rev_load(revs_dfd, id, &rev, NULL) == 0 && rev.bank)
		bank = bk_bank_id_from_string(rev.bank);
	bk_rev_release(&rev);
	return bank;
}

/*
 * The settle callback of bk_livepatch_switch()/bk_livepatch_recover(): once the outcome is
 * known, the bank the live patch staged (m->bank) is activated when the revision in service
 * now comes from it, and its activation is undone otherwise (it becomes "staged, not
 * activated" again: generation 0, no tries), so that a reboot boots the revision in service.
 * Idempotent. In phase staging, a bank whose generation is still the one it had before the
 * live patch was never touched by it (an activation of the operator's stays).
 */
static int settle_boot(void *userdata, const struct bk_maint *m, bool committed, struct bk_err *err)
{
	struct live_ud *ud = userdata;
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	const char *in_service = committed ? m->to : m->from;
	uint64_t t0 = bk_op_realtime_ns(), m0 = bk_now_ns();
	struct bk_boot_data d;
	struct bk_bank_boot *bb;
	enum bk_bank_id bank;
	const char *x;
	bool want;
	int r;

	if (!m->bank)
		return 0;
	bank = bk_bank_id_from_string(m->bank);
	if (bank < 0)
		return bk_err_set(err, -EINVAL, "maintenance flag: unknown bank '%s'", m->bank);
	x = bk_bank_id_to_string(bank);
	want = rev_bank(ud->live, in_service) == bank;
	r = bk_op_boot_load(ud->ctx, &b, &d, err);
	if (r < 0)
		return r;
	bb = &d.state.bank[bank];
	if (want && bb->state == BK_BANK_STAGED && bb->tries_left == 0) {
		r = bk_select_activate(&d.state, bank, ud->ctx->config.tries, &d.state, err);
		if (r >= 0)
			r = bk_boot_save(b, &d, err);
		if (ud->task)
			bk_op_task_step(ud->task, "boot choice", r, NULL, t0, bk_now_ns() - m0,
					"%s%s", r < 0 ? err->msg : "bank ", r < 0 ? "" : x);
		return r;
	}
	if (!want && bb->state == BK_BANK_STAGED && bb->tries_left > 0 &&
	    !(m->phase == BK_MAINT_PHASE_STAGING && bb->generation == m->bank_generation_before)) {
		uint64_t epoch = bb->epoch;

		/* Undo the activation: the bank stays staged with its complete content. */
		r = bk_select_stage_begin(&d.state, bank, &d.state, err);
		if (r >= 0)
			r = bk_select_stage_done(&d.state, bank, epoch, &d.state, err);
		if (r >= 0)
			r = bk_boot_save(b, &d, err);
		if (ud->task)
			bk_op_task_step(
				ud->task, "boot choice", r, NULL, t0, bk_now_ns() - m0, "%s%s%s",
				r < 0 ? err->msg : "activation of bank ", r < 0 ? "" : x,
				r < 0 ? "" :
					" undone: it stays staged, not activated; the booted "
					"bank boots next");
		return r;
	}
	return 0;
}

static void live_on_step(void *userdata, const struct bk_lp_step *st);

static void live_on_step_begin(void *userdata, const char *step)
{
	struct live_ud *ud = userdata;

	bk_op_task_begin_step(ud->task, step);
}

static void live_ctx_hook(struct bk_op_live *live, struct live_ud *ud)
{
	live->lp.settle = settle_boot;
	live->lp.on_step = ud->task ? live_on_step : NULL;
	live->lp.on_step_begin = ud->task ? live_on_step_begin : NULL;
	live->lp.userdata = ud;
}

int bk_op_live_recover(struct bk_op_ctx *ctx, char *what, size_t len, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_free_ char *target = NULL;
	_cleanup_close_ int sdfd = -EBADF, rdfd = -EBADF;
	struct bk_op_task task;
	struct bk_maint m = { 0 };
	struct live_ud ud;
	int r;

	if (what && len > 0)
		what[0] = '\0';
	/* Cheap when there is nothing to do: no directory is created, nothing is written. */
	sdfd = bk_open_beneath(ctx->root_fd, BK_OP_STATE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			       false);
	rdfd = bk_open_beneath(ctx->root_fd, BK_OP_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			       false);
	if (rdfd >= 0)
		(void) bk_rev_pointer_cleanup(rdfd);
	if (sdfd < 0 || !bk_maint_is_set(sdfd))
		return 0;
	(void) bk_maint_get(sdfd, &m, NULL);

	r = bk_op_live_open(ctx, &live, err);
	if (r < 0) {
		bk_maint_release(&m);
		return r;
	}
	bk_op_task_init(&task, ctx, "recover", true);
	ud = (struct live_ud){ .ctx = ctx, .live = &live, .task = &task };
	live_ctx_hook(&live, &ud);
	r = bk_livepatch_recover(&live.lp, &target, err);
	if (r > 0) {
		if (what)
			(void) snprintf(what, len, "an interrupted %s (%s, phase %s): %s%s%s",
					m.operation ? m.operation : "live patch",
					m.reason ? m.reason : "", bk_maint_phase_to_string(m.phase),
					target ? "on '" : "nothing of it is in service",
					target ? target : "", target ? "'" : "");
		bk_op_task_step(&task, "live patch recovery", 0, NULL, bk_op_realtime_ns(), 0, "%s",
				what ? what : "");
	} else if (r < 0) {
		bk_op_task_step(&task, "live patch recovery", r, NULL, bk_op_realtime_ns(), 0, "%s",
				err->msg);
	}
	bk_op_task_release(&task);
	bk_op_live_close(&live);
	bk_maint_release(&m);
	return r;
}

static int hooks_json(struct json_object *parent, const char *key, const struct bk_hook_run *run)
{
	struct json_object *arr;

	if (!run)
		return 0;
	arr = json_object_new_array();
	if (bk_json_add(parent, key, arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < run->n_results; i++) {
		const struct bk_hook_result *h = &run->results[i];
		struct json_object *o = json_object_new_object();

		if (!o || json_object_array_add(arr, o) < 0 ||
		    bk_json_add_string(o, "name", h->name) < 0 ||
		    bk_json_add(o, "status", json_object_new_int(h->status)) < 0 ||
		    bk_json_add_bool(o, "timed_out", h->timed_out) < 0 ||
		    bk_json_add_string(o, "stdout", h->out) < 0 ||
		    bk_json_add_string(o, "stderr", h->errout) < 0 ||
		    bk_json_add_u64(o, "duration_ms", h->duration_ms) < 0)
			return -ENOMEM;
	}
	return 0;
}
int bk_op_live_report_json(const struct bk_lp_report *rep, struct json_object **ret)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array();

	if (!o || bk_json_add(o, "workloads", arr) < 0 ||
	    bk_op_json_add_nullable(o, "from", rep->from) < 0 ||
	    bk_json_add_string(o, "to", rep->to) < 0 ||
	    bk_json_add_bool(o, "rolled_back", rep->rolled_back) < 0 ||
	    bk_json_add_u64(o, "total_us", rep->total_ns / 1000) < 0 ||
	    bk_op_json_add_nullable(o, "hook_warning", rep->hook_warning) < 0 ||
	    hooks_json(o, "scan", rep->scan) < 0 || hooks_json(o, "apply", rep->apply) < 0 ||
	    hooks_json(o, "revert", rep->revert) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < rep->n_items; i++) {
		const struct bk_lp_report_item *it = &rep->items[i];
		struct json_object *w = json_object_new_object();
		char mode[2] = { it->mode, 0 };

		if (!w || json_object_array_add(arr, w) < 0 ||
		    bk_json_add_string(w, "name", it->name) < 0 ||
		    bk_json_add_bool(w, "running", it->running) < 0 ||
		    bk_json_add_bool(w, "skipped", it->skipped) < 0 ||
		    bk_json_add_bool(w, "switched", it->switched) < 0 ||
		    bk_json_add_bool(w, "restarted_by_hook", it->restarted) < 0 ||
		    bk_json_add_string(w, "mode",
				       it->mode == BK_VIEW_BENEATH  ? "beneath" :
				       it->mode == BK_VIEW_STACKED  ? "stacked" :
				       it->mode == BK_VIEW_ATTACHED ? "attached" :
								      mode) < 0 ||
		    bk_json_add_u64(w, "frozen_us", it->frozen_ns / 1000) < 0 ||
		    bk_json_add_u64(w, "rollback_frozen_us", it->rollback_frozen_ns / 1000) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(o);
	return 0;
}
static char *mfree(char *p)
{
	free(p);
	return NULL;
}

int bk_op_live_default_id(const struct bk_manifest *m, char **ret)
{
	char *id;

	if (asprintf(&id, "%s-%s", m->name, m->version) < 0)
		return -ENOMEM;
	if (strlen(id) > BK_REV_ID_MAX)
		id[BK_REV_ID_MAX] = '\0';
	for (char *p = id; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-",
			    *p))
			*p = '_';
	if (!bk_rev_id_is_valid(id))
		id[0] = 'r';
	*ret = id;
	return 0;
}

/* The one live payload of the bundle, a squashfs or erofs filesystem. */
static int find_live_payload(const struct bk_bundle *b, const char *path,
			     const struct bk_payload **ret, struct bk_err *err)
{
	const struct bk_payload *p, *found = NULL;
	size_t it = 0;

	while (bk_bundle_next_payload(b, &it, &p) == 0) {
		if (!p->live)
			continue;
		if (found)
			return bk_err_set(err, -EOPNOTSUPP,
					  "'%s' has several live payloads ('%s', '%s'): only one "
					  "per live patch is supported",
					  path, found->name, p->name);
		found = p;
	}
	if (!found)
		return bk_err_set(err, -ENOENT, "'%s' has no live payload", path);
	if (found->fs != BK_FS_SQUASHFS && found->fs != BK_FS_EROFS)
		return bk_err_set(err, -EMEDIUMTYPE,
				  "'%s': live payload '%s' is %s, not squashfs or erofs", path,
				  found->name, bk_payload_fs_to_string(found->fs));
	*ret = found;
	return 0;
}

/* May the image live-patch the revision in service? *ret_version: the running version. */
static int check_base(struct bk_op_live *live, const struct bk_manifest *m, const char *path,
		      char **ret_current, char **ret_version, struct bk_err *err)
{
	_cleanup_close_ int revs_dfd = -EBADF;
	_cleanup_free_ char *current = NULL;
	struct bk_rev rev = { 0 };
	bool ok = false;
	int r;

	r = bk_rev_pointer_get(live->run_dfd, BK_REV_CURRENT, &current, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		*ret_current = NULL;
		*ret_version = NULL;
		return 0; /* nothing in service yet: the first revision */
	}
	if (r < 0)
		return r;
	revs_dfd = openat(live->state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = revs_dfd < 0 ? bk_err_set(err, -ENOENT, "no revision '%s'", current) :
			   bk_rev_load(revs_dfd, current, &rev, err);
	if (r < 0)
		return bk_err_prefix(err, "current revision");
	for (size_t i = 0; i < m->n_live_patch_from && rev.version; i++)
		ok = ok || strcmp(m->live_patch_from[i], rev.version) == 0;
	if (!ok)
		r = bk_err_set(
			err, -EMEDIUMTYPE,
			"'%s' (%s %s) cannot live-patch revision '%s' (version '%s'): not one "
			"of its live-patch base versions",
			path, m->name, m->version, current, rev.version ? rev.version : "");
	if (r >= 0)
		*ret_version = TAKE_PTR(rev.version);
	bk_rev_release(&rev);
	if (r < 0)
		return r;
	*ret_current = TAKE_PTR(current);
	return 0;
}

/*
 * Bank x is about to be staged again: it must not hold the revision in service (that would
 * overwrite the file a running workload sees), nor one a mount namespace still uses. Every
 * other revision copied out of it is stale from here on: unmounted and forgotten, and the
 * bank's own mount goes. *ret_n: how many were released.
 */
static int release_bank(struct bk_op_ctx *ctx, struct bk_op_live *live, enum bk_bank_id bank,
			const char *current, int *ret_n, struct bk_err *err)
{
	_cleanup_close_ int revs_dfd = -EBADF;
	_cleanup_free_ char *previous = NULL;
	const char *x = bk_bank_id_to_string(bank);
	struct bk_rev *revs = NULL;
	size_t n = 0;
	int r = 0;

	*ret_n = 0;
	revs_dfd = openat(live->state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd >= 0) {
		r = bk_rev_list(revs_dfd, &revs, &n, err);
		if (r < 0)
			return r;
	}
	(void) bk_rev_pointer_get(live->run_dfd, BK_REV_PREVIOUS, &previous, NULL);
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *where = NULL;
		dev_t dev;

		if (!revs[i].bank || strcmp(revs[i].bank, x) != 0)
			continue;
		if (current && strcmp(current, revs[i].id) == 0) {
			r = bk_err_set(err, -EBUSY,
				       "bank %s holds the revision in service ('%s'): reboot into "
				       "it, or 'bankctl livepatch rollback', before the bank is "
				       "written again",
				       x, revs[i].id);
			break;
		}
		if (bk_rev_is_mounted(live->run_dfd, revs[i].id) &&
		    bk_rev_dev(live->run_dfd, revs[i].id, &dev, NULL) == 0) {
			r = bk_rev_in_use(live->run_path, revs[i].id, dev, &where, err);
			if (r > 0)
				r = bk_err_set(err, -EBUSY,
					       "revision '%s' out of bank %s is still in use (%s)",
					       revs[i].id, x, where ? where : "a mount namespace");
			if (r >= 0)
				r = bk_rev_umount(live->run_dfd, live->run_path, revs[i].id, err);
		}
		if (r >= 0)
			r = bk_rev_remove_meta(revs_dfd, revs[i].id, err);
		if (r >= 0 && previous && strcmp(previous, revs[i].id) == 0)
			r = bk_rev_pointer_set(live->run_dfd, BK_REV_PREVIOUS, NULL, err);
		if (r >= 0)
			(*ret_n)++;
	}
	bk_revs_free(revs, n);
	if (r < 0)
		return r;
	return bk_op_live_bank_release(ctx, live, bank, err);
}

int bk_op_live_release_stale(struct bk_op_ctx *ctx, enum bk_bank_id bank, int *ret_n,
			     struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_free_ char *current = NULL;
	int n = 0, r;

	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0) {
		(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);
		r = release_bank(ctx, &live, bank, current, &n, err);
	}
	bk_op_live_close(&live);
	if (ret_n)
		*ret_n = n;
	return r;
}

/* --- the stage, in a child process ------------------------------------------------------- */

enum { MSG_READY = 1, MSG_RESULT };

struct stage_msg {
	int type;
	int r;
	struct bk_err err;
	int bank;
	uint64_t generation_before;
	uint64_t generation, tries;
	uint64_t bytes;
	double seconds;
	char why[96];
	char name[128], version[64];
};

struct child_io {
	int wfd;  /* to the parent */
	int gofd; /* from the parent: one byte "go" */
};

static int child_ready(void *userdata, enum bk_bank_id bank, const struct bk_boot_data *d,
		       struct bk_err *err)
{
	struct child_io *io = userdata;
	struct stage_msg msg = { .type = MSG_READY, .bank = bank };
	char go;
	ssize_t n;

	msg.generation_before = d->state.bank[bank].generation;
	if (bk_write_full(io->wfd, &msg, sizeof(msg)) < 0)
		return bk_err_set(err, -ECANCELED, "the live patch went away");
	do
		n = read(io->gofd, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return bk_err_set(err, -ECANCELED, "the live patch was cancelled before the stage");
	return 0;
}

static _noreturn_ void stage_child(struct bk_op_ctx *ctx, const struct bk_op_stage_opts *o0,
				   struct child_io *io, pid_t parent)
{
	struct bk_op_stage_opts o = *o0;
	struct bk_op_stage_result res;
	struct stage_msg msg = { .type = MSG_RESULT };
	int r;

	/* A crash of the live patch is a crash of its stage too. */
	(void) prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	o.before_write = child_ready;
	o.userdata = io;
	r = bk_op_stage(ctx, &o, &res, &msg.err);
	msg.r = r;
	msg.bank = res.bank;
	if (r >= 0) {
		msg.generation = res.d.state.bank[res.bank].generation;
		msg.tries = res.d.state.bank[res.bank].tries_left;
		msg.bytes = res.bytes;
		msg.seconds = res.seconds;
		(void) snprintf(msg.why, sizeof(msg.why), "%s", res.why);
		(void) snprintf(msg.name, sizeof(msg.name), "%s", res.record->name);
		(void) snprintf(msg.version, sizeof(msg.version), "%s", res.record->version);
	}
	_exit(bk_write_full(io->wfd, &msg, sizeof(msg)) < 0 ? 1 : 0);
}

static ssize_t read_msg(int fd, struct stage_msg *msg)
{
	size_t got = 0;

	while (got < sizeof(*msg)) {
		ssize_t n = read(fd, (char *) msg + got, sizeof(*msg) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : (ssize_t) got;
		got += (size_t) n;
	}
	return (ssize_t) got;
}

struct apply {
	struct bk_op_ctx *ctx;
	struct bk_op_live *live;
	struct bk_op_task *task;
	struct bk_maint m; /* the flag (strings borrowed) */
	char boot_id[37];
	char reason[256];
	char bank[2];
	char operation[16];
	struct stage_msg result; /* what the child staged */
	bool flag_set;
};

/* The child is ready to write the bank: enter partial maintenance mode first. */
static int enter_maintenance(struct apply *a, const struct stage_msg *ready, struct bk_err *err)
{
	uint64_t t0 = bk_op_realtime_ns(), m0 = bk_now_ns();
	int r;

	bk_op_task_begin_step(a->task, "maintenance mode");
	(void) snprintf(a->bank, sizeof(a->bank), "%s",
			bk_bank_id_to_string((enum bk_bank_id) ready->bank));
	a->m.bank = a->bank;
	a->m.bank_generation_before = ready->generation_before;
	a->m.phase = BK_MAINT_PHASE_STAGING;
	r = bk_maint_set(a->live->state_dfd, &a->m, err);
	a->flag_set = r >= 0;
	bk_op_task_step(a->task, "maintenance mode", r, NULL, t0, bk_now_ns() - m0, "%s",
			r < 0 ? err->msg :
				"entering partial maintenance mode: stage, activate and "
				"rollback refuse until it ends");
	return r;
}

/* Run the stage of o in a child (its mounts stay in its private namespace). */
static int stage_in_child(struct apply *a, const struct bk_op_stage_opts *o, struct bk_err *err)
{
	_cleanup_close_ int up_r = -EBADF, up_w = -EBADF, go_r = -EBADF, go_w = -EBADF;
	struct stage_msg msg;
	struct child_io io;
	uint64_t t0 = 0, m0 = 0;
	int up[2], go[2], status, r;
	pid_t pid, self = getpid();
	ssize_t n;

	if (pipe2(up, O_CLOEXEC) < 0)
		return bk_err_set(err, -errno, "cannot create a pipe: %m");
	up_r = up[0];
	up_w = up[1];
	if (pipe2(go, O_CLOEXEC) < 0)
		return bk_err_set(err, -errno, "cannot create a pipe: %m");
	go_r = go[0];
	go_w = go[1];
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return bk_err_set(err, -errno, "cannot fork: %m");
	if (pid == 0) {
		(void) close(up_r);
		(void) close(go_w);
		io = (struct child_io){ .wfd = up_w, .gofd = go_r };
		stage_child(a->ctx, o, &io, self);
	}
	(void) close(TAKE_FD(up_w));
	(void) close(TAKE_FD(go_r));

	r = 0;
	for (;;) {
		n = read_msg(up_r, &msg);
		if (n != (ssize_t) sizeof(msg)) {
			r = bk_err_set(err, -EIO, "the stage ended without an answer");
			break;
		}
		if (msg.type == MSG_READY) {
			r = enter_maintenance(a, &msg, err);
			if (r < 0)
				break; /* closing the pipe cancels the stage */
			bk_op_task_begin_step(a->task, "stage");
			t0 = bk_op_realtime_ns();
			m0 = bk_now_ns();
			if (bk_write_full(go_w, "g", 1) < 0) {
				r = bk_err_set(err, -EIO, "cannot start the stage: %m");
				break;
			}
			continue;
		}
		a->result = msg;
		r = msg.r;
		if (r < 0)
			*err = msg.err;
		break;
	}
	(void) close(TAKE_FD(go_w));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!a->flag_set)
		return r; /* refused by its checks: nothing was written */
	if (t0 == 0) {
		t0 = bk_op_realtime_ns();
		m0 = bk_now_ns();
	}
	if (r < 0) {
		bk_op_task_step(a->task, "stage", r, NULL, t0, bk_now_ns() - m0, "%s", err->msg);
		return r;
	}
	bk_op_task_step(a->task, "stage", 0, NULL, t0, bk_now_ns() - m0,
			"%s %s into bank %s (%s): %.1f MiB hashed while written", msg.name,
			msg.version, a->bank, msg.why, (double) msg.bytes / (1 << 20));
	bk_op_task_step(a->task, "activate", 0, NULL, bk_op_realtime_ns(), 0,
			"bank %s: generation %llu, %llu %s: a reboot keeps the patch", a->bank,
			(unsigned long long) msg.generation, (unsigned long long) msg.tries,
			msg.tries == 1 ? "try" : "tries");
	return 0;
}

/* Mount the revision from the bank's copy of payload p: hashed from the fd that is mounted. */
static int mount_from_bank(struct apply *a, const struct bk_manifest *man,
			   const struct bk_payload *p, const char *id, const char *parent,
			   struct bk_err *err)
{
	struct bk_op_live *live = a->live;
	enum bk_bank_id bank = bk_bank_id_from_string(a->bank);
	_cleanup_close_ int bank_dfd = -EBADF, fd = -EBADF, revs_dfd = -EBADF;
	_cleanup_free_ char *bank_path = NULL;
	char hex[BK_SHA256_HEX_LEN + 1];
	struct bk_rev rev = { 0 };
	struct stat st;
	int r;

	r = bk_op_live_bank_open(a->ctx, live, bank, &bank_dfd, &bank_path, err);
	if (r < 0)
		return r;
	fd = openat(bank_dfd, p->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0)
		return bk_err_set(err, -errno, "bank %s: cannot open '%s': %m", a->bank, p->name);
	if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size != p->size)
		return bk_err_set(err, -EUCLEAN, "bank %s: '%s' is not the payload staged", a->bank,
				  p->name);
	bk_sha256_to_hex(p->sha256, hex);
	rev.id = strdup(id);
	rev.image = strdup(man->name);
	rev.version = strdup(man->version);
	rev.payload = strdup(p->name);
	rev.fstype = strdup(bk_payload_fs_to_string(p->fs));
	rev.digest = strdup(hex);
	rev.parent = parent ? strdup(parent) : NULL;
	rev.bank = strdup(a->bank);
	rev.size = p->size;
	rev.created = (uint64_t) time(NULL);
	if (asprintf(&rev.source, "%s/%s", bank_path, p->name) < 0)
		rev.source = NULL;
	if (!rev.id || !rev.image || !rev.version || !rev.payload || !rev.fstype || !rev.digest ||
	    (parent && !rev.parent) || !rev.bank || !rev.source) {
		bk_rev_release(&rev);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_rev_hash_fd(fd, &rev, err);
	if (r >= 0)
		r = bk_mkdir_p_at(live->state_dfd, BK_REVISIONS_DIR, 0755, &revs_dfd, err);
	if (r >= 0)
		r = bk_rev_save(revs_dfd, &rev, true, err);
	if (r >= 0) {
		r = bk_rev_mount_fd(live->run_dfd, live->run_path, &rev, fd, err);
		if (r < 0)
			(void) bk_rev_remove_meta(revs_dfd, rev.id, NULL);
	}
	bk_rev_release(&rev);
	return r;
}

/* A step of bk_livepatch_switch(): a task log line, events for each hook. */
static void live_on_step(void *userdata, const struct bk_lp_step *st)
{
	struct live_ud *ud = userdata;
	char detail[1024] = "";
	size_t pos = 0;

	if (st->rep && !st->r) {
		for (size_t i = 0; i < st->rep->n_items; i++) {
			const struct bk_lp_report_item *it = &st->rep->items[i];

			if (it->running && !it->skipped && it->restarted)
				bk_op_listf(detail, sizeof(detail), &pos,
					    "%s not frozen, restarted by hook (%s)", it->name,
					    it->mode == BK_VIEW_BENEATH ? "beneath" :
					    it->mode == BK_VIEW_STACKED ? "stacked" :
									  "attached");
			else if (it->running && !it->skipped && it->frozen_ns)
				bk_op_listf(detail, sizeof(detail), &pos, "%s frozen %.3f ms (%s)",
					    it->name, (double) it->frozen_ns / 1e6,
					    it->mode == BK_VIEW_BENEATH ? "beneath" :
					    it->mode == BK_VIEW_STACKED ? "stacked" :
									  "attached");
		}
	}
	bk_op_task_step(ud->task, st->step, st->r, NULL, st->start_ns, st->duration_ns, "%s%s%s",
			st->message ? st->message : "", pos ? "; " : "", detail);
	for (size_t i = 0; st->hooks && i < st->hooks->n_results; i++) {
		const struct bk_hook_result *h = &st->hooks->results[i];
		char step[128], *line, *save = NULL;
		_cleanup_free_ char *copy = strdup(h->out);
		uint64_t dur = h->duration_ms * 1000000u;

		(void) snprintf(step, sizeof(step), "hook '%s'", h->name);
		bk_op_task_step(ud->task, step, 0,
				h->timed_out	? "failed" :
				h->status >= 10 ? "vetoed" :
				h->status != 0	? "failed" :
						  "ok",
				st->start_ns, dur, "exit %d%s%s%s%s%s", h->status,
				h->timed_out ? " (timed out)" : "", h->out[0] ? "; stdout: " : "",
				h->out, h->errout[0] ? "; stderr: " : "", h->errout);
		for (line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
		     line = strtok_r(NULL, "\n", &save))
			bk_op_task_detail(ud->task, "%s", line);
	}
	if (st->rep && !st->r)
		for (size_t i = 0; i < st->rep->n_items; i++) {
			const struct bk_lp_report_item *it = &st->rep->items[i];

			if (!it->running)
				bk_op_task_detail(ud->task, "%-20s not running", it->name);
			else if (it->skipped)
				bk_op_task_detail(ud->task, "%-20s already on '%s'", it->name,
						  st->rep->to);
		}
}

/* The stage's checks (o: check_only), for bk_op_call_forked(). */
static int stage_check(struct bk_op_ctx *ctx, void *userdata, struct bk_err *err)
{
	struct bk_op_stage_result res;
	int r;

	r = bk_op_stage(ctx, userdata, &res, err);
	bk_op_stage_result_release(&res);
	return r;
}

/* ---- the results ------------------------------------------------------------------------ */

static void result_init(struct bk_op_livepatch_result *res)
{
	*res = (struct bk_op_livepatch_result){ 0 };
}

void bk_op_livepatch_result_release(struct bk_op_livepatch_result *res)
{
	json_object_put(res->steps);
	res->rep = bk_lp_report_free(res->rep);
	free(res->id);
	*res = (struct bk_op_livepatch_result){ 0 };
}

/* Hand the task's id and steps to the result. */
static void result_take_task(struct bk_op_livepatch_result *res, struct bk_op_task *task)
{
	(void) snprintf(res->task, sizeof(res->task), "%s", task->id);
	res->steps = TAKE_PTR(task->steps);
}

struct json_object *bk_op_livepatch_result_to_json(const struct bk_op_livepatch_result *res,
						   int exit_code, const struct bk_err *err)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *rj = NULL;

	if (!o || bk_json_add_string(o, "task", res->task) < 0 ||
	    bk_json_add_bool(o, "ok", exit_code == BK_EXIT_OK) < 0 ||
	    bk_json_add_u64(o, "exit_code", (uint64_t) exit_code) < 0 ||
	    bk_op_json_add_nullable(o, "error", exit_code == BK_EXIT_OK ? NULL : err->msg) < 0 ||
	    bk_json_add(o, "steps",
			res->steps ? json_object_get(res->steps) : json_object_new_array()) < 0)
		return NULL;
	if (res->rep) {
		if (bk_op_live_report_json(res->rep, &rj) < 0 || bk_json_add(o, "switch", rj) < 0)
			return NULL;
	} else if (json_object_object_add(o, "switch", NULL) < 0) {
		return NULL;
	}
	return TAKE_PTR(o);
}

/* ---- livepatch apply -------------------------------------------------------------------- */

int bk_op_livepatch_apply(struct bk_op_ctx *ctx, const struct bk_op_livepatch_opts *o,
			  struct bk_op_livepatch_result *res, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_(bk_bundle_freep) struct bk_bundle *b = NULL;
	_cleanup_free_ char *id = NULL, *current = NULL, *running_version = NULL;
	const char *path = o->path, *why = NULL;
	struct bk_op_stage_opts so = { 0 };
	const struct bk_manifest *m = NULL;
	const struct bk_payload *p = NULL;
	struct bk_op_task own_task, *task = o->task ? o->task : &own_task;
	struct apply a = { 0 };
	struct live_ud ud;
	enum bk_bank_id target;
	size_t n_running = 0, n_nofsr = 0;
	char nofsr_note[96] = "";
	uint64_t t0 = 0, m0 = 0;
	int r, n_released = 0;

	result_init(res);
	if (o->id && !bk_rev_id_is_valid(o->id))
		return bk_err_set(err, -EINVAL, "invalid revision id '%s'", o->id);
	if (!ctx->configured)
		return bk_err_set(err, -EINVAL, "nothing is configured: no '%s'", ctx->config_path);
	if (!o->task)
		bk_op_task_init(&own_task, ctx, "livepatch", false);
	ud = (struct live_ud){ .ctx = ctx, .live = &live, .task = task };
	a = (struct apply){ .ctx = ctx, .live = &live, .task = task, .operation = "livepatch" };
	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r < 0)
		goto out;
	live_ctx_hook(&live, &ud);
	if (o->no_beneath)
		live.lp.view_flags |= BK_VIEW_NO_BENEATH;
	if (!o->task)
		bk_op_task_begin(task, path);

	/* 1. Pre-check: nothing changes before the image, the workloads and the bank qualify. */
	bk_op_task_begin_step(task, "pre-check");
	t0 = bk_op_realtime_ns();
	m0 = bk_now_ns();
	r = bk_maint_check(live.state_dfd, "live patch", err);
	if (r < 0)
		goto fail_precheck;
	/* Everything staged comes from this one open, verified file. */
	r = bk_bundle_open_verified(
		o->fd, o->keyring,
		o->no_check_time || !ctx->config.check_time ? BK_CMS_NO_CHECK_TIME : 0, &b, err);
	if (r < 0) {
		(void) bk_err_prefix(err, "'%s'", path);
		goto fail_precheck;
	}
	m = bk_bundle_get_manifest(b);
	if (ctx->config.compatible && strcmp(ctx->config.compatible, m->compatible) != 0) {
		r = bk_err_set(err, -EMEDIUMTYPE, "'%s' is for '%s', this host is '%s'", path,
			       m->compatible, ctx->config.compatible);
		goto fail_precheck;
	}
	r = find_live_payload(b, path, &p, err);
	if (r < 0)
		goto fail_precheck;
	if (o->id)
		id = strdup(o->id);
	else if (bk_op_live_default_id(m, &id) < 0)
		id = NULL;
	if (!id) {
		r = bk_err_set(err, -ENOMEM, "out of memory");
		goto fail_precheck;
	}
	if (bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL) == 0 &&
	    strcmp(current, id) == 0) {
		r = bk_err_set(err, -EALREADY, "revision '%s' of '%s' is already in service", id,
			       path);
		goto fail_precheck;
	}
	current = mfree(current);
	r = check_base(&live, m, path, &current, &running_version, err);
	if (r >= 0)
		r = bk_bundle_verify_payload(b, p, err);
	if (r >= 0)
		r = bk_livepatch_precheck(&live.lp, &n_running, &n_nofsr, err);
	if (r >= 0)
		r = bk_op_stage_target(ctx, &target, &why, err);
	if (r >= 0) {
		/*
		 * Everything the stage can refuse for, before the first change (issue 17): its
		 * own checks, every payload's bytes, the bank's size; in a child, whose private
		 * mount namespace keeps the bank mounts of its space check.
		 */
		so = (struct bk_op_stage_opts){
			.fd = o->fd,
			.path = path,
			.keyring = o->keyring,
			.no_check_time = o->no_check_time,
			.check_only = true,
		};
		r = bk_op_call_forked(ctx, stage_check, &so, err);
	}
	if (r >= 0)
		r = release_bank(ctx, &live, target, current, &n_released, err);
	if (r >= 0) {
		_cleanup_close_ int revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR,
						      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct bk_rev old = { 0 };

		if (revs_dfd >= 0 && bk_rev_load(revs_dfd, id, &old, NULL) == 0)
			r = bk_err_set(err, -EEXIST, "revision '%s' exists (use --id)", id);
		bk_rev_release(&old);
	}
	if (r < 0)
		goto fail_precheck;
	if (n_nofsr != 0)
		(void) snprintf(nofsr_note, sizeof(nofsr_note),
				", %zu --no-fsr left to the scan hooks to restart", n_nofsr);
	bk_op_task_step(
		task, "pre-check", 0, NULL, t0, bk_now_ns() - m0,
		"%s %s signed and intact; live-patches %s%s%s%s; %zu running %s can be "
		"suspended%s; bank %s (%s)%s",
		m->name, m->version, current ? "'" : "nothing in service", current ? current : "",
		current ? "' version " : "", running_version ? running_version : "", n_running,
		n_running == 1 ? "workload" : "workloads", nofsr_note, bk_bank_id_to_string(target),
		why, n_released ? ", its stale revisions released" : "");

	/* 2-4. Maintenance mode, stage, activate (the stage's own checks come first). */
	a.m = (struct bk_maint){
		.operation = a.operation,
		.reason = a.reason,
		.from = current,
		.to = id,
		.started = (uint64_t) time(NULL),
		.pid = (uint64_t) getpid(),
		.boot_id = bk_maint_boot_id(a.boot_id) == 0 ? a.boot_id : NULL,
	};
	(void) snprintf(a.reason, sizeof(a.reason), "live patch from '%s' to '%s'",
			current ? current : "(none)", id);
	so = (struct bk_op_stage_opts){
		.fd = o->fd,
		.path = path,
		.keyring = o->keyring,
		.activate = true,
		.no_check_time = o->no_check_time,
		.keep_revisions = true, /* released above, with the pre-check */
	};
	r = stage_in_child(&a, &so, err);
	if (r < 0) {
		if (!a.flag_set)
			goto fail_precheck;
		goto fail_recover;
	}
	a.m.bank_generation = a.result.generation;
	r = bk_maint_set(live.state_dfd, &a.m, err);
	if (r < 0)
		goto fail_recover;

	/* 5. The revision, from the bank's copy (the bank stays mounted read-only). */
	bk_op_task_begin_step(task, "mount revision");
	t0 = bk_op_realtime_ns();
	m0 = bk_now_ns();
	r = mount_from_bank(&a, m, p, id, current, err);
	bk_op_task_step(task, "mount revision", r, NULL, t0, bk_now_ns() - m0, "%s%s%s%s%s%s",
			r < 0 ? err->msg : "'", r < 0 ? "" : id, r < 0 ? "" : "' from bank ",
			r < 0 ? "" : a.bank, r < 0 ? "" : ": ", r < 0 ? "" : p->name);
	if (r < 0)
		goto fail_recover;

	/* 6-9. Scan hooks, switch-over, apply hooks, leave maintenance mode. */
	live.lp.maint = &a.m;
	r = bk_livepatch_switch(&live.lp, id, &res->rep, err);
	if (res->rep && res->rep->hook_warning)
		bk_op_log(ctx, LOG_WARNING, "%s, ignoring", res->rep->hook_warning);
	if (r < 0) {
		if (res->rep && res->rep->rolled_back)
			(void) bk_err_prefix(err, "live patch to '%s' rolled back", id);
		goto out;
	}
	(void) snprintf(res->bank, sizeof(res->bank), "%s", a.bank);
	res->id = TAKE_PTR(id);
	goto out;

fail_recover:
	/*
	 * Whatever the step, the next run's recovery decides; run it now (it is ours), quietly:
	 * the one line the caller shows is this failure, with what was undone added to it.
	 */
	{
		bool quiet = ctx->recovery_quiet;
		struct bk_err e = { 0 };

		ctx->recovery_quiet = true;
		if (bk_op_recover_after_lock(ctx, &e) < 0)
			(void) bk_err_suffix(err,
					     "; undoing it failed (%s): partial maintenance "
					     "mode stays until a run can",
					     e.msg);
		else if (ctx->last_recovery && ctx->last_recovery->live_err.code < 0)
			(void) bk_err_suffix(err,
					     "; undoing it failed (%s): partial maintenance "
					     "mode stays until a run can",
					     ctx->last_recovery->live_err.msg);
		else
			(void) bk_err_suffix(err, "; the live patch was undone");
		ctx->recovery_quiet = quiet;
	}
	goto out;
fail_precheck:
	bk_op_task_step(task, "pre-check", r, NULL, t0, bk_now_ns() - m0, "%s", err->msg);
out:
	if (o->task) {
		(void) snprintf(res->task, sizeof(res->task), "%s", task->id);
	} else {
		result_take_task(res, &own_task);
		bk_op_task_release(&own_task);
	}
	bk_op_live_close(&live);
	return r;
}

/* ---- livepatch rollback ----------------------------------------------------------------- */

int bk_op_livepatch_rollback(struct bk_op_ctx *ctx, bool no_beneath,
			     struct bk_op_livepatch_result *res, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_free_ char *previous = NULL, *current = NULL;
	_cleanup_(bk_boot_freep) struct bk_boot *boot = NULL;
	char boot_id[37], reason[256], bank[2] = "", operation[] = "livepatch-rollback";
	struct bk_op_task task;
	struct bk_boot_data d;
	struct bk_booted booted;
	struct bk_maint m = { 0 };
	struct live_ud ud;
	int r;

	result_init(res);
	bk_op_task_init(&task, ctx, "livepatch-rollback", false);
	ud = (struct live_ud){ .ctx = ctx, .live = &live, .task = &task };
	r = bk_op_live_open(ctx, &live, err);
	if (r >= 0)
		r = bk_op_lock(ctx, err);
	if (r >= 0)
		r = bk_maint_check(live.state_dfd, "live patch rollback", err);
	if (r < 0)
		goto fail;
	live_ctx_hook(&live, &ud);
	r = bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		r = bk_err_set(err, -ENOENT, "no previous revision to go back to");
	}
	if (r < 0)
		goto fail;
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);

	/*
	 * The bank whose activation follows the revision in service: the one of the two
	 * revisions that came out of the bank that is not booted.
	 */
	if (ctx->configured && bk_op_booted(ctx, &booted, NULL, NULL) == 0 &&
	    bk_op_boot_load(ctx, &boot, &d, NULL) == 0) {
		enum bk_bank_id x = bk_bank_other(booted.bank);

		if (rev_bank(&live, current) == x || rev_bank(&live, previous) == x) {
			(void) snprintf(bank, sizeof(bank), "%s", bk_bank_id_to_string(x));
			m.bank = bank;
			m.bank_generation = d.state.bank[x].generation;
			m.bank_generation_before = d.state.bank[x].generation;
		}
	}
	(void) snprintf(reason, sizeof(reason), "live patch rollback from '%s' to '%s'",
			current ? current : "(none)", previous);
	m.operation = operation;
	m.reason = reason;
	m.to = previous;
	m.started = (uint64_t) time(NULL);
	m.pid = (uint64_t) getpid();
	m.boot_id = bk_maint_boot_id(boot_id) == 0 ? boot_id : NULL;
	live.lp.maint = &m;
	live.lp.rollback = true;
	if (no_beneath)
		live.lp.view_flags |= BK_VIEW_NO_BENEATH;
	bk_op_task_begin(&task, previous);
	r = bk_livepatch_switch(&live.lp, previous, &res->rep, err);
	if (r < 0)
		goto fail;
	res->id = TAKE_PTR(previous);
	goto out;
fail:
	if (ctx->lock_fd >= 0 && !res->rep)
		bk_op_task_step(&task, "rollback", r, NULL, bk_op_realtime_ns(), 0, "%s", err->msg);
out:
	result_take_task(res, &task);
	bk_op_task_release(&task);
	bk_op_live_close(&live);
	return r;
}

/* ---- livepatch status ------------------------------------------------------------------- */

/* A revision (by id) as JSON, with its metadata when it has some; NULL id: JSON null. */
static int rev_json(int revs_dfd, int run_dfd, const char *id, struct json_object *parent,
		    const char *key)
{
	struct bk_rev rev = { 0 };
	struct json_object *o;
	int r;

	if (!id)
		return bk_json_add_string(parent, key, NULL);
	if (revs_dfd >= 0 && bk_rev_load(revs_dfd, id, &rev, NULL) >= 0) {
		o = bk_rev_to_json(&rev);
		bk_rev_release(&rev);
	} else {
		o = json_object_new_object();
		if (o && bk_json_add_string(o, "id", id) < 0) {
			json_object_put(o);
			o = NULL;
		}
	}
	r = bk_json_add(parent, key, o);
	if (r < 0)
		return r;
	return bk_json_add_bool(o, "mounted", bk_rev_is_mounted(run_dfd, id));
}

static int status_json(struct bk_op_live *live, const struct bk_maint *m, bool in_maint,
		       const char *current, const char *previous, const struct bk_workload *wl,
		       size_t n_wl, struct json_object **ret)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	_cleanup_close_ int revs_dfd = -EBADF;
	struct json_object *mo = NULL, *arr = json_object_new_array();

	revs_dfd = openat(live->state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!o || bk_json_add(o, "workloads", arr) < 0)
		return -ENOMEM;
	if (in_maint) {
		mo = json_object_new_object();
		if (bk_json_add(o, "maintenance", mo) < 0 ||
		    bk_json_add_string(mo, "operation", m->operation) < 0 ||
		    bk_json_add_string(mo, "reason", m->reason) < 0 ||
		    bk_json_add_string(mo, "phase", bk_maint_phase_to_string(m->phase)) < 0 ||
		    bk_json_add_string(mo, "from", m->from) < 0 ||
		    bk_json_add_string(mo, "to", m->to) < 0 ||
		    bk_json_add_u64(mo, "started", m->started) < 0 ||
		    bk_json_add_string(mo, "bank", m->bank) < 0)
			return -ENOMEM;
	} else if (bk_json_add_string(o, "maintenance", NULL) < 0)
		return -ENOMEM;
	if (rev_json(revs_dfd, live->run_dfd, current, o, "current") < 0 ||
	    rev_json(revs_dfd, live->run_dfd, previous, o, "previous") < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n_wl; i++)
		if (json_object_array_add(arr, bk_workload_to_json(&wl[i])) < 0)
			return -ENOMEM;
	*ret = TAKE_PTR(o);
	return 0;
}

int bk_op_livepatch_status(struct bk_op_ctx *ctx, struct json_object **ret, struct bk_err *err)
{
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_free_ char *current = NULL, *previous = NULL;
	_cleanup_close_ int wl_dfd = -EBADF;
	struct bk_maint m = { 0 };
	struct bk_workload *wl = NULL;
	size_t n_wl = 0;
	bool in_maint = false;
	int r;

	r = bk_op_live_open(ctx, &live, err);
	if (r < 0)
		goto out;
	r = bk_maint_get(live.state_dfd, &m, err);
	if (r < 0)
		goto out;
	in_maint = r > 0;
	wl_dfd = openat(live.state_dfd, BK_WORKLOADS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (wl_dfd >= 0) {
		r = bk_workload_list(wl_dfd, &wl, &n_wl, err);
		if (r < 0)
			goto out;
	}
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, NULL);
	r = status_json(&live, &m, in_maint, current, previous, wl, n_wl, ret);
	if (r < 0)
		(void) bk_err_set(err, r, "out of memory");
out:
	bk_workloads_free(wl, n_wl);
	if (in_maint)
		bk_maint_release(&m);
	bk_op_live_close(&live);
	return r < 0 ? r : 0;
}

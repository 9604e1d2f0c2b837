/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recovery after a killed operation (docs/crash-safety.md, "Recovery"): run by bk_op_lock() at
 * the start of every mutating operation, and by bk_op_recover(). It removes the temp files of
 * interrupted atomic writes in the state and run directories, and finishes an interrupted
 * stage: the bank the staging marker names keeps its boot state only when its content is
 * complete, loses its partial files, and the marker goes. Then an interrupted live patch is
 * finished or reverted (bk_op_live_recover(), in this process: it makes no mount of its own,
 * and what it switches are views in the workloads' namespaces).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bk-bank.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op-live.h"
#include "bk-op-recover.h"
#include "bk-op.h"
#include "bk-select.h"
#include "bk-stage.h"

struct bk_op_recovery *bk_op_recovery_free(struct bk_op_recovery *rec)
{
	free(rec);
	return NULL;
}

/*
 * Remove .#* and .partial.* at every depth of a directory beneath the root (absent: nothing
 * to do; issue 16: banks/, revisions/, workloads/, depot/ and any added later).
 */
static int clean_dir(struct bk_op_ctx *ctx, const char *relpath, int *ret_dfd, struct bk_err *err)
{
	struct bk_op_recovery *last = ctx->last_recovery;
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bk_op_open_dir(ctx, relpath, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	r = bk_remove_temps_tree_at(dfd, BK_TEMPS_TREE_MAX_DEPTH, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", bk_op_path(ctx, relpath));
	last->stale += r;
	if (ret_dfd)
		*ret_dfd = TAKE_FD(dfd);
	return 0;
}

/* Does the bank hold the complete image its record names, with the boot state's epoch? */
static bool content_complete(int dfd, const struct bk_bank_boot *bb)
{
	_cleanup_(bk_bank_record_freep) struct bk_bank_record *rec = NULL;

	if (bk_bank_record_read_at(dfd, &rec, NULL) < 0)
		return false;
	return rec->security_epoch == bb->epoch && bk_bank_check(dfd, rec, 0, NULL) == 0;
}

/* What the child that looked into the bank found (sent back through a pipe). */
struct bank_look {
	int r; /* 0: mounted, checked, cleaned and unmounted; <0: err says where it stopped */
	bool complete; /* the content is complete (checked only when asked) */
	int removed;   /* partial and temp files removed */
	struct bk_err err;
};

static void look_into_bank(struct bk_op_ctx *ctx, enum bk_bank_id bank,
			   const struct bk_bank_boot *bb, bool check, struct bank_look *ret)
{
	enum bk_part_id part = bk_part_id_from_bank(bank);
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bk_op_mount_part(ctx, part, true, &dfd, &ret->err);
	if (r < 0) {
		ret->r = r;
		return;
	}
	if (check)
		ret->complete = content_complete(dfd, bb);
	r = bk_remove_stale_temps_at(dfd, &ret->err);
	if (r < 0) {
		ret->r = bk_err_prefix(&ret->err, "bank %s", bk_bank_id_to_string(bank));
		return;
	}
	ret->removed = r;
	(void) close(TAKE_FD(dfd));
	ret->r = bk_op_umount_part(ctx, part, &ret->err);
}

/*
 * Look into the bank from a child process: mounting moves a process into a private mount
 * namespace for good (bk_op_mount_part()), and the verb that takes the lock after us (a live
 * patch, say) must keep making its mounts where everyone sees them.
 */
static void look_into_bank_forked(struct bk_op_ctx *ctx, enum bk_bank_id bank,
				  const struct bk_bank_boot *bb, bool check, struct bank_look *ret)
{
	_cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	*ret = (struct bank_look){ 0 };
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		ret->r = bk_err_set(&ret->err, -errno, "cannot create a pipe: %m");
		return;
	}
	rfd = pfd[0];
	wfd = pfd[1];
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		ret->r = bk_err_set(&ret->err, -errno, "cannot fork: %m");
		return;
	}
	if (pid == 0) {
		look_into_bank(ctx, bank, bb, check, ret);
		_exit(bk_write_full(wfd, ret, sizeof(*ret)) < 0 ? 1 : 0);
	}
	(void) close(TAKE_FD(wfd));
	n = bk_read_full(rfd, ret, sizeof(*ret));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t) sizeof(*ret)) {
		*ret = (struct bank_look){ 0 };
		ret->r = bk_err_set(&ret->err, -EIO,
				    "the process that cleans bank %s ended without an answer",
				    bk_bank_id_to_string(bank));
	}
}

static int finish_stage(struct bk_op_ctx *ctx, int state_dfd, struct bk_err *err)
{
	struct bk_op_recovery *last = ctx->last_recovery;
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	enum bk_bank_id bank = last->marker.bank;
	struct bank_look look;
	struct bk_boot_data d;
	int r;

	r = bk_op_boot_load(ctx, &b, &d, err);
	if (r < 0)
		return r;
	last->before = d.state.bank[bank].state;

	/*
	 * A stage from a URL into a bank the boot state has empty (it never boots): its files
	 * stay for a resume of the same URL, which checks every chunk of them again
	 * (docs/stage-url.md, "Resume"). The marker's pid becomes 0: reported once.
	 */
	if (last->marker.url[0] && last->before == BK_BANK_EMPTY) {
		struct bk_stage_marker m = last->marker;

		last->resumable = true;
		m.pid = 0;
		return bk_stage_marker_write_at(state_dfd, &m, err);
	}

	/* The marker never names the booted bank: stage refuses it. */
	look_into_bank_forked(ctx, bank, &d.state.bank[bank], last->before != BK_BANK_EMPTY, &look);
	last->bank_stale = look.removed;
	last->bank_err = look.err;

	/*
	 * A bank that is not empty keeps its state only when its content is complete: the stage
	 * was killed before it emptied the state, or after it finished writing. A bank that could
	 * not be checked is made empty too.
	 */
	if (last->before != BK_BANK_EMPTY) {
		last->kept = look.complete;
		if (!last->kept) {
			r = bk_select_stage_begin(&d.state, bank, &d.state, err);
			if (r >= 0)
				r = bk_boot_data_set_bad_reason(&d, bank, NULL, err);
			if (r >= 0)
				r = bk_boot_save(b, &d, err);
			if (r < 0)
				return r;
			last->reset = true;
		}
	}
	if (look.r < 0)
		return 0; /* the marker stays: the next run cleans the bank */
	r = bk_stage_marker_remove_at(state_dfd, &last->bank_err);
	if (r < 0)
		return 0;
	last->cleaned = true;
	return 0;
}

static int recover(struct bk_op_ctx *ctx, struct bk_err *err)
{
	_cleanup_close_ int state_dfd = -EBADF;
	struct bk_op_recovery *last;
	int r;

	if (!ctx->last_recovery) {
		ctx->last_recovery = malloc(sizeof(*ctx->last_recovery));
		if (!ctx->last_recovery)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}
	last = ctx->last_recovery;
	*last = (struct bk_op_recovery){ .ran = true };
	r = clean_dir(ctx, BK_OP_STATE_DIR, &state_dfd, err);
	if (r >= 0)
		r = clean_dir(ctx, BK_OP_RUN_DIR, NULL, err);
	if (r < 0 || state_dfd < 0)
		return r;

	r = bk_stage_marker_read_at(state_dfd, &last->marker, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
	} else if (r < 0) {
		return bk_err_prefix(err, "in '%s'", bk_op_path(ctx, BK_OP_STATE_DIR));
	} else if (last->marker.url[0] && last->marker.pid == 0) {
		/* Kept for a resume and reported already (finish_stage()). */
	} else {
		last->interrupted = true;
		r = finish_stage(ctx, state_dfd, err);
		if (r < 0)
			return r;
	}

	/*
	 * After the bank: a live patch's boot choice is settled on a consistent boot state. When
	 * it cannot be finished or reverted, the flag stays: partial maintenance mode goes on and
	 * the verbs it blocks refuse with "busy" until a run succeeds (their one line says so;
	 * the reason is an event, and `bankctl recover` prints it).
	 */
	{
		struct bk_err e = { 0 };

		r = bk_op_live_recover(ctx, last->live_what, sizeof(last->live_what), &e);
		if (r < 0) {
			last->live_err = e;
			bk_op_log(ctx, LOG_DEBUG,
				  "%s: partial maintenance mode stays until it can be done", e.msg);
		}
		last->live = r > 0;
	}
	return 0;
}

void bk_op_recovery_describe(const struct bk_op_recovery *last, char *buf, size_t len)
{
	const char *bank = bk_bank_id_to_string(last->marker.bank);
	char what[768] = "";
	size_t pos = 0, wpos = 0;

	buf[0] = '\0';
	if (last->stale > 0)
		bk_op_listf(buf, len, &pos, "removed %d stale temporary %s", last->stale,
			    last->stale == 1 ? "file" : "files");
	if (last->live)
		bk_op_listf(buf, len, &pos, "%s", last->live_what);
	if (!last->interrupted)
		return;
	if (last->resumable)
		bk_op_listf(what, sizeof(what), &wpos,
			    "bank %s stays empty; its verified chunks stay for a resume of '%s'",
			    bank, last->marker.url);
	else if (last->kept)
		bk_op_listf(what, sizeof(what), &wpos, "its content is complete: it stays %s",
			    bk_bank_state_to_string(last->before));
	else if (last->reset)
		bk_op_listf(what, sizeof(what), &wpos, "bank %s was %s and is now empty", bank,
			    bk_bank_state_to_string(last->before));
	else
		bk_op_listf(what, sizeof(what), &wpos, "bank %s stays empty", bank);
	if (last->bank_stale > 0)
		bk_op_listf(what, sizeof(what), &wpos, "%d partial %s removed", last->bank_stale,
			    last->bank_stale == 1 ? "file" : "files");
	if (!last->cleaned && !last->resumable)
		bk_op_listf(what, sizeof(what), &wpos, "not finished: %s", last->bank_err.msg);
	bk_op_listf(buf, len, &pos, "an interrupted stage of %s %s into bank %s (%s)",
		    last->marker.image, last->marker.version, bank, what);
}

bool bk_op_recovery_did_something(const struct bk_op_recovery *rec)
{
	return rec && (rec->stale != 0 || rec->interrupted || rec->live);
}

int bk_op_recover_after_lock(struct bk_op_ctx *ctx, struct bk_err *err)
{
	struct bk_op_recovery *last;
	char what[1024];
	int r;

	r = recover(ctx, err);
	if (r < 0)
		return r;
	last = ctx->last_recovery;
	if (ctx->recovery_quiet || !bk_op_recovery_did_something(last))
		return 0;
	bk_op_recovery_describe(last, what, sizeof(what));
	if (last->interrupted && !last->cleaned && !last->resumable)
		bk_op_log(ctx, LOG_WARNING, "recovered in part: %s", what);
	else
		bk_op_log(ctx, LOG_NOTICE, "recovered: %s", what);
	return 0;
}

int bk_op_recover(struct bk_op_ctx *ctx, const struct bk_op_recovery **ret, struct bk_err *err)
{
	bool quiet = ctx->recovery_quiet;
	int r;

	/* Taking the lock recovers (bk_op_recover_after_lock()); the caller reports. */
	if (ctx->last_recovery)
		ctx->last_recovery->ran = false;
	ctx->recovery_quiet = true;
	r = bk_op_lock(ctx, err);
	ctx->recovery_quiet = quiet;
	if (r < 0)
		return r;
	if (!ctx->last_recovery || !ctx->last_recovery->ran) {
		/* The lock was already ours: recover now. */
		r = recover(ctx, err);
		if (r < 0)
			return r;
	}
	*ret = ctx->last_recovery;
	return 0;
}

struct json_object *bk_op_recovery_to_json(const struct bk_op_recovery *last)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *st;

	if (!o || bk_json_add_u64(o, "stale_files", (uint64_t) last->stale) < 0 ||
	    bk_op_json_add_nullable(o, "interrupted_live_patch",
				    last->live ? last->live_what : NULL) < 0)
		return NULL;
	if (!last->interrupted) {
		if (json_object_object_add(o, "interrupted_stage", NULL) < 0)
			return NULL;
	} else {
		st = json_object_new_object();
		if (bk_json_add(o, "interrupted_stage", st) < 0 ||
		    bk_json_add_string(st, "bank", bk_bank_id_to_string(last->marker.bank)) < 0 ||
		    bk_json_add_string(st, "image", last->marker.image) < 0 ||
		    bk_json_add_string(st, "version", last->marker.version) < 0 ||
		    bk_json_add_string(st, "state_before", bk_bank_state_to_string(last->before)) <
			    0 ||
		    bk_json_add_bool(st, "content_complete", last->kept) < 0 ||
		    bk_json_add_bool(st, "state_reset", last->reset) < 0 ||
		    bk_json_add_u64(st, "partial_files", (uint64_t) last->bank_stale) < 0 ||
		    bk_json_add_bool(st, "finished", last->cleaned) < 0 ||
		    bk_op_json_add_nullable(st, "error",
					    last->cleaned ? NULL : last->bank_err.msg) < 0)
			return NULL;
	}
	return TAKE_PTR(o);
}

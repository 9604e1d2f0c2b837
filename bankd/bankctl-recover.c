/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recovery after a killed bankctl (docs/crash-safety.md, "Recovery"): run by bankctl_lock()
 * at the start of every mutating verb, and by `bankctl recover`. It removes the temp files
 * of interrupted atomic writes in the state and run directories, and finishes an interrupted
 * stage: the bank the staging marker names keeps its boot state only when its content is
 * complete, loses its partial files, and the marker goes. Then an interrupted live patch is
 * finished or reverted (bankctl_live_recover(), in this process: it makes no mount of its own,
 * and what it switches are views in the workloads' namespaces).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bankctl-livepatch.h"
#include "bankctl.h"
#include "bk-bank.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-select.h"
#include "bk-stage.h"

static const struct bankctl_verb verb = { "recover", NULL, "recover [--json]", "" };

/* What the last recovery of this process did. */
struct recovery {
	bool ran;
	int stale;	  /* temp files removed in the state and run directories */
	bool interrupted; /* a staging marker was found ... */
	struct bk_stage_marker marker;
	enum bk_bank_state before; /* ... the bank's boot state then ... */
	bool kept;		   /* ... kept: its content is complete */
	bool reset;		   /* ... or set to empty */
	int bank_stale;		   /* partial and temp files removed in the bank */
	bool cleaned;		   /* the bank was cleaned and the marker removed */
	struct bk_err bank_err;	   /* why not */
	bool live;		   /* an interrupted live patch was recovered ... */
	char live_what[768];	   /* ... this way */
	struct bk_err live_err;	   /* or could not be: why */
};

static struct recovery last;
static bool quiet;

/* Remove .#* and .partial.* in a directory beneath the root (absent: nothing to do). */
static int clean_dir(struct bankctl *ctx, const char *relpath, int *ret_dfd, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bankctl_open_dir(ctx, relpath, false, &dfd, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	r = bk_remove_temps_tree_at(dfd, BK_TEMPS_TREE_MAX_DEPTH, err);
	if (r < 0)
		return bk_err_prefix(err, "'%s'", bankctl_path(ctx, relpath));
	last.stale += r;
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

static void look_into_bank(struct bankctl *ctx, enum bk_bank_id bank, const struct bk_bank_boot *bb,
			   bool check, struct bank_look *ret)
{
	enum bk_part_id part = bk_part_id_from_bank(bank);
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bankctl_mount_part(ctx, part, true, &dfd, &ret->err);
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
	ret->r = bankctl_umount_part(ctx, part, &ret->err);
}

static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *) buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t) n;
	}
	return (ssize_t) got;
}

/*
 * Look into the bank from a child process: mounting moves a process into a private mount
 * namespace for good (bankctl_mount_part()), and the verb that takes the lock after us (a live
 * patch, say) must keep making its mounts where everyone sees them.
 */
static void look_into_bank_forked(struct bankctl *ctx, enum bk_bank_id bank,
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
	n = read_full(rfd, ret, sizeof(*ret));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t) sizeof(*ret)) {
		*ret = (struct bank_look){ 0 };
		ret->r = bk_err_set(&ret->err, -EIO,
				    "the process that cleans bank %s ended without an answer",
				    bk_bank_id_to_string(bank));
	}
}

static int finish_stage(struct bankctl *ctx, int state_dfd, struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	enum bk_bank_id bank = last.marker.bank;
	struct bank_look look;
	struct bk_boot_data d;
	int r;

	r = bankctl_boot_load(ctx, &b, &d, err);
	if (r < 0)
		return r;
	last.before = d.state.bank[bank].state;

	/* The marker never names the booted bank: stage refuses it. */
	look_into_bank_forked(ctx, bank, &d.state.bank[bank], last.before != BK_BANK_EMPTY, &look);
	last.bank_stale = look.removed;
	last.bank_err = look.err;

	/*
	 * A bank that is not empty keeps its state only when its content is complete: the stage
	 * was killed before it emptied the state, or after it finished writing. A bank that could
	 * not be checked is made empty too.
	 */
	if (last.before != BK_BANK_EMPTY) {
		last.kept = look.complete;
		if (!last.kept) {
			r = bk_select_stage_begin(&d.state, bank, &d.state, err);
			if (r >= 0)
				r = bk_boot_data_set_bad_reason(&d, bank, NULL, err);
			if (r >= 0)
				r = bk_boot_save(b, &d, err);
			if (r < 0)
				return r;
			last.reset = true;
		}
	}
	if (look.r < 0)
		return 0; /* the marker stays: the next run cleans the bank */
	r = bk_stage_marker_remove_at(state_dfd, &last.bank_err);
	if (r < 0)
		return 0;
	last.cleaned = true;
	return 0;
}

static int recover(struct bankctl *ctx, struct bk_err *err)
{
	_cleanup_close_ int state_dfd = -EBADF;
	int r;

	last = (struct recovery){ .ran = true };
	r = clean_dir(ctx, BANKCTL_STATE_DIR, &state_dfd, err);
	if (r >= 0)
		r = clean_dir(ctx, BANKCTL_RUN_DIR, NULL, err);
	if (r < 0 || state_dfd < 0)
		return r;

	r = bk_stage_marker_read_at(state_dfd, &last.marker, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
	} else if (r < 0) {
		return bk_err_prefix(err, "in '%s'", bankctl_path(ctx, BANKCTL_STATE_DIR));
	} else {
		last.interrupted = true;
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

		r = bankctl_live_recover(ctx, last.live_what, sizeof(last.live_what), &e);
		if (r < 0) {
			last.live_err = e;
			bk_log(LOG_DEBUG, "%s: partial maintenance mode stays until it can be done",
			       e.msg);
		}
		last.live = r > 0;
	}
	return 0;
}

static void describe(char *buf, size_t len)
{
	const char *bank = bk_bank_id_to_string(last.marker.bank);
	char what[768] = "";
	size_t pos = 0, wpos = 0;

	buf[0] = '\0';
	if (last.stale > 0)
		bankctl_listf(buf, len, &pos, "removed %d stale temporary %s", last.stale,
			      last.stale == 1 ? "file" : "files");
	if (last.live)
		bankctl_listf(buf, len, &pos, "%s", last.live_what);
	if (!last.interrupted)
		return;
	if (last.kept)
		bankctl_listf(what, sizeof(what), &wpos, "its content is complete: it stays %s",
			      bk_bank_state_to_string(last.before));
	else if (last.reset)
		bankctl_listf(what, sizeof(what), &wpos, "bank %s was %s and is now empty", bank,
			      bk_bank_state_to_string(last.before));
	else
		bankctl_listf(what, sizeof(what), &wpos, "bank %s stays empty", bank);
	if (last.bank_stale > 0)
		bankctl_listf(what, sizeof(what), &wpos, "%d partial %s removed", last.bank_stale,
			      last.bank_stale == 1 ? "file" : "files");
	if (!last.cleaned)
		bankctl_listf(what, sizeof(what), &wpos, "not finished: %s", last.bank_err.msg);
	bankctl_listf(buf, len, &pos, "an interrupted stage of %s %s into bank %s (%s)",
		      last.marker.image, last.marker.version, bank, what);
}

int bankctl_recover_after_lock(struct bankctl *ctx, struct bk_err *err)
{
	char what[1024];
	int r;

	r = recover(ctx, err);
	if (r < 0)
		return r;
	if (quiet || (last.stale == 0 && !last.interrupted && !last.live))
		return 0;
	describe(what, sizeof(what));
	if (last.interrupted && !last.cleaned)
		bk_log(LOG_WARNING, "recovered in part: %s", what);
	else
		bk_log(LOG_NOTICE, "recovered: %s", what);
	return 0;
}

static int print_json(void)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *st;

	if (!o || bk_json_add_u64(o, "stale_files", (uint64_t) last.stale) < 0 ||
	    bankctl_json_add_nullable(o, "interrupted_live_patch",
				      last.live ? last.live_what : NULL) < 0)
		return -ENOMEM;
	if (!last.interrupted) {
		if (json_object_object_add(o, "interrupted_stage", NULL) < 0)
			return -ENOMEM;
	} else {
		st = json_object_new_object();
		if (bk_json_add(o, "interrupted_stage", st) < 0 ||
		    bk_json_add_string(st, "bank", bk_bank_id_to_string(last.marker.bank)) < 0 ||
		    bk_json_add_string(st, "image", last.marker.image) < 0 ||
		    bk_json_add_string(st, "version", last.marker.version) < 0 ||
		    bk_json_add_string(st, "state_before", bk_bank_state_to_string(last.before)) <
			    0 ||
		    bk_json_add_bool(st, "content_complete", last.kept) < 0 ||
		    bk_json_add_bool(st, "state_reset", last.reset) < 0 ||
		    bk_json_add_u64(st, "partial_files", (uint64_t) last.bank_stale) < 0 ||
		    bk_json_add_bool(st, "finished", last.cleaned) < 0 ||
		    bankctl_json_add_nullable(st, "error",
					      last.cleaned ? NULL : last.bank_err.msg) < 0)
			return -ENOMEM;
	}
	puts(bk_json_to_string(o, true));
	return 0;
}

int bankctl_recover(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	struct bk_err err = { 0 };
	char what[1024];
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, &verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(&verb, "unexpected argument '%s'", argv[optind]);

	/* Taking the lock recovers (bankctl_recover_after_lock()); we report. */
	quiet = true;
	r = bankctl_lock(ctx, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (!last.ran) {
		/* The lock was already ours: recover now. */
		r = recover(ctx, &err);
		if (r < 0)
			return bankctl_fail(r, &err);
	}

	if (ctx->json) {
		r = print_json();
		if (r < 0)
			return bankctl_fail(r, NULL);
	} else if (last.stale == 0 && !last.interrupted && !last.live) {
		printf("nothing to recover\n");
	} else {
		describe(what, sizeof(what));
		printf("recovered: %s\n", what);
	}
	if (last.interrupted && !last.cleaned)
		return bankctl_fail(last.bank_err.code ? last.bank_err.code : -EIO, &last.bank_err);
	if (last.live_err.code < 0)
		return bankctl_fail(last.live_err.code, &last.live_err);
	return BK_EXIT_OK;
}

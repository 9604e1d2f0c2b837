/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recovery after a killed bankctl (docs/crash-safety.md, "Recovery"): run by bankctl_lock()
 * at the start of every mutating verb, and by `bankctl recover`. It removes the temp files
 * of interrupted atomic writes in the state and run directories, and finishes an interrupted
 * stage: the bank the staging marker names keeps its boot state only when its content is
 * complete, loses its partial files, and the marker goes.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
	r = bk_remove_stale_temps_at(dfd, err);
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

static int finish_stage(struct bankctl *ctx, int state_dfd, struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	_cleanup_close_ int dfd = -EBADF;
	enum bk_bank_id bank = last.marker.bank;
	enum bk_part_id part = bk_part_id_from_bank(bank);
	struct bk_boot_data d;
	int r, mr;

	r = bankctl_boot_load(ctx, &b, &d, err);
	if (r < 0)
		return r;
	last.before = d.state.bank[bank].state;

	/* The marker never names the booted bank: stage refuses it. */
	mr = bankctl_mount_part(ctx, part, true, &dfd, &last.bank_err);

	/*
	 * A bank that is not empty keeps its state only when its content is complete: the stage
	 * was killed before it emptied the state, or after it finished writing.
	 */
	if (last.before != BK_BANK_EMPTY) {
		last.kept = mr >= 0 && content_complete(dfd, &d.state.bank[bank]);
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
	if (mr < 0)
		return 0; /* the marker stays: the next run cleans the bank */

	r = bk_remove_stale_temps_at(dfd, &last.bank_err);
	if (r < 0) {
		(void) bk_err_prefix(&last.bank_err, "bank %s", bk_bank_id_to_string(bank));
		return 0;
	}
	last.bank_stale = r;
	(void) close(TAKE_FD(dfd));
	r = bankctl_umount_part(ctx, part, &last.bank_err);
	if (r < 0)
		return 0;
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
		return 0;
	}
	if (r < 0)
		return bk_err_prefix(err, "in '%s'", bankctl_path(ctx, BANKCTL_STATE_DIR));
	last.interrupted = true;
	return finish_stage(ctx, state_dfd, err);
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
	if (quiet || (last.stale == 0 && !last.interrupted))
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

	if (!o || bk_json_add_u64(o, "stale_files", (uint64_t) last.stale) < 0)
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
	} else if (last.stale == 0 && !last.interrupted) {
		printf("nothing to recover\n");
	} else {
		describe(what, sizeof(what));
		printf("recovered: %s\n", what);
	}
	if (last.interrupted && !last.cleaned)
		return bankctl_fail(last.bank_err.code ? last.bank_err.code : -EIO, &last.bank_err);
	return BK_EXIT_OK;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stage operation (docs/banks.md, "Stage"): lock (and recover), refuse in partial
 * maintenance mode, verify, check the policy and the space, then write the alternate bank and
 * mark it staged (and activated with o->activate). Mounts the banks in the process's private
 * mount namespace (bk_op_mount_part()): a live patch runs it in a child process.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-bank.h"
#include "bk-cms.h"
#include "bk-op-etc.h"
#include "bk-op.h"

/* The directory of the banks' content record copies, beneath the state directory. */
#define BK_OP_BANKS_CACHE_DIR "banks"

struct bk_op_stage_opts {
	int fd; /* the bundle, open (dup'ed: the caller keeps it) */
	/*
	 * Or an http:// or https:// URL (fd is then ignored): read with range requests
	 * ([fetch] of system.conf), every chunk verified before it is written, resumed after an
	 * interrupted stage of the same URL and bundle, delta against the booted bank
	 * (docs/stage-url.md).
	 */
	const char *url;
	const char *path;		  /* for messages */
	const struct bk_keyring *keyring; /* trusted signers */
	bool activate;
	bool allow_downgrade;
	bool ignore_compatible;
	bool no_check_time;
	/*
	 * Run every check a stage can refuse for (signature, policy, every payload's bytes, the
	 * bank's size) and write nothing: no marker, no boot state, no event. The target bank is
	 * mounted read-only in the private namespace for the space check, even when it is also
	 * mounted elsewhere (the busy check belongs to the write).
	 */
	bool check_only;
	/*
	 * Keep the revisions mounted out of the target bank (a live patch releases them itself,
	 * before its pre-check). Otherwise a stage first releases the stale ones, which a rolled
	 * back live patch leaves behind and which keep the bank busy (bk_op_live_release_stale());
	 * one a workload still uses, or the one in service, refuses the stage.
	 */
	bool keep_revisions;
	/*
	 * Optional: called once every check passed, right before the first write (the staging
	 * marker), with the bank to write and the boot state; a failure stops the stage with
	 * nothing written. A stage with before_write records no event of its own (the caller's
	 * task does).
	 */
	int (*before_write)(void *userdata, enum bk_bank_id bank, const struct bk_boot_data *d,
			    struct bk_err *err);
	void *userdata;
};

struct bk_op_stage_result {
	enum bk_bank_id bank;
	const char *why;	       /* why that bank (static) */
	struct bk_bank_record *record; /* what was written (bk_op_stage_result_release()) */
	uint64_t bytes;
	uint64_t bytes_fetched; /* read from the bundle (file or URL) */
	uint64_t bytes_reused;	/* delta: copied from the booted bank's payloads */
	uint64_t bytes_resumed; /* kept from an interrupted stage of the same URL */
	double seconds;
	bool activated;
	int revisions_released;	    /* stale revisions unmounted out of the bank first */
	struct bk_boot_data d;	    /* the boot state after */
	struct bk_op_etc_carry etc; /* the booted bank's /etc layer carried into the new bank's */
};

/*
 * Stage o->fd. Progress goes to ctx->obs.progress; one "stage" event is recorded once the lock
 * is ours. Returns 0 or -errno with err (exit codes: docs/bankctl.md). Needs root.
 */
int bk_op_stage(struct bk_op_ctx *ctx, const struct bk_op_stage_opts *o,
		struct bk_op_stage_result *res, struct bk_err *err);

void bk_op_stage_result_release(struct bk_op_stage_result *res);

/*
 * {"bank", "why", "image", "bytes", "bytes_fetched", "bytes_reused", "bytes_resumed", "seconds",
 * "activated", "boot", "etc"}: the result `stage --json` prints (with "event": "result", "ok":
 * true added). NULL on ENOMEM.
 */
struct json_object *bk_op_stage_result_to_json(const struct bk_op_stage_result *res);

/*
 * The bank a stage would write (the alternate of the booted bank, ...), with why. Reads the
 * boot state. Returns 0 or -errno.
 */
int bk_op_stage_target(struct bk_op_ctx *ctx, enum bk_bank_id *ret, const char **ret_why,
		       struct bk_err *err);

/*
 * The content record of a non-empty bank for status: its copy in the state directory, or
 * bank.json read from the bank mounted read-only (private namespace). Returns 0 and a new
 * object in *ret (the record, or {"error": ...} when it cannot be read), or 1 when there is
 * none (empty bank, no disk, no bank.json).
 */
int bk_op_bank_content(struct bk_op_ctx *ctx, enum bk_bank_id bank, struct json_object **ret);

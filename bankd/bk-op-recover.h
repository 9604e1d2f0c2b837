/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recovery after a killed operation (docs/crash-safety.md, "Recovery"): stale temp files, an
 * interrupted stage, an interrupted live patch.
 */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

#include "bk-err.h"
#include "bk-op.h"
#include "bk-select.h"
#include "bk-stage.h"

/* What the last recovery of a context did. */
struct bk_op_recovery {
	bool ran;
	int stale;	  /* temp files removed in the state and run directories */
	bool interrupted; /* a staging marker was found ... */
	struct bk_stage_marker marker;
	enum bk_bank_state before; /* ... the bank's boot state then ... */
	bool kept;		   /* ... kept: its content is complete */
	bool reset;		   /* ... or set to empty */
	int bank_stale;		   /* partial and temp files removed in the bank */
	bool cleaned;		   /* the bank was cleaned and the marker removed */
	bool resumable;		   /* or a URL stage's verified chunks stay for a resume */
	struct bk_err bank_err;	   /* why not */
	bool live;		   /* an interrupted live patch was recovered ... */
	char live_what[768];	   /* ... this way */
	struct bk_err live_err;	   /* or could not be: why */
};

struct bk_op_recovery *bk_op_recovery_free(struct bk_op_recovery *rec);

/*
 * Recover now; the lock must be ours (bk_op_lock() calls it). What it did goes to
 * ctx->last_recovery and, unless ctx->recovery_quiet, one obs.message ("recovered: ...").
 * Returns 0 or -errno (a corrupt boot state or staging marker); a bank it cannot clean yet
 * is left to the next run.
 */
int bk_op_recover_after_lock(struct bk_op_ctx *ctx, struct bk_err *err);

/*
 * The recover operation: take the lock (which recovers) and return what was done (*ret is
 * borrowed from ctx). Unfinished parts are in (*ret)->bank_err / live_err, not in the return.
 */
int bk_op_recover(struct bk_op_ctx *ctx, const struct bk_op_recovery **ret, struct bk_err *err);

/* True when the recovery found anything to do. */
bool bk_op_recovery_did_something(const struct bk_op_recovery *rec);

/* One line for people: "removed 2 stale temporary files; an interrupted stage of ...". */
void bk_op_recovery_describe(const struct bk_op_recovery *rec, char *buf, size_t len);

/* What `recover --json` prints. NULL on ENOMEM. */
struct json_object *bk_op_recovery_to_json(const struct bk_op_recovery *rec);

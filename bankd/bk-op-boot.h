/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The operations over the boot state (docs/banks.md): activate, mark-good, mark-bad, rollback,
 * roll-forward (each takes the lock, recovers, records one event, and refuses in partial
 * maintenance mode where docs/livepatch.md says so), explain-next-boot (read-only) and
 * boot --simulate (sandboxes only).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-boot.h"
#include "bk-op.h"
#include "bk-select.h"

/* What a boot-state operation did, and the boot state after it. */
struct bk_op_boot_result {
	const char *verb;     /* "activate", "mark-good", ... (static) */
	enum bk_bank_id bank; /* the bank it acted on */
	enum bk_bank_id from; /* roll-forward: the bank rolled back to before */
	uint64_t tries;	      /* activate: the tries given */
	uint64_t old_floor;   /* mark: the security floor before */
	struct bk_boot_data d;
};

/* {"verb", "bank", "boot": bk_op_bootstate_json()}: what --json prints. NULL on ENOMEM. */
struct json_object *bk_op_boot_result_to_json(const struct bk_op_boot_result *res);

/* The JSON of a boot decision (next boot, with the rollback key, boot --simulate). */
struct json_object *bk_op_decision_json(const struct bk_boot_decision *d);

/*
 * "A", "B", "booted" or "other" (the booted bank's other) to a bank. -EINVAL for another word,
 * -ENOENT when the booted bank is unknown.
 */
int bk_op_bank_word(struct bk_op_ctx *ctx, const char *word, enum bk_bank_id *ret,
		    struct bk_err *err);

/*
 * Activate bank (_BK_BANK_INVALID: the one staged bank) with tries (0: system.conf's). -EINVAL
 * when both banks are staged and none is named, -ENOENT when none is staged, -EBUSY in partial
 * maintenance mode, errors of bk_select_activate() and the backend.
 */
int bk_op_activate(struct bk_op_ctx *ctx, enum bk_bank_id bank, uint64_t tries,
		   struct bk_op_boot_result *res, struct bk_err *err);

/*
 * Mark a bank (word: bk_op_bank_word(), NULL: "booted") good or bad (reason: NULL for the
 * default). Mark-good may raise the security floor (res->old_floor is the floor before).
 */
int bk_op_mark(struct bk_op_ctx *ctx, bool good, const char *word, const char *reason,
	       struct bk_op_boot_result *res, struct bk_err *err);

/* Roll back (back) or forward: the rollback pin set or cleared (bk_select_rollback()). */
int bk_op_roll(struct bk_op_ctx *ctx, bool back, struct bk_op_boot_result *res, struct bk_err *err);

/* The next boot explained bank by bank (read-only, no lock). */
int bk_op_explain(struct bk_op_ctx *ctx, struct bk_boot_data *ret_d, struct bk_boot_explain *ret,
		  struct bk_err *err);

/* What explain-next-boot --json prints. NULL on ENOMEM. */
struct json_object *bk_op_explain_to_json(const struct bk_boot_data *data,
					  const struct bk_boot_explain *x);

struct bk_op_simulate_result {
	struct bk_bootstate before;
	struct bk_boot_decision dec; /* dec.reason BK_REASON_NONE: nothing to boot */
	struct bk_boot_data d;
};

/*
 * In a sandbox (-EPERM on the host's "/"), boot as the loader would: take a try, fall back,
 * record the boot in ROOT/run/bootbank/booted.json. Returns 0 also when nothing could boot
 * (res->dec.reason == BK_REASON_NONE; booted.json removed).
 */
int bk_op_boot_simulate(struct bk_op_ctx *ctx, bool key, struct bk_op_simulate_result *res,
			struct bk_err *err);

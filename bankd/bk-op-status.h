/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The status operation: the configuration, the boot state, each bank's content record, the
 * booted bank, partial maintenance mode and the last failed operation. Read-only, no lock;
 * every part may be missing (each carries its own error).
 */
#pragma once

#include <json-c/json.h>

#include "bk-boot.h"
#include "bk-events.h"
#include "bk-maint.h"
#include "bk-op.h"
#include "bk-select.h"

struct bk_op_status {
	struct bk_boot *boot;
	struct bk_boot_data data;
	int load_r; /* <0: the boot state could not be read (load_err says why) */
	struct bk_err load_err;
	int booted_r; /* 0: booted known, 1: unknown, <0: booted_err */
	struct bk_booted booted;
	enum bk_op_booted_source booted_source;
	struct bk_err booted_err;
	struct json_object *content[_BK_BANK_MAX]; /* bk_op_bank_content(), or NULL */
	int maint_r; /* 1: partial maintenance mode (maint), 0: off, <0: maint_err */
	struct bk_maint maint;
	struct bk_err maint_err;
	int event_r; /* 1: the last failed event (last_error), 0: none */
	struct bk_event last_error;
	/* A host booted by the initramfs boot method (docs/initramfs.md), from run/bootbank: */
	char data_where[16]; /* root.env DATA=: "partition" or "ram"; "" when not told */
	bool has_assess;     /* assess.json: this boot's assessment (bk-op-assess.h) */
	char assess_action[32];
	char assess_reason[256];
	uint64_t assess_wanted_failed;
	char assess_wanted[256]; /* the failing wanted checks, "a; b" */
};

/* Read everything status shows (nothing when unconfigured). Never fails as a whole. */
void bk_op_status_load(struct bk_op_ctx *ctx, struct bk_op_status *v);
void bk_op_status_release(struct bk_op_status *v);

/* What `status --json` prints. NULL on ENOMEM. */
struct json_object *bk_op_status_to_json(struct bk_op_ctx *ctx, struct bk_op_status *v);

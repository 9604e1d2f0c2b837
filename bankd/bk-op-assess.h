/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Boot assessment (docs/systemd.md): the health checks of ROOT/etc/bootbank/health.d decide
 * whether a trial boot is kept.
 *
 *   required.d/NN-name   every one must exit 0 within the timeout
 *   wanted.d/NN-name     a failure is an event and a line of the result, nothing more
 *
 * Checks are run by the live-patch hook runner (mountrev/bk-hooks.h, phase "health"): in name
 * order, through execve (posix_spawn, never a shell), stdin /dev/null, stdout and stderr
 * captured, each in its own process group killed at its timeout. argv: PATH health "" "";
 * env: PATH, BOOTBANK_PHASE=health, BOOTBANK_HOOK=NN-name. Each check's result and the last
 * line of its output become an event (operation "assess"); a failing check's event (required:
 * "failed", wanted: "warning") also keeps the end of its output, one line a line: the last
 * BK_ASSESS_EVENT_OUTPUT_MAX bytes of stdout and stderr together (so that, with the first
 * line and the markers, the message fits the events' BK_EVENTS_MESSAGE_MAX: the output
 * survives the mark-bad reboot when /run and the journal do not).
 *
 * On a trial boot (the booted bank is `trying`): all required checks pass -> mark-good (the
 * floor may rise); a required check fails or times out -> mark-bad with the reason
 * "health check 'NN-name' failed: ..." and a reboot is asked for, only when the loader would
 * then boot the other bank (never on the last bootable bank: no reboot loop). On any other
 * boot (good, bad, emergency) failures are reported, never acted on.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-err.h"
#include "bk-hooks.h"
#include "bk-op-boot.h"
#include "bk-op.h"

#define BK_ASSESS_DIR		     "health.d"
#define BK_ASSESS_REQUIRED_DIR	     BK_ASSESS_DIR "/required.d"
#define BK_ASSESS_WANTED_DIR	     BK_ASSESS_DIR "/wanted.d"
#define BK_ASSESS_TIMEOUT_MS_DEFAULT (90 * 1000)
#define BK_ASSESS_FILE		     "assess.json"   /* in ROOT/run/bootbank: the last result */
#define BK_ASSESS_ETC_CONFLICTS	     "etc-conflicts" /* in ROOT/run/bootbank, from the initramfs */
/* A failing check's event: its output's last bytes (both streams) and its last line's first. */
#define BK_ASSESS_EVENT_OUTPUT_MAX    1536
#define BK_ASSESS_EVENT_LAST_LINE_MAX 200

enum bk_assess_action {
	BK_ASSESS_NONE,	       /* not a trial boot: reported only */
	BK_ASSESS_MARKED_GOOD, /* trial boot, every required check passed */
	BK_ASSESS_MARKED_BAD,  /* trial boot, a required check failed */
	_BK_ASSESS_ACTION_MAX,
	_BK_ASSESS_ACTION_INVALID = -EINVAL,
};

const char *bk_assess_action_to_string(enum bk_assess_action a);

struct bk_op_assess_options {
	uint64_t timeout_ms; /* per check; 0: BK_ASSESS_TIMEOUT_MS_DEFAULT */
	/*
	 * Not NULL: run no check, the boot failed for this reason (the deadline of
	 * bootbank-deadline.service: the boot never reached its assessment). Acted on as a
	 * failing required check.
	 */
	const char *fail_reason;
};

struct bk_op_assess_result {
	enum bk_bank_id bank;	      /* the booted bank */
	enum bk_bank_state state;     /* its state before the assessment */
	bool trial;		      /* it was trying */
	struct bk_hook_run *required; /* what ran (never NULL after success) */
	struct bk_hook_run *wanted;
	const char *failed; /* the first required check that failed (in required), or NULL */
	size_t n_wanted_failed;
	enum bk_assess_action action;
	char reason[256];	       /* mark-bad's reason, "" otherwise */
	bool reboot;		       /* marked bad and the loader would boot the other bank */
	enum bk_bank_id next;	       /* the bank the loader boots next */
	struct bk_op_boot_result mark; /* the mark's result (action != NONE) */
};

void bk_op_assess_result_release(struct bk_op_assess_result *res);

/*
 * Run the health checks and act on a trial boot (above). Returns 0 whatever the checks said
 * (the verdict is in res); -ENOENT when the booted bank is not known, -errno when a check
 * directory cannot be read or the boot state cannot be saved. res must be released.
 */
int bk_op_assess(struct bk_op_ctx *ctx, const struct bk_op_assess_options *o,
		 struct bk_op_assess_result *res, struct bk_err *err);

/*
 * Whether this boot is a trial boot (the booted bank is `trying`): *ret. -ENOENT when the
 * booted bank is not known. Reads only (the ExecCondition of bootbank-assess.service).
 */
int bk_op_assess_is_trial(struct bk_op_ctx *ctx, bool *ret, struct bk_err *err);

/* The result as JSON (also what ROOT/run/bootbank/assess.json holds); NULL when out of memory. */
struct json_object *bk_op_assess_result_to_json(const struct bk_op_assess_result *res);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Remediation (docs/remediation.md; vSphere Lifecycle Manager's workflow): a desired image
 * from the depot with a live-patch mode, the compliance scan and the pre-check (both
 * read-only), and remediate, which takes the path the policy picks (the live patch of
 * bk-op-live.h, or stage + activate and a reboot) under one task, and scans again.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "bk-cms.h"
#include "bk-livepatch.h"
#include "bk-op.h"
#include "bk-select.h"

/* The desired state, beneath the state directory. */
#define BK_DESIRED_FILE	    "desired.json"
#define BK_DESIRED_MAX_SIZE (16 * 1024)

enum bk_lp_mode {
	BK_LP_MODE_DISABLE, /* always the reboot path */
	BK_LP_MODE_AUTO,    /* the live path when the pre-check says it is possible, else reboot */
	BK_LP_MODE_ENFORCE, /* the live path or nothing */
	_BK_LP_MODE_MAX,
	_BK_LP_MODE_INVALID = -EINVAL,
};

const char *bk_lp_mode_to_string(enum bk_lp_mode m);
enum bk_lp_mode bk_lp_mode_from_string(const char *s);

/* What desired.json holds: {"format": 1, "name", "version", "live_patch_mode", "set"}. */
struct bk_op_desired {
	char name[128];
	char version[64];
	enum bk_lp_mode mode;
	uint64_t set; /* Unix seconds */
};

/*
 * Lock, check that the depot holds NAME VERSION (-ENOENT "no image ... in the depot"), and
 * write desired.json atomically (fsync'ed) with mode (_BK_LP_MODE_INVALID: system.conf's
 * [remediation] live-patch-mode). One "desired" event. *ret (optional) gets what was written.
 */
int bk_op_desired_set(struct bk_op_ctx *ctx, const char *name, const char *version,
		      enum bk_lp_mode mode, struct bk_op_desired *ret, struct bk_err *err);

/* Read desired.json: 0 and *ret, 1 when none is set, -ENOEXEC when corrupt. No lock. */
int bk_op_desired_get(struct bk_op_ctx *ctx, struct bk_op_desired *ret, struct bk_err *err);

/* Lock and remove desired.json (one event): 0, or 1 when none was set. */
int bk_op_desired_clear(struct bk_op_ctx *ctx, struct bk_err *err);

/* {"name", "version", "live_patch_mode", "set"}, or JSON null for NULL. */
struct json_object *bk_op_desired_to_json(const struct bk_op_desired *d);

/* ---- compliance scan --------------------------------------------------------------------- */

enum bk_compliance {
	BK_COMPLIANT,		     /* the image in service (booted or live-patched) is desired */
	BK_COMPLIANT_PENDING_REBOOT, /* the desired image is staged and activated, not booted */
	BK_NON_COMPLIANT,	     /* something else is in service (what differs is said) */
	BK_INCOMPATIBLE,	     /* the desired image cannot be applied (why is said) */
	BK_UNKNOWN,		     /* the state cannot be read (why is said) */
	_BK_COMPLIANCE_MAX,
	_BK_COMPLIANCE_INVALID = -EINVAL,
};

/* "compliant", "compliant-pending-reboot", "non-compliant", "incompatible", "unknown". */
const char *bk_compliance_to_string(enum bk_compliance c);

/*
 * The exit code of `bankctl scan` for a state (docs/remediation.md): 0 compliant, 20
 * non-compliant, 21 compliant-pending-reboot, 22 incompatible, 23 unknown.
 */
#define BK_EXIT_NON_COMPLIANT  20
#define BK_EXIT_PENDING_REBOOT 21 /* also remediate's "reboot required" */
#define BK_EXIT_INCOMPATIBLE   22
#define BK_EXIT_UNKNOWN	       23
#define BK_EXIT_PRECHECK_FAILED                                          \
	24 /* remediate refused: the path the policy needs is impossible \
	    */
int bk_compliance_exit_code(enum bk_compliance c);

/* What one bank holds, for the scan. */
struct bk_op_scan_bank {
	enum bk_bank_state state;
	bool known;	   /* content record read */
	char image[192];   /* "acme-os 1.1 (build 1)" or "" */
	char version[64];  /* its version */
	char build[64];	   /* its build, "-" when the record has none */
	bool desired;	   /* it holds the desired image: the depot bundle's manifest digest */
	bool booted, next; /* booted now; boots next */
};

/* Plain data (no pointers), so it can cross a pipe from a child. */
struct bk_op_scan_result {
	enum bk_compliance state;
	char reason[1024]; /* one line: why, what differs */
	bool has_desired;
	struct bk_op_desired desired;
	char in_service[192];	  /* "acme-os 1.0 (build 1)", "" when unknown */
	char in_service_how[128]; /* "booted from bank A", "live-patched (revision x, bank B)" */
	bool has_booted;
	enum bk_bank_id booted, next;
	struct bk_op_scan_bank banks[_BK_BANK_MAX];
	uint64_t start_ns, duration_ns;
};

/*
 * The compliance scan: compare the image in service (the booted bank's, or the live-patched
 * revision's) and the next boot with the desired image, then check that the desired image
 * could be applied (depot, compatible, security floor, downgrade, size of a bank). Reads only,
 * no lock; never fails (res->state BK_UNKNOWN says why). May mount a bank read-only in the
 * process's private namespace when the content record copy is missing.
 */
void bk_op_scan(struct bk_op_ctx *ctx, struct bk_op_scan_result *res);

/* {"state", "exit_code", "reason", "desired", "in_service", "booted", "next", "banks"}. */
struct json_object *bk_op_scan_to_json(const struct bk_op_scan_result *res);

/* ---- pre-check ---------------------------------------------------------------------------- */

enum bk_check_result { BK_CHECK_PASS, BK_CHECK_FAIL, BK_CHECK_SKIP };
const char *bk_check_result_to_string(enum bk_check_result r); /* "pass", "fail", "skip" */

#define BK_OP_CHECKS_MAX 24

struct bk_op_check {
	char name[32];	/* "signature", "workloads", ... */
	bool live_only; /* applies to the live path only (else to both) */
	enum bk_check_result result;
	char reason[256]; /* one line */
};

/* Plain data (no pointers), so it can cross a pipe from a child. */
struct bk_op_precheck_result {
	struct bk_op_check checks[BK_OP_CHECKS_MAX];
	size_t n_checks;
	bool live_possible, reboot_possible;
	char live_why[1024], reboot_why[1024]; /* every failed check of each path, "; " between */
	enum bk_lp_mode mode;		       /* the mode that applies */
	int chosen;			       /* 1 live, 0 reboot, -1 neither: refused */
	char chosen_why[256];
	bool staged_intact;	/* the desired image is staged, intact, in the target bank */
	enum bk_bank_id target; /* the bank a stage would write */
	uint64_t start_ns, duration_ns;
};

/*
 * Every check of both paths (docs/remediation.md, "Pre-check"), each pass, fail or skip with
 * a one-line reason, the verdict of each path and the path the mode (mode, or the desired
 * one's for _BK_LP_MODE_INVALID) picks. Reads only: mounts the alternate bank read-only in the
 * private namespace, runs the scan hooks with BOOTBANK_DRY_RUN=1. keyring: NULL for
 * system.conf's. Returns 0 (also when checks fail) or -errno when it could not run.
 */
int bk_op_precheck(struct bk_op_ctx *ctx, enum bk_lp_mode mode, const struct bk_keyring *keyring,
		   struct bk_op_precheck_result *res, struct bk_err *err);

/* {"checks": [{"name", "path", "result", "reason"}], "live", "reboot", "mode", "chosen"}. */
struct json_object *bk_op_precheck_to_json(const struct bk_op_precheck_result *res);

/* ---- remediate ---------------------------------------------------------------------------- */

struct bk_op_remediate_opts {
	enum bk_lp_mode mode; /* _BK_LP_MODE_INVALID: the desired state's */
	bool reboot;	      /* reboot after the reboot path (refused in a sandbox root) */
	const struct bk_keyring *keyring; /* NULL: system.conf's */
	bool no_check_time;
};

enum bk_remediate_outcome {
	BK_REMEDIATE_NOTHING,	      /* already compliant: nothing done, no event */
	BK_REMEDIATE_DONE,	      /* compliant now (the live path) */
	BK_REMEDIATE_REBOOT_REQUIRED, /* the reboot path: activated, a reboot brings it */
	BK_REMEDIATE_REBOOTING,	      /* --reboot: the reboot was asked for */
	BK_REMEDIATE_REFUSED,	      /* the pre-check (or the scan) stopped it */
	BK_REMEDIATE_FAILED,
};

struct bk_op_remediate_result {
	char task[17];
	struct json_object *steps; /* every step as an event object */
	enum bk_remediate_outcome outcome;
	const char *path; /* "live", "reboot", NULL */
	struct bk_op_scan_result before, after;
	bool has_after;
	struct bk_op_precheck_result pre;
	bool has_pre;
	struct bk_lp_report *rep; /* the live path's switch-over */
};

void bk_op_remediate_result_release(struct bk_op_remediate_result *res);

/* The exit code of an outcome (r the operation's return, err its error). */
int bk_op_remediate_exit_code(const struct bk_op_remediate_result *res, int r,
			      const struct bk_err *err);

/*
 * Scan; compliant: return (nothing recorded); else lock, pre-check, the path the mode picks
 * (live: bk_op_livepatch_apply() under this task; reboot: stage unless the image is staged
 * intact in the alternate bank, activate), scan again; o->reboot: sync and reboot. Every step
 * an event of one task and an observer step. -EMEDIUMTYPE incompatible, -ENODATA unknown,
 * -ECANCELED refused by the pre-check, -EPERM --reboot in a sandbox, others from the paths.
 */
int bk_op_remediate(struct bk_op_ctx *ctx, const struct bk_op_remediate_opts *o,
		    struct bk_op_remediate_result *res, struct bk_err *err);

/* {"task", "ok", "exit_code", "error", "outcome", "path", "before", "precheck", "after",
 * "steps", "switch"}. NULL on ENOMEM. */
struct json_object *bk_op_remediate_result_to_json(const struct bk_op_remediate_result *res,
						   int exit_code, const struct bk_err *err);

/*
 * Open the desired image's bundle in the depot (read-only) for `stage --desired` (vLCM's
 * "stage": the image goes into the alternate bank ahead of the maintenance window, and
 * remediate then only activates it). *ret_file: its depot file name (caller frees);
 * *ret_desired (optional): the desired state. -ENOENT when none is set or the depot lacks it.
 */
int bk_op_desired_open(struct bk_op_ctx *ctx, int *ret_fd, char **ret_file,
		       struct bk_op_desired *ret_desired, struct bk_err *err);

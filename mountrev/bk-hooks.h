/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live-patch hooks: the executables ROOT/etc/bootbank/livepatch.d/NN-name, run in name order
 * with posix_spawn (never through a shell), each with a timeout (its process group is killed
 * on expiry), stdin from /dev/null and stdout/stderr captured (bounded).
 *
 *   argv: PATH PHASE OLD_REV NEW_REV          (PHASE: scan, apply or revert)
 *   env:  PATH (a fixed safe list), BOOTBANK_PHASE, BOOTBANK_HOOK, BOOTBANK_OLD_REV,
 *         BOOTBANK_NEW_REV, BOOTBANK_OLD_VERSION, BOOTBANK_NEW_VERSION,
 *         BOOTBANK_NOFSR_WORKLOADS (the running --no-fsr workloads, space-separated),
 *         BOOTBANK_RESTART_WORKLOADS (the ones a scan hook claimed; apply and revert only),
 *         BOOTBANK_DRY_RUN=1 (only when a pre-check runs the scan hooks: nothing will follow)
 *
 * scan runs before a switch-over: exit 0 lets it go on; exit 10 or more vetoes it (the last
 * non-empty line of stderr is the reason); exit 1-9, a signal or a timeout is a failing hook,
 * which stops the live patch too. A scan hook claims a --no-fsr workload (it restarts it after
 * the switch, so it need not be frozen) with a stdout line "restart NAME"; every other stdout
 * line is a finding. apply runs after a switch-over, revert after a rollback;
 * they all run, and a failure there is reported but changes nothing.
 * The health phase runs the boot assessment's checks (etc/bootbank/health.d/required.d and
 * wanted.d, bankd/bk-op-assess.h) the same way: all run, in name order, each failure reported.
 * Entries that do not match NN-name ([0-9][0-9]-[A-Za-z0-9._-]+), are not regular files
 * (after following a symlink) or are not executable are skipped; a hook writable by group or
 * others refuses the whole run (-EPERM). Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bk-err.h"

#define BK_HOOKS_DIR	    "livepatch.d"
#define BK_HOOK_OUTPUT_MAX  (64 * 1024) /* per stream and hook; the rest is discarded */
#define BK_HOOK_VETO_STATUS 10
#define BK_HOOKS_MAX	    256

enum bk_hook_phase {
	BK_HOOK_SCAN,
	BK_HOOK_APPLY,
	BK_HOOK_REVERT,
	BK_HOOK_HEALTH, /* boot assessment (bankd/bk-op-assess.h): like apply, every check runs */
	_BK_HOOK_PHASE_MAX,
	_BK_HOOK_PHASE_INVALID = -EINVAL,
};

const char *bk_hook_phase_to_string(enum bk_hook_phase p);

struct bk_hook_env {
	const char *old_rev; /* NULL: "" */
	const char *new_rev;
	const char *old_version;
	const char *new_version;
	const char *nofsr_workloads;   /* BOOTBANK_NOFSR_WORKLOADS, "a b"; NULL: "" */
	const char *restart_workloads; /* BOOTBANK_RESTART_WORKLOADS; NULL: "" */
	bool dry_run;		       /* BOOTBANK_DRY_RUN=1: a pre-check, no switch-over follows */
};

struct bk_hook_result {
	char *name;	/* "10-check" */
	int status;	/* exit status, or -1 when killed by a signal / timed out */
	int signal;	/* the signal that ended it, 0 if none */
	bool timed_out; /* killed after the timeout */
	char *out;	/* captured stdout, NUL-terminated (never NULL) */
	char *errout;	/* captured stderr */
	bool out_truncated, err_truncated;
	uint64_t duration_ms;
	/* scan only: the workloads it claims ("restart NAME" lines of out), else none */
	char **restarts;
	size_t n_restarts;
};

struct bk_hook_run {
	enum bk_hook_phase phase;
	struct bk_hook_result *results;
	size_t n_results;
	/* scan only: the hook that stopped the live patch and why (NULL when none did) */
	const char *veto_hook;
	char *veto_reason;
};

struct bk_hook_run *bk_hook_run_free(struct bk_hook_run *run);
BK_DEFINE_CLEANUP(struct bk_hook_run *, bk_hook_run_free)

/*
 * Run the hooks of phase in dir_path (a missing directory means no hooks). *ret gets what
 * ran (also on failure, when anything ran; caller frees). Blocks up to timeout_ms per hook.
 * Returns 0 when every hook exited 0 (or there were none);
 *   -ECANCELED  scan: a hook vetoed ("scan hook '10-x' vetoed the live patch: REASON");
 *   -EPROTO     a hook failed (exit 1-9, signal, timeout: "hook '10-x' ..."); in scan this
 *               stops at once, in apply/revert the remaining hooks still run;
 *   -errno      the directory could not be read or a hook could not be started.
 */
int bk_hooks_run(const char *dir_path, enum bk_hook_phase phase, const struct bk_hook_env *env,
		 uint64_t timeout_ms, struct bk_hook_run **ret, struct bk_err *err);

/*
 * Whether some hook of run claimed workload name with a "restart NAME" line (scan only).
 */
bool bk_hook_run_restarts(const struct bk_hook_run *run, const char *name);

/*
 * The number of hooks in dir_path (what bk_hooks_run() would run: valid names, executable
 * regular files); 0 when the directory does not exist. -EPERM (a hook writable by group or
 * others), -E2BIG, -errno. Reads only.
 */
int bk_hooks_count(const char *dir_path, struct bk_err *err);

#define BK_HOOK_RESTARTS_MAX 1024 /* "restart NAME" lines per hook */

/*
 * Parse a hook's stdout for claims: each line "restart NAME" (the word, blanks, a valid
 * workload name, optional trailing blanks or CR) claims NAME. Other lines, and "restart"
 * lines whose name is not a valid workload name, are findings and ignored here. Duplicates
 * are dropped. *ret gets the malloc'ed names (NULL when none; free each, then the array),
 * *ret_n their number. Returns 0, -ENOMEM, or -E2BIG (more than BK_HOOK_RESTARTS_MAX).
 */
int bk_hook_parse_restarts(const char *out, char ***ret, size_t *ret_n);

/* The last non-empty line of s (without its newline), malloc'ed; "" when none. */
char *bk_hook_last_line(const char *s);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The live-patch protocol over the mechanism of bk-switch: pre-check of the registered
 * workloads, partial maintenance mode, scan/apply/revert hooks, the switch-over with rollback,
 * and the recovery of an interrupted live patch. docs/livepatch.md gives every step and what a
 * crash at each one leaves. The caller holds the bootbank lock for every call. Needs root.
 * Never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bk-cgroup.h"
#include "bk-err.h"
#include "bk-hooks.h"
#include "bk-maint.h"
#include "bk-switch.h"
#include "bk-workload.h"

struct bk_lp_report;

/* One step of a live patch, as it ends (for the caller's task log and events). */
struct bk_lp_step {
	const char *step;		 /* "maintenance mode", "scan hooks", "switch-over", ... */
	int r;				 /* 0 ok, <0 failed */
	uint64_t start_ns;		 /* CLOCK_REALTIME when it started */
	uint64_t duration_ns;		 /* how long it took */
	const char *message;		 /* one line for people */
	const struct bk_hook_run *hooks; /* hook steps: what each hook said (may be NULL) */
	const struct bk_lp_report *rep;	 /* switch-over: per-workload frozen times */
};

struct bk_livepatch_ctx {
	int state_dfd;		    /* ROOT/var/lib/bootbank */
	int run_dfd;		    /* ROOT/run/bootbank */
	const char *run_path;	    /* the same as a path */
	const char *hooks_dir;	    /* ROOT/etc/bootbank/livepatch.d */
	uint64_t hook_timeout_ms;   /* per hook */
	uint64_t freeze_timeout_ms; /* per workload freeze; the watchdog's bound */
	uint64_t freeze_batch;	    /* workloads freezing at once (0: twice the online CPUs) */
	unsigned view_flags;	    /* enum bk_view_flags */
	bool rollback;		    /* a live-patch rollback: revert hooks run instead of apply */
	/*
	 * NULL: bk_livepatch_switch() sets a new flag (operation "livepatch"). Else the flag the
	 * caller already set with this record (livepatch apply sets it before it stages the
	 * alternate bank); the switch keeps its operation and bank fields and moves its phase.
	 */
	const struct bk_maint *maint;
	/*
	 * Optional. Called with the flag still set once the outcome of the live patch is known:
	 * committed (the views are on `to`) or not (nothing of it is in service). The caller
	 * keeps or undoes what it did beside the revisions (the boot choice, from m->bank). It
	 * runs again after a crash (bk_livepatch_recover()), so it must be idempotent; a failure
	 * keeps the flag for the next run.
	 */
	int (*settle)(void *userdata, const struct bk_maint *m, bool committed, struct bk_err *err);
	/* Optional: called at the end of each step (never in the frozen window). */
	void (*on_step)(void *userdata, const struct bk_lp_step *s);
	/* Optional: called when a step starts (before any workload is frozen). */
	void (*on_step_begin)(void *userdata, const char *step);
	void *userdata;
};

/* A registered workload, resolved against the running system. */
struct bk_lp_workload {
	struct bk_workload w;
	char *cgroup;	      /* resolved cgroup path (from w.cgroup or w.unit), NULL if none */
	struct bk_cgroup *cg; /* opened when running */
	int nsfd;	      /* its mount namespace when running, else -EBADF */
	pid_t pid;	      /* the process whose namespace it is */
	bool running;
};

struct bk_lp_workload *bk_lp_workloads_free(struct bk_lp_workload *ws, size_t n);

/*
 * Load every registered workload (STATE/workloads) and resolve it: its cgroup (a unit through
 * systemd or the cgroup tree), opened, and the mount namespace of its processes. A workload
 * whose cgroup does not exist or has no process is returned with running=false. Errors other
 * than "not running" (several namespaces, permissions) fail the call naming the workload.
 */
int bk_lp_workloads_open(int state_dfd, struct bk_lp_workload **ret, size_t *ret_n,
			 struct bk_err *err);

struct bk_lp_report_item {
	char *name;
	bool running;
	bool skipped; /* its view already showed the target */
	bool switched;
	bool restarted; /* --no-fsr, claimed by a scan hook: swapped unfrozen, the hook restarts it
			 */
	char mode;	/* enum bk_view_mode, 0 when nothing was done */
	uint64_t frozen_ns;
	uint64_t rollback_frozen_ns;
};

struct bk_lp_report {
	char *from, *to;
	struct bk_lp_report_item *items;
	size_t n_items;
	uint64_t total_ns;	  /* the switch-over itself (pointer + every workload) */
	bool rolled_back;	  /* the switch failed and was undone */
	struct bk_hook_run *scan; /* what the hooks said (NULL when not run) */
	struct bk_hook_run *apply;
	struct bk_hook_run *revert;
	char *hook_warning; /* an apply/revert hook failed: its message */
};

struct bk_lp_report *bk_lp_report_free(struct bk_lp_report *r);
BK_DEFINE_CLEANUP(struct bk_lp_report *, bk_lp_report_free)

/*
 * The pre-check of the live path, before anything changes: every registered workload resolves,
 * and a running --no-fsr workload refuses it (-EBUSY "workload 'x' cannot be suspended ...")
 * when no hook is installed that could claim it (the scan hooks decide otherwise, in
 * bk_livepatch_switch()). *ret_running (optional) gets the number of running workloads that
 * will be frozen, *ret_nofsr (optional) that of running --no-fsr ones. Reads only.
 */
int bk_livepatch_precheck(const struct bk_livepatch_ctx *c, size_t *ret_running, size_t *ret_nofsr,
			  struct bk_err *err);

/* What the dry run of a live patch found (bk_livepatch_dry_run()). */
struct bk_lp_dry_run {
	size_t n_running;	  /* running workloads that would be frozen */
	size_t n_nofsr;		  /* running --no-fsr ones (never frozen: a hook restarts them) */
	char *nofsr;		  /* their names, space-separated (BOOTBANK_NOFSR_WORKLOADS) */
	int n_hooks;		  /* hooks installed (bk_hooks_count()), or its -errno */
	bool scanned;		  /* the scan hooks ran */
	int scan_r;		  /* 0, or why the hooks stop the live patch (scan_err) */
	struct bk_err scan_err;	  /* -ECANCELED a veto, -EPROTO a failing hook, -errno */
	struct bk_hook_run *scan; /* what they said (NULL when they did not run) */
	int workloads_r;	  /* 0, or why the workloads block it (workloads_err) */
	struct bk_err workloads_err;
};

void bk_lp_dry_run_release(struct bk_lp_dry_run *d);

/*
 * The dry run of a live patch to revision `to` (version to_version; not mounted yet) from the
 * revision in service, for a pre-check (bankctl precheck, remediate): what
 * bk_livepatch_switch() would decide before it moves anything, with nothing set or moved:
 *   - every registered workload resolves (else workloads_r, and nothing more is asked);
 *   - each running workload's view exists in its mount namespace, a directory
 *     (bk_view_check(): the switch-over's view helper would fail there);
 *   - the scan hooks, when any is installed and `to` is given, run with BOOTBANK_DRY_RUN=1 and
 *     otherwise exactly the inputs bk_livepatch_switch() gives them: the revision in service
 *     and its version, `to` and to_version, BOOTBANK_NOFSR_WORKLOADS (scan_r);
 *   - every running --no-fsr workload is claimed by a scan hook's "restart NAME" line; with no
 *     hook installed none can be (workloads_r names every one that is not).
 * d->workloads_err lists every reason the workloads block the live path, "; " between.
 * Returns 0 (the findings in *d: bk_lp_dry_run_release() it) or -ENOMEM.
 */
int bk_livepatch_dry_run(const struct bk_livepatch_ctx *c, const char *to, const char *to_version,
			 struct bk_lp_dry_run *d, struct bk_err *err);

/*
 * Live patch to revision `to` (mounted at RUN/rev/<to>, with metadata in STATE/revisions):
 *   1. pre-check: `to` is mounted; every registered workload resolves; a running --no-fsr
 *      workload with no hook installed blocks the live path (-EBUSY, "workload 'x' cannot be
 *      suspended ...");
 *   2. maintenance flag (phase preparing), scan hooks (a veto: -ECANCELED, flag cleared);
 *      every running --no-fsr workload must be claimed by a scan hook's "restart NAME" line,
 *      else -EBUSY ("... and no hook restarts it"), flag cleared as for a veto;
 *   3. flag phase switching; the claimed workloads' views are swapped without a freeze, then
 *      bk_switch_run() (pointer, then freeze/swap/thaw of the others, all at once); on failure
 *      everything is switched back, revert hooks run, the flag is cleared;
 *   4. flag phase committed; STATE/revisions/current records `to`; apply hooks (revert hooks
 *      when c->rollback), with BOOTBANK_RESTART_WORKLOADS naming the claimed workloads;
 *      c->settle(committed); flag cleared.
 * A veto or a failed switch calls c->settle(not committed) before the flag is cleared.
 * A set maintenance flag on entry is -EBUSY (call bk_livepatch_recover() first), unless
 * c->maint says the caller set it.
 * *ret (optional) gets the report, also on failure when anything was done.
 */
int bk_livepatch_switch(const struct bk_livepatch_ctx *c, const char *to, struct bk_lp_report **ret,
			struct bk_err *err);

/*
 * Finish or revert an interrupted live patch (a maintenance flag left by a dead process; the
 * caller holds the lock, so nobody else is working on it): flag from an earlier boot: just
 * cleared; phase staging or preparing: c->settle(not committed), cleared; phase switching:
 * everything goes back to `from`, revert hooks run, c->settle(not committed); phase committed:
 * everything goes to `to`, c->settle(committed). Every workload is thawed first. The flag is
 * cleared only when every running workload shows the chosen revision and settle succeeded.
 * Temp symlinks of an interrupted pointer replace are removed in any case.
 * Returns 0 when there was nothing to do, 1 when it recovered (*ret_target, optional, the
 * revision now in service, malloc'ed), <0 on error (flag kept for the next run).
 */
int bk_livepatch_recover(const struct bk_livepatch_ctx *c, char **ret_target, struct bk_err *err);

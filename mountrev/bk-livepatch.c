/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bk-fs.h"
#include "bk-livepatch.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-rev.h"

struct bk_lp_workload *bk_lp_workloads_free(struct bk_lp_workload *ws, size_t n)
{
	for (size_t i = 0; ws && i < n; i++) {
		bk_workload_release(&ws[i].w);
		free(ws[i].cgroup);
		bk_cgroup_free(ws[i].cg);
		closep(&ws[i].nsfd);
	}
	free(ws);
	return NULL;
}

static int resolve_one(const char *cg_root, struct bk_lp_workload *lw, struct bk_err *err)
{
	int r;

	if (lw->w.unit) {
		r = bk_cgroup_resolve_unit(cg_root, lw->w.unit, &lw->cgroup, err);
		if (r == -ENOENT) {
			bk_err_clear(err);
			return 0; /* the unit is not running */
		}
		if (r < 0)
			return r;
	} else {
		lw->cgroup = strdup(lw->w.cgroup);
		if (!lw->cgroup)
			return bk_err_set(err, -ENOMEM, "out of memory");
	}
	r = bk_cgroup_open(cg_root, lw->cgroup, &lw->cg, err);
	if (r == -ENOENT) {
		bk_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	r = bk_cgroup_open_mntns(lw->cg, &lw->nsfd, &lw->pid, err);
	if (r == -ESRCH) {
		bk_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	lw->running = true;
	return 0;
}

int bk_lp_workloads_open(int state_dfd, struct bk_lp_workload **ret, size_t *ret_n,
			 struct bk_err *err)
{
	_cleanup_close_ int wdfd = -EBADF;
	_cleanup_free_ char *cg_root = NULL;
	struct bk_workload *ws = NULL;
	struct bk_lp_workload *lws;
	size_t n = 0;
	int r;

	wdfd = openat(state_dfd, BK_WORKLOADS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (wdfd < 0 && errno != ENOENT)
		return bk_err_set(err, -errno, "cannot open the workload directory: %m");
	if (wdfd >= 0) {
		r = bk_workload_list(wdfd, &ws, &n, err);
		if (r < 0)
			return r;
	}
	lws = calloc(n ? n : 1, sizeof(*lws));
	if (!lws) {
		bk_workloads_free(ws, n);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		lws[i].w = ws[i];
		lws[i].nsfd = -EBADF;
	}
	free(ws);
	if (n > 0) {
		r = bk_cgroup_find_root(&cg_root, err);
		if (r < 0) {
			bk_lp_workloads_free(lws, n);
			return r;
		}
	}
	for (size_t i = 0; i < n; i++) {
		r = resolve_one(cg_root, &lws[i], err);
		if (r < 0) {
			(void) bk_err_prefix(err, "workload '%s'", lws[i].w.name);
			bk_lp_workloads_free(lws, n);
			return r;
		}
	}
	*ret = lws;
	*ret_n = n;
	return 0;
}

struct bk_lp_report *bk_lp_report_free(struct bk_lp_report *r)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n_items; i++)
		free(r->items[i].name);
	free(r->items);
	free(r->from);
	free(r->to);
	bk_hook_run_free(r->scan);
	bk_hook_run_free(r->apply);
	bk_hook_run_free(r->revert);
	free(r->hook_warning);
	free(r);
	return NULL;
}

static void version_of(int state_dfd, const char *id, char **ret)
{
	_cleanup_close_ int dfd = -EBADF;
	struct bk_rev rev = { 0 };

	*ret = NULL;
	if (!id)
		return;
	dfd = openat(state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || bk_rev_load(dfd, id, &rev, NULL) < 0)
		return;
	*ret = TAKE_PTR(rev.version);
	bk_rev_release(&rev);
}

static int record_current(int state_dfd, const char *id, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char buf[BK_REV_ID_MAX + 2];
	int r;

	r = bk_mkdir_p_at(state_dfd, BK_REVISIONS_DIR, 0755, &dfd, err);
	if (r < 0)
		return r;
	(void) snprintf(buf, sizeof(buf), "%s\n", id);
	return bk_write_atomic_at(dfd, BK_REV_CURRENT_REC, buf, strlen(buf), 0644, 0, err);
}

static int set_phase(const struct bk_livepatch_ctx *c, struct bk_maint *m,
		     enum bk_maint_phase phase, struct bk_err *err)
{
	m->phase = phase;
	return bk_maint_set(c->state_dfd, m, err);
}

/* Run non-vetoing hooks; a failure is kept as a warning in the report. */
static void run_hooks_warn(const struct bk_livepatch_ctx *c, enum bk_hook_phase phase,
			   const struct bk_hook_env *env, struct bk_hook_run **slot, char **warning)
{
	struct bk_err e = { 0 };

	if (bk_hooks_run(c->hooks_dir, phase, env, c->hook_timeout_ms, slot, &e) < 0 && !*warning)
		*warning = strdup(e.msg);
}

static int fill_items(struct bk_lp_report *rep, const struct bk_lp_workload *lws, size_t n)
{
	rep->items = calloc(n ? n : 1, sizeof(*rep->items));
	if (!rep->items)
		return -ENOMEM;
	rep->n_items = n;
	for (size_t i = 0; i < n; i++) {
		rep->items[i].name = strdup(lws[i].w.name);
		rep->items[i].running = lws[i].running;
		if (!rep->items[i].name)
			return -ENOMEM;
	}
	return 0;
}

/* A running --no-fsr workload: never frozen; the live path needs a hook that restarts it. */
static bool is_unfrozen(const struct bk_lp_workload *lw)
{
	return lw->running && lw->w.no_fsr;
}

/*
 * Build the switch items of the running workloads that are frozen (unfrozen false) or of the
 * running --no-fsr ones (unfrozen true); *ret_map[k] is the index in lws.
 */
static int make_items(struct bk_lp_workload *lws, size_t n, bool unfrozen,
		      struct bk_switch_item **ret, size_t **ret_map, size_t *ret_k)
{
	struct bk_switch_item *items = calloc(n ? n : 1, sizeof(*items));
	size_t *map = calloc(n ? n : 1, sizeof(*map));
	size_t k = 0;

	if (!items || !map) {
		free(items);
		free(map);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (!lws[i].running || is_unfrozen(&lws[i]) != unfrozen)
			continue;
		items[k] = (struct bk_switch_item){
			.name = lws[i].w.name,
			.cg = lws[i].cg,
			.mntns_fd = lws[i].nsfd,
			.view = lws[i].w.view,
		};
		map[k++] = i;
	}
	*ret = items;
	*ret_map = map;
	*ret_k = k;
	return 0;
}

/* The running --no-fsr workloads, space-separated ("" when none); NULL: out of memory. */
static char *nofsr_names(const struct bk_lp_workload *lws, size_t n)
{
	size_t len = 1, pos = 0;
	char *s;

	for (size_t i = 0; i < n; i++)
		if (is_unfrozen(&lws[i]))
			len += strlen(lws[i].w.name) + 1;
	s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		if (is_unfrozen(&lws[i]))
			pos += (size_t) snprintf(s + pos, len - pos, "%s%s", pos ? " " : "",
						 lws[i].w.name);
	return s;
}

/*
 * Swap the views of workloads that are never frozen (running --no-fsr ones that a scan hook
 * restarts): a view helper each, all made ready before the first swap (so a failure there
 * changes nothing), then each view swapped in turn, with the workload running. Views that
 * already show `to` are skipped. undo: only the items marked switched are swapped (to is then
 * the revision they came from), and marked not switched once back. best_effort: go on after a
 * failing workload. Returns 0 or the first -errno (the workload named).
 */
static int swap_unfrozen(int run_dfd, const char *to, unsigned flags, bool undo, bool best_effort,
			 struct bk_switch_item *items, size_t n, struct bk_err *err)
{
	struct bk_view_swap **swaps = NULL;
	struct bk_err ignored = { 0 };
	int r = 0, first = 0;
	dev_t to_dev;
	size_t i;

	if (n == 0)
		return 0;
	r = bk_rev_dev(run_dfd, to, &to_dev, err);
	if (r < 0)
		return r;
	swaps = calloc(n, sizeof(*swaps));
	if (!swaps)
		return bk_err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if (undo && !items[i].switched)
			continue;
		if (!undo) {
			items[i].switched = items[i].skipped = false;
			items[i].frozen_ns = items[i].rollback_frozen_ns = 0;
		}
		r = bk_view_swap_prepare(run_dfd, to, items[i].mntns_fd, items[i].view, flags,
					 &swaps[i], first < 0 ? &ignored : err);
		if (r < 0) {
			if (first == 0)
				(void) bk_err_prefix(err, "workload '%s'", items[i].name);
			first = first < 0 ? first : r;
			if (best_effort || undo)
				continue;
			goto out;
		}
		if (!undo && bk_view_swap_old_dev(swaps[i]) == to_dev &&
		    bk_view_swap_old_is_mount(swaps[i])) {
			items[i].skipped = true;
			swaps[i] = bk_view_swap_free(swaps[i]);
			continue;
		}
		/* As bk_switch_run(): a mount inside the view would vanish (issue 16 item 7). */
		if (!undo && !best_effort) {
			const char *sub;
			unsigned n_sub = bk_view_swap_submounts(swaps[i], &sub);

			if (n_sub > 0) {
				first = bk_err_set(
					err, -EBUSY,
					"workload '%s': %u %s beneath its view '%s' would "
					"vanish with the old revision: %s; unmount %s first",
					items[i].name, n_sub, n_sub == 1 ? "mount" : "mounts",
					items[i].view, sub[0] ? sub : "(too long to list)",
					n_sub == 1 ? "it" : "them");
				goto out;
			}
		}
	}
	for (i = 0; i < n; i++) {
		enum bk_view_mode mode = 0;

		if (!swaps[i])
			continue;
		r = bk_view_swap_commit(swaps[i], &mode, first < 0 ? &ignored : err);
		swaps[i] = bk_view_swap_free(swaps[i]);
		if (r < 0) {
			if (first == 0)
				(void) bk_err_prefix(err, "workload '%s'", items[i].name);
			first = first < 0 ? first : r;
			if (best_effort || undo)
				continue;
			goto out;
		}
		items[i].switched = !undo;
		if (!undo)
			items[i].mode = mode;
		BK_DBG(REV, "workload '%s' %s unfrozen (%c)", items[i].name,
		       undo ? "switched back" : "switched", (char) mode);
	}
out:
	for (i = 0; i < n; i++)
		bk_view_swap_free(swaps[i]);
	free(swaps);
	return first;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* The clocks at the start of a step. */
struct clock {
	uint64_t real, mono;
};

static struct clock clock_now(void)
{
	return (struct clock){ realtime_ns(), bk_now_ns() };
}

/* A step starts now: its start time, and the observer told. */
static struct clock begin_step(const struct bk_livepatch_ctx *c, const char *name)
{
	if (c->on_step_begin)
		c->on_step_begin(c->userdata, name);
	return clock_now();
}

static void report_step(const struct bk_livepatch_ctx *c, const char *name, int r, struct clock t0,
			const char *msg, const struct bk_hook_run *hooks,
			const struct bk_lp_report *rep)
{
	struct bk_lp_step st = {
		.step = name,
		.r = r,
		.start_ns = t0.real,
		.duration_ns = bk_now_ns() - t0.mono,
		.message = msg,
		.hooks = hooks,
		.rep = rep,
	};

	if (c->on_step)
		c->on_step(c->userdata, &st);
}

static int settle(const struct bk_livepatch_ctx *c, const struct bk_maint *m, bool committed,
		  struct bk_err *err)
{
	if (!c->settle)
		return 0;
	return c->settle(c->userdata, m, committed, err);
}

/* Settle (not committed) and clear the flag; on a settle failure the flag stays. */
static void abandon(const struct bk_livepatch_ctx *c, const struct bk_maint *m)
{
	struct clock t0 = clock_now();
	struct bk_err e = { 0 };
	int r;

	r = settle(c, m, false, &e);
	if (r >= 0)
		r = bk_maint_clear(c->state_dfd, &e);
	report_step(
		c, "maintenance mode", r, t0,
		r < 0 ? e.msg :
			"exiting partial maintenance mode: nothing of this live patch is in service",
		NULL, NULL);
}

static int count_running(const struct bk_lp_workload *lws, size_t n)
{
	int k = 0;

	for (size_t i = 0; i < n; i++)
		k += lws[i].running;
	return k;
}

/* Append to buf (len bytes, *pos used so far), cut at its end. */
_printf_(4, 5) static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (*pos + 1 >= len)
		return;
	va_start(ap, fmt);
	k = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (k > 0)
		*pos = (size_t) k < len - *pos ? *pos + (size_t) k : len - 1;
}

/*
 * The running --no-fsr workloads that block the live path: all of them when none_installed
 * (no hook at all could claim one), else those no scan hook of scan claimed. -EBUSY naming
 * every one of them, 0 when there is none.
 */
static int nofsr_blocked(const struct bk_lp_workload *lws, size_t n, const struct bk_hook_run *scan,
			 bool none_installed, struct bk_err *err)
{
	char names[400] = "";
	size_t k = 0, pos = 0;

	for (size_t i = 0; i < n; i++) {
		if (!is_unfrozen(&lws[i]) ||
		    (!none_installed && bk_hook_run_restarts(scan, lws[i].w.name)))
			continue;
		appendf(names, sizeof(names), &pos, "%s'%s'", k ? ", " : "", lws[i].w.name);
		k++;
	}
	if (k == 0)
		return 0;
	return bk_err_set(err, -EBUSY,
			  "%s %s cannot be suspended (--no-fsr) and %s %s: the live path is "
			  "blocked; stop %s or use the reboot path",
			  k == 1 ? "workload" : "workloads", names,
			  none_installed ? "no hook is installed to restart" : "no hook restarts",
			  k == 1 ? "it" : "them", k == 1 ? "it" : "them");
}

static int check_no_fsr(const struct bk_lp_workload *lws, size_t n, struct bk_err *err)
{
	return nofsr_blocked(lws, n, NULL, true, err);
}

/*
 * Early refusal: a running --no-fsr workload and no hook at all in the hook directory
 * (nothing could claim it), so the common case fails before anything is staged or set.
 */
static int check_no_fsr_early(const struct bk_livepatch_ctx *c, const struct bk_lp_workload *lws,
			      size_t n, struct bk_err *err)
{
	int r;

	for (size_t i = 0; i < n; i++) {
		if (!is_unfrozen(&lws[i]))
			continue;
		r = bk_hooks_count(c->hooks_dir, err);
		if (r != 0)
			return r < 0 ? r : 0;
		return check_no_fsr(lws, n, err);
	}
	return 0;
}

/* After the scan: every running --no-fsr workload was claimed by some scan hook. */
static int check_claims(const struct bk_lp_workload *lws, size_t n, const struct bk_hook_run *scan,
			struct bk_err *err)
{
	return nofsr_blocked(lws, n, scan, false, err);
}

/*
 * What the scan hooks of a live patch from `from` to `to` are given, in bk_livepatch_switch()
 * and in its dry run alike: the revisions, their versions, the running --no-fsr workloads.
 */
static struct bk_hook_env scan_env(const char *from, const char *to, const char *from_version,
				   const char *to_version, const char *nofsr)
{
	return (struct bk_hook_env){
		.old_rev = from,
		.new_rev = to,
		.old_version = from_version,
		.new_version = to_version,
		.nofsr_workloads = nofsr,
	};
}

int bk_livepatch_precheck(const struct bk_livepatch_ctx *c, size_t *ret_running, size_t *ret_nofsr,
			  struct bk_err *err)
{
	struct bk_lp_workload *lws = NULL;
	size_t n = 0, k = 0;
	int r;

	r = bk_lp_workloads_open(c->state_dfd, &lws, &n, err);
	if (r < 0)
		return r;
	r = check_no_fsr_early(c, lws, n, err);
	for (size_t i = 0; i < n; i++)
		k += is_unfrozen(&lws[i]);
	if (r >= 0 && ret_running)
		*ret_running = (size_t) count_running(lws, n) - k;
	if (r >= 0 && ret_nofsr)
		*ret_nofsr = k;
	bk_lp_workloads_free(lws, n);
	return r;
}

void bk_lp_dry_run_release(struct bk_lp_dry_run *d)
{
	if (!d)
		return;
	d->scan = bk_hook_run_free(d->scan);
	free(d->nofsr);
	d->nofsr = NULL;
}

int bk_livepatch_dry_run(const struct bk_livepatch_ctx *c, const char *to, const char *to_version,
			 struct bk_lp_dry_run *d, struct bk_err *err)
{
	_cleanup_free_ char *from = NULL, *from_version = NULL;
	struct bk_lp_workload *lws = NULL;
	struct bk_hook_env env;
	char views[sizeof(d->workloads_err.msg)] = "";
	size_t n = 0, pos = 0;
	struct bk_err e = { 0 };
	int r, first = 0;

	*d = (struct bk_lp_dry_run){ 0 };
	d->n_hooks = bk_hooks_count(c->hooks_dir, &d->scan_err);
	if (d->n_hooks < 0)
		d->scan_r = d->n_hooks;
	r = bk_lp_workloads_open(c->state_dfd, &lws, &n, &d->workloads_err);
	if (r < 0) {
		d->workloads_r = r;
		return 0; /* the live patch would stop here: nothing to ask the hooks */
	}
	d->nofsr = nofsr_names(lws, n);
	if (!d->nofsr) {
		bk_lp_workloads_free(lws, n);
		return bk_err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		if (is_unfrozen(&lws[i]))
			d->n_nofsr++;
		else if (lws[i].running)
			d->n_running++;
	}

	/* Each running workload's view, as the view helper of the switch-over will look. */
	for (size_t i = 0; i < n; i++) {
		if (!lws[i].running)
			continue;
		bk_err_clear(&e);
		r = bk_view_check(lws[i].nsfd, lws[i].w.view, &e);
		if (r < 0) {
			appendf(views, sizeof(views), &pos, "%sworkload '%s': %s", pos ? "; " : "",
				lws[i].w.name, e.msg);
			first = first < 0 ? first : r;
		}
	}

	/* The scan hooks, given exactly what bk_livepatch_switch() gives them, as a dry run. */
	if (d->n_hooks > 0 && to) {
		if (bk_rev_pointer_get(c->run_dfd, BK_REV_CURRENT, &from, NULL) < 0)
			from = NULL;
		version_of(c->state_dfd, from, &from_version);
		env = scan_env(from, to, from_version, to_version, d->nofsr);
		env.dry_run = true;
		d->scan_r = bk_hooks_run(c->hooks_dir, BK_HOOK_SCAN, &env, c->hook_timeout_ms,
					 &d->scan, &d->scan_err);
		d->scanned = true;
	}

	/*
	 * Every running --no-fsr workload claimed: with no hook installed none can be; with the
	 * scan hooks asked, by their "restart NAME" lines (those that ran, when one stopped the
	 * live patch). With hooks that were not asked (no live patch to ask about) it stays open.
	 */
	bk_err_clear(&e);
	r = 0;
	if (d->n_hooks == 0)
		r = check_no_fsr(lws, n, &e);
	else if (d->scanned)
		r = check_claims(lws, n, d->scan, &e);
	if (r < 0 && d->scanned && d->scan_r < 0)
		(void) bk_err_suffix(
			&e, " (only the scan hooks before the one that stopped were asked)");
	if (r < 0 || first < 0) {
		char *msg = d->workloads_err.msg;

		pos = 0;
		msg[0] = '\0';
		if (r < 0)
			appendf(msg, sizeof(d->workloads_err.msg), &pos, "%s", e.msg);
		if (first < 0)
			appendf(msg, sizeof(d->workloads_err.msg), &pos, "%s%s", r < 0 ? "; " : "",
				views);
		d->workloads_r = r < 0 ? r : first;
		d->workloads_err.code = d->workloads_r;
	}
	bk_lp_workloads_free(lws, n);
	return 0;
}

static void hooks_message(const char *phase, const struct bk_hook_run *run, int r,
			  const struct bk_err *err, const char *restart, char *buf, size_t len)
{
	size_t n = run ? run->n_results : 0;

	if (r < 0)
		(void) snprintf(buf, len, "%s", err->msg);
	else if (n == 0)
		(void) snprintf(buf, len, "no %s hook", phase);
	else
		(void) snprintf(buf, len, "%zu %s %s%s%s%s", n, phase, n == 1 ? "hook" : "hooks",
				restart && restart[0] ? "; BOOTBANK_RESTART_WORKLOADS='" : "",
				restart && restart[0] ? restart : "",
				restart && restart[0] ? "'" : "");
}

/* Copy the results of the switch items (items[j] is rep->items[map[j]]); the longest freeze. */
static uint64_t fill_results(struct bk_lp_report *rep, const struct bk_switch_item *items,
			     const size_t *map, size_t k, bool unfrozen, int r)
{
	uint64_t max_frozen = 0;

	for (size_t j = 0; j < k; j++) {
		struct bk_lp_report_item *ri = &rep->items[map[j]];

		ri->restarted = unfrozen;
		ri->skipped = items[j].skipped;
		ri->switched = items[j].switched || (r == 0 && !items[j].skipped);
		ri->mode = items[j].skipped ? 0 : (char) items[j].mode;
		ri->frozen_ns = items[j].frozen_ns;
		ri->rollback_frozen_ns = items[j].rollback_frozen_ns;
		if (items[j].frozen_ns > max_frozen)
			max_frozen = items[j].frozen_ns;
	}
	return max_frozen;
}

int bk_livepatch_switch(const struct bk_livepatch_ctx *c, const char *to, struct bk_lp_report **ret,
			struct bk_err *err)
{
	_cleanup_(bk_lp_report_freep) struct bk_lp_report *rep = NULL;
	_cleanup_free_ struct bk_switch_item *items = NULL, *uitems = NULL;
	_cleanup_free_ char *from_version = NULL, *to_version = NULL, *nofsr = NULL;
	_cleanup_free_ size_t *map = NULL, *umap = NULL;
	struct bk_lp_workload *lws = NULL;
	struct bk_maint m = { 0 };
	struct bk_hook_env env;
	struct bk_switch_opts o;
	char boot_id[37], reason[256], msg[600], operation[] = "livepatch";
	size_t n = 0, k = 0, uk = 0;
	struct clock t0;
	uint64_t max_frozen = 0, u_max;
	bool fresh;
	dev_t dev;
	int r;

	rep = calloc(1, sizeof(*rep));
	if (!rep)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (!c->maint && bk_maint_is_set(c->state_dfd))
		return bk_maint_check(c->state_dfd, "live patch", err);

	/* 1. Pre-check: nothing changes before every workload is known to be switchable. */
	r = bk_rev_dev(c->run_dfd, to, &dev, err);
	if (r < 0)
		return r;
	r = bk_rev_pointer_get(c->run_dfd, BK_REV_CURRENT, &rep->from, err);
	if (r < 0 && r != -ENOENT)
		return r;
	bk_err_clear(err);
	rep->to = strdup(to);
	if (!rep->to)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (rep->from) {
		r = bk_rev_dev(c->run_dfd, rep->from, &dev, err);
		if (r < 0)
			return bk_err_prefix(err, "current revision");
	}
	version_of(c->state_dfd, rep->from, &from_version);
	version_of(c->state_dfd, to, &to_version);

	r = bk_lp_workloads_open(c->state_dfd, &lws, &n, err);
	if (r < 0)
		return r;
	r = check_no_fsr_early(c, lws, n, err);
	if (r < 0)
		goto out;
	nofsr = nofsr_names(lws, n);
	r = nofsr ? fill_items(rep, lws, n) : -ENOMEM;
	if (r == 0)
		r = make_items(lws, n, false, &items, &map, &k);
	if (r == 0)
		r = make_items(lws, n, true, &uitems, &umap, &uk);
	if (r < 0) {
		r = bk_err_set(err, r, "out of memory");
		goto out;
	}

	/* 2. Maintenance mode, then the scan hooks. */
	(void) snprintf(reason, sizeof(reason), "live patch from '%s' to '%s'",
			rep->from ? rep->from : "(none)", to);
	if (c->maint) {
		m = *c->maint;
	} else {
		m = (struct bk_maint){
			.operation = operation,
			.reason = reason,
			.started = (uint64_t) time(NULL),
			.pid = (uint64_t) getpid(),
			.boot_id = bk_maint_boot_id(boot_id) == 0 ? boot_id : NULL,
		};
	}
	m.from = rep->from;
	m.to = rep->to;
	t0 = begin_step(c, "maintenance mode");
	fresh = !bk_maint_is_set(c->state_dfd);
	r = set_phase(c, &m, BK_MAINT_PHASE_PREPARING, err);
	if (fresh || r < 0)
		report_step(c, "maintenance mode", r, t0, r < 0 ? err->msg : m.reason, NULL, NULL);
	if (r < 0) {
		if (c->maint)
			abandon(c, &m);
		goto out;
	}
	env = scan_env(rep->from, to, from_version, to_version, nofsr);
	t0 = begin_step(c, "scan hooks");
	r = bk_hooks_run(c->hooks_dir, BK_HOOK_SCAN, &env, c->hook_timeout_ms, &rep->scan, err);
	/* Every --no-fsr workload must be restarted by a hook, or the live path is vetoed. */
	if (r >= 0)
		r = check_claims(lws, n, rep->scan, err);
	hooks_message("scan", rep->scan, r, err, NULL, msg, sizeof(msg));
	report_step(c, "scan hooks", r, t0, msg, rep->scan, NULL);
	if (r < 0) {
		abandon(c, &m);
		goto out;
	}
	/* From here on every running --no-fsr workload is claimed: apply/revert restart them. */
	env.restart_workloads = nofsr;

	/* 3. The switch-over. */
	r = set_phase(c, &m, BK_MAINT_PHASE_SWITCHING, err);
	if (r < 0) {
		abandon(c, &m);
		goto out;
	}
	o = (struct bk_switch_opts){
		.run_dfd = c->run_dfd,
		.from = rep->from,
		.to = to,
		.freeze_timeout_ms = c->freeze_timeout_ms,
		.freeze_batch = c->freeze_batch,
		.view_flags = c->view_flags,
	};
	t0 = begin_step(c, "switch-over");
	/*
	 * The claimed --no-fsr workloads first, running (their hooks restart them afterwards),
	 * then the pointer and the frozen ones. A failure of either undoes the unfrozen swaps;
	 * bk_switch_run() undoes its own.
	 */
	r = swap_unfrozen(c->run_dfd, to, c->view_flags, false, false, uitems, uk, err);
	if (r >= 0)
		r = bk_switch_run(&o, items, k, NULL, err);
	if (r < 0 && rep->from)
		(void) swap_unfrozen(c->run_dfd, rep->from, c->view_flags, true, false, uitems, uk,
				     NULL);
	rep->total_ns = bk_now_ns() - t0.mono;
	max_frozen = fill_results(rep, items, map, k, false, r);
	u_max = fill_results(rep, uitems, umap, uk, true, r);
	max_frozen = u_max > max_frozen ? u_max : max_frozen;
	if (r < 0) {
		rep->rolled_back = true;
		report_step(c, "switch-over", r, t0, err->msg, NULL, rep);
		t0 = begin_step(c, "revert hooks");
		run_hooks_warn(c, BK_HOOK_REVERT, &env, &rep->revert, &rep->hook_warning);
		hooks_message("revert", rep->revert, 0, NULL, nofsr, msg, sizeof(msg));
		report_step(c, "revert hooks", 0, t0, msg, rep->revert, NULL);
		abandon(c, &m);
		goto out;
	}
	(void) snprintf(msg, sizeof(msg),
			"'%s' -> '%s': %d running %s switched, longest freeze %.3f ms%s%s",
			rep->from ? rep->from : "(none)", to, count_running(lws, n),
			count_running(lws, n) == 1 ? "workload" : "workloads",
			(double) max_frozen / 1e6,
			uk ? "; not frozen (--no-fsr, restarted by hook): " : "", uk ? nofsr : "");
	report_step(c, "switch-over", 0, t0, msg, NULL, rep);

	/* 4. Committed: from here on a crash finishes rather than reverts. */
	r = set_phase(c, &m, BK_MAINT_PHASE_COMMITTED, err);
	if (r < 0)
		goto out; /* the flag stays in "switching": the next run reverts */
	r = record_current(c->state_dfd, to, err);
	if (r < 0)
		goto out;
	t0 = begin_step(c, c->rollback ? "revert hooks" : "apply hooks");
	if (c->rollback) {
		run_hooks_warn(c, BK_HOOK_REVERT, &env, &rep->revert, &rep->hook_warning);
		hooks_message("revert", rep->revert, 0, NULL, nofsr, msg, sizeof(msg));
		report_step(c, "revert hooks", 0, t0, msg, rep->revert, NULL);
	} else {
		run_hooks_warn(c, BK_HOOK_APPLY, &env, &rep->apply, &rep->hook_warning);
		hooks_message("apply", rep->apply, 0, NULL, nofsr, msg, sizeof(msg));
		report_step(c, "apply hooks", 0, t0, msg, rep->apply, NULL);
	}
	t0 = begin_step(c, "maintenance mode");
	r = settle(c, &m, true, err);
	if (r >= 0)
		r = bk_maint_clear(c->state_dfd, err);
	report_step(c, "maintenance mode", r, t0,
		    r < 0 ? err->msg : "exiting partial maintenance mode", NULL, NULL);
out:
	bk_lp_workloads_free(lws, n);
	if (ret)
		*ret = TAKE_PTR(rep);
	return r;
}

/* Which revision shows through each running workload's view, and thaw them all. */
int bk_livepatch_recover(const struct bk_livepatch_ctx *c, char **ret_target, struct bk_err *err)
{
	_cleanup_free_ struct bk_switch_item *items = NULL, *uitems = NULL;
	_cleanup_free_ char *from_version = NULL, *to_version = NULL, *nofsr = NULL;
	_cleanup_free_ size_t *map = NULL, *umap = NULL;
	struct bk_lp_workload *lws = NULL;
	struct bk_maint m = { 0 };
	struct bk_switch_opts o;
	struct bk_hook_env env;
	const char *target = NULL, *other;
	char boot_id[37];
	size_t n = 0, k = 0, uk = 0;
	bool revert;
	dev_t dev;
	int r;

	(void) bk_rev_pointer_cleanup(c->run_dfd);
	r = bk_maint_get(c->state_dfd, &m, err);
	if (r <= 0)
		return r;
	if (m.boot_id && bk_maint_boot_id(boot_id) == 0 && strcmp(m.boot_id, boot_id) != 0) {
		/* Set before a reboot: nothing of that live patch survived it. */
		BK_DBG(REV, "maintenance flag from an earlier boot, cleared");
		r = bk_maint_clear(c->state_dfd, err);
		goto done;
	}
	if (m.phase == BK_MAINT_PHASE_STAGING || m.phase == BK_MAINT_PHASE_PREPARING) {
		/* Nothing was switched: undo what the caller did (settle), then the flag goes. */
		r = settle(c, &m, false, err);
		if (r >= 0)
			r = bk_maint_clear(c->state_dfd, err);
		goto done;
	}
	revert = m.phase == BK_MAINT_PHASE_SWITCHING && m.from;
	target = revert ? m.from : m.to;
	other = revert ? m.to : m.from;
	r = bk_rev_dev(c->run_dfd, target, &dev, err);
	if (r < 0) {
		(void) bk_err_prefix(err, "cannot recover the interrupted live patch");
		goto out;
	}

	r = bk_lp_workloads_open(c->state_dfd, &lws, &n, err);
	if (r < 0)
		goto out;
	/* Whatever happens next, nobody stays frozen. */
	for (size_t i = 0; i < n; i++)
		if (lws[i].cg)
			(void) bk_cgroup_thaw(lws[i].cg, c->freeze_timeout_ms, NULL);
	/* Running --no-fsr workloads were claimed by a hook (or the flag would not be past
	 * preparing): their views move unfrozen and the apply/revert hooks restart them. */
	nofsr = nofsr_names(lws, n);
	r = nofsr ? make_items(lws, n, false, &items, &map, &k) : -ENOMEM;
	if (r == 0)
		r = make_items(lws, n, true, &uitems, &umap, &uk);
	if (r < 0) {
		r = bk_err_set(err, r, "out of memory");
		goto out;
	}
	o = (struct bk_switch_opts){
		.run_dfd = c->run_dfd,
		.from = other,
		.to = target,
		.freeze_timeout_ms = c->freeze_timeout_ms,
		.freeze_batch = c->freeze_batch,
		.view_flags = c->view_flags,
		.best_effort = true,
	};
	r = swap_unfrozen(c->run_dfd, target, c->view_flags, false, true, uitems, uk, err);
	{
		struct bk_err e2 = { 0 };
		int r2 = bk_switch_run(&o, items, k, NULL, r < 0 ? &e2 : err);

		r = r < 0 ? r : r2;
	}
	if (r < 0) {
		(void) bk_err_prefix(err, "cannot recover the interrupted live patch");
		goto out;
	}
	if (!revert) {
		r = record_current(c->state_dfd, target, err);
		if (r < 0)
			goto out;
	}
	version_of(c->state_dfd, m.from, &from_version);
	version_of(c->state_dfd, m.to, &to_version);
	env = (struct bk_hook_env){
		.old_rev = m.from,
		.new_rev = m.to,
		.old_version = from_version,
		.new_version = to_version,
		.nofsr_workloads = nofsr,
		.restart_workloads = nofsr,
	};
	{
		_cleanup_(bk_hook_run_freep) struct bk_hook_run *run = NULL;

		(void) bk_hooks_run(c->hooks_dir, revert ? BK_HOOK_REVERT : BK_HOOK_APPLY, &env,
				    c->hook_timeout_ms, &run, NULL);
	}
	r = settle(c, &m, !revert, err);
	if (r < 0)
		goto out;
	r = bk_maint_clear(c->state_dfd, err);
done:
	if (r == 0) {
		r = 1;
		if (ret_target)
			*ret_target = target ? strdup(target) : NULL;
	}
out:
	bk_lp_workloads_free(lws, n);
	bk_maint_release(&m);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a bankd child runs (docs/dbus-api.md, "Jobs"): one operation of the operations layer,
 * its observer writing JSON Lines to a pipe the daemon reads, its exit code as the process's.
 * The child is where the lock is taken, where the private mount namespace of a stage is
 * entered, and what a SIGKILL ends: the daemon itself never calls a mutating operation.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <syslog.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bankd.h"
#include "bk-cms.h"
#include "bk-err.h"
#include "bk-events.h"
#include "bk-json.h"
#include "bk-op-boot.h"
#include "bk-op-depot.h"
#include "bk-op-live.h"
#include "bk-op-recover.h"
#include "bk-op-remediate.h"
#include "bk-op-stage.h"
#include "bk-op.h"

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

static const char *const op_names[_BANKD_OP_MAX] = {
	[BANKD_OP_STAGE] = "stage",
	[BANKD_OP_ACTIVATE] = "activate",
	[BANKD_OP_MARK_GOOD] = "mark-good",
	[BANKD_OP_MARK_BAD] = "mark-bad",
	[BANKD_OP_ROLLBACK] = "rollback",
	[BANKD_OP_ROLL_FORWARD] = "roll-forward",
	[BANKD_OP_RECOVER] = "recover",
	[BANKD_OP_DEPOT_IMPORT] = "depot import",
	[BANKD_OP_DEPOT_REMOVE] = "depot remove",
	[BANKD_OP_LIVEPATCH_APPLY] = "livepatch apply",
	[BANKD_OP_LIVEPATCH_ROLLBACK] = "livepatch rollback",
	[BANKD_OP_DESIRED_SET] = "desired set",
	[BANKD_OP_DESIRED_CLEAR] = "desired clear",
	[BANKD_OP_PRECHECK] = "precheck",
	[BANKD_OP_REMEDIATE] = "remediate",
};

const char *bankd_op_to_string(enum bankd_op op)
{
	if (op < 0 || op >= _BANKD_OP_MAX)
		return NULL;
	return op_names[op];
}

void bankd_request_release(struct bankd_request *req)
{
	if (req->fd >= 0)
		(void) close(req->fd);
	req->fd = -EBADF;
	free(req->bank);
	free(req->reason);
	free(req->url);
	free(req->name);
	free(req->version);
	req->bank = req->reason = req->name = req->version = req->url = NULL;
}

/* ---- the observer: one JSON line per call ------------------------------------------------ */

struct out {
	int fd;
	size_t n_steps;
	uint32_t last_percent;
	size_t last_index;
	bool any_progress;
};

/* Write o (taken) as one line; a write error (the daemon is gone) is ignored: the op goes on. */
static void emit(struct out *out, const char *type, struct json_object *o)
{
	const char *s;
	size_t len, off = 0;

	if (!o)
		return;
	if (bk_json_add_string(o, "type", type) < 0) {
		json_object_put(o);
		return;
	}
	s = json_object_to_json_string_ext(o,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(s);
	while (off < len) {
		ssize_t n = write(out->fd, s + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t) n;
	}
	while (off == len && write(out->fd, "\n", 1) < 0 && errno == EINTR)
		;
	json_object_put(o);
}

static void obs_task(void *userdata, const char *operation, const char *task_id,
		     const char *subject)
{
	struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_string(o, "operation", operation) < 0 ||
	    bk_json_add_string(o, "task", task_id) < 0 ||
	    bk_op_json_add_nullable(o, "subject", subject) < 0) {
		json_object_put(o);
		return;
	}
	emit(userdata, "task", o);
}

static void obs_step(void *userdata, const struct bk_op_step *st)
{
	struct json_object *o = json_object_new_object();
	struct out *out = userdata;

	out->n_steps++;
	if (!o || bk_op_json_add_nullable(o, "task", st->task) < 0 ||
	    bk_op_json_add_nullable(o, "operation", st->operation) < 0 ||
	    bk_op_json_add_nullable(o, "step", st->step) < 0 ||
	    bk_op_json_add_nullable(o, "result", st->result) < 0 ||
	    bk_json_add_u64(o, "start_ns", st->start_ns) < 0 ||
	    bk_json_add_u64(o, "duration_ns", st->duration_ns) < 0 ||
	    bk_op_json_add_nullable(o, "message", st->message) < 0) {
		json_object_put(o);
		return;
	}
	emit(out, "step", o);
}

static void obs_step_begin(void *userdata, const char *task_id, const char *step)
{
	struct json_object *o = json_object_new_object();

	if (!o || bk_op_json_add_nullable(o, "task", task_id) < 0 ||
	    bk_op_json_add_nullable(o, "step", step) < 0) {
		json_object_put(o);
		return;
	}
	emit(userdata, "step-begin", o);
}

static void obs_detail(void *userdata, const char *text)
{
	struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_string(o, "text", text) < 0) {
		json_object_put(o);
		return;
	}
	emit(userdata, "detail", o);
}

/* Called per MiB: one line per percent, per payload and at each payload's end. */
static void obs_progress(void *userdata, const struct bk_stage_progress *p)
{
	struct out *out = userdata;
	struct json_object *o;
	uint32_t pct = p->total ? (uint32_t) (p->done * 100 / p->total) : 0;

	if (out->any_progress && pct == out->last_percent && p->index == out->last_index && !p->end)
		return;
	out->any_progress = true;
	out->last_percent = pct;
	out->last_index = p->index;
	o = json_object_new_object();
	if (!o || bk_json_add_u64(o, "done", p->done) < 0 ||
	    bk_json_add_u64(o, "total", p->total) < 0 ||
	    bk_op_json_add_nullable(o, "payload", p->payload) < 0) {
		json_object_put(o);
		return;
	}
	emit(out, "progress", o);
}

static void obs_message(void *userdata, int level, const char *text)
{
	struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_u64(o, "level", (uint64_t) level) < 0 ||
	    bk_json_add_string(o, "text", text) < 0) {
		json_object_put(o);
		return;
	}
	emit(userdata, "message", o);
}

/* ---- the operations ------------------------------------------------------------------------ */

/* A name for the caller's bundle in messages and events: what the fd points at, for people. */
static void fd_name(int fd, char *buf, size_t len)
{
	char link[64];
	ssize_t n;

	(void) snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, len - 1);
	if (n <= 0) {
		(void) snprintf(buf, len, "the caller's bundle");
		return;
	}
	buf[n] = '\0';
}

static int run_stage(struct bk_op_ctx *ctx, const struct bankd_request *req,
		     struct json_object **ret, struct bk_err *err)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *kr = NULL;
	struct bk_op_stage_result res = { 0 };
	char name[4096];
	int r;

	if (req->url)
		(void) snprintf(name, sizeof(name), "%s", req->url);
	else
		fd_name(req->fd, name, sizeof(name));
	r = bk_op_keyring_load(ctx, NULL, &kr, err);
	if (r < 0)
		return r;
	struct bk_op_stage_opts o = {
		.fd = req->fd,
		.url = req->url,
		.path = name,
		.keyring = kr,
		.activate = req->activate,
		.allow_downgrade = req->allow_downgrade,
		.ignore_compatible = req->ignore_compatible,
		.no_check_time = req->no_check_time,
	};
	r = bk_op_stage(ctx, &o, &res, err);
	if (r >= 0) {
		*ret = bk_op_stage_result_to_json(&res);
		if (!*ret)
			r = bk_err_set(err, -ENOMEM, "out of memory");
	}
	bk_op_stage_result_release(&res);
	return r;
}

static int run_boot(struct bk_op_ctx *ctx, const struct bankd_request *req,
		    struct json_object **ret, struct bk_err *err)
{
	struct bk_op_boot_result res = { 0 };
	enum bk_bank_id bank = _BK_BANK_INVALID;
	const char *word = req->bank && req->bank[0] ? req->bank : NULL;
	int r;

	switch (req->op) {
	case BANKD_OP_ACTIVATE:
		if (word) {
			r = bk_op_bank_word(ctx, word, &bank, err);
			if (r < 0)
				return r;
		}
		r = bk_op_activate(ctx, bank, req->tries, &res, err);
		break;
	case BANKD_OP_MARK_GOOD:
	case BANKD_OP_MARK_BAD:
		r = bk_op_mark(ctx, req->op == BANKD_OP_MARK_GOOD, word,
			       req->reason && req->reason[0] ? req->reason : NULL, &res, err);
		break;
	case BANKD_OP_ROLLBACK:
	case BANKD_OP_ROLL_FORWARD:
		r = bk_op_roll(ctx, req->op == BANKD_OP_ROLLBACK, &res, err);
		break;
	case BANKD_OP_STAGE:
	case BANKD_OP_RECOVER:
	case BANKD_OP_DEPOT_IMPORT:
	case BANKD_OP_DEPOT_REMOVE:
	case BANKD_OP_LIVEPATCH_APPLY:
	case BANKD_OP_LIVEPATCH_ROLLBACK:
	case BANKD_OP_DESIRED_SET:
	case BANKD_OP_DESIRED_CLEAR:
	case BANKD_OP_PRECHECK:
	case BANKD_OP_REMEDIATE:
	case _BANKD_OP_MAX:
	case _BANKD_OP_INVALID:
	default:
		return bk_err_set(err, -EINVAL, "not a boot-state operation");
	}
	if (r < 0)
		return r;
	*ret = bk_op_boot_result_to_json(&res);
	return *ret ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
}

static int run_recover(struct bk_op_ctx *ctx, struct json_object **ret, struct bk_err *err)
{
	const struct bk_op_recovery *rec = NULL;
	int r;

	r = bk_op_recover(ctx, &rec, err);
	if (r < 0)
		return r;
	/* bk_op_recover() leaves the report to its caller: one message line for the log. */
	if (bk_op_recovery_did_something(rec)) {
		char what[1024];

		bk_op_recovery_describe(rec, what, sizeof(what));
		bk_op_log(ctx, LOG_NOTICE, "recovered: %s", what);
	}
	*ret = bk_op_recovery_to_json(rec);
	return *ret ? 0 : bk_err_set(err, -ENOMEM, "out of memory");
}

static int run_depot(struct bk_op_ctx *ctx, const struct bankd_request *req,
		     struct json_object **ret, struct bk_err *err)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *kr = NULL;
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	_cleanup_free_ char *file = NULL;
	char name[4096];
	int r;

	if (!o)
		return bk_err_set(err, -ENOMEM, "out of memory");
	if (req->op == BANKD_OP_DEPOT_REMOVE) {
		r = bk_op_depot_remove(ctx, req->name, req->version, err);
		if (r < 0)
			return r;
		if (bk_json_add_string(o, "removed_name", req->name) < 0 ||
		    bk_json_add_string(o, "removed_version", req->version) < 0)
			return bk_err_set(err, -ENOMEM, "out of memory");
		*ret = TAKE_PTR(o);
		return 0;
	}
	if (req->url)
		(void) snprintf(name, sizeof(name), "%s", req->url);
	else
		fd_name(req->fd, name, sizeof(name));
	r = bk_op_keyring_load(ctx, NULL, &kr, err);
	if (r < 0)
		return r;
	struct bk_op_depot_import_opts io = {
		.fd = req->fd,
		.url = req->url,
		.path = name,
		.keyring = kr,
		.force = req->force,
		.no_check_time = req->no_check_time,
	};
	r = bk_op_depot_import(ctx, &io, &file, err);
	if (r < 0)
		return r;
	if (bk_json_add_string(o, "imported", file) < 0)
		return bk_err_set(err, -ENOMEM, "out of memory");
	*ret = TAKE_PTR(o);
	return 0;
}

/* The live patch's result document is its report also when it failed (the steps so far). */
static int run_livepatch(struct bk_op_ctx *ctx, const struct bankd_request *req,
			 struct json_object **ret, struct bk_err *err)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *kr = NULL;
	struct bk_op_livepatch_result res = { 0 };
	char name[4096];
	int r;

	if (req->op == BANKD_OP_LIVEPATCH_ROLLBACK) {
		r = bk_op_livepatch_rollback(ctx, req->no_beneath, &res, err);
	} else {
		fd_name(req->fd, name, sizeof(name));
		r = bk_op_keyring_load(ctx, NULL, &kr, err);
		if (r < 0)
			return r;
		struct bk_op_livepatch_opts o = {
			.fd = req->fd,
			.path = name,
			.keyring = kr,
			.no_check_time = req->no_check_time,
			.id = req->name && req->name[0] ? req->name : NULL,
			.no_beneath = req->no_beneath,
		};
		r = bk_op_livepatch_apply(ctx, &o, &res, err);
	}
	*ret = bk_op_livepatch_result_to_json(&res, bk_exit_code_from_errno(r), r < 0 ? err : NULL);
	bk_op_livepatch_result_release(&res);
	return r;
}

/* The mode of a request: "" for the desired state's (or system.conf's). */
static int req_mode(const struct bankd_request *req, enum bk_lp_mode *ret, struct bk_err *err)
{
	*ret = _BK_LP_MODE_INVALID;
	if (!req->reason || !req->reason[0])
		return 0;
	*ret = bk_lp_mode_from_string(req->reason);
	if (*ret < 0)
		return bk_err_set(err, -EINVAL,
				  "unknown live-patch mode '%s' (disable, auto, enforce)",
				  req->reason);
	return 0;
}

/*
 * Remediation (docs/remediation.md): desired set/clear answer the desired state; precheck its
 * document; remediate its result document, whose exit_code is bankctl's (21: reboot
 * required). A remediation that ends compliant or with a reboot required completes; a refusal
 * by the pre-check is org.bootbank.Error.Refused, as an incompatible image is.
 */
static int run_remediation(struct bk_op_ctx *ctx, const struct bankd_request *req,
			   struct json_object **ret, struct bk_err *err)
{
	enum bk_lp_mode mode;
	int r;

	r = req_mode(req, &mode, err);
	if (r < 0)
		return r;
	switch (req->op) {
	case BANKD_OP_DESIRED_SET: {
		struct bk_op_desired d;

		r = bk_op_desired_set(ctx, req->name, req->version, mode, &d, err);
		if (r >= 0)
			*ret = bk_op_desired_to_json(&d);
		return r;
	}
	case BANKD_OP_DESIRED_CLEAR:
		r = bk_op_desired_clear(ctx, err);
		if (r >= 0) {
			struct json_object *o = json_object_new_object();

			if (o && bk_json_add_bool(o, "cleared", r == 0) < 0) {
				json_object_put(o);
				o = NULL;
			}
			*ret = o;
		}
		return r < 0 ? r : 0;
	case BANKD_OP_PRECHECK: {
		struct bk_op_precheck_result p;

		r = bk_op_precheck(ctx, mode, NULL, &p, err);
		if (r >= 0)
			*ret = bk_op_precheck_to_json(&p);
		return r;
	}
	case BANKD_OP_REMEDIATE: {
		struct bk_op_remediate_opts o = { .mode = mode,
						  .reboot = req->reboot,
						  .no_check_time = req->no_check_time };
		struct bk_op_remediate_result res = { 0 };

		r = bk_op_remediate(ctx, &o, &res, err);
		*ret = bk_op_remediate_result_to_json(&res, bk_op_remediate_exit_code(&res, r, err),
						      r < 0 ? err : NULL);
		if (r == -ECANCELED && res.outcome == BK_REMEDIATE_REFUSED)
			r = bk_err_recode(err, -EKEYREVOKED); /* org.bootbank.Error.Refused */
		bk_op_remediate_result_release(&res);
		return r;
	}
	case BANKD_OP_STAGE:
	case BANKD_OP_ACTIVATE:
	case BANKD_OP_MARK_GOOD:
	case BANKD_OP_MARK_BAD:
	case BANKD_OP_ROLLBACK:
	case BANKD_OP_ROLL_FORWARD:
	case BANKD_OP_RECOVER:
	case BANKD_OP_DEPOT_IMPORT:
	case BANKD_OP_DEPOT_REMOVE:
	case BANKD_OP_LIVEPATCH_APPLY:
	case BANKD_OP_LIVEPATCH_ROLLBACK:
	case _BANKD_OP_MAX:
	case _BANKD_OP_INVALID:
	default:
		break;
	}
	return bk_err_set(err, -EINVAL, "unknown operation");
}

static int run(struct bk_op_ctx *ctx, const struct bankd_request *req, struct json_object **ret,
	       struct bk_err *err)
{
	switch (req->op) {
	case BANKD_OP_STAGE:
		return run_stage(ctx, req, ret, err);
	case BANKD_OP_ACTIVATE:
	case BANKD_OP_MARK_GOOD:
	case BANKD_OP_MARK_BAD:
	case BANKD_OP_ROLLBACK:
	case BANKD_OP_ROLL_FORWARD:
		return run_boot(ctx, req, ret, err);
	case BANKD_OP_RECOVER:
		return run_recover(ctx, ret, err);
	case BANKD_OP_DEPOT_IMPORT:
	case BANKD_OP_DEPOT_REMOVE:
		return run_depot(ctx, req, ret, err);
	case BANKD_OP_LIVEPATCH_APPLY:
	case BANKD_OP_LIVEPATCH_ROLLBACK:
		return run_livepatch(ctx, req, ret, err);
	case BANKD_OP_DESIRED_SET:
	case BANKD_OP_DESIRED_CLEAR:
	case BANKD_OP_PRECHECK:
	case BANKD_OP_REMEDIATE:
		return run_remediation(ctx, req, ret, err);
	case _BANKD_OP_MAX:
	case _BANKD_OP_INVALID:
	default:
		return bk_err_set(err, -EINVAL, "unknown operation");
	}
}

void bankd_child_main(const char *root, const char *config, const struct bankd_request *req,
		      int out_fd)
{
	struct out out = { .fd = out_fd };
	struct bk_op_ctx ctx = { 0 };
	struct bk_err err = { 0 };
	struct json_object *result = NULL, *o;
	sigset_t all;
	int r, code;

	/*
	 * The daemon blocks the signals its event loop handles; the operation gets the default
	 * dispositions back, and dies with the daemon (a SIGKILL of bankd is a SIGKILL of the
	 * operation, the crash the next run's recovery handles).
	 */
	(void) sigemptyset(&all);
	(void) sigprocmask(SIG_SETMASK, &all, NULL);
	(void) signal(SIGTERM, SIG_DFL);
	(void) signal(SIGINT, SIG_DFL);
	(void) signal(SIGPIPE, SIG_DFL);
	(void) prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(BK_EXIT_FAILURE);

	r = bk_op_ctx_open(&ctx, root, config, &err);
	if (r >= 0) {
		ctx.wait = false; /* a held lock is "busy" at once, never a blocked job */
		ctx.obs = (struct bk_op_observer){
			.task = obs_task,
			.step = obs_step,
			.step_begin = obs_step_begin,
			.detail = obs_detail,
			.progress = obs_progress,
			.message = obs_message,
			.userdata = &out,
		};
		r = run(&ctx, req, &result, &err);
	}
	if (r < 0 && !bk_err_is_set(&err))
		(void) bk_err_set(&err, r, "%s failed: %m", bankd_op_to_string(req->op));
	code = bk_exit_code_from_errno(r);

	o = json_object_new_object();
	if (o && (bk_json_add_u64(o, "exit_code", (uint64_t) code) < 0 ||
		  bk_op_json_add_nullable(o, "error", bk_exit_code_to_dbus_error(code)) < 0 ||
		  bk_json_add_string(o, "message", r < 0 ? err.msg : "") < 0 ||
		  json_object_object_add(o, "result", TAKE_PTR(result)) < 0)) {
		json_object_put(o);
		o = NULL;
	}
	json_object_put(result);
	emit(&out, "result", o);
	bk_op_ctx_release(&ctx);
	_exit(code);
}

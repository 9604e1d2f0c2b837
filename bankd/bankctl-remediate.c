/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl desired|scan|precheck|remediate: the front end of remediation
 * (bankd/bk-op-remediate.h, docs/remediation.md): tables, the task log as it happens, --json
 * (JSON Lines of steps for remediate).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bankctl.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op-remediate.h"
#include "bk-op.h"

enum { OPT_MODE = 0x100, OPT_REBOOT };

/*
 * The options of every remediation verb: the common ones, --live-patch-mode when ret_mode is
 * not NULL, --reboot when ret_reboot is not NULL; then the arguments: none when args is NULL,
 * else as many as args names words ("NAME VERSION"). Returns 0, or the exit code of a usage
 * error it printed.
 */
static int parse_options(struct bankctl *ctx, int argc, char **argv, enum bk_lp_mode *ret_mode,
			 bool *ret_reboot, const char *args)
{
	static const struct option common[] = { BANKCTL_COMMON_LONGOPTS };
	struct option longopts[BK_ELEMENTSOF(common) + 3] = { { 0 } };
	size_t n = 0;
	int c, n_args = 0;

	for (; n < BK_ELEMENTSOF(common); n++)
		longopts[n] = common[n];
	if (ret_mode)
		longopts[n++] =
			(struct option){ "live-patch-mode", required_argument, NULL, OPT_MODE };
	if (ret_reboot)
		longopts[n++] = (struct option){ "reboot", no_argument, NULL, OPT_REBOOT };
	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_MODE) {
			*ret_mode = bk_lp_mode_from_string(optarg);
			if (*ret_mode < 0)
				return bankctl_usage(ctx->verb,
						     "unknown live-patch mode '%s' (disable, auto, "
						     "enforce)",
						     optarg);
		} else if (c == OPT_REBOOT)
			*ret_reboot = true;
		else if (bankctl_common_option(ctx, c, ctx->verb) <= 0)
			return BK_EXIT_USAGE;
	}
	for (const char *a = args; a && *a; a += strspn(a, " "), n_args++)
		a += strcspn(a, " ");
	if (!args && optind < argc)
		return bankctl_usage(ctx->verb, "unexpected argument '%s'", argv[optind]);
	if (args && argc - optind != n_args)
		return bankctl_usage(ctx->verb, "expected %s", args);
	return 0;
}

static void fmt_utc(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t) t;
	struct tm tm;

	if (t == 0 || !gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		(void) snprintf(buf, len, "-");
}

/* Print a document and free it; exit code ok, or the failure for out of memory. */
static int print_doc(struct json_object *o, int ok_code)
{
	int r = bankctl_print_json(o);

	json_object_put(o);
	return r < 0 ? bankctl_fail(-ENOMEM, NULL) : ok_code;
}

/* ---- desired ------------------------------------------------------------------------------ */

int bankctl_desired_set(struct bankctl *ctx, int argc, char **argv)
{
	enum bk_lp_mode mode = _BK_LP_MODE_INVALID;
	struct bk_op_desired d;
	struct bk_err err = { 0 };
	int r;

	r = parse_options(ctx, argc, argv, &mode, NULL, "NAME VERSION");
	if (r != 0)
		return r;
	if (!ctx->op.configured)
		return bankctl_usage(ctx->verb, "nothing is configured: no '%s'",
				     ctx->op.config_path);
	r = bk_op_desired_set(&ctx->op, argv[optind], argv[optind + 1], mode, &d, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json)
		return print_doc(bk_op_desired_to_json(&d), BK_EXIT_OK);
	printf("desired image: %s %s, live-patch mode %s\n", d.name, d.version,
	       bk_lp_mode_to_string(d.mode));
	return BK_EXIT_OK;
}

int bankctl_desired_show(struct bankctl *ctx, int argc, char **argv)
{
	struct bk_op_desired d;
	struct bk_err err = { 0 };
	char when[40];
	int r;

	r = parse_options(ctx, argc, argv, NULL, NULL, NULL);
	if (r != 0)
		return r;
	r = bk_op_desired_get(&ctx->op, &d, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json) {
		if (r > 0) {
			puts("null");
			return BK_EXIT_OK;
		}
		return print_doc(bk_op_desired_to_json(&d), BK_EXIT_OK);
	}
	if (r > 0) {
		printf("desired image: none (bankctl desired set NAME VERSION)\n");
		return BK_EXIT_OK;
	}
	fmt_utc(d.set, when, sizeof(when));
	printf("desired image    %s %s\nlive-patch mode  %s\nset              %s\n", d.name,
	       d.version, bk_lp_mode_to_string(d.mode), when);
	return BK_EXIT_OK;
}

int bankctl_desired_clear(struct bankctl *ctx, int argc, char **argv)
{
	struct bk_err err = { 0 };
	int r;

	r = parse_options(ctx, argc, argv, NULL, NULL, NULL);
	if (r != 0)
		return r;
	r = bk_op_desired_clear(&ctx->op, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (!ctx->json)
		printf("%s\n", r > 0 ? "no desired image was set" : "desired image cleared");
	return BK_EXIT_OK;
}

/* ---- scan --------------------------------------------------------------------------------- */

static void print_scan(const struct bk_op_scan_result *s)
{
	printf("compliance       %s\n", bk_compliance_to_string(s->state));
	printf("reason           %s\n", s->reason);
	if (s->has_desired)
		printf("desired          %s %s (live-patch mode %s)\n", s->desired.name,
		       s->desired.version, bk_lp_mode_to_string(s->desired.mode));
	if (s->in_service[0])
		printf("in service       %s, %s\n", s->in_service, s->in_service_how);
	for (enum bk_bank_id b = 0; s->has_booted && b < _BK_BANK_MAX; b++) {
		const struct bk_op_scan_bank *sb = &s->banks[b];

		printf("bank %s           %-8s %s%s%s%s\n", bk_bank_id_to_string(b),
		       bk_bank_state_to_string(sb->state), sb->known ? sb->image : "-",
		       sb->booted ? ", booted" : "", sb->next ? ", boots next" : "",
		       sb->desired ? ", desired" : "");
	}
}

int bankctl_scan(struct bankctl *ctx, int argc, char **argv)
{
	struct bk_op_scan_result s;
	int r;

	r = parse_options(ctx, argc, argv, NULL, NULL, NULL);
	if (r != 0)
		return r;
	bk_op_scan(&ctx->op, &s);
	if (ctx->json)
		return print_doc(bk_op_scan_to_json(&s), bk_compliance_exit_code(s.state));
	print_scan(&s);
	return bk_compliance_exit_code(s.state);
}

/* ---- precheck ----------------------------------------------------------------------------- */

static void print_precheck(const struct bk_op_precheck_result *p)
{
	printf("%-5s %-18s %-6s %s\n", "RESULT", "CHECK", "PATH", "REASON");
	for (size_t i = 0; i < p->n_checks; i++) {
		const struct bk_op_check *c = &p->checks[i];

		printf("%-6s %-18s %-6s %s\n", bk_check_result_to_string(c->result), c->name,
		       c->live_only ? "live" : "both", c->reason);
	}
	if (p->live_possible)
		printf("live path: possible\n");
	else
		printf("live path: impossible (%s)\n", p->live_why);
	if (p->reboot_possible)
		printf("reboot path: possible%s\n",
		       p->staged_intact ? " (staged already: remediate only activates)" : "");
	else
		printf("reboot path: impossible (%s)\n", p->reboot_why);
	printf("%s\n", p->chosen_why);
}

int bankctl_precheck(struct bankctl *ctx, int argc, char **argv)
{
	enum bk_lp_mode mode = _BK_LP_MODE_INVALID;
	struct bk_op_precheck_result p;
	struct bk_err err = { 0 };
	int r;

	r = parse_options(ctx, argc, argv, &mode, NULL, NULL);
	if (r != 0)
		return r;
	r = bk_op_precheck(&ctx->op, mode, NULL, &p, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json)
		return print_doc(bk_op_precheck_to_json(&p),
				 p.chosen < 0 ? BK_EXIT_PRECHECK_FAILED : BK_EXIT_OK);
	print_precheck(&p);
	return p.chosen < 0 ? BK_EXIT_PRECHECK_FAILED : BK_EXIT_OK;
}

/* ---- remediate ---------------------------------------------------------------------------- */

static void on_task(void *userdata, const char *operation, const char *task_id, const char *subject)
{
	printf("remediate to '%s' (task %s)\n", subject, task_id);
}

/* --json: one JSON line per step and detail, then the result. */
static void json_step(void *userdata, const struct bk_op_step *st)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_string(o, "event", "step") < 0 ||
	    bk_json_add_string(o, "task", st->task) < 0 ||
	    bk_json_add_string(o, "step", st->step) < 0 ||
	    bk_json_add_string(o, "result", st->result) < 0 ||
	    bk_json_add_u64(o, "time", st->start_ns / 1000000u) < 0 ||
	    bk_json_add_u64(o, "duration_us", st->duration_ns / 1000u) < 0 ||
	    bk_json_add_string(o, "message", st->message) < 0)
		return;
	puts(bk_json_to_string(o, false));
	fflush(stdout);
}

static void json_detail(void *userdata, const char *text)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_string(o, "event", "detail") < 0 ||
	    bk_json_add_string(o, "text", text) < 0)
		return;
	puts(bk_json_to_string(o, false));
}

int bankctl_remediate(struct bankctl *ctx, int argc, char **argv)
{
	struct bk_op_remediate_opts o = { .mode = _BK_LP_MODE_INVALID };
	struct bk_op_remediate_result res = { 0 };
	struct bk_err err = { 0 };
	int r, ret;

	r = parse_options(ctx, argc, argv, &o.mode, &o.reboot, NULL);
	if (r != 0)
		return r;
	if (!ctx->op.configured)
		return bankctl_usage(ctx->verb, "nothing is configured: no '%s'",
				     ctx->op.config_path);
	if (ctx->json) {
		ctx->op.obs.step = json_step;
		ctx->op.obs.detail = json_detail;
	} else {
		bankctl_print_steps(ctx);
		ctx->op.obs.task = on_task;
	}
	fflush(stdout);
	r = bk_op_remediate(&ctx->op, &o, &res, &err);
	ret = bk_op_remediate_exit_code(&res, r, &err);
	fflush(stdout); /* the task log first, then the error */
	if (r < 0)
		bk_log(LOG_ERR, "%s", err.msg);
	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *doc =
			bk_op_remediate_result_to_json(&res, ret, &err);

		if (doc && bk_json_add_string(doc, "event", "result") >= 0)
			puts(bk_json_to_string(doc, false));
	} else if (res.outcome == BK_REMEDIATE_NOTHING)
		printf("compliant: %s; nothing to do\n", res.before.reason);
	else if (res.outcome == BK_REMEDIATE_DONE)
		printf("compliant: %s\n", res.after.reason);
	else if (res.outcome == BK_REMEDIATE_REBOOT_REQUIRED)
		printf("reboot required: %s\n", res.has_after ? res.after.reason : "");
	bk_op_remediate_result_release(&res);
	return ret;
}

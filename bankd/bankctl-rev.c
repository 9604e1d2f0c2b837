/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl rev: mount revisions (list, add, switch, gc, restore). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-bank.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-manifest.h"
#include "bk-op-live.h"
#include "bk-op-rev.h"
#include "bk-op.h"
#include "bk-rev.h"
#include "bk-sha256.h"

/* A sub-verb's own option (long only) and where its value goes. */
struct rev_option {
	const char *name;
	enum {
		OPT_FLAG,   /* bool *: set to true */
		OPT_STRING, /* const char **: points into argv */
		OPT_STRDUP, /* char **: a copy, replacing an earlier one */
		OPT_SIZE,   /* uint64_t *: bk_parse_size(), else "invalid WHAT 'ARG'" */
		OPT_U64,    /* uint64_t *: bk_parse_u64(), else "invalid WHAT 'ARG'" */
	} kind;
	void *value;
	const char *what;
};

#define REV_OPTIONS_MAX 8
#define OPT_FIRST	0x100 /* getopt_long's value of opts[0]; above every short option */

static int set_option(const struct bankctl_verb *v, const struct rev_option *o, const char *arg)
{
	char **copy;

	switch (o->kind) {
	case OPT_FLAG:
		*(bool *) o->value = true;
		break;
	case OPT_STRING:
		*(const char **) o->value = arg;
		break;
	case OPT_STRDUP:
		copy = o->value;
		free(*copy);
		*copy = strdup(arg);
		if (!*copy)
			return bankctl_fail(-ENOMEM, NULL);
		break;
	case OPT_SIZE:
		if (bk_parse_size(arg, o->value) < 0)
			return bankctl_usage(v, "invalid %s '%s'", o->what, arg);
		break;
	case OPT_U64:
		if (bk_parse_u64(arg, o->value) < 0)
			return bankctl_usage(v, "invalid %s '%s'", o->what, arg);
		break;
	}
	return BK_EXIT_OK;
}

/*
 * The arguments of a sub-verb: the common options (--json, --help, --wait), its own
 * (opts[0..n_opts)), then exactly n_args operands from argv[optind] on; a wrong number is the
 * usage error "unexpected argument 'X'" (n_args 0) or "expected <expected>". Returns
 * BK_EXIT_OK, or the exit code after one line on stderr.
 */
static int parse_args(struct bankctl *ctx, const struct bankctl_verb *v,
		      const struct rev_option *opts, size_t n_opts, int n_args,
		      const char *expected, int argc, char **argv)
{
	static const struct option common[] = { BANKCTL_COMMON_LONGOPTS };
	struct option longopts[BK_ELEMENTSOF(common) + REV_OPTIONS_MAX + 1] = { { NULL } };
	int c, r;

	assert(n_opts <= REV_OPTIONS_MAX);
	memcpy(longopts, common, sizeof(common));
	for (size_t i = 0; i < n_opts; i++)
		longopts[BK_ELEMENTSOF(common) + i] =
			(struct option){ opts[i].name,
					 opts[i].kind == OPT_FLAG ? no_argument : required_argument,
					 NULL, OPT_FIRST + (int) i };

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c >= OPT_FIRST && c < OPT_FIRST + (int) n_opts) {
			r = set_option(v, &opts[c - OPT_FIRST], optarg);
			if (r != BK_EXIT_OK)
				return r;
		} else if (bankctl_common_option(ctx, c, v) <= 0) {
			return BK_EXIT_USAGE;
		}
	}
	if (n_args == 0 && optind < argc)
		return bankctl_usage(v, "unexpected argument '%s'", argv[optind]);
	if (argc - optind != n_args)
		return bankctl_usage(v, "expected %s", expected);
	return BK_EXIT_OK;
}

/* --- list ------------------------------------------------------------------------------- */

int bankctl_rev_list(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	_cleanup_free_ char *current = NULL, *previous = NULL;
	struct bk_op_live live = { .state_dfd = -EBADF, .run_dfd = -EBADF };
	_cleanup_close_ int revs_dfd = -EBADF;
	struct bk_err err = { 0 };
	struct bk_rev *revs = NULL;
	size_t n = 0;
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, ctx->verb, NULL, 0, 0, NULL, argc, argv);
	if (ret != BK_EXIT_OK)
		return ret;
	r = bk_op_live_open(&ctx->op, &live, &err);
	if (r < 0)
		goto fail;
	revs_dfd = openat(live.state_dfd, BK_REVISIONS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (revs_dfd >= 0) {
		r = bk_rev_list(revs_dfd, &revs, &n, &err);
		if (r < 0)
			goto fail;
	}
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_CURRENT, &current, NULL);
	(void) bk_rev_pointer_get(live.run_dfd, BK_REV_PREVIOUS, &previous, NULL);

	if (ctx->json) {
		arr = json_object_new_array();
		if (!arr) {
			r = bk_err_set(&err, -ENOMEM, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *o = bk_rev_to_json(&revs[i]);

			if (!o || json_object_array_add(arr, o) < 0 ||
			    bk_json_add_bool(o, "mounted",
					     bk_rev_is_mounted(live.run_dfd, revs[i].id)) < 0 ||
			    bk_json_add_bool(o, "current",
					     current && strcmp(current, revs[i].id) == 0) < 0 ||
			    bk_json_add_bool(o, "previous",
					     previous && strcmp(previous, revs[i].id) == 0) < 0) {
				r = bk_err_set(&err, -ENOMEM, "out of memory");
				goto fail;
			}
		}
		puts(bk_json_to_string(arr, true));
	} else {
		if (n == 0)
			printf("no revisions\n");
		else
			printf("%-24s %-16s %-16s %-20s %s\n", "ID", "IMAGE", "VERSION", "CREATED",
			       "STATE");
		for (size_t i = 0; i < n; i++) {
			char when[32] = "-";
			time_t t = (time_t) revs[i].created;
			struct tm tm;

			if (gmtime_r(&t, &tm))
				(void) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
			printf("%-24s %-16s %-16s %-20s %s%s%s\n", revs[i].id,
			       revs[i].image && revs[i].image[0] ? revs[i].image : "-",
			       revs[i].version && revs[i].version[0] ? revs[i].version : "-", when,
			       bk_rev_is_mounted(live.run_dfd, revs[i].id) ? "mounted" :
									     "not-mounted",
			       current && strcmp(current, revs[i].id) == 0 ? ",current" : "",
			       previous && strcmp(previous, revs[i].id) == 0 ? ",previous" : "");
		}
	}
	goto out;
fail:
	ret = bankctl_fail(r, &err);
out:
	bk_revs_free(revs, n);
	bk_op_live_close(&live);
	return ret;
}

/* --- add -------------------------------------------------------------------------------- */

int bankctl_rev_add(struct bankctl *ctx, int argc, char **argv)
{
	const char *type = "squashfs", *digest = NULL;
	_cleanup_free_ char *where = NULL;
	struct bk_rev rev = { 0 };
	struct bk_err err = { 0 };
	const struct rev_option opts[] = {
		{ "type", OPT_STRING, &type, NULL },
		{ "offset", OPT_SIZE, &rev.offset, "offset" },
		{ "size", OPT_SIZE, &rev.size, "size" },
		{ "image", OPT_STRDUP, &rev.image, NULL },
		{ "version", OPT_STRDUP, &rev.version, NULL },
		{ "payload", OPT_STRDUP, &rev.payload, NULL },
		{ "parent", OPT_STRDUP, &rev.parent, NULL },
		{ "digest", OPT_STRING, &digest, NULL },
	};
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, ctx->verb, opts, BK_ELEMENTSOF(opts), 2, "ID and FILE", argc, argv);
	if (ret != BK_EXIT_OK)
		goto out;
	rev.id = strdup(argv[optind]);
	rev.fstype = strdup(type);
	rev.source = realpath(argv[optind + 1], NULL);
	if (!rev.source) {
		bk_log(LOG_ERR, "cannot open payload '%s': %m", argv[optind + 1]);
		ret = errno == ENOENT ? BK_EXIT_NOT_FOUND : BK_EXIT_FAILURE;
		goto out;
	}
	if (digest) {
		rev.digest = strdup(digest);
		if (rev.digest && strlen(digest) != 64) {
			ret = bankctl_usage(ctx->verb, "invalid digest '%s'", digest);
			goto out;
		}
	}
	rev.created = (uint64_t) time(NULL);
	if (!rev.id || !rev.fstype || (digest && !rev.digest)) {
		ret = bankctl_fail(-ENOMEM, NULL);
		goto out;
	}
	if (!bk_rev_id_is_valid(rev.id)) {
		ret = bankctl_usage(ctx->verb, "invalid revision id '%s'", rev.id);
		goto out;
	}

	r = bk_op_rev_add(&ctx->op, &rev, &where, &err);
	if (r < 0) {
		ret = bankctl_fail(r, &err);
		goto out;
	}
	if (!ctx->json)
		printf("revision '%s' mounted at '%s'\n", rev.id, where ? where : "?");
	else {
		_cleanup_(json_object_putp) struct json_object *o = bk_rev_to_json(&rev);

		if (o)
			puts(bk_json_to_string(o, true));
	}
out:
	bk_rev_release(&rev);
	return ret;
}

/* --- switch ----------------------------------------------------------------------------- */

int bankctl_rev_switch(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(bk_lp_report_freep) struct bk_lp_report *rep = NULL;
	struct bk_err err = { 0 };
	bool no_beneath = false;
	const struct rev_option opts[] = {
		{ "no-beneath", OPT_FLAG, &no_beneath, NULL },
	};
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, ctx->verb, opts, BK_ELEMENTSOF(opts), 1, "one revision ID", argc,
			 argv);
	if (ret != BK_EXIT_OK)
		return ret;
	if (!bk_rev_id_is_valid(argv[optind]))
		return bankctl_usage(ctx->verb, "invalid revision id '%s'", argv[optind]);

	r = bk_op_rev_switch(&ctx->op, argv[optind], no_beneath, &rep, &err);
	if (rep)
		(void) bankctl_live_print_report(ctx, rep);
	return r < 0 ? bankctl_fail(r, &err) : BK_EXIT_OK;
}

/* --- gc --------------------------------------------------------------------------------- */

int bankctl_rev_gc(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(json_object_putp) struct json_object *out = NULL;
	struct json_object *order;
	struct bk_err err = { 0 };
	uint64_t keep = 2;
	const struct rev_option opts[] = {
		{ "keep", OPT_U64, &keep, "--keep" },
	};
	int r, ret = BK_EXIT_OK;

	ret = parse_args(ctx, ctx->verb, opts, BK_ELEMENTSOF(opts), 0, NULL, argc, argv);
	if (ret != BK_EXIT_OK)
		return ret;
	r = bk_op_rev_gc(&ctx->op, keep, &out, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	order = json_object_object_get(out, "order");
	for (size_t i = 0; !ctx->json && i < json_object_array_length(order); i++) {
		struct json_object *o = json_object_array_get_idx(order, i);
		const char *id = NULL, *why = NULL, *where = NULL;

		(void) bk_json_get_string(o, "id", false, &id, NULL);
		(void) bk_json_get_string(o, "reason", false, &why, NULL);
		(void) bk_json_get_string(o, "where", false, &where, NULL);
		if (why)
			printf("kept '%s': %s%s%s\n", id, why, where ? " by " : "",
			       where ? where : "");
		else
			printf("removed '%s'\n", id);
	}
	if (ctx->json) {
		json_object_object_del(out, "order");
		puts(bk_json_to_string(out, true));
	}
	return BK_EXIT_OK;
}

/* --- restore ---------------------------------------------------------------------------- */

int bankctl_rev_restore(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(json_object_putp) struct json_object *out = NULL;
	struct json_object *mounted;
	struct bk_err err = { 0 };
	const char *current = NULL;
	int r, ret;

	ret = parse_args(ctx, ctx->verb, NULL, 0, 0, NULL, argc, argv);
	if (ret != BK_EXIT_OK)
		return ret;
	r = bk_op_rev_restore(&ctx->op, &out, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	mounted = json_object_object_get(out, "mounted");
	for (size_t i = 0; i < json_object_array_length(mounted); i++) {
		struct json_object *o = json_object_array_get_idx(mounted, i);
		const char *id = NULL, *bank = NULL;
		bool base = false;

		(void) bk_json_get_string(o, "id", false, &id, NULL);
		(void) bk_json_get_string(o, "bank", false, &bank, NULL);
		(void) bk_json_get_bool(o, "base", false, &base, NULL);
		if (base)
			printf("mounted '%s' from bank %s (the image's own live payload)\n", id,
			       bank);
		else
			printf("mounted '%s'%s%s\n", id, bank ? " from bank " : "",
			       bank ? bank : "");
	}
	(void) bk_json_get_string(out, "current", false, &current, NULL);
	if (current)
		printf("current is '%s'\n", current);
	return BK_EXIT_OK;
}

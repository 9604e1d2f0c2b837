/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl depot import|list|remove: verified bundles waiting to be staged. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-cms.h"
#include "bk-depot.h"
#include "bk-fetch.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op-depot.h"
#include "bk-op.h"

BK_DEFINE_CLEANUP(struct bk_keyring *, bk_keyring_free)

enum { OPT_FORCE = 0x100, OPT_NO_CHECK_TIME };

static int parse(struct bankctl *ctx, const struct bankctl_verb *verb, int argc, char **argv,
		 int n_args, bool *force, bool *no_check_time)
{
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "no-check-time", no_argument, NULL, OPT_NO_CHECK_TIME },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_FORCE && force)
			*force = true;
		else if (c == OPT_NO_CHECK_TIME && no_check_time)
			*no_check_time = true;
		else if (c == OPT_FORCE || c == OPT_NO_CHECK_TIME)
			return bankctl_usage(verb, "invalid option");
		else if (bankctl_common_option(ctx, c, verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (argc - optind < n_args)
		return bankctl_usage(verb, "missing argument");
	if (argc - optind > n_args)
		return bankctl_usage(verb, "unexpected argument '%s'", argv[optind + n_args]);
	return 0;
}

int bankctl_depot_import(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(bk_keyring_freep) struct bk_keyring *keyring = NULL;
	struct bk_op_depot_import_opts io;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *file = NULL;
	bool force = false, no_check_time = false;
	struct bk_err err = { 0 };
	const char *path;
	int r;

	r = parse(ctx, ctx->verb, argc, argv, 1, &force, &no_check_time);
	if (r != 0)
		return r;
	path = argv[optind];
	r = bk_op_keyring_load(&ctx->op, NULL, &keyring, &err);
	if (r < 0) {
		bk_log(LOG_ERR, "%s", err.msg);
		return r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	}
	/* A URL is read by the operation (bk-fetch.h), never opened here. */
	if (!bk_fetch_is_url(path)) {
		r = bankctl_open_bundle(path, &fd, &err);
		if (r < 0)
			return bankctl_fail(r, &err);
	}
	io = (struct bk_op_depot_import_opts){
		.fd = fd,
		.url = bk_fetch_is_url(path) ? path : NULL,
		.path = path,
		.keyring = keyring,
		.force = force,
		.no_check_time = no_check_time,
	};
	r = bk_op_depot_import(&ctx->op, &io, &file, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

		if (!o || bk_json_add_string(o, "imported", file) < 0)
			return bankctl_fail(-ENOMEM, NULL);
		puts(bk_json_to_string(o, true));
	} else
		printf("imported '%s' as '%s'\n", path, file);
	return BK_EXIT_OK;
}

int bankctl_depot_list(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(json_object_putp) struct json_object *arr = NULL;
	struct bk_depot_entry *v = NULL;
	struct bk_err err = { 0 };
	size_t n = 0;
	int r;

	r = parse(ctx, ctx->verb, argc, argv, 0, NULL, NULL);
	if (r != 0)
		return r;
	r = bk_op_depot_list(&ctx->op, &v, &n, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	for (size_t i = 0; i < n; i++)
		if (!v[i].manifest)
			bk_log(LOG_WARNING, "depot file '%s': %s, ignoring", v[i].file, v[i].error);
	if (ctx->json) {
		arr = bk_op_depot_list_to_json(v, n);
		bk_depot_entries_free(v, n);
		return bankctl_print_json(arr) < 0 ? bankctl_fail(-ENOMEM, NULL) : BK_EXIT_OK;
	}
	if (n > 0)
		printf("%-24s %-16s %-16s %-20s %5s  %s\n", "NAME", "VERSION", "BUILD",
		       "COMPATIBLE", "EPOCH", "LIVE-PATCHES");
	for (size_t i = 0; i < n; i++) {
		const struct bk_manifest *m = v[i].manifest;

		if (!m)
			continue;
		printf("%-24s %-16s %-16s %-20s %5llu  ", m->name, m->version, m->build,
		       m->compatible, (unsigned long long) m->security_epoch);
		for (size_t j = 0; j < m->n_live_patch_from; j++)
			printf("%s%s", j ? "," : "", m->live_patch_from[j]);
		printf("%s\n", m->n_live_patch_from ? "" : "-");
	}
	if (n == 0)
		printf("the depot is empty\n");
	bk_depot_entries_free(v, n);
	return BK_EXIT_OK;
}

int bankctl_depot_remove(struct bankctl *ctx, int argc, char **argv)
{
	struct bk_err err = { 0 };
	int r;

	r = parse(ctx, ctx->verb, argc, argv, 2, NULL, NULL);
	if (r != 0)
		return r;
	r = bk_op_depot_remove(&ctx->op, argv[optind], argv[optind + 1], &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	if (!ctx->json)
		printf("removed '%s' %s from the depot\n", argv[optind], argv[optind + 1]);
	return BK_EXIT_OK;
}

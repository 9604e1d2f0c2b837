/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl status: what is configured, the banks and the boot state. */
#include <errno.h>
#include <stdio.h>

#include "bankctl.h"
#include "bk-json.h"
#include "bk-log.h"

static const struct bankctl_verb verb = { "status", NULL, "status [--json]", "" };

static int print_json(struct bankctl *ctx)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *cfg;

	if (!o)
		return -ENOMEM;
	if (bk_json_add_string(o, "root", ctx->root) < 0 ||
	    bk_json_add_string(o, "config", ctx->config_path) < 0 ||
	    bk_json_add_bool(o, "configured", ctx->configured) < 0)
		return -ENOMEM;
	if (ctx->configured) {
		cfg = json_object_new_object();
		if (bk_json_add(o, "system", cfg) < 0 ||
		    bk_json_add_string(cfg, "compatible", ctx->config.compatible) < 0 ||
		    bk_json_add_string(cfg, "bootloader", ctx->config.bootloader) < 0 ||
		    bk_json_add_string(cfg, "keyring", ctx->config.keyring) < 0 ||
		    bk_json_add_string(cfg, "depot", ctx->config.depot) < 0)
			return -ENOMEM;
	}
	puts(bk_json_to_string(o, true));
	return 0;
}

static void print_text(struct bankctl *ctx)
{
	if (!ctx->configured) {
		printf("bootbank: nothing is configured under '%s'\n"
		       "  no configuration at '%s'\n"
		       "  start with 'bankctl disk init TARGET' or write that file "
		       "(see docs/configuration.md)\n",
		       ctx->root, ctx->config_path);
		return;
	}
	printf("bootbank on '%s'\n", ctx->root);
	printf("  configuration  %s\n", ctx->config_path);
	printf("  compatible     %s\n", ctx->config.compatible ? ctx->config.compatible : "(any)");
	printf("  bootloader     %s\n", ctx->config.bootloader);
	printf("  keyring        %s\n", ctx->config.keyring);
	printf("  depot          %s\n", ctx->config.depot);
}

int bankctl_status(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, &verb) <= 0)
			return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(&verb, "unexpected argument '%s'", argv[optind]);

	if (ctx->json) {
		r = print_json(ctx);
		if (r < 0)
			return bankctl_fail(r, NULL);
	} else
		print_text(ctx);
	return BK_EXIT_OK;
}

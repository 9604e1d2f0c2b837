/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl: one command line over bootbank. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bankctl-events.h"
#include "bankctl.h"
#include "bk-cms.h"
#include "bk-fs.h"
#include "bk-lock.h"
#include "bk-log.h"

static const struct bankctl_verb verbs[] = {
	{ "status", bankctl_status, "status [--json]",
	  "show the configuration, the banks and the boot state" },
	{ "image", bankctl_image, "image build|sign|verify|info|mount|umount ...",
	  "signed image bundles: build, re-sign, verify, inspect, mount a payload" },
	{ "depot", bankctl_depot, "depot import|list|remove ...",
	  "the depot of verified bundles waiting to be staged" },
	{ "disk", bankctl_disk, "disk init TARGET [--bank-size S] ... | probe",
	  "partition a disk or image for bootbank (init), or show its partitions (probe)" },
	{ "activate", bankctl_activate, "activate [--tries N] [A|B]",
	  "let the loader boot a staged bank next, with N tries (default: the staged bank)" },
	{ "mark-good", bankctl_mark_good, "mark-good [booted|other|A|B]",
	  "confirm a bank (default: the booted one); may raise the security floor" },
	{ "mark-bad", bankctl_mark_bad, "mark-bad [booted|other|A|B] [--reason TEXT]",
	  "mark a bank bad (default: the booted one); the loader will not boot it" },
	{ "rollback", bankctl_rollback, "rollback",
	  "boot the other bank from now on (reversible with roll-forward)" },
	{ "roll-forward", bankctl_roll_forward, "roll-forward",
	  "undo a rollback: boot the bank that was rolled back from" },
	{ "explain-next-boot", bankctl_explain_next_boot, "explain-next-boot [--json]",
	  "which bank the loader boots next and why, bank by bank" },
	{ "boot", bankctl_boot, "boot --simulate [--rollback-key]",
	  "in a sandbox, boot as the loader would: take a try, fall back, record the boot" },
	{ "rev", bankctl_rev, "rev list|add|switch|gc|restore ...",
	  "mount revisions: list, add, switch workloads over, gc, restore" },
	{ "workload", bankctl_workload, "workload add|list|remove ...",
	  "the workloads a live patch switches over" },
	{ "livepatch", bankctl_livepatch, "livepatch apply IMAGE.bbi | rollback | status",
	  "apply a signed image's live payload to the running workloads, or go back" },
	{ "stage", bankctl_stage, "stage IMAGE.bbi [--activate] [--allow-downgrade] ...",
	  "verify an image and write it into the alternate bank (hashed while written)" },
	{ "recover", bankctl_recover, "recover [--json]",
	  "finish what a killed bankctl left: temp files, an interrupted stage or live patch" },
	{ "events", bankctl_events, "events [--json] [-n N]",
	  "the last N events (default 20): what the mutating verbs did, step by step" },
};

static const struct bankctl_verb *find_verb(const char *name)
{
	for (size_t i = 0; i < BK_ELEMENTSOF(verbs); i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

static void print_help(FILE *f)
{
	fprintf(f,
		"usage: bankctl [OPTIONS] VERB [ARGS]\n\n"
		"A/B boot banks, signed images and live patches for Linux hosts.\n\n"
		"Options (also accepted after the verb where it makes sense):\n"
		"  -h, --help           show this help\n"
		"  -V, --version        show the version\n"
		"  -j, --json           machine-readable output\n"
		"  -c, --config FILE    configuration file (default ROOT/etc/bootbank/system.conf)\n"
		"  -r, --root DIR       operate beneath DIR: etc/bootbank, var/lib/bootbank and\n"
		"                       run/bootbank are taken relative to it (default /)\n"
		"  -w, --wait           wait for another operation instead of failing with busy\n"
		"      --log-level L    err, warning, info (default) or debug\n\n"
		"Verbs:\n");
	for (size_t i = 0; i < BK_ELEMENTSOF(verbs); i++)
		fprintf(f, "  %-38s %s\n", verbs[i].usage, verbs[i].help);
	fprintf(f, "\nExit codes:\n");
	for (int i = 0; i < _BK_EXIT_MAX; i++)
		fprintf(f, "  %2d  %s\n", i, bk_exit_code_to_string(i));
	fprintf(f, "\nEnvironment: LIBBOOTBANK_DEBUG=all|fs,lock,... traces library calls.\n");
}

int bankctl_usage(const struct bankctl_verb *verb, const char *fmt, ...)
{
	va_list ap;

	fputs("bankctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (verb)
		fprintf(stderr, " (usage: bankctl %s)\n", verb->usage);
	else
		fputs(" (see bankctl --help)\n", stderr);
	return BK_EXIT_USAGE;
}

int bankctl_common_option(struct bankctl *ctx, int c, const struct bankctl_verb *verb)
{
	switch (c) {
	case 'j':
		ctx->json = true;
		return 1;
	case 'w':
		ctx->wait = true;
		return 1;
	case 'h':
		printf("usage: bankctl %s\n%s\n", verb->usage, verb->help);
		exit(BK_EXIT_OK);
	case '?':
		(void) bankctl_usage(verb, "invalid option");
		return -1;
	default:
		return 0;
	}
}

int bankctl_fail(int r, const struct bk_err *err)
{
	if (err && err->code < 0) {
		bk_log(LOG_ERR, "%s", err->msg);
		return bk_exit_code_from_errno(err->code);
	}
	errno = r < 0 ? -r : r;
	bk_log(LOG_ERR, "%m");
	return bk_exit_code_from_errno(r);
}

const char *bankctl_path(struct bankctl *ctx, const char *relpath)
{
	static char buf[4096];
	const char *sep = ctx->root[strlen(ctx->root) - 1] == '/' ? "" : "/";

	(void) snprintf(buf, sizeof(buf), "%s%s%s", ctx->root, sep, relpath);
	return buf;
}

int bankctl_open_dir(struct bankctl *ctx, const char *relpath, bool create, int *ret_fd,
		     struct bk_err *err)
{
	int fd;

	if (create)
		return bk_mkdir_p_at(ctx->root_fd, relpath, 0755, ret_fd, err);
	fd = bk_open_beneath(ctx->root_fd, relpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
	if (fd < 0)
		return bk_err_set(err, fd, "cannot open '%s': %m", bankctl_path(ctx, relpath));
	*ret_fd = fd;
	return 0;
}

int bankctl_lock(struct bankctl *ctx, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char path[4096];
	int r;

	if (ctx->lock_fd >= 0)
		return 0;
	r = bankctl_open_dir(ctx, BANKCTL_RUN_DIR, true, &dfd, err);
	if (r < 0)
		return r;
	(void) snprintf(path, sizeof(path), "%s", bankctl_path(ctx, BANKCTL_RUN_DIR));
	r = bk_lock_acquire(dfd, path, ctx->wait, &ctx->lock_fd, err);
	if (r < 0)
		return r;
	/* Every mutating verb first finishes what a killed one left (bankctl-recover.c). */
	return bankctl_recover_after_lock(ctx, err);
}

/* The keyring: arg (--keyring PATH) as given, else system.conf's [keyring] path beneath the root.
 */
int bankctl_keyring_load(struct bankctl *ctx, const char *arg, struct bk_keyring **ret,
			 struct bk_err *err)
{
	const char *path = arg;
	char buf[4096];
	int r;

	if (!path) {
		path = ctx->config.keyring;
		if (strcmp(ctx->root, "/") != 0) {
			(void) snprintf(buf, sizeof(buf), "%s",
					bankctl_path(ctx, path + strspn(path, "/")));
			path = buf;
		}
	}
	r = bk_keyring_load(path, ret, err);
	if (r < 0)
		return bk_err_prefix(err, "cannot load keyring '%s'", path);
	return 0;
}

static int load_config(struct bankctl *ctx, const char *config_arg, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	if (config_arg) {
		ctx->config_path = strdup(config_arg);
		if (!ctx->config_path)
			return bk_err_set(err, -ENOMEM, "out of memory");
		r = bk_config_load_at(&ctx->config, AT_FDCWD, config_arg, config_arg, err);
		if (r == -ENOENT)
			return bk_err_set(err, r, "configuration '%s' does not exist", config_arg);
	} else {
		ctx->config_path = strdup(bankctl_path(ctx, BANKCTL_ETC_DIR "/" BK_CONFIG_NAME));
		if (!ctx->config_path)
			return bk_err_set(err, -ENOMEM, "out of memory");
		dfd = bk_open_beneath(ctx->root_fd, BANKCTL_ETC_DIR,
				      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
		if (dfd == -ENOENT)
			return 0;
		if (dfd < 0)
			return bk_err_set(err, dfd, "cannot open '%s': %m",
					  bankctl_path(ctx, BANKCTL_ETC_DIR));
		r = bk_config_load_at(&ctx->config, dfd, BK_CONFIG_NAME, ctx->config_path, err);
		if (r == -ENOENT)
			return 0;
	}
	if (r < 0)
		return r;
	ctx->configured = true;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' },
		{ "wait", no_argument, NULL, 'w' },
		{ "log-level", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	struct bankctl ctx = { .root = "/", .root_fd = -EBADF, .lock_fd = -EBADF };
	const struct bankctl_verb *verb;
	const char *config_arg = NULL;
	struct bk_err err = { 0 };
	const char *env;
	int c, r, ret;

	bk_log_set_program("bankctl");
	env = secure_getenv("BOOTBANK_LOG_LEVEL");
	if (env && bk_log_level_from_string(env) >= 0)
		bk_log_max_level = bk_log_level_from_string(env);

	while ((c = getopt_long(argc, argv, "+hVjc:r:wL:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			print_help(stdout);
			return BK_EXIT_OK;
		case 'V':
			printf("bankctl %s\n", BK_VERSION);
			return BK_EXIT_OK;
		case 'j':
			ctx.json = true;
			break;
		case 'c':
			config_arg = optarg;
			break;
		case 'r':
			ctx.root = optarg;
			break;
		case 'w':
			ctx.wait = true;
			break;
		case 'L':
			r = bk_log_level_from_string(optarg);
			if (r < 0)
				return bankctl_usage(NULL, "unknown log level '%s'", optarg);
			bk_log_max_level = r;
			break;
		default:
			return bankctl_usage(NULL, "invalid option");
		}
	}
	if (optind >= argc)
		return bankctl_usage(NULL, "missing verb");
	verb = find_verb(argv[optind]);
	if (!verb)
		return bankctl_usage(NULL, "unknown verb '%s'", argv[optind]);

	if (ctx.root[0] == '\0')
		return bankctl_usage(NULL, "--root must not be empty");
	ctx.root_fd = open(ctx.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ctx.root_fd < 0) {
		bk_log(LOG_ERR, "cannot open root '%s': %m", ctx.root);
		return errno == ENOENT || errno == ENOTDIR ? BK_EXIT_USAGE : BK_EXIT_FAILURE;
	}

	if (bk_config_init(&ctx.config) < 0) {
		bk_log(LOG_ERR, "out of memory");
		return BK_EXIT_FAILURE;
	}
	r = load_config(&ctx, config_arg, &err);
	if (r < 0) {
		/* Every configuration problem is a usage/config error (exit 2), one line. */
		bk_log(LOG_ERR, "%s", err.msg);
		ret = r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	} else {
		optind++;
		ret = verb->run(&ctx, argc - optind + 1, argv + optind - 1);
	}

	bk_lock_release(ctx.lock_fd);
	bk_config_release(&ctx.config);
	free(ctx.config_path);
	(void) close(ctx.root_fd);
	if (fflush(stdout) != 0 && ret == BK_EXIT_OK) {
		bk_log(LOG_ERR, "cannot write output: %m");
		ret = BK_EXIT_IO;
	}
	return ret;
}

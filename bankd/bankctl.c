/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bankctl: one command line over bootbank. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bankctl.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op.h"
#include "bk-select.h"

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
	{ "assess", bankctl_assess, "assess [--timeout SEC] [--no-reboot] [--json] | --is-trial",
	  "run the health checks; on a trial boot mark the booted bank good or bad" },
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
		ctx->op.wait = true;
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

/* Messages of the operations: one log line each. */
static void on_message(void *userdata, int level, const char *text)
{
	bk_log(level, "%s", text);
}

static void format_clock(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t) (ns / 1000000000u);
	struct tm tm;

	if (!localtime_r(&s, &tm) || strftime(buf, len, "%H:%M:%S", &tm) == 0)
		(void) snprintf(buf, len, "--:--:--");
	else
		(void) snprintf(buf + strlen(buf), len - strlen(buf), ".%03u",
				(unsigned) (ns / 1000000u % 1000u));
}

static void on_step(void *userdata, const struct bk_op_step *st)
{
	char when[32];

	format_clock(st->start_ns, when, sizeof(when));
	printf("  %s  %-18s %-7s %9.3f ms  %s\n", when, st->step, st->result,
	       (double) st->duration_ns / 1e6, st->message);
	fflush(stdout);
}

static void on_detail(void *userdata, const char *text)
{
	printf("                %s\n", text);
}

void bankctl_print_steps(struct bankctl *ctx)
{
	ctx->op.obs.step = on_step;
	ctx->op.obs.detail = on_detail;
}

int bankctl_open_bundle(const char *path, int *ret_fd, struct bk_err *err)
{
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return bk_err_set(err, -errno, "cannot open '%s': %m", path);
	*ret_fd = fd;
	return 0;
}

void bankctl_print_next(const struct bk_bootstate *s)
{
	struct bk_boot_decision d;

	if (bk_select_decide(s, false, &d, NULL) < 0)
		return;
	if (d.reason == BK_REASON_NONE)
		printf("  next boot: nothing (both banks are empty)\n");
	else
		printf("  next boot: bank %s (%s)\n", bk_bank_id_to_string(d.bank),
		       bk_boot_reason_to_string(d.reason));
}

int bankctl_print_json(struct json_object *o)
{
	if (!o)
		return -ENOMEM;
	puts(bk_json_to_string(o, true));
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
	struct bankctl ctx = { 0 };
	const struct bankctl_verb *verb;
	const char *config_arg = NULL, *root = "/";
	struct bk_err err = { 0 };
	bool json = false, wait = false;
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
			json = true;
			break;
		case 'c':
			config_arg = optarg;
			break;
		case 'r':
			root = optarg;
			break;
		case 'w':
			wait = true;
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

	if (root[0] == '\0')
		return bankctl_usage(NULL, "--root must not be empty");
	r = bk_op_ctx_open(&ctx.op, root, config_arg, &err);
	ctx.json = json;
	ctx.op.wait = wait;
	ctx.op.obs.message = on_message;
	if (r < 0 && ctx.op.root_fd < 0) {
		bk_log(LOG_ERR, "%s", err.msg);
		ret = r == -ENOENT || r == -ENOTDIR ? BK_EXIT_USAGE : BK_EXIT_FAILURE;
	} else if (r < 0) {
		/* Every configuration problem is a usage/config error (exit 2), one line. */
		bk_log(LOG_ERR, "%s", err.msg);
		ret = r == -ENOMEM ? BK_EXIT_FAILURE : BK_EXIT_USAGE;
	} else {
		optind++;
		ret = verb->run(&ctx, argc - optind + 1, argv + optind - 1);
	}

	bk_op_ctx_release(&ctx.op);
	if (fflush(stdout) != 0 && ret == BK_EXIT_OK) {
		bk_log(LOG_ERR, "cannot write output: %m");
		ret = BK_EXIT_IO;
	}
	return ret;
}

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
#include "bk-bundle.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-op.h"
#include "bk-select.h"

/*
 * The one table of bankctl: dispatch, help, suggestions, the man page's synopsis and the bash
 * completion all come from it (bankctl __table prints it for scripts/gen-cli.sh).
 */
static const struct bankctl_verb image_subs[] = {
	{ "build", bankctl_image_build,
	  "image build SPEC.json -o OUT.bbi --key KEY.pem --cert CERT.pem [--intermediate C.pem]...",
	  "build and sign an image bundle",
	  "-o|--output=OUT.bbi --key=KEY.pem --cert=CERT.pem --intermediate=C.pem", "json" },
	{ "sign", bankctl_image_sign,
	  "image sign IN.bbi -o OUT.bbi --key KEY.pem --cert CERT.pem [--intermediate C.pem]...",
	  "re-sign an image bundle",
	  "-o|--output=OUT.bbi --key=KEY.pem --cert=CERT.pem --intermediate=C.pem", "bbi" },
	{ "verify", bankctl_image_verify,
	  "image verify IMAGE.bbi [--keyring PATH] [--no-check-time] [--json]",
	  "verify header, signature, manifest and every payload", "--keyring=PATH --no-check-time",
	  "bbi" },
	{ "info", bankctl_image_info, "image info IMAGE.bbi [--json]",
	  "show a bundle's manifest (not verified)", "", "bbi" },
	{ "mount", bankctl_image_mount,
	  "image mount IMAGE.bbi PAYLOAD DIR [--keyring PATH] [--no-check-time]",
	  "verify a filesystem payload and mount it read-only", "--keyring=PATH --no-check-time",
	  "bbi - dir" },
	{ "umount", bankctl_image_umount, "image umount DIR",
	  "unmount a payload and detach its loop device", "", "dir" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb depot_subs[] = {
	{ "import", bankctl_depot_import, "depot import IMAGE.bbi|URL [--force] [--no-check-time]",
	  "verify a bundle (a file or an http(s) URL) and copy it into the depot atomically",
	  "--force --no-check-time", "bbi" },
	{ "list", bankctl_depot_list, "depot list [--json]", "list the bundles in the depot", "",
	  "" },
	{ "remove", bankctl_depot_remove, "depot remove NAME VERSION",
	  "remove a bundle from the depot", "", "depot -" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb disk_subs[] = {
	{ "init", bankctl_disk_init,
	  "disk init TARGET [--bank-size SIZE] [--boot-size SIZE] [--data-size SIZE] [--bios-boot] "
	  "[--esp-size SIZE] [--force]",
	  "partition TARGET (block device or image file): boot, bank A, bank B, [data] (ext4), "
	  "[BIOS boot partition], [EFI System Partition (FAT)]",
	  "--bank-size=SIZE --boot-size=SIZE --data-size=SIZE --bios-boot --esp-size=SIZE --force",
	  "file" },
	{ "probe", bankctl_disk_probe, "disk probe [--usage] [--json]",
	  "show the bootbank disk: each partition's device, name, UUID, size, filesystem, use; "
	  "--usage mounts each ext4 read-only (privately) to measure it",
	  "--usage", "" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb rev_subs[] = {
	{ "list", bankctl_rev_list, "rev list [--json]", "list the revisions", "", "" },
	{ "add", bankctl_rev_add,
	  "rev add ID FILE [--type squashfs|erofs] [--offset N] [--size N] [--image NAME] "
	  "[--version V] [--payload NAME] [--parent ID] [--digest SHA256]",
	  "record a revision of a payload in FILE and mount it read-only at RUN/rev/ID",
	  "--type=squashfs|erofs --offset=N --size=N --image=NAME --version=V --payload=NAME "
	  "--parent=ID --digest=SHA256",
	  "- file" },
	{ "switch", bankctl_rev_switch, "rev switch ID [--no-beneath] [--json]",
	  "switch the current pointer and every workload's view to revision ID", "--no-beneath",
	  "rev" },
	{ "gc", bankctl_rev_gc, "rev gc [--keep N] [--json]",
	  "remove revisions beyond the N newest (default 2), never the current or previous one "
	  "nor one in use",
	  "--keep=N", "" },
	{ "restore", bankctl_rev_restore, "rev restore",
	  "after a reboot: mount the booted bank's revisions (and its image's live payload) and "
	  "the revisions of other files again, and restore the current pointer",
	  "", "" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb workload_subs[] = {
	{ "add", bankctl_workload_add,
	  "workload add NAME (--cgroup PATH | --unit UNIT) --view PATH [--no-fsr]",
	  "register a workload: its cgroup v2 (relative to the cgroup2 root) or systemd unit, and "
	  "the path where it sees the revision",
	  "--cgroup=CGROUP --unit=UNIT --view=PATH --no-fsr", "-" },
	{ "list", bankctl_workload_list, "workload list [--json]",
	  "list the workloads, whether they run and which revision their view shows", "", "" },
	{ "remove", bankctl_workload_remove, "workload remove NAME", "forget a workload", "",
	  "workload" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb livepatch_subs[] = {
	{ "apply", bankctl_livepatch_apply,
	  "livepatch apply IMAGE.bbi [--keyring PATH] [--no-check-time] [--id ID] [--no-beneath] "
	  "[--json]",
	  "stage IMAGE.bbi into the alternate bank and activate it, mount its live payload from "
	  "the bank as a revision and switch every workload to it",
	  "--keyring=PATH --no-check-time --id=ID --no-beneath", "bbi" },
	{ "rollback", bankctl_livepatch_rollback, "livepatch rollback [--no-beneath] [--json]",
	  "switch every workload back to the previous revision (revert hooks run) and restore the "
	  "boot choice",
	  "--no-beneath", "" },
	{ "status", bankctl_livepatch_status, "livepatch status [--json]",
	  "whether a live patch is in progress, the revisions in service and the workloads", "",
	  "" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb desired_subs[] = {
	{ "set", bankctl_desired_set,
	  "desired set NAME VERSION [--live-patch-mode disable|auto|enforce]",
	  "make a depot image the host's desired image, with its live-patch mode",
	  "--live-patch-mode=disable|auto|enforce", "depot -" },
	{ "show", bankctl_desired_show, "desired show [--json]",
	  "the desired image and its live-patch mode", "", "" },
	{ "clear", bankctl_desired_clear, "desired clear", "forget the desired image", "", "" },
	{ NULL }, /* the end */
};

static const struct bankctl_verb verbs[] = {
	{ "status", bankctl_status, "status [--json]",
	  "show the configuration, the banks and the boot state", "", "" },
	{ "image", NULL, NULL,
	  "signed image bundles: build, re-sign, verify, inspect, mount a payload",
	  .subs = image_subs },
	{ "depot", NULL, NULL, "the depot of verified bundles waiting to be staged",
	  .subs = depot_subs },
	{ "disk", NULL, NULL,
	  "partition a disk or image for bootbank (init), or show its partitions (probe)",
	  .subs = disk_subs },
	{ "activate", bankctl_activate, "activate [--tries N] [A|B]",
	  "let the loader boot a staged bank next, with N tries (default: the staged bank)",
	  "--tries=N", "ab" },
	{ "mark-good", bankctl_mark_good, "mark-good [booted|other|A|B]",
	  "confirm a bank (default: the booted one); may raise the security floor", "", "bank" },
	{ "mark-bad", bankctl_mark_bad, "mark-bad [booted|other|A|B] [--reason TEXT]",
	  "mark a bank bad (default: the booted one); the loader will not boot it", "--reason=TEXT",
	  "bank" },
	{ "rollback", bankctl_rollback, "rollback",
	  "boot the other bank from now on (reversible with roll-forward)", "", "" },
	{ "roll-forward", bankctl_roll_forward, "roll-forward",
	  "undo a rollback: boot the bank that was rolled back from", "", "" },
	{ "explain-next-boot", bankctl_explain_next_boot, "explain-next-boot [--json]",
	  "which bank the loader boots next and why, bank by bank", "", "" },
	{ "assess", bankctl_assess,
	  "assess [--timeout SEC] [--no-reboot] [--json] | --is-trial | --fail-reason TEXT",
	  "run the health checks; on a trial boot mark the booted bank good or bad",
	  "--timeout=SEC --no-reboot --is-trial --fail-reason=TEXT", "" },
	{ "boot", bankctl_boot, "boot --simulate [--rollback-key]",
	  "in a sandbox, boot as the loader would: take a try, fall back, record the boot",
	  "--simulate --rollback-key", "" },
	{ "rev", NULL, NULL, "mount revisions: list, add, switch workloads over, gc, restore",
	  .subs = rev_subs },
	{ "workload", NULL, NULL, "the workloads a live patch switches over",
	  .subs = workload_subs },
	{ "livepatch", NULL, NULL,
	  "apply a signed image's live payload to the running workloads, or go back",
	  .subs = livepatch_subs },
	{ "stage", bankctl_stage,
	  "stage IMAGE.bbi|URL|--desired [--activate] [--allow-downgrade] [--ignore-compatible] "
	  "[--keyring PATH] [--no-check-time] [--json]",
	  "verify an image (a file or an http(s) URL) and write it into the alternate bank, "
	  "every chunk verified before it is written",
	  "--desired --activate --allow-downgrade --ignore-compatible --keyring=PATH "
	  "--no-check-time",
	  "bbi" },
	{ "recover", bankctl_recover, "recover [--json]",
	  "finish what a killed bankctl left: temp files, an interrupted stage or live patch", "",
	  "" },
	{ "desired", NULL, NULL,
	  "the desired image (from the depot) and its live-patch mode (disable, auto, enforce)",
	  .subs = desired_subs },
	{ "scan", bankctl_scan, "scan [--json]",
	  "compliance scan: is the image in service the desired one (exit code per state)", "",
	  "" },
	{ "precheck", bankctl_precheck, "precheck [--live-patch-mode M] [--json]",
	  "every check of the live and the reboot path, and the path the policy picks",
	  "--live-patch-mode=disable|auto|enforce", "" },
	{ "remediate", bankctl_remediate, "remediate [--live-patch-mode M] [--reboot] [--json]",
	  "bring the host to the desired image: scan, pre-check, live or reboot path, scan",
	  "--live-patch-mode=disable|auto|enforce --reboot", "" },
	{ "events", bankctl_events, "events [--json] [-n N]",
	  "the last N events (default 20): what the mutating verbs did, step by step",
	  "-n|--lines=N", "" },
	/* Handled by main() before the configuration is read. */
	{ "help", NULL, "help [VERB [SUB-COMMAND]]",
	  "show the help of bankctl, of a verb or of a sub-command (as --help does)", "",
	  "verb -" },
};

/* The options of the program, before the verb (and the common ones after it). */
static const char global_options[] =
	"-h|--help -V|--version -j|--json -c|--config=FILE -r|--root=DIR -w|--wait "
	"--log-level=err|warning|info|debug";
static const char common_options[] = "-j|--json -w|--wait -h|--help";

static const struct bankctl_verb *find_in(const struct bankctl_verb *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n && v[i].name; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static size_t n_subs(const struct bankctl_verb *group)
{
	size_t n = 0;

	while (group->subs && group->subs[n].name)
		n++;
	return n;
}

/* Edit distance of two short words, a swap of neighbours counting as one edit. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[32][32];

	if (la >= BK_ELEMENTSOF(d) || lb >= BK_ELEMENTSOF(d))
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[la][lb];
}

/* Keep word as the best suggestion so far if it is near enough to what was typed. */
static void consider(const char *typed, const char *word, size_t len, const char **best,
		     size_t *best_d)
{
	char w[64];
	size_t d;

	if (len == 0 || len >= sizeof(w))
		return;
	memcpy(w, word, len);
	w[len] = '\0';
	d = distance(typed, w);
	/* A prefix of a word counts as near ("--no-check" for "--no-check-time"). */
	if (strncmp(w, typed, strlen(typed)) == 0 && strlen(typed) >= 2)
		d = 1;
	if (d < *best_d && d <= (strlen(w) < 5 ? 1 : strlen(w) / 3 + 1)) {
		*best = word;
		*best_d = d;
	}
}

/* The closest verb or sub-command name, or NULL. */
static const char *suggest_name(const struct bankctl_verb *v, size_t n, const char *typed)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;

	for (size_t i = 0; i < n && v[i].name; i++)
		consider(typed, v[i].name, strlen(v[i].name), &best, &best_d);
	return best;
}

/*
 * The closest long option in the option lists (each "-x|--name=ARG ..."), copied to buf as
 * "--name"; NULL if none is near.
 */
static const char *suggest_option(const char *typed, const char *const *lists, char *buf,
				  size_t len)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;

	for (; *lists; lists++)
		for (const char *p = *lists; *p;) {
			size_t n = strcspn(p, " ");
			const char *dash = strstr(p, "--");

			if (dash && dash < p + n)
				consider(typed, dash, strcspn(dash, "= "), &best, &best_d);
			p += n;
			p += strspn(p, " ");
		}
	if (!best)
		return NULL;
	(void) snprintf(buf, len, "%.*s", (int) strcspn(best, "= "), best);
	return buf;
}

/* "image build|sign|verify ..." for a group. */
static void group_usage(const struct bankctl_verb *g, char *buf, size_t len)
{
	size_t pos = 0;

	pos += (size_t) snprintf(buf, len, "%s ", g->name);
	for (size_t i = 0; g->subs[i].name && pos < len; i++)
		pos += (size_t) snprintf(buf + pos, len - pos, "%s%s", i ? "|" : "",
					 g->subs[i].name);
	if (pos < len)
		(void) snprintf(buf + pos, len - pos, " ...");
}

/* Print an option list ("-o|--output=OUT.bbi --force") as "  -o, --output OUT.bbi" lines. */
static void print_options(FILE *f, const char *list)
{
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, " ");
		char opt[128];
		char *eq, *bar;

		(void) snprintf(opt, sizeof(opt), "%.*s", (int) n, p);
		eq = strchr(opt, '=');
		if (eq)
			*eq = '\0';
		bar = strchr(opt, '|');
		if (bar && bar[1] == '-' && bar[2] == '-')
			*bar = '\0';
		fprintf(f, "  %s%s%s%s%s\n", opt, bar ? ", " : "", bar ? bar + 1 : "",
			eq ? " " : "", eq ? eq + 1 : "");
		p += n;
		p += strspn(p, " ");
	}
}

static void print_help(FILE *f)
{
	char usage[256];

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
	for (size_t i = 0; i < BK_ELEMENTSOF(verbs); i++) {
		if (verbs[i].subs)
			group_usage(&verbs[i], usage, sizeof(usage));
		fprintf(f, "  %-38s %s\n", verbs[i].subs ? usage : verbs[i].usage, verbs[i].help);
	}
	fprintf(f, "\n'bankctl VERB --help' (or 'bankctl help VERB') shows a verb's sub-commands "
		   "and options.\n");
	fprintf(f, "\nExit codes:\n");
	for (int i = 0; i < _BK_EXIT_MAX; i++)
		fprintf(f, "  %2d  %s\n", i, bk_exit_code_to_string(i));
	fprintf(f, "\nEnvironment: LIBBOOTBANK_DEBUG=all|fs,lock,... traces library calls.\n");
}

/* The help of one verb, group or sub-command, on stdout. */
static void print_verb_help(const struct bankctl_verb *v)
{
	char usage[256];

	if (v->subs) {
		group_usage(v, usage, sizeof(usage));
		printf("usage: bankctl %s\n%s\n\nSub-commands:\n", usage, v->help);
		for (size_t i = 0; v->subs[i].name; i++)
			printf("  %-10s %s\n", v->subs[i].name, v->subs[i].help);
		printf("\n'bankctl %s SUB-COMMAND --help' shows its usage and options.\n", v->name);
		return;
	}
	printf("usage: bankctl %s\n%s\n", v->usage, v->help);
	if (!v->run) /* help */
		return;
	printf("\nOptions:\n");
	if (v->options)
		print_options(stdout, v->options);
	print_options(stdout, common_options);
}

/* bankctl help [VERB [SUB]]. */
static int help_verb(int argc, char **argv)
{
	const struct bankctl_verb *v, *sub;
	const char *near;

	if (argc == 0) {
		print_help(stdout);
		return BK_EXIT_OK;
	}
	if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
		print_verb_help(find_in(verbs, BK_ELEMENTSOF(verbs), "help"));
		return BK_EXIT_OK;
	}
	v = find_in(verbs, BK_ELEMENTSOF(verbs), argv[0]);
	if (!v) {
		near = suggest_name(verbs, BK_ELEMENTSOF(verbs), argv[0]);
		return bankctl_usage(NULL, "unknown verb '%s'%s%s%s", argv[0],
				     near ? "; did you mean '" : "", near ? near : "",
				     near ? "'?" : "");
	}
	if (argc == 1 || !v->subs) {
		if (argc > 1 && !v->subs)
			return bankctl_usage(NULL, "'%s' has no sub-commands", v->name);
		print_verb_help(v);
		return BK_EXIT_OK;
	}
	sub = find_in(v->subs, n_subs(v), argv[1]);
	if (!sub) {
		near = suggest_name(v->subs, n_subs(v), argv[1]);
		return bankctl_usage(NULL, "unknown sub-command '%s %s'%s%s%s", v->name, argv[1],
				     near ? "; did you mean '" : "", near ? near : "",
				     near ? "'?" : "");
	}
	if (argc > 2)
		return bankctl_usage(NULL, "unexpected argument '%s'", argv[2]);
	print_verb_help(sub);
	return BK_EXIT_OK;
}

/* Whether the arguments of a verb ask for help (before a "--"). */
static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return false;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

/* One option list as it is in the table ("-o|--output=OUT.bbi --force"), for __table. */
static void print_table_options(const char *list)
{
	fputs(list ? list : "", stdout);
}

static void print_table_row(const char *kind, const char *path, const struct bankctl_verb *v)
{
	char usage[256];

	if (v->subs)
		group_usage(v, usage, sizeof(usage));
	printf("%s\t%s\t%s\t%s\t", kind, path, v->subs ? usage : v->usage, v->help);
	print_table_options(v->options);
	printf("\t%s\n", v->operands ? v->operands : "");
}

/*
 * bankctl __table: the table, one tab-separated line per entry (KIND PATH USAGE HELP OPTIONS
 * OPERANDS, KIND one of global, common, verb, group, sub) for scripts/gen-cli.sh, which makes
 * the man page's synopsis and the bash completion from it at build time.
 */
static int print_table(void)
{
	char path[128];

	printf("global\t\t\t\t");
	print_table_options(global_options);
	printf("\t\ncommon\t\t\t\t");
	print_table_options(common_options);
	printf("\t\n");
	for (size_t i = 0; i < BK_ELEMENTSOF(verbs); i++) {
		print_table_row(verbs[i].subs ? "group" : "verb", verbs[i].name, &verbs[i]);
		for (size_t j = 0; j < n_subs(&verbs[i]); j++) {
			(void) snprintf(path, sizeof(path), "%s %s", verbs[i].name,
					verbs[i].subs[j].name);
			print_table_row("sub", path, &verbs[i].subs[j]);
		}
	}
	return fflush(stdout) == 0 ? BK_EXIT_OK : BK_EXIT_IO;
}

int bankctl_usage(const struct bankctl_verb *verb, const char *fmt, ...)
{
	va_list ap;

	fputs("bankctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (verb && verb->subs) {
		char usage[256];

		group_usage(verb, usage, sizeof(usage));
		fprintf(stderr, " (usage: bankctl %s)\n", usage);
	} else if (verb)
		fprintf(stderr, " (usage: bankctl %s)\n", verb->usage);
	else
		fputs(" (see bankctl --help)\n", stderr);
	return BK_EXIT_USAGE;
}

/* "invalid option" with the closest option of the verb when the bad one was a long one. */
static int invalid_option(const struct bankctl_verb *verb, const char *opts, char **argv)
{
	const char *lists[] = { opts ? opts : "", common_options, NULL };
	const char *bad = NULL, *near = NULL;
	char typed[64], buf[64];

	if (argv && optind > 0)
		bad = argv[optind - 1];
	if (bad && strncmp(bad, "--", 2) == 0 && strcspn(bad, "=") < sizeof(typed)) {
		(void) snprintf(typed, sizeof(typed), "%.*s", (int) strcspn(bad, "="), bad);
		near = suggest_option(typed, lists, buf, sizeof(buf));
		if (near && strcmp(near, typed) == 0) /* known, its argument was missing */
			near = NULL;
	}
	if (near)
		return bankctl_usage(verb, "invalid option; did you mean '%s'?", near);
	return bankctl_usage(verb, "invalid option");
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
		print_verb_help(verb);
		exit(BK_EXIT_OK);
	case '?':
		(void) invalid_option(verb, verb ? verb->options : NULL,
				      verb == ctx->verb ? ctx->argv : NULL);
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
	/* Never blocks (a FIFO, a device), refused before any lock is taken (issue 17). */
	return bk_bundle_open_path(AT_FDCWD, path, ret_fd, err);
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

	if (argc == 2 && strcmp(argv[1], "__table") == 0)
		return print_table();

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
			return invalid_option(NULL, global_options, argv);
		}
	}
	if (optind >= argc)
		return bankctl_usage(NULL, "missing verb");
	verb = find_in(verbs, BK_ELEMENTSOF(verbs), argv[optind]);
	if (!verb) {
		const char *near = suggest_name(verbs, BK_ELEMENTSOF(verbs), argv[optind]);

		return bankctl_usage(NULL, "unknown verb '%s'%s%s%s", argv[optind],
				     near ? "; did you mean '" : "", near ? near : "",
				     near ? "'?" : "");
	}
	if (strcmp(verb->name, "help") == 0)
		return help_verb(argc - optind - 1, argv + optind + 1);
	if (verb->subs) {
		const struct bankctl_verb *group = verb;
		const char *near;

		if (optind + 1 >= argc) {
			char names[128];
			size_t pos = 0;

			for (size_t i = 0; i < n_subs(group) && pos < sizeof(names); i++)
				pos += (size_t) snprintf(names + pos, sizeof(names) - pos, "%s%s",
							 i ? ", " : "", group->subs[i].name);
			return bankctl_usage(group, "missing sub-command (%s)", names);
		}
		if (strcmp(argv[optind + 1], "--help") == 0 ||
		    strcmp(argv[optind + 1], "-h") == 0) {
			print_verb_help(group);
			return BK_EXIT_OK;
		}
		verb = find_in(group->subs, n_subs(group), argv[optind + 1]);
		if (!verb) {
			near = suggest_name(group->subs, n_subs(group), argv[optind + 1]);
			return bankctl_usage(group, "unknown sub-command '%s'%s%s%s",
					     argv[optind + 1], near ? "; did you mean '" : "",
					     near ? near : "", near ? "'?" : "");
		}
		optind++;
	}
	if (wants_help(argc - optind, argv + optind)) {
		print_verb_help(verb);
		return BK_EXIT_OK;
	}

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
		ctx.verb = verb;
		ctx.argv = argv + optind - 1;
		ret = verb->run(&ctx, argc - optind + 1, argv + optind - 1);
	}

	bk_op_ctx_release(&ctx.op);
	if (fflush(stdout) != 0 && ret == BK_EXIT_OK) {
		bk_log(LOG_ERR, "cannot write output: %m");
		ret = BK_EXIT_IO;
	}
	return ret;
}

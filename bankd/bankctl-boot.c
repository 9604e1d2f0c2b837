/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bankctl verbs over the boot state: activate, explain-next-boot, boot --simulate, mark-good,
 * mark-bad, rollback, roll-forward; and the helpers status shares (load the boot state, find
 * the booted bank, the JSON of a boot state). The rule is lib/bk-select.c's; the store is the
 * configured backend's (bootloader-hooks/bk-boot.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bankctl-events.h"
#include "bankctl.h"
#include "bk-boot.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-log.h"
#include "bk-maint.h"
#include "bk-select.h"

#define CMDLINE_MAX_SIZE (64 * 1024)

/* ---- helpers shared with status -------------------------------------------------------- */

int bankctl_json_add_nullable(struct json_object *o, const char *key, const char *s)
{
	/* json-c's null is a NULL pointer: add it directly (bk_json_add() takes NULL as ENOMEM). */
	if (!s)
		return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
	return bk_json_add_string(o, key, s);
}

void bankctl_listf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	const char *sep = *pos > 0 ? "; " : "";
	va_list ap;
	int n;

	if (*pos + 1 >= len)
		return;
	n = snprintf(buf + *pos, len - *pos, "%s", sep);
	if (n < 0)
		return;
	*pos = (size_t) n < len - *pos ? *pos + (size_t) n : len - 1;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*pos = (size_t) n < len - *pos ? *pos + (size_t) n : len - 1;
}

int bankctl_boot_load(struct bankctl *ctx, struct bk_boot **ret_boot, struct bk_boot_data *ret,
		      struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_env env = { ctx->root_fd, ctx->root, &ctx->config };
	int r;

	r = bk_boot_open(ctx->config.bootloader, &env, &b, err);
	if (r < 0)
		return r;
	r = bk_boot_load(b, ret, err);
	if (r < 0)
		return r;
	*ret_boot = TAKE_PTR(b);
	return 0;
}

/* True when the root is the host's "/" (not a sandbox). */
static bool root_is_host(struct bankctl *ctx)
{
	struct stat a, b;

	if (fstat(ctx->root_fd, &a) < 0 || stat("/", &b) < 0)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int bankctl_booted(struct bankctl *ctx, struct bk_booted *ret,
		   enum bankctl_booted_source *ret_source, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *cmdline = NULL;
	struct bk_booted b;
	int r;

	dfd = bk_open_beneath(ctx->root_fd, BANKCTL_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd >= 0) {
		char path[4096];

		(void) snprintf(path, sizeof(path), "%s",
				bankctl_path(ctx, BANKCTL_RUN_DIR "/" BK_BOOTED_FILE));
		r = bk_booted_read_at(dfd, path, &b, err);
		if (r == 0) {
			*ret = b;
			if (ret_source)
				*ret_source = BANKCTL_BOOTED_RECORD;
			return 0;
		}
		if (r != -ENOENT)
			return r;
	} else if (dfd != -ENOENT) {
		return bk_err_set(err, dfd, "cannot open '%s': %m",
				  bankctl_path(ctx, BANKCTL_RUN_DIR));
	}

	/* A sandbox has no kernel of its own: only boot --simulate tells what it booted. */
	if (!root_is_host(ctx))
		return 1;
	r = bk_read_file_at(AT_FDCWD, "/proc/cmdline", CMDLINE_MAX_SIZE, &cmdline, NULL, err);
	if (r < 0)
		return r;
	r = bk_booted_parse_cmdline(cmdline, &b, err);
	if (r != 0)
		return r;
	*ret = b;
	if (ret_source)
		*ret_source = BANKCTL_BOOTED_CMDLINE;
	return 0;
}

const char *bankctl_booted_source_to_string(struct bankctl *ctx, enum bankctl_booted_source s)
{
	switch (s) {
	case BANKCTL_BOOTED_RECORD:
		return bankctl_path(ctx, BANKCTL_RUN_DIR "/" BK_BOOTED_FILE);
	case BANKCTL_BOOTED_CMDLINE:
		return "/proc/cmdline";
	default:
		return "nowhere";
	}
}

static struct json_object *decision_json(const struct bk_boot_decision *d)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	_cleanup_(json_object_putp) struct json_object *bad = json_object_new_array();
	char text[BK_BOOTSTATE_TEXT_MAX];

	if (!o || !bad || bk_bootstate_format(&d->next, text, sizeof(text)) < 0)
		return NULL;
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (d->marked_bad[i] &&
		    json_object_array_add(bad, json_object_new_string(bk_bank_id_to_string(
						       (enum bk_bank_id) i))) < 0)
			return NULL;
	if (bankctl_json_add_nullable(o, "bank", bk_bank_id_to_string(d->bank)) < 0 ||
	    bankctl_json_add_nullable(o, "reason", bk_boot_reason_to_string(d->reason)) < 0 ||
	    bk_json_add_bool(o, "try_taken", d->try_taken) < 0 ||
	    bk_json_add(o, "marked_bad", TAKE_PTR(bad)) < 0 ||
	    bk_json_add_bool(o, "pin_cleared", d->pin_cleared) < 0 ||
	    bk_json_add_bool(o, "rollback_key", d->key_pressed) < 0 ||
	    bk_json_add_bool(o, "rollback_key_applied", d->key_applied) < 0 ||
	    bk_json_add_bool(o, "changed", d->changed) < 0 ||
	    bk_json_add_string(o, "state_after", text) < 0)
		return NULL;
	return TAKE_PTR(o);
}

struct json_object *bankctl_bootstate_json(const struct bk_boot_data *d)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *banks = json_object_new_object();
	struct bk_boot_decision next;
	char text[BK_BOOTSTATE_TEXT_MAX];

	if (!o || bk_json_add(o, "banks", banks) < 0)
		return NULL;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_boot *bb = &d->state.bank[i];
		struct json_object *b = json_object_new_object();

		if (bk_json_add(banks, bk_bank_id_to_string((enum bk_bank_id) i), b) < 0 ||
		    bk_json_add_string(b, "state", bk_bank_state_to_string(bb->state)) < 0 ||
		    bk_json_add_u64(b, "generation", bb->generation) < 0 ||
		    bk_json_add_u64(b, "tries_left", bb->tries_left) < 0 ||
		    bk_json_add_u64(b, "epoch", bb->epoch) < 0 ||
		    bk_json_add_bool(b, "eligible",
				     bk_bank_is_eligible(&d->state, (enum bk_bank_id) i)) < 0 ||
		    bankctl_json_add_nullable(b, "bad_reason",
					      bb->state == BK_BANK_BAD && d->bad_reason[i][0] ?
						      d->bad_reason[i] :
						      NULL) < 0)
			return NULL;
	}
	if (bk_bootstate_format(&d->state, text, sizeof(text)) < 0 ||
	    bk_select_decide(&d->state, false, &next, NULL) < 0)
		return NULL;
	if (bk_json_add_u64(o, "floor", d->state.floor) < 0 ||
	    bankctl_json_add_nullable(o, "pin", bk_bank_id_to_string(d->state.pin)) < 0 ||
	    bk_json_add_string(o, "text", text) < 0 ||
	    bk_json_add(o, "next_boot", decision_json(&next)) < 0)
		return NULL;
	if (d->has_last) {
		struct json_object *last = json_object_new_object();

		if (bk_json_add(o, "last_boot", last) < 0 ||
		    bk_json_add_string(last, "bank", bk_bank_id_to_string(d->last.bank)) < 0 ||
		    bk_json_add_string(last, "reason", bk_boot_reason_to_string(d->last.reason)) <
			    0 ||
		    bk_json_add_u64(last, "time", d->last.time) < 0)
			return NULL;
	} else if (json_object_object_add(o, "last_boot", NULL) < 0) {
		return NULL;
	}
	return TAKE_PTR(o);
}

/* ---- common steps of the mutating verbs ------------------------------------------------ */

/*
 * Lock, then load: every mutating verb reads the state it changes under the lock. what (NULL:
 * allowed) names a verb that partial maintenance mode refuses: a live patch settles the boot
 * choice when it ends, and nothing else may change it meanwhile.
 */
static int lock_and_load(struct bankctl *ctx, const char *what, struct bk_boot **ret_boot,
			 struct bk_boot_data *ret, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bankctl_lock(ctx, err);
	if (r < 0)
		return r;
	if (what) {
		dfd = bk_open_beneath(ctx->root_fd, BANKCTL_STATE_DIR,
				      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
		if (dfd >= 0) {
			r = bk_maint_check(dfd, what, err);
			if (r < 0)
				return r;
		}
	}
	return bankctl_boot_load(ctx, ret_boot, ret, err);
}

/* A failure once the lock is held is an event (`bankctl status` shows the last one). */
static int fail(struct bankctl *ctx, const char *verb, int r, const struct bk_err *err)
{
	if (ctx->lock_fd >= 0)
		bankctl_event(ctx, verb, r, err, "%s", "");
	return bankctl_fail(r, err);
}

/* "A", "B", "booted" or "other" (the booted bank's other) to a bank. */
static int parse_bank_word(struct bankctl *ctx, const char *word, enum bk_bank_id *ret,
			   struct bk_err *err)
{
	struct bk_booted b;
	enum bk_bank_id id;
	int r;

	id = bk_bank_id_from_string(word);
	if (id >= 0 && strlen(word) == 1) {
		*ret = id;
		return 0;
	}
	if (strcmp(word, "booted") != 0 && strcmp(word, "other") != 0)
		return bk_err_set(err, -EINVAL,
				  "unknown bank '%s' (expected booted, other, A or B)", word);
	r = bankctl_booted(ctx, &b, NULL, err);
	if (r < 0)
		return r;
	if (r > 0)
		return bk_err_set(err, -ENOENT,
				  "cannot tell which bank is booted: no '%s' (run 'bankctl boot "
				  "--simulate' in a sandbox) and no bootbank.bank= on the kernel "
				  "command line; name the bank (A or B)",
				  bankctl_path(ctx, BANKCTL_RUN_DIR "/" BK_BOOTED_FILE));
	*ret = strcmp(word, "booted") == 0 ? b.bank : bk_bank_other(b.bank);
	return 0;
}

static void print_next(const struct bk_bootstate *s)
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

/* The --json answer of a mutating verb: what it did and the boot state after it. */
static int print_result_json(const char *verb, enum bk_bank_id bank, const struct bk_boot_data *d)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_string(o, "verb", verb) < 0 ||
	    bankctl_json_add_nullable(o, "bank", bk_bank_id_to_string(bank)) < 0 ||
	    bk_json_add(o, "boot", bankctl_bootstate_json(d)) < 0)
		return -ENOMEM;
	puts(bk_json_to_string(o, true));
	return 0;
}

/* Options of the verbs: the common ones, then each verb's own. */
#define OPT_TRIES	 0x100
#define OPT_REASON	 0x101
#define OPT_SIMULATE	 0x102
#define OPT_ROLLBACK_KEY 0x103

static int parse_common_only(struct bankctl *ctx, const struct bankctl_verb *verb, int argc,
			     char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1)
		if (bankctl_common_option(ctx, c, verb) <= 0)
			return -1;
	return 0;
}

/* ---- activate -------------------------------------------------------------------------- */

static const struct bankctl_verb activate_verb = { "activate", NULL, "activate [--tries N] [A|B]",
						   "" };

int bankctl_activate(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS,
						  { "tries", required_argument, NULL, OPT_TRIES },
						  { NULL, 0, NULL, 0 } };
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	enum bk_bank_id bank = _BK_BANK_INVALID;
	uint64_t tries = ctx->config.tries;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_TRIES) {
			if (bk_parse_u64(optarg, &tries) < 0 || tries < 1 || tries > BK_TRIES_MAX)
				return bankctl_usage(
					&activate_verb,
					"--tries must be a number from 1 to %u, not '%s'",
					BK_TRIES_MAX, optarg);
			continue;
		}
		if (bankctl_common_option(ctx, c, &activate_verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc) {
		bank = bk_bank_id_from_string(argv[optind]);
		if (bank < 0 || strlen(argv[optind]) != 1)
			return bankctl_usage(&activate_verb, "unknown bank '%s' (expected A or B)",
					     argv[optind]);
		optind++;
	}
	if (optind < argc)
		return bankctl_usage(&activate_verb, "unexpected argument '%s'", argv[optind]);

	r = lock_and_load(ctx, "activate", &b, &d, &err);
	if (r < 0)
		return fail(ctx, "activate", r, &err);

	if (bank == _BK_BANK_INVALID) {
		/* The default is the staged bank, when there is exactly one. */
		bool a = d.state.bank[BK_BANK_A].state == BK_BANK_STAGED;
		bool bb = d.state.bank[BK_BANK_B].state == BK_BANK_STAGED;

		if (a && bb)
			return bankctl_usage(&activate_verb,
					     "both banks are staged: name the one to activate");
		if (!a && !bb) {
			(void) bk_err_set(&err, -ENOENT,
					  "no staged bank to activate (bank A is %s, bank B is %s)",
					  bk_bank_state_to_string(d.state.bank[BK_BANK_A].state),
					  bk_bank_state_to_string(d.state.bank[BK_BANK_B].state));
			return fail(ctx, "activate", err.code, &err);
		}
		bank = a ? BK_BANK_A : BK_BANK_B;
	}

	r = bk_select_activate(&d.state, bank, tries, &d.state, &err);
	if (r < 0)
		return fail(ctx, "activate", r, &err);
	(void) bk_boot_data_set_bad_reason(&d, bank, NULL, NULL);
	r = bk_boot_save(b, &d, &err);
	if (r < 0)
		return fail(ctx, "activate", r, &err);

	bankctl_event(ctx, "activate", 0, NULL,
		      "bank %s activated: generation %" PRIu64 ", %" PRIu64 " tries",
		      bk_bank_id_to_string(bank), d.state.bank[bank].generation, tries);
	if (ctx->json) {
		r = print_result_json("activate", bank, &d);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}
	printf("bank %s activated: generation %" PRIu64 ", %" PRIu64 " %s to boot and be marked "
	       "good\n",
	       bk_bank_id_to_string(bank), d.state.bank[bank].generation, tries,
	       tries == 1 ? "try" : "tries");
	print_next(&d.state);
	return BK_EXIT_OK;
}

/* ---- mark-good, mark-bad --------------------------------------------------------------- */

static const struct bankctl_verb mark_good_verb = { "mark-good", NULL,
						    "mark-good [booted|other|A|B]", "" };
static const struct bankctl_verb mark_bad_verb = { "mark-bad", NULL,
						   "mark-bad [booted|other|A|B] [--reason TEXT]",
						   "" };

static int mark(struct bankctl *ctx, int argc, char **argv, bool good)
{
	static const struct option longopts[] = { BANKCTL_COMMON_LONGOPTS,
						  { "reason", required_argument, NULL, OPT_REASON },
						  { NULL, 0, NULL, 0 } };
	const struct bankctl_verb *verb = good ? &mark_good_verb : &mark_bad_verb;
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	const char *word = "booted", *reason = NULL;
	enum bk_bank_id bank = _BK_BANK_INVALID;
	uint64_t old_floor;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_REASON && !good) {
			struct bk_boot_data probe;

			bk_boot_data_init(&probe);
			if (bk_boot_data_set_bad_reason(&probe, BK_BANK_A, optarg, &err) < 0)
				return bankctl_usage(verb, "--reason: %s", err.msg);
			reason = optarg;
			continue;
		}
		if (c == OPT_REASON)
			c = '?';
		if (bankctl_common_option(ctx, c, verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		word = argv[optind++];
	if (optind < argc)
		return bankctl_usage(verb, "unexpected argument '%s'", argv[optind]);
	if (bk_bank_id_from_string(word) < 0 && strcmp(word, "booted") != 0 &&
	    strcmp(word, "other") != 0)
		return bankctl_usage(verb, "unknown bank '%s' (expected booted, other, A or B)",
				     word);

	r = lock_and_load(ctx, good ? NULL : "mark-bad", &b, &d, &err);
	if (r < 0)
		return fail(ctx, verb->name, r, &err);
	r = parse_bank_word(ctx, word, &bank, &err);
	if (r < 0)
		return fail(ctx, verb->name, r, &err);

	old_floor = d.state.floor;
	if (good) {
		r = bk_select_mark_good(&d.state, bank, &d.state, &err);
		if (r < 0)
			return fail(ctx, verb->name, r, &err);
		(void) bk_boot_data_set_bad_reason(&d, bank, NULL, NULL);
	} else {
		r = bk_select_mark_bad(&d.state, bank, &d.state, &err);
		if (r < 0)
			return fail(ctx, verb->name, r, &err);
		r = bk_boot_data_set_bad_reason(
			&d, bank, reason ? reason : "marked bad with 'bankctl mark-bad'", &err);
		if (r < 0)
			return fail(ctx, verb->name, r, &err);
	}
	r = bk_boot_save(b, &d, &err);
	if (r < 0)
		return fail(ctx, verb->name, r, &err);

	bankctl_event(ctx, verb->name, 0, NULL, "bank %s marked %s%s%s", bk_bank_id_to_string(bank),
		      good ? "good" : "bad", good ? "" : ": ", good ? "" : d.bad_reason[bank]);
	if (ctx->json) {
		r = print_result_json(verb->name, bank, &d);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}
	if (good) {
		printf("bank %s marked good\n", bk_bank_id_to_string(bank));
		if (d.state.floor != old_floor)
			printf("  security floor raised from %" PRIu64 " to %" PRIu64 "\n",
			       old_floor, d.state.floor);
		else
			printf("  security floor stays %" PRIu64 "\n", d.state.floor);
	} else {
		printf("bank %s marked bad: %s\n", bk_bank_id_to_string(bank), d.bad_reason[bank]);
	}
	print_next(&d.state);
	return BK_EXIT_OK;
}

int bankctl_mark_good(struct bankctl *ctx, int argc, char **argv)
{
	return mark(ctx, argc, argv, true);
}

int bankctl_mark_bad(struct bankctl *ctx, int argc, char **argv)
{
	return mark(ctx, argc, argv, false);
}

/* ---- rollback, roll-forward ------------------------------------------------------------ */

static const struct bankctl_verb rollback_verb = { "rollback", NULL, "rollback", "" };
static const struct bankctl_verb roll_forward_verb = { "roll-forward", NULL, "roll-forward", "" };

static int roll(struct bankctl *ctx, int argc, char **argv, bool back)
{
	const struct bankctl_verb *verb = back ? &rollback_verb : &roll_forward_verb;
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	enum bk_bank_id bank = _BK_BANK_INVALID, from;
	int r;

	if (parse_common_only(ctx, verb, argc, argv) < 0)
		return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(verb, "unexpected argument '%s'", argv[optind]);

	r = lock_and_load(ctx, verb->name, &b, &d, &err);
	if (r < 0)
		return fail(ctx, verb->name, r, &err);
	from = d.state.pin;
	if (back)
		r = bk_select_rollback(&d.state, &d.state, &bank, &err);
	else
		r = bk_select_roll_forward(&d.state, &d.state, &bank, &err);
	if (r < 0)
		return fail(ctx, verb->name, r, &err);
	r = bk_boot_save(b, &d, &err);
	if (r < 0)
		return fail(ctx, verb->name, r, &err);

	bankctl_event(ctx, verb->name, 0, NULL, "bank %s boots next%s", bk_bank_id_to_string(bank),
		      back ? " (rollback pin)" : ": pin cleared");
	if (ctx->json) {
		r = print_result_json(verb->name, bank, &d);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}
	if (back)
		printf("rolled back: bank %s boots from now on (reason rollback); "
		       "'bankctl roll-forward' returns to bank %s\n",
		       bk_bank_id_to_string(bank), bk_bank_id_to_string(bk_bank_other(bank)));
	else
		printf("rolled forward: the rollback to bank %s is over\n",
		       bk_bank_id_to_string(from));
	print_next(&d.state);
	return BK_EXIT_OK;
}

int bankctl_rollback(struct bankctl *ctx, int argc, char **argv)
{
	return roll(ctx, argc, argv, true);
}

int bankctl_roll_forward(struct bankctl *ctx, int argc, char **argv)
{
	return roll(ctx, argc, argv, false);
}

/* ---- explain-next-boot ----------------------------------------------------------------- */

static const struct bankctl_verb explain_verb = { "explain-next-boot", NULL,
						  "explain-next-boot [--json]", "" };

/* "bank B tries 3 -> 2 (trying); bank A marked bad; pin cleared" or "nothing". */
static void describe_changes(const struct bk_bootstate *s, const struct bk_boot_decision *d,
			     char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (d->marked_bad[i])
			bankctl_listf(buf, len, &pos, "bank %s marked bad (no tries left)",
				      bk_bank_id_to_string((enum bk_bank_id) i));
	if (d->pin_cleared)
		bankctl_listf(buf, len, &pos, "pin on bank %s cleared (not eligible)",
			      bk_bank_id_to_string(s->pin));
	if (d->key_applied)
		bankctl_listf(buf, len, &pos, "pin set to bank %s", bk_bank_id_to_string(d->bank));
	if (d->try_taken)
		bankctl_listf(buf, len, &pos,
			      "bank %s takes a try: %" PRIu64 " -> %" PRIu64 " left, now trying",
			      bk_bank_id_to_string(d->bank), s->bank[d->bank].tries_left,
			      d->next.bank[d->bank].tries_left);
	if (pos == 0)
		snprintf(buf, len, "nothing");
}

static int explain_json(const struct bk_boot_data *data, const struct bk_boot_explain *x)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
	struct json_object *banks = json_object_new_object();
	static const struct {
		unsigned flag;
		const char *name;
	} whys[] = {
		{ BK_INELIGIBLE_EMPTY, "empty" },
		{ BK_INELIGIBLE_BAD, "bad" },
		{ BK_INELIGIBLE_NOT_ACTIVATED, "not-activated" },
		{ BK_INELIGIBLE_NO_TRIES, "no-tries-left" },
		{ BK_INELIGIBLE_BELOW_FLOOR, "below-floor" },
	};

	if (!o || bk_json_add_string(o, "summary", x->summary) < 0 ||
	    bk_json_add(o, "next", decision_json(&x->next)) < 0 ||
	    bk_json_add(o, "with_rollback_key", decision_json(&x->with_key)) < 0 ||
	    bk_json_add(o, "banks", banks) < 0 ||
	    bk_json_add_u64(o, "floor", data->state.floor) < 0 ||
	    bankctl_json_add_nullable(o, "pin", bk_bank_id_to_string(data->state.pin)) < 0)
		return -ENOMEM;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_explain *e = &x->bank[i];
		const struct bk_bank_boot *bb = &data->state.bank[i];
		struct json_object *b = json_object_new_object();
		struct json_object *why = json_object_new_array();

		if (bk_json_add(banks, bk_bank_id_to_string((enum bk_bank_id) i), b) < 0 ||
		    bk_json_add(b, "why_not", why) < 0)
			return -ENOMEM;
		for (size_t k = 0; k < BK_ELEMENTSOF(whys); k++)
			if ((e->ineligible & whys[k].flag) &&
			    json_object_array_add(why, json_object_new_string(whys[k].name)) < 0)
				return -ENOMEM;
		if (bk_json_add_string(b, "state", bk_bank_state_to_string(bb->state)) < 0 ||
		    bk_json_add_u64(b, "generation", bb->generation) < 0 ||
		    bk_json_add_u64(b, "tries_left", bb->tries_left) < 0 ||
		    bk_json_add_u64(b, "epoch", bb->epoch) < 0 ||
		    bk_json_add_bool(b, "eligible", e->eligible) < 0 ||
		    bk_json_add_bool(b, "intended", e->intended) < 0 ||
		    bk_json_add_bool(b, "pinned", e->pinned) < 0 ||
		    bk_json_add_string(b, "text", e->text) < 0)
			return -ENOMEM;
	}
	puts(bk_json_to_string(o, true));
	return 0;
}

int bankctl_explain_next_boot(struct bankctl *ctx, int argc, char **argv)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_explain x;
	struct bk_boot_data d;
	struct bk_err err = { 0 };
	char changes[512];
	int r;

	if (parse_common_only(ctx, &explain_verb, argc, argv) < 0)
		return BK_EXIT_USAGE;
	if (optind < argc)
		return bankctl_usage(&explain_verb, "unexpected argument '%s'", argv[optind]);

	/* Read-only: no lock; the store is replaced atomically, so a read sees one version. */
	r = bankctl_boot_load(ctx, &b, &d, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = bk_select_explain(&d.state, &x, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	if (ctx->json) {
		r = explain_json(&d, &x);
		return r < 0 ? bankctl_fail(r, NULL) : BK_EXIT_OK;
	}

	printf("next boot: %s\n", x.summary);
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_explain *e = &x.bank[i];

		printf("  bank %s  %s%s%s\n", bk_bank_id_to_string((enum bk_bank_id) i), e->text,
		       e->intended ? "  [newest]" : "", e->pinned ? "  [pinned]" : "");
	}
	printf("  security floor %" PRIu64 ", ", d.state.floor);
	if (d.state.pin == _BK_BANK_INVALID)
		printf("no rollback pin\n");
	else
		printf("rollback pin on bank %s\n", bk_bank_id_to_string(d.state.pin));
	describe_changes(&d.state, &x.next, changes, sizeof(changes));
	printf("  the loader saves before booting: %s\n", changes);
	if (x.with_key.key_applied)
		printf("  with the rollback key: bank %s boots (rollback, kept until "
		       "'bankctl roll-forward')\n",
		       bk_bank_id_to_string(x.with_key.bank));
	else
		printf("  with the rollback key: ignored (the other bank is not eligible)\n");
	return BK_EXIT_OK;
}

/* ---- boot --simulate ------------------------------------------------------------------- */

static const struct bankctl_verb boot_verb = { "boot", NULL, "boot --simulate [--rollback-key]",
					       "" };

static int record_booted(struct bankctl *ctx, const struct bk_booted *booted, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char path[4096];
	int r;

	r = bankctl_open_dir(ctx, BANKCTL_RUN_DIR, true, &dfd, err);
	if (r < 0)
		return r;
	(void) snprintf(path, sizeof(path), "%s",
			bankctl_path(ctx, BANKCTL_RUN_DIR "/" BK_BOOTED_FILE));
	if (!booted) {
		if (unlinkat(dfd, BK_BOOTED_FILE, 0) < 0 && errno != ENOENT)
			return bk_err_set(err, -errno, "cannot remove '%s': %m", path);
		return 0;
	}
	return bk_booted_write_at(dfd, path, booted, err);
}

int bankctl_boot(struct bankctl *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		BANKCTL_COMMON_LONGOPTS,
		{ "simulate", no_argument, NULL, OPT_SIMULATE },
		{ "rollback-key", no_argument, NULL, OPT_ROLLBACK_KEY },
		{ NULL, 0, NULL, 0 },
	};
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_decision dec;
	struct bk_boot_data d;
	struct bk_bootstate before;
	struct bk_err err = { 0 };
	bool simulate = false, key = false;
	char changes[512];
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "jhw", longopts, NULL)) != -1) {
		if (c == OPT_SIMULATE)
			simulate = true;
		else if (c == OPT_ROLLBACK_KEY)
			key = true;
		else if (bankctl_common_option(ctx, c, &boot_verb) <= 0)
			return BK_EXIT_USAGE;
	}
	if (optind < argc)
		return bankctl_usage(&boot_verb, "unexpected argument '%s'", argv[optind]);
	if (!simulate)
		return bankctl_usage(&boot_verb, "only a simulated boot exists: add --simulate");
	/* It changes the boot state as the loader would: never behind the real loader's back. */
	if (root_is_host(ctx))
		return bankctl_usage(&boot_verb,
				     "boot --simulate runs on a sandbox only (--root DIR), not on "
				     "the host's '/'");

	r = lock_and_load(ctx, NULL, &b, &d, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	before = d.state;
	r = bk_select_decide(&d.state, key, &dec, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	/* What the loader persists before the kernel starts. */
	d.state = dec.next;
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (dec.marked_bad[i])
			(void) bk_boot_data_set_bad_reason(
				&d, (enum bk_bank_id) i,
				"no tries left: no boot of it was confirmed with mark-good", NULL);
	if (dec.reason != BK_REASON_NONE) {
		d.has_last = true;
		d.last.bank = dec.bank;
		d.last.reason = dec.reason;
		d.last.time = (uint64_t) time(NULL);
	}
	r = bk_boot_save(b, &d, &err);
	if (r < 0)
		return bankctl_fail(r, &err);
	r = record_booted(ctx, dec.reason == BK_REASON_NONE ? NULL : &d.last, &err);
	if (r < 0)
		return bankctl_fail(r, &err);

	if (ctx->json) {
		_cleanup_(json_object_putp) struct json_object *o = decision_json(&dec);

		if (!o)
			return bankctl_fail(-ENOMEM, NULL);
		puts(bk_json_to_string(o, true));
	} else if (dec.reason == BK_REASON_NONE) {
		printf("nothing booted: both banks are empty\n");
	} else {
		printf("booted bank %s (reason %s)\n", bk_bank_id_to_string(dec.bank),
		       bk_boot_reason_to_string(dec.reason));
		printf("  kernel command line: bootbank.bank=%s bootbank.reason=%s\n",
		       bk_bank_id_to_string(dec.bank), bk_boot_reason_to_string(dec.reason));
		describe_changes(&before, &dec, changes, sizeof(changes));
		printf("  saved before booting: %s\n", changes);
		if (dec.key_pressed && !dec.key_applied)
			printf("  rollback key ignored: bank %s is not eligible\n",
			       bk_bank_id_to_string(bk_bank_other(dec.bank)));
		if (dec.reason == BK_REASON_EMERGENCY)
			printf("  emergency: no bank is eligible; bank %s boots as it is\n",
			       bk_bank_id_to_string(dec.bank));
	}
	if (dec.reason == BK_REASON_NONE) {
		(void) bk_err_set(&err, -ENOENT, "nothing to boot: both banks are empty");
		return bankctl_fail(err.code, &err);
	}
	return BK_EXIT_OK;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The operations over the boot state: activate, mark-good, mark-bad, rollback, roll-forward,
 * explain-next-boot, boot --simulate; and what status shares with them (load the boot state,
 * find the booted bank, the JSON of a boot state). The rule is lib/bk-select.c's; the store is
 * the configured backend's (bootloader-hooks/bk-boot.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bk-boot.h"
#include "bk-fs.h"
#include "bk-json.h"
#include "bk-maint.h"
#include "bk-op-boot.h"
#include "bk-op.h"

#define CMDLINE_MAX_SIZE (64 * 1024)

int bk_op_boot_load(struct bk_op_ctx *ctx, struct bk_boot **ret_boot, struct bk_boot_data *ret,
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

int bk_op_booted(struct bk_op_ctx *ctx, struct bk_booted *ret, enum bk_op_booted_source *ret_source,
		 struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	_cleanup_free_ char *cmdline = NULL;
	struct bk_booted b;
	int r;

	dfd = bk_open_beneath(ctx->root_fd, BK_OP_RUN_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
			      false);
	if (dfd >= 0) {
		char path[4096];

		(void) snprintf(path, sizeof(path), "%s",
				bk_op_path(ctx, BK_OP_RUN_DIR "/" BK_BOOTED_FILE));
		r = bk_booted_read_at(dfd, path, &b, err);
		if (r == 0) {
			*ret = b;
			if (ret_source)
				*ret_source = BK_OP_BOOTED_RECORD;
			return 0;
		}
		if (r != -ENOENT)
			return r;
	} else if (dfd != -ENOENT) {
		return bk_err_set(err, dfd, "cannot open '%s': %m", bk_op_path(ctx, BK_OP_RUN_DIR));
	}

	/* A sandbox has no kernel of its own: only boot --simulate tells what it booted. */
	if (!bk_op_root_is_host(ctx))
		return 1;
	r = bk_read_file_at(AT_FDCWD, "/proc/cmdline", CMDLINE_MAX_SIZE, &cmdline, NULL, err);
	if (r < 0)
		return r;
	r = bk_booted_parse_cmdline(cmdline, &b, err);
	if (r != 0)
		return r;
	*ret = b;
	if (ret_source)
		*ret_source = BK_OP_BOOTED_CMDLINE;
	return 0;
}

const char *bk_op_booted_source_to_string(struct bk_op_ctx *ctx, enum bk_op_booted_source s)
{
	switch (s) {
	case BK_OP_BOOTED_RECORD:
		return bk_op_path(ctx, BK_OP_RUN_DIR "/" BK_BOOTED_FILE);
	case BK_OP_BOOTED_CMDLINE:
		return "/proc/cmdline";
	default:
		return "nowhere";
	}
}

struct json_object *bk_op_decision_json(const struct bk_boot_decision *d)
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
	if (bk_op_json_add_nullable(o, "bank", bk_bank_id_to_string(d->bank)) < 0 ||
	    bk_op_json_add_nullable(o, "reason", bk_boot_reason_to_string(d->reason)) < 0 ||
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

struct json_object *bk_op_bootstate_json(const struct bk_boot_data *d)
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
		    bk_op_json_add_nullable(b, "bad_reason",
					    bb->state == BK_BANK_BAD && d->bad_reason[i][0] ?
						    d->bad_reason[i] :
						    NULL) < 0)
			return NULL;
	}
	if (bk_bootstate_format(&d->state, text, sizeof(text)) < 0 ||
	    bk_select_decide(&d->state, false, &next, NULL) < 0)
		return NULL;
	if (bk_json_add_u64(o, "floor", d->state.floor) < 0 ||
	    bk_op_json_add_nullable(o, "pin", bk_bank_id_to_string(d->state.pin)) < 0 ||
	    bk_json_add_string(o, "text", text) < 0 ||
	    bk_json_add(o, "next_boot", bk_op_decision_json(&next)) < 0)
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

/* ---- common steps of the mutating operations ------------------------------------------ */

/*
 * Lock, then load: every mutating operation reads the state it changes under the lock. what
 * (NULL: allowed) names an operation that partial maintenance mode refuses: a live patch
 * settles the boot choice when it ends, and nothing else may change it meanwhile.
 */
static int lock_and_load(struct bk_op_ctx *ctx, const char *what, struct bk_boot **ret_boot,
			 struct bk_boot_data *ret, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = bk_op_lock(ctx, err);
	if (r < 0)
		return r;
	if (what) {
		dfd = bk_open_beneath(ctx->root_fd, BK_OP_STATE_DIR,
				      O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, false);
		if (dfd >= 0) {
			r = bk_maint_check(dfd, what, err);
			if (r < 0)
				return r;
		}
	}
	return bk_op_boot_load(ctx, ret_boot, ret, err);
}

/* A failure once the lock is held is an event (status shows the last one). */
static int fail(struct bk_op_ctx *ctx, const char *verb, int r, const struct bk_err *err)
{
	if (ctx->lock_fd >= 0)
		bk_op_event(ctx, verb, r, err, "%s", "");
	return r;
}

int bk_op_bank_word(struct bk_op_ctx *ctx, const char *word, enum bk_bank_id *ret,
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
	r = bk_op_booted(ctx, &b, NULL, err);
	if (r < 0)
		return r;
	if (r > 0)
		return bk_err_set(err, -ENOENT,
				  "cannot tell which bank is booted: no '%s' (run 'bankctl boot "
				  "--simulate' in a sandbox) and no bootbank.bank= on the kernel "
				  "command line; name the bank (A or B)",
				  bk_op_path(ctx, BK_OP_RUN_DIR "/" BK_BOOTED_FILE));
	*ret = strcmp(word, "booted") == 0 ? b.bank : bk_bank_other(b.bank);
	return 0;
}

static void result_init(struct bk_op_boot_result *res, const char *verb)
{
	*res = (struct bk_op_boot_result){ .verb = verb,
					   .bank = _BK_BANK_INVALID,
					   .from = _BK_BANK_INVALID };
	bk_boot_data_init(&res->d);
}

struct json_object *bk_op_boot_result_to_json(const struct bk_op_boot_result *res)
{
	_cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

	if (!o || bk_json_add_string(o, "verb", res->verb) < 0 ||
	    bk_op_json_add_nullable(o, "bank", bk_bank_id_to_string(res->bank)) < 0 ||
	    bk_json_add(o, "boot", bk_op_bootstate_json(&res->d)) < 0)
		return NULL;
	return TAKE_PTR(o);
}

/* ---- activate -------------------------------------------------------------------------- */

int bk_op_activate(struct bk_op_ctx *ctx, enum bk_bank_id bank, uint64_t tries,
		   struct bk_op_boot_result *res, struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	int r;

	result_init(res, "activate");
	if (tries == 0)
		tries = ctx->config.tries;
	r = lock_and_load(ctx, "activate", &b, &res->d, err);
	if (r < 0)
		return fail(ctx, "activate", r, err);

	if (bank == _BK_BANK_INVALID) {
		/* The default is the staged bank, when there is exactly one. */
		bool a = res->d.state.bank[BK_BANK_A].state == BK_BANK_STAGED;
		bool bb = res->d.state.bank[BK_BANK_B].state == BK_BANK_STAGED;

		if (a && bb)
			return bk_err_set(err, -EINVAL,
					  "both banks are staged: name the one to activate");
		if (!a && !bb) {
			r = bk_err_set(err, -ENOENT,
				       "no staged bank to activate (bank A is %s, bank B is %s)",
				       bk_bank_state_to_string(res->d.state.bank[BK_BANK_A].state),
				       bk_bank_state_to_string(res->d.state.bank[BK_BANK_B].state));
			return fail(ctx, "activate", r, err);
		}
		bank = a ? BK_BANK_A : BK_BANK_B;
	}

	r = bk_select_activate(&res->d.state, bank, tries, &res->d.state, err);
	if (r < 0)
		return fail(ctx, "activate", r, err);
	(void) bk_boot_data_set_bad_reason(&res->d, bank, NULL, NULL);
	r = bk_boot_save(b, &res->d, err);
	if (r < 0)
		return fail(ctx, "activate", r, err);

	res->bank = bank;
	res->tries = tries;
	bk_op_event(ctx, "activate", 0, NULL,
		    "bank %s activated: generation %" PRIu64 ", %" PRIu64 " tries",
		    bk_bank_id_to_string(bank), res->d.state.bank[bank].generation, tries);
	return 0;
}

/* ---- mark-good, mark-bad --------------------------------------------------------------- */

int bk_op_mark(struct bk_op_ctx *ctx, bool good, const char *word, const char *reason,
	       struct bk_op_boot_result *res, struct bk_err *err)
{
	const char *verb = good ? "mark-good" : "mark-bad";
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_data *d = &res->d;
	enum bk_bank_id bank = _BK_BANK_INVALID;
	int r;

	result_init(res, verb);
	if (!word)
		word = "booted";
	r = lock_and_load(ctx, good ? NULL : "mark-bad", &b, d, err);
	if (r < 0)
		return fail(ctx, verb, r, err);
	r = bk_op_bank_word(ctx, word, &bank, err);
	if (r < 0)
		return fail(ctx, verb, r, err);

	res->old_floor = d->state.floor;
	if (good) {
		r = bk_select_mark_good(&d->state, bank, &d->state, err);
		if (r < 0)
			return fail(ctx, verb, r, err);
		(void) bk_boot_data_set_bad_reason(d, bank, NULL, NULL);
	} else {
		r = bk_select_mark_bad(&d->state, bank, &d->state, err);
		if (r < 0)
			return fail(ctx, verb, r, err);
		r = bk_boot_data_set_bad_reason(
			d, bank, reason ? reason : "marked bad with 'bankctl mark-bad'", err);
		if (r < 0)
			return fail(ctx, verb, r, err);
	}
	r = bk_boot_save(b, d, err);
	if (r < 0)
		return fail(ctx, verb, r, err);

	res->bank = bank;
	bk_op_event(ctx, verb, 0, NULL, "bank %s marked %s%s%s", bk_bank_id_to_string(bank),
		    good ? "good" : "bad", good ? "" : ": ", good ? "" : d->bad_reason[bank]);
	return 0;
}

/* ---- rollback, roll-forward ------------------------------------------------------------ */

int bk_op_roll(struct bk_op_ctx *ctx, bool back, struct bk_op_boot_result *res, struct bk_err *err)
{
	const char *verb = back ? "rollback" : "roll-forward";
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	enum bk_bank_id bank = _BK_BANK_INVALID;
	int r;

	result_init(res, verb);
	r = lock_and_load(ctx, verb, &b, &res->d, err);
	if (r < 0)
		return fail(ctx, verb, r, err);
	res->from = res->d.state.pin;
	if (back)
		r = bk_select_rollback(&res->d.state, &res->d.state, &bank, err);
	else
		r = bk_select_roll_forward(&res->d.state, &res->d.state, &bank, err);
	if (r < 0)
		return fail(ctx, verb, r, err);
	r = bk_boot_save(b, &res->d, err);
	if (r < 0)
		return fail(ctx, verb, r, err);

	res->bank = bank;
	bk_op_event(ctx, verb, 0, NULL, "bank %s boots next%s", bk_bank_id_to_string(bank),
		    back ? " (rollback pin)" : ": pin cleared");
	return 0;
}

/* ---- explain-next-boot ----------------------------------------------------------------- */

int bk_op_explain(struct bk_op_ctx *ctx, struct bk_boot_data *ret_d, struct bk_boot_explain *ret,
		  struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	int r;

	/* Read-only: no lock; the store is replaced atomically, so a read sees one version. */
	r = bk_op_boot_load(ctx, &b, ret_d, err);
	if (r < 0)
		return r;
	return bk_select_explain(&ret_d->state, ret, err);
}

struct json_object *bk_op_explain_to_json(const struct bk_boot_data *data,
					  const struct bk_boot_explain *x)
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
	    bk_json_add(o, "next", bk_op_decision_json(&x->next)) < 0 ||
	    bk_json_add(o, "with_rollback_key", bk_op_decision_json(&x->with_key)) < 0 ||
	    bk_json_add(o, "banks", banks) < 0 ||
	    bk_json_add_u64(o, "floor", data->state.floor) < 0 ||
	    bk_op_json_add_nullable(o, "pin", bk_bank_id_to_string(data->state.pin)) < 0)
		return NULL;
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_explain *e = &x->bank[i];
		const struct bk_bank_boot *bb = &data->state.bank[i];
		struct json_object *b = json_object_new_object();
		struct json_object *why = json_object_new_array();

		if (bk_json_add(banks, bk_bank_id_to_string((enum bk_bank_id) i), b) < 0 ||
		    bk_json_add(b, "why_not", why) < 0)
			return NULL;
		for (size_t k = 0; k < BK_ELEMENTSOF(whys); k++)
			if ((e->ineligible & whys[k].flag) &&
			    json_object_array_add(why, json_object_new_string(whys[k].name)) < 0)
				return NULL;
		if (bk_json_add_string(b, "state", bk_bank_state_to_string(bb->state)) < 0 ||
		    bk_json_add_u64(b, "generation", bb->generation) < 0 ||
		    bk_json_add_u64(b, "tries_left", bb->tries_left) < 0 ||
		    bk_json_add_u64(b, "epoch", bb->epoch) < 0 ||
		    bk_json_add_bool(b, "eligible", e->eligible) < 0 ||
		    bk_json_add_bool(b, "intended", e->intended) < 0 ||
		    bk_json_add_bool(b, "pinned", e->pinned) < 0 ||
		    bk_json_add_string(b, "text", e->text) < 0)
			return NULL;
	}
	return TAKE_PTR(o);
}

/* ---- boot --simulate ------------------------------------------------------------------- */

static int record_booted(struct bk_op_ctx *ctx, const struct bk_booted *booted, struct bk_err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	char path[4096];
	int r;

	r = bk_op_open_dir(ctx, BK_OP_RUN_DIR, true, &dfd, err);
	if (r < 0)
		return r;
	(void) snprintf(path, sizeof(path), "%s",
			bk_op_path(ctx, BK_OP_RUN_DIR "/" BK_BOOTED_FILE));
	if (!booted) {
		if (unlinkat(dfd, BK_BOOTED_FILE, 0) < 0 && errno != ENOENT)
			return bk_err_set(err, -errno, "cannot remove '%s': %m", path);
		return 0;
	}
	return bk_booted_write_at(dfd, path, booted, err);
}

int bk_op_boot_simulate(struct bk_op_ctx *ctx, bool key, struct bk_op_simulate_result *res,
			struct bk_err *err)
{
	_cleanup_(bk_boot_freep) struct bk_boot *b = NULL;
	struct bk_boot_decision *dec = &res->dec;
	struct bk_boot_data *d = &res->d;
	int r;

	bk_boot_data_init(d);
	/* It changes the boot state as the loader would: never behind the real loader's back. */
	if (bk_op_root_is_host(ctx))
		return bk_err_set(err, -EPERM,
				  "boot --simulate runs on a sandbox only (--root DIR), not on "
				  "the host's '/'");
	r = lock_and_load(ctx, NULL, &b, d, err);
	if (r < 0)
		return r;
	res->before = d->state;
	r = bk_select_decide(&d->state, key, dec, err);
	if (r < 0)
		return r;

	/* What the loader persists before the kernel starts. */
	d->state = dec->next;
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (dec->marked_bad[i])
			(void) bk_boot_data_set_bad_reason(
				d, (enum bk_bank_id) i,
				"no tries left: no boot of it was confirmed with mark-good", NULL);
	if (dec->reason != BK_REASON_NONE) {
		d->has_last = true;
		d->last.bank = dec->bank;
		d->last.reason = dec->reason;
		d->last.time = (uint64_t) time(NULL);
	}
	r = bk_boot_save(b, d, err);
	if (r < 0)
		return r;
	return record_booted(ctx, dec->reason == BK_REASON_NONE ? NULL : &d->last, err);
}

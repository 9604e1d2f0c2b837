/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The boot selection model: the rule of docs/banks.md, step by step. Pure: no I/O, no
 * allocation. The rule numbers in comments are those of docs/banks.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bk-cleanup.h"
#include "bk-fs.h"
#include "bk-log.h"
#include "bk-select.h"

/*
 * The name of every value of each enum, indexed by the value: one table per enum, read by the
 * two lookups below, so a new value is one line in its table.
 */
static const char *const bank_names[_BK_BANK_MAX] = {
	[BK_BANK_A] = "A",
	[BK_BANK_B] = "B",
};

static const char *const state_names[_BK_BANK_STATE_MAX] = {
	[BK_BANK_EMPTY] = "empty", [BK_BANK_STAGED] = "staged", [BK_BANK_TRYING] = "trying",
	[BK_BANK_GOOD] = "good",   [BK_BANK_BAD] = "bad",
};

static const char *const reason_names[_BK_REASON_MAX] = {
	[BK_REASON_NONE] = "none",	     [BK_REASON_PRIMARY] = "primary",
	[BK_REASON_FALLBACK] = "fallback",   [BK_REASON_ROLLBACK] = "rollback",
	[BK_REASON_EMERGENCY] = "emergency",
};

/* The keys of the compact text form, in the order bk_bootstate_format() writes them. */
enum text_key { KEY_A, KEY_B, KEY_FLOOR, KEY_PIN, _KEY_MAX };

static const char *const key_names[_KEY_MAX] = {
	[KEY_A] = "A",
	[KEY_B] = "B",
	[KEY_FLOOR] = "floor",
	[KEY_PIN] = "pin",
};

/* names[value], or NULL when value is outside the table (negative, the _MAX or _INVALID). */
static const char *name_of(const char *const *names, size_t n, int value)
{
	if (value < 0 || (size_t) value >= n)
		return NULL;
	return names[value];
}

/* The value whose name is s (exact, or ignoring case), or -EINVAL (also for s NULL). */
static int value_of(const char *const *names, size_t n, const char *s, bool ignore_case)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((ignore_case ? strcasecmp(s, names[i]) : strcmp(s, names[i])) == 0)
			return (int) i;
	return -EINVAL;
}

#define NAME_OF(names, value)		name_of(names, BK_ELEMENTSOF(names), (int) (value))
#define VALUE_OF(names, s, ignore_case) value_of(names, BK_ELEMENTSOF(names), s, ignore_case)

const char *bk_bank_id_to_string(enum bk_bank_id id)
{
	return NAME_OF(bank_names, id);
}

enum bk_bank_id bk_bank_id_from_string(const char *s)
{
	return (enum bk_bank_id) VALUE_OF(bank_names, s, true);
}

const char *bk_bank_state_to_string(enum bk_bank_state s)
{
	return NAME_OF(state_names, s);
}

enum bk_bank_state bk_bank_state_from_string(const char *s)
{
	return (enum bk_bank_state) VALUE_OF(state_names, s, false);
}

const char *bk_boot_reason_to_string(enum bk_boot_reason r)
{
	return NAME_OF(reason_names, r);
}

enum bk_boot_reason bk_boot_reason_from_string(const char *s)
{
	return (enum bk_boot_reason) VALUE_OF(reason_names, s, false);
}

enum bk_bank_id bk_bank_other(enum bk_bank_id id)
{
	switch (id) {
	case BK_BANK_A:
		return BK_BANK_B;
	case BK_BANK_B:
		return BK_BANK_A;
	case _BK_BANK_MAX:
	case _BK_BANK_INVALID:
	default:
		return _BK_BANK_INVALID;
	}
}

static bool bank_valid(enum bk_bank_id id)
{
	return id >= 0 && id < _BK_BANK_MAX;
}

void bk_bootstate_init(struct bk_bootstate *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < _BK_BANK_MAX; i++)
		s->bank[i].state = BK_BANK_EMPTY;
	s->pin = _BK_BANK_INVALID;
}

int bk_bootstate_check(const struct bk_bootstate *s, struct bk_err *err)
{
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		const struct bk_bank_boot *b = &s->bank[i];

		if (b->state < 0 || b->state >= _BK_BANK_STATE_MAX)
			return bk_err_set(err, -EINVAL, "bank %s: invalid state %d", bank_names[i],
					  (int) b->state);
		if (b->tries_left > BK_TRIES_MAX)
			return bk_err_set(err, -EINVAL,
					  "bank %s: tries_left %" PRIu64 " is above %u",
					  bank_names[i], b->tries_left, BK_TRIES_MAX);
		if (b->generation > BK_GENERATION_MAX)
			return bk_err_set(err, -EINVAL,
					  "bank %s: generation %" PRIu64 " is above %u",
					  bank_names[i], b->generation, BK_GENERATION_MAX);
		if (b->epoch > BK_EPOCH_MAX)
			return bk_err_set(err, -EINVAL, "bank %s: epoch %" PRIu64 " is above %u",
					  bank_names[i], b->epoch, BK_EPOCH_MAX);
	}
	if (s->floor > BK_EPOCH_MAX)
		return bk_err_set(err, -EINVAL, "floor %" PRIu64 " is above %u", s->floor,
				  BK_EPOCH_MAX);
	if (s->pin != _BK_BANK_INVALID && !bank_valid(s->pin))
		return bk_err_set(err, -EINVAL, "invalid pin %d", (int) s->pin);
	return 0;
}

unsigned bk_bank_ineligible(const struct bk_bootstate *s, enum bk_bank_id bank)
{
	const struct bk_bank_boot *b;
	unsigned why = 0;

	if (!bank_valid(bank))
		return BK_INELIGIBLE_EMPTY;
	b = &s->bank[bank];
	switch (b->state) {
	case BK_BANK_EMPTY:
		/* Nothing in it: its epoch means nothing, so "empty" is the whole story. */
		return BK_INELIGIBLE_EMPTY;
	case BK_BANK_BAD:
		why |= BK_INELIGIBLE_BAD;
		break;
	case BK_BANK_STAGED:
		if (b->tries_left == 0)
			why |= BK_INELIGIBLE_NOT_ACTIVATED;
		break;
	case BK_BANK_TRYING:
		if (b->tries_left == 0)
			why |= BK_INELIGIBLE_NO_TRIES;
		break;
	case BK_BANK_GOOD:
		break;
	case _BK_BANK_STATE_MAX:
	case _BK_BANK_STATE_INVALID:
	default:
		return BK_INELIGIBLE_BAD;
	}
	if (b->epoch < s->floor)
		why |= BK_INELIGIBLE_BELOW_FLOOR;
	return why;
}

bool bk_bank_is_eligible(const struct bk_bootstate *s, enum bk_bank_id bank)
{
	return bank_valid(bank) && bk_bank_ineligible(s, bank) == 0;
}

/* Rule 3: the non-empty bank with the highest generation, ties to A. */
static enum bk_bank_id intended_bank(const struct bk_bootstate *s)
{
	enum bk_bank_id best = _BK_BANK_INVALID;

	for (int i = 0; i < _BK_BANK_MAX; i++) {
		if (s->bank[i].state == BK_BANK_EMPTY)
			continue;
		if (best == _BK_BANK_INVALID || s->bank[i].generation > s->bank[best].generation)
			best = (enum bk_bank_id) i;
	}
	return best;
}

/* Rule 5: the eligible bank with the highest generation, ties to A. */
static enum bk_bank_id best_eligible(const struct bk_bootstate *s)
{
	enum bk_bank_id best = _BK_BANK_INVALID;

	for (int i = 0; i < _BK_BANK_MAX; i++) {
		if (!bk_bank_is_eligible(s, (enum bk_bank_id) i))
			continue;
		if (best == _BK_BANK_INVALID || s->bank[i].generation > s->bank[best].generation)
			best = (enum bk_bank_id) i;
	}
	return best;
}

/*
 * Rules 2-6 on d->next (already a copy of the input): mark exhausted banks bad, drop an
 * ineligible pin, choose. use_pin=false ignores the pin (roll-forward asks "what would boot
 * without it").
 */
static void choose(struct bk_boot_decision *d, bool use_pin)
{
	struct bk_bootstate *n = &d->next;

	/* Rule 2: a trying bank with no tries left failed its last try. */
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (n->bank[i].state == BK_BANK_TRYING && n->bank[i].tries_left == 0) {
			n->bank[i].state = BK_BANK_BAD;
			d->marked_bad[i] = true;
		}

	d->intended = intended_bank(n);

	/* Rule 4. */
	if (use_pin && n->pin != _BK_BANK_INVALID) {
		if (bk_bank_is_eligible(n, n->pin)) {
			d->bank = n->pin;
			d->reason = BK_REASON_ROLLBACK;
			return;
		}
		n->pin = _BK_BANK_INVALID;
		d->pin_cleared = true;
	}

	/* Rule 5. */
	d->bank = best_eligible(n);
	if (d->bank != _BK_BANK_INVALID) {
		d->reason = d->bank == d->intended ? BK_REASON_PRIMARY : BK_REASON_FALLBACK;
		return;
	}

	/* Rule 6: boot the newest non-empty bank as it is, or nothing at all. */
	d->bank = d->intended;
	d->reason = d->intended == _BK_BANK_INVALID ? BK_REASON_NONE : BK_REASON_EMERGENCY;
}

static void decision_init(struct bk_boot_decision *d, const struct bk_bootstate *s)
{
	memset(d, 0, sizeof(*d));
	d->bank = _BK_BANK_INVALID;
	d->intended = _BK_BANK_INVALID;
	d->reason = BK_REASON_NONE;
	d->next = *s;
}

bool bk_bootstate_equal(const struct bk_bootstate *a, const struct bk_bootstate *b)
{
	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (a->bank[i].state != b->bank[i].state ||
		    a->bank[i].generation != b->bank[i].generation ||
		    a->bank[i].tries_left != b->bank[i].tries_left ||
		    a->bank[i].epoch != b->bank[i].epoch)
			return false;
	return a->floor == b->floor && a->pin == b->pin;
}

int bk_select_decide(const struct bk_bootstate *s, bool rollback_key, struct bk_boot_decision *ret,
		     struct bk_err *err)
{
	struct bk_boot_decision d;
	int r;

	r = bk_bootstate_check(s, err);
	if (r < 0)
		return r;

	decision_init(&d, s);
	choose(&d, true);

	/*
	 * Rule 8: the key asks for the other bank than the one rules 2-5 chose. With no eligible
	 * bank at all (emergency, none) there is no other eligible bank: the key is ignored.
	 */
	d.key_pressed = rollback_key;
	if (rollback_key && (d.reason == BK_REASON_PRIMARY || d.reason == BK_REASON_FALLBACK ||
			     d.reason == BK_REASON_ROLLBACK)) {
		enum bk_bank_id y = bk_bank_other(d.bank);

		if (bk_bank_is_eligible(&d.next, y)) {
			d.next.pin = y;
			d.bank = y;
			d.reason = BK_REASON_ROLLBACK;
			d.key_applied = true;
		}
	}

	/* Rule 7: an unconfirmed bank pays one try for this boot; never in an emergency. */
	if (d.reason != BK_REASON_EMERGENCY && d.reason != BK_REASON_NONE) {
		struct bk_bank_boot *b = &d.next.bank[d.bank];

		if (b->state == BK_BANK_STAGED || b->state == BK_BANK_TRYING) {
			b->tries_left--;
			b->state = BK_BANK_TRYING;
			d.try_taken = true;
		}
	}

	d.changed = !bk_bootstate_equal(s, &d.next);
	BK_DBG(SELECT, "decide%s: bank %s reason %s%s%s", rollback_key ? " (rollback key)" : "",
	       d.bank == _BK_BANK_INVALID ? "-" : bank_names[d.bank], reason_names[d.reason],
	       d.try_taken ? ", try taken" : "", d.changed ? ", changed" : "");
	*ret = d;
	return 0;
}

/* Append to buf at *pos, never overflowing (the text is cut at the buffer's end). */
static void _printf_(4, 5) append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*pos = (size_t) n >= len - *pos ? len - 1 : *pos + (size_t) n;
}

static void explain_bank(const struct bk_bootstate *s, enum bk_bank_id id,
			 const struct bk_boot_decision *next, struct bk_bank_explain *e)
{
	const struct bk_bank_boot *b = &s->bank[id];
	const char *sep = "";
	size_t pos = 0;

	e->ineligible = bk_bank_ineligible(s, id);
	e->eligible = e->ineligible == 0;
	e->intended = next->intended == id;
	e->pinned = s->pin == id;

	if (b->state == BK_BANK_EMPTY) {
		append(e->text, sizeof(e->text), &pos, "not eligible: empty");
		return;
	}
	if (e->eligible) {
		append(e->text, sizeof(e->text), &pos, "eligible: %s, generation %" PRIu64,
		       state_names[b->state], b->generation);
		if (b->state != BK_BANK_GOOD)
			append(e->text, sizeof(e->text), &pos, ", %" PRIu64 " %s left",
			       b->tries_left, b->tries_left == 1 ? "try" : "tries");
		append(e->text, sizeof(e->text), &pos, ", epoch %" PRIu64, b->epoch);
		return;
	}

	append(e->text, sizeof(e->text), &pos, "not eligible: ");
	if (e->ineligible & BK_INELIGIBLE_BAD) {
		append(e->text, sizeof(e->text), &pos, "bad");
		sep = "; ";
	}
	if (e->ineligible & BK_INELIGIBLE_NOT_ACTIVATED) {
		append(e->text, sizeof(e->text), &pos, "%sstaged but not activated (no tries)",
		       sep);
		sep = "; ";
	}
	if (e->ineligible & BK_INELIGIBLE_NO_TRIES) {
		append(e->text, sizeof(e->text), &pos,
		       "%sno tries left (marked bad at the next boot)", sep);
		sep = "; ";
	}
	if (e->ineligible & BK_INELIGIBLE_BELOW_FLOOR)
		append(e->text, sizeof(e->text), &pos, "%sepoch %" PRIu64 " below floor %" PRIu64,
		       sep, b->epoch, s->floor);
	append(e->text, sizeof(e->text), &pos, " (generation %" PRIu64 ")", b->generation);
}

int bk_select_explain(const struct bk_bootstate *s, struct bk_boot_explain *ret, struct bk_err *err)
{
	struct bk_boot_explain x;
	const struct bk_boot_decision *d = &x.next;
	size_t pos = 0;
	int r;

	memset(&x, 0, sizeof(x));
	r = bk_select_decide(s, false, &x.next, err);
	if (r < 0)
		return r;
	r = bk_select_decide(s, true, &x.with_key, err);
	if (r < 0)
		return r;
	for (int i = 0; i < _BK_BANK_MAX; i++)
		explain_bank(s, (enum bk_bank_id) i, d, &x.bank[i]);

	if (d->reason == BK_REASON_NONE) {
		append(x.summary, sizeof(x.summary), &pos, "nothing boots: both banks are empty");
	} else {
		append(x.summary, sizeof(x.summary), &pos, "bank %s boots with reason %s",
		       bank_names[d->bank], reason_names[d->reason]);
		if (d->try_taken)
			append(x.summary, sizeof(x.summary), &pos,
			       " (takes a try: %" PRIu64 " -> %" PRIu64 " left)",
			       s->bank[d->bank].tries_left, d->next.bank[d->bank].tries_left);
		else if (d->reason == BK_REASON_EMERGENCY)
			append(x.summary, sizeof(x.summary), &pos, " (no bank is eligible)");
	}
	*ret = x;
	return 0;
}

static int check_bank(const struct bk_bootstate *s, enum bk_bank_id bank, struct bk_err *err)
{
	int r = bk_bootstate_check(s, err);

	if (r < 0)
		return r;
	if (!bank_valid(bank))
		return bk_err_set(err, -EINVAL, "invalid bank %d", (int) bank);
	return 0;
}

int bk_select_activate(const struct bk_bootstate *s, enum bk_bank_id bank, uint64_t tries,
		       struct bk_bootstate *ret, struct bk_err *err)
{
	struct bk_bootstate n;
	uint64_t gen = 0;
	int r;

	r = check_bank(s, bank, err);
	if (r < 0)
		return r;
	n = *s;
	if (n.bank[bank].state != BK_BANK_STAGED)
		return bk_err_set(err, -EINVAL, "bank %s is not staged (it is %s)",
				  bank_names[bank], state_names[n.bank[bank].state]);
	if (tries < 1 || tries > BK_TRIES_MAX)
		return bk_err_set(err, -EINVAL, "tries must be 1 to %u, not %" PRIu64, BK_TRIES_MAX,
				  tries);
	/* Activating it would be a bank that can never boot: say so now, not at the boot. */
	if (n.bank[bank].epoch < n.floor)
		return bk_err_set(err, -EKEYREVOKED,
				  "bank %s: epoch %" PRIu64 " is below the security floor %" PRIu64
				  ", it would never boot",
				  bank_names[bank], n.bank[bank].epoch, n.floor);

	for (int i = 0; i < _BK_BANK_MAX; i++)
		if (n.bank[i].generation > gen)
			gen = n.bank[i].generation;
	if (gen >= BK_GENERATION_MAX)
		return bk_err_set(err, -EINVAL, "bank %s: generation would exceed %u",
				  bank_names[bank], BK_GENERATION_MAX);
	n.bank[bank].generation = gen + 1;
	n.bank[bank].tries_left = tries;
	n.pin = _BK_BANK_INVALID;
	*ret = n;
	return 0;
}

int bk_select_mark_good(const struct bk_bootstate *s, enum bk_bank_id bank,
			struct bk_bootstate *ret, struct bk_err *err)
{
	struct bk_bootstate n;
	bool any = false;
	uint64_t min = 0;
	int r;

	r = check_bank(s, bank, err);
	if (r < 0)
		return r;
	n = *s;
	switch (n.bank[bank].state) {
	case BK_BANK_EMPTY:
		return bk_err_set(err, -EINVAL, "bank %s is empty", bank_names[bank]);
	case BK_BANK_STAGED:
		return bk_err_set(
			err, -EINVAL,
			"bank %s is staged and was never tried: activate and boot it first",
			bank_names[bank]);
	case BK_BANK_TRYING:
	case BK_BANK_GOOD:
	case BK_BANK_BAD:
		break;
	case _BK_BANK_STATE_MAX:
	case _BK_BANK_STATE_INVALID:
	default:
		return bk_err_set(err, -EINVAL, "bank %s: invalid state", bank_names[bank]);
	}
	n.bank[bank].state = BK_BANK_GOOD;
	n.bank[bank].tries_left = 0;

	/* Raise the floor only as far as every bank that can still boot allows. */
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		if (!bk_bank_is_eligible(&n, (enum bk_bank_id) i))
			continue;
		if (!any || n.bank[i].epoch < min)
			min = n.bank[i].epoch;
		any = true;
	}
	if (any && min > n.floor)
		n.floor = min;
	*ret = n;
	return 0;
}

int bk_select_mark_bad(const struct bk_bootstate *s, enum bk_bank_id bank, struct bk_bootstate *ret,
		       struct bk_err *err)
{
	struct bk_bootstate n;
	int r;

	r = check_bank(s, bank, err);
	if (r < 0)
		return r;
	n = *s;
	if (n.bank[bank].state == BK_BANK_EMPTY)
		return bk_err_set(err, -EINVAL, "bank %s is empty", bank_names[bank]);
	n.bank[bank].state = BK_BANK_BAD;
	n.bank[bank].tries_left = 0;
	*ret = n;
	return 0;
}

int bk_select_rollback(const struct bk_bootstate *s, struct bk_bootstate *ret,
		       enum bk_bank_id *ret_bank, struct bk_err *err)
{
	struct bk_boot_decision d;
	struct bk_bootstate n;
	enum bk_bank_id y;
	unsigned why;
	int r;

	r = bk_bootstate_check(s, err);
	if (r < 0)
		return r;
	decision_init(&d, s);
	choose(&d, true);
	if (d.reason == BK_REASON_NONE)
		return bk_err_set(err, -ENOENT, "no bank to roll back to: both banks are empty");
	if (d.reason == BK_REASON_EMERGENCY)
		return bk_err_set(err, -ENOENT, "no bank to roll back to: no bank is eligible");

	y = bk_bank_other(d.bank);
	/* Rule 2 never changes eligibility: explain Y as the operator sees it now. */
	why = bk_bank_ineligible(s, y);
	if (why != 0) {
		struct bk_bank_explain e = { 0 };

		explain_bank(s, y, &d, &e);
		return bk_err_set(err, -ENOENT, "no bank to roll back to: bank %s is %s",
				  bank_names[y], e.text);
	}
	/* Only the pin changes: the loader itself applies rule 2 at the next boot. */
	n = *s;
	n.pin = y;
	*ret = n;
	if (ret_bank)
		*ret_bank = y;
	return 0;
}

int bk_select_roll_forward(const struct bk_bootstate *s, struct bk_bootstate *ret,
			   enum bk_bank_id *ret_bank, struct bk_err *err)
{
	struct bk_boot_decision d;
	struct bk_bootstate n;
	int r;

	r = bk_bootstate_check(s, err);
	if (r < 0)
		return r;
	if (s->pin == _BK_BANK_INVALID)
		return bk_err_set(err, -ENOENT, "nothing to roll forward: no rollback is in force");

	decision_init(&d, s);
	choose(&d, false);
	if (d.reason != BK_REASON_PRIMARY && d.reason != BK_REASON_FALLBACK) {
		return bk_err_set(err, -ENOENT,
				  "cannot roll forward from bank %s: no bank is eligible",
				  bank_names[s->pin]);
	}
	if (d.bank == s->pin) {
		enum bk_bank_id x = bk_bank_other(s->pin);
		struct bk_bank_explain e = { 0 };

		if (bk_bank_is_eligible(s, x))
			return bk_err_set(err, -ENOENT,
					  "nothing to roll forward: bank %s would boot without the "
					  "pin too",
					  bank_names[s->pin]);
		explain_bank(s, x, &d, &e);
		return bk_err_set(err, -ENOENT, "cannot roll forward from bank %s: bank %s is %s",
				  bank_names[s->pin], bank_names[x], e.text);
	}
	n = *s;
	n.pin = _BK_BANK_INVALID;
	*ret = n;
	if (ret_bank)
		*ret_bank = d.bank;
	return 0;
}

int bk_select_stage_begin(const struct bk_bootstate *s, enum bk_bank_id bank,
			  struct bk_bootstate *ret, struct bk_err *err)
{
	struct bk_bootstate n;
	int r;

	r = check_bank(s, bank, err);
	if (r < 0)
		return r;
	n = *s;
	n.bank[bank].state = BK_BANK_EMPTY;
	n.bank[bank].generation = 0;
	n.bank[bank].tries_left = 0;
	n.bank[bank].epoch = 0;
	if (n.pin == bank)
		n.pin = _BK_BANK_INVALID;
	*ret = n;
	return 0;
}

int bk_select_stage_done(const struct bk_bootstate *s, enum bk_bank_id bank, uint64_t epoch,
			 struct bk_bootstate *ret, struct bk_err *err)
{
	struct bk_bootstate n;
	int r;

	r = check_bank(s, bank, err);
	if (r < 0)
		return r;
	n = *s;
	if (n.bank[bank].state != BK_BANK_EMPTY)
		return bk_err_set(err, -EINVAL, "bank %s is %s, not being staged", bank_names[bank],
				  state_names[n.bank[bank].state]);
	if (epoch > BK_EPOCH_MAX)
		return bk_err_set(err, -EINVAL, "bank %s: epoch %" PRIu64 " is above %u",
				  bank_names[bank], epoch, BK_EPOCH_MAX);
	n.bank[bank].state = BK_BANK_STAGED;
	n.bank[bank].generation = 0;
	n.bank[bank].tries_left = 0;
	n.bank[bank].epoch = epoch;
	*ret = n;
	return 0;
}

int bk_bootstate_format(const struct bk_bootstate *s, char *buf, size_t len)
{
	int n;

	if (bk_bootstate_check(s, NULL) < 0)
		return -EINVAL;
	n = snprintf(buf, len,
		     "A=%s:%" PRIu64 ":%" PRIu64 ":%" PRIu64 " B=%s:%" PRIu64 ":%" PRIu64
		     ":%" PRIu64 " floor=%" PRIu64 " pin=%s",
		     state_names[s->bank[0].state], s->bank[0].generation, s->bank[0].tries_left,
		     s->bank[0].epoch, state_names[s->bank[1].state], s->bank[1].generation,
		     s->bank[1].tries_left, s->bank[1].epoch, s->floor,
		     s->pin == _BK_BANK_INVALID ? "none" : bank_names[s->pin]);
	if (n < 0 || (size_t) n >= len)
		return -ENOBUFS;
	return 0;
}

static int parse_bank(const char *tok, const char *value, struct bk_bank_boot *ret,
		      struct bk_err *err)
{
	char state[16];
	const char *p = value;
	uint64_t v[3];
	size_t n;

	n = strcspn(p, ":");
	if (n == 0 || n >= sizeof(state) || p[n] != ':')
		return bk_err_set(err, -EINVAL, "'%s': expected BANK=STATE:GENERATION:TRIES:EPOCH",
				  tok);
	memcpy(state, p, n);
	state[n] = '\0';
	ret->state = bk_bank_state_from_string(state);
	if (ret->state < 0)
		return bk_err_set(err, -EINVAL, "'%s': unknown state '%s'", tok, state);
	p += n + 1;
	for (int i = 0; i < 3; i++) {
		char num[24];

		n = strcspn(p, ":");
		if (n == 0 || n >= sizeof(num) || (i < 2 && p[n] != ':') ||
		    (i == 2 && p[n] != '\0'))
			return bk_err_set(err, -EINVAL,
					  "'%s': expected BANK=STATE:GENERATION:TRIES:EPOCH", tok);
		memcpy(num, p, n);
		num[n] = '\0';
		if (bk_parse_u64(num, &v[i]) < 0)
			return bk_err_set(err, -EINVAL, "'%s': '%s' is not a number", tok, num);
		p += n + (i < 2 ? 1 : 0);
	}
	ret->generation = v[0];
	ret->tries_left = v[1];
	ret->epoch = v[2];
	return 0;
}

int bk_bootstate_parse(const char *text, struct bk_bootstate *ret, struct bk_err *err)
{
	struct bk_bootstate s;
	unsigned seen = 0;
	const char *p = text;
	int r;

	bk_bootstate_init(&s);
	for (;;) {
		char tok[96];
		char *eq;
		int key;
		size_t n;

		p += strspn(p, " \t\n");
		if (*p == '\0')
			break;
		n = strcspn(p, " \t\n");
		if (n >= sizeof(tok))
			return bk_err_set(err, -EINVAL, "boot state token too long at '%.16s...'",
					  p);
		memcpy(tok, p, n);
		tok[n] = '\0';
		p += n;

		eq = strchr(tok, '=');
		if (!eq)
			return bk_err_set(err, -EINVAL, "'%s': expected KEY=VALUE", tok);
		*eq = '\0';
		key = VALUE_OF(key_names, tok, false);
		if (key < 0)
			return bk_err_set(err, -EINVAL, "unknown boot state key '%s'", tok);
		if (seen & (1u << key))
			return bk_err_set(err, -EINVAL, "boot state key '%s' given twice", tok);
		seen |= 1u << key;

		if (key == KEY_A || key == KEY_B) {
			enum bk_bank_id id = key == KEY_A ? BK_BANK_A : BK_BANK_B;

			*eq = '=';
			r = parse_bank(tok, eq + 1, &s.bank[id], err);
			if (r < 0)
				return r;
		} else if (key == KEY_FLOOR) {
			if (bk_parse_u64(eq + 1, &s.floor) < 0)
				return bk_err_set(err, -EINVAL, "'floor=%s': not a number", eq + 1);
		} else if (strcmp(eq + 1, "none") == 0) {
			s.pin = _BK_BANK_INVALID;
		} else {
			/* Exact names: the text form writes "A" and "B" only. */
			s.pin = (enum bk_bank_id) VALUE_OF(bank_names, eq + 1, false);
			if (s.pin == _BK_BANK_INVALID)
				return bk_err_set(err, -EINVAL, "'pin=%s': expected A, B or none",
						  eq + 1);
		}
	}
	for (int key = 0; key < _KEY_MAX; key++)
		if (!(seen & (1u << key)))
			return bk_err_set(err, -EINVAL, "boot state text lacks '%s='",
					  key_names[key]);
	r = bk_bootstate_check(&s, err);
	if (r < 0)
		return r;
	*ret = s;
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The boot selection model against an oracle written in this file from the rule in
 * docs/banks.md (plain integers, no code shared with lib/bk-select.c), over every combination
 * for two banks; plus each transition and its errors.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>

#include "bk-test.h"

#include "bk-select.h"

/* ---- the oracle: docs/banks.md "The selection model", literally ---------------------------- */

enum { O_EMPTY, O_STAGED, O_TRYING, O_GOOD, O_BAD };
enum { O_NONE, O_PRIMARY, O_FALLBACK, O_ROLLBACK, O_EMERGENCY };

struct o_bank {
	int state, gen, tries, epoch;
};

struct o_state {
	struct o_bank b[2];
	int floor;
	int pin; /* -1: none, 0: A, 1: B */
};

struct o_result {
	int bank; /* -1: nothing boots */
	int reason;
	struct o_state next;
};

/* Rule 1. */
static bool o_eligible(const struct o_state *s, int i)
{
	const struct o_bank *b = &s->b[i];

	if (b->epoch < s->floor)
		return false;
	if (b->state == O_GOOD)
		return true;
	return (b->state == O_STAGED || b->state == O_TRYING) && b->tries > 0;
}

/* Of two candidate banks, the one with the higher generation; A on a tie. */
static int o_newer(const struct o_state *s, bool a_ok, bool b_ok)
{
	if (a_ok && b_ok)
		return s->b[1].gen > s->b[0].gen ? 1 : 0;
	if (a_ok)
		return 0;
	if (b_ok)
		return 1;
	return -1;
}

static struct o_result oracle(const struct o_state *in, bool key)
{
	struct o_result res = { .bank = -1, .reason = O_NONE, .next = *in };
	struct o_state *n = &res.next;
	int intended;

	/* Rule 2. */
	if (n->b[0].state == O_TRYING && n->b[0].tries == 0)
		n->b[0].state = O_BAD;
	if (n->b[1].state == O_TRYING && n->b[1].tries == 0)
		n->b[1].state = O_BAD;

	/* Rule 3. */
	intended = o_newer(n, n->b[0].state != O_EMPTY, n->b[1].state != O_EMPTY);

	/* Rule 4. */
	if (n->pin >= 0 && o_eligible(n, n->pin)) {
		res.bank = n->pin;
		res.reason = O_ROLLBACK;
	} else {
		n->pin = -1;
		/* Rule 5. */
		res.bank = o_newer(n, o_eligible(n, 0), o_eligible(n, 1));
		if (res.bank >= 0) {
			res.reason = res.bank == intended ? O_PRIMARY : O_FALLBACK;
		} else if (intended >= 0) {
			/* Rule 6. */
			res.bank = intended;
			res.reason = O_EMERGENCY;
			return res;
		} else {
			res.reason = O_NONE;
			return res;
		}
	}

	/* Rule 8. */
	if (key && o_eligible(n, 1 - res.bank)) {
		res.bank = 1 - res.bank;
		n->pin = res.bank;
		res.reason = O_ROLLBACK;
	}

	/* Rule 7. */
	if (n->b[res.bank].state == O_STAGED || n->b[res.bank].state == O_TRYING) {
		n->b[res.bank].tries--;
		n->b[res.bank].state = O_TRYING;
	}
	return res;
}

/* ---- conversions between the oracle's integers and the library's types ---------------------- */

static const enum bk_bank_state lib_states[] = { BK_BANK_EMPTY, BK_BANK_STAGED, BK_BANK_TRYING,
						 BK_BANK_GOOD, BK_BANK_BAD };
static const enum bk_boot_reason lib_reasons[] = { BK_REASON_NONE, BK_REASON_PRIMARY,
						   BK_REASON_FALLBACK, BK_REASON_ROLLBACK,
						   BK_REASON_EMERGENCY };

static void to_lib(const struct o_state *o, struct bk_bootstate *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 2; i++) {
		s->bank[i].state = lib_states[o->b[i].state];
		s->bank[i].generation = (uint64_t) o->b[i].gen;
		s->bank[i].tries_left = (uint64_t) o->b[i].tries;
		s->bank[i].epoch = (uint64_t) o->b[i].epoch;
	}
	s->floor = (uint64_t) o->floor;
	s->pin = o->pin < 0 ? _BK_BANK_INVALID : (o->pin == 0 ? BK_BANK_A : BK_BANK_B);
}

static void fail_combo(const struct bk_bootstate *s, bool key, const char *what)
{
	char text[BK_BOOTSTATE_TEXT_MAX];

	assert_int_equal(bk_bootstate_format(s, text, sizeof(text)), 0);
	print_error("%s%s: %s\n", text, key ? " +key" : "", what);
	fail();
}

#define CHECK(cond, what)                          \
	do {                                       \
		if (!(cond))                       \
			fail_combo(&s, key, what); \
	} while (0)

/* Every combination of state (5) x tries (3) x generation (3) x epoch (2) per bank, x floor
 * (3) x pin (3) x rollback key (2). */
static void test_select_decide_matches_oracle_everywhere(void **state)
{
	struct o_bank banks[5 * 3 * 3 * 2];
	unsigned long n_checked = 0, n_by_reason[5] = { 0 };
	size_t nb = 0;

	for (int st = 0; st < 5; st++)
		for (int tr = 0; tr < 3; tr++)
			for (int g = 0; g < 3; g++)
				for (int e = 0; e < 2; e++)
					banks[nb++] = (struct o_bank){ st, g, tr, e };
	assert_int_equal(nb, 90);

	for (size_t ia = 0; ia < nb; ia++)
		for (size_t ib = 0; ib < nb; ib++)
			for (int floor = 0; floor < 3; floor++)
				for (int pin = -1; pin < 2; pin++)
					for (int k = 0; k < 2; k++) {
						struct o_state o = { { banks[ia], banks[ib] },
								     floor,
								     pin };
						struct bk_bootstate s, copy, expect_next;
						struct bk_boot_decision d;
						struct bk_err err = { 0 };
						struct o_result want;
						bool key = k == 1;

						to_lib(&o, &s);
						copy = s;
						want = oracle(&o, key);
						to_lib(&want.next, &expect_next);

						assert_int_equal(
							bk_select_decide(&s, key, &d, &err), 0);
						CHECK(memcmp(&s, &copy, sizeof(s)) == 0,
						      "input was modified");
						CHECK(d.reason == lib_reasons[want.reason],
						      "reason differs from the oracle");
						CHECK(want.bank < 0 ?
							      d.bank == _BK_BANK_INVALID :
							      d.bank == (enum bk_bank_id) want.bank,
						      "bank differs from the oracle");
						CHECK(memcmp(&d.next, &expect_next,
							     sizeof(expect_next)) == 0,
						      "next state differs from the oracle");
						CHECK(d.changed ==
							      (memcmp(&d.next, &s, sizeof(s)) != 0),
						      "changed flag is wrong");

						/* Invariants. */
						if (d.reason != BK_REASON_EMERGENCY &&
						    d.reason != BK_REASON_NONE)
							CHECK(bk_bank_is_eligible(&s, d.bank),
							      "boots an ineligible bank");
						if (d.reason == BK_REASON_EMERGENCY)
							CHECK(!bk_bank_is_eligible(&s, BK_BANK_A) &&
								      !bk_bank_is_eligible(
									      &s, BK_BANK_B),
							      "emergency with an eligible bank");
						CHECK(d.try_taken ==
							      (d.bank >= 0 &&
							       d.next.bank[d.bank].tries_left <
								       s.bank[d.bank].tries_left),
						      "try_taken does not match the tries");
						for (int i = 0; i < 2; i++) {
							const struct bk_bank_boot *a = &s.bank[i];
							const struct bk_bank_boot *b =
								&d.next.bank[i];

							CHECK(b->tries_left <= a->tries_left,
							      "tries increased");
							CHECK(a->tries_left - b->tries_left <= 1,
							      "more than one try taken");
							CHECK(b->generation == a->generation &&
								      b->epoch == a->epoch,
							      "generation or epoch changed");
							if (b->state == BK_BANK_BAD &&
							    a->state != BK_BANK_BAD)
								CHECK(a->state == BK_BANK_TRYING &&
									      a->tries_left == 0,
								      "marked bad without exhausted "
								      "tries");
							if (a->state == BK_BANK_GOOD)
								CHECK(b->state == BK_BANK_GOOD,
								      "a good bank did not stay good");
							CHECK(d.marked_bad[i] ==
								      (b->state == BK_BANK_BAD &&
								       a->state != BK_BANK_BAD),
							      "marked_bad flag is wrong");
						}
						CHECK(d.next.floor == s.floor, "floor changed");
						CHECK(d.next.pin == _BK_BANK_INVALID ||
							      (d.reason == BK_REASON_ROLLBACK &&
							       d.next.pin == d.bank),
						      "the saved pin is not the bank that boots");
						n_by_reason[want.reason]++;
						n_checked++;
					}
	print_message("checked %lu combinations (none %lu, primary %lu, fallback %lu, "
		      "rollback %lu, emergency %lu)\n",
		      n_checked, n_by_reason[O_NONE], n_by_reason[O_PRIMARY],
		      n_by_reason[O_FALLBACK], n_by_reason[O_ROLLBACK], n_by_reason[O_EMERGENCY]);
	assert_int_equal(n_checked, 90ul * 90 * 3 * 3 * 2);
	for (int r = 0; r < 5; r++)
		assert_true(n_by_reason[r] > 0);
}

/* explain agrees with decide and the eligibility rule, and names the reasons; the text form
 * round-trips. */
static void test_select_explain_and_text_everywhere(void **state)
{
	unsigned long n_checked = 0;
	bool key = false;

	for (int sa = 0; sa < 5; sa++)
		for (int sb = 0; sb < 5; sb++)
			for (int t = 0; t < 9; t++)
				for (int e = 0; e < 4; e++)
					for (int floor = 0; floor < 3; floor++)
						for (int pin = -1; pin < 2; pin++) {
							struct o_state o = {
								{ { sa, 1, t % 3, e % 2 },
								  { sb, 2 - (t / 3) % 2, t / 3,
								    e / 2 } },
								floor,
								pin
							};
							struct bk_boot_decision d0, d1;
							struct bk_bootstate s, back;
							struct bk_boot_explain x;
							struct bk_err err = { 0 };
							char text[BK_BOOTSTATE_TEXT_MAX];

							to_lib(&o, &s);
							assert_int_equal(
								bk_select_explain(&s, &x, &err), 0);
							assert_int_equal(bk_select_decide(&s, false,
											  &d0,
											  &err),
									 0);
							assert_int_equal(bk_select_decide(&s, true,
											  &d1,
											  &err),
									 0);
							CHECK(memcmp(&x.next, &d0, sizeof(d0)) == 0,
							      "explain.next differs from decide");
							CHECK(memcmp(&x.with_key, &d1,
								     sizeof(d1)) == 0,
							      "explain.with_key differs from decide");
							for (int i = 0; i < 2; i++) {
								const struct bk_bank_explain *b =
									&x.bank[i];
								char want[64];

								CHECK(b->eligible ==
									      o_eligible(&o, i),
								      "explain eligibility differs");
								CHECK(strncmp(b->text,
									      b->eligible ?
										      "eligible: " :
										      "not eligible: ",
									      b->eligible ?
										      10 :
										      14) == 0,
								      "explain text does not start right");
								if (o.b[i].state == O_EMPTY)
									CHECK(strstr(b->text,
										     "empty"),
									      "empty not named");
								if (o.b[i].state == O_BAD)
									CHECK(strstr(b->text,
										     "bad"),
									      "bad not named");
								if (o.b[i].state != O_EMPTY &&
								    o.b[i].epoch < floor) {
									snprintf(
										want, sizeof(want),
										"epoch %d below floor %d",
										o.b[i].epoch,
										floor);
									CHECK(strstr(b->text, want),
									      "floor not named");
								}
								if (o.b[i].state == O_TRYING &&
								    o.b[i].tries == 0)
									CHECK(strstr(b->text,
										     "no tries left"),
									      "no tries left not named");
							}
							if (d0.reason == BK_REASON_NONE)
								CHECK(strstr(x.summary,
									     "nothing boots"),
								      "summary");
							else
								CHECK(strstr(x.summary,
									     bk_boot_reason_to_string(
										     d0.reason)),
								      "summary lacks the reason");

							assert_int_equal(
								bk_bootstate_format(&s, text,
										    sizeof(text)),
								0);
							assert_int_equal(bk_bootstate_parse(
										 text, &back, &err),
									 0);
							CHECK(memcmp(&back, &s, sizeof(s)) == 0,
							      "text form does not round-trip");
							n_checked++;
						}
	print_message("explained %lu states\n", n_checked);
	assert_int_equal(n_checked, 5ul * 5 * 9 * 4 * 3 * 3);
}

/* ---- targeted cases ----------------------------------------------------------------------- */

static struct bk_bootstate parse(const char *text)
{
	struct bk_bootstate s;
	struct bk_err err = { 0 };

	if (bk_bootstate_parse(text, &s, &err) < 0) {
		print_error("parse '%s': %s\n", text, err.msg);
		fail();
	}
	return s;
}

static void assert_state(const struct bk_bootstate *s, const char *want)
{
	char text[BK_BOOTSTATE_TEXT_MAX];

	assert_int_equal(bk_bootstate_format(s, text, sizeof(text)), 0);
	assert_string_equal(text, want);
}

static void test_select_names(void **state)
{
	assert_string_equal(bk_bank_id_to_string(BK_BANK_A), "A");
	assert_string_equal(bk_bank_id_to_string(BK_BANK_B), "B");
	assert_null(bk_bank_id_to_string(_BK_BANK_INVALID));
	assert_null(bk_bank_id_to_string(_BK_BANK_MAX));
	assert_int_equal(bk_bank_id_from_string("a"), BK_BANK_A);
	assert_int_equal(bk_bank_id_from_string("B"), BK_BANK_B);
	assert_int_equal(bk_bank_id_from_string("C"), _BK_BANK_INVALID);
	assert_int_equal(bk_bank_id_from_string(""), _BK_BANK_INVALID);
	assert_int_equal(bk_bank_id_from_string(NULL), _BK_BANK_INVALID);
	assert_int_equal(bk_bank_other(BK_BANK_A), BK_BANK_B);
	assert_int_equal(bk_bank_other(BK_BANK_B), BK_BANK_A);
	assert_int_equal(bk_bank_other(_BK_BANK_INVALID), _BK_BANK_INVALID);

	for (int i = 0; i < _BK_BANK_STATE_MAX; i++)
		assert_int_equal(bk_bank_state_from_string(bk_bank_state_to_string(i)), i);
	assert_string_equal(bk_bank_state_to_string(BK_BANK_TRYING), "trying");
	assert_int_equal(bk_bank_state_from_string("Good"), _BK_BANK_STATE_INVALID);
	assert_null(bk_bank_state_to_string(_BK_BANK_STATE_MAX));

	for (int i = 0; i < _BK_REASON_MAX; i++)
		assert_int_equal(bk_boot_reason_from_string(bk_boot_reason_to_string(i)), i);
	assert_string_equal(bk_boot_reason_to_string(BK_REASON_EMERGENCY), "emergency");
	assert_int_equal(bk_boot_reason_from_string("panic"), _BK_REASON_INVALID);
	assert_null(bk_boot_reason_to_string(_BK_REASON_INVALID));
}

/*
 * Every value of each enum through its name and back; names distinct; the value past the end,
 * the invalid value, an unknown name, "" and NULL refused. Bank names ignore case, the others
 * do not.
 */
#define ASSERT_NAMES_ROUND_TRIP(type, max, invalid, to_string, from_string, unknown) \
	do {                                                                         \
		for (int i = 0; i < (max); i++) {                                    \
			const char *name = to_string((type) i);                      \
                                                                                     \
			assert_non_null(name);                                       \
			assert_int_equal(from_string(name), i);                      \
			for (int k = 0; k < i; k++)                                  \
				assert_string_not_equal(name, to_string((type) k));  \
		}                                                                    \
		assert_null(to_string((type) (max)));                                \
		assert_null(to_string(invalid));                                     \
		assert_null(to_string((type) -1));                                   \
		assert_int_equal(from_string(unknown), invalid);                     \
		assert_int_equal(from_string(""), invalid);                          \
		assert_int_equal(from_string(NULL), invalid);                        \
	} while (0)

/* name with its first letter's case flipped ("good" -> "Good", "A" -> "a") */
static const char *flip_case(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s", name);
	buf[0] = (char) (islower((unsigned char) buf[0]) ? toupper((unsigned char) buf[0]) :
							   tolower((unsigned char) buf[0]));
	return buf;
}

static void test_select_names_round_trip(void **state)
{
	char buf[32];

	ASSERT_NAMES_ROUND_TRIP(enum bk_bank_id, _BK_BANK_MAX, _BK_BANK_INVALID,
				bk_bank_id_to_string, bk_bank_id_from_string, "C");
	ASSERT_NAMES_ROUND_TRIP(enum bk_bank_state, _BK_BANK_STATE_MAX, _BK_BANK_STATE_INVALID,
				bk_bank_state_to_string, bk_bank_state_from_string, "broken");
	ASSERT_NAMES_ROUND_TRIP(enum bk_boot_reason, _BK_REASON_MAX, _BK_REASON_INVALID,
				bk_boot_reason_to_string, bk_boot_reason_from_string, "panic");

	for (int i = 0; i < _BK_BANK_MAX; i++)
		assert_int_equal(bk_bank_id_from_string(
					 flip_case(bk_bank_id_to_string(i), buf, sizeof(buf))),
				 i);
	for (int i = 0; i < _BK_BANK_STATE_MAX; i++)
		assert_int_equal(bk_bank_state_from_string(
					 flip_case(bk_bank_state_to_string(i), buf, sizeof(buf))),
				 _BK_BANK_STATE_INVALID);
	for (int i = 0; i < _BK_REASON_MAX; i++)
		assert_int_equal(bk_boot_reason_from_string(
					 flip_case(bk_boot_reason_to_string(i), buf, sizeof(buf))),
				 _BK_REASON_INVALID);
}

/* The keys of the text form: each one required, in exact case; the pin in exact case too. */
static void test_select_text_form_keys(void **state)
{
	static const char *const tokens[] = { "A=good:1:0:0", "B=empty:0:0:0", "floor=0",
					      "pin=none" };
	static const char *const keys[] = { "A", "B", "floor", "pin" };
	struct bk_bootstate s;

	for (size_t skip = 0; skip < BK_ELEMENTSOF(tokens); skip++) {
		struct bk_err err = { 0 };
		char text[128] = "", want[64];

		for (size_t i = 0; i < BK_ELEMENTSOF(tokens); i++)
			if (i != skip) {
				strcat(text, tokens[i]);
				strcat(text, " ");
			}
		assert_int_equal(bk_bootstate_parse(text, &s, &err), -EINVAL);
		snprintf(want, sizeof(want), "boot state text lacks '%s='", keys[skip]);
		assert_string_equal(err.msg, want);
	}
	{
		struct bk_err err = { 0 };

		assert_int_equal(
			bk_bootstate_parse("a=good:1:0:0 B=empty:0:0:0 floor=0 pin=none", &s, &err),
			-EINVAL);
		assert_string_equal(err.msg, "unknown boot state key 'a'");
		bk_err_clear(&err);
		assert_int_equal(
			bk_bootstate_parse("A=good:1:0:0 B=empty:0:0:0 floor=0 pin=a", &s, &err),
			-EINVAL);
		assert_string_equal(err.msg, "'pin=a': expected A, B or none");
		bk_err_clear(&err);
		assert_int_equal(
			bk_bootstate_parse("A=good:1:0:0 B=empty:0:0:0 floor=0 pin=", &s, &err),
			-EINVAL);
		assert_string_equal(err.msg, "'pin=': expected A, B or none");
	}
	s = parse("pin=A floor=0 B=empty:0:0:0 A=good:1:0:0");
	assert_int_equal(s.pin, BK_BANK_A);
}

/* Equal to itself and to a copy; a change in any one field makes it differ. */
static void test_select_bootstate_equal(void **state)
{
	const struct bk_bootstate s = parse("A=trying:2:1:1 B=good:1:0:1 floor=1 pin=B");
	struct bk_bootstate t = s;

	assert_true(bk_bootstate_equal(&s, &s));
	assert_true(bk_bootstate_equal(&s, &t));
	for (int i = 0; i < _BK_BANK_MAX; i++) {
		t = s;
		t.bank[i].state = BK_BANK_BAD;
		assert_false(bk_bootstate_equal(&s, &t));
		t = s;
		t.bank[i].generation++;
		assert_false(bk_bootstate_equal(&s, &t));
		t = s;
		t.bank[i].tries_left++;
		assert_false(bk_bootstate_equal(&s, &t));
		t = s;
		t.bank[i].epoch++;
		assert_false(bk_bootstate_equal(&t, &s));
	}
	t = s;
	t.floor = 0;
	assert_false(bk_bootstate_equal(&s, &t));
	t = s;
	t.pin = _BK_BANK_INVALID;
	assert_false(bk_bootstate_equal(&s, &t));
}

static void test_select_check_rejects_invalid_states(void **state)
{
	struct bk_bootstate s;
	struct bk_boot_decision d;
	struct bk_err err = { 0 };

	bk_bootstate_init(&s);
	assert_int_equal(bk_bootstate_check(&s, &err), 0);
	assert_int_equal(s.pin, _BK_BANK_INVALID);

	s.bank[1].state = (enum bk_bank_state) 9;
	assert_int_equal(bk_bootstate_check(&s, &err), -EINVAL);
	assert_string_equal(err.msg, "bank B: invalid state 9");
	bk_err_clear(&err);
	assert_int_equal(bk_select_decide(&s, false, &d, &err), -EINVAL);

	bk_bootstate_init(&s);
	s.bank[0].tries_left = BK_TRIES_MAX + 1;
	bk_err_clear(&err);
	assert_int_equal(bk_bootstate_check(&s, &err), -EINVAL);
	assert_string_equal(err.msg, "bank A: tries_left 101 is above 100");

	bk_bootstate_init(&s);
	s.pin = (enum bk_bank_id) 5;
	bk_err_clear(&err);
	assert_int_equal(bk_bootstate_check(&s, &err), -EINVAL);
	assert_string_equal(err.msg, "invalid pin 5");

	bk_bootstate_init(&s);
	s.floor = (uint64_t) BK_EPOCH_MAX + 1;
	bk_err_clear(&err);
	assert_int_equal(bk_bootstate_check(&s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "floor"));
}

static void test_select_text_form_errors(void **state)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{ "A=good:1:0:0 B=empty:0:0:0 floor=0", "boot state text lacks 'pin='" },
		{ "B=empty:0:0:0 floor=0 pin=none", "boot state text lacks 'A='" },
		{ "A=good:1:0:0 A=good:1:0:0 B=empty:0:0:0 floor=0 pin=none",
		  "boot state key 'A' given twice" },
		{ "A=great:1:0:0 B=empty:0:0:0 floor=0 pin=none",
		  "'A=great:1:0:0': unknown state 'great'" },
		{ "A=good:1:0 B=empty:0:0:0 floor=0 pin=none",
		  "'A=good:1:0': expected BANK=STATE:GENERATION:TRIES:EPOCH" },
		{ "A=good:1:x:0 B=empty:0:0:0 floor=0 pin=none",
		  "'A=good:1:x:0': 'x' is not a number" },
		{ "A=good:1:0:0:7 B=empty:0:0:0 floor=0 pin=none",
		  "'A=good:1:0:0:7': expected BANK=STATE:GENERATION:TRIES:EPOCH" },
		{ "A=good:1:0:0 B=empty:0:0:0 floor=-1 pin=none", "'floor=-1': not a number" },
		{ "A=good:1:0:0 B=empty:0:0:0 floor=0 pin=C", "'pin=C': expected A, B or none" },
		{ "A=good:1:0:0 B=empty:0:0:0 floor=0 pin=none color=red",
		  "unknown boot state key 'color'" },
		{ "A=good:1:0:0 B=trying:2:101:0 floor=0 pin=none",
		  "bank B: tries_left 101 is above 100" },
		{ "A=good:1:0:0 B=empty:0:0:0 floor=0 pinnone", "'pinnone': expected KEY=VALUE" },
	};
	struct bk_bootstate s;

	for (size_t i = 0; i < BK_ELEMENTSOF(bad); i++) {
		struct bk_err err = { 0 };

		bk_bootstate_init(&s);
		s.floor = 77;
		assert_int_equal(bk_bootstate_parse(bad[i].text, &s, &err), -EINVAL);
		assert_string_equal(err.msg, bad[i].msg);
		assert_int_equal(s.floor, 77); /* untouched */
	}

	s = parse("  pin=B floor=2\tB=good:7:0:3\nA=trying:8:2:2 ");
	assert_state(&s, "A=trying:8:2:2 B=good:7:0:3 floor=2 pin=B");
	{
		char small[10];

		assert_int_equal(bk_bootstate_format(&s, small, sizeof(small)), -ENOBUFS);
	}
}

static void test_select_activate(void **state)
{
	struct bk_bootstate s = parse("A=good:4:0:1 B=staged:0:0:1 floor=1 pin=A");
	struct bk_bootstate n = s;
	struct bk_err err = { 0 };

	assert_int_equal(bk_select_activate(&s, BK_BANK_B, 3, &n, &err), 0);
	assert_state(&n, "A=good:4:0:1 B=staged:5:3:1 floor=1 pin=none");
	assert_state(&s, "A=good:4:0:1 B=staged:0:0:1 floor=1 pin=A");

	/* Re-activating a still-staged bank gives it the highest generation again. */
	assert_int_equal(bk_select_activate(&n, BK_BANK_B, 1, &n, &err), 0);
	assert_state(&n, "A=good:4:0:1 B=staged:6:1:1 floor=1 pin=none");

	/* Only a staged bank can be activated. */
	for (int st = 0; st < _BK_BANK_STATE_MAX; st++) {
		char want[64];

		if (st == BK_BANK_STAGED)
			continue;
		n = s;
		n.bank[BK_BANK_B].state = (enum bk_bank_state) st;
		s.bank[BK_BANK_B].tries_left = 0;
		bk_err_clear(&err);
		assert_int_equal(bk_select_activate(&n, BK_BANK_B, 3, &n, &err), -EINVAL);
		snprintf(want, sizeof(want), "bank B is not staged (it is %s)",
			 bk_bank_state_to_string(st));
		assert_string_equal(err.msg, want);
		assert_int_equal(n.bank[BK_BANK_B].state, st); /* untouched */
	}

	bk_err_clear(&err);
	assert_int_equal(bk_select_activate(&s, BK_BANK_B, 0, &n, &err), -EINVAL);
	assert_string_equal(err.msg, "tries must be 1 to 100, not 0");
	bk_err_clear(&err);
	assert_int_equal(bk_select_activate(&s, BK_BANK_B, 101, &n, &err), -EINVAL);

	s = parse("A=good:4:0:2 B=staged:0:0:1 floor=2 pin=none");
	n = s;
	bk_err_clear(&err);
	assert_int_equal(bk_select_activate(&s, BK_BANK_B, 3, &n, &err), -EKEYREVOKED);
	assert_string_equal(err.msg,
			    "bank B: epoch 1 is below the security floor 2, it would never boot");
	assert_state(&n, "A=good:4:0:2 B=staged:0:0:1 floor=2 pin=none");

	bk_err_clear(&err);
	assert_int_equal(bk_select_activate(&s, _BK_BANK_INVALID, 3, &n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid bank"));
}

static void test_select_mark_good_raises_floor(void **state)
{
	struct bk_bootstate s, n;
	struct bk_err err = { 0 };

	/* B booted its new image (epoch 2); A (epoch 1) stays bootable, so the floor is 1. */
	s = parse("A=good:1:0:1 B=trying:2:2:2 floor=0 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &n, &err), 0);
	assert_state(&n, "A=good:1:0:1 B=good:2:0:2 floor=1 pin=none");

	/* With A bad, only B can boot: the floor rises to its epoch. */
	s = parse("A=bad:1:0:1 B=trying:2:0:2 floor=0 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &n, &err), 0);
	assert_state(&n, "A=bad:1:0:1 B=good:2:0:2 floor=2 pin=none");

	/* An activated, not yet booted bank counts as bootable. */
	s = parse("A=trying:1:2:3 B=staged:2:3:1 floor=0 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_A, &n, &err), 0);
	assert_state(&n, "A=good:1:0:3 B=staged:2:3:1 floor=1 pin=none");

	/* A bank below the floor is not bootable and does not hold it down; never lowered. */
	s = parse("A=good:1:0:0 B=trying:2:1:5 floor=3 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &n, &err), 0);
	assert_state(&n, "A=good:1:0:0 B=good:2:0:5 floor=5 pin=none");
	s = parse("A=good:1:0:4 B=trying:2:1:1 floor=3 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &n, &err), 0);
	assert_state(&n, "A=good:1:0:4 B=good:2:0:1 floor=4 pin=none");

	/* An operator may confirm a bad bank (an emergency boot proved it works). */
	s = parse("A=bad:3:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_A, &n, &err), 0);
	assert_state(&n, "A=good:3:0:1 B=empty:0:0:0 floor=1 pin=none");

	s = parse("A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &n, &err), -EINVAL);
	assert_string_equal(err.msg, "bank B is empty");
	bk_err_clear(&err);
	s = parse("A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
	n = s;
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &n, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "bank B is staged and was never tried: activate and boot it first");
	assert_state(&n, "A=good:1:0:1 B=staged:2:3:1 floor=1 pin=none");
}

static void test_select_mark_bad(void **state)
{
	struct bk_bootstate s, n;
	struct bk_err err = { 0 };

	s = parse("A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	assert_int_equal(bk_select_mark_bad(&s, BK_BANK_B, &n, &err), 0);
	assert_state(&n, "A=good:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_select_mark_bad(&n, BK_BANK_A, &n, &err), 0);
	assert_state(&n, "A=bad:1:0:1 B=bad:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_select_mark_bad(&n, BK_BANK_A, &n, &err), 0); /* idempotent */

	s = parse("A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_int_equal(bk_select_mark_bad(&s, BK_BANK_B, &n, &err), -EINVAL);
	assert_string_equal(err.msg, "bank B is empty");
}

static void test_select_rollback_and_roll_forward(void **state)
{
	struct bk_bootstate s, n, back;
	struct bk_boot_decision d;
	struct bk_err err = { 0 };
	enum bk_bank_id bank = _BK_BANK_INVALID;

	/* B is new and booted; roll back to A. */
	s = parse("A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_select_rollback(&s, &n, &bank, &err), 0);
	assert_int_equal(bank, BK_BANK_A);
	assert_state(&n, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_decide(&n, false, &d, &err), 0);
	assert_int_equal(d.bank, BK_BANK_A);
	assert_int_equal(d.reason, BK_REASON_ROLLBACK);
	assert_false(d.changed);

	/* ... and forward again. */
	assert_int_equal(bk_select_roll_forward(&n, &back, &bank, &err), 0);
	assert_int_equal(bank, BK_BANK_B);
	assert_state(&back, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");

	/* Rolling back from a trying bank does not take its try. */
	s = parse("A=good:1:0:1 B=trying:2:2:1 floor=1 pin=none");
	assert_int_equal(bk_select_rollback(&s, &n, NULL, &err), 0);
	assert_state(&n, "A=good:1:0:1 B=trying:2:2:1 floor=1 pin=A");

	/* The other bank must be eligible. */
	s = parse("A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");
	n = s;
	assert_int_equal(bk_select_rollback(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg, "no bank to roll back to: bank A is not eligible: bad "
				     "(generation 1)");
	assert_state(&n, "A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");
	bk_err_clear(&err);
	s = parse("A=good:1:0:0 B=good:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_select_rollback(&s, &n, &bank, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "epoch 0 below floor 1"));
	bk_err_clear(&err);
	s = parse("A=empty:0:0:0 B=empty:0:0:0 floor=0 pin=none");
	assert_int_equal(bk_select_rollback(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg, "no bank to roll back to: both banks are empty");
	bk_err_clear(&err);
	s = parse("A=bad:1:0:0 B=bad:2:0:0 floor=0 pin=none");
	assert_int_equal(bk_select_rollback(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg, "no bank to roll back to: no bank is eligible");

	/* A rollback while one is in force goes to the other bank again. */
	bk_err_clear(&err);
	s = parse("A=good:1:0:1 B=good:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_rollback(&s, &n, &bank, &err), 0);
	assert_int_equal(bank, BK_BANK_B);
	assert_state(&n, "A=good:1:0:1 B=good:2:0:1 floor=1 pin=B");

	/* roll-forward errors. */
	s = parse("A=good:1:0:1 B=good:2:0:1 floor=1 pin=none");
	assert_int_equal(bk_select_roll_forward(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg, "nothing to roll forward: no rollback is in force");
	bk_err_clear(&err);
	s = parse("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_roll_forward(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot roll forward from bank A: bank B is not eligible: "
				     "bad (generation 2)");
	bk_err_clear(&err);
	s = parse("A=good:1:0:1 B=trying:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_roll_forward(&s, &n, &bank, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no tries left"));
	bk_err_clear(&err);
	s = parse("A=good:1:0:1 B=good:2:0:1 floor=1 pin=B");
	assert_int_equal(bk_select_roll_forward(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg,
			    "nothing to roll forward: bank B would boot without the pin too");
	bk_err_clear(&err);
	s = parse("A=bad:1:0:1 B=bad:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_roll_forward(&s, &n, &bank, &err), -ENOENT);
	assert_string_equal(err.msg, "cannot roll forward from bank A: no bank is eligible");
	/* A pinned bank that became ineligible: roll-forward clears the stale pin. */
	bk_err_clear(&err);
	s = parse("A=bad:1:0:1 B=good:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_roll_forward(&s, &n, &bank, &err), 0);
	assert_int_equal(bank, BK_BANK_B);
	assert_state(&n, "A=bad:1:0:1 B=good:2:0:1 floor=1 pin=none");
}

static void test_select_stage(void **state)
{
	struct bk_bootstate s, n;
	struct bk_err err = { 0 };

	s = parse("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=B");
	assert_int_equal(bk_select_stage_begin(&s, BK_BANK_B, &n, &err), 0);
	assert_state(&n, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_int_equal(bk_select_stage_done(&n, BK_BANK_B, 3, &n, &err), 0);
	assert_state(&n, "A=good:1:0:1 B=staged:0:0:3 floor=1 pin=none");
	assert_false(bk_bank_is_eligible(&n, BK_BANK_B));
	assert_int_equal(bk_bank_ineligible(&n, BK_BANK_B), BK_INELIGIBLE_NOT_ACTIVATED);

	/* A pin on the other bank survives. */
	s = parse("A=good:1:0:1 B=bad:2:0:1 floor=1 pin=A");
	assert_int_equal(bk_select_stage_begin(&s, BK_BANK_B, &n, &err), 0);
	assert_int_equal(n.pin, BK_BANK_A);

	s = parse("A=good:1:0:1 B=staged:0:0:1 floor=1 pin=none");
	assert_int_equal(bk_select_stage_done(&s, BK_BANK_B, 1, &n, &err), -EINVAL);
	assert_string_equal(err.msg, "bank B is staged, not being staged");
	bk_err_clear(&err);
	s = parse("A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");
	assert_int_equal(bk_select_stage_done(&s, BK_BANK_B, (uint64_t) BK_EPOCH_MAX + 1, &n, &err),
			 -EINVAL);
	bk_err_clear(&err);
	assert_int_equal(bk_select_stage_begin(&s, (enum bk_bank_id) 2, &n, &err), -EINVAL);
}

/* Decide and save, as the loader does; returns the decision. */
static struct bk_boot_decision boot(struct bk_bootstate *s, bool key)
{
	struct bk_boot_decision d;
	struct bk_err err = { 0 };

	assert_int_equal(bk_select_decide(s, key, &d, &err), 0);
	*s = d.next;
	return d;
}

/* The life of a host: install A, update to B, B fails its tries, update again, roll back. */
static void test_select_lifecycle(void **state)
{
	struct bk_bootstate s;
	struct bk_boot_decision d;
	struct bk_boot_explain x;
	struct bk_err err = { 0 };

	bk_bootstate_init(&s);
	d = boot(&s, false);
	assert_int_equal(d.reason, BK_REASON_NONE);
	assert_false(d.changed);

	assert_int_equal(bk_select_stage_begin(&s, BK_BANK_A, &s, &err), 0);
	assert_int_equal(bk_select_stage_done(&s, BK_BANK_A, 1, &s, &err), 0);
	d = boot(&s, false); /* staged, not activated: emergency, nothing changes */
	assert_int_equal(d.reason, BK_REASON_EMERGENCY);
	assert_int_equal(d.bank, BK_BANK_A);
	assert_false(d.changed);

	assert_int_equal(bk_select_activate(&s, BK_BANK_A, 3, &s, &err), 0);
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_A);
	assert_int_equal(d.reason, BK_REASON_PRIMARY);
	assert_true(d.try_taken);
	assert_state(&s, "A=trying:1:2:1 B=empty:0:0:0 floor=0 pin=none");
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_A, &s, &err), 0);
	assert_state(&s, "A=good:1:0:1 B=empty:0:0:0 floor=1 pin=none");

	/* Update to B (epoch 2), which never comes up. */
	assert_int_equal(bk_select_stage_begin(&s, BK_BANK_B, &s, &err), 0);
	assert_int_equal(bk_select_stage_done(&s, BK_BANK_B, 2, &s, &err), 0);
	assert_int_equal(bk_select_activate(&s, BK_BANK_B, 2, &s, &err), 0);
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_B);
	assert_int_equal(d.reason, BK_REASON_PRIMARY);
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_B);
	assert_state(&s, "A=good:1:0:1 B=trying:2:0:2 floor=1 pin=none");
	assert_int_equal(bk_select_explain(&s, &x, &err), 0);
	assert_string_equal(x.bank[BK_BANK_B].text,
			    "not eligible: no tries left (marked bad at the next boot) "
			    "(generation 2)");
	assert_string_equal(x.summary, "bank A boots with reason fallback");
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_A);
	assert_int_equal(d.reason, BK_REASON_FALLBACK);
	assert_true(d.marked_bad[BK_BANK_B]);
	assert_state(&s, "A=good:1:0:1 B=bad:2:0:2 floor=1 pin=none");

	/* A fixed image in B; it works; the floor follows A's epoch, not B's. */
	assert_int_equal(bk_select_stage_begin(&s, BK_BANK_B, &s, &err), 0);
	assert_int_equal(bk_select_stage_done(&s, BK_BANK_B, 2, &s, &err), 0);
	assert_int_equal(bk_select_activate(&s, BK_BANK_B, 3, &s, &err), 0);
	assert_state(&s, "A=good:1:0:1 B=staged:2:3:2 floor=1 pin=none");
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_B);
	assert_int_equal(bk_select_mark_good(&s, BK_BANK_B, &s, &err), 0);
	assert_state(&s, "A=good:1:0:1 B=good:2:0:2 floor=1 pin=none");

	/* The operator holds the key: A boots, and keeps booting. */
	d = boot(&s, true);
	assert_int_equal(d.bank, BK_BANK_A);
	assert_int_equal(d.reason, BK_REASON_ROLLBACK);
	assert_true(d.key_applied);
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_A);
	assert_int_equal(d.reason, BK_REASON_ROLLBACK);
	assert_int_equal(bk_select_roll_forward(&s, &s, NULL, &err), 0);
	d = boot(&s, false);
	assert_int_equal(d.bank, BK_BANK_B);
	assert_int_equal(d.reason, BK_REASON_PRIMARY);

	/* With A bad the key has nowhere to go: ignored. */
	assert_int_equal(bk_select_mark_bad(&s, BK_BANK_A, &s, &err), 0);
	d = boot(&s, true);
	assert_int_equal(d.bank, BK_BANK_B);
	assert_int_equal(d.reason, BK_REASON_PRIMARY);
	assert_true(d.key_pressed);
	assert_false(d.key_applied);
	assert_false(d.changed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_select_decide_matches_oracle_everywhere),
		cmocka_unit_test(test_select_explain_and_text_everywhere),
		cmocka_unit_test(test_select_names),
		cmocka_unit_test(test_select_names_round_trip),
		cmocka_unit_test(test_select_text_form_keys),
		cmocka_unit_test(test_select_bootstate_equal),
		cmocka_unit_test(test_select_check_rejects_invalid_states),
		cmocka_unit_test(test_select_text_form_errors),
		cmocka_unit_test(test_select_activate),
		cmocka_unit_test(test_select_mark_good_raises_floor),
		cmocka_unit_test(test_select_mark_bad),
		cmocka_unit_test(test_select_rollback_and_roll_forward),
		cmocka_unit_test(test_select_stage),
		cmocka_unit_test(test_select_lifecycle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

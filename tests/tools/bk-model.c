/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bk-model: the C side of the loader cross-checks (tests/integ/grub-emu.sh). It enumerates the
 * reachable boot states of two banks, runs the selection model (lib/bk-select.h) on them, and
 * converts between boot states and grubenv files with the `grub` backend's own mapping
 * (bootloader-hooks/bk-boot-grub.h). States use the model's compact text form
 * ("A=good:2:0:1 B=trying:3:1:1 floor=1 pin=none").
 *
 *   enumerate [--scale identity|big|carry]
 *        every boot state reachable from two empty banks by the transitions of docs/banks.md
 *        (stage begin/done with epochs 1-2, activate with 1-3 tries, mark-good, mark-bad,
 *        rollback, roll-forward, a boot with and without the rollback key); generations are
 *        renumbered by rank (only their order matters to the model), so the set is finite.
 *        --scale maps the numbers order-preservingly to exercise the loader's arithmetic:
 *        big: generations near 2^32, epochs around 10^9, tries 98-100; carry: numbers that
 *        cross a decimal digit (9 -> 10). One state per line.
 *   decide      read "ID KEY STATE" lines (KEY 0 or 1); print "ID BANK REASON CHANGED NEXT"
 *               (BANK A, B or -; CHANGED 0 or 1; NEXT the state to save)
 *   write-env DIR [NAME=VALUE]
 *               read "ID STATE" lines; write DIR/ID as the grubenv bankctl would write,
 *               with the extra variable NAME=VALUE after the boot state (IDs may hold '/'
 *               for subdirectories, which must exist)
 *   read-env FILE...   print "FILE STATE [NAME=VALUE ...]": the boot state and the other
 *               variables of each grubenv; a file that does not load prints "FILE error: MSG"
 *   save ROOT STATE    save STATE through the grub backend (bk_boot_save) beneath ROOT
 *   load ROOT          print the state loaded through the grub backend beneath ROOT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bk-boot-grub.h"
#include "bk-fs.h"
#include "bk-grubenv.h"
#include "bk-tool.h"

static int usage(void)
{
	fprintf(stderr, "usage: bk-model enumerate [--scale identity|big|carry] | decide | "
			"write-env DIR [NAME=VALUE] | read-env FILE... | save ROOT STATE | "
			"load ROOT\n");
	return BK_EXIT_USAGE;
}

static int fail(const char *what, int r, const struct bk_err *err)
{
	return tool_fail("bk-model", what, r, err);
}

/* --- enumerate ------------------------------------------------------------------------- */

struct state_set {
	struct bk_bootstate *v;
	size_t n, alloc;
	size_t *slots; /* open addressing: index + 1, 0 = free */
	size_t n_slots;
};

static uint64_t state_hash(const struct bk_bootstate *s)
{
	uint64_t h = 1469598103934665603ull;
	uint64_t f[] = { (uint64_t) s->bank[0].state,
			 s->bank[0].generation,
			 s->bank[0].tries_left,
			 s->bank[0].epoch,
			 (uint64_t) s->bank[1].state,
			 s->bank[1].generation,
			 s->bank[1].tries_left,
			 s->bank[1].epoch,
			 s->floor,
			 (uint64_t) s->pin };

	for (size_t i = 0; i < BK_ELEMENTSOF(f); i++)
		h = (h ^ f[i]) * 1099511628211ull;
	return h;
}

static int set_grow(struct state_set *set)
{
	size_t n_slots = set->n_slots ? set->n_slots * 2 : 1024;
	size_t *slots = calloc(n_slots, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++) {
		size_t k = state_hash(&set->v[i]) & (n_slots - 1);

		while (slots[k])
			k = (k + 1) & (n_slots - 1);
		slots[k] = i + 1;
	}
	free(set->slots);
	set->slots = slots;
	set->n_slots = n_slots;
	return 0;
}

/* Add s unless present. Returns 1 when added, 0 when present, -ENOMEM. */
static int set_add(struct state_set *set, const struct bk_bootstate *s)
{
	size_t k;

	if ((set->n + 1) * 2 > set->n_slots && set_grow(set) < 0)
		return -ENOMEM;
	k = state_hash(s) & (set->n_slots - 1);
	while (set->slots[k]) {
		if (bk_bootstate_equal(&set->v[set->slots[k] - 1], s))
			return 0;
		k = (k + 1) & (set->n_slots - 1);
	}
	if (set->n == set->alloc) {
		size_t alloc = set->alloc ? set->alloc * 2 : 1024;
		struct bk_bootstate *v = reallocarray(set->v, alloc, sizeof(*v));

		if (!v)
			return -ENOMEM;
		set->v = v;
		set->alloc = alloc;
	}
	set->v[set->n++] = *s;
	set->slots[k] = set->n;
	return 1;
}

/* Renumber the generations by rank (0 stays 0): the model only compares them. */
static void canonical(struct bk_bootstate *s)
{
	uint64_t *a = &s->bank[BK_BANK_A].generation, *b = &s->bank[BK_BANK_B].generation;

	if (*a != 0 && *b != 0) {
		uint64_t lo = *a < *b ? *a : *b;

		*a = *a == lo ? 1 : 2;
		*b = *b == lo ? 1 : 2;
	} else if (*a != 0) {
		*a = 1;
	} else if (*b != 0) {
		*b = 1;
	}
}

/* Every successor of s by one transition. Returns the number written to out (at most max). */
static size_t successors(const struct bk_bootstate *s, struct bk_bootstate *out, size_t max)
{
	static const uint64_t epochs[] = { 1, 2 };
	static const uint64_t tries[] = { 1, 2, 3 };
	struct bk_boot_decision d;
	struct bk_bootstate t;
	size_t n = 0;

#define EMIT(call)                          \
	do {                                \
		if ((call) == 0 && n < max) \
			out[n++] = t;       \
	} while (0)

	for (int i = 0; i < _BK_BANK_MAX; i++) {
		enum bk_bank_id id = (enum bk_bank_id) i;
		struct bk_bootstate begun;

		/* stage: begin (a crash may stop here), then done with the image's epoch */
		if (bk_select_stage_begin(s, id, &begun, NULL) == 0) {
			t = begun;
			if (n < max)
				out[n++] = t;
			for (size_t e = 0; e < BK_ELEMENTSOF(epochs); e++)
				EMIT(bk_select_stage_done(&begun, id, epochs[e], &t, NULL));
		}
		for (size_t k = 0; k < BK_ELEMENTSOF(tries); k++)
			EMIT(bk_select_activate(s, id, tries[k], &t, NULL));
		EMIT(bk_select_mark_good(s, id, &t, NULL));
		EMIT(bk_select_mark_bad(s, id, &t, NULL));
	}
	EMIT(bk_select_rollback(s, &t, NULL, NULL));
	EMIT(bk_select_roll_forward(s, &t, NULL, NULL));
	for (int key = 0; key <= 1; key++)
		if (bk_select_decide(s, key, &d, NULL) == 0 && n < max)
			out[n++] = d.next;
#undef EMIT
	return n;
}

/* Order-preserving maps of the numbers, 0 kept as 0 (scale "identity" is none). */
static uint64_t map_gen(const char *scale, uint64_t g)
{
	if (g == 0)
		return 0;
	if (strcmp(scale, "big") == 0)
		return BK_GENERATION_MAX - 3 + g; /* 1, 2 -> 4294967293, 4294967294 */
	if (strcmp(scale, "carry") == 0)
		return 8 + g; /* 9, 10 */
	return g;
}

static uint64_t map_epoch(const char *scale, uint64_t e)
{
	if (e == 0)
		return 0;
	if (strcmp(scale, "big") == 0)
		return 2000000000u + e; /* above 2^31: a signed 32-bit compare would fail */
	if (strcmp(scale, "carry") == 0)
		return 8 + e;
	return e;
}

static uint64_t map_tries(const char *scale, uint64_t t)
{
	if (t == 0)
		return 0;
	if (strcmp(scale, "big") == 0)
		return 97 + t; /* 98..100: 100 -> 99 borrows twice */
	if (strcmp(scale, "carry") == 0)
		return 7 + t; /* 8..10: 10 -> 9 */
	return t;
}

static int cmd_enumerate(int argc, char **argv)
{
	struct state_set set = { 0 };
	struct bk_bootstate init;
	const char *scale = "identity";
	int r;

	if (argc == 3 && strcmp(argv[1], "--scale") == 0)
		scale = argv[2];
	else if (argc != 1)
		return usage();
	if (strcmp(scale, "identity") != 0 && strcmp(scale, "big") != 0 &&
	    strcmp(scale, "carry") != 0)
		return usage();

	bk_bootstate_init(&init);
	r = set_add(&set, &init);
	if (r < 0)
		return fail("enumerate", r, NULL);
	/* Breadth first: set.v grows while we walk it. */
	for (size_t i = 0; i < set.n; i++) {
		struct bk_bootstate next[64];
		size_t n = successors(&set.v[i], next, BK_ELEMENTSOF(next));

		for (size_t k = 0; k < n; k++) {
			canonical(&next[k]);
			r = set_add(&set, &next[k]);
			if (r < 0)
				return fail("enumerate", r, NULL);
		}
	}

	for (size_t i = 0; i < set.n; i++) {
		struct bk_bootstate s = set.v[i];

		for (int b = 0; b < _BK_BANK_MAX; b++) {
			s.bank[b].generation = map_gen(scale, s.bank[b].generation);
			s.bank[b].epoch = map_epoch(scale, s.bank[b].epoch);
			s.bank[b].tries_left = map_tries(scale, s.bank[b].tries_left);
		}
		s.floor = map_epoch(scale, s.floor);
		r = tool_print_state(NULL, &s);
		if (r < 0)
			return fail("format", r, NULL);
	}
	free(set.v);
	free(set.slots);
	return 0;
}

/* --- decide, write-env, read-env -------------------------------------------------------- */

static int cmd_decide(void)
{
	char line[TOOL_LINE_MAX];
	unsigned lineno = 0;

	while (fgets(line, sizeof(line), stdin)) {
		struct bk_err err = { 0 };
		struct bk_boot_decision d;
		struct bk_bootstate s;
		char text[BK_BOOTSTATE_TEXT_MAX];
		char *key, *state;
		int r;

		lineno++;
		if (tool_split_word(line, &key) < 0 || tool_split_word(key, &state) < 0 ||
		    (strcmp(key, "0") != 0 && strcmp(key, "1") != 0)) {
			fprintf(stderr, "bk-model: stdin:%u: expected 'ID KEY STATE'\n", lineno);
			return BK_EXIT_USAGE;
		}
		r = bk_bootstate_parse(state, &s, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = bk_select_decide(&s, key[0] == '1', &d, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = bk_bootstate_format(&d.next, text, sizeof(text));
		if (r < 0)
			return fail(line, r, NULL);
		printf("%s %s %s %s %d %s\n", line, key,
		       d.bank == _BK_BANK_INVALID ? "-" : bk_bank_id_to_string(d.bank),
		       bk_boot_reason_to_string(d.reason), d.changed ? 1 : 0, text);
	}
	return 0;
}

static int cmd_write_env(int argc, char **argv)
{
	_cleanup_(bk_grubenv_freep) struct bk_grubenv *extra = NULL;
	_cleanup_close_ int dfd = -EBADF;
	char line[TOOL_LINE_MAX];
	unsigned lineno = 0;

	if (argc != 2 && argc != 3)
		return usage();
	dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		fprintf(stderr, "bk-model: cannot open '%s': %m\n", argv[1]);
		return BK_EXIT_NOT_FOUND;
	}
	extra = bk_grubenv_new();
	if (!extra)
		return fail("write-env", -ENOMEM, NULL);
	if (argc == 3) {
		struct bk_err err = { 0 };
		char *eq = strchr(argv[2], '=');
		int r;

		if (!eq)
			return usage();
		*eq = '\0';
		r = bk_grubenv_set(extra, argv[2], eq + 1, &err);
		if (r < 0)
			return fail("write-env", r, &err);
	}

	while (fgets(line, sizeof(line), stdin)) {
		_cleanup_(bk_grubenv_freep) struct bk_grubenv *e = NULL;
		_cleanup_close_ int fd = -EBADF;
		struct bk_err err = { 0 };
		char buf[BK_GRUBENV_SIZE];
		struct bk_bootstate s;
		char *state;
		int r;

		lineno++;
		if (tool_split_word(line, &state) < 0) {
			fprintf(stderr, "bk-model: stdin:%u: expected 'ID STATE'\n", lineno);
			return BK_EXIT_USAGE;
		}
		r = bk_bootstate_parse(state, &s, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = bk_boot_grub_encode(extra, &s, &e, &err);
		if (r < 0)
			return fail(line, r, &err);
		r = bk_grubenv_format(e, buf, sizeof(buf), &err);
		if (r < 0)
			return fail(line, r, &err);
		/* A test fixture, not state: a plain write is enough. */
		fd = openat(dfd, line, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "bk-model: cannot create '%s/%s': %m\n", argv[1], line);
			return BK_EXIT_IO;
		}
		r = bk_write_full(fd, buf, sizeof(buf));
		if (r < 0)
			return fail(line, r, NULL);
	}
	return 0;
}

static bool is_state_var(const char *name)
{
	static const char *const vars[] = {
		"bootbank_A_state", "bootbank_A_gen", "bootbank_A_tries", "bootbank_A_epoch",
		"bootbank_B_state", "bootbank_B_gen", "bootbank_B_tries", "bootbank_B_epoch",
		"bootbank_floor",   "bootbank_pin",
	};

	for (size_t i = 0; i < BK_ELEMENTSOF(vars); i++)
		if (strcmp(name, vars[i]) == 0)
			return true;
	return false;
}

static int cmd_read_env(int argc, char **argv)
{
	int ret = 0;

	for (int i = 1; i < argc; i++) {
		_cleanup_(bk_grubenv_freep) struct bk_grubenv *e = NULL;
		_cleanup_free_ char *buf = NULL;
		struct bk_err err = { 0 };
		char text[BK_BOOTSTATE_TEXT_MAX];
		const char *name, *value;
		struct bk_bootstate s;
		size_t len, it = 0;
		int r;

		r = bk_read_file_at(AT_FDCWD, argv[i], 64 * 1024, &buf, &len, &err);
		if (r >= 0)
			r = bk_grubenv_parse(buf, len, &e, &err);
		if (r >= 0)
			r = bk_boot_grub_decode(e, &s, &err);
		if (r >= 0)
			r = bk_bootstate_check(&s, &err);
		if (r >= 0)
			r = bk_bootstate_format(&s, text, sizeof(text));
		if (r < 0) {
			printf("%s error: %s\n", argv[i], err.code < 0 ? err.msg : strerror(-r));
			ret = BK_EXIT_FAILURE;
			continue;
		}
		printf("%s %s", argv[i], text);
		while (bk_grubenv_next(e, &it, &name, &value) == 0)
			if (!is_state_var(name))
				printf(" %s=%s", name, value);
		printf("\n");
	}
	return ret;
}

/* --- the backend itself ------------------------------------------------------------------ */

static int cmd_save(int argc, char **argv)
{
	struct bk_err err = { 0 };
	struct bk_boot_data d;
	int r;

	if (argc != 3)
		return usage();
	bk_boot_data_init(&d);
	r = bk_bootstate_parse(argv[2], &d.state, &err);
	if (r < 0)
		return fail("save", r, &err);
	r = tool_save("grub", argv[1], false, &d, &err);
	if (r < 0)
		return fail("save", r, &err);
	return 0;
}

static int cmd_load(int argc, char **argv)
{
	struct bk_err err = { 0 };
	struct bk_boot_data d;
	int r;

	if (argc != 2)
		return usage();
	r = tool_load("grub", argv[1], false, &d, &err);
	if (r < 0)
		return fail("load", r, &err);
	r = tool_print_state(NULL, &d.state);
	if (r < 0)
		return fail("load", r, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "enumerate") == 0)
		return cmd_enumerate(argc - 1, argv + 1);
	if (strcmp(argv[1], "decide") == 0 && argc == 2)
		return cmd_decide();
	if (strcmp(argv[1], "write-env") == 0)
		return cmd_write_env(argc - 1, argv + 1);
	if (strcmp(argv[1], "read-env") == 0)
		return cmd_read_env(argc - 1, argv + 1);
	if (strcmp(argv[1], "save") == 0)
		return cmd_save(argc - 1, argv + 1);
	if (strcmp(argv[1], "load") == 0)
		return cmd_load(argc - 1, argv + 1);
	return usage();
}
